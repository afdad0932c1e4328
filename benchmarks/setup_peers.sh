#!/usr/bin/env bash
# Peers that cannot share the project's venv, each in build/peers/NAME:
# - kserve: KServe's Python model server for bench_serve.py (the `kserve` package pins
#   versions that clash with the project's);
# - dask-labextension: its Jupyter server extension for bench_jupyter.py (in the project's
#   venv it would load into every Jupyter server the tests start).
# Idempotent: a venv that already imports its peer is kept.
#
#   bash benchmarks/setup_peers.sh            # then: python benchmarks/bench_serve.py --kserve
#   bash benchmarks/setup_peers.sh dask-labextension   # only that one
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
only="${1:-all}"

labext="$root/build/peers/dask-labextension"
if [ "$only" = all ] || [ "$only" = dask-labextension ]; then
    if [ -x "$labext/bin/python" ] && "$labext/bin/python" -c 'import dask_labextension, jupyter_server' 2>/dev/null; then
        echo "dask-labextension peer venv ready: $labext"
    else
        "$python" -m venv "$labext"
        # The same dask and jupyter-server lines as the project's, and the peer itself.
        "$labext/bin/pip" install -q "dask-labextension>=7" "jupyter-server>=2.4" \
            "distributed>=2024.8" "bokeh>=3.1"
        "$labext/bin/python" -c 'import dask_labextension; print("dask-labextension in", "'"$labext"'")'
    fi
fi
[ "$only" = all ] || [ "$only" = kserve ] || exit 0

venv="$root/build/peers/kserve"
# The same torch as the project's venv (a CPU wheel, usually already in pip's cache).
torch_version="${TORCH_VERSION:-$("$root/.venv/bin/python" -c \
    'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || echo 2.13.0)}"

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import kserve, safetensors, torch' 2>/dev/null; then
    echo "kserve peer venv ready: $venv"
    exit 0
fi
"$python" -m venv "$venv"
"$venv/bin/pip" install -q "torch==$torch_version"
"$venv/bin/pip" install -q "kserve>=0.14" "safetensors>=0.4"
"$venv/bin/python" -c 'import kserve; print("kserve", kserve.__version__, "in", "'"$venv"'")'

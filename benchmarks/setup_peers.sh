#!/usr/bin/env bash
# Peers that cannot share the project's venv, each in build/peers/NAME:
# - kserve: KServe's Python model server for bench_serve.py (the `kserve` package pins
#   versions that clash with the project's);
# - dask-labextension: its Jupyter server extension for bench_jupyter.py (in the project's
#   venv it would load into every Jupyter server the tests start);
# - ray-serve, bentoml, litserve: the serving peers of bench_serve.py (each pins its own
#   FastAPI/Starlette/uvicorn/pydantic lines).
# Each serving peer gets the project's torch first (a CPU wheel, usually already in pip's
# cache): without a pinned torch, pip would pull a multi-GB CUDA build.
# Idempotent: a venv that already imports its peer is kept.
#
#   bash benchmarks/setup_peers.sh            # then: python benchmarks/bench_serve.py --kserve
#   bash benchmarks/setup_peers.sh dask-labextension   # only that one (or kserve,
#                                                       # ray-serve, bentoml, litserve)
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
# The same torch as the project's venv (a CPU wheel, usually already in pip's cache).
torch_version="${TORCH_VERSION:-$("$root/.venv/bin/python" -c \
    'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || echo 2.13.0)}"

# peer NAME IMPORTS PACKAGE...: a venv build/peers/NAME with torch and PACKAGEs, kept when
# it already imports IMPORTS.
peer() {
    local name="$1" imports="$2" venv="$root/build/peers/$1"
    shift 2
    if [ "$only" != all ] && [ "$only" != "$name" ]; then
        return 0
    fi
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import $imports" 2>/dev/null; then
        echo "$name peer venv ready: $venv"
        return 0
    fi
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q "torch==$torch_version"
    "$venv/bin/pip" install -q "$@" "safetensors>=0.4" "orjson>=3.9"
    "$venv/bin/python" -c "import $imports; print('$name peer venv ready: $venv')"
}

peer kserve "kserve, safetensors, torch" "kserve>=0.14"
peer ray-serve "ray.serve, safetensors, torch" "ray[serve]>=2.40"
peer bentoml "bentoml, safetensors, torch" "bentoml>=1.3"
peer litserve "litserve, safetensors, torch" "litserve>=0.2"

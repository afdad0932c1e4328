#!/usr/bin/env bash
# Peers for bench_serve.py that cannot share the project's venv: KServe's Python model
# server (the `kserve` package pins versions that clash with the project's), in
# build/peers/kserve. Idempotent: an existing venv that imports kserve is kept.
#
#   bash benchmarks/setup_peers.sh            # then: python benchmarks/bench_serve.py --kserve
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/build/peers/kserve"
python="${PYTHON:-python3}"
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

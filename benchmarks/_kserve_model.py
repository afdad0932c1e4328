"""KServe's Python model server (``kserve.ModelServer``) serving a hybridnb MLP bundle.

The peer of ``bench_serve.py``. It runs in its own venv (``benchmarks/setup_peers.sh``:
kserve's pins clash with the project's), so it imports nothing from hybridnb:
:mod:`_mlp_weights` rebuilds the MLP from the bundle's ``weights.safetensors`` (no
pickle). It answers OIP v2 ``/v2/models/NAME/infer`` the way a KServe custom model does:
``predict`` gets an ``InferRequest`` and returns an ``InferResponse``.

Usage: ``python _kserve_model.py BUNDLE_DIR HTTP_PORT``. Like the other servers in the
benchmark it listens on loopback only, uses one torch thread, and writes no per-request
log line (KServe's access and latency logs are on by default; here they are off, so the
comparison is of request paths, not of logging).
"""

from __future__ import annotations

import logging
import sys
import uuid
from pathlib import Path

import numpy as np
import torch
from _mlp_weights import load_mlp
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve import model_server as _model_server


class BundleModel(Model):
    def __init__(self, bundle: Path):
        name, self.net = load_mlp(bundle)
        super().__init__(name)
        self.ready = True

    async def predict(
        self, payload: InferRequest, headers=None, response_headers=None
    ) -> InferResponse:
        x = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
        with torch.inference_mode():
            y = self.net(torch.from_numpy(x)).numpy()
        out = InferOutput(name="output", shape=list(y.shape), datatype="FP32")
        out.set_data_from_numpy(y, binary_data=False)
        return InferResponse(
            response_id=payload.id or str(uuid.uuid4()), model_name=self.name, infer_outputs=[out]
        )


class _LoopbackRESTServer(_model_server.RESTServer):
    """KServe binds 0.0.0.0 unconditionally; the benchmark stays on loopback."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.host = "127.0.0.1"


def main() -> None:
    bundle, port = Path(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(1)
    _model_server.RESTServer = _LoopbackRESTServer
    model = BundleModel(bundle)
    server = ModelServer(http_port=port, enable_grpc=False, enable_latency_logging=False, workers=1)
    for name in ("uvicorn.access", "kserve.trace"):  # a line per request, each
        logging.getLogger(name).disabled = True
    server.start([model])


if __name__ == "__main__":
    main()

"""The plain peer of ``bench_serve.py``: a hand-written FastAPI handler on uvicorn.

What a user would write to serve the bundle's MLP without hybridnb: parse the OIP v2
JSON, run the model, answer JSON. It runs with the same uvicorn options as hybridnb's
server (:func:`hybridnb.serve.server.uvicorn_options`: same HTTP parser, event loop, no
access log), so the comparison is of request paths only.

Usage: ``python _fastapi_model.py BUNDLE_DIR PORT``.
"""

from __future__ import annotations

import sys

import numpy as np
import orjson
import torch
import uvicorn
from _mlp_weights import load_mlp
from fastapi import FastAPI, Request
from fastapi.responses import Response

from hybridnb.serve.server import uvicorn_options


def create_app(bundle: str) -> FastAPI:
    name, model = load_mlp(bundle)
    app = FastAPI()

    @app.post(f"/v2/models/{name}/infer")
    async def infer(request: Request) -> Response:
        tensor = orjson.loads(await request.body())["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        with torch.inference_mode():
            y = model(torch.from_numpy(x)).numpy()
        return Response(
            orjson.dumps(
                {
                    "model_name": name,
                    "outputs": [
                        {
                            "name": "output",
                            "datatype": "FP32",
                            "shape": list(y.shape),
                            "data": y.ravel(),
                        }
                    ],
                },
                option=orjson.OPT_SERIALIZE_NUMPY,
            ),
            media_type="application/json",
        )

    return app


if __name__ == "__main__":
    torch.set_num_threads(1)
    uvicorn.run(
        create_app(sys.argv[1]),
        host="127.0.0.1",
        port=int(sys.argv[2]),
        log_level="warning",
        **uvicorn_options(),
    )

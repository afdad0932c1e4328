"""Fixtures for endpoint tests: a small MLP bundle and an in-process server factory."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch

from hybridnb.serve.app import create_app
from hybridnb.serve.model_bundle import Bundle, bundle
from hybridnb.serve.server import ServerThread
from hybridnb.serve.settings import ServeSettings


def make_mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 3)).eval()


@pytest.fixture(scope="session")
def mlp(tmp_path_factory) -> tuple[torch.nn.Module, Bundle]:
    model = make_mlp()
    b = bundle(model, torch.randn(2, 8), tmp_path_factory.mktemp("bundles") / "mlp",
               name="mlp", labels=["a", "b", "c"], metrics={"accuracy": 0.9})
    return model, b


@pytest.fixture
def serve(mlp) -> Iterator[Callable[..., ServerThread]]:
    """``serve(bundle=None, **settings)``: start an in-process server; stopped at the end."""
    started: list[ServerThread] = []

    def start(b: Bundle | None = None, **settings) -> ServerThread:
        srv = ServerThread(create_app(b or mlp[1], ServeSettings(**settings))).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


class Gate:
    """A model wrapper that blocks every call until released (deterministic backpressure)."""

    def __init__(self, fn):
        self.fn = fn
        self.event = threading.Event()
        self.calls = 0
        self.entered = threading.Event()

    def __call__(self, x):
        self.calls += 1
        self.entered.set()
        if not self.event.wait(30):
            raise RuntimeError("gate never opened")
        return self.fn(x)


@contextmanager
def gated(b: Bundle) -> Iterator[tuple[Bundle, Gate]]:
    gate = Gate(b.model)
    try:
        yield Bundle(path=b.path, meta=b.meta, model=gate, _stats=b._stats), gate
    finally:
        gate.event.set()


def infer_body(x, name: str = "input") -> dict:
    return {"inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32",
                        "data": x.flatten().tolist()}]}

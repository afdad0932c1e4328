"""Fixtures for edge tests: bundles of a few sizes, agents on loopback or in a namespace,
and local clients that count every failed request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from hybridnb.serve.edge import AgentProcess, start_agent
from hybridnb.serve.model_bundle import Bundle, bundle

CLIENT = Path(__file__).with_name("_client.py")


class NaNModel(torch.nn.Module):
    """A real bug: it divides by the input's norm, so zeros give NaN. It exports, loads and
    runs (the right shapes, finite on its example), and fails only a smoke check."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x / x.abs().sum(dim=1, keepdim=True))


def mlp(seed: int, width: int = 16) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.ReLU(),
                               torch.nn.Linear(width, 3)).eval()


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[str, Bundle]:
    """``v1``, ``v2`` (same model name, other weights), ``nan`` (v3, fails its smoke
    check) and ``big`` (v4, about 8 MB: long enough on a rate-limited link to drop twice)."""
    root = tmp_path_factory.mktemp("edge-bundles")
    x = torch.randn(2, 8)
    return {
        "v1": bundle(mlp(1), x, root / "v1", name="mlp", version=1),
        "v2": bundle(mlp(2), x, root / "v2", name="mlp", version=2),
        "nan": bundle(NaNModel(), x, root / "nan", name="mlp", version=3),
        "big": bundle(mlp(4, width=1 << 17), x, root / "big", name="mlp", version=4),
    }


#: Fast checks for tests: a short watch, a quick stall detection, snapshots every second.
OPTIONS: dict[str, Any] = {"rollout": {"watch_s": 2, "stall_timeout_s": 2,
                                       "health_timeout_s": 120},
                           "buffer": {"sample_interval_s": 1}}


@pytest.fixture
def agent_factory(tmp_path, hybridnb_home) -> Iterator[Callable[..., AgentProcess]]:
    """``agent_factory(**start_agent kwargs)``: agents stopped (and checked) at the end."""
    started: list[AgentProcess] = []

    def start(**kwargs: Any) -> AgentProcess:
        kwargs.setdefault("options", OPTIONS)
        state = kwargs.pop("state_dir", tmp_path / f"agent{len(started)}")
        agent = start_agent(state, **kwargs)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        assert agent.stop() == 0, agent.log_tail()


def infer_body(x: list[list[float]]) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": [len(x), len(x[0])], "datatype": "FP32",
                        "data": [v for row in x for v in row]}]}


class LocalClients:
    """Clients on the edge host sending inference requests until told to stop.

    Runs ``_client.py`` (in a namespace host when ``host`` is given); :meth:`stop` returns
    its counts: ``ok``, ``failed`` (with the first errors) and answers per model version.
    """

    def __init__(self, url: str, workdir: Path, *, host: Any = None, concurrency: int = 4,
                 pause: float = 0.0, token: str | None = None):
        self.stop_file = workdir / "clients.stop"
        self.out = workdir / "clients.json"
        self.stop_file.unlink(missing_ok=True)
        self.out.unlink(missing_ok=True)
        cmd = [sys.executable, str(CLIENT), url, str(self.stop_file), str(self.out),
               "--concurrency", str(concurrency), "--pause", str(pause)]
        env = {**os.environ, **({"CLIENT_TOKEN": token} if token else {})}
        self.proc = subprocess.Popen(host.command(cmd) if host is not None else cmd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def stop(self, timeout: float = 60.0) -> dict[str, Any]:
        self.stop_file.write_text("stop")
        out, _ = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, out.decode(errors="replace")
        result: dict[str, Any] = json.loads(self.out.read_text())
        return result

    def progress(self) -> int:
        """Requests answered so far (the client writes a count every 0.2 s)."""
        try:
            return int(json.loads(self.out.with_suffix(".progress").read_text())["done"])
        except (OSError, ValueError, KeyError):
            return 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()

"""``deploy()`` and the :class:`Endpoint` it returns: the notebook's handle on a deployment.

>>> import tempfile, torch
>>> from hybridnb.serve.model_bundle import bundle
>>> b = bundle(torch.nn.Linear(2, 1), torch.zeros(1, 2), tempfile.mkdtemp() + "/m")
>>> with deploy(b.path, replicas=1, record=False) as ep:  # doctest: +SKIP
...     ep.predict([[1.0, 2.0]]).shape
(1, 1)
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from html import escape
from typing import Any

from .. import lifecycle, team
from ..errors import OperationError, UsageError
from ..processes import tail
from ..state import StateStore
from .autoscale import AutoscalePolicy
from .deployment import Deployment
from .model_bundle import Bundle, load_bundle
from .settings import ServeSettings

logger = logging.getLogger(__name__)


class Endpoint:
    """A deployed model: replicas behind a router, on ``url``.

    Use it as a context manager, or call :meth:`close`; it warns (``ResourceWarning``)
    when garbage-collected while it still runs, and one still open at interpreter exit
    is closed then (:mod:`hybridnb.lifecycle`), replicas included.
    """

    def __init__(self, deployment: Deployment, bundle: Bundle,
                 on_close: Callable[[str], None] | None = None):
        self._d = deployment
        self.bundle = bundle
        self._client: Any = None
        self._on_close = on_close  # tells the team ledger it stopped
        lifecycle.close_at_exit(self)

    @property
    def url(self) -> str:
        return self._d.url

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._d.token}"} if self._d.token else {}

    @property
    def closed(self) -> bool:
        return self._d._closed

    def _http(self) -> Any:
        import httpx

        if self._client is None:
            self._client = httpx.Client(base_url=self.url, headers=self.headers, timeout=60)
        return self._client

    def predict(self, x: Any) -> Any:
        """Send a batch (numpy, torch, or nested lists) through the router; numpy back.

        Uses the Open Inference Protocol v2 with binary tensor data, as Triton's
        clients do.
        """
        import numpy as np
        import orjson

        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        spec = self.bundle.input
        arr = np.ascontiguousarray(np.asarray(x, dtype=spec.dtype))
        if arr.ndim == len(spec.shape) - 1:
            arr = arr[None]
        raw = arr.tobytes()
        head = orjson.dumps({"inputs": [{"name": spec.name, "shape": list(arr.shape),
                                         "datatype": spec.datatype,
                                         "parameters": {"binary_data_size": len(raw)}}],
                             "parameters": {"binary_data_output": True}})
        r = self._http().post(f"/v2/models/{self.bundle.name}/infer", content=head + raw,
                              headers={"Inference-Header-Content-Length": str(len(head)),
                                       "Content-Type": "application/octet-stream"})
        if r.status_code != 200:
            raise OperationError(f"the endpoint answered {r.status_code}: {r.text[:300]}")
        n = int(r.headers["inference-header-content-length"])
        doc = orjson.loads(r.content[:n])
        out = doc["outputs"][0]
        return np.frombuffer(r.content[n:], dtype=self.bundle.output.dtype).reshape(out["shape"])

    def scale(self, n: int) -> Endpoint:
        """Run ``n`` stable replicas (clamped to the autoscaler's bounds, if any)."""
        self._d.scale(n)
        return self

    def canary(self, bundle: str | os.PathLike[str] | Bundle, percent: float = 10,
               replicas: int = 1) -> Endpoint:
        """Deploy ``bundle`` beside the current version and send it ``percent`` % of traffic."""
        path = bundle.path if isinstance(bundle, Bundle) else bundle
        new = load_bundle(path)
        if new.name != self.bundle.name or new.input != self.bundle.input:
            raise UsageError(f"the canary serves {new.name!r} {new.input}; the endpoint "
                             f"serves {self.bundle.name!r} {self.bundle.input}")
        self._d.canary(path, percent, replicas)
        return self

    def promote(self) -> Endpoint:
        """The canary becomes the stable version."""
        path = self._d.bundles["canary"]
        self._d.promote()
        if path is not None:
            self.bundle = load_bundle(path)
        return self

    def rollback(self) -> Endpoint:
        """Stop the canary."""
        self._d.rollback()
        return self

    def status(self) -> dict[str, Any]:
        """Replicas (health, in flight, latency), policy, canary share and record id."""
        reps = [r.to_dict() for r in self._d.pool.replicas]
        return {"url": self.url, "model": self.bundle.name, "version": self.bundle.version,
                "routing": self._d.routing, "replicas": reps,
                "healthy": sum(r["healthy"] for r in reps), "wanted": dict(self._d.wanted),
                "in_flight": sum(r["in_flight"] for r in reps),
                "canary_percent": self._d.pool.canary_percent,
                "autoscale": self._d.autoscale.to_dict() if self._d.autoscale else None,
                "record": self._d.record_id, "closed": self.closed}

    def metrics(self) -> dict[str, Any]:
        """Samples from ``/metrics`` of the router and every replica, parsed.

        ``{"router": {"name{labels}": value}, "replicas": {index: {...}}}``.
        """
        import httpx

        out: dict[str, Any] = {"router": _parse(self._http().get("/metrics").text),
                               "replicas": {}}
        for rep in self._d.pool.replicas:
            try:
                out["replicas"][rep.index] = _parse(httpx.get(
                    rep.url + "/metrics", headers=self.headers).text)
            except httpx.TransportError:
                out["replicas"][rep.index] = {}
        return out

    def logs(self, lines: int = 50) -> dict[str, str]:
        """The last ``lines`` of each replica's log, by replica index, plus the events."""
        logs = {f"replica-{r.index}": tail(r.process.log, lines)
                for r in self._d.pool.replicas if r.process is not None}
        logs["events"] = "\n".join(m for _, m in self._d.events[-lines:])
        return logs

    def close(self) -> None:
        """Stop the router and the replicas."""
        lifecycle.forget(self)
        if self._client is not None:
            self._client.close()
            self._client = None
        if not self.closed:
            self._d.close()
        if self._on_close is not None:
            self._on_close("stopped")

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        d = getattr(self, "_d", None)
        if d is not None and not d._closed and d.router is not None:
            warnings.warn(f"{self!r} was never closed; closing it now", ResourceWarning,
                          stacklevel=1)
            if sys.is_finalizing() or lifecycle.exiting():
                return  # thread pools are gone; the exit hook closed what it could
            try:
                d.close()
            except Exception:
                logger.debug("closing %r from __del__ failed", self, exc_info=True)

    def __repr__(self) -> str:
        s = self._d
        state = "closed" if s._closed else f"{len(s.pool.healthy())}/{len(s.pool.replicas)} healthy"
        canary = f", canary {s.pool.canary_percent:g} %" if s.bundles["canary"] else ""
        return f"Endpoint({self.bundle.name!r}, {self.url}, {s.routing}, {state}{canary})"

    def _repr_html_(self) -> str:
        st = self.status()
        rows = "".join(
            f"<tr><td>{r['index']}</td><td>{escape(r['track'])}</td><td>{escape(r['url'])}</td>"
            f"<td>{'✔' if r['healthy'] else '✘'}</td><td>{r['in_flight']}</td>"
            f"<td>{r['ewma_ms']}</td></tr>" for r in st["replicas"])
        return (f"<b>Endpoint {escape(st['model'])}</b> at <code>{escape(st['url'])}</code> "
                f"({escape(st['routing'])}, canary {st['canary_percent']:g} %)"
                "<table><tr><th>#</th><th>track</th><th>url</th><th>ready</th>"
                f"<th>in flight</th><th>EWMA ms</th></tr>{rows}</table>")


def _parse(text: str) -> dict[str, float]:
    # The one parser of Prometheus text (the collector's): names as exposed, as a
    # Prometheus server stores them.
    from ..exposition import parse

    out: dict[str, float] = {}
    for name, sample_labels, value in parse(text):
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample_labels.items()))
        out[f"{name}{{{labels}}}" if labels else name] = value
    return out


def deploy(bundle: str | os.PathLike[str] | Bundle, site: str = "local", replicas: int = 2,
           *, batching: bool | None = None,
           autoscale: AutoscalePolicy | Mapping[str, Any] | None = None,
           routing: str = "round_robin", token: str | None = None,
           store: StateStore | None = None, settings: ServeSettings | None = None,
           name: str | None = None, record: bool = True, port: int = 0) -> Endpoint:
    """Deploy a bundle: ``replicas`` server processes behind a router.

    Parameters
    ----------
    bundle:
        A bundle or its directory.
    site:
        ``"local"`` (this machine). For Kubernetes or nginx hosts, render manifests with
        :mod:`hybridnb.serve.render` (``hybridnb deploy --render``).
    replicas:
        Replicas to start with.
    batching:
        Overrides ``settings.batching`` when given.
    autoscale:
        ``None``, or ``{"min", "max", "target_in_flight", "upscale_delay_s",
        "downscale_delay_s"}`` (see :class:`~hybridnb.serve.autoscale.AutoscalePolicy`).
    routing:
        ``round_robin``, ``least_connections``, ``least_response_time`` or
        ``power_of_two``.
    token:
        Bearer token, checked at the router and at each replica.
    store, record:
        The state store (default: the user's); ``record=False`` skips recording.
    port:
        The router's port on 127.0.0.1 (``0``: a free one; :attr:`Endpoint.url` says
        which). The replicas take free ports of their own.
    """
    if site != "local":
        raise UsageError(f"deploy() starts local deployments only; for site {site!r} "
                         "render manifests: hybridnb deploy BUNDLE --site "
                         f"{site} --render kubernetes|nginx|edge --out DIR")
    loaded = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    settings = settings or ServeSettings()
    if batching is not None:
        settings = settings.replace(batching=batching)
    dep = Deployment(loaded.path, replicas=replicas, settings=settings,
                     autoscale=dict(autoscale) if isinstance(autoscale, Mapping) else autoscale,
                     routing=routing, token=token or team.endpoint_token(), store=store,
                     name=name or loaded.name, record=record, port=port)  # per-user token in a hub
    lease = team.admit("endpoint", site, {"cpus": replicas}, name=dep.name)  # team quotas
    try:
        return Endpoint(dep.start(), loaded, on_close=lease.release)
    except BaseException:
        lease.release("failed")
        raise

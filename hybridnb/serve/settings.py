"""How one endpoint server behaves under load: the one place its defaults live."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..errors import UsageError


@dataclass(frozen=True)
class ServeSettings:
    """Batching, admission, limits and auth of one server.

    Parameters
    ----------
    max_batch_size:
        Rows per model call. A request's own batch counts; a request with more rows is
        split into consecutive batches of at most this many rows, and its answer has
        all rows in order (as TorchServe does; Triton refuses such a request). Its size
        is bounded by ``max_body_bytes`` and its time by ``request_timeout_s``.
    max_latency_ms:
        How long the first request of a batch waits for company. ``0`` takes only what
        is already queued.
    batching:
        ``False`` runs every request alone (still in the one model thread).
    max_in_flight:
        Requests in the model call that is running (a batch holds at most this many).
    max_queue:
        Admitted requests waiting for the model. Beyond ``max_in_flight + max_queue``
        requests are refused at once with 503 and ``Retry-After``. A deployment's router
        admits as many per replica, so it never holds more than its replicas can take.
    request_timeout_s:
        A request still waiting after this long gets 504 and frees its slot. A
        deployment's router waits a little longer for a replica (its 504 comes first),
        then answers 504 itself; either way the request is not sent again.
    max_body_bytes:
        Larger request bodies get 413, at a replica and at a deployment's router.
    token:
        Bearer token for inference and metadata routes; ``None`` reads
        ``$HYBRIDNB_ENDPOINT_TOKEN``. Required when bound to a non-loopback address.
    metrics_auth:
        ``/metrics`` asks for the token too (when there is one). Off by default: metrics
        carry counts and latencies, never inputs or outputs, and scrapers (hybridnb's
        collector, a Prometheus given the targets) do not hold endpoint tokens; keep
        ``/metrics`` off public routes instead (an Ingress should not route it).
        Turn it on where the port itself is reachable by others, and give the scraper
        the token (Prometheus: ``authorization: {credentials: ...}``).
    threads:
        ``torch.set_num_threads`` for the model thread (``None``: leave torch's choice).
    drain_timeout_s:
        On SIGTERM, how long in-flight requests may take before the server exits.
    inline_max_ms:
        With batching off, a model whose one-row call takes less than this (measured at
        start) runs on the event loop instead of the model thread: no thread hop, but
        ``request_timeout_s`` cannot interrupt it. ``0`` always uses the model thread.
    cache_size:
        Answers kept in an LRU cache keyed by the input's bytes (``0``: no cache). Only
        for deterministic models; the output is shared, never recomputed.

    >>> ServeSettings(max_batch_size=8).replace(batching=False).batching
    False
    """

    max_batch_size: int = 64
    max_latency_ms: float = 2.0
    batching: bool = True
    max_in_flight: int = 64
    max_queue: int = 256
    request_timeout_s: float = 30.0
    max_body_bytes: int = 8 << 20
    token: str | None = None
    metrics_auth: bool = False
    retry_after_s: int = 1
    threads: int | None = None
    drain_timeout_s: float = 30.0
    inline_max_ms: float = 1.0
    cache_size: int = 0

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_in_flight", "max_body_bytes", "retry_after_s"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("max_latency_ms", "max_queue", "request_timeout_s", "drain_timeout_s",
                     "inline_max_ms", "cache_size"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must not be negative, got {getattr(self, name)!r}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be at least 1, got {self.threads!r}")

    def replace(self, **changes: Any) -> ServeSettings:
        """A copy with ``changes``."""
        return replace(self, **changes)

    def to_dict(self, *, secrets: bool = False) -> dict[str, Any]:
        """The settings as plain values; the token is left out unless ``secrets``."""
        data = asdict(self)
        if not secrets:
            data.pop("token")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServeSettings:
        """Settings from plain values; unknown keys are a :class:`UsageError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown serve setting(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
        return cls(**data)

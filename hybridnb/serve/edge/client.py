"""The central side of an edge site: a client of its agent, and :func:`push`.

:func:`push` sends a bundle to an edge site over a thin link that may drop at any time:

- each file is a blob named by its SHA-256 (the bundle records them); a file the edge
  already holds is not sent again, whichever version it came with;
- a transfer that stalls for ``stall_timeout_s`` (the link dropped) is abandoned and
  resumed, once the agent answers again, from the offset the agent has on disk;
- the agent hashes each blob when its last byte is in, and refuses (deletes) a wrong
  one before anything can serve it: the push then sends that file again, twice at most;
- then the agent stages, checks and switches by itself (:mod:`.supervisor`); the push
  only polls for the outcome, through outages too, until ``deadline_s``.

>>> report = push("models/mlp", site="shop")                     # doctest: +SKIP
>>> report.state, report.bytes_sent, report.interruptions        # doctest: +SKIP
('active', 26214612, 2)
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import OperationError, UsageError
from ...fileio import sha256_file
from ..auth import is_loopback
from .tls import TOKEN_ENV, client_context, read_token
from .wire import (
    AgentStatus,
    BlobPhase,
    BlobState,
    FileEntry,
    RecordsPage,
    RolloutPhase,
    RolloutRequest,
    RolloutStatus,
)

if TYPE_CHECKING:
    import httpx

    from ...config import HybridConfig
    from ...config.models import EdgeRolloutPolicy, Site

logger = logging.getLogger(__name__)

META_FILE = "hybridnb-model.json"
BLOCK = 256 << 10


class Unreachable(OperationError):
    """The agent did not answer (the link is down, or nothing listens there)."""


class AgentError(OperationError):
    """The agent answered with an error; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


def manifest_of(bundle: str | os.PathLike[str], *, verify: bool = True
                ) -> tuple[RolloutRequest, dict[str, Path]]:
    """The rollout manifest of a bundle directory, and each file's path.

    ``verify`` loads it with :func:`~hybridnb.serve.model_bundle.load_bundle` first (every
    digest, the graph, a zero-input run): a corrupt bundle is refused before a byte of it
    crosses the link.
    """
    root = Path(bundle)
    if verify:
        from ..model_bundle import load_bundle

        load_bundle(root)
    try:
        meta = json.loads((root / META_FILE).read_text())
        recorded = dict(meta["files"])
        name, version, content_hash = str(meta["name"]), str(meta["version"]), \
            str(meta["content_hash"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{root / META_FILE}: not a model bundle's metadata ({exc})") from None
    paths = {META_FILE: root / META_FILE, **{str(n): root / str(n) for n in recorded}}
    files = {}
    for n, path in paths.items():
        if not path.is_file():
            raise UsageError(f"{path}: no such file; the bundle is incomplete")
        digest = recorded.get(n) if n != META_FILE else sha256_file(path)
        files[n] = FileEntry(sha256=str(digest), size=path.stat().st_size)
    req = RolloutRequest(name=name, version=version, content_hash=content_hash, files=files)
    return req, paths


class EdgeClient:
    """HTTP client of one edge agent: pinned TLS, bearer token, short timeouts.

    Parameters
    ----------
    url:
        ``https://host:port`` of the agent's control port (``http://`` on loopback only).
    token:
        The agent's token.
    cert:
        The agent's certificate (PEM text or a file path): the only one trusted.
    fingerprint:
        ``sha256:HEX`` the certificate must have.
    timeout:
        Seconds to connect and for an answer to a small request.
    stall_timeout:
        Seconds a transfer may make no progress before it is abandoned (and resumed).
    """

    def __init__(self, url: str, *, token: str, cert: str | os.PathLike[str] | None = None,
                 fingerprint: str | None = None, timeout: float = 10.0,
                 stall_timeout: float = 10.0):
        import httpx

        self.url = url.rstrip("/")
        parts = httpx.URL(self.url)
        verify: Any = True
        if parts.scheme == "https":
            if cert is None:
                raise UsageError(f"{url}: give the agent's certificate (cert=) to pin it")
            pem = str(cert)
            if "-----BEGIN" not in pem:
                try:
                    pem = Path(pem).expanduser().read_text()
                except OSError as exc:
                    raise UsageError(f"agent certificate {cert}: {exc.strerror}") from None
            verify = client_context(pem, fingerprint)
        elif not is_loopback(parts.host):
            raise UsageError(f"{url}: plain HTTP beyond loopback would send the agent's "
                             "token in clear; use https:// with the agent's certificate")
        self.timeout = timeout
        self.stall_timeout = stall_timeout
        self._http = httpx.Client(base_url=self.url, verify=verify,
                                  headers={"Authorization": f"Bearer {token}"},
                                  timeout=httpx.Timeout(timeout))

    @classmethod
    def for_site(cls, site: Site, *, token: str | None = None, timeout: float = 10.0
                 ) -> EdgeClient:
        """The client of ``site``'s agent (``sites.NAME.edge.agent``).

        The token: ``token``, else ``agent.token_file``, else ``$HYBRIDNB_EDGE_TOKEN``.
        """
        agent = site.edge.agent if site.edge is not None else None
        if agent is None:
            raise UsageError(f"site {site.name!r} has no edge agent: add "
                             f"'edge: {{agent: {{address: HOST, cert: PEM}}}}' under "
                             f"sites.{site.name}")
        if token is None and agent.token_file:
            token = read_token(agent.token_file)
        token = token or os.environ.get(TOKEN_ENV)
        if not token:
            raise UsageError(f"no token for the agent of site {site.name!r}: set "
                             f"sites.{site.name}.edge.agent.token_file or ${TOKEN_ENV}")
        assert site.edge is not None
        return cls(agent.url, token=token,
                   cert=Path(agent.cert).expanduser() if agent.cert else None,
                   fingerprint=agent.fingerprint, timeout=timeout,
                   stall_timeout=site.edge.rollout.stall_timeout_s)

    def __repr__(self) -> str:
        return f"EdgeClient({self.url})"

    # -- plumbing --------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(f"the edge agent at {self.url} is unreachable: "
                              f"{type(exc).__name__}: {exc}") from None
        if r.status_code >= 400:
            try:
                message = str(r.json().get("error", r.text))
            except ValueError:
                message = r.text[:500]
            raise AgentError(r.status_code, f"the edge agent answered {r.status_code}: "
                                            f"{message}")
        return r

    # -- routes ----------------------------------------------------------------------

    def status(self) -> AgentStatus:
        """The agent's status (what serves, the rollout, the buffer)."""
        return AgentStatus.model_validate_json(self._request("GET", "/edge/v1/status").content)

    def blob(self, digest: str) -> dict[str, Any]:
        """How much of a blob the agent holds (``state``, ``offset``, upload counters)."""
        data: dict[str, Any] = self._request("GET", f"/edge/v1/blobs/{digest}").json()
        return data

    def upload(self, entry: FileEntry, path: Path, offset: int,
               on_bytes: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Send ``path`` from ``offset`` to the end as blob ``entry.sha256``."""
        import httpx

        def body() -> Iterator[bytes]:
            with open(path, "rb") as fh:
                fh.seek(offset)
                for block in iter(lambda: fh.read(BLOCK), b""):
                    if on_bytes is not None:
                        on_bytes(len(block))
                    yield block

        # A socket write that waits stall_timeout means the link is gone; the agent's
        # final hash of a big blob may take a while, hence the longer read timeout.
        timeout = httpx.Timeout(self.timeout, write=self.stall_timeout,
                                read=max(self.stall_timeout, 120.0))
        data: dict[str, Any] = self._request(
            "PUT", f"/edge/v1/blobs/{entry.sha256}", params={"offset": offset,
                                                              "size": entry.size},
            content=body(), timeout=timeout,
            headers={"Content-Length": str(entry.size - offset),
                     "Content-Type": "application/octet-stream"}).json()
        return data

    def rollout(self, req: RolloutRequest) -> RolloutStatus:
        """Ask the agent to roll ``req`` out (its blobs must be there)."""
        r = self._request("POST", "/edge/v1/rollouts", content=req.model_dump_json(),
                          headers={"Content-Type": "application/json"})
        return RolloutStatus.model_validate_json(r.content)

    def rollout_status(self, rollout_id: str) -> RolloutStatus:
        r = self._request("GET", f"/edge/v1/rollouts/{rollout_id}")
        return RolloutStatus.model_validate_json(r.content)

    def records(self, after: int = 0, *, epoch: str | None = None, limit: int = 5000
                ) -> RecordsPage:
        """Buffered records numbered above ``after`` (all of another ``epoch``)."""
        params: dict[str, Any] = {"after": after, "limit": limit}
        if epoch:
            params["epoch"] = epoch
        r = self._request("GET", "/edge/v1/records", params=params)
        return RecordsPage.model_validate_json(r.content)

    def ack(self, epoch: str, through: int) -> int:
        """Let the agent delete records up to ``through``; returns how many it deleted."""
        r = self._request("POST", "/edge/v1/ack", json={"epoch": epoch, "through": through})
        return int(r.json()["deleted"])

    def metrics(self) -> str:
        """The agent's ``/metrics`` text."""
        return self._request("GET", "/metrics").text

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EdgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class RolloutReport:
    """What a :func:`push` did: bytes, interruptions, the agent's checks and outcome."""

    site: str
    name: str
    version: str
    content_hash: str
    state: str = "pending"
    reason: str = ""
    bytes_total: int = 0
    bytes_sent: int = 0
    bytes_skipped: int = 0
    interruptions: int = 0
    corrupt_refused: int = 0
    transfer_seconds: float = 0.0
    seconds: float = 0.0
    checks: list[dict[str, Any]] = field(default_factory=list)
    rollout_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == RolloutPhase.active.value

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    def __repr__(self) -> str:
        return (f"RolloutReport({self.name!r} v{self.version} -> {self.site}: {self.state}, "
                f"{self.bytes_sent}/{self.bytes_total} bytes sent, "
                f"{self.interruptions} interruptions, {self.seconds:.1f} s)")

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{escape(c['name'])}</td><td>{'ok' if c['ok'] else 'FAILED'}</td>"
            f"<td>{c['seconds']:.2f} s</td><td>{escape(c['detail'][:200])}</td></tr>"
            for c in self.checks)
        return (f"<p><b>{escape(self.name)} v{escape(self.version)} → {escape(self.site)}: "
                f"{escape(self.state)}</b> {escape(self.reason[:300])}<br>"
                f"{self.bytes_sent:,} of {self.bytes_total:,} bytes sent "
                f"({self.bytes_skipped:,} already there), {self.interruptions} "
                f"interruption(s), transfer {self.transfer_seconds:.1f} s, total "
                f"{self.seconds:.1f} s</p><table><tr><th>check</th><th>result</th>"
                f"<th>time</th><th>detail</th></tr>{rows}</table>")


class CorruptTransfer(OperationError):
    """A file kept arriving with the wrong digest (corrupt at the source, or on the way)."""


class RolloutError(OperationError):
    """A push ended without the new version serving; ``report`` says why."""

    def __init__(self, report: RolloutReport):
        self.report = report
        super().__init__(f"rollout of {report.name} v{report.version} to {report.site}: "
                         f"{report.state}: {report.reason}")


def _deadline(policy: EdgeRolloutPolicy | None, site: Site | None, total: int) -> float:
    if policy is not None and policy.deadline_s is not None:
        return policy.deadline_s
    mbps = site.link_mbps if site is not None else 1000.0
    availability = site.edge.link.availability if site is not None and site.edge else 1.0
    return total * 8 / (mbps * 1e6) / availability * 4 + 600.0


def push(bundle: str | os.PathLike[str], site: str | Site | None = None, *,
         client: EdgeClient | None = None, config: HybridConfig | None = None,
         token: str | None = None, deadline_s: float | None = None, check: bool = True,
         verify: bool = True, poll_s: float = 0.5,
         on_progress: Callable[[RolloutReport], None] | None = None) -> RolloutReport:
    """Send ``bundle`` to an edge site and have it serve there; return what happened.

    Parameters
    ----------
    bundle:
        The bundle directory.
    site:
        The edge site (a name in the configuration, or a :class:`~hybridnb.config.Site`);
        its ``edge`` section gives the agent, the link and the rollout policy.
    client:
        An :class:`EdgeClient` instead of the site's agent (``site`` then only names it).
    deadline_s:
        Seconds to keep retrying through outages (default: from the policy, or the
        transfer time at the link's bandwidth and availability, x4, plus 10 minutes).
    check:
        Raise :class:`RolloutError` unless the new version ends up serving.
    verify:
        Load the bundle here first (:func:`manifest_of`).
    on_progress:
        Called with the report as bytes go out and the rollout advances.
    """
    site_obj: Site | None = None
    if site is not None and not isinstance(site, str):
        site_obj = site
    elif client is None:
        from ...config import load_config

        if site is None:
            raise UsageError("push needs site= (an edge site's name) or client=")
        site_obj = (config or load_config()).site(site)
    own = client is None
    if client is None:
        assert site_obj is not None
        client = EdgeClient.for_site(site_obj, token=token)
    policy = site_obj.edge.rollout if site_obj is not None and site_obj.edge else None
    req, paths = manifest_of(bundle, verify=verify)
    name = site_obj.name if site_obj is not None else str(site or client.url)
    report = RolloutReport(site=name, name=req.name, version=req.version,
                           content_hash=req.content_hash, bytes_total=req.total_bytes)
    limit = deadline_s if deadline_s is not None else _deadline(policy, site_obj,
                                                                 req.total_bytes)
    start = time.monotonic()
    deadline = start + limit
    try:
        for file_name, entry in sorted(req.files.items(), key=lambda kv: kv[1].size):
            _send(client, entry, paths[file_name], deadline, report, on_progress)
        report.transfer_seconds = time.monotonic() - start
        status = _activate(client, req, deadline, report, poll_s, on_progress)
        report.state, report.reason = status.state.value, status.reason
        report.checks = [c.model_dump() for c in status.checks]
    except TimeoutError as exc:
        report.state, report.reason = "timed_out", str(exc)
    except CorruptTransfer as exc:
        report.state, report.reason = RolloutPhase.refused.value, str(exc)
    except OperationError as exc:  # the agent refused a request (a wrong token...)
        report.state, report.reason = "failed", str(exc)
    finally:
        report.seconds = time.monotonic() - start
        if own:
            client.close()
    logger.info("%r", report)
    if check and not report.ok:
        raise RolloutError(report)
    return report


def _wait(deadline: float, attempt: int, what: str) -> None:
    pause = min(0.25 * 2 ** min(attempt, 4), 4.0)
    if time.monotonic() + pause > deadline:
        raise TimeoutError(f"gave up {what}: the edge agent did not answer before the "
                           "deadline")
    time.sleep(pause)


def _send(client: EdgeClient, entry: FileEntry, path: Path, deadline: float,
          report: RolloutReport, on_progress: Callable[[RolloutReport], None] | None) -> None:
    attempt = 0
    first = True

    def sent(n: int) -> None:
        report.bytes_sent += n
        if on_progress is not None:
            on_progress(report)

    while True:
        try:
            state = BlobState.model_validate({k: v for k, v in client.blob(entry.sha256).items()
                                              if k in BlobState.model_fields})
            if state.state is BlobPhase.complete:
                if first:
                    report.bytes_skipped += entry.size
                return
            first = False
            done = client.upload(entry, path, state.offset, sent)
            if done.get("state") == BlobPhase.complete.value:
                return
            attempt = 0  # progress was made: the link works, keep going at once
        except Unreachable as exc:
            first = False
            report.interruptions += 1
            logger.info("transfer of %s… interrupted (%s); resuming", entry.sha256[:12], exc)
            _wait(deadline, attempt, f"sending {path.name}")
            attempt += 1
        except AgentError as exc:
            first = False
            if exc.status == 409:  # another session's offset: ask again
                continue
            if exc.status == 422 and "hash to" in str(exc):
                report.corrupt_refused += 1
                if report.corrupt_refused > 2:
                    raise CorruptTransfer(f"{path.name} arrived corrupt 3 times: {exc}") from None
                continue
            raise


def _activate(client: EdgeClient, req: RolloutRequest, deadline: float,
              report: RolloutReport, poll_s: float,
              on_progress: Callable[[RolloutReport], None] | None) -> RolloutStatus:
    asked_at = time.time()
    status: RolloutStatus | None = None
    attempt = 0
    while status is None:
        try:
            if attempt:
                # The first POST may have arrived with its answer lost: adopt that rollout.
                current = client.status().rollout
                if current is not None and current.content_hash == req.content_hash \
                        and current.started_at >= asked_at - 1:
                    status = current
                    break
            status = client.rollout(req)
        except Unreachable:
            report.interruptions += 1
            _wait(deadline, attempt, "starting the rollout")
            attempt += 1
        except AgentError as exc:
            if exc.status != 409:
                raise
            _wait(deadline, attempt, "waiting for the agent's previous rollout")
            attempt += 1
    report.rollout_id = status.id
    attempt = 0
    while not status.state.final:
        report.state = status.state.value
        if on_progress is not None:
            on_progress(report)
        if time.monotonic() > deadline:
            raise TimeoutError(f"the rollout was still {status.state.value} at the deadline")
        time.sleep(poll_s)
        try:
            status = client.rollout_status(status.id)
            attempt = 0
        except Unreachable:
            report.interruptions += 1
            _wait(deadline, attempt, "waiting for the rollout")
            attempt += 1
    return status

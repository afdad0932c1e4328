"""Versions on an edge machine: stage beside the old one, check, switch, roll back alone.

A rollout (:meth:`Supervisor.begin`) runs on the edge, in a thread of the agent, so it
finishes or undoes itself whatever the link does meanwhile:

1. **stage**: every file's blob is re-hashed (a disk may rot), the bundle's own
   ``hybridnb-model.json`` must record those digests and the announced content hash;
   the files are linked into ``versions/ID`` beside the running version. Anything
   wrong: *refused*, nothing started.
2. **start**: a replica of the new version (``hybridnb.serve.server`` on an ephemeral
   loopback port) loads the bundle with :func:`~hybridnb.serve.model_bundle.load_bundle`
   (every digest, the graph, a zero-input run) and must answer its own
   ``/v2/health/ready`` within ``health_timeout_s``.
3. **check**: a smoke request (zeros of the declared input shape) must come back 200,
   with the declared output shape and finite values.
4. **switch**: the front (:mod:`.front`) sends new requests to the new replica (one
   assignment); requests already at the old one finish there.
5. **watch**: for ``watch_s`` the old replica stays warm while the new one must stay
   alive, ready and free of transport errors; if not, the front switches back by itself
   (*rolled_back*). Only then is the new version written as the active one in
   ``state.json``: an agent that dies mid-watch comes back on the old version.

A failure in 2-3 is *rolled_back* too (the old version never stopped serving).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ...errors import OperationError, UsageError
from ...fileio import atomic_write_json
from .blobs import BlobStore
from .wire import Check, RolloutPhase, RolloutRequest, RolloutStatus

if TYPE_CHECKING:
    from ...config.models import EdgeRolloutPolicy
    from ..process import ServerProcess
    from .front import Front, Upstream

logger = logging.getLogger(__name__)

T = TypeVar("T")
META_FILE = "hybridnb-model.json"
#: The largest ``hybridnb-model.json`` the agent reads (hostile input is bounded).
MAX_META_BYTES = 4 << 20


class Refused(UsageError):
    """A version that may not be started: a missing or corrupt file, a manifest that lies."""


class Replica:
    """One running version: its server process and the front's upstream for it."""

    def __init__(self, version_id: str, meta: dict[str, Any], process: ServerProcess,
                 upstream: Upstream):
        self.version_id = version_id
        self.meta = meta
        self.process = process
        self.upstream = upstream

    def __repr__(self) -> str:
        return f"Replica({self.version_id}, {self.process.url})"


class Supervisor:
    """Staged versions under ``root``, the replica serving now, and one rollout at a time.

    Parameters
    ----------
    root:
        The agent's state directory (``versions/``, ``manifests/``, ``state.json``).
    blobs:
        Where received files are (:class:`~.blobs.BlobStore`).
    front:
        What local clients talk to; switched between replicas.
    policy:
        Health timeout, watch period, versions kept (``sites.X.edge.rollout``).
    on_result:
        Called with every finished rollout (the agent counts them).
    """

    def __init__(self, root: Path, blobs: BlobStore, front: Front, policy: EdgeRolloutPolicy,
                 *, on_result: Callable[[RolloutStatus], None] | None = None):
        self.root = Path(root)
        self.blobs = blobs
        self.front = front
        self.policy = policy
        self.on_result = on_result
        self.versions = self.root / "versions"
        self.manifests = self.root / "manifests"
        self.versions.mkdir(parents=True, exist_ok=True)
        self.manifests.mkdir(parents=True, exist_ok=True)
        self.active: Replica | None = None
        self.rollout: RolloutStatus | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    # -- state -----------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.error("unreadable %s (%s): starting with no active version",
                         self.state_file, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def _write_state(self, active: str | None) -> None:
        state = self._read_state()
        history = [v for v in state.get("history", []) if v != active]
        if active is not None:
            history.insert(0, active)
        atomic_write_json(self.state_file, {"active": active, "history": history})

    def staged(self) -> list[str]:
        """Version ids on disk, newest first (active first)."""
        history = self._read_state().get("history", [])
        on_disk = {p.name for p in self.versions.iterdir() if p.is_dir()
                   and not p.name.startswith(".")}
        return [v for v in history if v in on_disk] + sorted(on_disk - set(history))

    def restore(self) -> None:
        """Start the version ``state.json`` names active (at agent start)."""
        active = self._read_state().get("active")
        if not active:
            logger.info("no active version yet: waiting for a rollout")
            return
        try:
            meta = self._meta_of(self.versions / active)
            replica = self._start_replica(active, meta)
            self._smoke(replica)
        except (OperationError, UsageError) as exc:
            logger.error("the active version %s does not start: %s", active, exc)
            return
        if self._closed.is_set():  # the agent stopped while this replica started
            replica.process.stop(grace=10.0)
            return
        self.active = replica
        self.front.switch(replica.upstream)
        logger.info("serving %s", active)

    # -- rollouts --------------------------------------------------------------------

    def begin(self, req: RolloutRequest) -> RolloutStatus:
        """Start rolling out ``req`` in the background; its status (poll :attr:`rollout`).

        Raises :class:`Refused` at once when files are missing (nothing is started) and
        :class:`OperationError` while another rollout runs.
        """
        missing = [name for name, f in req.files.items() if not self.blobs.has(f.sha256)]
        if missing:
            raise Refused(f"the agent does not hold {', '.join(sorted(missing))} of "
                          f"{req.name} v{req.version}: upload them first")
        with self._lock:
            if self.rollout is not None and not self.rollout.state.final:
                raise OperationError(f"rollout {self.rollout.id} of "
                                     f"{self.rollout.version_id} is still running "
                                     f"({self.rollout.state.value}); wait for it")
            status = RolloutStatus(
                id=uuid.uuid4().hex[:12], version_id=req.version_id, name=req.name,
                version=req.version, content_hash=req.content_hash,
                state=RolloutPhase.staging,
                previous=self.active.version_id if self.active else None,
                started_at=time.time())
            self.rollout = status
            self._thread = threading.Thread(target=self._run, args=(status, req),
                                            name=f"edge-rollout-{status.id}", daemon=True)
            self._thread.start()
        return status

    def _check(self, status: RolloutStatus, name: str, fn: Callable[[], tuple[str, T]]) -> T:
        """Run one step, record it as a check (its detail, or why it failed)."""
        start = time.perf_counter()
        try:
            detail, value = fn()
        except (OperationError, UsageError) as exc:
            status.checks.append(Check(name=name, ok=False, detail=str(exc)[-2000:],
                                       seconds=time.perf_counter() - start))
            raise
        status.checks.append(Check(name=name, ok=True, detail=detail,
                                   seconds=time.perf_counter() - start))
        return value

    def _run(self, status: RolloutStatus, req: RolloutRequest) -> None:
        outcome, reason = self._attempt(status, req)
        if outcome is not RolloutPhase.active:
            self._discard(req.version_id)
        # Last: whoever polls sees the outcome only once everything is in its place.
        self._finish(status, outcome, reason)

    def _attempt(self, status: RolloutStatus, req: RolloutRequest
                 ) -> tuple[RolloutPhase, str]:
        """The rollout's steps; returns its outcome and why. The old version serves until
        the switch and is switched back to on any failure after it."""
        new: Replica | None = None
        old = self.active
        try:
            if old is not None and old.version_id == req.version_id:
                status.checks.append(Check(name="active", ok=True,
                                           detail="this version is already serving"))
                return RolloutPhase.active, ""
            try:
                path = self._check(status, "stage", lambda: self._stage(req))
            except UsageError as exc:
                return RolloutPhase.refused, str(exc)
            meta = self._meta_of(path)
            status.state = RolloutPhase.starting
            new = started = self._check(status, "ready",
                                        lambda: self._start(req.version_id, meta))
            status.state = RolloutPhase.checking
            self._check(status, "smoke", lambda: (self._smoke(started), None))
            status.state = RolloutPhase.watching
            previous = self.front.switch(started.upstream,
                                         fallback=old.upstream if old else None)
            try:
                self._check(status, "watch", lambda: (self._watch(started), None))
            except (OperationError, UsageError):
                self.front.switch(previous)  # back at once: the old one never stopped
                raise
            self.front.confirm()
            self._write_state(req.version_id)
            self.active = new
            new = None
            if old is not None:
                self._retire(old)
            self._prune()
            return RolloutPhase.active, ""
        except (OperationError, UsageError) as exc:
            return RolloutPhase.rolled_back, str(exc)[-2000:]
        except Exception as exc:  # a bug must still leave the old version serving
            logger.exception("rollout %s failed unexpectedly", status.id)
            return RolloutPhase.rolled_back, f"{type(exc).__name__}: {exc}"
        finally:
            if new is not None:
                self._retire(new)

    def _discard(self, version_id: str) -> None:
        """Remove a version that never became active (its blobs stay for a while: a fixed
        push may reuse most of them)."""
        if version_id in self._read_state().get("history", []):
            return  # a version that served before stays available for rolling back
        shutil.rmtree(self.versions / version_id, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.manifests / f"{version_id}.json").unlink()

    def _finish(self, status: RolloutStatus, state: RolloutPhase, reason: str = "") -> None:
        status.state, status.reason, status.finished_at = state, reason, time.time()
        log = logger.info if state is RolloutPhase.active else logger.warning
        log("rollout %s of %s: %s%s", status.id, status.version_id, state.value,
            f" ({reason.splitlines()[0] if reason else ''})" if reason else "")
        if self.on_result is not None:
            self.on_result(status)

    def wait(self, timeout: float | None = None) -> RolloutStatus | None:
        """Wait for the running rollout to end (tests, the agent's own first rollout)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.rollout

    # -- the steps -------------------------------------------------------------------

    def _stage(self, req: RolloutRequest) -> tuple[str, Path]:
        if META_FILE not in req.files:
            raise Refused(f"the rollout has no {META_FILE}: it is not a model bundle")
        for name, entry in sorted(req.files.items()):
            path = self.blobs.path(entry.sha256)
            if not self.blobs.verify(entry.sha256):
                raise Refused(f"{name} (blob {entry.sha256[:12]}…) is missing or corrupt on "
                              "the edge disk; it was deleted: push again to resend it")
            if path.stat().st_size != entry.size:
                raise Refused(f"{name}: {path.stat().st_size} bytes, the rollout says "
                              f"{entry.size}")
        meta = self._read_meta(self.blobs.path(req.files[META_FILE].sha256))
        recorded = meta.get("files")
        if not isinstance(recorded, dict):
            raise Refused(f"{META_FILE} records no file digests")
        for name, digest in recorded.items():
            sent = req.files.get(str(name))
            if sent is None or sent.sha256 != digest:
                raise Refused(f"{name}: the bundle records digest {str(digest)[:12]}…, "
                              "the rollout sent "
                              f"{sent.sha256[:12] + '…' if sent else 'no such file'}")
        if meta.get("content_hash") != req.content_hash:
            raise Refused(f"the bundle's content hash is {meta.get('content_hash')!r}, the "
                          f"rollout announced {req.content_hash!r}")
        if str(meta.get("name")) != req.name or str(meta.get("version")) != req.version:
            raise Refused(f"the bundle is {meta.get('name')!r} v{meta.get('version')}, the "
                          f"rollout announced {req.name!r} v{req.version}")
        target = self.versions / req.version_id
        if not target.is_dir():
            tmp = self.versions / f".{req.version_id}.tmp-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            try:
                for name, entry in req.files.items():
                    self.blobs.link_into(entry.sha256, tmp / name)
                os.replace(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        atomic_write_json(self.manifests / f"{req.version_id}.json", req.model_dump())
        return f"{len(req.files)} files verified, staged in {target.name}", target

    def _read_meta(self, path: Path) -> dict[str, Any]:
        if path.stat().st_size > MAX_META_BYTES:
            raise Refused(f"{META_FILE} is over {MAX_META_BYTES} bytes")
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise Refused(f"{META_FILE} is not readable JSON: {exc}") from None
        if not isinstance(meta, dict):
            raise Refused(f"{META_FILE} is not a JSON object")
        return meta

    def _meta_of(self, version_dir: Path) -> dict[str, Any]:
        return self._read_meta(version_dir / META_FILE)

    def _start(self, version_id: str, meta: dict[str, Any]) -> tuple[str, Replica]:
        replica = self._start_replica(version_id, meta)
        return f"{replica.process.url} answered /v2/health/ready", replica

    def _start_replica(self, version_id: str, meta: dict[str, Any]) -> Replica:
        from ..process import start_server

        token = secrets.token_urlsafe(24)  # loopback is shared with the machine's users
        process = start_server(self.versions / version_id, token=token, record=False,
                               name=f"edge-{version_id}",
                               timeout=self.policy.health_timeout_s)
        upstream = self.front.upstream(process.url, token, version_id,
                                       str(meta.get("name")), str(meta.get("version")))
        return Replica(version_id, meta, process, upstream)

    def _smoke(self, replica: Replica) -> str:
        import httpx
        import numpy as np

        meta = replica.meta
        spec, out_spec = meta["inputs"][0], meta["outputs"][0]
        shape = [1, *spec["shape"][1:]]
        zeros: list[Any] = [False if spec["datatype"] == "BOOL" else 0] * int(np.prod(shape))
        body = {"inputs": [{"name": spec["name"], "shape": shape,
                            "datatype": spec["datatype"], "data": zeros}]}
        url = f"{replica.process.url}/v2/models/{meta['name']}/infer"
        try:
            r = httpx.post(url, json=body, headers=replica.process.headers,
                           timeout=self.policy.health_timeout_s)
            ready = httpx.get(replica.process.url + "/v2/health/ready", timeout=5.0)
        except httpx.HTTPError as exc:
            raise OperationError(f"the smoke request failed: {exc}") from None
        if r.status_code != 200:
            raise OperationError(f"the smoke request answered {r.status_code}: {r.text[:300]}")
        out = r.json()["outputs"][0]
        want = [1, *out_spec["shape"][1:]]
        if list(out["shape"]) != want:
            raise OperationError(f"the smoke request returned shape {out['shape']}, the "
                                 f"bundle declares {want}")
        values = np.asarray([np.nan if v is None else v for v in out["data"]], dtype=float)
        if not np.isfinite(values).all():
            raise OperationError("the smoke request (zeros) returned non-finite values: the "
                                 "model is broken")
        if ready.status_code != 200:
            raise OperationError(f"/v2/health/ready answered {ready.status_code}")
        return f"zeros{shape} -> {out['shape']}, finite; ready"

    def _watch(self, replica: Replica) -> str:
        import httpx

        errors = replica.upstream.errors
        deadline = time.monotonic() + self.policy.watch_s
        probes = 0
        with httpx.Client(timeout=2.0) as client:
            while True:
                if not replica.process.alive():
                    raise OperationError(f"the new replica exited with code "
                                         f"{replica.process.proc.returncode} after the switch")
                if replica.upstream.errors > errors:
                    raise OperationError(f"{replica.upstream.errors - errors} request(s) "
                                         "could not reach the new replica after the switch")
                try:
                    code = client.get(replica.process.url + "/v2/health/ready").status_code
                except httpx.HTTPError as exc:
                    raise OperationError(f"/v2/health/ready failed after the switch: "
                                         f"{exc}") from None
                if code != 200:
                    raise OperationError(f"/v2/health/ready answered {code} after the switch")
                probes += 1
                if self._closed.is_set():
                    raise OperationError("the agent is stopping: the switch is undone")
                if time.monotonic() >= deadline:
                    return f"{probes} probes over {self.policy.watch_s:g} s"
                time.sleep(0.2)

    def _retire(self, replica: Replica) -> None:
        """Stop ``replica`` once the front sends it nothing and its requests are done."""
        deadline = time.monotonic() + 30.0
        while replica.upstream.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        replica.process.stop(grace=30.0)
        self.front.close_upstream(replica.upstream)

    def _prune(self) -> None:
        """Keep ``keep_versions`` versions (the active one first) and their blobs only."""
        keep = self.staged()[: self.policy.keep_versions]
        for path in self.versions.iterdir():
            if path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)
                with contextlib.suppress(FileNotFoundError):
                    (self.manifests / f"{path.name}.json").unlink()
        digests: set[str] = set()
        for version in keep:
            try:
                req = RolloutRequest.model_validate_json(
                    (self.manifests / f"{version}.json").read_text())
            except (OSError, ValueError):
                continue
            digests |= {f.sha256 for f in req.files.values()}
        self.blobs.gc(digests)

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Stop the replicas (a running rollout ends its watch early and is undone)."""
        self._closed.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=self.policy.health_timeout_s + 60)
        if self.active is not None:
            self.active.process.stop(grace=10.0)
            self.active = None

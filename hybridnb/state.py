"""The record of what this user started: clusters, training runs, endpoints, notebook runs.

State lives in SQLite at ``$HYBRIDNB_HOME/state.db`` (default
``~/.local/share/hybridnb``). Several kernels and CLI processes write at once: the
database runs in WAL mode, every connection waits up to :data:`BUSY_TIMEOUT` seconds
for a lock, and every write is one short ``BEGIN IMMEDIATE`` transaction, so writers
queue instead of failing with "database is locked".

>>> import tempfile, os
>>> store = StateStore(os.path.join(tempfile.mkdtemp(), "state.db"))
>>> rec = store.add(Kind.cluster, "demo", site="local", pids=[os.getpid()])
>>> store.update(rec.id, status=Status.running).status
<Status.running: 'running'>
>>> [r.name for r in store.list(active=True)]
['demo']
"""

from __future__ import annotations

import builtins
import getpass
import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from .waiting import wait_until

BUSY_TIMEOUT = 30.0


class Kind(str, Enum):
    """What a record describes."""

    cluster = "cluster"
    run = "run"  # a training run
    endpoint = "endpoint"
    notebook = "notebook"
    job = "job"  # a queued notebook job (hybridnb.notebooks.jobs)


class Status(str, Enum):
    """Lifecycle of a record: pending → starting → running → (stopping →) an end state."""

    pending = "pending"
    starting = "starting"
    running = "running"
    stopping = "stopping"
    stopped = "stopped"
    succeeded = "succeeded"
    failed = "failed"
    lost = "lost"  # its processes vanished without saying how they ended

    @property
    def active(self) -> bool:
        return self in ACTIVE


ACTIVE = frozenset({Status.pending, Status.starting, Status.running, Status.stopping})


class ProcessRef(BaseModel):
    """A process id with its start time, so a recycled pid is never mistaken for ours."""

    pid: int
    create_time: float | None = None

    @classmethod
    def of(cls, pid: int) -> ProcessRef:
        import psutil

        try:
            return cls(pid=pid, create_time=psutil.Process(pid).create_time())
        except psutil.Error:
            return cls(pid=pid)

    def alive(self) -> bool:
        """Whether this very process still runs (a zombie counts as ended)."""
        import psutil

        try:
            proc = psutil.Process(self.pid)
            if self.create_time is not None and abs(proc.create_time() - self.create_time) > 1:
                return False
            return proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


class Record(BaseModel):
    """One thing the user started; the same shape in the store, on the wire and in the UI."""

    id: str
    kind: Kind
    name: str
    site: str
    backend: str | None = None
    owner: str
    host: str
    status: Status
    pids: list[ProcessRef] = Field(default_factory=list)
    remote_id: str | None = None
    address: str | None = None
    spec: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    updated_at: float

    @property
    def local(self) -> bool:
        """Whether it was started on this host (its pids mean something here)."""
        return self.host == socket.gethostname()

    def __repr__(self) -> str:
        return (f"Record({self.id}, {self.kind.value} {self.name!r} on {self.site}: "
                f"{self.status.value})")


class Event(BaseModel):
    """A status change or note in a record's history."""

    resource_id: str
    ts: float
    status: Status | None = None
    message: str | None = None


_MIGRATIONS: list[str] = [
    # 1: records and their history
    """
    CREATE TABLE resources (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        site TEXT NOT NULL,
        backend TEXT,
        owner TEXT NOT NULL,
        host TEXT NOT NULL,
        status TEXT NOT NULL,
        pids TEXT NOT NULL DEFAULT '[]',
        remote_id TEXT,
        address TEXT,
        spec TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX resources_status ON resources(status);
    CREATE INDEX resources_kind ON resources(kind);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        resource_id TEXT NOT NULL REFERENCES resources(id) ON DELETE CASCADE,
        ts REAL NOT NULL,
        status TEXT,
        message TEXT
    );
    CREATE INDEX events_resource ON events(resource_id);
    """,
]


def state_home() -> Path:
    """``$HYBRIDNB_HOME``, or ``~/.local/share/hybridnb``: where state and logs live."""
    env = os.environ.get("HYBRIDNB_HOME")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "hybridnb"


class StateStore:
    """SQLite-backed record of what was started. Safe for concurrent processes.

    Parameters
    ----------
    path:
        The database file; ``None`` means ``state_home() / "state.db"``.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else state_home() / "state.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    def __repr__(self) -> str:
        return f"StateStore({str(self.path)!r})"

    # -- connections ---------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per operation: cheap for SQLite, and safe across threads and forks.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front: a writer waits in busy_timeout
        # instead of failing half-way when it upgrades a read lock.
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _use_wal(self) -> None:
        # Switching to WAL needs the file to itself, and SQLite answers SQLITE_BUSY at once
        # (no busy_timeout wait) when other processes open a new store at the same moment,
        # e.g. kernels started together. The mode is stored in the file: retry until one
        # opener has switched it and the others see "wal".
        def switched() -> bool:
            with self._connect() as conn:
                try:
                    return bool(conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                                or conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                                == "wal")
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc):
                        raise
                    return False

        try:
            wait_until(switched, timeout=BUSY_TIMEOUT, interval=0.002, backoff=2.0,
                       max_interval=0.1, ignore=(), what="WAL mode")
        except TimeoutError:
            raise sqlite3.OperationalError(
                f"{self.path}: could not switch the state store to WAL mode within "
                f"{BUSY_TIMEOUT:.0f} s; is another program holding it open?") from None

    def _migrate(self) -> None:
        self._use_wal()
        with self._write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={number}")

    # -- records -------------------------------------------------------------------------

    def add(self, kind: Kind | str, name: str, site: str, *, backend: str | None = None,
            pids: Iterable[int | ProcessRef] = (), remote_id: str | None = None,
            address: str | None = None, spec: dict[str, Any] | None = None,
            status: Status | str = Status.starting) -> Record:
        """Record something just started and return its record."""
        kind, status = Kind(kind), Status(status)
        now = time.time()
        rec = Record(
            id=f"{kind.value}-{uuid.uuid4().hex[:10]}", kind=kind, name=name, site=site,
            backend=backend, owner=getpass.getuser(), host=socket.gethostname(),
            status=status, pids=[_ref(p) for p in pids], remote_id=remote_id,
            address=address, spec=spec or {}, created_at=now,
            started_at=now if status is Status.running else None, updated_at=now)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO resources (id, kind, name, site, backend, owner, host, status, "
                "pids, remote_id, address, spec, created_at, started_at, updated_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (rec.id, kind.value, name, site, backend, rec.owner, rec.host, status.value,
                 _pids_json(rec.pids), remote_id, address, json.dumps(rec.spec), now,
                 rec.started_at, now))
            _event(conn, rec.id, now, status, "recorded")
        return rec

    def update(self, id: str, *, status: Status | str | None = None,
               pids: Iterable[int | ProcessRef] | None = None, remote_id: str | None = None,
               address: str | None = None, error: str | None = None,
               spec: dict[str, Any] | None = None, message: str | None = None) -> Record:
        """Change fields of a record; a status change is kept in its history."""
        now = time.time()
        fields: dict[str, Any] = {"updated_at": now}
        new_status = Status(status) if status is not None else None
        if new_status is not None:
            fields["status"] = new_status.value
        if pids is not None:
            fields["pids"] = _pids_json([_ref(p) for p in pids])
        for key, value in (("remote_id", remote_id), ("address", address), ("error", error)):
            if value is not None:
                fields[key] = value
        if spec is not None:
            fields["spec"] = json.dumps(spec)
        with self._write() as conn:
            row = conn.execute("SELECT status, started_at FROM resources WHERE id=?",
                               (id,)).fetchone()
            if row is None:
                raise KeyError(f"no record {id!r} in {self.path}")
            if new_status is Status.running and row["started_at"] is None:
                fields["started_at"] = now
            if new_status is not None and not new_status.active:
                fields["ended_at"] = now
            sets = ", ".join(f"{k}=?" for k in fields)
            conn.execute(f"UPDATE resources SET {sets} WHERE id=?", (*fields.values(), id))
            if (new_status is not None and new_status.value != row["status"]) or message:
                _event(conn, id, now, new_status, message or error)
        return self.get(id)

    def merge_spec(self, id: str, changes: dict[str, Any], *,
                   message: str | None = None) -> Record:
        """Merge ``changes`` into the record's ``spec`` in one transaction.

        Writers of different keys (an owner's status, a surface's desired state) never
        undo each other, as a read in one process and a whole-``spec`` write in another
        could. A value of ``None`` removes its key.
        """
        now = time.time()
        with self._write() as conn:
            row = conn.execute("SELECT spec FROM resources WHERE id=?", (id,)).fetchone()
            if row is None:
                raise KeyError(f"no record {id!r} in {self.path}")
            spec = {**json.loads(row["spec"]), **changes}
            spec = {k: v for k, v in spec.items() if v is not None}
            conn.execute("UPDATE resources SET spec=?, updated_at=? WHERE id=?",
                         (json.dumps(spec), now, id))
            if message:
                _event(conn, id, now, None, message)
        return self.get(id)

    def claim(self, kind: Kind | str, *, owner: str, limit: int,
              busy: Iterable[Status] = (Status.starting, Status.running)) -> Record | None:
        """Move the oldest ``pending`` record of ``kind`` of ``owner`` to ``starting``.

        Only while fewer than ``limit`` of that owner's records of ``kind`` are ``busy``:
        a queue with a concurrency cap. The count and the claim are one ``BEGIN
        IMMEDIATE`` transaction, so concurrent claimers (several processes finishing at
        once) never start more than ``limit``. Returns the claimed record, or ``None``.
        """
        kind = Kind(kind)
        busy_values = [Status(s).value for s in busy]
        now = time.time()
        with self._write() as conn:
            marks = ",".join("?" * len(busy_values))
            running = conn.execute(
                f"SELECT COUNT(*) FROM resources WHERE kind=? AND owner=? AND status IN "
                f"({marks})", (kind.value, owner, *busy_values)).fetchone()[0]
            if running >= limit:
                return None
            row = conn.execute(
                "SELECT id FROM resources WHERE kind=? AND owner=? AND status=? "
                "ORDER BY created_at, rowid LIMIT 1",
                (kind.value, owner, Status.pending.value)).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE resources SET status=?, updated_at=? WHERE id=?",
                         (Status.starting.value, now, row["id"]))
            _event(conn, row["id"], now, Status.starting, "claimed from the queue")
        return self.get(row["id"])

    def get(self, id: str) -> Record:
        """The record ``id``; ``KeyError`` if there is none."""
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM resources WHERE id=?", (id,)).fetchone()
        if row is None:
            raise KeyError(f"no record {id!r} in {self.path}")
        return _record(row)

    def list(self, kind: Kind | str | None = None, *, active: bool | None = None,
             site: str | None = None, owner: str | None = None) -> list[Record]:
        """Records, newest first, filtered by kind, activity, site and owner."""
        where, args = [], []
        if kind is not None:
            where.append("kind=?")
            args.append(Kind(kind).value)
        if active is not None:
            marks = ",".join("?" * len(ACTIVE))
            where.append(f"status {'IN' if active else 'NOT IN'} ({marks})")
            args += [s.value for s in ACTIVE]
        if site is not None:
            where.append("site=?")
            args.append(site)
        if owner is not None:
            where.append("owner=?")
            args.append(owner)
        sql = "SELECT * FROM resources"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._connect() as conn:
            rows = conn.execute(sql + " ORDER BY created_at DESC, rowid DESC", args).fetchall()
        return [_record(r) for r in rows]

    def events(self, id: str) -> builtins.list[Event]:
        """The history of record ``id``, oldest first."""
        with self._connect() as conn:
            rows = conn.execute("SELECT resource_id, ts, status, message FROM events "
                                "WHERE resource_id=? ORDER BY id", (id,)).fetchall()
        return [Event(**dict(r)) for r in rows]

    def remove(self, id: str) -> None:
        """Forget record ``id`` and its history."""
        with self._write() as conn:
            conn.execute("DELETE FROM resources WHERE id=?", (id,))

    def refresh(self) -> builtins.list[Record]:
        """Mark active local records whose processes have all ended as ``lost``.

        Returns the records that changed. Records without pids (remote clusters) are left
        to their backends.
        """
        changed = []
        for rec in self.list(active=True):
            if rec.local and rec.pids and not any(p.alive() for p in rec.pids):
                changed.append(self.update(rec.id, status=Status.lost,
                                           message="its processes are gone"))
        return changed


def _ref(p: int | ProcessRef) -> ProcessRef:
    return p if isinstance(p, ProcessRef) else ProcessRef.of(int(p))


def _pids_json(refs: list[ProcessRef]) -> str:
    return json.dumps([r.model_dump() for r in refs])


def _event(conn: sqlite3.Connection, id: str, ts: float, status: Status | None,
           message: str | None) -> None:
    conn.execute("INSERT INTO events (resource_id, ts, status, message) VALUES (?,?,?,?)",
                 (id, ts, status.value if status is not None else None, message))


def _record(row: sqlite3.Row) -> Record:
    data = dict(row)
    data["pids"] = json.loads(data["pids"])
    data["spec"] = json.loads(data["spec"])
    return Record(**data)

"""The team ledger: every cluster, run, endpoint and job each user starts, and quotas.

One table of *leases* (SQLAlchemy Core; SQLite by default, any SQLAlchemy URL such as
``postgresql://…`` otherwise). A lease is admitted only if, with it, the user and the
group it counts against stay within every quota of ``teams:``; admission and its
quota check are one transaction.

>>> import tempfile
>>> from hybridnb.config.teams import Teams
>>> teams = Teams(groups={"g": {"members": ["ann"], "sites": ["local"],
...                             "per_user": {"clusters": 1}}})
>>> ledger = Ledger(f"sqlite:///{tempfile.mkdtemp()}/ledger.db")
>>> lease = ledger.admit(teams, "ann", {"kind": "cluster", "site": "local", "name": "a"})
>>> ledger.admit(teams, "ann", {"kind": "cluster", "site": "local", "name": "b"})
Traceback (most recent call last):
...
hybridnb.hub.ledger.Refused: quota reached: ann may run 1 cluster at once (teams.groups...
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    select,
    update,
)

from ..config.teams import QUOTA_KEYS

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from ..config.teams import Teams

KINDS = ("cluster", "run", "endpoint", "job")
#: The count quota of each kind (``clusters`` limits how many clusters run at once).
COUNTED = {"cluster": "clusters", "run": "runs", "endpoint": "endpoints", "job": "jobs"}
SIZE_KEYS = ("workers", "cpus", "gpus", "memory_bytes")
END_STATES = ("stopped", "failed", "succeeded", "lost")

metadata = MetaData()
leases = Table(
    "hybridnb_leases", metadata,
    Column("id", String(40), primary_key=True),
    Column("user", String(255), nullable=False),
    Column("group", String(255)),
    Column("kind", String(16), nullable=False),
    Column("site", String(255), nullable=False),
    Column("name", String(255)),
    Column("size", Text, nullable=False, default="{}"),
    Column("status", String(16), nullable=False),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("create_time", Float),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Index("hybridnb_leases_active", "status", "user"),
)


class Refused(Exception):
    """A start the team's rules do not allow; the message says which rule and who to ask."""

    def __init__(self, message: str, *, quota: str, limit: Any, contact: str,
                 active: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.quota, self.limit, self.contact = quota, limit, contact
        self.active = active or []

    def to_dict(self) -> dict[str, Any]:
        return {"error": str(self), "quota": self.quota, "limit": self.limit,
                "contact": self.contact, "active": self.active}


class Ledger:
    """The leases of a team, in the database at ``url``."""

    def __init__(self, url: str):
        self.url = url
        self.engine: Engine = create_engine(url, future=True, **_engine_options(url))
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin_immediate)
        metadata.create_all(self.engine)

    def __repr__(self) -> str:
        return f"Ledger({self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        self.engine.dispose()

    # -- admission ---------------------------------------------------------------------

    def admit(self, teams: Teams, user: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Record a start of ``user`` if the team's rules allow it; return the lease.

        ``request``: ``kind``, ``site`` (``a+b`` for a hybrid cluster), ``name``,
        ``size`` (``workers``, ``cpus``, ``gpus``, ``memory_bytes``), and the holder's
        ``host``, ``pid``, ``create_time``. The same active name of the same kind is
        the same lease (its holder is updated): asking twice never counts twice.

        Raises :class:`Refused` (naming the quota) or :class:`ValueError` (bad request).
        """
        kind, sites, name, size = _parse(request)
        groups = teams.groups_of(user)
        contact = teams.contact_for(groups[0] if groups else None)
        if not groups:
            raise Refused(f"{user} is in no group of the team's configuration, so may start "
                          f"nothing. Ask {contact} to add you to a group", quota="groups",
                          limit=None, contact=contact)
        allowed = teams.sites_for(user)
        for site in sites:
            if site not in allowed:
                raise Refused(
                    f"site '{site}' is not among the sites of your groups "
                    f"({', '.join(groups)}: {', '.join(allowed)}). Ask {contact} for access",
                    quota="sites", limit=allowed, contact=contact)
        group = teams.charged_group(user, sites[0])
        contact = teams.contact_for(group)
        now = time.time()
        holder = {"host": request.get("host"), "pid": request.get("pid"),
                  "create_time": request.get("create_time")}
        with self.engine.begin() as conn:
            if name:
                same = conn.execute(select(leases).where(
                    leases.c.user == user, leases.c.kind == kind, leases.c.name == name,
                    leases.c.status == "active")).mappings().first()
                if same is not None:
                    conn.execute(update(leases).where(leases.c.id == same["id"]).values(
                        **holder))
                    return _lease(dict(same) | holder)
            mine = _active(conn, leases.c.user == user)
            checks = [(teams.user_quota(user, group), mine, f"{user}",
                       _where(teams, user, group, "per_user"))]
            if group is not None:
                theirs = _active(conn, leases.c.group == group)
                checks.append((teams.groups[group].total.limits(), theirs,
                               f"group {group}", f"teams.groups.{group}.total"))
            for limits, active, who, where in checks:
                def used(active: list[dict[str, Any]] = active, who: str = who) -> float:
                    return self._gpu_hours(conn, active, who, user, group, now)

                _check(limits, active, kind, size, who, where, contact, now, used)
            row = {"id": f"{kind}-{uuid.uuid4().hex[:12]}", "user": user, "group": group,
                   "kind": kind, "site": "+".join(sites), "name": name,
                   "size": json.dumps(size), "status": "active", "started_at": now, **holder}
            conn.execute(leases.insert().values(**row))
        return _lease(row)

    def _gpu_hours(self, conn: Connection, active: list[dict[str, Any]], who: str, user: str,
                   group: str | None, now: float) -> float:
        """GPU-hours used since midnight UTC by ``who`` (ended leases and running ones)."""
        midnight = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0,
                                                      microsecond=0).timestamp()
        cond = leases.c.user == user if not who.startswith("group ") else leases.c.group == group
        rows = conn.execute(select(leases).where(
            cond, leases.c.status != "active", leases.c.ended_at > midnight)).mappings()
        total = 0.0
        for lease in [*(dict(r) for r in rows), *active]:
            gpus = float(json.loads(lease["size"] or "{}").get("gpus") or 0)
            if gpus:
                start = max(float(lease["started_at"]), midnight)
                total += gpus * max(0.0, float(lease["ended_at"] or now) - start) / 3600
        return total

    def release(self, user: str, lease_id: str, status: str = "stopped") -> dict[str, Any]:
        """End ``user``'s lease ``lease_id``; ``KeyError`` if ``user`` holds no such lease.

        Another user's lease is "no such lease" too: ids are never confirmed to others.
        """
        if status not in END_STATES:
            raise ValueError(f"status {status!r}: use one of {', '.join(END_STATES)}")
        with self.engine.begin() as conn:
            row = conn.execute(select(leases).where(
                leases.c.id == lease_id, leases.c.user == user)).mappings().first()
            if row is None:
                raise KeyError(lease_id)
            if row["status"] == "active":
                conn.execute(update(leases).where(leases.c.id == lease_id).values(
                    status=status, ended_at=time.time()))
            row = conn.execute(select(leases).where(leases.c.id == lease_id)).mappings().one()
        return _lease(dict(row))

    def reap_stale(self, older_than: float, hosts_alive: Any = None) -> int:
        """Mark ``lost`` the active leases started before ``older_than`` whose holder
        ``hosts_alive(lease)`` says is gone (the service's periodic reaper)."""
        n = 0
        with self.engine.begin() as conn:
            rows = conn.execute(select(leases).where(
                leases.c.status == "active", leases.c.started_at < older_than)).mappings()
            for row in list(rows):
                if hosts_alive is not None and hosts_alive(dict(row)):
                    continue
                conn.execute(update(leases).where(leases.c.id == row["id"]).values(
                    status="lost", ended_at=time.time()))
                n += 1
        return n

    # -- reading -----------------------------------------------------------------------

    def leases(self, user: str | None = None, *, active: bool | None = None,
               limit: int = 500) -> list[dict[str, Any]]:
        """Leases, newest first (``user``'s only when given)."""
        query = select(leases).order_by(leases.c.started_at.desc()).limit(limit)
        if user is not None:
            query = query.where(leases.c.user == user)
        if active is not None:
            query = query.where((leases.c.status == "active") if active
                                else (leases.c.status != "active"))
        with self.engine.connect() as conn:
            return [_lease(dict(r)) for r in conn.execute(query).mappings()]

    def usage(self, teams: Teams | None = None) -> dict[str, Any]:
        """What runs now and what was started, per user, per group and per site."""
        now = time.time()
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(select(leases)).mappings()]
        out: dict[str, dict[str, dict[str, float]]] = {"users": {}, "groups": {}, "sites": {}}
        for row in rows:
            size = json.loads(row["size"] or "{}")
            for table, key in (("users", row["user"]), ("groups", row["group"] or "-"),
                               ("sites", row["site"])):
                entry = out[table].setdefault(key, _empty())
                entry["starts"] += 1
                if row["status"] == "active":
                    entry[COUNTED[row["kind"]]] += 1
                    for k in ("workers", "cpus", "gpus"):
                        entry[k] += float(size.get(k) or 0)
                gpus = float(size.get("gpus") or 0)
                entry["gpu_hours"] += gpus * (float(row["ended_at"] or now)
                                              - float(row["started_at"])) / 3600
        if teams is not None:  # everyone configured appears, even before a first start
            for user in teams.members():
                out["users"].setdefault(user, _empty())
            for group in teams.groups:
                out["groups"].setdefault(group, _empty())
        return {table: dict(sorted(entries.items())) for table, entries in out.items()}


def _empty() -> dict[str, float]:
    return {**dict.fromkeys(("clusters", "runs", "endpoints", "jobs", "workers", "cpus",
                             "gpus"), 0.0), "gpu_hours": 0.0, "starts": 0.0}


def _parse(request: Mapping[str, Any]) -> tuple[str, list[str], str | None, dict[str, float]]:
    kind = request.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: use one of {', '.join(KINDS)}")
    site = request.get("site")
    if not isinstance(site, str) or not site:
        raise ValueError("site: give the site's name")
    name = request.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 255):
        raise ValueError("name: a string of at most 255 characters")
    raw = request.get("size") or {}
    if not isinstance(raw, Mapping):
        raise ValueError("size: a mapping of workers, cpus, gpus, memory_bytes")
    size: dict[str, float] = {}
    for key, value in raw.items():
        if key not in SIZE_KEYS:
            raise ValueError(f"size.{key}: unknown; use {', '.join(SIZE_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"size.{key}: a number ≥ 0, got {value!r}")
        size[key] = value
    return str(kind), site.split("+"), name, size


def _active(conn: Connection, cond: Any) -> list[dict[str, Any]]:
    rows = conn.execute(select(leases).where(cond, leases.c.status == "active"))
    return [dict(r) for r in rows.mappings()]


def _where(teams: Teams, user: str, group: str | None, scope: str) -> str:
    if user in teams.users and teams.users[user].per_user.limits():
        return f"teams.users.{user}.per_user"
    return f"teams.groups.{group}.{scope}"


def _check(limits: Mapping[str, float], active: list[dict[str, Any]], kind: str,
           size: Mapping[str, float], who: str, where: str, contact: str, now: float,
           gpu_hours_used: Callable[[], float]) -> None:
    counted = COUNTED[kind]
    sizes = [json.loads(a["size"] or "{}") for a in active]
    for key in QUOTA_KEYS:
        limit = limits.get(key)
        if limit is None:
            continue
        if key == "gpu_hours_per_day":
            # Counted only when it matters: a start that asks for GPUs.
            gpu_hours = gpu_hours_used() if float(size.get("gpus") or 0) > 0 else 0.0
            if gpu_hours >= limit and float(size.get("gpus") or 0) > 0:
                raise Refused(
                    f"quota reached: {who} may use {limit:g} GPU-hours a day ({where}."
                    f"gpu_hours_per_day = {limit:g}) and has used {gpu_hours:.2f} today. "
                    f"Wait until midnight UTC, or ask {contact} for more",
                    quota=key, limit=limit, contact=contact, active=_brief(active))
            continue
        if key in COUNTED.values():
            if key != counted:
                continue
            names = [a["name"] or a["id"] for a in active if a["kind"] == kind]
            used, want = float(len(names)), 1.0
        else:
            if key == "workers" and kind != "cluster":
                continue
            names = [a["name"] or a["id"] for a, s in zip(active, sizes, strict=True)
                     if float(s.get(key) or 0)]
            used = sum(float(s.get(key) or 0) for s in sizes)
            want = float(size.get(key) or 0)
            if not want:
                continue
        if used + want > limit:
            noun = {"clusters": "cluster", "runs": "training run", "endpoints": "endpoint",
                    "jobs": "notebook job"}.get(key)
            what = (f"may run {limit:g} {noun}{'s' if limit != 1 else ''} at once" if noun
                    else f"may use {limit:g} {key} at once")
            asks = "" if noun else f", and this start asks for {want:g}"
            running = f" ({', '.join(map(str, names))})" if names else ""
            raise Refused(
                f"quota reached: {who} {what} ({where}.{key} = {limit:g}), and "
                f"{'runs' if noun else 'uses'} {used:g}{running}{asks}. Stop one first, or "
                f"ask {contact} for more", quota=key, limit=limit, contact=contact,
                active=_brief(active))


def _brief(active: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: a.get(k) for k in ("id", "kind", "name", "site", "host", "pid",
                                   "create_time")} for a in active]


def _lease(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    if isinstance(out.get("size"), str):
        out["size"] = json.loads(out["size"] or "{}")
    return out


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    return {"pool_pre_ping": True}


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite's own transaction handling is off: "begin" below starts them, IMMEDIATE,
    # so two services on one file (a restart overlapping the old one) queue, never race.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")

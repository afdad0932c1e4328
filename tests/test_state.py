"""The state store: records, history, liveness, and many writers at once."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time

import pytest

from hybridnb.state import Kind, ProcessRef, StateStore, Status, state_home


@pytest.fixture
def store(tmp_path):
    return StateStore(tmp_path / "state.db")


def test_state_home_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HYBRIDNB_HOME", str(tmp_path / "x"))
    assert state_home() == tmp_path / "x"
    monkeypatch.delenv("HYBRIDNB_HOME")
    assert str(state_home()).endswith(".local/share/hybridnb")


def test_default_path_is_under_hybridnb_home(hybridnb_home):
    assert StateStore().path == hybridnb_home / "state" / "state.db"


def test_add_update_get_list_history(store):
    rec = store.add(Kind.cluster, "c1", site="local", backend="local", pids=[os.getpid()],
                    address="tcp://127.0.0.1:1", spec={"n_workers": 2})
    assert rec.status is Status.starting and rec.owner and rec.local
    assert rec.pids[0].pid == os.getpid() and rec.pids[0].create_time
    running = store.update(rec.id, status="running")
    assert running.started_at is not None and running.ended_at is None
    done = store.update(rec.id, status=Status.stopped, message="closed")
    assert done.ended_at is not None
    assert store.get(rec.id).spec == {"n_workers": 2}
    history = [(e.status, e.message) for e in store.events(rec.id)]
    assert history == [(Status.starting, "recorded"), (Status.running, None),
                       (Status.stopped, "closed")]
    run = store.add("run", "r1", site="onprem")
    assert [r.id for r in store.list()] == [run.id, rec.id]
    assert [r.id for r in store.list(active=True)] == [run.id]
    assert [r.id for r in store.list(active=False)] == [rec.id]
    assert [r.id for r in store.list(kind="cluster")] == [rec.id]
    assert [r.id for r in store.list(site="onprem")] == [run.id]
    store.remove(run.id)
    with pytest.raises(KeyError):
        store.get(run.id)
    with pytest.raises(KeyError):
        store.update("nope", status="running")
    with pytest.raises(ValueError):
        store.add("bogus-kind", "x", site="local")


def test_refresh_marks_dead_processes_lost(store):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        rec = store.add(Kind.endpoint, "e", site="local", pids=[proc.pid], status="running")
        assert store.refresh() == []
    finally:
        proc.kill()
        proc.wait()
    (changed,) = store.refresh()
    assert changed.id == rec.id and changed.status is Status.lost


def test_recycled_pid_is_not_ours():
    me = ProcessRef.of(os.getpid())
    assert me.alive()
    assert not ProcessRef(pid=os.getpid(), create_time=me.create_time - 1000).alive()


def test_wal_mode(store):
    import sqlite3

    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def _writer(path: str, n: int, barrier) -> None:  # runs in a child process
    barrier.wait()
    store = StateStore(path)
    for i in range(n):
        rec = store.add(Kind.notebook, f"w{os.getpid()}-{i}", site="local")
        store.update(rec.id, status=Status.running)
        store.update(rec.id, status=Status.succeeded, message="done")


def test_concurrent_writer_processes(tmp_path):
    path = str(tmp_path / "state.db")
    procs_n, writes = 6, 40
    ctx = mp.get_context("spawn")  # like separate kernels and CLI processes
    barrier = ctx.Barrier(procs_n)
    procs = [ctx.Process(target=_writer, args=(path, writes, barrier)) for _ in range(procs_n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * procs_n
    store = StateStore(path)
    records = store.list()
    assert len(records) == procs_n * writes
    assert {r.status for r in records} == {Status.succeeded}
    assert all(len(store.events(r.id)) == 3 for r in records[:20])
    import sqlite3

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def _opener(path: str, barrier) -> None:  # runs in a child process
    barrier.wait()
    StateStore(path)


def test_processes_opening_a_new_store_together(tmp_path):
    # Switching a new file to WAL answered "database is locked" at once (no busy wait)
    # to a process that raced another; before the fix about one trial in ten lost one.
    ctx = mp.get_context("fork")  # cheap enough for many trials
    for trial in range(25):
        path = str(tmp_path / f"state{trial}.db")
        barrier = ctx.Barrier(8)
        procs = [ctx.Process(target=_opener, args=(path, barrier)) for _ in range(8)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0] * 8, f"trial {trial}"
        assert StateStore(path).list() == []


def test_concurrent_threads_and_readers(tmp_path):
    store = StateStore(tmp_path / "state.db")
    errors: list[BaseException] = []
    stop = threading.Event()

    def write():
        try:
            for i in range(50):
                store.update(store.add("run", f"t{i}", site="local").id, status="running")
        except BaseException as exc:
            errors.append(exc)

    def read():
        try:
            while not stop.is_set():
                store.list(active=True)
                time.sleep(0.001)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    reader = threading.Thread(target=read)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    reader.join()
    assert errors == []
    assert len(store.list(active=True)) == 200


def test_record_repr(store):
    rec = store.add("endpoint", "api", site="edge1")
    assert repr(rec) == f"Record({rec.id}, endpoint 'api' on edge1: starting)"

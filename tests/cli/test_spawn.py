"""Detached processes (cluster keepers, notebook jobs) are never the caller's children."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from hybridnb.errors import OperationError
from hybridnb.processes import spawn_detached
from hybridnb.testing.waiting import running_children, wait_until


def test_a_detached_process_leaves_no_zombie_behind(tmp_path):
    # A kernel or the Jupyter server starts keepers for hours: each one that ends must
    # not stay behind as its zombie (nor break scans of its children).
    log = tmp_path / "sleep.log"
    pid = spawn_detached(["/bin/sh", "-c", "echo started; exec sleep 60"], log)
    proc = psutil.Process(pid)
    assert proc.ppid() != os.getpid() and proc.pid not in {c.pid for c in
                                                            psutil.Process().children()}
    assert os.getsid(pid) == pid  # a session of its own: the caller's Ctrl-C spares it
    wait_until(lambda: "started" in log.read_text(), timeout=10, what="the process's log")
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE,
               timeout=10, what="the detached process to end")
    assert [c for c in psutil.Process().children() if c.pid == pid] == []
    assert running_children("sleep 60") == []


def test_a_command_that_cannot_start_is_an_operation_error(tmp_path):
    with pytest.raises(OperationError, match="could not start /no/such/program"):
        spawn_detached(["/no/such/program"], tmp_path / "x.log")

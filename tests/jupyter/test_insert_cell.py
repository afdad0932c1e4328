"""Insert code from a panel: a real ipykernel, with this test playing the frontend.

The JupyterLab extension answers the ``hybridnb.insert-cell`` comm (the cell is inserted at
once); JupyterLab without it closes the comm unanswered, and some frontends ignore it: then
the code comes back the old way, as a ``set_next_input`` payload on the next execute reply.
"""

from __future__ import annotations

import os
import queue
import time
from pathlib import Path

import pytest
from jupyter_client.manager import KernelManager

from hybridnb.widgets.cells import TARGET

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def kernel(hybridnb_home):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "HYBRIDNB_HEADLESS": "0"}
    # CurveZMQ keys from the manager, as hybridnb.notebooks.engine does: no plain-TCP warning.
    km = KernelManager(kernel_name="python3", transport_encryption="auto")
    km.start_kernel(env=env)
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        yield client
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)


def _execute(client, code: str) -> dict:
    """Run ``code``; the execute reply (payloads included) and the comms it opened."""
    msg_id = client.execute(code)
    reply = client.get_shell_msg(timeout=30)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = client.get_shell_msg(timeout=30)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply["content"]


def _comm_open(client, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no comm_open on {TARGET!r}"
        try:
            msg = client.get_iopub_msg(timeout=remaining)
        except queue.Empty:
            continue
        if msg["msg_type"] == "comm_open" and msg["content"]["target_name"] == TARGET:
            return msg["content"]


def _send(client, msg_type: str, comm_id: str, data: dict) -> None:
    client.shell_channel.send(client.session.msg(msg_type, {"comm_id": comm_id, "data": data}))


def _value(client, expr: str) -> str:
    client.execute(f"__import__('sys').stdout.write(repr({expr}))")
    while True:
        msg = client.get_iopub_msg(timeout=30)
        if msg["msg_type"] == "stream":
            return msg["content"]["text"]


def _next_inputs(reply: dict) -> list[str]:
    return [p["text"] for p in reply.get("payload", []) if p.get("source") == "set_next_input"]


def test_extension_answer_inserts_at_once(kernel):
    """A panel's Insert cell: the extension gets the code and no payload is queued."""
    _execute(kernel, "from hybridnb.widgets.base import CodeView\nview = CodeView()\n"
                     "view.code.value = 'c = 42'\nok = view.insert_cell()")
    opened = _comm_open(kernel)
    assert opened["data"] == {"code": "c = 42"}
    _send(kernel, "comm_msg", opened["comm_id"], {"inserted": True})
    _send(kernel, "comm_close", opened["comm_id"], {})
    reply = _execute(kernel, "pass")
    assert _next_inputs(reply) == []
    assert _value(kernel, "(ok, view.note.value)") == "(True, 'inserted below the active cell')"


def test_closed_unanswered_falls_back_to_set_next_input(kernel):
    """JupyterLab without the extension closes the comm: the old payload path."""
    _execute(kernel, "from hybridnb.widgets.base import CodeView\nview = CodeView()\n"
                     "view.code.value = 'c = 7'\nview.insert_cell()")
    opened = _comm_open(kernel)
    _send(kernel, "comm_close", opened["comm_id"], {})
    reply = _execute(kernel, "pass")
    assert _next_inputs(reply) == ["c = 7"]
    assert "next cell you run" in _value(kernel, "view.note.value")


def test_ignored_comm_times_out_then_queues_at_once(kernel):
    """A frontend that ignores unknown comms: queued after the timeout, later ones at once."""
    _execute(kernel, "import hybridnb.widgets.cells as cells\ncells.ACK_TIMEOUT = 0.3\n"
                     "seen = []\nfirst = cells.insert_cell('a = 1', on_result=seen.append)")
    _comm_open(kernel)
    time.sleep(1.0)  # well past the 0.3 s the kernel waits for an answer
    assert _next_inputs(_execute(kernel, "pass")) == ["a = 1"]
    reply = _execute(kernel, "second = cells.insert_cell('b = 2', on_result=seen.append)")
    assert _next_inputs(reply) == ["b = 2"]
    assert _value(kernel, "(first, second, seen)") == "('sent', 'queued', ['queued', 'queued'])"

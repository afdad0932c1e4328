"""A real Jupyter server with hybridnb's extension, an isolated hybridnb user, notebooks.

pytest-jupyter's fixtures are imported here, not in the root conftest: its autouse event
loop and its async-test hooks then apply to these tests only.
"""

from __future__ import annotations

import json
import textwrap

import nbformat
import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403

CONFIG = """
sites:
  cloud:
    tier: public
    backend: local
    capacity: {cpu: 4, memory: 8GiB}
    cost: {cpu_hour: 0.1}
    classifications: [public]
  lab:
    tier: private
    backend: local
    capacity: {cpu: 2, memory: 4GiB}
    classifications: [public, internal, pii]
datasets:
  patients: {site: local, path: /data/patients.parquet, classification: pii, size: 1MB}
  digits: {site: local, path: builtin, format: builtin, classification: public}
jobs:
  max_concurrent: 1
"""


def write_notebook(path, parameters, body, *, metadata=None):
    """A small notebook: a cell tagged ``parameters`` and one code cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    if metadata:
        nb.metadata.update(metadata)
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(parameters),
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(textwrap.dedent(body))]
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def hybridnb_user(tmp_path, monkeypatch):
    """hybridnb's state and configuration for this test only (jp_environ sets HOME)."""
    config = tmp_path / "hybridnb.yaml"
    config.write_text(CONFIG)
    monkeypatch.setenv("HYBRIDNB_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("HYBRIDNB_CONFIG", str(config))
    monkeypatch.setenv("HYBRIDNB_SYSTEM_CONFIG", str(tmp_path / "etc" / "hybridnb.yaml"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    from hybridnb.cleanup import gc
    from hybridnb.state import StateStore

    gc(StateStore(tmp_path / "state" / "state.db"), grace=5.0)  # keepers, jobs, kernels


@pytest.fixture
def jp_server_config(hybridnb_user):
    return {"ServerApp": {"jpserver_extensions": {"hybridnb.jupyter": True}}}


@pytest.fixture
def notebooks(jp_root_dir):
    """Notebooks in the server's root: ``sq`` (quick or slow), ``pii`` (reads pii data)."""
    write_notebook(jp_root_dir / "sq.ipynb", "n = 2\nsleep = 0.0\n", """
        import os, time, hybridnb
        time.sleep(sleep)
        hybridnb.record("square", n * n)
        hybridnb.record("ppid", os.getppid())
        print("square", n * n)
    """)
    write_notebook(jp_root_dir / "pii.ipynb", "rows = 10\n", "print(rows)\n",
                   metadata={"hybridnb": {"data": ["patients"]}})
    write_notebook(jp_root_dir / "choose.ipynb", 'dataset = "digits"\n', "print(dataset)\n")
    return jp_root_dir


async def call(jp_fetch, method, *parts, body=None, **kwargs):
    """``(status, JSON)`` of a request that may fail (4xx answers are results here)."""
    from tornado.httpclient import HTTPClientError

    if body is not None:
        kwargs["body"] = json.dumps(body)
    try:
        resp = await jp_fetch("hybridnb", *parts, method=method, **kwargs)
    except HTTPClientError as exc:
        resp = exc.response
        assert resp is not None, exc
    text = resp.body.decode() if resp.body else ""
    try:
        return resp.code, json.loads(text) if text else None
    except ValueError:
        return resp.code, text

"""Notebook jobs through the REST routes: run, download, cancel, queue, residency."""

from __future__ import annotations

import asyncio
import json
import time

import psutil
import pytest

from .conftest import call


async def wait_job(jp_fetch, job_id, statuses, timeout=90.0):
    deadline = time.monotonic() + timeout
    while True:
        status, job = await call(jp_fetch, "GET", "jobs", job_id)
        assert status == 200, job
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job stayed {job['status']}: {job}"
        await asyncio.sleep(0.3)


@pytest.mark.slow
async def test_job_runs_to_completion_and_downloads(jp_fetch, notebooks):
    status, job = await call(jp_fetch, "POST", "jobs",
                             body={"notebook": "sq.ipynb", "parameters": {"n": "7"}})
    assert status == 201, job
    assert job["site"] == "local" and job["mode"] == "local"
    assert job["parameters"] == {"n": 7}  # text for an int parameter is parsed
    assert "rank 1" in job["plan"] and job["started_from"] == "sidebar"
    done = await wait_job(jp_fetch, job["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    assert "ended succeeded" in done["log_tail"]
    resp = await jp_fetch("hybridnb", "jobs", job["id"], "output")
    assert "attachment" in resp.headers["Content-Disposition"]
    executed = json.loads(resp.body)
    outputs = "".join("".join(o.get("text", "")) for c in executed["cells"]
                      for o in c.get("outputs", []))
    assert "square 49" in outputs
    resp = await jp_fetch("hybridnb", "jobs", job["id"], "report")
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "sandbox" in resp.headers["Content-Security-Policy"]
    assert b"square 49" in resp.body
    # Its files are under $HYBRIDNB_HOME, not beside the notebook.
    assert done["output"].startswith(str(notebooks.parent / "state"))
    assert sorted(p.name for p in notebooks.iterdir()) == [
        "choose.ipynb", "pii.ipynb", "sq.ipynb"]


@pytest.mark.slow
async def test_cancel_kills_the_process_tree(jp_fetch, notebooks):
    _, job = await call(jp_fetch, "POST", "jobs",
                        body={"notebook": "sq.ipynb", "parameters": {"sleep": 120}})
    from hybridnb.state import StateStore

    store = StateStore()
    deadline = time.monotonic() + 60
    kernel = None
    while kernel is None:  # the job process and its kernel
        rec = store.get(job["id"])
        procs = [psutil.Process(p.pid) for p in rec.pids if p.alive()]
        kids = [c for p in procs for c in p.children(recursive=True)]
        kernel = next((k for k in kids if "ipykernel" in " ".join(k.cmdline())), None)
        assert time.monotonic() < deadline, "the job's kernel never started"
        await asyncio.sleep(0.3)
    status, body = await call(jp_fetch, "DELETE", "jobs", job["id"])
    assert status == 202 and body["status"] == "cancelled"
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                   for p in [*procs, kernel])
    _, again = await call(jp_fetch, "GET", "jobs", job["id"])
    assert again["status"] == "cancelled"


@pytest.mark.slow
async def test_concurrency_cap_queues_then_runs(jp_fetch, notebooks):
    # jobs.max_concurrent is 1 in this user's configuration.
    _, first = await call(jp_fetch, "POST", "jobs",
                          body={"notebook": "sq.ipynb", "parameters": {"sleep": 3}})
    _, second = await call(jp_fetch, "POST", "jobs", body={"notebook": "sq.ipynb"})
    assert first["status"] == "running"
    assert second["status"] == "queued"
    _, summary = await call(jp_fetch, "GET", "summary")
    assert (summary["jobs_running"], summary["jobs_queued"]) == (1, 1)
    done = await wait_job(jp_fetch, second["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    _, first = await call(jp_fetch, "GET", "jobs", first["id"])
    assert first["status"] == "succeeded"
    assert done["started_at"] >= first["ended_at"] - 0.5  # one after the other


async def test_residency_refuses_pii_on_a_public_site(jp_fetch, notebooks):
    status, body = await call(jp_fetch, "POST", "jobs",
                              body={"notebook": "pii.ipynb", "site": "cloud"})
    assert status == 422, body
    assert body["field"] == "site"
    assert "residency" in body["error"] and "'patients' is pii" in body["error"]
    status, body = await call(jp_fetch, "GET", "jobs")
    assert body["jobs"] == []  # nothing half-started


async def test_notebook_parameters(jp_fetch, notebooks):
    status, body = await call(jp_fetch, "GET", "notebook-parameters",
                              params={"path": "choose.ipynb"})
    assert status == 200, body
    assert body["parameters"] == [{"name": "dataset", "default": '"digits"', "type": "str",
                                   "help": ""}]
    assert body["data"] == ["digits"]
    status, body = await call(jp_fetch, "GET", "notebook-parameters",
                              params={"path": "pii.ipynb"})
    assert body["data"] == ["patients"]


@pytest.mark.parametrize("request_body, status, field, words", [
    ({"notebook": "nope.ipynb"}, 404, "notebook", "not found"),
    ({"notebook": "../outside.ipynb"}, 400, "notebook", "outside"),
    ({"notebook": "/etc/passwd"}, 400, "notebook", "relative"),
    ({"notebook": "sq.ipynb", "parameters": {"m": 1}}, 400, "parameters.m", "not declared"),
    ({"notebook": "sq.ipynb", "parameters": {"n": "abc"}}, 400, "parameters.n", "declared int"),
    ({"notebook": "sq.ipynb", "parameters": {"n": "[1, 2"}}, 400, "parameters.n",
     "does not parse"),
    ({"notebook": "sq.ipynb", "parameters": [1]}, 400, "parameters", "valid dictionary"),
    ({"notebook": "sq.ipynb", "site": "mars"}, 400, "site", "unknown site"),
    ({"notebook": "sq.ipynb", "timeout": -1}, 400, "timeout", "greater than 0"),
    ({"notebook": "sq.ipynb", "colour": 1}, 400, "colour", "unknown field"),
    ({"notebook": "choose.ipynb", "parameters": {"dataset": "nope"}}, 400,
     "parameters.dataset", "unknown dataset"),
    ({"notebook": "sq.ipynb", "cluster": "none-such"}, 404, "cluster", "no running cluster"),
])
async def test_bad_job_input(jp_fetch, notebooks, request_body, status, field, words):
    got, body = await call(jp_fetch, "POST", "jobs", body=request_body)
    assert (got, body["field"]) == (status, field), body
    assert words in body["error"]
    _, listed = await call(jp_fetch, "GET", "jobs")
    assert listed["jobs"] == []


async def test_unknown_job_is_404(jp_fetch, notebooks):
    for method, parts in (("GET", ("jobs", "job-nope")), ("DELETE", ("jobs", "job-nope")),
                          ("GET", ("jobs", "job-nope", "output"))):
        status, body = await call(jp_fetch, method, *parts)
        assert status == 404 and body["field"] == "id", body


async def test_body_must_be_json(jp_fetch, notebooks):
    from tornado.httpclient import HTTPClientError

    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("hybridnb", "jobs", method="POST", body="{not json")
    assert info.value.code == 400
    assert json.loads(info.value.response.body)["error"].startswith("the request body is not")

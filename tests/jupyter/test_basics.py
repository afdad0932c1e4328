"""The extension loads, lists what it should, and refuses what it must."""

from __future__ import annotations

import pytest

from .conftest import call


async def test_sites_and_summary(jp_fetch, hybridnb_user):
    status, body = await call(jp_fetch, "GET", "sites")
    assert status == 200
    assert {s["name"]: s["tier"] for s in body["sites"]} == {
        "local": "private", "cloud": "public", "lab": "private"}
    status, body = await call(jp_fetch, "GET", "summary")
    assert status == 200 and body["clusters"] == 0 and body["jobs_running"] == 0


ROUTES = [("GET", "sites"), ("POST", "plan"), ("GET", "clusters"), ("POST", "clusters"),
          ("PATCH", "clusters/c1"), ("DELETE", "clusters/c1"), ("GET", "runs"),
          ("DELETE", "runs/r1"), ("GET", "endpoints"), ("PATCH", "endpoints/e1"),
          ("DELETE", "endpoints/e1"), ("GET", "jobs"), ("POST", "jobs"), ("GET", "jobs/j1"),
          ("DELETE", "jobs/j1"), ("GET", "jobs/j1/output"), ("GET", "jobs/j1/report"),
          ("GET", "notebook-parameters"), ("GET", "alerts"), ("GET", "metrics"),
          ("GET", "summary"), ("GET", "dashboard/c1/status")]


@pytest.mark.parametrize("method, route", ROUTES)
async def test_every_route_needs_auth(jp_fetch, hybridnb_user, method, route):
    from tornado.httpclient import HTTPClientError

    body = {"body": "{}"} if method in ("POST", "PATCH") else {}
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("hybridnb", *route.split("/"), method=method,
                       headers={"Authorization": ""}, follow_redirects=False, **body)
    if route.startswith("dashboard/"):
        # A page a browser opens: Jupyter sends it to the login page, as it does /lab.
        assert info.value.code == 302
        assert "/login?next=" in info.value.response.headers["Location"]
    else:
        assert info.value.code == 403


async def test_cookie_auth_needs_xsrf_on_post(jp_fetch, jp_serverapp, jp_base_url,
                                             hybridnb_user):
    # A browser: the token once in the URL sets the login cookie and the _xsrf cookie.
    token = jp_serverapp.identity_provider.token
    resp = await jp_fetch("api", "status", params={"token": token},
                          headers={"Authorization": ""})
    cookies = _cookies(resp)
    cookies.update(_cookies(await jp_fetch("login", headers={"Authorization": ""})))
    assert any(k.startswith("username-") for k in cookies) and "_xsrf" in cookies
    jar = "; ".join(f"{k}={v}" for k, v in cookies.items())
    no_token = {"Authorization": "", "Cookie": jar}
    status, _ = await call(jp_fetch, "GET", "sites", headers=no_token)
    assert status == 200  # the cookie authenticates a GET
    plan = {"cpu": 1}
    status, body = await call(jp_fetch, "POST", "plan", body=plan, headers=no_token)
    assert status == 403  # a POST without the XSRF header is refused
    status, body = await call(jp_fetch, "POST", "plan", body=plan,
                              headers={**no_token, "X-XSRFToken": cookies["_xsrf"]})
    assert status == 200, body
    assert body["chosen"] == "local"


def _cookies(resp):
    out = {}
    for header in resp.headers.get_list("Set-Cookie"):
        name, _, rest = header.partition("=")
        out[name] = rest.split(";", 1)[0]
    return out


async def test_plan_explained_and_refused(jp_fetch, hybridnb_user):
    status, body = await call(jp_fetch, "POST", "plan", body={"cpu": 1, "data": ["patients"]})
    assert status == 200, body
    assert body["chosen"] == "local"
    rejected = {r["site"]: r for r in body["rejected"]}
    assert "residency" in rejected["cloud"]["kinds"]
    assert "local" in body["explanation"]
    for request, field in (({"gpu": 64}, "gpu"), ({"cpu": 1000}, "cpu"),
                           ({"data": ["nope"]}, "data"), ({"memory": "lots"}, "memory"),
                           ({"cpu": -1}, "cpu"), ({"cpus": 1}, "cpus")):
        status, body = await call(jp_fetch, "POST", "plan", body=request)
        assert status in (400, 422), (request, body)
        assert body["field"] == field, (request, body)
    status, body = await call(jp_fetch, "POST", "plan", body={"gpu": 64})
    assert status == 422 and "needs 64 GPU" in body["error"]


def test_extension_listed_enabled_and_ok(tmp_path):
    """What `pip install` puts in etc/jupyter enables the extension, and it validates."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parents[2]
    shared = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"]["wheel"]["shared-data"]
    (source, target), = shared.items()
    assert target == "etc/jupyter/jupyter_server_config.d/hybridnb.json"
    config_dir = tmp_path / "jupyter-config"
    (config_dir / "jupyter_server_config.d").mkdir(parents=True)
    (config_dir / "jupyter_server_config.d" / "hybridnb.json").write_text(
        (root / source).read_text())
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config_dir), "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-m", "jupyter", "server", "extension", "list"],
                         capture_output=True, text=True, env=env, timeout=120)
    text = out.stdout + out.stderr
    listed = text[text.index(str(config_dir)):].splitlines()[:4]
    assert "hybridnb.jupyter" in listed[1] and "enabled" in listed[1], text
    assert "hybridnb.jupyter" in listed[3] and "OK" in listed[3], text


def test_loading_the_extension_imports_nothing_heavy():
    """What the server imports at start: the app, its handlers, the proxy (not the library)."""
    import subprocess
    import sys

    code = ("import sys, json, hybridnb.jupyter as j\n"
            "j._jupyter_server_extension_points()\n"
            "from hybridnb.jupyter.handlers import routes\n"
            "routes()\n"
            "heavy = ['pydantic', 'hybridnb.state', 'hybridnb.config', 'torch', 'dask',\n"
            "         'distributed', 'pandas', 'numpy', 'papermill', 'psutil']\n"
            "print(json.dumps([m for m in heavy if m in sys.modules]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_schemas_for_the_typescript_mirror():
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "hybridnb.jupyter.models"],
                         capture_output=True, text=True, check=True).stdout
    schemas = json.loads(out)
    assert {"Cluster", "Job", "JobCreate", "PlanAnswer", "ErrorBody", "Summary"} <= set(schemas)
    assert schemas["Job"]["properties"]["status"]["$ref"].endswith("JobStatus")
    assert set(schemas["ErrorBody"]["properties"]) == {"error", "field"}

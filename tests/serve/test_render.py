"""Rendered deployments: Kubernetes manifests, nginx, edge units; the deploy command.

Manifests are checked with the official schemas (kubernetes-validate, strict) and the
prometheus-operator CRD; the nginx config runs in a real nginx in front of real replicas.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import kubernetes_validate as kv
import numpy as np
import pytest
import yaml

from hybridnb.cli import main
from hybridnb.errors import UsageError
from hybridnb.k8s.names import _DNS_1035
from hybridnb.k8s.pods import pod_security_problems
from hybridnb.k8s.validate import validate_manifest
from hybridnb.serve.app import create_app
from hybridnb.serve.cache import ResponseCache
from hybridnb.serve.render import (
    edge_unit,
    kubernetes_manifests,
    nginx_config,
    render_kubernetes,
)
from hybridnb.serve.server import ServerThread
from hybridnb.serve.settings import ServeSettings
from hybridnb.testing.waiting import stop_processes, wait_until

from .conftest import infer_body

TOKEN = "tok-3f9c1e7a5b2d4c6e8a0b"  # a recognisable value to look for in every output

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
needs_nginx = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install --no-install-recommends "
                          "nginx; CI installs it)")


def _pod(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def test_kubernetes_manifests_are_valid():
    objs = kubernetes_manifests("mlp", image="registry.local/hybridnb:1", replicas=3,
                                model_claim="models", host="mlp.example.org",
                                tls_secret="mlp-tls", metrics_token=True,
                                autoscale={"min": 2, "max": 6})
    kinds = {o["kind"]: o for o in objs}
    for obj in objs[:4]:  # the core kinds, straight through kubernetes-validate (strict)
        kv.validate(obj, "1.30.0", strict=True)
    for obj in objs:  # and all of them, the ServiceMonitor with prometheus-operator's CRD
        assert validate_manifest(obj) == [], obj["kind"]
    dep, hpa = kinds["Deployment"], kinds["HorizontalPodAutoscaler"]
    pod = _pod(dep)["containers"][0]
    assert pod["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert pod["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "mlp-token", "key": "token"}
    assert dep["spec"]["selector"]["matchLabels"].items() <= \
        dep["spec"]["template"]["metadata"]["labels"].items()
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    endpoint = kinds["ServiceMonitor"]["spec"]["endpoints"][0]
    assert endpoint["authorization"]["credentials"] == {"name": "mlp-token", "key": "token"}
    with pytest.raises(UsageError):
        kubernetes_manifests("mlp", image="x", replicas=0)
    with pytest.raises(UsageError, match="max >= min"):
        kubernetes_manifests("mlp", image="x", autoscale={"min": 3, "max": 2})


def test_pods_run_as_a_numeric_non_root_user():
    """runAsNonRoot alone makes the kubelet refuse images whose USER is root or a name."""
    dep = kubernetes_manifests("mlp", image="img:1", model_claim="models")[0]
    pod = _pod(dep)
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The uid the project's images run as, as a number; fsGroup for the mounted volumes.
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"],
            pod["securityContext"]["fsGroup"]) == (1000, 1000, 1000)
    assert pod_security_problems(pod) == []
    assert pod["automountServiceAccountToken"] is False
    # The check itself sees the old shape (runAsNonRoot without a uid) as refused.
    old = {"containers": [{"name": "server", "image": "img:1",
                           "securityContext": {"runAsNonRoot": True,
                                               "allowPrivilegeEscalation": False}}]}
    assert any("numeric runAsUser" in p for p in pod_security_problems(old))


def _prefix_match(path: str, request: str) -> bool:
    """Kubernetes' ``pathType: Prefix``: element-wise prefix of the '/'-split path."""
    want = [p for p in path.split("/") if p]
    got = [p for p in request.split("?")[0].split("/") if p]
    return got[:len(want)] == want


def test_ingress_routes_inference_but_not_metrics():
    ingress = kubernetes_manifests("mlp", image="img:1")[3]
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    assert {p["pathType"] for p in paths} == {"Prefix"}  # Exact/ImplementationSpecific: no

    def routed(request: str) -> bool:
        return any(_prefix_match(p["path"], request) for p in paths)

    for request in ("/v2/models/mlp/infer", "/v2/health/ready", "/v2", "/v2/models/mlp",
                    "/v1/models/mlp:predict"):
        assert routed(request), request
    for request in ("/metrics", "/metrics?x=1", "/", "/v2metrics", "/admin"):
        assert not routed(request), request


@pytest.fixture(scope="module")
def named_bundles(mlp, tmp_path_factory):
    """The MLP bundle under names that are no DNS labels (a bundle's name is metadata)."""
    root = tmp_path_factory.mktemp("named")
    out = {}
    for name in ("wine.v2", "3wine", "Wine_Model", "w" * 40 + ".v" + "9" * 40):
        target = root / name[:20]
        shutil.copytree(mlp[1].path, target)
        meta_path = target / "hybridnb-model.json"
        meta = json.loads(meta_path.read_text())
        meta["name"] = name
        meta_path.write_text(json.dumps(meta))
        out[name] = target
    return out


def _written(out: Path) -> tuple[list[dict], str, list[Path]]:
    """The manifests in ``out`` outside secret files, their text, and the secret files."""
    main_files = sorted(p for p in out.glob("*.yaml") if not p.name.endswith(".secret.yaml"))
    text = "".join(p.read_text() for p in main_files)
    return ([yaml.safe_load(p.read_text()) for p in main_files], text,
            sorted(out.glob("*.secret.yaml")))


@pytest.mark.parametrize("name", ["wine.v2", "3wine", "Wine_Model", "long"])
def test_deploy_render_normalises_names_and_writes_valid_manifests(
        named_bundles, name, hybridnb_home, capsys):
    bundle = named_bundles[name] if name != "long" else named_bundles[
        next(n for n in named_bundles if len(n) > 63)]
    out = hybridnb_home / "k8s"
    assert main(["deploy", str(bundle), "--render", "kubernetes", "--out", str(out)]) == 0
    objs, _, secrets = _written(out)
    for obj in [*objs, *(yaml.safe_load(p.read_text()) for p in secrets)]:
        assert validate_manifest(obj) == [], obj
    names = {o["metadata"]["name"] for o in objs}
    (obj_name,) = names
    assert _DNS_1035.match(obj_name) and len(obj_name) <= 63  # a Service name, too
    assert objs[0]["metadata"]["annotations"]["hybridnb.io/model"] == \
        json.loads((bundle / "hybridnb-model.json").read_text())["name"]


def test_deploy_render_writes_the_token_secret_apart(mlp, hybridnb_home, monkeypatch, capsys):
    """Pods need the Secret they refer to; its value is in one 0600, git-ignored file,
    and in no other file, nor on stdout or stderr."""
    monkeypatch.setenv("HYBRIDNB_ENDPOINT_TOKEN", TOKEN)
    out = hybridnb_home / "k8s"
    assert main(["deploy", str(mlp[1].path), "--render", "kubernetes", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    objs, text, (secret_file,) = _written(out)
    assert [o["kind"] for o in objs] == ["Deployment", "Service", "HorizontalPodAutoscaler",
                                         "Ingress", "ServiceMonitor"]
    secret = yaml.safe_load(secret_file.read_text())
    ref = _pod(objs[0])["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == ref["name"]
    assert secret["stringData"][ref["key"]] == TOKEN
    assert validate_manifest(secret) == []
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert out.stat().st_mode & 0o077 == 0  # the directory holding it is private too
    assert "*.secret.yaml" in (out / ".gitignore").read_text().splitlines()
    encoded = base64.b64encode(TOKEN.encode()).decode()
    for where in (text, printed.out, printed.err, (out / ".hybridnb-render").read_text()):
        assert TOKEN not in where and encoded not in where
    assert secret_file.name in printed.out and "kubectl apply -f" in printed.out

    # Without a token anywhere, a fresh random one; never the same twice.
    monkeypatch.delenv("HYBRIDNB_ENDPOINT_TOKEN")
    tokens = {render_kubernetes("mlp", image="i").secrets.popitem()[1]["stringData"]["token"]
              for _ in range(2)}
    assert len(tokens) == 2 and all(len(t) >= 32 for t in tokens)

    # From a file, as `kubectl create secret --from-file` would read it.
    token_file = hybridnb_home / "token.txt"
    token_file.write_text(TOKEN + "-file\n")
    assert main(["deploy", str(mlp[1].path), "--render", "kubernetes", "--out", str(out),
                 "--token-file", str(token_file)]) == 0
    _, text, (secret_file,) = _written(out)
    assert yaml.safe_load(secret_file.read_text())["stringData"]["token"] == TOKEN + "-file"
    assert TOKEN not in text


def test_deploy_render_with_an_existing_secret_writes_none(mlp, hybridnb_home, capsys):
    out = hybridnb_home / "k8s"
    assert main(["deploy", str(mlp[1].path), "--render", "kubernetes", "--out", str(out),
                 "--token-secret", "team-mlp-token"]) == 0
    objs, _, secrets = _written(out)
    assert secrets == []
    ref = _pod(objs[0])["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "team-mlp-token", "key": "token"}
    assert "kubectl create secret generic team-mlp-token" in capsys.readouterr().out
    assert main(["deploy", str(mlp[1].path), "--render", "kubernetes", "--out", str(out),
                 "--token-secret", "Team Token"]) == 2


def test_deploy_render_unknown_site_names_the_configured_ones(mlp, hybridnb_home, capsys):
    (hybridnb_home / "work" / "hybridnb.yaml").write_text(
        "sites:\n  gke:\n    tier: public\n    backend: kubernetes\n"
        "    kubernetes: {namespace: ml}\n    capacity: {cpu: 8, memory: 32GiB}\n")
    out = hybridnb_home / "k8s"
    assert main(["deploy", str(mlp[1].path), "--render", "kubernetes", "--out", str(out),
                 "--site", "gkee"]) == 2
    err = capsys.readouterr().err
    assert "unknown site 'gkee'" in err and "did you mean 'gke'" in err
    assert "configured sites: gke, local" in err
    assert not out.exists()
    # A known kubernetes site: its namespace.
    assert main(["deploy", str(mlp[1].path), "--render", "kubernetes", "--out", str(out),
                 "--site", "gke"]) == 0
    objs, _, _ = _written(out)
    assert {o["metadata"]["namespace"] for o in objs} == {"ml"}
    assert objs[0]["metadata"]["labels"]["hybridnb.io/site"] == "gke"


def test_deploy_render_writes_nothing_when_something_is_still_invalid(
        mlp, hybridnb_home, capsys):
    """A site's namespace that is no DNS label: validation catches it in every object,
    exit 1 with the problems, no files (and no temporary directory) left."""
    (hybridnb_home / "work" / "hybridnb.yaml").write_text(
        "sites:\n  gke:\n    tier: public\n    backend: kubernetes\n"
        "    kubernetes: {namespace: ML_Team}\n    capacity: {cpu: 8, memory: 32GiB}\n")
    out = hybridnb_home / "k8s"
    assert main(["deploy", str(mlp[1].path), "--render", "kubernetes", "--out", str(out),
                 "--site", "gke"]) == 1
    err = capsys.readouterr().err
    assert "nothing written" in err and "(6 problems)" in err
    assert "Deployment/mlp: $.metadata.namespace: 'ML_Team' is not a valid" in err
    assert not out.exists()
    assert list(out.parent.glob(f".{out.name}*")) == []  # no temporary directory left


def test_deploy_render_replaces_only_its_own_directories(mlp, hybridnb_home, capsys):
    out = hybridnb_home / "k8s"
    args = ["deploy", str(mlp[1].path), "--render", "kubernetes", "--out", str(out)]
    assert main(args) == 0
    first = sorted(p.name for p in out.iterdir())
    assert main(args) == 0  # a rendering replaces the one before it, whole
    assert sorted(p.name for p in out.iterdir()) == first
    mine = hybridnb_home / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main([*args[:-1], str(mine)]) == 2
    assert "hybridnb did not render (notes.txt)" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_deploy_render_fails_clearly_without_the_validator(mlp, hybridnb_home):
    """No kubernetes-validate: exit 1 saying how to install it, and nothing written."""
    out = hybridnb_home / "k8s"
    code = ("import sys; sys.modules['kubernetes_validate'] = None\n"
            "from hybridnb.cli import main\n"
            f"sys.exit(main(['deploy', {str(mlp[1].path)!r}, '--render', 'kubernetes', "
            f"'--out', {str(out)!r}]))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 1, res.stderr
    assert "kubernetes-validate" in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()


def test_deploy_command_renders_nginx_and_edge(mlp, hybridnb_home, capsys):
    out = hybridnb_home / "ngx"
    assert main(["deploy", str(mlp[1].path), "--render", "nginx", "--out", str(out),
                 "--upstream", "10.0.0.5:8080"]) == 0
    text = (out / "nginx.conf").read_text()
    assert "10.0.0.5:8080" in text and "listen 127.0.0.1:8080;" in text  # loopback default
    capsys.readouterr()
    assert main(["deploy", str(mlp[1].path), "--render", "nginx", "--out", str(out),
                 "--upstream", "10.0.0.5:8080", "--listen", "0.0.0.0:8080"]) == 2
    assert "--tls-cert" in capsys.readouterr().err
    assert main(["deploy", str(mlp[1].path), "--render", "nginx", "--out", str(out),
                 "--upstream", "10.0.0.5:8080; include /etc/shadow"]) == 2
    assert main(["deploy", str(mlp[1].path), "--render", "edge", "--out",
                 str(hybridnb_home / "edge")]) == 0
    assert (hybridnb_home / "edge" / "hybridnb-endpoint.service").is_file()
    capsys.readouterr()
    assert main(["deploy", str(mlp[1].path), "--render", "helm", "--out",
                 str(hybridnb_home / "x")]) == 2
    assert "unknown --render 'helm'" in capsys.readouterr().err


def test_write_rendering_is_all_or_nothing(tmp_path):
    """A rendering that fails half-way leaves the previous one whole, and no debris."""
    from hybridnb.serve.render import RENDER_MARKER, Rendering, write_rendering

    out = tmp_path / "out"
    write_rendering(Rendering("kubernetes", files={"01-a.yaml": "a: 1\n"}), out)
    broken = Rendering("kubernetes", files={"01-b.yaml": "b: 2\n"},
                       secrets={"02-not-named-as-a-secret.yaml": {"kind": "Secret"}})
    with pytest.raises(ValueError, match="secret"):
        write_rendering(broken, out)
    assert sorted(p.name for p in out.iterdir()) == [RENDER_MARKER, "01-a.yaml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_edge_unit_runs_one_replica():
    unit = edge_unit("/srv/models/mlp", serve_args=["--no-batching"])
    assert "ExecStart=hybridnb serve /srv/models/mlp --host 0.0.0.0 --port 8080 " \
           "--no-batching" in unit
    assert "EnvironmentFile=" in unit and "TOKEN" not in unit.split("EnvironmentFile")[0]


# --- nginx, for real ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def nginx(tmp_path):
    """``nginx(upstreams, **options)``: a real nginx in the foreground on a loopback port,
    with this test's own config, prefix, pid file and logs; returns its base URL."""
    procs: list[subprocess.Popen] = []
    errors = tmp_path / "nginx-error.log"

    def start(upstreams: list[str], **options) -> str:
        port = _free_port()
        scheme = "https" if "tls_cert" in options else "http"
        text = nginx_config(upstreams, listen=f"127.0.0.1:{port}", routing="round_robin",
                            pid=str(tmp_path / f"nginx-{port}.pid"), error_log=str(errors),
                            temp_dir=str(tmp_path / "nginx-temp"), **options)
        (tmp_path / "nginx-temp").mkdir(exist_ok=True)
        conf = tmp_path / f"nginx-{port}.conf"
        conf.write_text(text)
        with open(tmp_path / "nginx-stderr.log", "ab") as stderr:
            proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp_path), "-e",
                                     str(errors), "-g", "daemon off;"],
                                    stdout=subprocess.DEVNULL, stderr=stderr)
        procs.append(proc)

        def listening() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        try:
            wait_until(listening, timeout=15, what="nginx", alive=lambda: proc.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(f"{exc}: {(tmp_path / 'nginx-stderr.log').read_text()}"
                                 ) from None
        return f"{scheme}://127.0.0.1:{port}"

    yield start
    stop_processes(*procs)


def _infer_count(url: str) -> float:
    """Inference requests a replica answered, any status, from its own /metrics."""
    total = 0.0
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("hybridnb_endpoint_requests_total{") and "infer" in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@needs_nginx
@pytest.mark.parametrize("routing", ["least_connections", "round_robin", "ip_hash"])
def test_nginx_config_passes_nginx_t(tmp_path, routing):
    cert, key = _self_signed(tmp_path)
    tls = {"tls_cert": str(cert), "tls_key": str(key)}
    public = nginx_config(["10.0.0.5:8080"], routing=routing, listen="0.0.0.0:8443", **tls)
    assert "listen 0.0.0.0:8443 ssl;" in public and f"ssl_certificate {cert};" in public
    for options in ({}, tls):
        # nginx -t binds the listen address: loopback, a free port.
        listen = f"127.0.0.1:{_free_port()}"
        text = nginx_config(["127.0.0.1:9001", "[::1]:9002"], routing=routing, listen=listen,
                            pid=str(tmp_path / "nginx.pid"),
                            error_log=str(tmp_path / "error.log"), **options)
        assert ("least_conn;" in text) == (routing == "least_connections")
        assert (f"listen {listen} ssl;" in text) == bool(options)
        conf = tmp_path / "nginx.conf"
        conf.write_text(text)
        res = subprocess.run([NGINX, "-t", "-c", str(conf), "-p", str(tmp_path), "-e",
                              str(tmp_path / "error.log")], capture_output=True, text=True,
                             timeout=30)
        assert res.returncode == 0, res.stderr
    with pytest.raises(UsageError, match="choose one of"):
        nginx_config(["127.0.0.1:1"], routing="power_of_two")


def test_nginx_refuses_plain_http_beyond_loopback():
    for listen in ("0.0.0.0:8080", "8080", "*:80", "10.0.0.5:8080", "[::]:8080"):
        with pytest.raises(UsageError, match="plain HTTP"):
            nginx_config(["10.0.0.5:8080"], listen=listen)
    for hostile in ("1.2.3.4:80; include /etc/shadow", "a b:1", "x:1}"):
        with pytest.raises(UsageError, match="host:port"):
            nginx_config([hostile])
    with pytest.raises(UsageError, match="both"):
        nginx_config(["10.0.0.5:8080"], tls_cert="/c.pem")


@needs_nginx
def test_nginx_retries_a_post_on_a_full_replica_and_a_refused_connection(
        mlp, nginx, closed_port_loopback):
    """A replica's 503 (at capacity: it runs nothing) and a refused connection are tried on
    the next replica, POSTs included: every request succeeds."""
    good = ServerThread(create_app(mlp[1], ServeSettings())).start()
    draining = ServerThread(create_app(mlp[1], ServeSettings(max_in_flight=1,
                                                             max_queue=0))).start()
    try:
        # Its one admission slot taken: every request is refused at once, 503 + Retry-After
        # (a draining replica no longer refuses: it answers what still arrives).
        assert draining.app.state.serving.admission.try_acquire()
        body = infer_body(np.ones((1, 8), np.float32))
        assert httpx.post(f"{draining.url}/v2/models/mlp/infer", json=body).status_code == 503
        refused_before = _infer_count(draining.url)
        for upstreams in ([f"127.0.0.1:{draining.port}", f"127.0.0.1:{good.port}"],
                          [f"127.0.0.1:{closed_port_loopback}", f"127.0.0.1:{good.port}"]):
            url = nginx(upstreams)
            with httpx.Client(base_url=url) as client:
                codes = [client.post("/v2/models/mlp/infer", json=body).status_code
                         for _ in range(6)]
            assert codes == [200] * 6, upstreams
        # nginx did send POSTs to the draining replica (its 503s), then to the other.
        assert _infer_count(draining.url) > refused_before
        assert _infer_count(good.url) >= 12
    finally:
        good.stop()
        draining.stop()


@pytest.fixture
def closed_port_loopback() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    return _free_port()


class _Silent:
    """A TCP server that accepts and reads but never answers: a replica that hangs."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@needs_nginx
def test_nginx_does_not_retry_a_timeout(mlp, nginx):
    """A replica that does not answer in time gives the client 504: the request is not
    sent again to another replica (under overload that would multiply the load)."""
    good = ServerThread(create_app(mlp[1], ServeSettings())).start()
    silent = _Silent()
    try:
        url = nginx([f"127.0.0.1:{silent.port}", f"127.0.0.1:{good.port}"], timeout_s=1)
        body = infer_body(np.ones((1, 8), np.float32))
        seen = []
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(4):
                before = _infer_count(good.url)
                code = client.post("/v2/models/mlp/infer", json=body).status_code
                seen.append((code, _infer_count(good.url) - before))
                if code == 504:
                    break
        assert (504, 0) in seen, seen  # timed out, and the good replica never saw it
        assert all(delta == (1 if code == 200 else 0) for code, delta in seen), seen
    finally:
        silent.close()
        good.stop()


@needs_nginx
def test_nginx_serves_https_with_the_rendered_tls(mlp, nginx, tmp_path):
    cert, key = _self_signed(tmp_path)
    good = ServerThread(create_app(mlp[1], ServeSettings())).start()
    try:
        url = nginx([f"127.0.0.1:{good.port}"], tls_cert=str(cert), tls_key=str(key))
        import ssl

        context = ssl.create_default_context(cafile=str(cert))
        res = httpx.post(f"{url}/v2/models/mlp/infer", verify=context,
                         json=infer_body(np.ones((1, 8), np.float32)))
        assert res.status_code == 200 and res.json()["outputs"][0]["shape"] == [1, 3]
        # Plain HTTP on that port: nginx's own 400, never the endpoint.
        plain = httpx.post(url.replace("https", "http") + "/v2/models/mlp/infer", json={})
        assert plain.status_code == 400 and "HTTPS" in plain.text
    finally:
        good.stop()


def test_response_cache(mlp, serve):
    cache = ResponseCache(2)
    xs = [np.full((1, 3), i, np.float32) for i in range(3)]
    for x in xs:
        cache.put(x, x * 2)
    assert cache.get(xs[0]) is None and len(cache) == 2  # evicted, least recently used
    assert cache.get(xs[2]) is not None and not cache.get(xs[2]).flags.writeable
    srv = serve(cache_size=8)
    x = np.ones((1, 8), np.float32)
    with httpx.Client(base_url=srv.url) as c:
        first = c.post("/v2/models/mlp/infer", json=infer_body(x)).json()
        assert c.post("/v2/models/mlp/infer", json=infer_body(x)).json() == first
        text = c.get("/metrics").text
    assert 'hybridnb_endpoint_cache_lookups_total{result="hit"} 1.0' in text

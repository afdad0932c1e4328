"""``hybridnb serve`` (one bundle in the foreground) and ``hybridnb endpoints list|stop``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from .common import print_json, table

endpoints_app = typer.Typer(help="Endpoints you started: list and stop them.",
                            no_args_is_help=True)


def serve(bundle: Path = typer.Argument(..., help="The model bundle directory."),
          host: str = typer.Option("127.0.0.1", "--host",
                                   help="Address to bind; non-loopback needs a token."),
          port: int = typer.Option(8080, "--port", "-p", help="Port; 0 picks a free one."),
          token: str | None = typer.Option(
              None, "--token", help="Bearer token (default: $HYBRIDNB_ENDPOINT_TOKEN)."),
          max_batch_size: int | None = typer.Option(None, "--max-batch-size",
                                                    help="Rows per model call."),
          max_latency_ms: float | None = typer.Option(
              None, "--max-latency-ms", help="How long a batch waits to fill."),
          no_batching: bool = typer.Option(False, "--no-batching",
                                           help="Run every request alone."),
          max_in_flight: int | None = typer.Option(
              None, "--max-in-flight", help="Requests in the running model call."),
          max_queue: int | None = typer.Option(
              None, "--max-queue", help="Requests waiting; beyond, 503 with Retry-After."),
          timeout: float | None = typer.Option(None, "--timeout",
                                               help="Per-request timeout in seconds."),
          threads: int | None = typer.Option(None, "--threads", help="Torch threads."),
          metrics_auth: bool = typer.Option(
              False, "--metrics-auth", help="/metrics asks for the token too.")
          ) -> None:
    """Serve a model bundle (Open Inference Protocol v2, KServe v1, /metrics) until Ctrl-C."""
    import logging

    from ..serve.model_bundle import load_bundle
    from ..serve.server import run_server
    from ..serve.settings import ServeSettings
    from ..state import Kind, StateStore, Status

    given: dict[str, Any] = {"max_batch_size": max_batch_size, "max_latency_ms": max_latency_ms,
             "max_in_flight": max_in_flight, "max_queue": max_queue,
             "request_timeout_s": timeout, "threads": threads,
             "metrics_auth": metrics_auth or None}
    settings = ServeSettings(**{k: v for k, v in given.items() if v is not None})
    if no_batching:
        settings = settings.replace(batching=False)
    loaded = load_bundle(bundle)  # a bad bundle is a usage error before anything starts
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    store = StateStore()
    rec = store.add(Kind.endpoint, loaded.name, site="local", backend="local",
                    pids=[os.getpid()], address=f"http://{host}:{port}",
                    spec={"bundle": str(bundle.resolve()), "settings": settings.to_dict()},
                    status=Status.running)
    typer.echo(f"serving {loaded.name!r} on http://{host}:{port} (Ctrl-C stops)", err=True)
    try:
        run_server(bundle, host, port, settings=settings, token=token)
    except BaseException as exc:
        store.update(rec.id, status=Status.failed, error=str(exc) or type(exc).__name__)
        raise
    store.update(rec.id, status=Status.stopped, message="server exited")


@endpoints_app.command("list")
def list_(all_: bool = typer.Option(False, "--all", "-a", help="Include stopped ones."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List endpoints with their address and status."""
    from ..state import Kind, StateStore

    store = StateStore()
    store.refresh()
    records = store.list(Kind.endpoint, active=None if all_ else True)
    if as_json:
        print_json([r.model_dump(mode="json") for r in records])
        return
    if not records:
        typer.echo("no endpoints")
        return
    table(None, ["id", "name", "status", "address", "bundle", "pids"],
          [[r.id, r.name, r.status.value, r.address, r.spec.get("bundle"),
            " ".join(str(p.pid) for p in r.pids)] for r in records])


@endpoints_app.command("stop")
def stop(name: str = typer.Argument(..., help="An endpoint's id or name."),
         grace: float = typer.Option(30.0, "--grace",
                                     help="Seconds to drain before killing.")) -> None:
    """Stop an endpoint: drain (SIGTERM), then kill after the grace period."""
    from ..cleanup import terminate
    from ..errors import UsageError, did_you_mean
    from ..state import Kind, StateStore, Status

    store = StateStore()
    active = store.list(Kind.endpoint, active=True)
    matches = [r for r in active if name in (r.id, r.name)]
    if not matches:
        raise UsageError(f"no running endpoint {name!r}"
                         + did_you_mean(name, [r.name for r in active]))
    for rec in matches:
        pids = terminate(rec, grace) if rec.local else []
        store.update(rec.id, status=Status.stopped, message="stopped by 'endpoints stop'")
        typer.echo(f"stopped {rec.id} ({rec.name})" + (f", pids {pids}" if pids else ""))


def deploy(ctx: typer.Context,
           bundle: Path = typer.Argument(..., help="The model bundle directory."),
           site: str = typer.Option("local", "--site", help="Where it runs (a site name)."),
           replicas: int = typer.Option(2, "--replicas", "-n", help="Replicas to run."),
           routing: str = typer.Option("round_robin", "--routing",
                                       help="round_robin, least_connections, "
                                            "least_response_time, power_of_two (nginx: "
                                            "round_robin, least_connections, ip_hash)."),
           render: str | None = typer.Option(
               None, "--render", help="Write files instead of starting: kubernetes, nginx "
                                      "or edge."),
           out: Path | None = typer.Option(None, "--out", help="Where --render writes."),
           image: str | None = typer.Option(None, "--image", help="Container image "
                                            "(kubernetes; default: hybridnb's serve image)."),
           token_file: Path | None = typer.Option(
               None, "--token-file", help="kubernetes: read the token for the rendered "
                                          "Secret from this file (default: --token, "
                                          "$HYBRIDNB_ENDPOINT_TOKEN, else a new one)."),
           token_secret: str | None = typer.Option(
               None, "--token-secret", help="kubernetes: use this existing Secret (key "
                                            "'token'); render no Secret."),
           upstream: list[str] = typer.Option(
               [], "--upstream", help="host:port of a replica (nginx; repeatable)."),
           listen: str = typer.Option("127.0.0.1:8080", "--listen",
                                      help="nginx listen address; beyond loopback needs "
                                           "--tls-cert and --tls-key."),
           tls_cert: Path | None = typer.Option(None, "--tls-cert",
                                                help="nginx: TLS certificate (PEM)."),
           tls_key: Path | None = typer.Option(None, "--tls-key",
                                               help="nginx: TLS private key (PEM)."),
           port: int = typer.Option(0, "--port", "-p", help="Local router port; 0 picks one."),
           token: str | None = typer.Option(
               None, "--token", help="Bearer token (default: $HYBRIDNB_ENDPOINT_TOKEN)."),
           no_batching: bool = typer.Option(False, "--no-batching",
                                            help="Run every request alone."),
           autoscale_max: int | None = typer.Option(
               None, "--autoscale-max", help="Autoscale between --replicas and this."),
           metrics_auth: bool = typer.Option(
               False, "--metrics-auth", help="/metrics asks for the token too.")
           ) -> None:
    """Deploy a bundle: local replicas behind a router, or render Kubernetes/nginx/edge files."""
    from ..serve.model_bundle import load_bundle

    loaded = load_bundle(bundle)
    if render is not None:
        _render(ctx, loaded.name, bundle, render=render, out=out, site=site, replicas=replicas,
                routing=routing, image=image, token=token, token_file=token_file,
                token_secret=token_secret, upstream=upstream, listen=listen,
                tls_cert=tls_cert, tls_key=tls_key, no_batching=no_batching,
                autoscale_max=autoscale_max)
        return
    import signal
    import threading

    from ..serve.endpoint import deploy as start
    from ..serve.settings import ServeSettings

    autoscale = {"min": replicas, "max": autoscale_max} if autoscale_max else None
    stop = threading.Event()
    # Before starting: a SIGTERM while replicas start stops them too, once started.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ep = start(loaded, site=site, replicas=replicas, routing=routing, token=token,
               batching=False if no_batching else None, autoscale=autoscale, port=port,
               settings=ServeSettings(metrics_auth=metrics_auth))
    st = ep.status()
    typer.echo(f"endpoint {loaded.name!r} at {ep.url}: {st['healthy']} of "
               f"{len(st['replicas'])} replicas healthy, {routing} routing", err=True)
    typer.echo(f"  infer: POST {ep.url}/v2/models/{loaded.name}/infer   metrics: "
               f"{ep.url}/metrics   stop: Ctrl-C", err=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        ep.close()


def _render(ctx: typer.Context, model: str, bundle: Path, *, render: str, out: Path | None,
            site: str, replicas: int, routing: str, image: str | None, token: str | None,
            token_file: Path | None, token_secret: str | None, upstream: list[str],
            listen: str, tls_cert: Path | None, tls_key: Path | None, no_batching: bool,
            autoscale_max: int | None) -> None:
    """``deploy --render``: build, validate, then write every file or none."""
    from ..errors import OperationError, UsageError, did_you_mean
    from ..k8s.problems import ManifestError
    from ..serve import render as r
    from ..serve.auth import TOKEN_ENV
    from .common import options

    targets = ("kubernetes", "nginx", "edge")
    if render not in targets:
        raise UsageError(f"unknown --render {render!r}{did_you_mean(render, targets)}; "
                         "choose kubernetes, nginx or edge")
    if out is None:
        raise UsageError("--render needs --out DIR")
    # An unknown site is an error naming the configured ones, before anything is built.
    site_config = options(ctx).config().site(site)
    try:
        if render == "kubernetes":
            if token_file is not None:
                try:
                    token = token_file.read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise UsageError(f"--token-file {token_file}: {exc.strerror}") from None
                if not token:
                    raise UsageError(f"--token-file {token_file} is empty")
            if autoscale_max is not None and autoscale_max < replicas:
                raise UsageError(f"--autoscale-max {autoscale_max} is below --replicas "
                                 f"{replicas}: give at least {replicas}")
            kube = site_config.kubernetes
            rendering = r.render_kubernetes(
                model, image=image or options(ctx).config().images.image("serve"),
                replicas=replicas, site=site,
                namespace=kube.namespace if kube else "default",
                token=token or os.environ.get(TOKEN_ENV) or None, token_secret=token_secret,
                autoscale={"min": replicas, "max": autoscale_max or replicas})
        elif render == "nginx":
            if not upstream:
                raise UsageError("--render nginx needs --upstream host:port (repeatable)")
            for path, what in ((tls_cert, "--tls-cert"), (tls_key, "--tls-key")):
                if path is not None and not path.is_file():
                    raise UsageError(f"{what} {path}: no such file")
            rendering = r.render_nginx(
                upstream, routing=routing, listen=listen,
                # nginx reads relative paths from its prefix, not from here.
                tls_cert=str(tls_cert.resolve()) if tls_cert else None,
                tls_key=str(tls_key.resolve()) if tls_key else None)
        else:
            rendering = r.render_edge(str(bundle.resolve()), site=site_config,
                                      serve_args=["--no-batching"] if no_batching else [])
    except ManifestError as exc:
        # Names are normalised first; what is still invalid (a site's namespace, say) would
        # fail at `kubectl apply`: the operation fails here instead, with every problem.
        raise OperationError(f"nothing written to {out}: the rendered {render} files would "
                             f"be refused by Kubernetes.\n{exc}") from None
    paths = r.write_rendering(rendering, out)
    typer.echo(f"wrote {len(paths)} {render} file(s) for {model!r} to {out}")
    for note in r.notes(rendering, out):
        typer.echo(f"  {note}")

"""The REST routes under ``{base_url}hybridnb/``: parse, one library call, JSON.

Every method is ``@tornado.web.authenticated`` (Jupyter Server's token, cookie and XSRF
rules: a request without them gets 403) and ``@authorized`` on the ``hybridnb``
resource, so a JupyterHub or custom authorizer can grant or refuse it. Library calls
block (SQLite, processes, HTTP with short timeouts): they run in the extension's thread
pool, never on the server's event loop.

This module imports nothing heavy: the models and the library load on the first request,
so the extension adds little to the server's start.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import mimetypes
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler

T = TypeVar("T")
logger = logging.getLogger(__name__)

#: Status by :class:`hybridnb.errors.FieldError` reason.
STATUS = {"invalid": 400, "not_found": 404, "conflict": 409, "unsatisfiable": 422}
_pool = ThreadPoolExecutor(4, thread_name_prefix="hybridnb-api")


class HybridnbHandler(APIHandler):
    """The base of every route: JSON errors ``{"error", "field"}``, blocking calls off-loop."""

    auth_resource = "hybridnb"

    @property
    def app(self) -> Any:
        """The :class:`~hybridnb.jupyter.app.HybridnbApp` (its store, config, settings)."""
        return self.settings["hybridnb"]

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_pool, functools.partial(fn, *args, **kwargs))

    def body(self, model: Any) -> Any:
        """The request body as ``model``; a 400 naming the field when it does not fit."""
        from pydantic import ValidationError

        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise _Refused(400, f"the request body is not JSON: {exc}", None) from None
        if not isinstance(data, dict):
            raise _Refused(400, "the request body must be a JSON object", None)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            # A misspelled key first: it explains the "missing" error that comes with it.
            err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
            field = ".".join(str(p) for p in err["loc"]) or None
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = (f"unknown field {field!r}; known: "
                           f"{', '.join(model.model_fields)}")
            raise _Refused(400, f"{field}: {message}" if field else message, field) from None

    def answer(self, model: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(model.model_dump_json() if hasattr(model, "model_dump_json")
                    else json.dumps(model))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        from ..errors import FieldError, HybridnbError, UsageError

        exc = kwargs.get("exc_info", (None, None, None))[1]
        field, message = None, self._reason
        if isinstance(exc, _Refused):
            status_code, message, field = exc.status, exc.message, exc.field
        elif isinstance(exc, FieldError):
            status_code, message, field = STATUS[exc.reason], str(exc), exc.field
        elif isinstance(exc, UsageError):
            status_code, message = 400, str(exc)
        elif isinstance(exc, HybridnbError):
            status_code, message = 500, str(exc)
        elif isinstance(exc, tornado.web.HTTPError):
            message = exc.log_message or self._reason
        elif exc is not None:
            logger.exception("hybridnb: %s %s failed", self.request.method, self.request.path,
                             exc_info=exc)
            message = f"{type(exc).__name__}: {exc} (the server log has the traceback)"
        self.clear()
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message, "field": field}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        from ..errors import UsageError

        if isinstance(value, (_Refused, UsageError)):
            return  # bad input: answered with a 4xx, not a server problem
        super().log_exception(typ, value, tb)

    def flag(self, name: str) -> bool:
        return self.get_argument(name, "false").lower() in ("1", "true", "yes")

    @property
    def base(self) -> str:
        return str(self.base_url)


class _Refused(Exception):
    def __init__(self, status: int, message: str, field: str | None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def _auth(method: Callable[..., Any]) -> Callable[..., Any]:
    """Authenticated, then authorized on the ``hybridnb`` resource."""
    return tornado.web.authenticated(authorized(method))


class SitesHandler(HybridnbHandler):
    @_auth
    async def get(self) -> None:
        from . import resources
        from .models import SiteList

        config = await self.call(self.app.hybridnb_config)
        self.answer(SiteList(sites=resources.sites(config)))


class PlanHandler(HybridnbHandler):
    @_auth
    async def post(self) -> None:
        from . import resources
        from .models import PlanRequest

        request = self.body(PlanRequest)
        config = await self.call(self.app.hybridnb_config)
        self.answer(await self.call(resources.plan, request, config))


class ClustersHandler(HybridnbHandler):
    @_auth
    async def get(self) -> None:
        from . import clusters
        from .models import ClusterList

        found = await self.call(clusters.list_clusters, self.app.store, self.base,
                                include_ended=self.flag("all"))
        self.answer(ClusterList(clusters=found))

    @_auth
    async def post(self) -> None:
        from . import clusters
        from .models import ClusterCreate

        request = self.body(ClusterCreate)
        config = await self.call(self.app.hybridnb_config)
        self.answer(await self.call(clusters.start, request, self.app.store, config, self.base),
                    201)


class ClusterHandler(HybridnbHandler):
    @_auth
    async def get(self, cluster_id: str) -> None:
        from . import clusters

        rec = await self.call(clusters.find, self.app.store, cluster_id)
        self.answer(clusters.to_model(rec, self.base))

    @_auth
    async def patch(self, cluster_id: str) -> None:
        from . import clusters
        from .models import ClusterPatch

        patch = self.body(ClusterPatch)
        rec = await self.call(clusters.find, self.app.store, cluster_id)
        self.answer(await self.call(clusters.scale, rec, patch, self.app.store, self.base), 202)

    @_auth
    async def delete(self, cluster_id: str) -> None:
        from . import clusters

        rec = await self.call(clusters.find, self.app.store, cluster_id)
        self.answer(await self.call(clusters.stop, rec, self.app.store, self.base), 202)


class RunsHandler(HybridnbHandler):
    @_auth
    async def get(self) -> None:
        from . import resources
        from .models import RunList

        found = await self.call(resources.runs, self.app.store, include_ended=self.flag("all"))
        self.answer(RunList(runs=found))


class RunHandler(HybridnbHandler):
    @_auth
    async def delete(self, run_id: str) -> None:
        from . import resources

        self.answer(await self.call(resources.stop_run, self.app.store, run_id), 202)


class EndpointsHandler(HybridnbHandler):
    @_auth
    async def get(self) -> None:
        from . import resources
        from .models import EndpointList

        found = await self.call(resources.endpoints, self.app.store,
                                include_ended=self.flag("all"))
        self.answer(EndpointList(endpoints=found))


class EndpointHandler(HybridnbHandler):
    @_auth
    async def patch(self, endpoint_id: str) -> None:
        from . import resources
        from .models import EndpointPatch

        patch = self.body(EndpointPatch)
        self.answer(await self.call(resources.patch_endpoint, self.app.store, endpoint_id,
                                    patch), 202)

    @_auth
    async def delete(self, endpoint_id: str) -> None:
        from . import resources

        self.answer(await self.call(resources.stop_endpoint, self.app.store, endpoint_id), 202)


class JobsHandler(HybridnbHandler):
    @_auth
    async def get(self) -> None:
        from ..notebooks import jobs
        from .models import JobList

        def listed() -> list[Any]:
            jobs.advance(self.app.store, config=self.app.hybridnb_config())
            return jobs.list_jobs(self.app.store, active=True if self.flag("active") else None)

        self.answer(JobList(jobs=await self.call(listed)))

    @_auth
    async def post(self) -> None:
        from ..notebooks import jobs
        from .models import JobCreate

        request = self.body(JobCreate)
        path = self.app.notebook_path(request.notebook)
        config = await self.call(self.app.hybridnb_config)
        job = await self.call(jobs.submit, path, request.parameters, site=request.site,
                              cluster=request.cluster, timeout=request.timeout,
                              started_from="sidebar", config=config, store=self.app.store)
        self.answer(job, 201)


class JobHandler(HybridnbHandler):
    @_auth
    async def get(self, job_id: str) -> None:
        from ..notebooks import jobs
        from .models import JobDetail

        def detail() -> JobDetail:
            job = jobs.get(job_id, self.app.store)
            lines = int(self.get_argument("lines", "40"))
            return JobDetail(**job.model_dump(), log_tail=jobs.log_tail(job_id, lines,
                                                                        self.app.store))

        self.answer(await self.call(detail))

    @_auth
    async def delete(self, job_id: str) -> None:
        from ..notebooks import jobs

        self.answer(await self.call(jobs.cancel, job_id, self.app.store), 202)


class JobFileHandler(HybridnbHandler):
    """``jobs/{id}/output`` (the executed notebook) and ``jobs/{id}/report`` (HTML)."""

    @_auth
    async def get(self, job_id: str, what: str) -> None:
        from ..errors import FieldError
        from ..notebooks import jobs

        job = await self.call(jobs.get, job_id, self.app.store)
        path = job.output if what == "output" else job.report
        if path is None:
            raise FieldError(f"job {job_id} has no {what} yet (it is {job.status.value})",
                             field=what, reason="not_found")
        data = await self.call(Path(path).read_bytes)
        name = Path(path).name
        kind = ("application/x-ipynb+json" if what == "output"
                else mimetypes.guess_type(name)[0] or "text/html")
        if what == "output" or self.flag("download"):
            self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        if what == "report":
            # The report is the notebook's own output: show it, but let it run nothing.
            self.set_header("Content-Security-Policy", "sandbox; default-src 'none'; "
                            "img-src data:; style-src 'unsafe-inline'")
        self.finish(data, set_content_type=kind)


class NotebookParametersHandler(HybridnbHandler):
    @_auth
    async def get(self) -> None:
        from ..notebooks import jobs

        path = self.app.notebook_path(self.get_argument("path", ""))
        config = await self.call(self.app.hybridnb_config)

        def info() -> dict[str, Any]:
            found = jobs.inspect(path)
            data = jobs.datasets_read(found, {}, config)
            return {"parameters": [p.model_dump() for p in found.parameters], "data": data,
                    "resources": found.resources}

        self.answer(await self.call(info))


class AlertsHandler(HybridnbHandler):
    @_auth
    async def get(self) -> None:
        from .models import AlertList

        self.answer(AlertList(alerts=await self.call(self.app.alerts)))


class MetricsHandler(HybridnbHandler):
    @_auth
    async def get(self) -> None:
        from . import resources
        from .models import MetricsAnswer

        args = {k: self.get_argument(k, None) for k in ("query", "start", "end", "step")}
        series = await self.call(resources.metrics, args["query"], args["start"], args["end"],
                                 args["step"], monitor=self.app.monitor())
        self.answer(MetricsAnswer(series=series))


class SummaryHandler(HybridnbHandler):
    @_auth
    async def get(self) -> None:
        from . import resources

        def summary() -> Any:
            firing = sum(a.state == "firing" for a in self.app.alerts())
            return resources.summary(self.app.store, firing)

        self.answer(await self.call(summary))


def routes() -> list[tuple[str, Any]]:
    """The extension's URL patterns (``hybridnb/...``; the server adds its base_url)."""
    from .proxy import DashboardProxyHandler

    table = [
        ("sites", SitesHandler), ("plan", PlanHandler),
        ("clusters", ClustersHandler), (r"clusters/([^/]+)", ClusterHandler),
        ("runs", RunsHandler), (r"runs/([^/]+)", RunHandler),
        ("endpoints", EndpointsHandler), (r"endpoints/([^/]+)", EndpointHandler),
        ("jobs", JobsHandler), (r"jobs/([^/]+)", JobHandler),
        (r"jobs/([^/]+)/(output|report)", JobFileHandler),
        ("notebook-parameters", NotebookParametersHandler),
        ("alerts", AlertsHandler), ("metrics", MetricsHandler), ("summary", SummaryHandler),
        (r"dashboard/([^/]+)/?(.*)", DashboardProxyHandler),
    ]
    return [(f"hybridnb/{pattern}", handler) for pattern, handler in table]

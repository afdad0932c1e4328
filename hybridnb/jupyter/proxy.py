"""Dask dashboards through the Jupyter server: ``{base_url}hybridnb/dashboard/{id}/{path}``.

jupyter-server-proxy's :class:`ProxyHandler` does the proxying (HTTP, streaming, and the
WebSockets Bokeh needs), behind the server's own authentication. This handler only
decides *where*: the dashboard address recorded for cluster ``id`` in the state store,
and nowhere else — the URL names a cluster, never a host or port, so it cannot be turned
into an open proxy. The Jupyter credentials (``Authorization``, cookies, ``token=``) stay
here: the dashboard never sees them.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

from jupyter_server_proxy.handlers import ProxyHandler
from tornado import web

#: Request headers that carry the Jupyter server's credentials: never forwarded.
PRIVATE_HEADERS = ("Authorization", "Cookie", "X-XSRFToken")


class DashboardProxyHandler(ProxyHandler):
    """Proxy to the dashboard of one recorded, running cluster."""

    auth_resource = "hybridnb"

    def initialize(self, **kwargs: Any) -> None:
        super().initialize(**kwargs)
        self._target: tuple[str, int, str] | None = None

    async def _resolve(self, cluster_id: str) -> tuple[str, int, str]:
        """``(host, port, path prefix)`` of the cluster's dashboard, or 404."""
        from ..state import Kind

        def lookup() -> str | None:
            try:
                rec = self.settings["hybridnb"].store.get(cluster_id)
            except KeyError:
                return None
            if rec.kind is not Kind.cluster or not rec.status.active:
                return None
            link = rec.spec.get("dashboard")
            return str(link) if link else None

        link = await asyncio.get_running_loop().run_in_executor(None, lookup)
        if link is None:
            raise web.HTTPError(404, f"no running cluster {cluster_id!r} with a dashboard")
        parts = urllib.parse.urlsplit(link)
        if parts.scheme not in ("http", "https") or not parts.hostname or not parts.port:
            raise web.HTTPError(404, f"cluster {cluster_id!r} records no usable dashboard")
        prefix = parts.path.rsplit("/status", 1)[0].rstrip("/")
        self.host_allowlist = [parts.hostname]  # the recorded host, and only it
        self.proxy_base = f"hybridnb/dashboard/{cluster_id}"
        self._target = (parts.hostname, parts.port, prefix)
        return self._target

    async def _go(self, cluster_id: str, path: str) -> Any:
        host, port, prefix = await self._resolve(cluster_id)
        return await self.proxy(host, port, f"{prefix}/{path}")

    def proxy_request_headers(self) -> Any:
        headers = super().proxy_request_headers()
        for name in PRIVATE_HEADERS:
            headers.pop(name, None)
        return headers

    def get_client_uri(self, protocol: str, host: str, port: int, proxied_path: str) -> str:
        uri = super().get_client_uri(protocol, host, port, proxied_path)
        base, sep, query = uri.partition("?")
        if not sep:
            return uri
        kept = [(k, v) for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True)
                if k != "token"]
        return base + ("?" + urllib.parse.urlencode(kept) if kept else "")

    async def http_get(self, cluster_id: str, path: str = "") -> Any:
        return await self._go(cluster_id, path)

    async def post(self, cluster_id: str, path: str = "") -> Any:
        return await self._go(cluster_id, path)

    async def put(self, cluster_id: str, path: str = "") -> Any:
        return await self._go(cluster_id, path)

    async def delete(self, cluster_id: str, path: str = "") -> Any:
        return await self._go(cluster_id, path)

    async def head(self, cluster_id: str, path: str = "") -> Any:
        return await self._go(cluster_id, path)

    async def patch(self, cluster_id: str, path: str = "") -> Any:
        return await self._go(cluster_id, path)

    async def options(self, cluster_id: str, path: str = "") -> Any:
        return await self._go(cluster_id, path)

    async def open(self, cluster_id: str, path: str = "") -> Any:
        host, port, prefix = await self._resolve(cluster_id)
        return await self.proxy_open(host, port, f"{prefix}/{path}")

"""The admin page of the hub service: usage per user, group and site, and recent starts.

Plain HTML (no scripts, nothing fetched from elsewhere), every value escaped.

>>> page = render_admin_page({"users": {"ann": {"clusters": 1.0}}, "groups": {},
...                           "sites": {}}, [], viewer="ann")
>>> "<td>ann</td>" in page
True
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

COLUMNS = ("clusters", "workers", "cpus", "gpus", "endpoints", "jobs", "runs", "gpu_hours",
           "starts")


def _table(title: str, rows: Mapping[str, Mapping[str, float]]) -> str:
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in COLUMNS)
    body = "".join(
        f"<tr><td>{escape(str(name))}</td>"
        + "".join(f"<td>{float(entry.get(c, 0)):g}</td>" if c != "gpu_hours"
                  else f"<td>{float(entry.get(c, 0)):.2f}</td>" for c in COLUMNS)
        + "</tr>" for name, entry in rows.items())
    return (f"<h2>{escape(title)}</h2><table><tr><th>{escape(title[:-1].lower())}</th>"
            f"{head}</tr>{body}</table>")


def render_admin_page(usage: Mapping[str, Mapping[str, Mapping[str, float]]],
                      recent: Sequence[Mapping[str, Any]], *, viewer: str) -> str:
    """The page: running now (counts and sizes) and starts so far, three ways."""
    rows = "".join(
        f"<tr><td>{escape(str(r.get('user')))}</td><td>{escape(str(r.get('group') or '-'))}"
        f"</td><td>{escape(str(r.get('kind')))}</td><td>{escape(str(r.get('name') or ''))}"
        f"</td><td>{escape(str(r.get('site')))}</td>"
        f"<td>{escape(', '.join(f'{k}={v:g}' for k, v in (r.get('size') or {}).items()))}"
        f"</td><td>{escape(str(r.get('status')))}</td>"
        f"<td>{escape(time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(r['started_at'])))}"
        "</td></tr>" for r in recent)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>hybridnb: team usage"
        "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:"
        "collapse;margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;"
        "text-align:right}td:first-child,th:first-child{text-align:left}</style></head>"
        f"<body><h1>Team usage</h1><p>Signed in as {escape(viewer)}. Counts and sizes are "
        "what runs now; GPU-hours and starts include what ended.</p>"
        + _table("Users", usage.get("users", {})) + _table("Groups", usage.get("groups", {}))
        + _table("Sites", usage.get("sites", {}))
        + "<h2>Recent starts</h2><table><tr><th>user</th><th>group</th><th>kind</th>"
        "<th>name</th><th>site</th><th>size</th><th>status</th><th>started (UTC)</th></tr>"
        f"{rows}</table></body></html>")

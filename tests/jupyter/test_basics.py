"""The extension loads, lists what it should, and refuses what it must."""

from __future__ import annotations

from .conftest import call


async def test_sites_and_summary(jp_fetch, hybridnb_user):
    status, body = await call(jp_fetch, "GET", "sites")
    assert status == 200
    assert {s["name"]: s["tier"] for s in body["sites"]} == {
        "local": "private", "cloud": "public", "lab": "private"}
    status, body = await call(jp_fetch, "GET", "summary")
    assert status == 200 and body["clusters"] == 0 and body["jobs_running"] == 0

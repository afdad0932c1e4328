"""The hybrid case study end to end: ``hybridnb demo-hybrid`` runs
``notebooks/06_hybrid_case_study.ipynb`` under papermill (what ``make demo-hybrid`` runs)
across three network-namespace hosts, once for this module; each test checks one point
of it from what the run left behind — the workers' own residency logs, the per-link byte
counts, the edge agent's blob store, the records and report — and the machine for
leftovers."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from hybridnb.cli import main
from hybridnb.fileio import sha256_file
from hybridnb.sites.residency import per_site, read_residency
from hybridnb.testing.hybrid_case import running_from
from hybridnb.testing.netns import leftovers
from hybridnb.testing.sshd import sshd_skip_reason

pytestmark = [pytest.mark.netns, pytest.mark.slow]

PHASES = ["hosts", "cluster and burst", "prepare the scans (pii)",
          "prepare the public data (burst)", "end of the burst", "train (DDP on onprem)",
          "ship the bundle to the edge", "query the edge", "edge link down"]
HOSTS = ("onprem", "cloud", "edge")


@dataclass
class Run:
    out: Path
    code: int
    stdout: str
    stderr: str
    records: dict[str, Any]
    report: dict[str, Any]
    sites: dict[str, Any]  # the case's hybridnb.yaml
    left: list[psutil.Process]  # children of this process the run left


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    """One run of the case study, as ``make demo-hybrid`` runs it (2 epochs, a 5 s
    outage), in an isolated user's home (as the ``hybridnb_home`` fixture makes)."""
    reason = sshd_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("demo-hybrid")
    with pytest.MonkeyPatch.context() as mp:
        (tmp / "home").mkdir()
        (tmp / "work").mkdir()
        mp.setenv("HOME", str(tmp / "home"))
        mp.delenv("XDG_CONFIG_HOME", raising=False)
        mp.delenv("HYBRIDNB_CONFIG", raising=False)
        mp.setenv("HYBRIDNB_SYSTEM_CONFIG", str(tmp / "etc" / "hybridnb.yaml"))
        mp.setenv("HYBRIDNB_HOME", str(tmp / "state"))
        mp.chdir(tmp / "work")
        out = tmp / "out"
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["demo-hybrid", "--out", str(out), "--epochs", "2",
                         "--outage", "5"])
        left = [p for p in psutil.Process().children(recursive=True)
                if p.pid not in before and p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE]
    assert code == 0, stderr.getvalue()[-3000:]
    records = json.loads((out / "records.json").read_text())
    print(f"case study: {records['wall_seconds']} s; bytes per link "
          f"{records['bytes_per_link']}")
    return Run(out, code, stdout.getvalue(), stderr.getvalue(), records,
               json.loads((out / "report.json").read_text()),
               yaml.safe_load((out / "case" / "hybridnb.yaml").read_text())["sites"], left)


def test_placement_with_the_sites_real_costs_and_links(run):
    r, sites = run.records, run.sites
    assert r["placement"] == {"prepare the scans (pii)": "onprem",
                              "prepare the public data": "cloud",
                              "train on the scans": "onprem", "serve the model": "edge"}
    est = r["placement_estimates"]
    # CPU × hours × the chosen site's price, as configured for the case.
    assert est["prepare the public data"]["compute_usd"] == pytest.approx(
        4 * 0.1 * sites["cloud"]["cost"]["cpu_hour"])
    assert est["train on the scans"]["compute_usd"] == pytest.approx(
        2 * 0.2 * sites["onprem"]["cost"]["cpu_hour"])
    # Moving the bundle to the edge: its bytes over the onprem→edge link's rate.
    link = sites["onprem"]["network"]["to"]["edge"]
    assert link["bandwidth_mbps"] == 20.0
    assert r["serve_site"] == "edge"
    assert r["push_estimate_seconds"] == pytest.approx(
        r["bundle_bytes"] * 8 / (link["bandwidth_mbps"] * 1e6) + link["latency_ms"] / 1e3,
        abs=1e-3)
    assert "placement          prepare the scans (pii) → onprem" in run.stdout


def test_pii_is_prepared_on_onprem_only_by_the_workers_own_records(run):
    r = run.records
    assert r["workers"] == {"onprem": 2, "cloud": 2}
    records = read_residency(run.out / "residency")  # read again, not the notebook's word
    assert sorted(w.site for w in records) == ["cloud", "cloud", "onprem", "onprem"]
    sites = per_site(records)
    assert sites["cloud"].received("pii") == (0, 0)  # no pii task, zero pii bytes fetched
    assert sites["cloud"].opened == []  # and no file of the on-prem disk opened
    pii_tasks, pii_bytes = sites["onprem"].received("pii")
    assert pii_tasks > 0 and pii_bytes > 0 and sites["onprem"].opened
    assert r["pii_tasks"]["cloud"] == 0 and r["pii_bytes_in"]["cloud"] == 0
    assert set(r["pii_bytes_in"]) == {"onprem", "cloud"}  # the edge runs no worker


def test_public_data_bursts_to_the_cloud_and_ddp_runs_where_the_scans_may_go(run):
    r = run.records
    sites = per_site(read_residency(run.out / "residency"))
    assert sites["cloud"].tasks.get("unrestricted", 0) > 0  # the burst did run there
    assert r["public_counts"]["train"] > 0 and r["scans_counts"]["train"] > 0
    assert run.report["phases"][3]["cloud in"] > 0  # the burst's shuffle reached it
    records = read_residency(run.out / "residency")
    ranks = sorted(w.site for w in records for k in w.keys if k.startswith("run_rank"))
    assert ranks == r["rank_sites"] == ["onprem", "onprem"]
    assert r["world_size"] == 2 and r["test_accuracy"] >= 0.8  # 2 epochs reach ~0.95


def test_the_bundle_never_the_data_goes_to_the_edge_and_answers_across_the_link(run):
    r = run.records
    phases = {p["phase"]: p for p in run.report["phases"]}
    assert phases["ship the bundle to the edge"]["edge in"] >= r["bundle_bytes"]
    assert r["edge_holds_only_the_bundle"] is True and r["data_files_at_edge"] == 0
    held = {p.name for p in (run.out / "case" / "edge" / "agent" / "blobs" /
                             "sha256").iterdir()}
    scans = {sha256_file(p) for p in (run.out / "case" / "onprem" / "records").iterdir()}
    assert held and not held & scans
    assert phases["query the edge"]["edge in"] > 0 < phases["query the edge"]["edge out"]
    assert r["edge_agrees"] is True and r["edge_version"] == "1"


def test_monitoring_scrapes_every_site_and_the_edge_alert_fires(run):
    r = run.records
    assert r["scraped_up"] == {"centre": True, "cloud": True, "edge": True, "onprem": True}
    assert r["alerts_firing"] == ["EdgeSiteUnreachable"] == r["alerts_resolved"]
    assert r["edge_state_during_outage"] == "unreachable"
    assert r["served_locally_during_outage"] == 20
    assert r["edge_requests_forwarded"] >= 21  # the centre's query and the 20 local ones


def test_the_report_shows_each_site_and_the_bytes_per_link(run):
    report, r = run.report, run.records
    assert list(report["sites"]) == list(HOSTS)
    assert "0 pii tasks" in report["sites"]["cloud"] and "2 training ranks" in \
        report["sites"]["onprem"]
    assert [p["phase"] for p in report["phases"]] == PHASES == list(r["bytes_per_link"])
    assert all(p[f"{h} {d}"] >= 0 for p in report["phases"] for h in HOSTS
               for d in ("out", "in"))
    assert "pii                tasks onprem" in run.stdout and "cloud 0;" in run.stdout
    assert "bytes per link     onprem " in run.stdout
    for name in ("06_hybrid_case_study.ipynb", "06_hybrid_case_study.html", "links.png",
                 "records.json", "report.json"):
        assert (run.out / name).is_file() and str(run.out / name) in run.stdout, name


def test_every_process_on_every_host_is_cleaned_up(run):
    r = run.records
    assert r["left_running"] == {} and r["netns_left"] == []
    assert run.report["cleanup"]["left_running"] == {}
    assert leftovers(r["run_id"]) == {"netns": [], "links": []}
    assert running_from(run.out / "case") == []
    assert run.left == [], "the run left processes"
    assert "nothing left running on any host; every namespace removed" in run.stdout

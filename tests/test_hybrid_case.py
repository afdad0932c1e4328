"""The hybrid case study end to end: ``hybridnb demo-hybrid`` runs
``notebooks/06_hybrid_case_study.ipynb`` under papermill (what ``make demo-hybrid`` runs)
across three network-namespace hosts; the checks read what the run left behind — the
workers' own residency logs, the per-link byte counts, the edge agent's blob store, the
records — and the kernel for leftovers."""

from __future__ import annotations

import json

import psutil
import pytest

from hybridnb.cli import main
from hybridnb.fileio import sha256_file
from hybridnb.sites.residency import per_site, read_residency
from hybridnb.testing.netns import leftovers
from hybridnb.testing.sshd import sshd_skip_reason
from hybridnb.testing.waiting import wait_until

pytestmark = [pytest.mark.netns, pytest.mark.slow]

PHASES = ["hosts", "cluster and burst", "prepare the scans (pii)",
          "prepare the public data (burst)", "end of the burst", "train (DDP on onprem)",
          "ship the bundle to the edge", "query the edge", "edge link down"]


def running_from(directory) -> list[str]:
    """Processes anywhere on the machine whose command line names ``directory`` (the
    case's sshd, edge agent, workers started through its Python wrapper...)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if str(directory) in cmd:
            found.append(f"{proc.info['pid']} {cmd[:200]}")
    return found


@pytest.fixture
def needs_hosts():
    reason = sshd_skip_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.mark.timeout(900)
def test_the_hybrid_case_study_end_to_end(needs_hosts, hybridnb_home, capsys):
    out = hybridnb_home / "demo-hybrid"
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    code = main(["demo-hybrid", "--out", str(out), "--epochs", "2", "--outage", "5"])
    text = capsys.readouterr()
    assert code == 0, text.err[-3000:]
    r = json.loads((out / "records.json").read_text())
    report = json.loads((out / "report.json").read_text())

    # Placement, with the sites' real numbers.
    assert r["placement"] == {"prepare the scans (pii)": "onprem",
                              "prepare the public data": "cloud",
                              "train on the scans": "onprem", "serve the model": "edge"}
    assert r["workers"] == {"onprem": 2, "cloud": 2}

    # Residency, from the workers' own logs (read again here, not the notebook's word).
    records = read_residency(out / "residency")
    assert sorted(w.site for w in records) == ["cloud", "cloud", "onprem", "onprem"]
    sites = per_site(records)
    assert sites["cloud"].received("pii") == (0, 0)  # no pii task, no pii byte fetched
    assert sites["cloud"].opened == []  # and no file of the on-prem disk opened
    pii_tasks, pii_bytes = sites["onprem"].received("pii")
    assert pii_tasks > 0 and pii_bytes > 0 and sites["onprem"].opened
    assert sites["cloud"].tasks.get("unrestricted", 0) > 0  # the burst did run there
    assert r["pii_tasks"]["cloud"] == 0 and r["pii_bytes_in"]["cloud"] == 0
    ranks = sorted(w.site for w in records for k in w.keys if k.startswith("run_rank"))
    assert ranks == r["rank_sites"] == ["onprem", "onprem"]
    assert r["world_size"] == 2 and r["test_accuracy"] >= 0.8  # 2 epochs reach ~0.95

    # Bytes per link: every phase measured on every host's link; the bundle crossed the
    # edge's link, and the edge holds nothing but the bundle's files.
    phases = {p["phase"]: p for p in report["phases"]}
    assert list(phases) == PHASES
    assert all(p[f"{h} {d}"] >= 0 for p in phases.values() for h in ("onprem", "cloud", "edge")
               for d in ("out", "in"))
    assert phases["ship the bundle to the edge"]["edge in"] >= r["bundle_bytes"]
    assert phases["prepare the public data (burst)"]["cloud in"] > 0
    assert r["edge_holds_only_the_bundle"] is True and r["data_files_at_edge"] == 0
    held = {p.name for p in (out / "case" / "edge" / "agent" / "blobs" / "sha256").iterdir()}
    scans = {sha256_file(p) for p in (out / "case" / "onprem" / "records").iterdir()}
    assert held and not held & scans

    # The edge's answer across its link, and the alert while the link was down.
    assert r["edge_agrees"] is True and r["edge_version"] == "1"
    assert r["alerts_firing"] == ["EdgeSiteUnreachable"] == r["alerts_resolved"]
    assert r["edge_state_during_outage"] == "unreachable"
    assert r["served_locally_during_outage"] == 20
    assert r["edge_requests_forwarded"] >= 21  # the centre's query and the 20 local ones
    assert r["scraped_up"] == {"centre": True, "cloud": True, "edge": True, "onprem": True}

    # Clean-up: nothing left in any host, no namespace or link left, no kernel.
    assert r["left_running"] == {} and r["netns_left"] == []
    assert leftovers(r["run_id"]) == {"netns": [], "links": []}
    assert running_from(out / "case") == []
    assert not [p for p in psutil.Process().children(recursive=True)
                if p.pid not in before and p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE], "the run left processes"

    # The summary says it, and the files are where it says.
    assert "pii                tasks onprem" in text.out and "cloud 0;" in text.out
    assert "nothing left running on any host; every namespace removed" in text.out
    for name in ("06_hybrid_case_study.ipynb", "06_hybrid_case_study.html", "links.png",
                 "records.json", "report.json"):
        assert (out / name).is_file() and str(out / name) in text.out, name
    print(f"case study: {r['wall_seconds']} s; bytes per link {r['bytes_per_link']}")


def _case_names() -> set[str]:
    return {n for names in leftovers("hcase").values() for n in names}


@pytest.mark.timeout(600)
def test_a_cell_that_fails_still_cleans_every_host(needs_hosts, hybridnb_home, capsys):
    """Training refuses 0 epochs after the hosts, the cluster, the burst and the collector
    are up: every process still stops and every host goes, however the kernel ends."""
    out = hybridnb_home / "demo-hybrid"
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    names = _case_names()
    assert main(["demo-hybrid", "--out", str(out), "--epochs", "0"]) == 3
    err = capsys.readouterr().err
    assert "failed at cell" in err and "epochs" in err
    r = json.loads((out / "records.json").read_text())
    assert r["workers"] == {"onprem": 2, "cloud": 2}  # it got that far
    # No namespace, veth or bridge of this run is left: the kernel closed the case, or (if
    # it was killed first) the case's reaper removed them once the kernel was gone.
    wait_until(lambda: _case_names() == names, timeout=60, what="the hosts removed")
    assert running_from(out / "case") == []
    assert not [p for p in psutil.Process().children(recursive=True)
                if p.pid not in before and p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE], "the run left processes"

"""The user-facing notebooks: each runs headless with small parameters, and stays in sync
with ``notebooks/_build.py``, without outputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest

from hybridnb.notebooks.runner import run_notebook
from hybridnb.testing.waiting import running_children

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def _agrees(r: dict[str, Any]) -> None:
    """The endpoint answers what training measured: the same test images through it,
    within two flipped predictions (training evaluates in bf16 where the CPU has it, the
    endpoint in fp32)."""
    assert abs(r["endpoint_accuracy"] - r["test_accuracy"]) <= 2 / r["test_images"], r


def _latency_alert(r: dict[str, Any]) -> None:
    """The latency rule fires exactly when server-side p99 passes its threshold."""
    threshold, fired = r["latency_alert_ms"], "EndpointLatencyHigh" in r["alerts_fired"]
    assert threshold == 10.0 and r["server_p99_ms"] > 0
    if r["server_p99_ms"] > threshold:  # the rule saw this value at that round
        assert fired, r
    if fired and "alert_value_ms" in r:
        assert r["alert_value_ms"] > threshold, r


def _quickstart(r: dict[str, Any]) -> None:
    # 2 epochs on the prepared digits reach about 0.93 (0.97+ at the demo's 12).
    assert r["test_accuracy"] >= 0.85, r
    _agrees(r)
    assert r["client_p99_ms"] >= r["client_p50_ms"] > 0 and r["server_p99_one_client_ms"] > 0
    assert r["requests"] == 60 and r["concurrency"] == 4 and r["replicas_healthy"] == 2
    _latency_alert(r)
    assert r["left_running"] == 0 and r["precision"] in ("bf16", "fp32")


def _sites(r: dict[str, Any]) -> None:
    assert r["train_scans_site"] == "aws" and r["train_patients_site"] == "onprem"
    assert r["rejected_with_gpu"] >= 2 and r["cluster_closed"] is True


def _preprocess(r: dict[str, Any]) -> None:
    assert r["counts"]["train"] > r["counts"]["test"] > 0
    assert r["rerun"].startswith("up to date") and r["train_batches"] > 0


def _training(r: dict[str, Any]) -> None:
    assert r["world_size"] == 2 and r["steps"] > 0 and r["strategy"] == "ddp"
    # 2 epochs on the built-in digits reach about 0.90 (random guessing: 0.10).
    assert r["test_accuracy"] >= 0.80, r
    assert Path(r["bundle"]).is_dir()


def _endpoint(r: dict[str, Any]) -> None:
    assert r["v1_status"] == 200 and r["replicas_after_scale"] == 3
    assert r["client_p99_ms"] >= r["client_p50_ms"] > 0
    # 2 epochs with fit's defaults reach about 0.83.
    assert r["test_accuracy"] >= 0.70, r
    _agrees(r)


def _monitoring(r: dict[str, Any]) -> None:
    assert "TargetDown" in r["alerts_fired"]  # a replica went away while scraped
    _latency_alert(r)
    assert r["client_p99_ms"] > 0
    assert r["scrape_rounds"] >= 3 and r["targets"] == 3


# stem -> (small parameters, checks of the records, slow?)
SMALL: dict[str, tuple[dict[str, Any], Any, bool]] = {
    "00_quickstart": ({"epochs": 2, "requests": 60, "concurrency": 4}, _quickstart, True),
    "01_sites_and_placement": ({"workers": 1}, _sites, False),
    "02_preprocess_with_dask": ({"augment_copies": 1}, _preprocess, False),
    "03_distributed_training": ({"epochs": 2}, _training, False),
    "04_deploy_endpoint": ({"epochs": 2, "requests": 40}, _endpoint, True),
    "05_monitoring": ({"requests": 60}, _monitoring, False),
}


def _case(path: Path) -> Any:
    slow = SMALL.get(path.stem, ({}, None, True))[2]
    return pytest.param(path, id=path.stem, marks=[pytest.mark.slow] if slow else [])


def kernels_alive() -> list[psutil.Process]:
    return running_children("ipykernel")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", [_case(p) for p in NOTEBOOKS])
def test_notebook_runs_headless(path, hybridnb_home):
    assert path.stem in SMALL, f"give {path.name} small parameters and checks in SMALL"
    parameters, check, _ = SMALL[path.stem]
    out = hybridnb_home / "out"
    # Earlier tests may leave long-lived helpers (multiprocessing's resource tracker);
    # only what this notebook started counts.
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    run = run_notebook(path, out / path.name, {**parameters, "out_dir": str(out / "files")},
                       timeout=300)
    assert run.ok, f"{path.name} failed at cell {run.failed_cell}: {run.error}"
    assert run.warnings == []
    check(run.records)
    assert list((out / "files").glob("*.png")), "each notebook saves its plots"
    assert kernels_alive() == []
    assert not [p for p in psutil.Process().children(recursive=True)
                if p.pid not in before and p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE], "the notebook left processes"


def _load_build() -> Any:
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOK_DIR / "_build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shape(nb: Any) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


def test_notebooks_match_build_script_and_carry_no_outputs(tmp_path):
    build = _load_build()
    fresh = build.write_all(tmp_path)
    assert sorted(p.name for p in fresh) == [p.name for p in NOTEBOOKS], \
        "run: python notebooks/_build.py"
    for path in NOTEBOOKS:
        committed = nbformat.read(path, as_version=4)
        nbformat.validate(committed)
        regenerated = nbformat.read(tmp_path / path.name, as_version=4)
        assert _shape(committed) == _shape(regenerated), \
            f"{path.name} differs from notebooks/_build.py: run python notebooks/_build.py"
        tagged = [c for c in committed.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and "out_dir" in tagged[0].source
        for cell in committed.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name

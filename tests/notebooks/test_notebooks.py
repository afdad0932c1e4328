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

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def _quickstart(r: dict[str, Any]) -> None:
    assert 0.0 <= r["test_accuracy"] <= 1.0 and r["endpoint_accuracy"] >= 0.0
    assert r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"]
    assert r["requests"] == 60 and r["replicas_healthy"] == 2
    assert "EndpointLatencyHigh" in r["alerts_fired"]
    assert r["left_running"] == 0 and r["precision"] in ("bf16", "fp32")


def _sites(r: dict[str, Any]) -> None:
    assert r["train_scans_site"] == "aws" and r["train_patients_site"] == "onprem"
    assert r["rejected_with_gpu"] >= 2 and r["cluster_closed"] is True


def _preprocess(r: dict[str, Any]) -> None:
    assert r["counts"]["train"] > r["counts"]["test"] > 0
    assert r["rerun"].startswith("up to date") and r["train_batches"] > 0


def _training(r: dict[str, Any]) -> None:
    assert r["world_size"] == 2 and r["steps"] > 0 and r["strategy"] == "ddp"
    assert 0.0 <= r["test_accuracy"] <= 1.0 and Path(r["bundle"]).is_dir()


def _endpoint(r: dict[str, Any]) -> None:
    assert r["v1_status"] == 200 and r["replicas_after_scale"] == 3
    assert r["p99_ms"] >= r["p50_ms"] > 0 and 0.0 <= r["endpoint_accuracy"] <= 1.0


def _monitoring(r: dict[str, Any]) -> None:
    assert {"EndpointLatencyHigh", "TargetDown"} <= set(r["alerts_fired"])
    assert r["scrape_rounds"] >= 3 and r["targets"] == 3


# stem -> (small parameters, checks of the records, slow?)
SMALL: dict[str, tuple[dict[str, Any], Any, bool]] = {
    "00_quickstart": ({"epochs": 2, "requests": 60, "concurrency": 4}, _quickstart, True),
    "01_sites_and_placement": ({"workers": 1}, _sites, False),
    "02_preprocess_with_dask": ({"augment_copies": 1}, _preprocess, False),
    "03_distributed_training": ({"epochs": 1}, _training, False),
    "04_deploy_endpoint": ({"epochs": 1, "requests": 40}, _endpoint, True),
    "05_monitoring": ({"requests": 60}, _monitoring, False),
}


def _case(path: Path) -> Any:
    slow = SMALL.get(path.stem, ({}, None, True))[2]
    return pytest.param(path, id=path.stem, marks=[pytest.mark.slow] if slow else [])


def kernels_alive() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True)
            if "ipykernel" in " ".join(p.cmdline())]


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

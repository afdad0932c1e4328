"""A model module next to the spec or in the working directory: the check before launch
and the ranks look in the same places (the spec's directory, then the working directory),
and a module found nowhere is exit 2 naming where it was looked for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from hybridnb.errors import UsageError
from hybridnb.train.models import model_path, resolve_factory

# The installed console script, not `python -m hybridnb`: `-m` puts the working directory
# on sys.path, which the script does not (that difference hid the bug).
HYBRIDNB = Path(sys.executable).with_name("hybridnb")

MODULE = '''
from torch import nn


def make(hidden={hidden}):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
'''

SPEC = """
name: {name}
model: {{factory: "{module}:make"}}
data: digits
epochs: 1
max_steps: 3
batch_size: 16
log_every: 1
"""


def write_project(where: Path, *, module: str = "my_models", hidden: int | None = 16,
                  name: str = "mine") -> Path:
    where.mkdir(parents=True, exist_ok=True)
    if hidden is not None:
        (where / f"{module}.py").write_text(MODULE.format(hidden=hidden))
    spec = where / "spec.yaml"
    spec.write_text(SPEC.format(name=name, module=module))
    return spec


def hybridnb(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert HYBRIDNB.is_file(), f"the hybridnb console script is not installed at {HYBRIDNB}"
    return subprocess.run([str(HYBRIDNB), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=240, env={**os.environ})


def hidden_width(run_dir: Path) -> int:
    return int(load_file(str(run_dir / "model.safetensors"))["1.weight"].shape[0])


def test_model_path_is_the_spec_directory_then_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "specs" / "s.yaml"
    assert model_path(spec) == [str(tmp_path / "specs"), str(tmp_path)]
    assert model_path(tmp_path / "s.yaml") == [str(tmp_path)]  # no directory twice
    assert model_path() == [str(tmp_path)]


def test_a_missing_module_names_every_place_searched(tmp_path):
    with pytest.raises(UsageError) as err:
        resolve_factory("nowhere_models:make", [str(tmp_path / "a"), str(tmp_path / "b")])
    text = str(err.value)
    assert f"looked in {tmp_path / 'a'}, then {tmp_path / 'b'}, then on the Python path" in text
    assert "PYTHONPATH" in text and "nowhere_models.py" in text
    # A module that exists but fails its own import is a different message.
    (tmp_path / "broken_models.py").write_text("import not_installed_anywhere\n")
    with pytest.raises(UsageError, match=r"was found but its own import failed.*"
                                         r"not_installed_anywhere"):
        resolve_factory("broken_models:make", [str(tmp_path)])


@pytest.mark.slow
def test_train_imports_the_module_next_to_the_spec_from_another_directory(tmp_path,
                                                                            hybridnb_home):
    # my_models.py next to the spec (16 wide) and another in the working directory (8
    # wide): the spec's directory comes first, for the check, the ranks and the bundle
    # alike (had they disagreed, the bundle would not load the ranks' weights).
    spec = write_project(tmp_path / "project", hidden=16)
    elsewhere = tmp_path / "elsewhere"
    write_project(elsewhere, hidden=8)
    run_dir = tmp_path / "run-a"
    proc = hybridnb("train", str(spec), "--nprocs", "1", "--run-dir", str(run_dir),
                    cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert hidden_width(run_dir) == 16
    assert (run_dir / "bundle" / "hybridnb-model.json").is_file()
    assert "trained mine: test accuracy" in proc.stdout


@pytest.mark.slow
def test_train_imports_the_module_from_the_working_directory(tmp_path, hybridnb_home):
    # Run from the spec's own directory, with a relative path...
    project = tmp_path / "project"
    write_project(project, hidden=12)
    run_dir = tmp_path / "run-b"
    proc = hybridnb("train", "spec.yaml", "-n", "1", "--run-dir", str(run_dir), cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert hidden_width(run_dir) == 12
    # ...and with the module in the working directory and the spec somewhere else.
    specs = tmp_path / "specs"
    spec = write_project(specs, hidden=None, name="cwd")
    run_dir = tmp_path / "run-c"
    proc = hybridnb("train", str(spec), "-n", "1", "--run-dir", str(run_dir), "--no-bundle",
                    cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert hidden_width(run_dir) == 12
    assert json.loads((run_dir / "result.json").read_text())["steps"] == 3


def test_train_without_the_module_exits_2_with_the_paths_searched(tmp_path, hybridnb_home):
    spec = write_project(tmp_path / "project", module="missing_models", hidden=None)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = hybridnb("train", str(spec), "-n", "1", cwd=cwd)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr
    assert "no module named 'missing_models'" in err
    assert f"looked in {tmp_path / 'project'}, then {cwd}, then on the Python path" in err
    assert "PYTHONPATH" in err and "Traceback" not in err
    assert not list((hybridnb_home / "state").glob("runs/*"))  # nothing started

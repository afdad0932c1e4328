"""environments/ agrees with pyproject.toml."""

from __future__ import annotations

from pathlib import Path

import tomllib
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _reqs(path: Path) -> dict[str, Requirement]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "-r")):
            req = Requirement(line)
            out[req.name.lower()] = req
    return out


def _by_name(lines):
    return {Requirement(r).name.lower(): Requirement(r) for r in lines}


def test_requirements_txt_matches_pyproject():
    assert _reqs(ROOT / "environments" / "requirements.txt") == _by_name(
        _pyproject()["dependencies"])


def test_requirements_dev_matches_dev_extra():
    assert _reqs(ROOT / "environments" / "requirements-dev.txt") == _by_name(
        _pyproject()["optional-dependencies"]["dev"])


def test_conda_environment_matches_pyproject():
    env = yaml.safe_load((ROOT / "environments" / "environment.yml").read_text())
    conda = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            req = Requirement(dep.replace(" ", ""))
            conda[req.name.lower()] = req.specifier
    for req in _by_name(_pyproject()["dependencies"]).values():
        name = CONDA_NAMES.get(req.name, req.name).lower()
        assert name in conda, f"{name} missing from environment.yml"
        assert conda[name] == req.specifier, f"{name}: {conda[name]} != {req.specifier}"
    assert str(conda["python"]) == _pyproject()["requires-python"]

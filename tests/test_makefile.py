"""``make install`` says what it is doing: a status line per step and pip's own progress."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_install_prints_a_status_line_per_step_and_lets_pip_show_progress(tmp_path):
    # A dry run (-n) of a venv that does not exist yet: every step of a fresh install.
    done = subprocess.run(["make", "-n", "install", f"VENV={tmp_path / 'venv'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    status = [line for line in lines if line.startswith('echo "== install ')]
    assert [re.search(r"(\d)/4", line).group(1) for line in status] == ["1", "2", "3", "4"]
    pips = [line for line in lines if "pip install" in line]
    assert len(pips) == 3, pips
    assert not [line for line in pips if re.search(r"\s-q\b|--quiet", line)], pips

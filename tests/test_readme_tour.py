"""The README's "A short tour" runs as printed: every command, in order, on a fresh copy.

The commands are read from README.md (the first ``bash`` block under "## A short tour")
and run exactly as written — split as a shell would split them, with ``hybridnb`` found
on ``PATH`` in this interpreter's environment (the venv's console script) — in an empty
working directory holding a copy of ``notebooks/`` (what a fresh clone has), with an
isolated ``HOME`` and ``$HYBRIDNB_HOME``. Each must exit 0. A command whose README
comment says "until Ctrl-C" is started, must announce its URL and answer health checks
there, then is stopped with Ctrl-C (SIGINT) and must exit 0.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hybridnb.testing.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FOREGROUND = "until Ctrl-C"  # the README's words for a command that serves until stopped


def tour_commands(text: str) -> list[tuple[list[str], bool]]:
    """``(argv, runs until Ctrl-C)`` for each command of the README's tour block.

    >>> tour_commands("## A short tour\\n```bash\\nhybridnb ps   # list\\n"
    ...               "                 # more comment\\nhybridnb serve B  # until Ctrl-C\\n```")
    [(['hybridnb', 'ps'], False), (['hybridnb', 'serve', 'B'], True)]
    """
    section = text.split("## A short tour", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, "README.md: no ```bash block under '## A short tour'"
    out = []
    for line in block.group(1).splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            assert argv[0] == "hybridnb", f"README tour: not a hybridnb command: {line!r}"
            out.append((argv, FOREGROUND in line))
    return out


def _command(argv: list[str]) -> str:
    """The command words of ``argv``, after the global options: ``"cluster up"``."""
    words = argv[1:]
    while words and words[0].startswith("-"):
        words = words[2:] if words[0] in ("--config", "-c", "--set") else words[1:]
    return " ".join(words[:2])


def test_the_tour_block_is_found_and_covers_the_commands():
    named = [_command(argv) for argv, _ in tour_commands(README.read_text())]
    for expected in ("doctor", "sites list", "sites validate", "config", "plan", "cluster up",
                     "cluster down", "ps", "monitor", "data prepare", "train", "deploy",
                     "compress", "monitor export", "run", "sweep", "gc"):
        assert any(n.startswith(expected) for n in named), expected


@pytest.fixture
def fresh_clone(tmp_path, monkeypatch):
    """A working directory as a fresh clone has it, and an environment of a new user."""
    work = tmp_path / "clone"
    work.mkdir()
    shutil.copytree(ROOT / "notebooks", work / "notebooks",
                    ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    home = tmp_path / "home"
    home.mkdir()
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "hybridnb").is_file(), f"no hybridnb console script in {bin_dir}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HYBRIDNB_", "XDG_")) and k not in ("HOME", "PATH")}
    env.update(HOME=str(home), HYBRIDNB_HOME=str(tmp_path / "state"),
               HYBRIDNB_SYSTEM_CONFIG=str(tmp_path / "etc" / "hybridnb.yaml"),
               PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return work, env


def _failed(argv: list[str], code: int | None, output: str) -> str:
    tail = "\n".join(output.strip().splitlines()[-25:])
    return f"README tour: `{shlex.join(argv)}` exited {code}:\n{tail}"


def _serve_until_ctrl_c(argv: list[str], work: Path, env: dict[str, str]) -> None:
    """Start a foreground server, check it answers where it says, then Ctrl-C it."""
    log = work / f".tour-{len(list(work.glob('.tour-*')))}.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(argv, cwd=work, env=env, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = wait_until(lambda: re.search(r"at (http://[\d.]+:\d+)", log.read_text()),
                         timeout=120, what=f"`{shlex.join(argv)}` to print its URL",
                         alive=lambda: proc.poll() is None).group(1)
        assert httpx.get(f"{url}/v2/health/ready", timeout=10).status_code == 200
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert code == 0, _failed(argv, code, log.read_text())


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_readme_tour_runs_as_printed(fresh_clone):
    work, env = fresh_clone
    sources = {p: p.read_bytes() for p in (work / "notebooks").rglob("*") if p.is_file()}
    for argv, foreground in tour_commands(README.read_text()):
        if foreground:
            _serve_until_ctrl_c(argv, work, env)
            continue
        start = time.monotonic()
        try:
            done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True,
                                  timeout=600)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"README tour: `{shlex.join(argv)}` ran past 600 s:\n{exc.stdout}")
        assert done.returncode == 0, _failed(argv, done.returncode, done.stdout + done.stderr)
        assert "Traceback" not in done.stderr, _failed(argv, 0, done.stderr)
        print(f"{time.monotonic() - start:6.1f} s  {shlex.join(argv)}")
    # What the tour promised to leave: files under build/, nothing running, no source
    # directory written to.
    for path in ("build/data/digits", "build/runs/digits/bundle", "build/k8s",
                 "build/runs/03.ipynb", "build/runs/03.html", "build/sweep/results.csv"):
        assert (work / path).exists(), path
    assert sorted(p.name for p in work.iterdir() if not p.name.startswith(".")) == \
        ["build", "notebooks"]
    assert {p: p.read_bytes() for p in (work / "notebooks").rglob("*") if p.is_file()} \
        == sources, "the tour wrote into notebooks/"
    left = subprocess.run(["hybridnb", "ps", "--json"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert left.returncode == 0 and left.stdout.strip() == "[]", left.stdout

"""The JupyterLab extension as built: its unit tests, its wire models, its packaging.

The built assets are what ``make labextension`` (part of ``make install``) leaves in
``hybridnb/labextension``; the tests fail, saying so, when they are missing or older than
the sources.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXT = ROOT / "extensions" / "hybridnb-labextension"
BUILT = ROOT / "hybridnb" / "labextension"
NAME = "hybridnb-labextension"
BIN = Path(sys.executable).parent


def _sources() -> list[Path]:
    files = [*EXT.glob("src/*.ts"), *EXT.glob("style/*"), *EXT.glob("schema/*.json"),
             *EXT.glob("scripts/*.js"), EXT / "package.json", EXT / "yarn.lock",
             EXT / "tsconfig.json", ROOT / "notebooks" / "00_quickstart.ipynb"]
    return [f for f in files if f.is_file()]


def built_labextension() -> Path:
    """The built assets, or a failure that says how to build them."""
    stamp = BUILT / "package.json"
    if not stamp.is_file():
        pytest.fail(f"{BUILT} is missing: build the extension with `make labextension`")
    stale = [str(f.relative_to(ROOT)) for f in _sources()
             if f.stat().st_mtime > stamp.stat().st_mtime]
    if stale:
        pytest.fail(f"the built extension is older than {', '.join(stale[:3])}: "
                    "rebuild it with `make labextension`")
    return BUILT


def _jupyter_path(tmp: Path, extension: Path) -> dict[str, str]:
    """An environment whose JupyterLab finds ``extension`` as hybridnb-labextension."""
    data = tmp / "share" / "jupyter"
    (data / "labextensions").mkdir(parents=True)
    (data / "labextensions" / NAME).symlink_to(extension, target_is_directory=True)
    return {**os.environ, "JUPYTER_PATH": str(data), "JUPYTER_CONFIG_DIR": str(tmp / "cfg"),
            "JUPYTER_PLATFORM_DIRS": "1"}


def _labextension_list(env: dict[str, str]) -> str:
    out = subprocess.run([str(BIN / "jupyter"), "labextension", "list"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)  # no colours


@pytest.mark.slow
def test_typescript_unit_tests():
    """jest, as the extension template sets it up (src/__tests__/*.spec.ts)."""
    if not (EXT / "node_modules" / ".yarn-state.yml").exists():
        pytest.fail(f"{EXT}/node_modules is missing: run `make labextension`")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "CI": "true"}
    out = subprocess.run([str(BIN / "jlpm"), "test"], cwd=EXT, env=env,
                         capture_output=True, text=True, timeout=600)
    report = out.stdout + out.stderr
    assert out.returncode == 0, report[-6000:]
    assert re.search(r"Tests:\s+\d+ passed, \d+ total", report), report[-2000:]


def test_labextension_list_reports_it_enabled_and_ok(tmp_path):
    env = _jupyter_path(tmp_path, built_labextension())
    listing = _labextension_list(env)
    line = next((ln for ln in listing.splitlines() if NAME in ln), "")
    assert re.search(rf"{NAME} v\d+\.\d+\.\d+ enabled\s+.*OK", line), listing


def _interfaces(source: str) -> dict[str, tuple[str | None, dict[str, bool]]]:
    """``{name: (parent, {field: optional})}`` of the ``export interface`` blocks."""
    out: dict[str, tuple[str | None, dict[str, bool]]] = {}
    pattern = r"^export interface (\w+)(?: extends (\w+))? \{\n(.*?)^\}"
    for match in re.finditer(pattern, source, re.MULTILINE | re.DOTALL):
        fields = {m.group(1): bool(m.group(2))
                  for m in re.finditer(r"^  (\w+)(\?)?:", match.group(3), re.MULTILINE)}
        out[match.group(1)] = (match.group(2), fields)
    return out


def test_typescript_models_mirror_the_server_models():
    """src/models.ts has the fields of hybridnb.jupyter.models, no more, no fewer."""
    from hybridnb.jupyter.models import schemas

    server = schemas()
    defs: dict[str, dict] = {}
    for schema in server.values():
        defs.update(schema.get("$defs", {}))
    known = {**defs, **server}
    interfaces = _interfaces((EXT / "src" / "models.ts").read_text())
    assert {"Cluster", "Job", "Site", "PlanAnswer", "Summary"} <= set(interfaces)
    for name, (parent, fields) in interfaces.items():
        assert name in known, f"models.ts has {name}, the server has no such model"
        if parent:
            fields = {**interfaces[parent][1], **fields}
        schema = known[name]
        props = set(schema.get("properties", {}))
        assert set(fields) == props, (
            f"{name}: only in models.ts {sorted(set(fields) - props)}, "
            f"only on the server {sorted(props - set(fields))}")
        # Where the TypeScript says a field is always there, the server must say so too.
        required = set(schema.get("required", []))
        always = {f for f, optional in fields.items() if not optional}
        assert always <= required, f"{name}: {sorted(always - required)} may be absent"
    # Every model the routes answer with has its mirror.
    missing = set(server) - set(interfaces)
    assert not missing, f"models.ts lacks {sorted(missing)}"


def _copy_for_make(tmp: Path) -> tuple[Path, dict[str, str]]:
    """The Makefile, the extension's sources and its build, mtimes kept, in ``tmp``."""
    repo = tmp / "repo"
    ext = repo / "extensions" / NAME
    ext.mkdir(parents=True)
    shutil.copy2(ROOT / "Makefile", repo / "Makefile")
    shutil.copy2(ROOT / "pyproject.toml", repo / "pyproject.toml")
    (repo / "notebooks").mkdir()
    shutil.copy2(ROOT / "notebooks" / "00_quickstart.ipynb", repo / "notebooks")
    for item in EXT.iterdir():
        if item.name == "node_modules":
            (ext / "node_modules").symlink_to(item, target_is_directory=True)
        elif item.is_dir():
            shutil.copytree(item, ext / item.name, copy_function=shutil.copy2, symlinks=True)
        else:
            shutil.copy2(item, ext / item.name)
    shutil.copytree(built_labextension(), repo / "hybridnb" / "labextension",
                    copy_function=shutil.copy2)
    venv = tmp / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    (venv / ".installed").touch()  # newer than pyproject.toml: the venv is up to date
    return repo, {**os.environ, "MAKEFLAGS": ""}


def _dry_run(repo: Path, env: dict[str, str]) -> str:
    out = subprocess.run(["make", "-n", f"VENV={repo.parent / 'venv'}", "labextension"],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_make_rebuilds_only_what_changed(tmp_path):
    """Unchanged tree: no install, no build. A source: build only. The lock: both."""
    if not (EXT / "node_modules" / ".yarn-state.yml").exists():
        pytest.fail(f"{EXT}/node_modules is missing: run `make labextension`")
    repo, env = _copy_for_make(tmp_path)
    quiet = _dry_run(repo, env)
    assert "jlpm" not in quiet, quiet
    ext = repo / "extensions" / NAME
    later = time.time() + 5
    os.utime(ext / "src" / "index.ts", (later, later))
    rebuild = _dry_run(repo, env)
    assert "jlpm build:prod" in rebuild and "jlpm install" not in rebuild, rebuild
    os.utime(ext / "yarn.lock", (later + 5, later + 5))
    both = _dry_run(repo, env)
    assert "jlpm install --immutable" in both and "jlpm build:prod" in both, both


@pytest.mark.slow
def test_wheel_carries_the_built_extension(tmp_path):
    """The wheel installs the assets where JupyterLab looks, and only there."""
    built_labextension()
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                          "-w", str(tmp_path / "dist"), str(ROOT)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = (tmp_path / "dist").glob("hybridnb-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        data = next(n.split("/data/")[0] for n in names if ".data/data/" in n)
        prefix = f"{data}/data/share/jupyter/labextensions/{NAME}/"
        ours = [n for n in names if n.startswith(prefix)]
        assert f"{prefix}package.json" in ours and f"{prefix}install.json" in ours, ours
        assert any(re.match(rf"{re.escape(prefix)}static/remoteEntry\.\w+\.js$", n)
                   for n in ours), ours
        assert f"{prefix}schemas/{NAME}/plugin.json" in ours, ours
        assert not [n for n in names if n.startswith("hybridnb/labextension/")]
        for name in ours:
            target = tmp_path / "prefix" / name.removeprefix(f"{data}/data/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(name))
    installed = tmp_path / "prefix" / "share" / "jupyter" / "labextensions" / NAME
    assert json.loads((installed / "install.json").read_text())["packageName"] == "hybridnb"
    listing = _labextension_list(_jupyter_path(tmp_path / "env", installed))
    line = next((ln for ln in listing.splitlines() if NAME in ln), "")
    assert re.search(rf"{NAME} v\S+ enabled\s+.*OK \(python, hybridnb\)", line), listing

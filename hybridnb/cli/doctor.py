"""``hybridnb doctor``: what this machine has, and whether the embedded default can run."""

from __future__ import annotations

import os
import platform
import shutil
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import typer

from .common import print_json, table

REQUIRED_PACKAGES = ("torch", "dask", "distributed", "papermill", "jupyterlab", "ipywidgets",
                     "matplotlib")
OPTIONAL_TOOLS = ("promtool", "prometheus", "kubectl", "ssh", "sshd", "chromium", "wrk")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = False

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        return "FAILED" if self.required else "absent"


def run_checks() -> list[Check]:
    """Every check, in display order."""
    checks = [Check("python", sys.version_info >= (3, 10), platform.python_version(), True)]
    for pkg in REQUIRED_PACKAGES:
        try:
            checks.append(Check(pkg, True, version(pkg), True))
        except PackageNotFoundError:
            checks.append(Check(pkg, False, f"not installed: pip install {pkg}", True))
    checks.append(Check("cpus", True, str(os.cpu_count())))
    from ..machine import cpu_bf16_flags

    bf16 = cpu_bf16_flags()
    checks.append(Check("cpu bf16", bool(bf16), ", ".join(bf16) or "no native bf16 "
                        "instructions: bf16 training falls back to fp32"))
    checks.append(_gpus())
    for tool in OPTIONAL_TOOLS:
        path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists()
                                      else None)
        checks.append(Check(tool, path is not None, path or "not found"))
    from ..sites.kubernetes import kube_context

    ctx = kube_context()
    checks.append(Check("kubernetes context", ctx is not None, ctx or "none configured "
                        "(kubernetes sites render manifests only)"))
    checks.append(_state())
    checks.append(_config())
    return checks


def _gpus() -> Check:
    try:
        import torch
    except Exception as exc:  # a broken torch install is worth reporting, not raising
        return Check("gpus", False, f"torch does not import: {exc}")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(n))
    return Check("gpus", n > 0, f"{n}: {names}" if n else "none (CPU only)")


def _state() -> Check:
    from ..state import StateStore, state_home

    try:
        store = StateStore()
    except Exception as exc:
        return Check("state store", False, f"{state_home()}: {exc}", True)
    return Check("state store", True, str(store.path), True)


def _config() -> Check:
    from ..config import ConfigError, load_config

    try:
        config = load_config()
    except ConfigError as exc:
        return Check("config", False, f"{len(exc.problems)} problem(s): run "
                     "'hybridnb sites validate'", True)
    return Check("config", True, f"{len(config.sites)} site(s) from "
                 + " → ".join(config.layers), True)


def doctor(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show what is available; exit 0 when the embedded default can run."""
    checks = run_checks()
    if as_json:
        print_json([c.__dict__ | {"status": c.status} for c in checks])
    else:
        table("hybridnb doctor", ["check", "status", "detail", "needed"],
              [[c.name, c.status, c.detail, "required" if c.required else "optional"]
               for c in checks])
    missing = [c.name for c in checks if c.required and not c.ok]
    if missing:
        typer.echo(f"the embedded default cannot run: fix {', '.join(missing)}", err=True)
        raise typer.Exit(1)
    typer.echo("ok: the embedded default can run")

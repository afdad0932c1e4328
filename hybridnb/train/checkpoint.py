"""Checkpoints that a crash can never leave half-written.

A checkpoint is a directory ``checkpoints/step-000042/`` holding ``tensors.safetensors``
(every tensor: model, optimizer, RNG) and ``state.json`` (everything else, with
references to the tensors). No pickle is involved, so loading one never runs code.

Writing goes to a temporary sibling directory that is fsynced and renamed into place;
only then is the ``latest`` pointer file replaced (write, fsync, ``os.replace``). A
process killed at any moment leaves ``latest`` naming a complete checkpoint (or no
``latest`` at all); temporary leftovers are removed by the next save.

>>> import tempfile, torch
>>> root = tempfile.mkdtemp()
>>> path = save_checkpoint(root, 3, {"w": torch.ones(2), "meta": {"epoch": 1}})
>>> step, state = load_latest(root)
>>> step, state["w"].tolist(), state["meta"]
(3, [1.0, 1.0], {'epoch': 1})
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from ..errors import OperationError
from ..fileio import atomic_write_text

logger = logging.getLogger(__name__)

LATEST = "latest"
TENSORS = "tensors.safetensors"
STATE = "state.json"
TMP_PREFIX = ".tmp-"


def _encode(obj: Any, tensors: dict[str, Any], path: str) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        key = path or "root"
        # safetensors refuses shared or strided storage: store an owned, dense copy.
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        # Pairs, not a JSON object: optimizer state has integer keys that must survive.
        return {"__dict__": [[k, _encode(v, tensors, f"{path}/{k}")] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # numpy arrays and scalars
        return {"__numpy__": obj.tolist(), "dtype": str(obj.dtype)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a value of type {type(obj).__name__} at {path!r}")


def _decode(obj: Any, tensors: dict[str, Any]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _decode(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        if "__numpy__" in obj:
            import numpy as np

            return np.asarray(obj["__numpy__"], dtype=obj["dtype"])
    return obj


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(root: str | os.PathLike[str], step: int, state: dict[str, Any], *,
                    keep: int = 2) -> Path:
    """Write ``state`` as checkpoint ``step`` under ``root`` and point ``latest`` at it.

    Keeps the newest ``keep`` checkpoints. Returns the checkpoint directory.
    """
    from safetensors.torch import save_file

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for leftover in root.glob(TMP_PREFIX + "*"):
        shutil.rmtree(leftover, ignore_errors=True)
    name = f"step-{step:09d}"
    tmp = root / f"{TMP_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    tensors: dict[str, Any] = {}
    encoded = _encode(state, tensors, "")
    save_file(tensors, str(tmp / TENSORS))
    with open(tmp / STATE, "w", encoding="utf-8") as fh:
        json.dump({"step": step, "state": encoded}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    with open(tmp / TENSORS, "rb+") as fh:
        os.fsync(fh.fileno())
    final = root / name
    if final.exists():  # the same step again (a restarted attempt): replace it whole
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    atomic_write_text(root / LATEST, name + "\n")
    _fsync_dir(root)
    for old in sorted(root.glob("step-*"))[:-keep]:
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: str | os.PathLike[str]) -> Path | None:
    """The directory ``latest`` names, or ``None`` when there is no checkpoint yet."""
    pointer = Path(root) / LATEST
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    path = Path(root) / name
    if not (path / STATE).is_file():
        raise OperationError(f"{pointer} names {name}, which is incomplete or missing")
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[int, dict[str, Any]]:
    """``(step, state)`` of one checkpoint directory."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = json.loads((path / STATE).read_text(encoding="utf-8"))
    tensors = load_file(str(path / TENSORS))
    return int(meta["step"]), _decode(meta["state"], tensors)


def load_latest(root: str | os.PathLike[str]) -> tuple[int, dict[str, Any]] | None:
    """``(step, state)`` of the latest checkpoint under ``root``, or ``None``."""
    path = latest_checkpoint(root)
    return None if path is None else load_checkpoint(path)

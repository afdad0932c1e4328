"""Files written whole or not at all, and their checksums.

Everything hybridnb writes that someone may read while it is being written (manifests,
bundles, checkpoints, keys) goes through here: a temporary file in the same directory,
flushed and synced, then ``os.replace`` — so a reader sees the old file or the new one,
never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` atomically, with permissions ``mode``.

    >>> import tempfile, os
    >>> p = atomic_write_bytes(os.path.join(tempfile.mkdtemp(), "x.bin"), b"hi")
    >>> p.read_bytes()
    b'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


@contextmanager
def atomic_path(path: str | Path, mode: int = 0o644) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that wants a file name (safetensors,
    torch, a download); on success it is synced and moved onto ``path``, on failure
    removed.

    >>> import tempfile, os
    >>> target = Path(tempfile.mkdtemp()) / "weights.bin"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_bytes(b"w")
    >>> target.read_bytes(), sorted(p.name for p in target.parent.iterdir())
    (b'w', ['weights.bin'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str, mode: int = 0o644) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_write_json(path: str | Path, data: Any, mode: int = 0o644) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str)
                             + "\n", mode)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks.

    >>> import tempfile, os
    >>> p = atomic_write_bytes(os.path.join(tempfile.mkdtemp(), "x"), b"abc")
    >>> sha256_file(p)[:12]
    'ba7816bf8f01'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def replace_dir(tmp: str | Path, target: str | Path) -> Path:
    """Move the finished directory ``tmp`` to ``target``, replacing any old one.

    ``tmp`` must be on the same filesystem (a sibling of ``target``). A reader sees the
    old directory or the new one: the old one is renamed aside first, the new one
    renamed in, then the old one deleted. (Two renames, because ``rename`` cannot
    replace a non-empty directory.)

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "new").mkdir(); _ = (root / "new" / "v").write_text("2")
    >>> (root / "out").mkdir(); _ = (root / "out" / "v").write_text("1")
    >>> (replace_dir(root / "new", root / "out") / "v").read_text(), sorted(root.iterdir())
    ('2', [PosixPath('...out')])
    """
    import shutil
    import uuid

    tmp, target = Path(tmp), Path(target)
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(target)
    return target

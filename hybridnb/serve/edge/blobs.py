"""Content-addressed files on the edge, received in pieces over a link that drops.

A blob is named by the SHA-256 of its contents. Bytes arrive into ``partial/DIGEST`` at
the offset the sender was told; whatever reached the disk stays there when the link
drops, so the next session continues from :meth:`BlobStore.state`'s offset. When the
last byte is in, the whole file is hashed: only a matching file moves (one rename) to
``sha256/DIGEST``; a mismatching one is deleted and refused, and never served. A blob
already held is never sent again, whichever version it belongs to.

>>> import hashlib, tempfile
>>> store = BlobStore(tempfile.mkdtemp())
>>> data = b"weights" * 100
>>> d = hashlib.sha256(data).hexdigest()
>>> with store.writer(d, size=len(data), offset=0) as w:
...     _ = w.write(data[:300])
>>> store.state(d).offset
300
>>> with store.writer(d, size=len(data), offset=300) as w:
...     _ = w.write(data[300:])
>>> store.finish(d, len(data)).state.value
'complete'
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from ...errors import UsageError
from ...fileio import sha256_file
from .wire import DIGEST, BlobPhase, BlobState

logger = logging.getLogger(__name__)

#: Bytes between two fsyncs while receiving: what a power cut may cost, at most.
SYNC_EVERY = 8 << 20


class BlobError(UsageError):
    """A blob name, offset or content is wrong; the message says which and what to do."""


class OffsetMismatch(BlobError):
    """The sender's offset is not where the partial file ends (``offset`` is)."""

    def __init__(self, digest: str, offset: int, given: int):
        self.offset = offset
        super().__init__(f"blob {digest[:12]}…: {offset} bytes are here, not {given}; "
                         f"resume from offset {offset}")


class DigestMismatch(BlobError):
    """The received bytes do not hash to the blob's name: refused and deleted."""


def check_digest(digest: str) -> str:
    """``digest`` if it is a lowercase hex SHA-256, else a :class:`BlobError` (it becomes a
    file name: nothing else may pass)."""
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise BlobError(f"{digest!r} is not a hex SHA-256 digest")
    return digest


class BlobWriter:
    """Appends to a partial blob at a known offset; a context manager that syncs on exit."""

    def __init__(self, path: Path, offset: int):
        self.path = path
        self.offset = offset
        # Unbuffered: what write() returned is in the file, so a writer closed (or
        # superseded by the sender's next session) leaves nothing behind in memory.
        self._fh = open(path, "r+b" if path.exists() else "w+b", buffering=0)  # noqa: SIM115
        self._fh.seek(offset)
        self._fh.truncate()  # bytes past the agreed offset were never confirmed
        self._unsynced = 0

    @property
    def closed(self) -> bool:
        return self._fh.closed

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            n = self._fh.write(view)
            view = view[n:]
        self.offset += len(data)
        self._unsynced += len(data)
        if self._unsynced >= SYNC_EVERY:
            self.sync()
        return len(data)

    def sync(self) -> None:
        os.fsync(self._fh.fileno())
        self._unsynced = 0

    def close(self) -> None:
        if not self._fh.closed:
            self.sync()
            self._fh.close()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, tp: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class BlobStore:
    """Blobs under ``root``: ``sha256/DIGEST`` (complete, read-only) and ``partial/DIGEST``."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.done = self.root / "sha256"
        self.partial = self.root / "partial"
        self.done.mkdir(parents=True, exist_ok=True)
        self.partial.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"BlobStore({str(self.root)!r})"

    def path(self, digest: str) -> Path:
        """Where the complete blob lives (it may not exist)."""
        return self.done / check_digest(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def state(self, digest: str, size: int | None = None) -> BlobState:
        """How much of ``digest`` is here: complete, partial (with its offset) or absent."""
        done = self.path(digest)
        if done.is_file():
            n = done.stat().st_size
            return BlobState(digest=digest, state=BlobPhase.complete, offset=n, size=n)
        part = self.partial / digest
        if part.is_file():
            return BlobState(digest=digest, state=BlobPhase.partial,
                             offset=part.stat().st_size, size=size)
        return BlobState(digest=digest, state=BlobPhase.absent, offset=0, size=size)

    def writer(self, digest: str, *, size: int, offset: int) -> BlobWriter:
        """A writer continuing ``digest`` at ``offset``, which must be where it ends now.

        Raises :class:`OffsetMismatch` (with the right offset) otherwise, and
        :class:`BlobError` when the blob is already complete or ``offset`` is past ``size``.
        """
        check_digest(digest)
        if self.has(digest):
            raise BlobError(f"blob {digest[:12]}… is already complete; nothing to send")
        if not 0 <= offset <= size:
            raise BlobError(f"offset {offset} is outside the blob's {size} bytes")
        here = self.state(digest).offset
        if offset != here:
            raise OffsetMismatch(digest, here, offset)
        return BlobWriter(self.partial / digest, offset)

    def finish(self, digest: str, size: int) -> BlobState:
        """Hash the received blob; keep it if it matches its name, else delete and refuse.

        Raises :class:`DigestMismatch` for wrong contents (the next send starts afresh).
        """
        part = self.partial / check_digest(digest)
        got = part.stat().st_size
        if got != size:
            raise BlobError(f"blob {digest[:12]}… has {got} of {size} bytes; send the rest")
        actual = sha256_file(part)
        if actual != digest:
            part.unlink(missing_ok=True)
            raise DigestMismatch(f"blob {digest[:12]}…: the received bytes hash to "
                                 f"{actual[:12]}… (corrupted in transit or at the source); "
                                 "refused and deleted: send it again")
        os.chmod(part, 0o444)  # staged versions link to it: nobody edits it in place
        os.replace(part, self.path(digest))
        logger.info("blob %s… complete (%d bytes)", digest[:12], size)
        return self.state(digest)

    def verify(self, digest: str) -> bool:
        """Whether the stored blob still hashes to its name (a disk may rot); a blob that
        does not is deleted, so the next rollout receives it again."""
        path = self.path(digest)
        if not path.is_file():
            return False
        if sha256_file(path) == digest:
            return True
        logger.warning("blob %s… on disk no longer matches its digest; deleted", digest[:12])
        path.unlink(missing_ok=True)
        return False

    def link_into(self, digest: str, target: Path) -> None:
        """Put the blob at ``target`` (a hard link: no second copy; a copy across devices)."""
        try:
            os.link(self.path(digest), target)
        except OSError:
            shutil.copyfile(self.path(digest), target)

    def gc(self, keep: Iterable[str], *, grace_s: float = 3600.0) -> list[str]:
        """Delete complete blobs not in ``keep`` and older than ``grace_s`` (a push may be
        uploading the next version's blobs right now); partial ones are left to finish."""
        keep = set(keep)
        cutoff = time.time() - grace_s
        gone = [p.name for p in self.done.iterdir()
                if p.name not in keep and p.stat().st_mtime < cutoff]
        for name in gone:
            (self.done / name).unlink(missing_ok=True)
        return gone



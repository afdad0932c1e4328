"""The edge agent's wire models: the same shapes on the wire, on disk and in reports.

>>> BlobState(digest="ab" * 32, state=BlobPhase.partial, offset=10, size=100).percent
10.0
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: A blob's name: the hex SHA-256 of its contents (what bundles record per file).
DIGEST = re.compile(r"^[0-9a-f]{64}$")
#: File names a bundle may hold: plain names, no directories (hostile input).
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BlobPhase(str, Enum):
    """Where a blob stands on the agent."""

    absent = "absent"
    partial = "partial"
    complete = "complete"


class BlobState(_Wire):
    """What the agent holds of one blob: ``offset`` bytes received, of ``size``."""

    digest: str
    state: BlobPhase
    offset: int = 0
    size: int | None = None

    @property
    def percent(self) -> float:
        return 100.0 * self.offset / self.size if self.size else 0.0


class FileEntry(_Wire):
    """One file of a bundle: its digest and size."""

    sha256: str
    size: int = Field(ge=0)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not DIGEST.match(value):
            raise ValueError(f"{value!r} is not a hex SHA-256 digest")
        return value


class RolloutRequest(_Wire):
    """What to roll out: a bundle named by its content hash, and its files' digests."""

    name: str = Field(max_length=200)
    version: str = Field(max_length=200)
    content_hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    files: dict[str, FileEntry] = Field(min_length=1, max_length=64)

    @field_validator("files")
    @classmethod
    def _names(cls, value: dict[str, FileEntry]) -> dict[str, FileEntry]:
        for name in value:
            if not FILE_NAME.match(name):
                raise ValueError(f"file name {name!r}: plain names only (letters, digits, "
                                 "'.', '_', '-'), no directories")
        return value

    @property
    def version_id(self) -> str:
        """The staged directory's name: the content hash, shortened, and the version."""
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", self.version)[:40]
        return f"{self.content_hash[7:23]}-{safe}"

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())


class RolloutPhase(str, Enum):
    """A rollout's progress; the last three are final."""

    staging = "staging"
    starting = "starting"
    checking = "checking"
    watching = "watching"
    active = "active"
    rolled_back = "rolled_back"
    refused = "refused"

    @property
    def final(self) -> bool:
        return self in (RolloutPhase.active, RolloutPhase.rolled_back, RolloutPhase.refused)


class Check(_Wire):
    """One health check of a rollout and its outcome."""

    name: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0


class RolloutStatus(_Wire):
    """A rollout as the agent runs it (``GET /edge/v1/rollouts/{id}``)."""

    id: str
    version_id: str
    name: str
    version: str
    content_hash: str
    state: RolloutPhase
    reason: str = ""
    checks: list[Check] = Field(default_factory=list)
    previous: str | None = None
    started_at: float = 0.0
    finished_at: float | None = None


class RecordsPage(_Wire):
    """Buffered records after a sequence number: ``[seq, ts, kind, body]`` each."""

    epoch: str
    records: list[tuple[int, float, str, dict[str, Any]]]
    last: int
    more: bool


class Ack(_Wire):
    """The centre has stored everything of ``epoch`` up to ``through`` (inclusive)."""

    epoch: str
    through: int = Field(ge=0)


class AgentStatus(_Wire):
    """What ``GET /edge/v1/status`` answers."""

    site: str
    ready: bool
    active: str | None
    active_version: str | None = None
    content_hash: str | None = None
    versions: list[str] = Field(default_factory=list)
    rollout: RolloutStatus | None = None
    buffer: dict[str, Any] = Field(default_factory=dict)
    time: float

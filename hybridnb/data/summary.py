"""What a pipeline run did: per step status, rows in and out, statistics and time; and
the prepared dataset it wrote (:class:`PipelineResult`).

>>> s = RunSummary("digits", [StepReport("split", "ran", 10, 10, 0.5)], status="done")
>>> print(s)  # doctest: +NORMALIZE_WHITESPACE
pipeline digits: done
step   status  rows in  rows out  dropped  seconds
split  ran     10       10        0        0.50
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .loader import ShardLoader

COLUMNS = ("step", "status", "rows in", "rows out", "dropped", "seconds")


@dataclass
class StepReport:
    """One step of one run. ``status`` is ``ran``, ``fit`` (statistics computed now),
    ``cached`` (statistics reused), ``from checkpoint`` (the step did not run: the run
    resumed from a checkpoint at or after it) or ``up to date`` (the whole output was
    current). ``checkpoint`` is ``written`` or ``read`` for the step whose output was
    saved to, or resumed from, the cache. ``fit_on`` says which rows a step's
    statistics were fit on: ``{"split": "train", "rows": 1437}`` after a split, split
    ``"all"`` without one, ``None`` for steps that learn nothing from the rows."""

    name: str
    status: str
    rows_in: int | None = None
    rows_out: int | None = None
    seconds: float = 0.0
    statistics: dict[str, Any] = field(default_factory=dict)
    checkpoint: str = ""
    fit_on: dict[str, Any] | None = None

    @property
    def dropped(self) -> int | None:
        if self.rows_in is None or self.rows_out is None:
            return None
        return self.rows_in - self.rows_out

    def row(self) -> list[str]:
        def num(v: int | None) -> str:
            return "" if v is None else str(v)

        d = self.dropped
        dropped = f"+{-d} added" if d is not None and d < 0 else num(d)
        status = f"{self.status}, checkpoint {self.checkpoint}" if self.checkpoint else self.status
        return [self.name, status, num(self.rows_in), num(self.rows_out), dropped,
                f"{self.seconds:.2f}"]


@dataclass
class RunSummary:
    """A run's report; prints as a table and renders as HTML in notebooks."""

    pipeline: str
    steps: list[StepReport]
    status: str = "done"
    out: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    write_seconds: float = 0.0
    bytes_written: int = 0

    @property
    def rows_in(self) -> int | None:
        return self.steps[0].rows_in if self.steps else None

    @property
    def rows_out(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline, "status": self.status, "out": self.out,
                "counts": dict(self.counts), "seconds": self.seconds,
                "write_seconds": self.write_seconds, "bytes_written": self.bytes_written,
                "steps": [asdict(s) for s in self.steps]}

    def rows(self) -> list[list[str]]:
        return [s.row() for s in self.steps]

    def __str__(self) -> str:
        rows = [list(COLUMNS), *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
        lines = [f"pipeline {self.pipeline}: {self.status}"]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                  for r in rows]
        skipped = [s.name for s in self.steps if s.status == "from checkpoint"]
        if skipped:
            lines.append(f"resumed from a checkpoint: {', '.join(skipped)} did not run")
        if self.counts:
            lines.append("splits: " + ", ".join(f"{k}={v}" for k, v in self.counts.items()))
        if self.seconds:
            lines.append(f"total {self.seconds:.2f} s (writing {self.write_seconds:.2f} s)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<RunSummary {self.pipeline!r}: {self.status}, {len(self.steps)} steps, "
                f"{self.rows_out} rows out>")

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{c}</th>" for c in COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{escape(v)}</td>" for v in r) + "</tr>"
                       for r in self.rows())
        splits = ", ".join(f"{escape(k)}: {v}" for k, v in self.counts.items())
        return (f"<div><b>pipeline {escape(self.pipeline)}</b>: {escape(self.status)}"
                f"<table><tr>{head}</tr>{body}</table>"
                f"<p>splits: {splits or 'none'}; total {self.seconds:.2f} s; "
                f"out {escape(self.out)}</p></div>")


@dataclass
class PipelineResult:
    """A prepared dataset on disk: where it is, its manifest and the run's summary."""

    path: Path
    manifest: dict[str, Any]
    summary: RunSummary

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.manifest["counts"])

    def loader(self, split: str = "train", **kwargs: Any) -> ShardLoader:
        """A :class:`~hybridnb.data.loader.ShardLoader` over this output's ``split``."""
        from .loader import ShardLoader

        return ShardLoader(self.path, split=split, **kwargs)

    def __repr__(self) -> str:
        return f"<PipelineResult {str(self.path)!r}: {self.summary.status}, {self.counts}>"

    def _repr_html_(self) -> str:
        return (f"<div><b>{escape(str(self.path))}</b> ({escape(self.manifest['kind'])}, "
                f"{escape(self.manifest['classification'])}){self.summary._repr_html_()}</div>")

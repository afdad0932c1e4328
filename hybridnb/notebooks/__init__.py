"""Notebooks headless: papermill runs, sweeps, records and secrets.

>>> import hybridnb
>>> hybridnb.record("accuracy", 0.98)   # in a notebook run by hybridnb run/sweep
0.98
"""

from __future__ import annotations

from .._lazy import lazy_exports

_LAZY = {
    "run_notebook": "hybridnb.notebooks.runner:run_notebook",
    "NotebookRun": "hybridnb.notebooks.runner:NotebookRun",
    "Outcome": "hybridnb.notebooks.runner:Outcome",
    "sweep": "hybridnb.notebooks.sweeps:sweep",
    "SweepResult": "hybridnb.notebooks.sweeps:SweepResult",
    "record": "hybridnb.notebooks.records:record",
    "recorded": "hybridnb.notebooks.records:recorded",
    "secret": "hybridnb.notebooks.secrets:secret",
    "Secret": "hybridnb.notebooks.secrets:Secret",
}
__all__ = list(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

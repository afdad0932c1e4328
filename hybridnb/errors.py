"""Errors users see.

Every error hybridnb raises on purpose derives from :class:`HybridnbError` and says
what is wrong, where, and how to fix it. Surfaces map them to outcomes: the CLI exits
2 for :class:`UsageError` (bad input) and 1 for :class:`OperationError` (something
failed while running), and never prints a bare traceback for either.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HybridnbError(Exception):
    """Base class of the errors hybridnb raises on purpose."""

    exit_code = 1


class UsageError(HybridnbError, ValueError):
    """The input is wrong: a bad argument, configuration or file. CLI exit code 2."""

    exit_code = 2


class FieldError(UsageError):
    """Bad input that one field of a request names (``field``: dotted, or None).

    ``reason`` tells surfaces which kind of refusal it is: ``invalid`` (malformed or out
    of range), ``not_found`` (an unknown id or file), ``conflict`` (a name taken, a cap
    reached) or ``unsatisfiable`` (no site may or can do it). The HTTP surface maps them
    to 400, 404, 409 and 422; the CLI exits 2 for all of them.

    >>> FieldError("use 0 or more", field="workers").field
    'workers'
    """

    REASONS = ("invalid", "not_found", "conflict", "unsatisfiable")

    def __init__(self, message: str, *, field: str | None = None, reason: str = "invalid"):
        super().__init__(message)
        if reason not in self.REASONS:
            raise ValueError(f"reason {reason!r} is not one of {self.REASONS}")
        self.field = field
        self.reason = reason


class OperationError(HybridnbError, RuntimeError):
    """Something failed while doing what was asked. CLI exit code 1."""

    exit_code = 1


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ``" (did you mean 'x'?)"`` suffix when ``word`` is close to one of ``choices``.

    >>> did_you_mean("sties", ["sites", "datasets"])
    " (did you mean 'sites'?)"
    >>> did_you_mean("zzz", ["sites"])
    ''
    """
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""

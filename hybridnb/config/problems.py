"""Configuration problems: one message per problem, naming the file, key path and fix."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the configuration.

    Attributes
    ----------
    source:
        Where the offending value came from: a file path, ``"built-in default"``,
        ``"$HYBRIDNB_CONFIG (path)"`` or ``"arguments"``.
    path:
        The dotted key path, e.g. ``sites.onprem.capacity.cpu`` (empty for the whole file).
    message:
        What is wrong.
    fix:
        How to fix it.
    line:
        1-based line in ``source`` when known.
    """

    source: str
    path: str
    message: str
    fix: str = ""
    line: int | None = None

    def __str__(self) -> str:
        where = self.source + (f":{self.line}" if self.line else "")
        key = f" {self.path}:" if self.path else ""
        fix = f" Fix: {self.fix.rstrip('.')}." if self.fix else ""
        return f"{where}:{key} {self.message.rstrip('.')}.{fix}"


class ConfigError(UsageError):
    """The configuration is invalid; ``problems`` lists every problem found.

    >>> err = ConfigError([ConfigProblem("hybridnb.yaml", "sites.a.tier", "bad", "use x", 3)])
    >>> print(err)
    invalid hybridnb configuration (1 problem):
      hybridnb.yaml:3: sites.a.tier: bad. Fix: use x.
    """

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = list(problems)
        n = len(self.problems)
        lines = [f"invalid hybridnb configuration ({n} problem{'s' if n != 1 else ''}):"]
        lines += [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))

"""Secrets for notebooks: never parameters, never in outputs.

A papermill parameter lands in the output notebook twice (an injected cell and its
metadata), so values whose names look secret are refused as parameters; notebooks read
them at run time with :func:`secret` from the environment or a private secrets file.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from ..errors import UsageError

SECRET_NAME = re.compile(r"(token|passw(or)?d|secret|credential|api[_-]?key|(^|_)key($|_))",
                         re.IGNORECASE)


def looks_secret(name: str) -> bool:
    """Whether a parameter name looks like it holds a secret.

    >>> looks_secret("api_token"), looks_secret("db_password"), looks_secret("key")
    (True, True, True)
    >>> looks_secret("learning_rate"), looks_secret("monkey")
    (False, False)
    """
    return bool(SECRET_NAME.search(name))


def refuse_secret_parameters(names: list[str]) -> None:
    """Raise a UsageError naming every secret-looking parameter and where to put it."""
    bad = [n for n in names if looks_secret(n)]
    if bad:
        env = ", ".join(f"HYBRIDNB_SECRET_{n.upper()}" for n in bad)
        raise UsageError(
            f"parameter(s) {', '.join(bad)} look like secrets and would be written into the "
            f"output notebook; set them in the environment ({env}) or in "
            f"{secrets_file()} (mode 600), and read them in the notebook with "
            f"hybridnb.secret({bad[0]!r})")


def secrets_file() -> Path:
    """``$HYBRIDNB_HOME/secrets.yaml``: ``name: value`` lines, readable by the owner only."""
    from ..state import state_home

    return state_home() / "secrets.yaml"


class Secret:
    """A secret value that does not print itself.

    ``repr``/``str`` show ``Secret('name', ***)``; :meth:`reveal` gives the value.

    >>> s = Secret("api_token", "hunter2")
    >>> s
    Secret('api_token', ***)
    >>> s.reveal()
    'hunter2'
    """

    __slots__ = ("_value", "name")

    def __init__(self, name: str, value: str):
        self.name = name
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.name!r}, ***)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self.name))


def secret(name: str) -> Secret:
    """Read secret ``name``: ``$HYBRIDNB_SECRET_<NAME>``, else the secrets file.

    >>> import os; os.environ["HYBRIDNB_SECRET_DEMO"] = "s3cr3t"
    >>> secret("demo").reveal()
    's3cr3t'
    """
    env = os.environ.get(f"HYBRIDNB_SECRET_{name.upper()}")
    if env is not None:
        return Secret(name, env)
    path = secrets_file()
    if path.is_file():
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise UsageError(f"{path} is readable by others (mode {oct(mode & 0o777)}); "
                             f"run: chmod 600 {path}")
        import yaml

        data = yaml.safe_load(path.read_text()) or {}
        if name in data:
            return Secret(name, str(data[name]))
    raise UsageError(f"no secret {name!r}: set HYBRIDNB_SECRET_{name.upper()} or add "
                     f"'{name}: VALUE' to {path} (mode 600)")

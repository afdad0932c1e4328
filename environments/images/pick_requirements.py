"""Print the lines of a requirements file whose project names are listed in another file.

    python pick_requirements.py REQUIREMENTS NAMES > picked.txt

An image that installs a subset of hybridnb's requirements (the serve image) lists the
names only, and takes the bounds from environments/requirements.txt, the file that
tests/test_environments.py keeps in step with pyproject.toml. A listed name that is not
there is an error (exit 2): the lists must not drift apart. Standard library only: it
runs in a bare base image.
"""

from __future__ import annotations

import re
import sys

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name: str) -> str:
    """PEP 503: ``Prometheus_Client`` and ``prometheus-client`` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pick(requirements: str, names: str) -> list[str]:
    """The requirement lines of ``requirements`` (text) named in ``names`` (text)."""
    wanted = []
    for line in names.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            wanted.append(normalize(line))
    found: dict[str, str] = {}
    for line in requirements.splitlines():
        text = line.split("#", 1)[0].strip() if not line.lstrip().startswith("-") else ""
        match = _NAME.match(text)
        if match:
            found[normalize(match.group(1))] = text
    missing = [name for name in wanted if name not in found]
    if missing:
        raise ValueError(f"not in the requirements file: {', '.join(missing)}")
    return [found[name] for name in wanted]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python pick_requirements.py REQUIREMENTS NAMES", file=sys.stderr)
        return 2
    try:
        with open(argv[0], encoding="utf-8") as reqs, open(argv[1], encoding="utf-8") as names:
            lines = pick(reqs.read(), names.read())
    except (OSError, ValueError) as exc:
        print(f"pick_requirements: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

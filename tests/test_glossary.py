"""The glossary's names exist: every ``hybridnb.NAME`` it gives resolves, aliases are the
same object as the name they stand for, and the state store's kinds are its nouns."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest

import hybridnb
from hybridnb.state import Kind

GLOSSARY = Path(__file__).resolve().parents[1] / "docs" / "glossary.md"
TEXT = GLOSSARY.read_text(encoding="utf-8")
#: Names the glossary gives that are not Python objects: entry-point groups.
NOT_OBJECTS = {"hybridnb.site_backends", "hybridnb.models"}
# A dotted name in code spans, not a file (hybridnb.yaml) or a label key (hybridnb.io/...).
NAMES = sorted({m for m in re.findall(r"`(hybridnb(?:\.[A-Za-z_]\w*)+)(?![\w/])", TEXT)
                if not m.endswith((".yaml", ".md"))} - NOT_OBJECTS)


def resolve(name: str) -> Any:
    parts = name.split(".")
    obj: Any = hybridnb
    for i, part in enumerate(parts[1:], start=2):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(".".join(parts[:i]))
    return obj


def test_the_glossary_names_something():
    assert {"hybridnb.fit", "hybridnb.write_bundle", "hybridnb.load_dataset"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_name_resolves(name):
    assert resolve(name) is not None


@pytest.mark.parametrize(("name", "alias"), [
    ("hybridnb.write_bundle", "hybridnb.serve.bundle"),
    ("hybridnb.load_dataset", "hybridnb.data.load"),
])
def test_aliases_are_the_same_object(name, alias):
    assert f"`{name}" in TEXT and f"`{alias}`" in TEXT
    assert resolve(name) is resolve(alias)


def test_state_kinds_are_the_glossarys_nouns():
    line = next(ln for ln in TEXT.splitlines() if ln.startswith("- State kinds are"))
    assert re.findall(r"`(\w+)`", line) == [k.value for k in Kind]

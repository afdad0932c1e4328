"""A griffe extension: the package's numpydoc docstrings, read right as Markdown.

The docstrings follow numpydoc with reStructuredText habits that Markdown reads
differently, so this rewrites each docstring once griffe has loaded it (before
mkdocstrings parses and renders it):

- Sphinx roles (``:func:`plan```, ``:class:`~hybridnb.sites.ClusterHandle```) become
  inline code with the name a reader knows; rST's double-backtick literals single ones;
- ``text::`` before an indented block loses one colon (Markdown shows the block as code);
- prose after a ``Parameters`` section (``See ...``) gets a ``Notes`` heading, so it is
  not read as one more parameter; a pydantic model's ``Parameters`` are its fields, and
  read as ``Attributes`` (the model's ``__init__`` takes ``**data``);
- ``>>>`` examples become code: after a numpydoc section they get the ``Examples``
  heading numpydoc expects (the house style writes them right after ``Parameters``), and
  in the free text before any section a ``pycon`` fence (Markdown would read ``>>>`` as
  a quotation and ``x["k"]`` as a link).

Named in mkdocs.yml under mkdocstrings' ``extensions``.

>>> plain(":func:`~hybridnb.placement.plan` and ``None``, :mod:`hybridnb.data`")
'`plan` and `None`, `hybridnb.data`'
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?[a-z]+:`(~?)([^`<]+?)(?:\s*<[^>]+>)?`")
LITERAL = re.compile(r"``(.+?)``")
BLOCK = re.compile(r"::\n(?=[ \t]*\n)")
UNDERLINE = re.compile(r"^-{3,}\s*$")
# A numpydoc parameter line: ``name``, ``name : type``, ``a, b:`` (this project's habit).
PARAM = re.compile(r"^\*{0,2}\w+(\s*,\s*\*{0,2}\w+)*\s*(:.*)?$")
PARAM_SECTIONS = {"Parameters", "Other Parameters", "Attributes", "Keyword Arguments"}
PYDANTIC = {"pydantic.BaseModel", "pydantic.main.BaseModel"}


def plain(text: str) -> str:
    """Roles and rST literals as Markdown inline code (``~`` keeps the last name)."""

    def role(match: re.Match[str]) -> str:
        name = match.group(2).strip()
        return f"`{name.rsplit('.', 1)[-1] if match.group(1) else name}`"

    return BLOCK.sub(":\n", LITERAL.sub(lambda m: f"`{m.group(1)}`", ROLE.sub(role, text)))


def examples(text: str) -> str:
    """``>>>`` blocks as code: an ``Examples`` section after a section, else a fence."""
    lines = text.split("\n")
    out: list[str] = []
    section: str | None = None
    fenced = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            fenced = not fenced
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if not fenced and line.strip() and UNDERLINE.match(nxt) and not line.startswith(" "):
            section = line.strip()
            out += [line, nxt]
            i += 2
            continue
        if (not fenced and section in PARAM_SECTIONS and line.strip() and line[0] != " "
                and not line.startswith(">>>") and not PARAM.match(line)
                and (not out or not out[-1].strip())):
            out += ["Notes", "-----"]
            section = "Notes"
        if not fenced and line.startswith(">>>"):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i])
                i += 1
            if section is None:
                out += ["```pycon", *block, "```"]
            else:
                if section != "Examples":
                    if out and out[-1].strip():
                        out.append("")
                    out += ["Examples", "--------"]
                    section = "Examples"
                out += block
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


class HybridnbDocstrings(griffe.Extension):
    """Rewrites every docstring once the object tree is complete."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        text = examples(plain(obj.docstring.value))
        if isinstance(obj, griffe.Class) and is_pydantic(obj):
            text = re.sub(r"^Parameters\n----------$", "Attributes\n----------", text,
                          flags=re.MULTILINE)
        obj.docstring.value = text


def is_pydantic(cls: griffe.Class) -> bool:
    """Whether a class derives from pydantic's ``BaseModel`` (through the project's own
    bases too), read from the source."""
    seen = [cls]
    try:
        seen += cls.mro()
    except ValueError:  # an unresolvable base: only the class's own bases count
        pass
    return any(getattr(base, "canonical_path", str(base)) in PYDANTIC
               for klass in seen for base in klass.bases)

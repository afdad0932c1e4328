"""The reference pages, generated from the code each time the docs are built.

- :func:`config_reference`: every key of ``hybridnb.yaml`` (and of a training spec) with
  its type, default and description, walked from the typed pydantic models;
- :func:`cli_reference`: every command of ``hybridnb`` with its arguments and options,
  walked from the click command that typer builds;
- :func:`api_pages`: one page per subpackage (and per top-level module) of ``hybridnb``,
  found on disk, so a module added or renamed shows up without editing the docs.

``docs/hooks.py`` adds these pages to the MkDocs build; nothing here is committed as
Markdown, so the reference cannot fall behind the code. Pure functions of their inputs:
tests/test_docs.py calls them directly.
"""

from __future__ import annotations

import html
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hybridnb"


# -- Markdown helpers ---------------------------------------------------------------------

def cell(text: str) -> str:
    """Text made safe for one cell of a Markdown table (one line, no stray markup);
    inline code (between backticks) stays code.

    >>> cell("a_b | `x_y` *c*")
    'a\\\\_b \\\\| `x_y` \\\\*c\\\\*'
    """
    parts = " ".join(text.split()).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: no code at all
        parts = ["\\`".join(parts)]
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(code(part))
        else:
            part = html.escape(part, quote=False)
            out.append(part.replace("|", "\\|").replace("*", "\\*").replace("_", "\\_"))
    return "".join(out)


def code(text: str) -> str:
    """Inline code that survives a table cell (``|`` cannot be escaped inside backticks)."""
    text = " ".join(text.split())
    if "|" in text:
        return "<code>" + html.escape(text).replace("|", "&#124;") + "</code>"
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


def anchor(text: str) -> str:
    """A stable HTML id for a heading (Python-Markdown's attr_list sets it: ``{#id}``).

    >>> anchor("hybridnb cluster up"), anchor("hybridnb.yaml Site")
    ('hybridnb-cluster-up', 'hybridnb-yaml-site')
    """
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# -- Configuration: walked from the pydantic models ------------------------------------------

@dataclass
class Section:
    """One model's table: where it sits in the file, and its rows."""

    model: type[BaseModel]
    paths: list[str]


def _models_in(annotation: Any) -> Iterator[tuple[type[BaseModel], str]]:
    """Models inside an annotation, each with the key suffix it adds (``.NAME`` for maps)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, ""
        return
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (dict, typing.Dict) and len(args) == 2:  # noqa: UP006 (old spellings too)
        for model, suffix in _models_in(args[1]):
            yield model, ".NAME" + suffix
    elif origin in (list, tuple, typing.List) and args:  # noqa: UP006
        for model, suffix in _models_in(args[0]):
            yield model, "[]" + suffix
    elif origin in (typing.Union, types.UnionType) or origin is typing.Annotated:
        for arg in args:
            yield from _models_in(arg)


def sections(root: type[BaseModel], prefix: str = "") -> list[Section]:
    """Every model reachable from ``root``, in the order a reader meets them."""
    found: dict[type[BaseModel], Section] = {}

    def visit(model: type[BaseModel], path: str) -> None:
        if model in found:
            found[model].paths.append(path)
            return
        found[model] = Section(model, [path])
        for name, info in model.model_fields.items():
            for sub, suffix in _models_in(info.annotation):
                visit(sub, f"{path}.{name}{suffix}".lstrip("."))

    visit(root, prefix)
    return list(found.values())


def type_name(annotation: Any, links: dict[type[BaseModel], str]) -> str:
    """An annotation as a reader wants it: ``int``, ``list[str]``, ``'a' | 'b'``, a link."""
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{links[annotation]})" if annotation in links \
            else annotation.__name__
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(code(repr(a)) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(type_name(a, links) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0], links)
    if origin is not None:
        inner = ", ".join(type_name(a, links) for a in args if a is not Ellipsis)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is typing.Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


LITERAL = re.compile(r"``(.+?)``")  # rST literals in a class docstring
_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"),
           ("min_length", "at least {} item(s)"), ("max_length", "at most {} item(s)"))


def constraints(info: FieldInfo) -> list[str]:
    """What the field's validators demand, in words (bounds, patterns, byte sizes)."""
    said = []
    for meta in info.metadata:
        for attr, word in _BOUNDS:
            value = getattr(meta, attr, None)
            if value is not None:
                said.append(word.format(value) if "{}" in word else f"{word} {value}")
        pattern = getattr(meta, "pattern", None)
        if pattern:
            said.append(f"matches {code(pattern)}")
        func = getattr(meta, "func", None)
        if getattr(func, "__name__", "") == "parse_bytes":
            said.append("a size in bytes: a number or `256GiB`, `64MB`, …")
    return said


def default_of(info: FieldInfo) -> str:
    """The default as YAML would say it, ``required`` when there is none."""
    if info.is_required():
        return "*required*"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "*(its defaults)*"
    if value is None:
        return code("null")
    if isinstance(value, bool):
        return code(str(value).lower())
    if isinstance(value, str | int | float) or value in ([], {}):
        return code(repr(value) if isinstance(value, str) else str(value))
    if isinstance(value, list | tuple | dict):
        return code(str(list(value) if isinstance(value, tuple) else value))
    return code(str(value))


def documented(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> text, from the ``Parameters`` section of a model's docstring
    (``a, b:`` lines document several fields at once).
    (tests/test_docs.py shows one.)
    """
    import inspect

    lines = inspect.cleandoc(model.__doc__ or "").splitlines()
    found: dict[str, str] = {}
    try:
        start = next(i for i in range(len(lines) - 1) if lines[i].strip() == "Parameters"
                     and set(lines[i + 1].strip()) == {"-"})
    except StopIteration:
        return found
    names: list[str] = []
    text: list[str] = []
    for line in [*lines[start + 2:], ""]:
        if line and not line.startswith(" ") and (":" in line or not text):
            for name in names:
                found[name] = LITERAL.sub(r"`\1`", " ".join(text))
            if not line.rstrip().endswith(":") and " : " not in line:
                break  # prose, or the next section: the parameters have ended
            names = [n.strip() for n in line.split(":")[0].split(",")]
            text = []
        elif line.startswith(" "):
            text.append(line.strip())
        elif not line and names and text:
            continue
    for name in names:
        found.setdefault(name, LITERAL.sub(r"`\1`", " ".join(text)))
    return {k: v for k, v in found.items() if v}


def _summary_of(model: type[BaseModel]) -> str:
    """A model's docstring, first sentence, rST literals as Markdown."""
    doc = " ".join((model.__doc__ or "").strip().split("\n\n")[0].split())
    return LITERAL.sub(r"`\1`", doc.split(". ")[0].rstrip("."))


def model_table(section: Section, links: dict[type[BaseModel], str]) -> str:
    """One section: a heading, where it sits, the model's summary and its keys."""
    model = section.model
    doc = LITERAL.sub(r"`\1`", (model.__doc__ or "").strip().split("\n\n")[0])
    title = section.paths[0] or "top level"
    also = [code(p) for p in section.paths[1:]]
    where = f" Also at {', '.join(also)}." if also else ""
    lines = [f"### {title} {{#{links[model]}}}", "",
             f"{' '.join(doc.split())} (`{model.__name__}`){where}", "",
             "| key | type | default | description |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        key = info.alias or name
        described = [cell(info.description)] if info.description else []
        if not described:  # the model's numpydoc Parameters may say it
            described = [cell(d) for d in [documented(model).get(key, "")] if d]
        if not described:  # a nested section says what it is in its own docstring
            described = [cell(_summary_of(sub)) for sub, _ in _models_in(info.annotation)
                         if _summary_of(sub)][:1]
        described += constraints(info)
        lines.append(f"| {code(key)} | {type_name(info.annotation, links)} | "
                     f"{default_of(info)} | {'; '.join(described) or '—'} |")
    return "\n".join(lines)


def config_reference(roots: list[tuple[str, str, type[BaseModel]]]) -> str:
    """The configuration reference: for each (title, introduction, root model), every key
    of every model reachable from the root, one table per model (tests/test_docs.py)."""
    parts = ["# Configuration reference", "",
             "Generated from the typed models when the docs are built: every key, its "
             "type, its default and what it means. Unknown keys are errors.", ""]
    for title, intro, root in roots:
        found = sections(root)
        links = {s.model: anchor(f"{title} {s.model.__name__}") for s in found}
        parts += [f"## {title}", "", intro, ""]
        parts += [model_table(s, links) + "\n" for s in found]
    return "\n".join(parts).rstrip() + "\n"


# -- The command line: walked from the click command ----------------------------------------

def _context(command: Any, name: str, parent: Any = None) -> Any:
    return type(command).context_class(command, info_name=name, parent=parent)


def _help(text: str | None) -> str:
    """A command's help as Markdown: click's ``\\b`` (keep lines) markers become breaks."""
    text = (text or "").replace("\b\n", "").strip()
    return "\n".join(line.rstrip() for line in text.splitlines())


def commands(root: Any, name: str) -> Iterator[tuple[str, Any, Any]]:
    """Every command under ``root`` (groups too), depth first, with its context."""
    stack = [(name, root, _context(root, name))]
    while stack:
        path, command, ctx = stack.pop(0)
        yield path, command, ctx
        if hasattr(command, "list_commands"):
            subs = []
            for sub_name in command.list_commands(ctx):
                sub = command.get_command(ctx, sub_name)
                if sub is not None and not getattr(sub, "hidden", False):
                    subs.append((f"{path} {sub_name}", sub, _context(sub, sub_name, ctx)))
            stack[0:0] = subs


def command_section(path: str, command: Any, ctx: Any) -> str:
    """One command: usage, help, then its arguments and options."""
    depth = path.count(" ")
    heading = "#" * min(2 + max(depth - 1, 0), 4)
    params = [p for p in command.get_params(ctx) if p.name != "help"
              and not getattr(p, "hidden", False)]
    args = [p for p in params if p.param_type_name == "argument"]
    opts = [p for p in params if p.param_type_name == "option"]
    usage = path + (" [OPTIONS]" if opts else "") + "".join(
        f" {p.metavar or p.name.upper()}{'...' if p.nargs == -1 else ''}" for p in args)
    if hasattr(command, "list_commands"):
        usage += " COMMAND [ARGS]..."
    lines = [f"{heading} `{path}` {{#{anchor(path)}}}", "", "```text", usage, "```", "",
             _help(command.help), ""]
    if args:
        lines += ["| argument | description |", "|---|---|"]
        for p in args:
            required = "" if p.required else " (optional)"
            lines.append(f"| {code(p.metavar or p.name.upper())} | "
                         f"{cell(getattr(p, 'help', None) or '')}{required} |")
        lines.append("")
    if opts:
        lines += ["| option | description |", "|---|---|"]
        for p in opts:
            record = p.get_help_record(ctx)
            if record is None:
                continue
            names, text = record
            lines.append(f"| {code(names)} | {cell(text) or '—'} |")
        lines.append("")
    if hasattr(command, "list_commands"):
        subs = [(n, command.get_command(ctx, n)) for n in command.list_commands(ctx)]
        lines += ["| command | what it does |", "|---|---|"]
        lines += [f"| [{code(f'{path} {n}')}](#{anchor(f'{path} {n}')}) | "
                  f"{cell(c.get_short_help_str(limit=120))} |"
                  for n, c in subs if c is not None and not getattr(c, "hidden", False)]
        lines.append("")
    return "\n".join(lines)


def cli_reference(root: Any, name: str = "hybridnb") -> str:
    """The CLI reference: every command, argument and option, as ``--help`` has them."""
    parts = ["# Command-line reference", "",
             f"Generated from the `{name}` command when the docs are built. Every command "
             "takes `-h`/`--help`. Exit codes: 0 success, 1 an operation failed, 2 bad "
             "input (usage, configuration), 130 interrupted; a traceback only with "
             "`--debug`.", ""]
    parts += [command_section(path, command, ctx) for path, command, ctx in commands(root, name)]
    return "\n".join(parts).rstrip() + "\n"


# -- The API: one page per subpackage, found on disk -----------------------------------------

def is_public(path: Path) -> bool:
    """A module the API reference shows: not private (``_x``) and not ``__main__``."""
    return path.name == "__init__.py" or not path.name.startswith("_")


def api_modules(package: Path = PACKAGE) -> list[str]:
    """The package's public modules, by dotted name, from the files (nothing imported).

    >>> mods = api_modules()
    >>> mods[0], "hybridnb.config.models" in mods, "hybridnb.__main__" in mods
    ('hybridnb', True, False)
    """
    names = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent)
        if not is_public(path) or any(p.startswith(("_", ".")) for p in rel.parts[:-1]):
            continue
        # A folder without __init__.py is data (schemas, templates), not a package.
        if not all((package.parent / Path(*rel.parts[:i]) / "__init__.py").exists()
                   for i in range(1, len(rel.parts))):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return sorted(names, key=lambda n: (n != package.name, n))


def api_pages(modules: list[str]) -> dict[str, list[str]]:
    """Page name -> modules it documents: the root package alone, then one page per
    subpackage (its modules, nested ones included) or top-level module.

    >>> api_pages(["hybridnb", "hybridnb.placement", "hybridnb.serve", "hybridnb.serve.app",
    ...            "hybridnb.serve.edge", "hybridnb.serve.edge.agent"])["hybridnb.serve"]
    ['hybridnb.serve', 'hybridnb.serve.app', 'hybridnb.serve.edge', 'hybridnb.serve.edge.agent']
    """
    pages: dict[str, list[str]] = {}
    for name in modules:
        parts = name.split(".")
        page = ".".join(parts[:2])
        pages.setdefault(page, []).append(name)
    return pages


def api_page(page: str, modules: list[str]) -> str:
    """The Markdown of one API page: mkdocstrings renders each ``:::`` module."""
    lines = [f"# `{page}`", ""]
    for name in modules:
        if name != page:
            lines += [f"::: {name}", "    options:", "      show_root_heading: true",
                      "      heading_level: 2", ""]
        else:
            lines += [f"::: {name}", "    options:", "      show_root_heading: false",
                      "      heading_level: 2", ""]
    return "\n".join(lines)


def _summary(module: str, package: Path = PACKAGE) -> str:
    """The first line of a module's docstring, read from its file (nothing imported)."""
    import ast

    rel = Path(*module.split(".")[1:])
    path = package / rel / "__init__.py" if (package / rel).is_dir() else \
        package / rel.with_suffix(".py")
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ")


def public_api(package: Path = PACKAGE) -> list[tuple[str, str]]:
    """``hybridnb.NAME`` -> the dotted path where it is defined, for every public name.

    The names come from ``hybridnb.__all__`` (importing hybridnb is cheap); where each
    is defined is read statically with griffe (the lazy API resolves through its
    type-checking imports), so building the docs imports neither torch nor dask.
    """
    import importlib

    import griffe

    exports = importlib.import_module(package.name).__all__

    root = griffe.load(package.name, search_paths=[str(package.parent)],
                       docstring_parser="numpy", resolve_aliases=True,
                       resolve_external=False)
    rows = []
    for name in exports:
        if name.startswith("__") or name not in root.members:
            continue
        member = root.members[name]
        try:
            path = member.final_target.path if isinstance(member, griffe.Alias) \
                else member.path
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            path = member.path
        rows.append((name, path))
    return rows


def api_index(pages: dict[str, list[str]]) -> str:
    """The API reference's front page: the public names, then one line per page."""
    lines = ["# API reference", "",
             "Generated from the docstrings when the docs are built. `import hybridnb` "
             "is cheap: the names below resolve on first use.", "",
             "## `import hybridnb`", "", "| name | defined in |", "|---|---|"]
    for name, path in public_api():
        lines.append(f"| [`hybridnb.{name}`][{path}] | `{path.rsplit('.', 1)[0]}` |")
    lines += ["", "## Modules", "", "| page | what it holds |", "|---|---|"]
    for page in pages:
        lines.append(f"| [`{page}`]({page}.md) | {cell(_summary(page))} |")
    return "\n".join(lines) + "\n"

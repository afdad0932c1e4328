"""The documentation: its examples run, its reference pages cover the code.

``make docs`` builds the site strictly (CI runs it after ``make lint``); these tests
check, without building it, what a strict build cannot: that every ``>>>`` example in a
page gives what the page says, and that the generated reference leaves nothing out.
"""

from __future__ import annotations

import doctest
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel, Field

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md"))
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```",
                   re.MULTILINE | re.DOTALL)


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"hybridnb_docs_{name}", DOCS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


reference = _load("reference")
docstrings = _load("griffe_docstrings")


def examples(text: str) -> list[tuple[int, str]]:
    """The fenced blocks holding ``>>>`` examples, with the line each starts on."""
    return [(text[:m.start("body")].count("\n"), m.group("body"))
            for m in FENCE.finditer(text) if ">>>" in m.group("body")]


# -- the pages' examples ----------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_examples_in_pages_run(page, hybridnb_home, monkeypatch):
    """Every ``>>>`` example of a page runs, in order, in one namespace per page, from the
    repository root (examples name its files: notebooks/config/hybrid-sites.yaml)."""
    monkeypatch.chdir(ROOT)
    text = page.read_text(encoding="utf-8")
    outside = FENCE.sub("", text)
    assert ">>>" not in outside, f"{page.name}: put >>> examples in a ```pycon block"
    globs: dict[str, Any] = {"__name__": f"docs.{page.stem}"}
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for line, body in examples(text):
        test = parser.get_doctest(body, globs, page.name, str(page), line)
        runner.run(test, out=report.append, clear_globs=False)
        globs = test.globs  # a DocTest runs in a copy: the next block goes on from here
    assert runner.failures == 0, "".join(report)


def test_pages_hold_examples():
    """The guide shows code that runs: most of its pages carry ``>>>`` examples."""
    with_examples = [p.name for p in PAGES if examples(p.read_text(encoding="utf-8"))]
    assert len(with_examples) >= 8, with_examples


@pytest.mark.parametrize("name", ["reference", "griffe_docstrings"])
def test_doctests_of_the_docs_tools(name):
    result = doctest.testmod(sys.modules[f"hybridnb_docs_{name}"], optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_every_page_is_in_the_nav():
    """Hand-written pages all appear in mkdocs.yml's nav (the reference is added at build)."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def walk(items: Any) -> list[str]:
        found: list[str] = []
        for item in items if isinstance(items, list) else [items]:
            if isinstance(item, dict):
                for value in item.values():
                    found += walk(value)
            elif isinstance(item, str):
                found.append(item)
        return found

    listed = set(walk(config["nav"]))
    written = {str(p.relative_to(DOCS)) for p in PAGES}
    assert written - listed == set(), "add these pages to mkdocs.yml's nav"


# -- the configuration reference ---------------------------------------------------------

class _Inner(BaseModel):
    """Inner options."""

    n: int = Field(3, ge=1, description="how many | at most")
    mode: Literal["a", "b"] = "a"
    size: Any = None


class _Outer(BaseModel):
    """The ``file``."""

    inner: dict[str, _Inner] = Field(default_factory=dict)
    one: _Inner | None = None
    name: str


def test_config_reference_renders_each_model_once_with_its_keys():
    page = reference.config_reference([("A file", "What it is.", _Outer)])
    assert "### top level {#a-file-outer}" in page and "The `file`. (`_Outer`)" in page
    assert "### inner.NAME {#a-file-inner}" in page and "Also at `one`." in page
    assert page.count("### ") == 2
    assert "| `n` | int | `3` | how many \\| at most; ≥ 1 |" in page
    assert "| `mode` | `'a'` \\| `'b'` | `'a'` | — |" in page
    assert "| `name` | str | *required* | — |" in page
    assert "| `one` | [_Inner](#a-file-inner) \\| null | `null` | Inner options |" in page


def _keys(model: type[BaseModel], seen: set[type[BaseModel]]) -> list[tuple[str, str]]:
    found = []
    if model in seen:
        return found
    seen.add(model)
    for name, info in model.model_fields.items():
        found.append((model.__name__, info.alias or name))
        for sub, _ in reference._models_in(info.annotation):
            found += _keys(sub, seen)
    return found


def test_config_reference_lists_every_key_of_the_configuration():
    import hybridnb

    page = reference.config_reference([("hybridnb.yaml", "", hybridnb.HybridConfig),
                                       ("Training spec", "", hybridnb.TrainSpec)])
    tables = {m.group(1): m.group(2) for m in re.finditer(
        r"^### .*?\n\n[^\n]*\(`(\w+)`\)[^\n]*\n\n(.*?)(?=^### |^## |\Z)", page, re.M | re.S)}
    keys = _keys(hybridnb.HybridConfig, set()) + _keys(hybridnb.TrainSpec, set())
    assert len(keys) > 100
    missing = [f"{model}.{key}" for model, key in keys
               if f"| `{key}` |" not in tables.get(model, "")]
    assert missing == []
    assert "`sites.NAME.ssh`" not in page  # the heading is the path itself
    assert "### sites.NAME.ssh {#" in page and "### teams.groups.NAME {#" in page


def test_every_config_key_is_described():
    """A key the reference cannot explain is a key users cannot use: each has a
    description (its Field's, its model's numpydoc Parameters, or its section's)."""
    import hybridnb

    page = reference.config_reference([("hybridnb.yaml", "", hybridnb.HybridConfig),
                                       ("Training spec", "", hybridnb.TrainSpec)])
    section = ""
    bare = []
    for line in page.splitlines():
        if line.startswith("### "):
            section = line[4:].split(" {")[0]
        elif line.startswith("| `") and line.endswith("| — |"):
            bare.append(f"{section}: {line.split('|')[1].strip()}")
    assert bare == [], "give these keys a Field(description=...)"


def test_numpydoc_parameters_describe_fields():
    class Spec(BaseModel):
        """A spec.

        Parameters
        ----------
        x, y:
            Two numbers
            on two lines.
        z:
            A ``z``.

        More prose, not a parameter.
        """

        x: int = 0
        y: int = 0
        z: int = 0

    assert reference.documented(Spec) == {
        "x": "Two numbers on two lines.", "y": "Two numbers on two lines.", "z": "A `z`."}
    page = reference.config_reference([("S", "", Spec)])
    assert "| `z` | int | `0` | A `z`. |" in page


# -- the CLI reference -------------------------------------------------------------------

def _cli() -> Any:
    hooks = _load("hooks")
    from hybridnb.cli import app

    return hooks.cli_app_command(app)


def test_cli_reference_documents_every_command_and_option():
    command = _cli()
    page = reference.cli_reference(command)
    seen = 0
    for path, cmd, ctx in reference.commands(command, "hybridnb"):
        assert f"`{path}` {{#{reference.anchor(path)}}}" in page, path
        for param in cmd.get_params(ctx):
            if param.param_type_name == "option" and param.name != "help":
                assert f"`{param.get_help_record(ctx)[0]}`" in page, (path, param.name)
                seen += 1
    assert seen > 100
    # The commands DESIGN.md fixes are all there.
    for path in ("doctor", "config show", "sites validate", "plan", "cluster up", "ps", "gc",
                 "data prepare", "train", "serve", "deploy", "endpoints stop",
                 "monitor export", "run", "sweep", "demo", "jobs", "hub render",
                 "hub-service", "images build", "images list"):
        assert f"## `hybridnb {path}`" in page, path
    assert "| `-n, --replicas REPLICAS` | Replicas to run. [default: 2] |" in page


# -- the API reference -------------------------------------------------------------------

def test_api_pages_cover_every_public_module():
    modules = reference.api_modules()
    pages = reference.api_pages(modules)
    documented = [m for page, mods in pages.items()
                  for m in mods if f"::: {m}\n" in reference.api_page(page, mods)]
    assert sorted(documented) == sorted(modules)
    assert "hybridnb.serve.edge.agent" in pages["hybridnb.serve"]
    assert not [m for m in modules if m.rsplit(".", 1)[-1].startswith("_")]


def test_api_modules_follow_the_files(tmp_path):
    """A module added or renamed shows up at the next build; data folders do not."""
    pkg = tmp_path / "pkg"
    (pkg / "sub" / "schemas").mkdir(parents=True)
    for rel in ("__init__.py", "_private.py", "__main__.py", "a.py", "sub/__init__.py",
                "sub/b.py", "sub/schemas/c.py"):
        (pkg / rel).write_text('"""Doc."""\n')
    assert reference.api_modules(pkg) == ["pkg", "pkg.a", "pkg.sub", "pkg.sub.b"]
    assert reference.api_pages(reference.api_modules(pkg)) == {
        "pkg": ["pkg"], "pkg.a": ["pkg.a"], "pkg.sub": ["pkg.sub", "pkg.sub.b"]}


def test_public_api_points_at_definitions():
    rows = dict(reference.public_api())
    assert rows["plan"] == "hybridnb.placement.plan"
    assert rows["fit"].startswith("hybridnb.train.") and rows["cluster"].startswith("hybridnb.")
    import hybridnb

    assert set(rows) == {n for n in hybridnb.__all__ if not n.startswith("__")}


# -- docstrings read as Markdown ---------------------------------------------------------

def test_examples_after_a_section_get_an_examples_heading():
    text = ("Summary.\n\n>>> 1 + 1\n2\n\nParameters\n----------\nx:\n    An x.\n\n"
            "See `y` for more.\n\n>>> f(1)\n1")
    assert docstrings.examples(text).split("\n") == [
        "Summary.", "", "```pycon", ">>> 1 + 1", "2", "```", "",
        "Parameters", "----------", "x:", "    An x.", "",
        "Notes", "-----", "See `y` for more.", "",
        "Examples", "--------", ">>> f(1)", "1"]


def test_examples_leave_fenced_and_indented_code_alone():
    text = "Summary.\n\n```python\n>>> x\n```\n\n    >>> indented\n"
    assert docstrings.examples(text) == text


# -- the README -------------------------------------------------------------------------

def test_readme_sends_readers_to_the_docs_not_to_shared_files():
    readme = (ROOT / "README.md").read_text()
    assert "../shared/" not in readme
    assert "docs/architecture.md" in readme and "make docs" in readme

"""MkDocs hooks: add the generated reference pages to the build (docs/reference.py).

``on_config`` puts the API pages, one per subpackage found on disk, into the navigation;
``on_files`` adds the Markdown of the configuration, CLI and API pages to the build
(never to the source tree). Named in mkdocs.yml under ``hooks:``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from mkdocs.structure.files import File, Files

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
API_DIR = "reference/api"


def _reference() -> ModuleType:
    # Hooks load by path, so the generator beside this file is loaded the same way.
    spec = importlib.util.spec_from_file_location("hybridnb_docs_reference", HERE / "reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


reference = _reference()


def _pages() -> dict[str, list[str]]:
    pages: dict[str, list[str]] = reference.api_pages(reference.api_modules())
    return pages


def on_config(config: Any) -> Any:
    # The package itself must import for the configuration and CLI pages (and the
    # docs describe this tree, not whatever hybridnb is installed).
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    api = [{page: f"{API_DIR}/{page}.md"} for page in _pages()]
    for entry in config["nav"]:
        if isinstance(entry, dict) and "Reference" in entry:
            for item in entry["Reference"]:
                if isinstance(item, dict) and "API" in item:
                    item["API"] = [f"{API_DIR}/index.md", *api]
    return config


def generated() -> dict[str, str]:
    """Path inside docs/ -> Markdown, for every generated page."""
    import hybridnb
    from hybridnb.cli import app as cli_app

    pages = {
        "reference/configuration.md": reference.config_reference([
            ("hybridnb.yaml",
             "The merged configuration (every layer: built-in default, "
             "`/etc/hybridnb/hybridnb.yaml`, `~/.config/hybridnb/hybridnb.yaml`, "
             "`./hybridnb.yaml`, `$HYBRIDNB_CONFIG`, arguments). `NAME` stands for a key "
             "you choose: a site's or a dataset's name.", hybridnb.HybridConfig),
            ("Training spec",
             "A training run as plain data: `hybridnb train SPEC.yaml`, "
             "`hybridnb.TrainSpec(...)`, `hybridnb.fit({...})`. Sub-specs also take a "
             "string shorthand (`optimizer: adamw`).", hybridnb.TrainSpec),
        ]),
        "reference/cli.md": reference.cli_reference(cli_app_command(cli_app)),
    }
    api = _pages()
    pages[f"{API_DIR}/index.md"] = reference.api_index(api)
    for page, modules in api.items():
        pages[f"{API_DIR}/{page}.md"] = reference.api_page(page, modules)
    return pages


def cli_app_command(cli_app: ModuleType) -> Any:
    """The click command typer builds from the application, polished as ``hybridnb``
    runs it (commands sorted, metavars without type placeholders)."""
    import typer.main

    from hybridnb.cli.common import tidy

    return tidy(typer.main.get_command(cli_app.app))


def on_files(files: Files, config: Any) -> Files:
    for path, text in generated().items():
        files.append(File.generated(config, path, content=text))
    return files

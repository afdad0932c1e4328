"""The ``hybridnb`` command line. :func:`main` maps errors to exit codes.

Exit codes: 0 success; 1 an operation failed; 2 bad input (usage, configuration);
130 interrupted. A traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    import click
    import typer

    from ..errors import HybridnbError
    from .app import app

    # Newer typer vendors click; catch both its exceptions and click's own.
    exits = (click.exceptions.Exit, typer.Exit)
    aborts = (click.exceptions.Abort, typer.Abort)
    usage = (click.ClickException, getattr(typer, "TyperException", click.ClickException))

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    # The handler's level, not dask's config: Dask's INFO lines would drown the command's
    # own output, yet processes it starts over SSH must keep theirs (they are read).
    handler = logging.StreamHandler()
    handler.setLevel(logging.DEBUG if debug else logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, handlers=[handler])
    command = _typer_command(app)
    try:
        # Without standalone mode click returns an Exit's code instead of raising it.
        code = command.main(args=args, prog_name="hybridnb", standalone_mode=False)
    except exits as exc:
        return int(getattr(exc, "exit_code", 0))
    except aborts:
        click.echo("interrupted", err=True)
        return 130
    except usage as exc:  # bad usage: click's message, exit 2
        exc.show()
        return int(getattr(exc, "exit_code", 2))
    except HybridnbError as exc:
        if debug:
            logging.exception("hybridnb error")
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as exc:
        if debug:
            logging.exception("unexpected error")
        click.echo(f"error: {type(exc).__name__}: {exc}\n(run with --debug for the traceback)",
                   err=True)
        return 1
    return code if isinstance(code, int) else 0


def _typer_command(app: typer.Typer) -> Any:  # click's Command, or typer's vendored one
    import typer.main

    from .common import tidy

    return tidy(typer.main.get_command(app))


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())

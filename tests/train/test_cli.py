"""``hybridnb train``: exit 2 for bad specs, before any process starts."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from hybridnb.cli.common import Options
from hybridnb.cli.train import train


def app():
    a = typer.Typer()

    @a.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = Options()

    a.command("train")(train)
    return a


def run(*args):
    from hybridnb.errors import HybridnbError

    result = CliRunner().invoke(app(), ["train", *args])
    if isinstance(result.exception, HybridnbError):  # what hybridnb.cli.main maps
        return result.exception.exit_code, str(result.exception)
    return result.exit_code, result.output


def test_bad_spec_exits_2(tmp_path, hybridnb_home):
    spec = tmp_path / "s.yaml"
    spec.write_text("model: digits_cnn\noptimizer: adamx\n")
    code, text = run(str(spec))
    assert code == 2 and "unknown optimizer 'adamx'" in text and f"{spec}:" in text


def test_example_spec_is_valid_and_too_many_ranks_exit_2(hybridnb_home):
    spec = Path(__file__).parents[2] / "notebooks" / "specs" / "digits_cnn.yaml"
    code, text = run(str(spec), "--nprocs", "3")
    assert code == 2 and "3 ranks exceed site 'local'" in text

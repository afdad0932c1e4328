"""``hybridnb data prepare``, through the real CLI entry point's error mapping."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from hybridnb.cli.data import app as data_app


def _app():
    # The lead registers the sub-app in cli/app.py; here a root app holds it the same way.
    from hybridnb.cli.app import root

    app = typer.Typer(pretty_exceptions_enable=False)
    app.callback()(root)
    app.add_typer(data_app, name="data")
    return app


def invoke(args):
    import click

    from hybridnb.errors import HybridnbError

    runner = CliRunner()
    result = runner.invoke(_app(), args)
    if isinstance(result.exception, HybridnbError):  # what hybridnb.cli.main maps
        return result.exception.exit_code, str(result.exception)
    assert not isinstance(result.exception, click.ClickException)
    return result.exit_code, result.output


def test_prepare_runs_then_is_up_to_date(tmp_path, hybridnb_home):
    f = tmp_path / "p.yaml"
    f.write_text(f"name: d\ndataset: digits\nout: {tmp_path / 'out'}\n"
                 "cluster: {processes: false}\n"
                 "steps:\n  - split: {seed: 0}\n  - standard_scale: {}\n")
    code, out = invoke(["data", "prepare", str(f)])
    assert code == 0, out
    assert "standard_scale" in out and "train=" in out
    assert (tmp_path / "out" / "manifest.json").is_file()
    code, out = invoke(["data", "prepare", str(f), "--json"])
    assert code == 0 and json.loads(out)["status"].startswith("up to date")
    code, out = invoke(["data", "prepare", str(f), "--site", "local", "--workers", "1",
                        "--force", "--json"])
    assert code == 0 and json.loads(out)["status"] == "done"


def test_prepare_bad_input_exits_2(tmp_path, hybridnb_home):
    code, msg = invoke(["data", "prepare", str(tmp_path / "none.yaml")])
    assert code == 2 and "not found" in msg
    f = tmp_path / "p.yaml"
    f.write_text("dataset: digits\nsteps:\n  - standard_scal: {}\n")
    code, msg = invoke(["data", "prepare", str(f)])
    assert code == 2 and "did you mean 'standard_scale'" in msg
    f.write_text("dataset: digits\nsteps:\n  - standard_scale: {}\n  - split: {}\n")
    code, msg = invoke(["data", "prepare", str(f)])
    assert code == 2 and "'standard_scale' (step 1) fits statistics before 'split'" in msg
    assert "move the split first" in msg
    f.write_text("dataset: digits\nsteps: []\n")
    code, msg = invoke(["data", "prepare", str(f), "--site", "nowhere"])
    assert code == 2 and "unknown site 'nowhere'" in msg

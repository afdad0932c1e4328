"""``hybridnb train``: exit 2 for bad specs, before any process starts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
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
    code, text = run(str(spec), "--nprocs", "3", "--set", "data=digits")
    assert code == 2 and "3 ranks exceed site 'local'" in text


def test_overrides_are_validated_naming_the_key(hybridnb_home):
    spec = Path(__file__).parents[2] / "notebooks" / "specs" / "digits_cnn.yaml"
    code, text = run(str(spec), "--set", "epoch=3")
    assert code == 2 and "override epoch=3" in text and "did you mean 'epochs'?" in text
    code, text = run(str(spec), "--set", "optimizer.lrr=0.1")
    assert code == 2 and "optimizer.lrr: unknown key 'lrr' (did you mean 'lr'?)" in text
    code, text = run(str(spec), "--epochs", "0")
    assert code == 2 and "override epochs=0: epochs:" in text
    code, text = run(str(spec), "--set", "epochs.x=1")
    assert code == 2 and "'epochs' is 20, not a mapping" in text
    code, text = run(str(spec), "--set", "sites.local.capacity.cpu=4")
    assert code == 2 and "hybridnb --set sites.local.capacity.cpu=VALUE train" in text
    code, text = run(str(spec), "--set", "novalue")
    assert code == 2 and "expected KEY=VALUE" in text


def test_the_shipped_spec_reads_the_prepared_shards_or_says_how(hybridnb_home):
    spec = Path(__file__).parents[2] / "notebooks" / "specs" / "digits_cnn.yaml"
    code, text = run(str(spec))
    assert code == 2 and "data.path 'build/data/digits'" in text
    assert "hybridnb data prepare" in text and "--data DIR" in text
    code, text = run(str(spec), "--data", str(hybridnb_home / "nothing"))
    assert code == 2 and str(hybridnb_home / "nothing") in text


def test_overrides_reach_the_run_and_the_summary_is_short(hybridnb_home, capsys):
    from hybridnb.cli import main

    spec = Path(__file__).parents[2] / "notebooks" / "specs" / "digits_cnn.yaml"
    run_dir = hybridnb_home / "run"
    args = [str(spec), "-n", "1", "--set", "data=digits", "--epochs", "1", "--batch-size",
            "16", "--set", "max_steps=3", "--set", "optimizer.lr=0.01", "--run-dir",
            str(run_dir)]
    assert main(["train", *args]) == 0
    ran = json.loads((run_dir / "spec.json").read_text())
    assert (ran["epochs"], ran["batch_size"], ran["max_steps"]) == (1, 16, 3)
    assert ran["optimizer"] == {**ran["optimizer"], "name": "adam", "lr": 0.01}
    assert ran["data"]["dataset"] == "digits" and ran["data"]["path"] is None
    text = capsys.readouterr().out
    acc = json.loads((run_dir / "result.json").read_text())["test_accuracy"]
    assert f"trained digits-cnn: test accuracy {100 * acc:.1f} %" in text
    assert re.search(r" in \d+\.\d s\n", text) and "3 steps on 1 rank (ddp, fp32, cpu)" in text
    assert f"bundle   {run_dir / 'bundle'}" in text
    assert "TrainResult(" not in text and not re.search(r"\d\.\d{5,}", text)


@pytest.mark.slow
def test_data_prepare_feeds_train_and_the_spec_reaches_its_accuracy(hybridnb_home, capsys):
    """The README's tour: prepare the digits shards, then train the shipped spec on them
    (from the directory both commands resolve build/data/digits against)."""
    from hybridnb.cli import main

    root = Path(__file__).parents[2]
    assert main(["data", "prepare", str(root / "notebooks" / "pipelines" / "digits.yaml")]) == 0
    out = capsys.readouterr().out
    assert "train on it: hybridnb train SPEC.yaml --data build/data/digits" in out
    manifest = json.loads(Path("build/data/digits/manifest.json").read_text())
    assert main(["train", str(root / "notebooks" / "specs" / "digits_cnn.yaml"),
                 "--nprocs", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    ran = json.loads((Path(summary["run_dir"]) / "spec.json").read_text())
    assert ran["data"] == {**ran["data"], "path": "build/data/digits", "dataset": None}
    # The test split is the prepared one (the built-in split has 360 images).
    assert manifest["counts"]["test"] != 360
    assert summary["test_accuracy"] >= 0.97, summary  # what the spec's header promises
    assert Path(summary["bundle"], "hybridnb-model.json").is_file()

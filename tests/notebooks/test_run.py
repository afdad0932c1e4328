"""hybridnb run: papermill execution, outcomes, exit codes, records, secrets, reports."""

from __future__ import annotations

import json

import nbformat
import psutil
import pytest

from hybridnb.cli import main
from hybridnb.errors import UsageError
from hybridnb.notebooks.runner import run_notebook
from hybridnb.state import StateStore
from hybridnb.testing.notebooks import make_notebook
from hybridnb.testing.waiting import running_children


def kernels_alive() -> list[psutil.Process]:
    return running_children("ipykernel")


def test_run_succeeds_with_records_and_state(notebook):
    run = run_notebook(notebook, parameters={"lr": 0.5, "batch": 4}, timeout=60)
    assert run.ok and run.exit_code == 0
    assert run.records == {"score": 2.0}
    out = nbformat.read(run.output, as_version=4)
    assert any("score 2.0" in "".join(o.get("text", "") for o in c.get("outputs", []))
               for c in out.cells)
    (rec,) = StateStore().list("notebook")
    assert rec.status.value == "succeeded" and rec.spec["parameters"] == {"lr": 0.5, "batch": 4}
    assert "succeeded" in repr(run) and "<table>" in run._repr_html_()
    assert kernels_alive() == []


def test_the_kernels_channels_are_encrypted(tmp_path, capfd):
    # ipykernel's kernelspec declares CurveZMQ support, so the manager gives it keys.
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import hybridnb\nfrom ipykernel.kernelapp import IPKernelApp\n"
        "hybridnb.record('curve', IPKernelApp.instance().curve_secretkey is not None)")])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                 "display_name": "Python 3"}
    nbformat.write(nb, tmp_path / "curve.ipynb")
    run = run_notebook(tmp_path / "curve.ipynb", timeout=60)
    assert run.records == {"curve": True}
    assert "without encryption" not in capfd.readouterr().err


def test_a_kernel_that_cannot_start_ends_the_record(notebook):
    with pytest.raises(UsageError, match="no Jupyter kernel named 'no-such-kernel'"):
        run_notebook(notebook, kernel_name="no-such-kernel", timeout=60)
    (rec,) = StateStore().list("notebook")
    assert rec.status.value == "failed" and "NoSuchKernel" in rec.error
    assert StateStore().events(rec.id)[-1].message == "the kernel did not start"
    assert kernels_alive() == []


def test_ctrl_c_stops_the_record_and_propagates(notebook, monkeypatch):
    import papermill

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_notebook(notebook, timeout=60)
    (rec,) = StateStore().list("notebook")
    assert rec.status.value == "stopped" and rec.error.startswith("KeyboardInterrupt")
    assert StateStore().events(rec.id)[-1].message == "interrupted"


def _last_output():
    """The output notebook of the latest recorded run."""
    from pathlib import Path

    return Path(StateStore().list("notebook")[0].spec["output"])


def test_failing_cell_keeps_partial_output(notebook, capsys):
    code = main(["run", str(notebook), "-p", "fail", "true", "-p", "lr", "0.3"])
    assert code == 3
    err = capsys.readouterr().err
    assert "ValueError: bad lr 0.3" in err and "at cell" in err
    assert str(_last_output()) in err
    out = nbformat.read(_last_output(), as_version=4)
    text = json.dumps(out)
    assert "An Exception was encountered" in text  # papermill's banner says where
    assert StateStore().list("notebook")[0].status.value == "failed"


def test_timeout_and_dead_kernel_have_distinct_codes(notebook, capsys):
    assert main(["run", str(notebook), "-p", "sleep", "30.0", "--timeout", "2"]) == 4
    assert "ran past 2 s" in capsys.readouterr().err
    assert main(["run", str(notebook), "-p", "die", "true", "--timeout", "60"]) == 5
    assert "died" in capsys.readouterr().err.lower()
    assert kernels_alive() == []


def test_bad_input(notebook, hybridnb_home, capsys):
    assert main(["run", str(hybridnb_home / "missing.ipynb")]) == 2
    assert "notebook not found" in capsys.readouterr().err
    assert main(["run", str(notebook), "-p", "lr", "fast"]) == 2
    assert "declared float" in capsys.readouterr().err
    assert main(["run", str(notebook), "-p", "batch", "true"]) == 2
    with pytest.raises(UsageError, match="look like secrets"):
        run_notebook(notebook, parameters={"api_token": "abc"})


def test_undeclared_parameter_is_refused_with_did_you_mean(notebook, capsys):
    assert main(["run", str(notebook), "-p", "lrr", "0.2"]) == 2
    err = capsys.readouterr().err
    assert "declares no parameter 'lrr' (did you mean 'lr'?)" in err
    assert "declared: lr, batch, fail, sleep, die" in err
    assert "--allow-unknown-parameters" in err and "Traceback" not in err
    assert StateStore().list("notebook") == []  # nothing ran
    with pytest.raises(UsageError, match=r"'lrr' .*'zzz'"):
        run_notebook(notebook, parameters={"lrr": 1, "zzz": 2})


def test_allow_unknown_parameters_runs_with_one_warning(notebook, capsys):
    code = main(["run", str(notebook), "-p", "lrr", "0.2", "--allow-unknown-parameters"])
    assert code == 0
    captured = capsys.readouterr()
    assert captured.err.count("'lrr'") == 1  # once: not also papermill's and the log's
    assert "warning: parameter 'lrr' is not declared" in captured.err
    assert "did you mean 'lr'" in captured.err
    assert "score = 3.2" in captured.out  # the default lr ran: 0.1 * 32


def test_default_output_stays_out_of_the_source_directory(notebook, hybridnb_home, capsys):
    assert main(["run", str(notebook)]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in notebook.parent.iterdir()) == ["train.ipynb"]
    output = _last_output()
    assert output.parent == hybridnb_home / "state" / "notebooks" and output.is_file()
    assert "succeeded in " in out and str(output) in out
    assert main(["run", str(notebook)]) == 0  # a second run keeps the first one's output
    assert len(list(output.parent.glob("train-*.ipynb"))) == 2


def test_run_prints_each_section_as_it_starts(hybridnb_home, capsys):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_markdown_cell("## 1. Load\nsome text"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell("### a detail, not a stage"),
        nbformat.v4.new_markdown_cell("## 2. Fit"),
        nbformat.v4.new_code_cell("x = 0.1234567891234"),
        nbformat.v4.new_code_cell("import hybridnb\nhybridnb.record('x', x)")])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                 "display_name": "Python 3"}
    nbformat.write(nb, hybridnb_home / "work" / "stages.ipynb")
    assert main(["run", str(hybridnb_home / "work" / "stages.ipynb")]) == 0
    captured = capsys.readouterr()
    stages = [line for line in captured.err.splitlines() if line.startswith("[")]
    assert [line.split("] ", 1)[1] for line in stages] == ["1. Load", "2. Fit"]
    assert "  x = 0.1235" in captured.out  # a short summary, not a 16-digit float


def test_parameters_file_and_report(notebook, hybridnb_home, capsys):
    params = hybridnb_home / "p.yaml"
    params.write_text("lr: 2\nbatch: 3\n")
    out = hybridnb_home / "out" / "result.ipynb"
    assert main(["run", str(notebook), str(out), "-f", str(params), "--report"]) == 0
    text = capsys.readouterr().out
    assert "score = 6" in text
    html = out.with_suffix(".html").read_text()
    assert "<html" in html and "score 6" in html
    # It opens with a summary (tests/notebooks/test_report.py checks it in full): the
    # parameters from the file, with their defaults, and the recorded result.
    assert html.index("hybridnb-summary") < html.index("score 6")
    summary = html.split('<div class="hybridnb-summary">', 1)[1].split("</div>")[0]
    assert "<code>lr</code></td><td>2</td>" in summary
    assert "<code>batch</code></td><td>3</td>" in summary
    assert "<td>score</td><td class=\"num\">6</td>" in summary
    assert '<a href="result.ipynb">' in summary


def test_secret_never_reaches_the_output(hybridnb_home, monkeypatch):
    value = "s3cr3t-value-9f8e7d"
    monkeypatch.setenv("HYBRIDNB_SECRET_API_TOKEN", value)
    nb = make_notebook(hybridnb_home / "work" / "s.ipynb",
                       ["import hybridnb\ntok = hybridnb.secret('api_token')\nprint(tok)\ntok",
                        "print(len(tok.reveal()))"], parameters="n = 1")
    run = run_notebook(nb, parameters={"n": 2}, report=True)
    assert run.ok
    for path in (run.output, run.report):
        assert value not in path.read_text()
    assert "Secret('api_token', ***)" in run.output.read_text()
    (rec,) = StateStore().list("notebook")
    assert value not in json.dumps(rec.model_dump(mode="json"))


def test_secrets_file_must_be_private(hybridnb_home):
    from hybridnb.notebooks.secrets import secret, secrets_file

    path = secrets_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("db_password: pw123\n")
    path.chmod(0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        secret("db_password")
    path.chmod(0o600)
    assert secret("db_password").reveal() == "pw123"
    with pytest.raises(UsageError, match="no secret 'nope'"):
        secret("nope")


def _peek_notebook(hybridnb_home):
    """A notebook whose last cell reads its own output file as saved so far."""
    return make_notebook(
        hybridnb_home / "work" / "peek.ipynb",
        ["print('first', 'cell', 'ran')",
         "import hybridnb, pathlib\n"
         "printed = ' '.join(['first', 'cell', 'ran'])  # not in any cell's source\n"
         "hybridnb.record('saved', printed in pathlib.Path(out).read_text())"],
        parameters="out = ''")


@pytest.mark.parametrize(("save_every", "saved"), [(0.0, True), (3600.0, False)])
def test_partial_output_is_saved_every_save_every_seconds(hybridnb_home, save_every, saved):
    nb = _peek_notebook(hybridnb_home)
    out = hybridnb_home / "work" / "peek.out.ipynb"
    run = run_notebook(nb, out, {"out": str(out)}, record=False, save_every=save_every)
    assert run.ok and run.records == {"saved": saved}
    # Whatever was saved while it ran, the end of the run saves everything.
    assert "first cell ran" in out.read_text()


def test_timed_out_cell_is_marked_where_it_stopped(notebook, capsys):
    assert main(["run", str(notebook), "-p", "sleep", "30.0", "--timeout", "2"]) == 4
    assert "at cell [3]" in capsys.readouterr().err  # parameters, injected parameters, sleep
    out = nbformat.read(_last_output(), as_version=4)
    status = [c.metadata.papermill["status"] for c in out.cells]
    assert status == ["completed", "completed", "failed", "pending", "pending", "pending"]


def test_bad_cwd_and_kernel_cwd(notebook, hybridnb_home, capsys):
    with pytest.raises(UsageError, match="not a directory"):
        run_notebook(notebook, cwd=hybridnb_home / "nope")
    nb = make_notebook(hybridnb_home / "work" / "cwd.ipynb",
                       ["import os, hybridnb\nhybridnb.record('cwd', os.getcwd())"])
    run = run_notebook(nb, cwd=hybridnb_home, record=False)
    assert run.records == {"cwd": str(hybridnb_home.resolve())}


def test_config_and_set_reach_the_kernel(hybridnb_home, capsys):
    """``hybridnb --config F --set K=V run``: the kernel's load_config() sees both."""
    team = hybridnb_home / "team.yaml"
    team.write_text("sites:\n  edge1: {tier: edge, capacity: {cpu: 1, memory: 1GiB}}\n")
    nb = make_notebook(
        hybridnb_home / "work" / "config.ipynb",
        ["import hybridnb\nc = hybridnb.load_config()\n"
         "hybridnb.record('cpu', c.site('local').capacity.cpu)\n"
         "hybridnb.record('sites', sorted(c.sites))"])
    args = ["--config", str(team), "--set", "sites.local.capacity.cpu=3", "run", str(nb)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "cpu = 3" in out and "sites = edge1, local" in out
    assert main(["--set", "sites.local.capacity.cpu=-1", "run", str(nb)]) == 2
    assert "cpu" in capsys.readouterr().err

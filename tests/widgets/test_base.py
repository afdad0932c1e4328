"""The shared machinery: headless detection, validation, background actions, code view."""

from __future__ import annotations

import subprocess
import sys
import threading

import ipywidgets as w

from hybridnb.errors import OperationError, UsageError
from hybridnb.widgets import headless
from hybridnb.widgets.base import (
    ActionRunner,
    CodeView,
    Field,
    Form,
    count,
    parameters_yaml,
    positive_float,
)


def test_import_hybridnb_does_not_load_ipywidgets():
    code = ("import sys, hybridnb, hybridnb.widgets; "
            "assert 'ipywidgets' not in sys.modules, 'ipywidgets loaded'; "
            "hybridnb.widgets.ClusterPanel; assert 'ipywidgets' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_headless_env_override_and_no_kernel(monkeypatch):
    monkeypatch.setenv("HYBRIDNB_HEADLESS", "1")
    assert headless()
    monkeypatch.setenv("HYBRIDNB_HEADLESS", "0")
    assert not headless()
    monkeypatch.delenv("HYBRIDNB_HEADLESS")
    assert headless()  # plain Python: no kernel, nothing draws widgets


def test_form_shows_errors_next_to_fields_and_cross_checks():
    lo = Field("lo", w.Text("1"), count(0))
    hi = Field("hi", w.Text("2"), count(0))
    form = Form([lo, hi], lambda v: {"hi": "must be >= lo"} if v["hi"] < v["lo"] else {})
    seen = []
    form.on_change(lambda: seen.append(form.valid))
    assert form.valid and form.values == {"lo": 1, "hi": 2}
    lo.widget.value = "x"
    assert not form.valid and "not a whole number" in lo.message.value
    assert "hybridnb-invalid" in lo.message.value and hi.message.value == ""
    lo.widget.value = "5"
    assert not form.valid and form.errors == {"hi": "must be >= lo"}
    hi.widget.value = "9"
    assert form.valid and form.errors == {} and lo.message.value == ""
    assert seen[-1] is True and False in seen


def test_action_runner_shows_user_errors_and_unexpected_ones():
    errors, states = [], []
    runner = ActionRunner(lambda: states.append(runner.busy), errors.append, lambda s: None)
    release = threading.Event()
    assert runner.run("slow", lambda: release.wait(10))
    assert runner.busy and not runner.run("again", lambda: None)  # one at a time
    release.set()
    runner.wait(10)
    assert not runner.busy and runner.last_error is None and states[-1] is False

    def bad():
        raise UsageError("cpu must be a number")

    runner.run("bad", bad)
    runner.wait(10)
    assert runner.last_error == "cpu must be a number" and errors[-1] == "cpu must be a number"

    def broken():
        raise KeyError("x")

    runner.run("broken", broken)
    runner.wait(10)
    assert runner.last_error == "KeyError: 'x'"

    def failed():
        raise OperationError("scheduler gone")

    runner.run("failed", failed)
    runner.wait(10)
    assert runner.last_error == "scheduler gone"


def test_code_view_copy_box_yaml_and_insert_without_ipython():
    view = CodeView()
    view.update("x = 1\n", {"x": 1, "tiers": None})
    assert view.code.value == "x = 1\n" and view.yaml.value == "x: 1\ntiers: null\n"
    assert view.insert_cell() is False and "copy" in view.note.value
    assert parameters_yaml({"a": [1, 2]}) == "a:\n- 1\n- 2\n"
    assert positive_float("2") == 2.0

"""Specs, bad input, optimizers, schedules, precision: no training processes."""

from __future__ import annotations

import pytest

from hybridnb.config import load_config
from hybridnb.errors import UsageError
from hybridnb.train import TrainSpec, TrainSpecError, check, load_spec
from hybridnb.train.optim import build_optimizer, build_scheduler, lr_factor, resolve_numerics
from hybridnb.train.spec import OPTIMIZERS

from .conftest import tiny


def test_yaml_spec_with_shorthands(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("name: d\nmodel: mlp\ndata: digits\noptimizer: {name: momentum, "
                    "nesterov: true}\nschedule: cosine\nprecision: bf16\n")
    spec = load_spec(path)
    assert (spec.model.factory, spec.optimizer.name, spec.schedule.name) == (
        "mlp", "momentum", "cosine")
    assert spec.hash() == load_spec(path).hash() != TrainSpec().hash()


def test_unknown_key_names_file_line_and_suggestion(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("name: d\noptimizer:\n  name: adam\n  lr: 0.1\n  weight_decy: 0.1\n")
    with pytest.raises(TrainSpecError) as info:
        load_spec(path)
    text = str(info.value)
    assert f"{path}:5: optimizer.weight_decy: unknown key 'weight_decy'" in text
    assert "did you mean 'weight_decay'" in text


@pytest.mark.parametrize(("key", "value", "words"), [
    ("optimizer", "adamx", ["unknown optimizer 'adamx'", "did you mean 'adam'"]),
    ("precision", "fp8", ["unknown precision 'fp8'", "fp32, bf16, fp16"]),
    ("strategy", "fsdp2", ["unknown strategy 'fsdp2'", "did you mean 'fsdp'"]),
    ("data", {"dataset": "digitz"}, ["unknown dataset 'digitz'", "did you mean 'digits'"]),
    ("data", {"dataset": "digits", "path": "/x"}, ["exactly one of"]),
    ("epochs", 0, ["epochs", "greater than or equal to 1"]),
])
def test_bad_values_are_usage_errors(key, value, words):
    with pytest.raises(TrainSpecError) as info:
        load_spec(tiny(**{key: value}))
    assert isinstance(info.value, UsageError)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(("overrides", "kwargs", "words"), [
    ({"model": "nosuch.module:make"}, {}, ["cannot import the model factory",
                                           "nosuch"]),
    ({"model": "hybridnb.train.models:digits_cnnn"}, {}, ["no callable 'digits_cnnn'",
                                                          "did you mean 'digits_cnn'"]),
    ({"model": "__main__:net"}, {}, ["__main__", "cannot import"]),
    ({"data": {"path": "/nonexistent/shards"}}, {}, ["not a prepared dataset"]),
    ({"batch_size": 700}, {}, ["batch_size 700 is larger than the 628 training samples"]),
    ({}, {"nprocs": 3}, ["3 ranks exceed site 'local' capacity of 2 CPUs"]),
    ({"strategy": "single"}, {"nprocs": 2}, ["strategy 'single' runs one process"]),
    ({}, {"launcher": "slurm"}, ["unknown launcher 'slurm'"]),
    ({}, {"site": "mars"}, ["mars"]),
])
def test_bad_input_is_refused_before_any_process(overrides, kwargs, words, hybridnb_home):
    config = load_config(overrides={"sites.local.capacity.cpu": 2})
    args = {"nprocs": 2, "config": config, **kwargs}
    with pytest.raises(UsageError) as info:
        check(load_spec(tiny(**overrides)), **args)
    for word in words:
        assert word in str(info.value)


def test_bf16_without_native_support_warns_and_falls_back(monkeypatch):
    from hybridnb.train import optim

    monkeypatch.setattr(optim, "cpu_bf16_flags", lambda: [])  # this CPU's answer, made sure
    with pytest.warns(RuntimeWarning, match="no native bf16"):
        num = resolve_numerics(load_spec(tiny(precision="bf16", device="cpu")), warn=True)
    assert (num.precision, num.requested, num.backend) == ("fp32", "bf16", "gloo")
    forced = resolve_numerics(load_spec(tiny(precision="bf16", device="cpu",
                                             allow_emulated_bf16=True)))
    assert forced.precision == "bf16" and not forced.uses_scaler
    assert resolve_numerics(load_spec(tiny(precision="fp16", device="cpu"))).uses_scaler


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_trains_a_step(name):
    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    spec = load_spec(tiny(optimizer={"name": name, "lr": 0.05, "weight_decay": 0.01}))
    opt = build_optimizer(spec.optimizer, model.parameters())
    sched = build_scheduler(spec.schedule, opt, total_steps=10)
    before = model.weight.detach().clone()
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    sched.step()
    assert not torch.equal(before, model.weight)
    expected = {"sgd": "SGD", "momentum": "SGD", "adam": "Adam", "adamw": "AdamW",
                "rmsprop": "RMSprop", "adagrad": "Adagrad"}[name]
    assert type(opt).__name__ == expected
    assert opt.defaults["weight_decay"] == 0.01


def test_schedules():
    spec = load_spec(tiny(schedule={"name": "cosine", "warmup_steps": 4, "min_lr_ratio": 0.1}))
    f = lr_factor(spec.schedule, total_steps=14)
    assert [round(f(s), 2) for s in (0, 3, 4, 9, 14)] == [0.2, 0.8, 1.0, 0.55, 0.1]
    step = lr_factor(load_spec(tiny(schedule={"name": "step", "step_size": 3,
                                              "gamma": 0.5})).schedule, 10)
    assert [step(s) for s in (0, 2, 3, 6)] == [1.0, 1.0, 0.5, 0.25]
    assert lr_factor(TrainSpec().schedule, 10)(5) == 1.0


@pytest.mark.parametrize("validation, test", [(0.1, 0.2), (0.0, 0.2), (0.15, 0.3),
                                              (0.33, 0.45), (0.07, 0.011)])
def test_split_sizes_are_known_without_loading_the_data(validation, test):
    from hybridnb.train.data import data_sizes, load_arrays
    from hybridnb.train.spec import DataSpec

    spec = DataSpec(dataset="digits", validation_fraction=validation, test_fraction=test)
    assert data_sizes(spec) == load_arrays(spec).sizes()


def test_checking_a_spec_imports_neither_torch_nor_sklearn(hybridnb_home):
    # The launching process checks a spec before any rank starts: it must stay quick.
    import subprocess
    import sys

    from hybridnb.train.optim import torch_build_has_gpu

    if torch_build_has_gpu():
        pytest.skip("a CUDA/ROCm build of torch: checking asks torch whether a GPU is there")
    code = ("import sys; from hybridnb.train import TrainSpec, check; "
            "check(TrainSpec(data={'dataset': 'digits'}), nprocs=2); "
            "print([m for m in ('torch', 'sklearn') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"

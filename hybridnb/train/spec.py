"""What to train and how: :class:`TrainSpec`, from Python or from a YAML file.

A spec is plain data (it travels to every rank as JSON and is hashed into the model
bundle). Unknown keys are errors with a "did you mean", as in ``hybridnb.yaml``::

    name: digits-cnn
    model: digits_cnn                 # registered name, or "package.module:function"
    data: {dataset: digits}           # or {path: build/data/digits} (prepared shards)
    optimizer: {name: adam, lr: 0.003, weight_decay: 0.0001}
    schedule: {name: cosine, warmup_steps: 20}
    epochs: 20
    batch_size: 32                    # per rank
    precision: fp32                   # fp32 | bf16 | fp16
    strategy: ddp                     # ddp | fsdp | single

>>> spec = TrainSpec(model="mlp", data="digits", optimizer="momentum", epochs=2)
>>> spec.optimizer.name, spec.data.dataset, spec.strategy
('momentum', 'digits', 'ddp')
>>> len(spec.hash())
16
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from ..config.problems import ConfigProblem
from ..data.digits_split import SPLIT_SEED, TEST_FRACTION, VALIDATION_FRACTION
from ..errors import UsageError, did_you_mean

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop", "adagrad")
SCHEDULES = ("constant", "step", "cosine")
PRECISIONS = ("fp32", "bf16", "fp16")
STRATEGIES = ("ddp", "fsdp", "single")
DATASETS = ("digits",)
#: Keys whose value may be a string, short for a mapping with this one key.
SHORTHANDS = {"model": "factory", "data": "dataset", "optimizer": "name", "schedule": "name"}


class TrainSpecError(UsageError):
    """A training spec is invalid; ``problems`` lists every problem found.

    >>> try:
    ...     TrainSpec.model_validate({"optimzer": "adam"})
    ... except Exception as exc:
    ...     print(type(exc).__name__)
    ValidationError
    """

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = list(problems)
        n = len(self.problems)
        lines = [f"invalid training spec ({n} problem{'s' if n != 1 else ''}):"]
        super().__init__("\n".join([*lines, *(f"  {p}" for p in self.problems)]))


class _Model(BaseModel):
    # Unknown keys are errors, never silently ignored (same rule as hybridnb.yaml).
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _choice(value: Any, choices: tuple[str, ...], what: str) -> Any:
    if isinstance(value, str) and value not in choices:
        raise ValueError(f"unknown {what} {value!r}{did_you_mean(value, choices)}; "
                         f"use one of {', '.join(choices)}")
    return value


def _shorthand(value: Any, key: str) -> Any:
    # ``optimizer: adam`` means ``optimizer: {name: adam}``.
    return {key: value} if isinstance(value, str) else value


class ModelSpec(_Model):
    """The model: a registered name (``digits_cnn``, ``mlp``) or ``"module:function"``."""

    factory: str = Field("digits_cnn", description="a registered model name or "
                         "'package.module:function' returning an nn.Module")
    kwargs: dict[str, Any] = Field(default_factory=dict,
                                   description="keyword arguments of the factory")


class DataSpec(_Model):
    """The data: a built-in dataset by name, or a directory of prepared shards."""

    dataset: str | None = Field(None, description="a built-in dataset: digits")
    path: str | None = Field(None, description="a directory written by hybridnb.data "
                             "(its manifest.json)")
    # The digits split's defaults live with the split (training and evaluation share it).
    validation_fraction: float = Field(VALIDATION_FRACTION, ge=0.0, lt=0.5)
    test_fraction: float = Field(TEST_FRACTION, gt=0.0, lt=0.5)
    split_seed: int = Field(SPLIT_SEED, description="seed of the validation/test split")

    @field_validator("dataset")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        return _choice(v, DATASETS, "dataset")

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one of 'dataset' (e.g. digits) or 'path' "
                             "(a prepared shard directory)")
        return self


class OptimizerSpec(_Model):
    """Optimizer and its hyper-parameters; ``momentum`` is SGD with momentum."""

    name: str = Field("adam", description=", ".join(OPTIMIZERS))
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="momentum and rmsprop")
    nesterov: bool = Field(False, description="Nesterov momentum (momentum only)")
    betas: tuple[float, float] = Field((0.9, 0.999), description="adam and adamw")
    eps: float = Field(1e-8, gt=0)
    alpha: float = Field(0.99, gt=0, lt=1, description="rmsprop smoothing constant")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return str(_choice(v, OPTIMIZERS, "optimizer"))


class ScheduleSpec(_Model):
    """Learning-rate schedule, stepped once per optimizer step, with linear warm-up."""

    name: str = Field("constant", description=", ".join(SCHEDULES))
    warmup_steps: int = Field(0, ge=0)
    step_size: int = Field(100, ge=1, description="steps between decays (step schedule)")
    gamma: float = Field(0.1, gt=0, le=1, description="decay factor (step schedule)")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final lr / lr (cosine)")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return str(_choice(v, SCHEDULES, "schedule"))


class TrainSpec(_Model):
    """Everything a training run needs, as plain data.

    Parameters
    ----------
    model, data, optimizer, schedule:
        Sub-specs; each accepts a string shorthand (``optimizer="adamw"``).
    epochs, batch_size, grad_accum, max_steps:
        ``batch_size`` is per rank; an optimizer step takes ``grad_accum`` batches;
        ``max_steps`` stops early (smoke tests).
    precision, allow_emulated_bf16:
        ``bf16`` on a CPU without native bf16 falls back to fp32 with a warning unless
        ``allow_emulated_bf16`` (it then runs, slowly, in emulation).
    strategy, device:
        ``ddp``, ``fsdp`` (FSDP2 ``fully_shard``) or ``single`` (one process);
        ``device: auto`` picks CUDA with NCCL when a GPU is present, else CPU with gloo.
    seed, checkpoint_every, keep_checkpoints, max_restarts, timeout_s:
        Data order depends only on ``(seed, epoch)``; checkpoints are written every
        ``checkpoint_every`` optimizer steps (0: at each epoch end only).
    threads, pin_cpus:
        Torch threads per rank. ``pin_cpus`` binds each rank of a local launch (the
        elastic agent's) to ``threads`` cores of its own, in order among the cores this
        process may use: no migrations between a rank's compute and gloo threads (two
        ranks on two cores: 1–9 % more samples/s, by run; ``benchmarks/bench_train.py``
        reports pinned and unpinned runs side by side). ``auto`` (the default) pins only
        when the local ranks' threads fill every usable core — a job that takes the whole
        machine, where a second such job would share each core the same way pinned or
        not; ``True`` pins whenever there are enough cores; ``False`` never.

    >>> TrainSpec(precision="fp8")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: ...
    """

    name: str = Field("train", pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$")
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=lambda: DataSpec(dataset="digits"))
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1, description="samples per rank per batch")
    grad_accum: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)
    precision: str = "fp32"
    allow_emulated_bf16: bool = False
    strategy: str = "ddp"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    checkpoint_every: int = Field(0, ge=0)
    keep_checkpoints: int = Field(2, ge=1)
    max_restarts: int = Field(0, ge=0)
    timeout_s: float = Field(60.0, gt=0, description="process-group timeout in seconds")
    log_every: int = Field(10, ge=1)
    threads: int = Field(1, ge=1, description="torch threads per rank")
    pin_cpus: bool | Literal["auto"] = Field(
        "auto", description="cores of its own per local rank (auto: when ranks fill them)")
    # The YAML file the spec was read from (not part of the spec, nor of its hash): a model
    # module next to it can be imported (hybridnb.train.models.model_path).
    _source: str | None = PrivateAttr(None)

    @property
    def source(self) -> str | None:
        """The spec file this spec was loaded from, if any (see :func:`load_spec`)."""
        return self._source

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for key, sub in SHORTHANDS.items():
                if key in data:
                    data[key] = _shorthand(data[key], sub)
        return data

    @field_validator("precision")
    @classmethod
    def _precision(cls, v: str) -> str:
        return str(_choice(v, PRECISIONS, "precision"))

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, v: str) -> str:
        return str(_choice(v, STRATEGIES, "strategy"))

    def hash(self) -> str:
        """A short, stable hash of the spec (what the bundle records)."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def __repr__(self) -> str:
        return (f"TrainSpec({self.name!r}: {self.model.factory} on "
                f"{self.data.dataset or self.data.path}, {self.optimizer.name} "
                f"lr={self.optimizer.lr:g}, {self.epochs} epochs × batch {self.batch_size}, "
                f"{self.strategy}/{self.precision})")


def _problem(err: Any, source: str, lines: dict[tuple[str, ...], int]) -> ConfigProblem:
    loc = tuple(str(p) for p in err["loc"])
    probe = loc
    while probe and probe not in lines:
        probe = probe[:-1]
    line = lines.get(probe)
    key = loc[-1] if loc else ""
    if err["type"] == "extra_forbidden":
        owner = _owner(loc[:-1])
        valid = sorted(owner.model_fields) if owner else []
        return ConfigProblem(source, ".".join(loc),
                             f"unknown key '{key}'{did_you_mean(key, valid)}",
                             "remove it or correct its spelling"
                             + (f"; valid keys here: {', '.join(valid)}" if valid else ""), line)
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] not in ("value_error", "missing"):
        message = f"{message} (got {err.get('input')!r})"
    return ConfigProblem(source, ".".join(loc), message, "", line)


def _owner(loc: tuple[str, ...]) -> type[BaseModel] | None:
    current: type[BaseModel] = TrainSpec
    for part in loc:
        field = current.model_fields.get(part)
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        current = ann
    return current


def load_spec(source: TrainSpec | dict[str, Any] | str | os.PathLike[str], *,
              overrides: dict[str, Any] | None = None) -> TrainSpec:
    """A :class:`TrainSpec` from a spec, a mapping or a YAML file, with overrides.

    ``overrides`` maps dotted keys to values (``{"optimizer.lr": 0.01, "epochs": 3}``);
    setting ``data.path`` or ``data.dataset`` replaces the other (a spec trains on one).
    Raises :class:`TrainSpecError` listing every problem with its file, line and key;
    a problem an override caused names the override.

    >>> load_spec({"optimizer": "adam"}, overrides={"optimizer.lr": 0.01}).optimizer.lr
    0.01
    >>> load_spec({"optimizer": {"name": "adamx"}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hybridnb.train.spec.TrainSpecError: invalid training spec (1 problem):
      arguments: optimizer.name: unknown optimizer 'adamx' (did you mean 'adam'?); ...
    """
    from ..config.yamlsource import read_yaml

    lines: dict[tuple[str, ...], int] = {}
    label, file = "arguments", None
    if isinstance(source, TrainSpec):
        data, file = source.model_dump(), source.source
    elif isinstance(source, dict):
        data = dict(source)
    else:
        label = file = str(source)
        try:
            data, lines = read_yaml(Path(source))
        except UsageError as exc:  # ConfigError: re-label it as a spec problem
            raise TrainSpecError(getattr(exc, "problems", [])) from None
    labels: dict[tuple[str, ...], str] = {}
    for key, value in (overrides or {}).items():
        parts = tuple(str(key).split("."))
        where = f"override {key}={_show(value)}"
        if not all(parts):
            raise TrainSpecError([ConfigProblem(where, str(key), "not a key path",
                                                "use dotted keys such as optimizer.lr")])
        _set_path(data, parts, value, where)
        labels[parts] = where
    try:
        spec = TrainSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            where = _label(e["loc"], labels, label)
            problems.append(_problem(e, where, lines if where == label else {}))
        raise TrainSpecError(problems) from None
    if file is not None:
        spec._source = str(Path(file).expanduser().resolve())
    return spec


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _label(loc: tuple[Any, ...], labels: dict[tuple[str, ...], str], default: str) -> str:
    """The override that caused a problem at ``loc``, else where the spec came from."""
    path = tuple(str(p) for p in loc)
    for parts, where in labels.items():
        n = min(len(parts), len(path))
        if n and parts[:n] == path[:n]:
            return where
    return default


def _set_path(data: dict[str, Any], parts: tuple[str, ...], value: Any, where: str) -> None:
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if isinstance(child, str) and depth == 0 and part in SHORTHANDS:
            child = {SHORTHANDS[part]: child}
        elif child is None:
            child = {}
        if not isinstance(child, dict):
            at = ".".join(parts[:depth + 1])
            raise TrainSpecError([ConfigProblem(
                where, ".".join(parts), f"'{at}' is {child!r}, not a mapping of keys",
                f"set '{at}' itself, e.g. {at}=VALUE")])
        node[part] = child = dict(child)
        node = child
    if parts[0] == "data" and len(parts) == 2 and parts[1] in ("path", "dataset"):
        node.pop("dataset" if parts[1] == "path" else "path", None)
    node[parts[-1]] = value

"""Model factories: built-in small models and the registry that names them.

A spec names its model either by a registered name or as ``"package.module:function"``.
Ranks are separate processes, so a factory must be importable there: a function defined
in a notebook cell is not (put it in a module next to the notebook).

>>> model = build_model("mlp", {"hidden": [32]})
>>> sum(p.numel() for p in model.parameters())
2410
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, did_you_mean

if TYPE_CHECKING:
    from torch import nn

#: Built-in model names -> "module:function". Plug-ins add names through the
#: ``hybridnb.models`` entry-point group, resolved the same way.
BUILTIN_MODELS = {
    "digits_cnn": "hybridnb.train.models:digits_cnn",
    "mlp": "hybridnb.train.models:mlp",
}


def digits_cnn(num_classes: int = 10, channels: int = 16, hidden: int = 64) -> nn.Module:
    """A small CNN for 1×8×8 images (the scikit-learn digits)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(2 * channels * 4 * 4, hidden), nn.ReLU(),
        nn.Linear(hidden, num_classes))


def mlp(in_features: int = 64, hidden: Sequence[int] = (128,), num_classes: int = 10
        ) -> nn.Module:
    """A multi-layer perceptron over flattened inputs."""
    from torch import nn

    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        width = int(h)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def known_models() -> dict[str, str]:
    """Registered model names -> ``"module:function"`` (built-ins and plug-ins)."""
    names = dict(BUILTIN_MODELS)
    for ep in entry_points(group="hybridnb.models"):
        names.setdefault(ep.name, ep.value)
    return names


def resolve_factory(factory: str) -> Callable[..., Any]:
    """The callable behind a registered name or ``"module:function"``; a clear error if not.

    >>> resolve_factory("digits_cnn").__name__
    'digits_cnn'
    >>> resolve_factory("digits_cn")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hybridnb.errors.UsageError: unknown model 'digits_cn' (did you mean 'digits_cnn'?)...
    """
    names = known_models()
    target = names.get(factory, factory)
    module_name, sep, attr = target.partition(":")
    if not sep:
        raise UsageError(f"unknown model {factory!r}{did_you_mean(factory, names)}; use a "
                         f"registered name ({', '.join(sorted(names))}) or "
                         "'package.module:function'")
    if module_name == "__main__":
        raise UsageError(f"model factory {factory!r} lives in __main__ (a notebook or "
                         "script), which training processes cannot import; move it into a "
                         "module on the Python path")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import the model factory {factory!r}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UsageError(f"model factory {factory!r}: module {module_name!r} has no callable "
                         f"{attr!r}{did_you_mean(attr, dir(module))}")
    return fn


def build_model(factory: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Call the factory and check that it returned an ``nn.Module``."""
    from torch import nn

    try:
        model = resolve_factory(factory)(**(kwargs or {}))
    except TypeError as exc:
        raise UsageError(f"model factory {factory!r} rejected its arguments "
                         f"{kwargs or {}}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise UsageError(f"model factory {factory!r} returned {type(model).__name__}, "
                         "not a torch.nn.Module")
    return model

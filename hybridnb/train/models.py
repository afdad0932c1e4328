"""Model factories: built-in small models and the registry that names them.

A spec names its model either by a registered name or as ``"package.module:function"``.
Ranks are separate processes, so a factory must be importable there: a function defined
in a notebook cell is not (put it in a module next to the notebook or the spec).

Where a ``"module:function"`` is looked for is one rule (:func:`model_path`), shared by
the check before launch and by every rank: the spec file's directory, then the working
directory, then ``sys.path``. The launcher computes the list once and hands it to its
ranks in ``$HYBRIDNB_MODEL_PATH``.

>>> model = build_model("mlp", {"hidden": [32]})
>>> sum(p.numel() for p in model.parameters())
2410
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, did_you_mean

if TYPE_CHECKING:
    from torch import nn

#: The directories a rank searches for a model module first (``os.pathsep``-separated),
#: set by the launcher from :func:`model_path`.
ENV_MODEL_PATH = "HYBRIDNB_MODEL_PATH"

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


def model_path(spec_file: str | os.PathLike[str] | None = None) -> list[str]:
    """The directories searched first for a ``"module:function"`` factory, in order.

    1. the directory of the spec file, when the spec came from one (a model module kept
       next to its spec);
    2. the working directory (what ``python -m`` and a notebook kernel put first);

    then the rest of ``sys.path``. The launcher computes this list once and gives it to
    the check and, through ``$HYBRIDNB_MODEL_PATH``, to every rank.

    >>> model_path() == [os.getcwd()]
    True
    >>> model_path("/specs/digits.yaml")[0]
    '/specs'
    """
    dirs = [] if spec_file is None else [str(Path(spec_file).expanduser().resolve().parent)]
    cwd = os.getcwd()
    return dirs if cwd in dirs else [*dirs, cwd]


def env_model_path() -> list[str]:
    """The directories the launcher handed to this rank (``$HYBRIDNB_MODEL_PATH``)."""
    value = os.environ.get(ENV_MODEL_PATH, "")
    return [d for d in value.split(os.pathsep) if d]


@contextmanager
def on_path(dirs: Sequence[str]) -> Iterator[None]:
    """``dirs`` in front of ``sys.path`` while the block runs, in that order."""
    if not dirs:
        yield
        return
    added = list(dirs)
    sys.path[:0] = added
    importlib.invalidate_caches()  # a module written after a directory was last listed
    try:
        yield
    finally:
        for d in added:
            try:
                sys.path.remove(d)
            except ValueError:
                pass


def resolve_factory(factory: str, path: Sequence[str] | None = None) -> Callable[..., Any]:
    """The callable behind a registered name or ``"module:function"``; a clear error if not.

    ``path`` lists the directories searched before ``sys.path`` (:func:`model_path`);
    ``None`` uses those the launcher gave this process (``$HYBRIDNB_MODEL_PATH``).

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
                         "module next to the spec or in the working directory")
    dirs = list(path) if path is not None else env_model_path()
    try:
        with on_path(dirs):
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise UsageError(_not_found(factory, module_name, dirs)) from None
        raise UsageError(f"the module of model factory {factory!r} was found but its own "
                         f"import failed: {exc}; install what it imports") from None
    except Exception as exc:  # the user's module raised while importing
        raise UsageError(f"importing the module of model factory {factory!r} failed: "
                         f"{type(exc).__name__}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UsageError(f"model factory {factory!r}: module {module_name!r} has no callable "
                         f"{attr!r}{did_you_mean(attr, dir(module))}")
    return fn


def _not_found(factory: str, module_name: str, dirs: Sequence[str]) -> str:
    top = module_name.split(".")[0]
    file = f"{top}.py" if top == module_name else f"the package {top}/"
    where = (f"looked in {', then '.join(dirs)}, then on the Python path (sys.path)" if dirs
             else "looked on the Python path (sys.path)")
    return (f"cannot import the model factory {factory!r}: no module named "
            f"{module_name!r}; {where}. Put {file} next to the spec file or in the "
            f"working directory, add its directory to PYTHONPATH "
            f"(export PYTHONPATH=/path/to/dir), or install its package (pip install -e .)")


def build_model(factory: str, kwargs: dict[str, Any] | None = None, *,
                path: Sequence[str] | None = None) -> nn.Module:
    """Call the factory and check that it returned an ``nn.Module``.

    ``path``: where to look for its module first, as for :func:`resolve_factory`.
    """
    from torch import nn

    try:
        model = resolve_factory(factory, path)(**(kwargs or {}))
    except TypeError as exc:
        raise UsageError(f"model factory {factory!r} rejected its arguments "
                         f"{kwargs or {}}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise UsageError(f"model factory {factory!r} returned {type(model).__name__}, "
                         "not a torch.nn.Module")
    return model

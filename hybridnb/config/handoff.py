"""Hand the explicit config layers of this process to the processes it starts.

``hybridnb --config team.yaml --set sites.local.capacity.cpu=4 run nb.ipynb`` loads its
configuration from those arguments, but the notebook's kernel is another process that
calls :func:`hybridnb.load_config` itself and sees only files and ``$HYBRIDNB_CONFIG``.
:func:`config_for_children` merges the layers above the project file — the current
``$HYBRIDNB_CONFIG``, the ``--config`` files, the ``--set`` values, in that order — into
one private temporary YAML file and points ``$HYBRIDNB_CONFIG`` at it while the children
run, so they resolve the same configuration as the command did.

>>> import os
>>> with config_for_children([], {"sites.local.capacity.cpu": 3}) as path:
...     os.environ["HYBRIDNB_CONFIG"] == str(path)
True
>>> with config_for_children([], {}) as path:   # nothing explicit: nothing to hand over
...     path is None
True
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .layers import ARGUMENTS, merge, read_layers

ENV = "HYBRIDNB_CONFIG"


@contextmanager
def config_for_children(files: Iterable[str | Path], overrides: Mapping[str, Any]
                        ) -> Iterator[Path | None]:
    """Set ``$HYBRIDNB_CONFIG`` to the merged explicit layers for the ``with`` block.

    Yields the file's path (``None`` when there are no explicit layers, and then changes
    nothing). The file is readable by this user only and removed afterwards; the previous
    ``$HYBRIDNB_CONFIG`` is restored.
    """
    files = [str(f) for f in files]
    if not files and not overrides:
        yield None
        return
    import yaml

    explicit = {ARGUMENTS, *files}
    layers = [layer for layer in read_layers(files, overrides)
              if layer.label in explicit or layer.label.startswith(f"${ENV} (")]
    data, _ = merge(layers)
    tmp = Path(tempfile.mkdtemp(prefix="hybridnb-config-"))  # 0700
    path = tmp / "hybridnb.yaml"
    previous = os.environ.get(ENV)
    try:
        path.write_text("# explicit layers handed to child processes by hybridnb\n"
                        + yaml.safe_dump(data, sort_keys=False))
        path.chmod(0o600)
        os.environ[ENV] = str(path)
        yield path
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
        shutil.rmtree(tmp, ignore_errors=True)

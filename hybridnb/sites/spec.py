"""Start a ``distributed.SpecCluster`` from specs that may run on other hosts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import OperationError

if TYPE_CHECKING:
    from distributed import SpecCluster
    from distributed.security import Security


def start_spec_cluster(name: str, scheduler: dict[str, Any], workers: dict[str, dict[str, Any]],
                       security: Security | None) -> SpecCluster:
    """A running ``SpecCluster``; remote processes inherit the TLS settings by file path.

    A failed start closes whatever did start (SSH processes included) before raising.
    """
    import logging

    import dask
    from distributed import SpecCluster

    from . import security as tls

    settings = tls.dask_config(security) if security is not None else {}
    # distributed's SSH launcher waits for the remote "Scheduler at:" INFO line; a quieter
    # inherited logging config would leave it waiting forever.
    settings["logging.distributed"] = "info"
    template = next(iter(workers.values()), None)
    try:
        # SSH processes start with this process's dask config (DASK_INTERNAL_INHERIT_CONFIG):
        # TLS file paths travel that way; keys never do.
        with dask.config.set(settings):
            return SpecCluster(workers=workers, scheduler=scheduler, worker=template,
                               security=security, name=name,
                               silence_logs=logging.WARN)  # no INFO flood in notebooks
    except Exception as exc:
        raise OperationError(f"cluster {name!r} failed to start: {exc}") from exc

"""Options of the ``gateway`` backend: Dask clusters from a team's dask-gateway.

::

    sites:
      shared-dask:
        backend: gateway
        gateway:
          address: http://127.0.0.1:8000/services/dask-gateway   # through the hub's proxy
          auth: jupyterhub          # the server's JupyterHub token ($JUPYTERHUB_API_TOKEN)
          cores: 2                  # per worker (the gateway's worker_cores option)
          memory: 4GiB              # per worker (worker_memory, in GiB as dask-gateway has it)
          workers: 2                # to start with
        capacity: {cpu: 128, memory: 512GiB}

Limits come from the team's quotas (``teams.groups.G.per_user.workers`` and ``cpus``):
a scale past them is capped, with a warning.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .units import parse_bytes


class GatewayOptions(BaseModel):
    """Options of the ``gateway`` backend (``dask_gateway.GatewayCluster``)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    address: str = Field(pattern=r"^https?://.+",
                         description="The gateway's URL, e.g. http://HUB/services/dask-gateway")
    proxy_address: str | None = Field(
        None, description="Its scheduler proxy (gateway://host:port); default: the "
        "gateway's own answer")
    public_address: str | None = Field(None, description="The gateway as browsers reach it")
    auth: Literal["jupyterhub", "kerberos", "basic"] = Field(
        "jupyterhub", description="How to authenticate to the gateway")
    cores: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Cores per worker (the gateway's worker_cores option)")
    memory: Annotated[int, BeforeValidator(parse_bytes), Field(gt=0)] | None = Field(
        None, description="Memory per worker (worker_memory), e.g. 4GiB")
    workers: Annotated[int, Field(ge=0)] | None = Field(None, description="Workers to start")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="More cluster options the gateway declares")
    timeout: Annotated[float, Field(gt=0)] = Field(
        120.0, description="Seconds for the gateway to start a cluster")

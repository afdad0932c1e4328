"""How workers say where they are: Dask worker resources named after sites and data.

Every worker hybridnb starts carries, as abstract Dask resources:

- ``site-<name>``: the site it runs on;
- ``data-<classification>``: one per data classification its site may hold.

A task restricted to ``{"data-pii": 1}`` can then run only on workers of sites allowed
to hold ``pii`` — the scheduler enforces it — and a task needing several classifications
asks for all of them at once (a worker must allow every one). Workers started by others
(the ``scheduler`` backend) must be started with the same resources;
``hybridnb worker`` does that.

These are plain names, below every layer that uses them: the configuration's sites, the
cluster backends and the Kubernetes builders (which know nothing of the configuration).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol


class _Site(Protocol):
    """What :func:`worker_resources` reads of a site (:class:`hybridnb.config.Site`)."""

    name: str
    classifications: list[str]

#: Units of each tag resource a worker gets: large enough never to limit concurrency,
#: which stays bounded by the worker's threads.
UNITS = 1_000_000


def site_resource(site: str) -> str:
    """The resource naming a site.

    >>> site_resource("onprem")
    'site-onprem'
    """
    return f"site-{site}"


def data_resource(classification: str) -> str:
    """The resource naming a data classification a worker may hold.

    >>> data_resource("pii")
    'data-pii'
    """
    return f"data-{classification}"


def worker_resources(site: _Site) -> dict[str, float]:
    """The resources every worker of ``site`` carries.

    >>> from hybridnb.config import load_config
    >>> sorted(worker_resources(load_config().site("local")))[:2]
    ['data-confidential', 'data-internal']
    """
    tags = {site_resource(site.name): float(UNITS)}
    tags.update({data_resource(c): float(UNITS) for c in site.classifications})
    return tags


def resources_arg(resources: Mapping[str, float]) -> str:
    """The ``dask worker --resources`` argument for ``resources``.

    >>> resources_arg({"site-a": 1e6, "data-pii": 1e6})
    'site-a=1000000 data-pii=1000000'
    """
    return " ".join(f"{k}={int(v) if float(v).is_integer() else v}"
                    for k, v in resources.items())


def requirements(classifications: Iterable[str]) -> dict[str, float]:
    """Task resource restrictions that admit only workers allowed every classification."""
    return {data_resource(c): 1 for c in sorted(set(classifications))}


def site_of(resources: Mapping[str, float]) -> str | None:
    """The site a worker's resources name, if any."""
    for key in resources:
        if key.startswith("site-"):
            return key[len("site-"):]
    return None

"""Names of hybridnb's container images: the one place their defaults live.

Three images (``environments/images/<kind>/Containerfile``), each in a CPU and a CUDA
variant, named ``REGISTRY/KIND:TAG``: the tag is the package version, with ``-cuda`` for
the CUDA variant (``ghcr.io/hybridnb/worker:0.1.0``, ``ghcr.io/hybridnb/worker:0.1.0-cuda``).
``hybridnb images build`` tags what it builds so, and the manifests hybridnb renders
(DaskCluster, PyTorchJob, notebook Jobs, endpoint Deployments) default to the same names.
The configuration's ``images`` block moves them to another registry or tag::

    images:
      registry: registry.example.com/ml   # then: registry.example.com/ml/worker:0.1.0
      tag: 0.1.0-team1                    # optional; default: the package version

A site's ``kubernetes.image`` still overrides the worker image for that site.

Pure: no I/O, imports nothing but the version, so the configuration models can use it.

>>> default_image("worker")  # doctest: +ELLIPSIS
'ghcr.io/hybridnb/worker:...'
>>> default_image("serve", variant="cuda", registry="registry.local:5000/ml", tag="1.2")
'registry.local:5000/ml/serve:1.2-cuda'
"""

from __future__ import annotations

import re

from .._version import __version__

#: The images hybridnb ships, by the name of their directory under environments/images/.
KINDS = ("notebook", "worker", "serve")
#: What each image is for (labels, ``images list``).
DESCRIPTIONS = {
    "notebook": "JupyterHub single-user server: JupyterLab, hybridnb and its extensions",
    "worker": "Dask worker, torch and hybridnb: DaskCluster, PyTorchJob and notebook Jobs",
    "serve": "hybridnb serve: a model bundle over the Open Inference Protocol (slim)",
}
#: torch builds: the CPU wheel, or PyPI's default Linux wheel (the CUDA build).
VARIANTS = ("cpu", "cuda")
#: Where the images are published unless the configuration's ``images.registry`` says else.
DEFAULT_REGISTRY = "ghcr.io/hybridnb"

# The reference grammar of the distribution spec, less digests: lower-case path components
# separated by '/', the first one possibly a host with a port.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REGISTRY_PATTERN = rf"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*$"
TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
_REGISTRY = re.compile(REGISTRY_PATTERN)
_TAG = re.compile(TAG_PATTERN)


def image_tag(variant: str = "cpu", *, tag: str | None = None) -> str:
    """The tag of an image: ``tag`` (default: the package version), ``-cuda`` for CUDA.

    >>> image_tag("cuda", tag="2.0")
    '2.0-cuda'
    """
    from ..errors import UsageError

    if variant not in VARIANTS:
        raise UsageError(f"unknown image variant {variant!r}; choose one of "
                         f"{', '.join(VARIANTS)}")
    base = tag if tag is not None else __version__.replace("+", "-")
    if not _TAG.match(base):
        raise UsageError(f"invalid image tag {base!r}: at most 128 letters, digits, '_', "
                         "'.' and '-', not starting with '.' or '-'")
    return base if variant == "cpu" else f"{base}-cuda"


def default_image(kind: str, *, variant: str = "cpu", registry: str | None = None,
                  tag: str | None = None) -> str:
    """The default reference of hybridnb's ``kind`` image (``notebook``, ``worker``, ``serve``).

    Parameters
    ----------
    kind:
        One of :data:`KINDS`.
    variant:
        ``cpu`` or ``cuda`` (the CUDA build of torch).
    registry:
        Where the image lives (``images.registry``); default :data:`DEFAULT_REGISTRY`.
    tag:
        The tag (``images.tag``); default: the package version.

    Raises
    ------
    UsageError
        An unknown kind or variant, or a registry or tag that no builder would accept.

    Examples
    --------
    >>> default_image("notebook", registry="localhost/hybridnb", tag="dev")
    'localhost/hybridnb/notebook:dev'
    >>> default_image("tpu")
    Traceback (most recent call last):
    ...
    hybridnb.errors.UsageError: unknown image 'tpu'; choose one of notebook, worker, serve
    """
    from ..errors import UsageError, did_you_mean

    if kind not in KINDS:
        raise UsageError(f"unknown image {kind!r}{did_you_mean(kind, KINDS)}; choose one of "
                         f"{', '.join(KINDS)}")
    registry = DEFAULT_REGISTRY if registry is None else registry.rstrip("/")
    if not _REGISTRY.match(registry):
        raise UsageError(f"invalid image registry {registry!r}: a host (optionally with "
                         "a port) and lower-case path components, e.g. "
                         "'registry.example.com/ml'")
    return f"{registry}/{kind}:{image_tag(variant, tag=tag)}"

"""hybridnb's container images: their names, and building them with what the machine has.

- :mod:`hybridnb.config.images` (pure): ``REGISTRY/KIND:TAG``, the defaults that rendered
  manifests use (:func:`default_image`).
- :mod:`hybridnb.images.builder`: finds docker, podman or buildah and drives it: lists,
  inspects and runs images.
- :mod:`hybridnb.images.build`: builds ``environments/images/<kind>/Containerfile`` from
  a checkout (the hybridnb wheel first).
- :mod:`hybridnb.images.base`: a local Debian base made with ``debootstrap``, for
  machines that cannot pull one.

Importing this package is cheap (PEP 562): the configuration models import the names.

>>> import hybridnb.images
>>> hybridnb.images.KINDS
('notebook', 'worker', 'serve')
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from ..config.images import DEFAULT_REGISTRY, KINDS, VARIANTS, default_image, image_tag

_LAZY = {
    "Builder": "hybridnb.images.builder:Builder",
    "BuildResult": "hybridnb.images.build:BuildResult",
    "ImageInfo": "hybridnb.images.builder:ImageInfo",
    "find_builder": "hybridnb.images.builder:find_builder",
    "build_image": "hybridnb.images.build:build_image",
    "list_images": "hybridnb.images.builder:list_images",
    "wheel_extensions": "hybridnb.images.build:wheel_extensions",
    "make_base": "hybridnb.images.base:make_base",
}

__all__ = ["DEFAULT_REGISTRY", "KINDS", "VARIANTS", "default_image", "image_tag", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from .base import make_base
    from .build import BuildResult, build_image, wheel_extensions
    from .builder import Builder, ImageInfo, find_builder, list_images

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, extra=__all__)

"""The labels every object hybridnb creates carries, and their one prefix.

hybridnb's own label and annotation keys all start with :data:`PREFIX` (``hybridnb.io/``),
next to the recommended ``app.kubernetes.io/`` ones; :func:`standard_labels` builds the
set every builder starts from, and :func:`label_key` spells a key of ours.

>>> standard_labels("gke")
{'app.kubernetes.io/managed-by': 'hybridnb', 'hybridnb.io/site': 'gke'}
>>> label_key("run")
'hybridnb.io/run'
"""

from __future__ import annotations

from collections.abc import Mapping

#: The prefix of every label and annotation key hybridnb defines.
PREFIX = "hybridnb.io/"
#: Kubernetes' recommended labels hybridnb sets (``app.kubernetes.io/...``).
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
#: The component of an endpoint's objects (``COMPONENT_LABEL``): what Prometheus selects.
ENDPOINT_COMPONENT = "endpoint"


def label_key(name: str) -> str:
    """hybridnb's label (or annotation) key ``name``, under :data:`PREFIX`."""
    return PREFIX + name


#: Every object hybridnb creates carries this label, so ``hybridnb gc`` and people can
#: find them (``kubectl get all -l app.kubernetes.io/managed-by=hybridnb``).
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "hybridnb"
#: The hybridnb site an object belongs to.
SITE_LABEL = label_key("site")


def standard_labels(site: str | None = None,
                    extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The labels every hybridnb object carries, plus ``extra``.

    Parameters
    ----------
    site:
        Name of the hybridnb site the object belongs to, if any.
    extra:
        More labels; they win over the standard ones.

    Examples
    --------
    >>> standard_labels(extra={"app.kubernetes.io/name": "digits"})
    {'app.kubernetes.io/managed-by': 'hybridnb', 'app.kubernetes.io/name': 'digits'}
    """
    labels = {MANAGED_BY_LABEL: MANAGED_BY}
    if site is not None:
        labels[SITE_LABEL] = site
    labels.update(extra or {})
    return labels

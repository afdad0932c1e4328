"""JupyterLab panels: operate sites, clusters, preprocessing, training, endpoints and
monitoring from widgets, and get the equivalent code back.

Every panel stands alone (``ClusterPanel()``) and :func:`ui` shows them all in tabs.
Under papermill, or wherever no frontend draws widgets (:func:`headless`), a panel
displays a static HTML summary instead. Importing this package loads nothing heavy;
ipywidgets loads when a panel is first used.

>>> import hybridnb.widgets as hw
>>> sorted(hw.__all__)[:3]
['ClusterPanel', 'EndpointPanel', 'MonitorPanel']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_LAZY = {
    "headless": "hybridnb.widgets.base:headless",
    "Panel": "hybridnb.widgets.base:Panel",
    "SitesPanel": "hybridnb.widgets.sites:SitesPanel",
    "ClusterPanel": "hybridnb.widgets.cluster:ClusterPanel",
    "PreprocessPanel": "hybridnb.widgets.preprocess:PreprocessPanel",
    "TrainPanel": "hybridnb.widgets.train:TrainPanel",
    "EndpointPanel": "hybridnb.widgets.endpoint:EndpointPanel",
    "MonitorPanel": "hybridnb.widgets.monitor:MonitorPanel",
    "ui": "hybridnb.widgets.tabs:ui",
    "UI": "hybridnb.widgets.tabs:UI",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .base import Panel, headless
    from .cluster import ClusterPanel
    from .endpoint import EndpointPanel
    from .monitor import MonitorPanel
    from .preprocess import PreprocessPanel
    from .sites import SitesPanel
    from .tabs import UI, ui
    from .train import TrainPanel

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)

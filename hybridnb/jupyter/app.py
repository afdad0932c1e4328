"""The extension app: its settings (traitlets), its state, and its routes.

Configure it like any Jupyter app, e.g. in ``jupyter_server_config.py``::

    c.HybridnbApp.prometheus_url = "http://127.0.0.1:9090"   # else the embedded store
    c.HybridnbApp.alert_rules = "/etc/hybridnb/rules.yaml"  # else the built-in rules
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Float, Unicode


class HybridnbApp(ExtensionApp):
    """hybridnb's Jupyter server extension (routes under ``{base_url}hybridnb/``)."""

    name = "hybridnb"
    load_other_extensions = True

    prometheus_url = Unicode(
        "", config=True, help="Prometheus to query for metrics and alerts' data; empty: "
        "hybridnb's embedded metrics store ($HYBRIDNB_HOME/metrics.db)")
    alert_rules = Unicode("", config=True, help="YAML file of alert rules; empty: the "
                          "built-in rules (hybridnb.monitor.default_rules)")
    config_ttl = Float(5.0, config=True, help="Seconds the hybridnb configuration is "
                       "reused before it is read again (edits apply within this time)")
    alerts_ttl = Float(10.0, config=True, help="Seconds alert states are reused (the "
                       "status bar and the sidebar ask often)")

    def initialize_settings(self) -> None:
        self._lock = threading.Lock()
        self._store: Any = None
        self._config: tuple[float, Any] | None = None
        self._alerts: tuple[float, list[Any]] | None = None
        self.settings["hybridnb"] = self

    def initialize_handlers(self) -> None:
        from .handlers import routes

        self.handlers.extend(routes())  # ExtensionApp puts base_url in front

    # -- what handlers share ---------------------------------------------------------

    @property
    def store(self) -> Any:
        """The state store (``$HYBRIDNB_HOME/state.db``), opened on first use."""
        with self._lock:
            if self._store is None:
                from ..state import StateStore

                self._store = StateStore()
            return self._store

    def hybridnb_config(self) -> Any:
        """The hybridnb configuration, read again after ``config_ttl`` seconds."""
        from ..config import load_config

        now = time.monotonic()
        with self._lock:
            if self._config is not None and now - self._config[0] < self.config_ttl:
                return self._config[1]
        config = load_config()
        with self._lock:
            self._config = (now, config)
        return config

    def monitor(self) -> Any:
        from ..monitor.query import Monitor

        if self.prometheus_url:
            return Monitor("prometheus", url=self.prometheus_url, timeout=5.0)
        return Monitor()

    def rules(self) -> list[Any]:
        from ..monitor.alerts import default_rules, load_rules

        return load_rules(Path(self.alert_rules)) if self.alert_rules else default_rules()

    def alerts(self) -> list[Any]:
        """Alert states, reused for ``alerts_ttl`` seconds."""
        from . import resources

        now = time.monotonic()
        with self._lock:
            if self._alerts is not None and now - self._alerts[0] < self.alerts_ttl:
                return self._alerts[1]
        found = resources.alerts(self.rules())
        with self._lock:
            self._alerts = (now, found)
        return found

    def notebook_path(self, relative: str) -> Path:
        """A notebook path of a request, inside the server's root directory (or a 4xx)."""
        from ..errors import FieldError

        if not relative:
            raise FieldError("give the notebook's path (relative to the server's root)",
                             field="notebook")
        root = Path(self.serverapp.root_dir if self.serverapp is not None else ".").resolve()
        if Path(relative).is_absolute():
            raise FieldError(f"{relative!r}: give a path relative to the server's root",
                             field="notebook")
        path = (root / relative).resolve()
        if path != root and root not in path.parents:
            raise FieldError(f"{relative!r} is outside the server's root directory",
                             field="notebook")
        if not path.is_file():
            raise FieldError(f"notebook not found: {relative}", field="notebook",
                             reason="not_found")
        return path

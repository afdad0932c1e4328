"""What every panel shares: validated forms, background actions, code views, headless mode.

A panel is one small subclass of :class:`Panel`. It declares its form fields, its action
buttons, how the form becomes Python code, and how its state reads as static HTML. In
return it gets, for free:

- validation on every change, with the problem shown in red next to the field and the
  action buttons disabled until it is fixed (:class:`Field`, :class:`Form`);
- actions that run in a background thread, one at a time, with the buttons disabled
  while they run and a failure shown in the panel instead of a traceback
  (:class:`ActionRunner`);
- a code view with the generated Python, its papermill parameters as YAML, a copy box
  and an "Insert cell" button (:class:`CodeView`);
- a static HTML summary instead of live widgets when nothing can draw them
  (:func:`headless`);
- the panels' look: styled tables (headers, borders, numbers aligned right), disabled
  buttons that look disabled (:data:`PANEL_CSS`), and :func:`html_table` to make them;
- :class:`Offers`, what panels hand each other: the Preprocess panel's output is offered
  to the Train panel as data, the Train panel's bundle to the Endpoint panel.

>>> f = Field("cpu", text("cpu", "2"), positive_float)
>>> f.parse(), f.error
(2.0, '')
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from html import escape
from typing import Any

import ipywidgets as w
import yaml

from ..errors import HybridnbError, UsageError

logger = logging.getLogger(__name__)

#: Colour of validation messages and failed actions.
RED = "#c62828"

#: Styles of every panel (scoped to ``.hybridnb-panel``): tables with headers, borders and
#: right-aligned numbers; captions that wrap; disabled buttons greyed and inert-looking.
PANEL_CSS = """<style>
.hybridnb-panel table { border-collapse: collapse; margin: 4px 0 10px 0;
  font-size: var(--jp-ui-font-size1, 13px); }
.hybridnb-panel caption { caption-side: top; text-align: left; font-weight: 600;
  padding: 2px 0 4px 0; white-space: normal; }
.hybridnb-panel th, .hybridnb-panel td { border: 1px solid var(--jp-border-color2, #ddd);
  padding: 2px 8px; text-align: left; vertical-align: top; white-space: nowrap; }
.hybridnb-panel th { background: var(--jp-layout-color2, #f2f2f2); font-weight: 600; }
.hybridnb-panel td.num, .hybridnb-panel th.num { text-align: right;
  font-variant-numeric: tabular-nums; }
.hybridnb-panel .hybridnb-muted { color: var(--jp-ui-font-color2, #777); }
.hybridnb-panel h4 { margin: 10px 0 2px 0; font-size: var(--jp-ui-font-size1, 13px); }
.hybridnb-panel button:disabled, .hybridnb-panel .jupyter-button:disabled {
  opacity: 0.35 !important; filter: grayscale(100%); cursor: not-allowed;
  box-shadow: none !important; }
</style>"""


def html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *,
               numeric: Iterable[int] = (), caption: str = "", css: str = "") -> str:
    """An escaped HTML table; columns in ``numeric`` are right-aligned.

    >>> html_table(["worker", "threads"], [["tcp://a", 2]], numeric=[1])[-70:]
    '<tbody><tr><td>tcp://a</td><td class="num">2</td></tr></tbody></table>'
    """
    nums = set(numeric)

    def cls(i: int) -> str:
        return ' class="num"' if i in nums else ""

    head = "".join(f"<th{cls(i)}>{escape(str(h))}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{_cell(v)}</td>" for i, v in enumerate(row))
                   + "</tr>" for row in rows)
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    klass = f' class="{escape(css)}"' if css else ""
    return f"<table{klass}>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_NUMBER_CELL = re.compile(r"<td>(\s*[-+$]?[\d,]*\.?\d+\s*(?:%|ms|s|h|[KMGT]i?B)?\s*)</td>")


def align_numbers(html: str) -> str:
    """Right-align the numeric cells of a table made elsewhere (a plan, a pipeline run).

    >>> align_numbers("<tr><td>split</td><td>1797</td><td>$0.00</td></tr>")
    '<tr><td>split</td><td class="num">1797</td><td class="num">$0.00</td></tr>'
    """
    return _NUMBER_CELL.sub(r'<td class="num">\1</td>', html)


class Markup(str):
    """Text already made safe for HTML (a link, say): :func:`html_table` keeps it."""


def _cell(value: Any) -> str:
    return str(value) if isinstance(value, Markup) else escape(str(value))


def link(url: str, text: str | None = None) -> Markup:
    """A link that opens in a new tab, for table cells."""
    return Markup(f'<a href="{escape(url)}" target="_blank">{escape(text or url)}</a>')


class Offers:
    """What panels hand each other, by kind: ``data`` (prepared datasets, from the
    Preprocess panel) and ``bundle`` (model bundles, from the Train panel).

    Panels of one kernel share :data:`OFFERS` unless given their own.

    >>> o = Offers(); seen = []
    >>> o.on_change(lambda: seen.append(1))
    >>> o.offer("bundle", "/tmp/run/bundle", "digits-cnn, test accuracy 98.1 %")
    >>> o.items("bundle"), seen
    ([('digits-cnn, test accuracy 98.1 %', '/tmp/run/bundle')], [1])
    """

    def __init__(self) -> None:
        self._items: dict[str, dict[str, str]] = {}
        self._listeners: list[Callable[[], None]] = []

    def offer(self, kind: str, path: str | os.PathLike[str], label: str) -> None:
        items = self._items.setdefault(kind, {})
        items.pop(str(path), None)
        items[str(path)] = label  # newest last
        for callback in list(self._listeners):
            callback()

    def items(self, kind: str) -> list[tuple[str, str]]:
        """``(label, path)`` pairs, newest first."""
        return [(label, path) for path, label in reversed(self._items.get(kind, {}).items())]

    def on_change(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def off(self, callback: Callable[[], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)


#: The offers shared by the panels of this kernel.
OFFERS = Offers()


def headless() -> bool:
    """True when nothing can draw live widgets, so panels show static HTML.

    ``HYBRIDNB_HEADLESS=1`` forces it on and ``=0`` off. Otherwise it is on outside an
    IPython kernel, and inside one whose current request does not accept input:
    papermill, nbclient and nbconvert execute with ``allow_stdin=False`` (they cannot
    answer a prompt) while JupyterLab, Notebook and VS Code offer stdin. That is the one
    signal a kernel gets of who is on the other end; papermill sets no variable.

    >>> import os
    >>> os.environ["HYBRIDNB_HEADLESS"] = "1"; headless()
    True
    >>> del os.environ["HYBRIDNB_HEADLESS"]
    """
    forced = os.environ.get("HYBRIDNB_HEADLESS", "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipywidgets depends on IPython
        return True
    kernel = getattr(get_ipython(), "kernel", None)
    if kernel is None:
        return True
    return not bool(getattr(kernel, "_allow_stdin", False))


# -- fields and validation ----------------------------------------------------------------

def text(description: str, value: str = "", *, width: str = "22em", **kwargs: Any) -> w.Text:
    """A text box with the label width every panel uses (wider for paths)."""
    return w.Text(value=value, description=description, style={"description_width": "9em"},
                  layout=w.Layout(width=width), **kwargs)


def dropdown(description: str, options: Sequence[Any], value: Any = None) -> w.Dropdown:
    """A drop-down with the shared label width."""
    return w.Dropdown(options=list(options), value=value if value is not None else
                      (options[0] if options else None), description=description,
                      style={"description_width": "9em"}, layout=w.Layout(width="22em"))


def _number(value: Any, cast: Callable[[str], Any], what: str) -> Any:
    try:
        return cast(str(value).strip())
    except (TypeError, ValueError):
        raise UsageError(f"not {what}: {value!r}") from None


def positive_float(value: Any) -> float:
    """A number > 0.

    >>> positive_float("1.5")
    1.5
    """
    x = float(_number(value, float, "a number"))
    if not x > 0:
        raise UsageError(f"must be > 0, got {value}")
    return x


def nonnegative_float(value: Any) -> float:
    """A number >= 0."""
    x = float(_number(value, float, "a number"))
    if not x >= 0:
        raise UsageError(f"must be >= 0, got {value}")
    return x


def count(minimum: int = 0) -> Callable[[Any], int]:
    """A parser for whole numbers >= ``minimum``.

    >>> count(1)("3")
    3
    """
    def parse(value: Any) -> int:
        x = _number(value, int, "a whole number")
        if x < minimum:
            raise UsageError(f"must be >= {minimum}, got {x}")
        return int(x)
    return parse


def size(value: Any) -> int:
    """Bytes from ``"4GiB"``, ``"512MB"`` or a number."""
    from ..config.units import parse_bytes

    try:
        return int(parse_bytes(str(value).strip() or "0"))
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def identity(value: Any) -> Any:
    return value


class Field:
    """A form widget, how to read it, and the red label that says what is wrong with it.

    ``parse`` turns the widget's value into what the action needs, raising
    :class:`~hybridnb.errors.UsageError` (or ``ValueError``) when it cannot.
    """

    def __init__(self, name: str, widget: w.ValueWidget, parse: Callable[[Any], Any] = identity):
        self.name = name
        self.widget = widget
        self._parse = parse
        self.message = w.HTML(layout=w.Layout(margin="0 0 0 1em"))
        self.box = w.HBox([widget, self.message])
        self.error = ""

    def parse(self) -> Any:
        """The parsed value; sets :attr:`error` (and the red label) when invalid."""
        try:
            value = self._parse(self.widget.value)
        except (UsageError, ValueError) as exc:
            self.show(str(exc))
            return None
        self.show("")
        return value

    def show(self, error: str) -> None:
        self.error = error
        self.message.value = (f'<span class="hybridnb-invalid" style="color: {RED}">'
                              f"{escape(error)}</span>" if error else "")


class Form:
    """Fields validated together on every change; ``check`` adds cross-field rules."""

    def __init__(self, fields: Iterable[Field],
                 check: Callable[[dict[str, Any]], dict[str, str]] | None = None):
        self.fields = {f.name: f for f in fields}
        self._check = check
        self._listeners: list[Callable[[], None]] = []
        self.values: dict[str, Any] = {}
        self.valid = False
        for f in self.fields.values():
            f.widget.observe(lambda _change: self.validate(), names="value")
        self.validate()

    def __getitem__(self, name: str) -> Field:
        return self.fields[name]

    def on_change(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def validate(self) -> bool:
        """Parse every field, show problems next to them, and tell the listeners."""
        values = {name: f.parse() for name, f in self.fields.items()}
        valid = not any(f.error for f in self.fields.values())
        if valid and self._check is not None:
            for name, message in self._check(values).items():
                self.fields[name].show(message)
                valid = False
        self.values, self.valid = values, valid
        for callback in self._listeners:
            callback()
        return valid

    @property
    def errors(self) -> dict[str, str]:
        return {n: f.error for n, f in self.fields.items() if f.error}


# -- background actions ---------------------------------------------------------------------

class ActionRunner:
    """Runs one action at a time in a daemon thread and reports how it ended.

    While an action runs :attr:`busy` is true (panels disable their buttons); when it
    fails, a :class:`~hybridnb.errors.HybridnbError` shows its own message, anything else
    its type and message, and the traceback goes to the log, never to the cell.
    """

    def __init__(self, on_state: Callable[[], None], show_error: Callable[[str], None],
                 show_status: Callable[[str], None]):
        self._on_state = on_state
        self._show_error = show_error
        self._show_status = show_status
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.busy = False
        self.last_error: str | None = None

    def run(self, name: str, action: Callable[[], Any]) -> bool:
        """Start ``action`` unless another one runs; returns whether it started."""
        with self._lock:
            if self.busy:
                return False
            self.busy = True
        self.last_error = None
        self._show_error("")
        self._show_status(f"{name}…")
        self._on_state()
        self._thread = threading.Thread(target=self._work, args=(name, action), daemon=True,
                                        name=f"hybridnb-widget-{name}")
        self._thread.start()
        return True

    def _work(self, name: str, action: Callable[[], Any]) -> None:
        try:
            action()
        except HybridnbError as exc:
            self._fail(name, str(exc))
        except Exception as exc:  # shown in the panel; the cell must not get a traceback
            logger.exception("widget action %r failed", name)
            self._fail(name, f"{type(exc).__name__}: {exc}")
        finally:
            self.busy = False
            self._on_state()

    def _fail(self, name: str, message: str) -> None:
        self.last_error = message
        self._show_status(f"{name} failed")
        self._show_error(message)

    def wait(self, timeout: float = 120.0) -> None:
        """Block until the running action (if any) has finished (tests, scripts)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"widget action still running after {timeout:g} s")


# -- code view -----------------------------------------------------------------------------

def parameters_yaml(parameters: dict[str, Any]) -> str:
    """Papermill parameters as YAML (``hybridnb run NB -f params.yaml``).

    >>> print(parameters_yaml({"site": "local", "n_workers": 2}), end="")
    site: local
    n_workers: 2
    """
    return yaml.safe_dump(parameters, sort_keys=False, default_flow_style=False)


def parameters_code(parameters: dict[str, Any]) -> str:
    """The parameters as assignments, ready to be a papermill ``parameters`` cell."""
    lines = ["# Parameters (papermill can override these)"]
    lines += [f"{k} = {v!r}" for k, v in parameters.items()]
    return "\n".join(lines)


class CodeView:
    """The generated code and parameters, a copy box, and "Insert cell"."""

    def __init__(self) -> None:
        layout = w.Layout(width="100%", height="12em")
        self.code = w.Textarea(layout=layout, description="")
        self.yaml = w.Textarea(layout=w.Layout(width="100%", height="5em"))
        self.insert = w.Button(description="Insert cell", icon="plus",
                               tooltip="Put this code in a new cell")
        self.note = w.HTML()
        self.insert.on_click(lambda _b: self.insert_cell())
        self.box = w.Accordion(children=[w.VBox([
            self.code, w.HTML("papermill parameters (YAML):"), self.yaml,
            w.HBox([self.insert, self.note])])], titles=("Code",))

    def update(self, code: str, parameters: dict[str, Any]) -> None:
        self.code.value = code
        self.yaml.value = parameters_yaml(parameters)

    def insert_cell(self) -> bool:
        """Put the code in a new cell below the active one (:mod:`hybridnb.widgets.cells`).

        With the hybridnb JupyterLab extension the cell appears at once; without it the
        code is queued with IPython's ``set_next_input`` and appears with the next cell
        you run (a button click is a comm message, not an execution).
        """
        from .cells import insert_cell

        notes = {"inserted": "inserted below the active cell",
                 "queued": "queued: the cell appears with the next cell you run"}

        def show(outcome: str) -> None:
            self.note.value = notes[outcome]

        self.note.value = ""
        if insert_cell(self.code.value, on_result=show) == "unavailable":
            self.note.value = "no IPython here: copy the code from the box above"
            return False
        return True


# -- the panel contract -------------------------------------------------------------------

class Panel:
    """Base of every panel. Subclasses provide:

    - :meth:`_fields` → the form's :class:`Field` list (and optionally :meth:`_check`);
    - :meth:`_buttons` → ``{name: (button, action, needs_valid_form)}``;
    - :meth:`_enabled` → whether a button may be pressed in the current state;
    - :meth:`parameters` and :meth:`code` → the form as papermill parameters and code;
    - :meth:`_body` → widgets shown below the form (tables, plots);
    - :meth:`summary_html` → the static view (headless).

    Display shows live widgets, or the static summary when :func:`headless` says so.
    """

    title = "panel"
    #: Buttons whose action runs at once in the caller, even while an action runs (Stop).
    immediate: frozenset[str] = frozenset()

    def __init__(self, *, config: Any = None, offers: Offers | None = None):
        self._config = config
        self.offers = offers if offers is not None else OFFERS
        self.status = w.HTML(value="<span class='hybridnb-status'>idle</span>")
        self.error = w.HTML()
        self.form = Form(self._fields(), self._check)
        self.runner = ActionRunner(self._sync, self._show_error, self._show_status)
        self.buttons = self._buttons()
        for name, (button, action, _needs_form) in self.buttons.items():
            if name in self.immediate:
                button.on_click(lambda _b, a=action: self._now(a))
            else:
                button.on_click(lambda _b, n=name, a=action: self.runner.run(n, a))
        self.code_view = CodeView()
        self.form.on_change(self._sync)
        self.root = w.VBox([w.HTML(PANEL_CSS + f"<b>{escape(self.title)}</b>"),
                            *[f.box for f in self.form.fields.values()],
                            w.HBox([b for b, _a, _f in self.buttons.values()]),
                            self.status, self.error, *self._body(), self.code_view.box])
        self.root.add_class("hybridnb-panel")
        self._sync()

    @property
    def config(self) -> Any:
        if self._config is None:
            from ..config import load_config

            self._config = load_config()
        return self._config

    # hooks ------------------------------------------------------------------------------
    def _fields(self) -> list[Field]:
        return []

    def _check(self, values: dict[str, Any]) -> dict[str, str]:
        return {}

    def _buttons(self) -> dict[str, tuple[w.Button, Callable[[], Any], bool]]:
        return {}

    def _enabled(self, name: str) -> bool:
        return True

    def _body(self) -> list[w.Widget]:
        return []

    def parameters(self) -> dict[str, Any]:
        return {}

    def code(self) -> str:
        return ""

    def summary_html(self) -> str:
        table = html_table(["parameter", "value"],
                           [[k, "" if v is None else v] for k, v in self.parameters().items()])
        return (f'{PANEL_CSS}<div class="hybridnb-panel"><b>{escape(self.title)}</b> '
                f"({escape(self._status_text())}){table}</div>")

    # shared machinery ---------------------------------------------------------------------
    def _status_text(self) -> str:
        import re

        return re.sub(r"<[^>]+>", "", self.status.value)

    def _now(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except HybridnbError as exc:
            self._show_error(str(exc))

    def _show_error(self, message: str) -> None:
        self.error.value = (f'<pre class="hybridnb-error" style="color: {RED}; '
                            f'white-space: pre-wrap">{escape(message)}</pre>' if message else "")

    def _show_status(self, message: str) -> None:
        self.status.value = f"<span class='hybridnb-status'>{escape(message)}</span>"

    def _sync(self) -> None:
        """Enable the buttons the state allows, and regenerate the code."""
        for name, (button, _action, needs_form) in self.buttons.items():
            button.disabled = (self.runner.busy or (needs_form and not self.form.valid)
                               or not self._enabled(name))
        if self.form.valid:
            self.code_view.update(self.code(), self.parameters())

    def click(self, name: str, timeout: float = 120.0) -> None:
        """Press a button and wait for its action: scripts and tests.

        >>> SitesPanel().click("plan")  # doctest: +SKIP
        """
        button = self.buttons[name][0]
        if button.disabled:
            raise UsageError(f"{name!r} is disabled: {self.form.errors or 'not now'}")
        button.click()
        self.runner.wait(timeout)

    def close(self) -> None:
        """Close the widgets (subclasses first stop what they started)."""
        _close_tree(self.root)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        if headless():
            return {"text/html": self.summary_html(), "text/plain": repr(self)}
        return self.root._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self._status_text()}>"


def show(widget: w.Widget, visible: bool = True) -> None:
    """Show or hide a widget (an empty ``Image`` would draw a broken-image icon)."""
    widget.layout.display = None if visible else "none"


def _close_tree(widget: w.Widget) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()


def figure_png(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes for an ``ipywidgets.Image``; the figure is closed."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()

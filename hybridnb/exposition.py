"""A fast parser of the Prometheus text exposition format: the one hybridnb reads with.

The collector scrapes the same targets every second and their expositions repeat: the
same series in the same order, only the numbers change. :class:`ExpositionParser`
splits each line into its series text (``name{labels}``) and its value, and parses the
series text only the first time it sees it; later scrapes cost a dictionary lookup per
line. prometheus_client's parser, which builds metric families line by line, cost
about twenty times more and dominated the collector's CPU.

What it reads: samples (``name{label="value",...} value [timestamp]``) of the text
format 0.0.4 and of OpenMetrics; ``# HELP``, ``# TYPE``, other comments, blank lines and
``# EOF`` are skipped, label values may hold ``\\\\``, ``\\"`` and ``\\n``, values may be
``+Inf``, ``-Inf`` or ``NaN``, timestamps and exemplars are ignored (the collector
stamps samples with the scrape time, as Prometheus does by default), and UTF-8 names
may be quoted (``{"my.metric", "a.b"="c"}``). Names are kept as exposed: unlike
prometheus_client's family parser it never appends ``_total`` to a counter sample,
which is also what a Prometheus server stores.

>>> parse('# TYPE up gauge\\nup{job="a\\\\"b"} 1\\nx_total 3 1700000000000\\n# EOF\\n')
[('up', {'job': 'a"b'}, 1.0), ('x_total', {}, 3.0)]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable

Labels = dict[str, str]
Sample = tuple[str, Labels, float]
#: A series as the store keys it: the name and the labels sorted by name.
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
_UNSEEN: SeriesKey = ("", ())  # a sentinel, compared by identity


class ExpositionError(ValueError):
    """A line of an exposition is not a valid sample."""


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPES:
            out.append(_ESCAPES[text[i + 1]])
            i += 2
        else:  # an unknown escape stays as written (prometheus_client does the same)
            out.append(ch)
            i += 1
    return "".join(out)


def _quoted(s: str, i: int) -> tuple[str, int]:
    """The quoted string starting at ``s[i] == '"'``, unescaped; index after its quote."""
    j = i + 1
    while True:
        j = s.find('"', j)
        if j < 0:
            raise ExpositionError("a quoted string has no closing quote")
        backslashes = 0
        while s[j - 1 - backslashes] == "\\":
            backslashes += 1
        if backslashes % 2 == 0:
            return _unescape(s[i + 1:j]), j + 1
        j += 1


def _skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t":
        i += 1
    return i


def parse_series(line: str) -> tuple[str, Labels, int]:
    """Parse ``name{labels}`` at the start of ``line``: name, labels, index after it.

    >>> parse_series('http_requests_total{code="200",path="/a b"} 7')
    ('http_requests_total', {'code': '200', 'path': '/a b'}, 43)
    """
    n = len(line)
    i = 0
    while i < n and line[i] not in "{ \t":
        i += 1
    name = line[:i]
    if name and not _METRIC_NAME.match(name):
        raise ExpositionError(f"invalid metric name {name!r}")
    labels: Labels = {}
    i = _skip_ws(line, i)
    if i >= n or line[i] != "{":
        if not name:
            raise ExpositionError("no metric name")
        return name, labels, i
    i = _skip_ws(line, i + 1)
    while True:
        if i >= n:
            raise ExpositionError("labels have no closing '}'")
        if line[i] == "}":
            i += 1
            break
        if line[i] == '"':  # a quoted UTF-8 name: of a label, or of the metric itself
            key, i = _quoted(line, i)
            i = _skip_ws(line, i)
            if i < n and line[i] in ",}":
                if name:
                    raise ExpositionError("the metric name is given twice")
                name = key
                key = ""
        else:
            j = i
            while j < n and line[j] not in "= \t,}":
                j += 1
            key, i = line[i:j], _skip_ws(line, j)
            if not _LABEL_NAME.match(key):
                raise ExpositionError(f"invalid label name {key!r}")
        if key:
            if i >= n or line[i] != "=":
                raise ExpositionError(f"label {key!r} has no '=\"value\"'")
            i = _skip_ws(line, i + 1)
            if i >= n or line[i] != '"':
                raise ExpositionError(f"the value of label {key!r} is not quoted")
            value, i = _quoted(line, i)
            if key in labels:
                raise ExpositionError(f"label {key!r} is given twice")
            labels[key] = value
        i = _skip_ws(line, i)
        if i < n and line[i] == ",":
            i = _skip_ws(line, i + 1)
        elif i < n and line[i] != "}":
            raise ExpositionError(f"expected ',' or '}}' in the labels at column {i + 1}")
    if not name:
        raise ExpositionError("no metric name")
    return name, labels, i


def _value(token: str) -> float:
    # Python's float() also takes "1_000"; the format (Go's ParseFloat) does not.
    if "_" in token:
        raise ExpositionError(f"invalid value {token!r}")
    try:
        return float(token)
    except ValueError:
        raise ExpositionError(f"invalid value {token!r}") from None


class ExpositionParser:
    """Parses expositions of one target, remembering the series it has seen.

    Parameters
    ----------
    labels:
        Labels added to every series (the target's ``job``, ``instance``...); they win
        over an exposed label of the same name, as a scraped ``job`` loses to
        Prometheus' own.
    keep:
        Called once per new metric name; ``False`` drops that name's samples (the
        collector drops prometheus_client's ``*_created`` bookkeeping).
    max_series:
        The memory of series is forgotten past this size (a target that exposes ever
        new label values must not grow it without bound).

    Examples
    --------
    >>> p = ExpositionParser({"job": "demo"})
    >>> p.parse_keyed('a{x="1"} 2\\nb 3')
    [(('a', (('job', 'demo'), ('x', '1'))), 2.0), (('b', (('job', 'demo'),)), 3.0)]
    """

    def __init__(self, labels: Labels | None = None,
                 keep: Callable[[str], bool] | None = None, max_series: int = 100_000):
        self.labels = dict(labels or {})
        self.keep = keep
        self.max_series = max_series
        # series text -> store key, or None for a dropped series
        self._seen: dict[Hashable, SeriesKey | None] = {}

    def _series(self, text: str) -> SeriesKey | None:
        name, labels, end = parse_series(text)
        if end != len(text):
            raise ExpositionError(f"unexpected text {text[end:]!r} after the series")
        if self.keep is not None and not self.keep(name):
            return None
        labels.update(self.labels)
        return name, tuple(sorted(labels.items()))

    def parse_keyed(self, text: str) -> list[tuple[SeriesKey, float]]:
        """``(series key, value)`` of every sample in ``text``; raises
        :class:`ExpositionError` naming the line that is not a valid sample."""
        seen = self._seen
        if len(seen) > self.max_series:
            seen.clear()
        out: list[tuple[SeriesKey, float]] = []
        append = out.append
        for lineno, line in enumerate(text.split("\n"), 1):
            if not line or line[0] == "#":
                continue
            if line[0] in " \t" or line[-1] in " \t\r":
                line = line.strip()
                if not line or line[0] == "#":
                    continue
            # The series text ends at the last '}' (values and timestamps hold none),
            # or, without labels, at the first blank. An exemplar ("... # {...} 1")
            # breaks that guess; the slow path below finds the real end.
            close = line.rfind("}")
            if close >= 0:
                series, rest = line[:close + 1], line[close + 1:]
            else:
                series, _, rest = line.partition(" ")
                if "\t" in series:
                    series, _, tail = series.partition("\t")
                    rest = tail + " " + rest
            tokens = rest.split()
            key = seen.get(series, _UNSEEN)
            try:
                if key is _UNSEEN or not 1 <= len(tokens) <= 2:
                    _, _, end = parse_series(line)
                    series = line[:end].rstrip()
                    tokens = line[end:].split(" #", 1)[0].split()
                    if not 1 <= len(tokens) <= 2:
                        raise ExpositionError("expected a value and an optional timestamp")
                    key = seen.get(series, _UNSEEN)
                    if key is _UNSEEN:
                        key = seen[series] = self._series(series)
                if len(tokens) == 2:
                    _value(tokens[1])  # a timestamp must be a number, though unused
                value = _value(tokens[0])
            except ExpositionError as exc:
                raise ExpositionError(f"line {lineno}: {exc}: {line[:200]!r}") from None
            if key is not None:
                append((key, value))
        return out

    def parse(self, text: str) -> list[Sample]:
        """``(name, labels, value)`` of every sample in ``text``."""
        return [(name, dict(labels), value) for (name, labels), value in
                self.parse_keyed(text)]


def parse(text: str) -> list[Sample]:
    """``(name, labels, value)`` of every sample of an exposition, in order.

    >>> parse('h_bucket{le="+Inf"} 4\\nh_sum NaN\\ng -Inf')
    [('h_bucket', {'le': '+Inf'}, 4.0), ('h_sum', {}, nan), ('g', {}, -inf)]
    """
    return ExpositionParser().parse(text)

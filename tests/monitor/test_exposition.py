"""The fast exposition parser agrees with prometheus_client's on real and random input."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hybridnb.exposition import ExpositionError, ExpositionParser, parse


def reference(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text) for s in family.samples]


def same(ours: list, theirs: list) -> bool:
    """Equal sample lists, NaN equal to NaN."""
    def norm(samples: list) -> list:
        return [(n, sorted(labels.items()), "nan" if math.isnan(v) else v)
                for n, labels, v in samples]
    return norm(ours) == norm(theirs)


def test_endpoint_metrics_exposition():
    from hybridnb.serve.metrics import EndpointMetrics

    m = EndpointMetrics()
    for i in range(50):
        m.observe("/v2/models/{name}/infer", 200 if i % 7 else 503, 0.003 * i)
        m.batch_size.observe(1 + i % 8)
    text = m.render().decode()
    ours = parse(text)
    assert len(ours) > 20 and same(ours, reference(text))
    # A second scrape through the same parser takes the remembered-series path.
    p = ExpositionParser()
    p.parse(text)
    assert same(p.parse(text), reference(text))


def test_dask_scheduler_and_worker_expositions():
    from distributed import LocalCluster

    from hybridnb.monitor.scrape import http_get
    from hybridnb.monitor.targets import dask_workers, metrics_url

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      protocol="tcp://", host="127.0.0.1", dashboard_address="127.0.0.1:0",
                      worker_dashboard_address="127.0.0.1:0") as cluster:
        urls = [metrics_url(cluster.dashboard_link)]
        urls += [t.url for t in dask_workers(cluster.dashboard_link, "c")]
        assert len(urls) == 2
        for url in urls:
            text = http_get(str(url), 5).decode()
            ours = parse(text)
            assert any(n.startswith("dask_") for n, _, _ in ours)
            # prometheus_client munges counters that lack "_total"; Prometheus does not.
            theirs = reference(text)
            assert [v for *_, v in ours if not math.isnan(v)] == \
                [v for *_, v in theirs if not math.isnan(v)]


label_values = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]),
                       max_size=12)
names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(
    lambda n: not n.endswith(("_total", "_created", "_sum", "_count", "_bucket")))
values = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["counter", "gauge", "histogram", "summary"]),
                          names, st.lists(label_values, min_size=1, max_size=3)),
                min_size=1, max_size=4, unique_by=lambda m: m[1]),
       st.lists(st.floats(0, 1e6), min_size=1, max_size=5))
def test_generate_latest_of_any_registry(metrics, observations):
    registry = CollectorRegistry()
    for kind, name, label_vals in metrics:
        cls = {"counter": Counter, "gauge": Gauge, "histogram": Histogram,
               "summary": Summary}[kind]
        metric = cls(name, "help with \\ and \n newline", ["path", "le_"] if kind ==
                     "histogram" else ["path", "code"], registry=registry)
        for i, value in enumerate(label_vals):
            child = metric.labels(value, str(i))
            for x in observations:
                if kind == "gauge":
                    child.set(x)
                elif kind == "counter":
                    child.inc(x)
                else:
                    child.observe(x)
    text = generate_latest(registry).decode()
    assert same(parse(text), reference(text))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return {math.inf: "+Inf", -math.inf: "-Inf"}.get(value, repr(value)) \
        if not math.isnan(value) else "NaN"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(names, st.dictionaries(names, label_values, max_size=3), values,
                          st.none() | st.integers(0, 2**41),
                          st.sampled_from([" ", "  ", "\t"]), st.booleans()),
                min_size=1, max_size=8),
       st.booleans())
def test_handwritten_lines(lines, eof):
    text = ""
    for name, labels, value, ts, gap, comment in lines:
        if comment:
            text += f"# HELP {name} some help\n# TYPE {name} untyped\n"
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        series = f"{name}{{{inner}}}" if labels or gap == "  " else name
        stamp = f" {ts}" if ts is not None else ""
        text += f"{series}{gap}{_number(value)}{stamp}\n"
    if eof:
        text += "# EOF\n"
    assert same(parse(text), reference(text))
    p = ExpositionParser()
    assert same(p.parse(text), p.parse(text))  # the remembered-series path agrees


def test_quoted_names_exemplars_and_labels_of_the_target():
    text = ('{"my.metric", "a.b"="x"} 1\n'
            'req_total{code="200"} 5 # {trace_id="abc"} 1.0 1700000000\n'
            'req_total{code="200"} 6 # {trace_id="def"} 1.0\n'
            'tagged{job="theirs",k="v"} 2\n')
    p = ExpositionParser({"job": "ours"})
    assert p.parse(text) == [("my.metric", {"a.b": "x", "job": "ours"}, 1.0),
                             ("req_total", {"code": "200", "job": "ours"}, 5.0),
                             ("req_total", {"code": "200", "job": "ours"}, 6.0),
                             ("tagged", {"job": "ours", "k": "v"}, 2.0)]


def test_dropped_names_cost_nothing_and_memory_is_bounded():
    p = ExpositionParser(keep=lambda n: not n.endswith("_created"), max_series=3)
    text = "a_created 1\nb 2\n" + "".join(f'c{{i="{i}"}} {i}\n' for i in range(10))
    assert [n for (n, _), _ in p.parse_keyed(text)] == ["b"] + ["c"] * 10
    p.parse_keyed(text)
    assert len(p._seen) <= 12


@pytest.mark.parametrize(("line", "message"), [
    ('up{job="x} 1', "no closing quote"),
    ("up", "expected a value"),
    ("up 1 2 3", "expected a value"),
    ("up one", "invalid value 'one'"),
    ("up 1_000", "invalid value '1_000'"),
    ('up{job="a",job="b"} 1', "label 'job' is given twice"),
    ("up{job=x} 1", "not quoted"),
    ("9up 1", "invalid metric name '9up'"),
    ('up{job="x" 1', "expected ',' or '}'"),
])
def test_bad_lines_say_which_and_why(line, message):
    with pytest.raises(ExpositionError, match="line 2: .*" + message.replace("{", r"\{")
                       .replace("}", r"\}").replace("(", r"\(")):
        parse("# a comment\n" + line + "\n")


def test_endpoint_metrics_read_names_as_the_collector_does():
    """One parser: ``Endpoint.metrics()`` and the collector see the same series names
    (a counter exposed without ``_total`` keeps its name; prometheus_client's family
    parser would rename it)."""
    from hybridnb.serve.endpoint import _parse

    text = ('# TYPE hybridnb_odd counter\nhybridnb_odd{b="2",a="1"} 3\n'
            '# TYPE hybridnb_up gauge\nhybridnb_up 1\n')
    assert _parse(text) == {'hybridnb_odd{a="1",b="2"}': 3.0, "hybridnb_up": 1.0}
    assert [name for name, _, _ in parse(text)] == ["hybridnb_odd", "hybridnb_up"]

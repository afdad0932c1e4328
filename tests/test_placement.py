"""The placement planner: explained decisions on a small hybrid cloud, and properties."""

from __future__ import annotations

import copy
import json
import pickle
from html import escape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridnb.config import HybridConfig, load_config
from hybridnb.errors import UsageError
from hybridnb.placement import (
    ROW_COLUMNS,
    Kind,
    Reason,
    ReasonKind,
    Request,
    format_hours,
    format_usd,
    plan,
    plan_on,
)

GB = 10**9

# onprem: private, may hold pii, amortized at $0.10 per CPU-hour; aws: public, big and
# priced; edge: small, cheap, public data only.
CLOUD = {
    "sites": {
        "onprem": {
            "tier": "private",
            "capacity": {"cpu": 32, "memory": "128GiB", "gpu": 2},
            "cost": {"cpu_hour": 0.10, "gpu_hour": 0.0, "egress_gb": 0.01},
            "network": {"bandwidth_mbps": 10000, "latency_ms": 1,
                        "to": {"aws": {"bandwidth_mbps": 1000, "latency_ms": 20}}},
            "classifications": ["public", "internal", "pii"],
        },
        "aws": {
            "tier": "public",
            "backend": "kubernetes",
            "kubernetes": {"namespace": "ml"},
            "capacity": {"cpu": 256, "memory": "1TiB", "gpu": 16},
            "cost": {"cpu_hour": 0.05, "gpu_hour": 2.5, "egress_gb": 0.09},
            "network": {"bandwidth_mbps": 5000, "latency_ms": 10,
                        "to": {"onprem": {"bandwidth_mbps": 800, "latency_ms": 25}}},
            "classifications": ["public", "internal"],
        },
        "edge": {
            "tier": "edge",
            "capacity": {"cpu": 8, "memory": "16GiB"},
            "cost": {"cpu_hour": 0.02},
            "classifications": ["public"],
        },
    },
    "datasets": {
        "scans": {"site": "onprem", "path": "/data/scans", "size": "10GB",
                  "classification": "pii"},
        "clicks": {"site": "aws", "path": "s3://b/clicks", "size": "50GB",
                   "classification": "internal"},
        "images": {"site": "onprem", "path": "/data/images", "size": "100GB",
                   "classification": "public"},
        "logs": {"site": "onprem", "path": "/data/logs", "size": "1GB",
                 "classification": "public"},
        "catalog": {"site": "onprem", "path": "/data/catalog", "classification": "public"},
    },
}


def without_local(config: HybridConfig) -> HybridConfig:
    # The built-in default always adds this machine as 'local'; these tests are about
    # the three declared sites only.
    sites = {k: v for k, v in config.sites.items() if k != "local"}
    return config.model_copy(update={"sites": sites})


@pytest.fixture
def cloud(hybridnb_home):
    def make(**overrides):
        return without_local(load_config(overrides={**CLOUD, **overrides}))

    return make


def names(p):
    return [c.site for c in p.choices]


def rejection(p, site):
    (hit,) = [r for r in p.rejected if r.site == site]
    return hit


# -- reasons -------------------------------------------------------------------------


def test_residency_rejects_sites_that_may_not_hold_the_data(cloud):
    p = plan("train", cpu=4, data=["scans"], config=cloud())
    assert names(p) == ["onprem"]
    aws = rejection(p, "aws")
    assert aws.kinds == (ReasonKind.RESIDENCY,)
    assert aws.reasons == ("residency: dataset 'scans' is pii and site 'aws' may hold only "
                           "public, internal",)
    assert ReasonKind.RESIDENCY in rejection(p, "edge").kinds


def test_capacity_rejects_with_what_is_missing(cloud):
    p = plan("train", cpu=64, gpu=4, memory="256GiB", tiers=["private"], config=cloud())
    assert p.chosen is None
    assert list(rejection(p, "onprem").reasons) == [
        "capacity: needs 64 CPU, site has 32",
        "capacity: needs 4 GPU, site has 2",
        "capacity: needs 256.0 GiB memory, site has 128.0 GiB",
    ]


def test_budget_argument_and_per_job_policy(cloud):
    # aws: 10 h × (1 CPU × $0.05 + 4 GPU × $2.50) = $100.50
    p = plan("train", gpu=4, hours=10, budget=50, policy="cheapest", config=cloud())
    assert p.chosen is None
    assert list(rejection(p, "aws").reasons) == [
        "budget: costs $100.50, over the $50.00 budget (the budget argument)"]
    p = plan("train", gpu=4, hours=10, budget=500,
             config=cloud(policies={"budget": {"per_job": 20}}))
    assert "over the $20.00 budget (policies.budget.per_job)" in rejection(p, "aws").reasons[0]
    ok = plan("train", gpu=4, hours=10, budget=101, config=cloud())
    assert ok.chosen.site == "aws" and ok.chosen.total_cost == pytest.approx(100.5)


def test_deadline_counts_the_transfer(cloud):
    # clicks (50 GB) reach onprem over aws's 800 Mbps link: 500 s, so 1 h + 500 s > 1.1 h.
    p = plan("preprocess", hours=1, data=["clicks"], deadline=1.1, config=cloud())
    assert rejection(p, "onprem").reasons == ("deadline: takes 1h 8m, over the deadline of "
                                              "1h 6m",)
    assert p.chosen.site == "aws"  # no private site fits: burst
    assert plan("preprocess", hours=1, data=["clicks"], deadline=1.2,
                config=cloud()).chosen.site == "onprem"


def test_tiers_restrict_and_edge_serves(cloud):
    config = cloud()
    p = plan("train", tiers=["public"], config=config)
    assert names(p) == ["aws"]
    assert rejection(p, "onprem").reasons == ("tier: tier private not in tiers=['public']",)
    assert rejection(p, "edge").reasons == ("tier: tier edge not in tiers=['public']",)

    train = plan("train", config=config)
    assert rejection(train, "edge").reasons == (
        "tier: edge sites serve; pass tiers=['edge'] to use one",)
    assert "edge" in names(plan("train", tiers="edge", config=config))
    assert "edge" in names(plan("serve", policy="cheapest", config=config))


# -- policies --------------------------------------------------------------------------


def test_private_first_bursts_to_public_only_when_private_is_short(cloud):
    config = cloud()
    fits = plan("train", cpu=8, gpu=1, hours=3, config=config)
    assert fits.chosen.site == "onprem"
    assert fits.policy == "private-first"
    assert rejection(fits, "aws").reasons == (
        "policy: private-first and a private site fits (onprem)",)

    short = plan("train", cpu=8, gpu=4, hours=3, config=config)
    assert short.chosen.site == "aws"
    assert ReasonKind.CAPACITY in rejection(short, "onprem").kinds
    assert any("bursting to public" in n for n in short.notes)

    no_burst = plan("train", cpu=8, gpu=4, hours=3, config=cloud(policies={"burst": False}))
    assert no_burst.chosen is None
    assert rejection(no_burst, "aws").kinds == (ReasonKind.POLICY,)
    assert "policies.burst" in rejection(no_burst, "aws").reasons[0]


def test_cheapest_and_fastest_orderings(cloud):
    config = cloud()
    # 4 CPU × 2 h: edge $0.16, aws $0.40, onprem $0.80; logs (1 GB) live on onprem and
    # cost $0.01 to move out: to edge at 10 Gb/s (0.8 s), to aws at 1 Gb/s (8 s).
    kwargs = {"cpu": 4, "hours": 2, "data": ["logs"], "config": config}
    cheapest = plan("serve", policy="cheapest", **kwargs)
    assert names(cheapest) == ["edge", "aws", "onprem"]
    assert [c.rank for c in cheapest.choices] == [1, 2, 3]
    assert [c.total_cost for c in cheapest.choices] == pytest.approx([0.17, 0.41, 0.80])
    fastest = plan("serve", policy="fastest", **kwargs)
    assert names(fastest) == ["onprem", "edge", "aws"]
    private_first = plan("serve", **kwargs)
    assert names(private_first) == ["onprem", "edge"]  # aws is not needed: onprem fits


def test_policy_from_config_is_the_default(cloud):
    p = plan("serve", cpu=4, hours=2, config=cloud(policies={"placement": "cheapest"}))
    assert p.policy == "cheapest" and p.chosen.site == "edge"


def test_preemptible_loses_ties_and_is_noted(hybridnb_home):
    spot = {"tier": "private", "capacity": {"cpu": 8, "memory": "8GiB"}, "preemptible": True}
    steady = {"tier": "private", "capacity": {"cpu": 8, "memory": "8GiB"}}
    config = without_local(load_config(overrides={"sites": {"spot": spot, "steady": steady}}))
    p = plan("train", config=config)
    assert names(p) == ["steady", "spot"]
    assert p.choices[1].preemptible
    assert any("'spot' is preemptible" in n for n in p.notes)
    assert any("preemptible" in n for n in p.choices[1].notes)


# -- estimates ----------------------------------------------------------------------


def test_transfer_time_is_size_over_bandwidth_plus_latency(cloud):
    p = plan("preprocess", hours=1, data=["clicks"], policy="fastest", config=cloud())
    onprem = next(c for c in p.choices if c.site == "onprem")
    # aws → onprem is declared: 800 Mbps, 25 ms.
    assert onprem.transfer_hours == pytest.approx((50 * GB * 8 / 800e6 + 0.025) / 3600,
                                                  rel=1e-12)
    assert onprem.total_hours == pytest.approx(1 + 500.025 / 3600, rel=1e-12)
    (t,) = onprem.transfers
    assert (t.dataset, t.source, t.bytes) == ("clicks", "aws", 50 * GB)


def test_egress_is_charged_only_for_data_not_on_the_site(cloud):
    p = plan("preprocess", hours=1, data=["images", "clicks"], policy="cheapest",
             config=cloud())
    by_site = {c.site: c for c in p.choices}
    assert by_site["onprem"].egress_cost == pytest.approx(50 * 0.09)  # clicks leave aws
    assert by_site["aws"].egress_cost == pytest.approx(100 * 0.01)  # images leave onprem
    assert [t.dataset for t in by_site["aws"].transfers] == ["images"]
    assert by_site["onprem"].compute_cost == pytest.approx(0.10)
    assert by_site["onprem"].total_cost == pytest.approx(0.10 + 4.5)


def test_dataset_without_size_counts_as_zero_and_is_noted(cloud):
    p = plan("serve", data=["catalog"], tiers=["edge"], config=cloud())
    assert p.chosen.site == "edge" and p.chosen.egress_cost == 0
    assert p.chosen.transfer_hours == pytest.approx(0.001 / 3600)  # latency only
    assert any("'catalog' has no size" in n for n in p.notes)


# -- errors ---------------------------------------------------------------------------


def test_unknown_kind_names_the_valid_ones(cloud):
    with pytest.raises(UsageError, match=r"unknown kind 'trian' \(did you mean 'train'\?\); "
                                         r"valid kinds: preprocess, train, serve, notebook"):
        plan("trian", config=cloud())


def test_unknown_dataset_is_the_configs_error(cloud):
    with pytest.raises(UsageError, match=r"unknown dataset 'scan' .*did you mean 'scans'"):
        plan("train", data=["scan"], config=cloud())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cpu": -1}, "cpu must be ≥ 0"),
    ({"gpu": 1.5}, "gpu must be a whole number"),
    ({"hours": "3"}, "hours must be a number"),
    ({"memory": "lots"}, "memory: expected a size"),
    ({"deadline": 0}, "deadline must be > 0"),
    ({"tiers": ["pubic"]}, r"unknown tier 'pubic' .*did you mean 'public'"),
    ({"tiers": []}, "tiers is empty"),
    ({"policy": "cheap"}, "valid policies: private-first, cheapest, fastest"),
])
def test_bad_arguments_are_usage_errors(cloud, kwargs, message):
    with pytest.raises(UsageError, match=message):
        plan("train", config=cloud(), **kwargs)


def test_raise_if_empty_lists_every_site_and_reason(cloud):
    p = plan("train", gpu=32, data=["scans"], config=cloud())
    with pytest.raises(UsageError) as info:
        p.raise_if_empty()
    text = str(info.value)
    assert "no site can run this train job" in text
    for r in p.rejected:
        for reason in r.reasons:
            assert f"{r.site} ({r.tier}): " in text and reason in text
    ok = plan("train", config=cloud())
    assert ok.raise_if_empty() is ok


def test_no_sites_at_all(cloud):
    p = plan_on(cloud(datasets={}).model_copy(update={"sites": {}}), Request(Kind.TRAIN))
    assert p.chosen is None and p.rejected == ()
    with pytest.raises(UsageError, match="no sites are configured"):
        p.raise_if_empty()


def test_config_none_reads_the_configuration(hybridnb_home):
    p = plan("notebook", cpu=1)
    assert p.chosen.site == "local" and p.chosen.total_cost == 0


# -- surfaces -------------------------------------------------------------------------


def test_repr_html_shows_choices_and_greyed_rejections(cloud):
    p = plan("train", cpu=8, data=["scans"], config=cloud())
    html = p._repr_html_()
    for header in ("rank", "site", "tier", "compute $", "egress $", "transfer", "total time"):
        assert f"<th>{header}</th>" in html
    assert "<td>onprem</td>" in html
    assert 'style="color: #888"' in html
    for r in p.rejected:
        for reason in r.reasons:
            assert escape(reason) in html
    assert "tiers=[&#x27;edge&#x27;]" in html  # escaped, not raw


def test_repr_is_compact(cloud):
    p = plan("train", cpu=8, hours=3, config=cloud())
    assert repr(p) == ("Plan(train → onprem $2.40 3h; policy private-first; feasible: onprem; "
                       "rejected: aws, edge)")


def test_rows_and_dict_for_the_cli(cloud):
    p = plan("train", cpu=8, hours=3, data=["images"], config=cloud())
    rows = p.to_rows()
    assert all(tuple(row) == ROW_COLUMNS for row in rows)
    assert rows[0] == {"rank": "1", "site": "onprem", "tier": "private", "status": "chosen",
                       "compute": "$2.40", "egress": "$0.00", "cost": "$2.40",
                       "transfer": "0s", "time": "3h", "notes": ""}
    assert [r["status"] for r in rows[1:]] == ["rejected", "rejected"]
    assert rows[1]["notes"].startswith("policy: private-first")
    data = json.loads(json.dumps(p.to_dict()))
    assert data["chosen"] == "onprem"
    assert data["request"]["kind"] == "train" and data["request"]["data"] == ["images"]
    assert data["choices"][0]["total_hours"] == 3
    assert data["rejected"][0]["reasons"][0]["kind"] == "policy"


def test_reasons_are_text_that_keeps_its_kind():
    r = Reason(ReasonKind.BUDGET, "costs $3.00")
    assert r == "budget: costs $3.00" and isinstance(r, str)
    for clone in (pickle.loads(pickle.dumps(r)), copy.deepcopy(r)):
        assert clone == r and clone.kind is ReasonKind.BUDGET and clone.message == r.message


def test_formatting_helpers():
    assert format_hours(500.025 / 3600) == "8m 20s"
    assert format_hours(1e-6) == "<1s"
    assert format_hours(float("inf")) == "∞"
    assert format_hours(47.999) == "2d"
    assert format_usd(100.5) == "$100.50"


# -- properties -----------------------------------------------------------------------

CLASSES = ["public", "internal", "confidential", "pii"]
ISOLATED = {"HOME": "/nonexistent", "HYBRIDNB_SYSTEM_CONFIG": "/nonexistent/hybridnb.yaml"}
money = st.floats(0, 3, allow_nan=False)


@st.composite
def spec(draw):
    """A random hybrid cloud (as overrides) and a random request against it."""
    site_names = ["local"] + [f"s{i}" for i in range(1, draw(st.integers(2, 6)))]
    sites = {}
    for name in site_names:
        sites[name] = {
            "tier": draw(st.sampled_from(["private", "public", "edge"])),
            "capacity": {"cpu": draw(st.integers(0, 64)), "memory": draw(st.integers(0, 2**40)),
                         "gpu": draw(st.integers(0, 8))},
            "cost": {"cpu_hour": draw(money), "gpu_hour": draw(money), "egress_gb": draw(money)},
            "network": {
                "bandwidth_mbps": draw(st.floats(1, 10000)),
                "latency_ms": draw(st.floats(0, 200)),
                "to": {peer: {"bandwidth_mbps": draw(st.floats(1, 10000))}
                       for peer in draw(st.lists(st.sampled_from(site_names), unique=True))},
            },
            "classifications": draw(st.lists(st.sampled_from(CLASSES), unique=True)),
            "preemptible": draw(st.booleans()),
        }
    homes = [n for n in site_names if sites[n]["classifications"]]
    datasets = {}
    for i in range(draw(st.integers(0, 3)) if homes else 0):
        home = draw(st.sampled_from(homes))
        datasets[f"d{i}"] = {
            "site": home, "path": f"/d{i}",
            "classification": draw(st.sampled_from(sites[home]["classifications"])),
            "size": draw(st.none() | st.integers(0, 10**12)),
        }
    policies = {"placement": draw(st.sampled_from(["private-first", "cheapest", "fastest"])),
                "burst": draw(st.booleans()),
                "budget": {"per_job": draw(st.none() | st.floats(0, 500))}}
    request = {
        "kind": draw(st.sampled_from([k.value for k in Kind])),
        # Smaller than the sites on average, so that plans often have several choices.
        "cpu": draw(st.integers(0, 32)), "gpu": draw(st.integers(0, 4)),
        "memory": draw(st.integers(0, 2**38)), "hours": draw(st.floats(0, 24)),
        "data": draw(st.lists(st.sampled_from(sorted(datasets)), unique=True)) if datasets
        else [],
        "deadline": draw(st.none() | st.floats(0.01, 200)),
        "budget": draw(st.none() | st.floats(0, 1000)),
        "tiers": draw(st.none() | st.lists(st.sampled_from(["private", "public", "edge"]),
                                           min_size=1, unique=True)),
    }
    return {"sites": sites, "datasets": datasets, "policies": policies}, request


def build(overrides):
    # No fixture here (hypothesis runs many examples per test): the environment is isolated
    # by passing it explicitly.
    return load_config(overrides=overrides, cwd="/nonexistent", environ=ISOLATED)


PROPERTY = settings(max_examples=200, deadline=None)


@PROPERTY
@given(spec())
def test_plans_respect_residency_capacity_limits_and_cover_every_site(case):
    overrides, request = case
    config = build(overrides)
    p = plan(config=config, **request)
    placed = [c.site for c in p.choices] + [r.site for r in p.rejected]
    assert sorted(placed) == sorted(config.sites)
    assert [c.rank for c in p.choices] == list(range(1, len(p.choices) + 1))
    assert all(r.reasons for r in p.rejected)
    limits = [x for x in (request["budget"], config.policies.budget.per_job) if x is not None]
    for c in p.choices:
        site = config.site(c.site)
        for name in request["data"]:
            assert site.allows(config.dataset(name).classification)
        assert request["cpu"] <= site.capacity.cpu and request["gpu"] <= site.capacity.gpu
        assert request["memory"] <= site.capacity.memory
        assert all(c.total_cost <= limit for limit in limits)
        if request["deadline"] is not None:
            assert c.total_hours <= request["deadline"]
        if request["tiers"] is not None:
            assert c.tier in request["tiers"]
        elif request["kind"] != "serve":
            assert c.tier != "edge"
    key = {"cheapest": "total_cost", "fastest": "total_hours"}.get(p.policy)
    if key:
        values = [getattr(c, key) for c in p.choices]
        assert values == sorted(values)
    else:  # private-first: private, then edge, then public only when no private site fits
        order = [{"private": 0, "edge": 1, "public": 2}[c.tier] for c in p.choices]
        assert order == sorted(order)
        if any(c.tier == "public" for c in p.choices):
            assert config.policies.burst and all(c.tier != "private" for c in p.choices)


@PROPERTY
@given(spec(), st.data())
def test_raising_a_sites_prices_never_moves_it_up(case, data):
    overrides, request = case
    overrides["policies"]["placement"] = "cheapest"
    before = plan(config=build(overrides), **request)
    site = data.draw(st.sampled_from(sorted(overrides["sites"])))
    dearer = copy.deepcopy(overrides)
    cost = dearer["sites"][site]["cost"]
    cost["cpu_hour"] += data.draw(st.floats(0, 10))
    cost["gpu_hour"] += data.draw(st.floats(0, 10))
    after = plan(config=build(dearer), **request)
    old = names(before).index(site) if site in names(before) else None
    new = names(after).index(site) if site in names(after) else None
    if old is None:
        assert new is None
    elif new is not None:
        assert new >= old

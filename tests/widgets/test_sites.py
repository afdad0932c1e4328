"""The Sites panel: sites table, live plan, validation that disables the button."""

from __future__ import annotations

from hybridnb.config import load_config
from hybridnb.widgets import SitesPanel

CONFIG = {
    "sites.cloud": {"tier": "public", "backend": "local",
                    "capacity": {"cpu": 64, "memory": "256GiB", "gpu": 8},
                    "cost": {"cpu_hour": 0.05, "gpu_hour": 2.5, "egress_gb": 0.09}},
    "sites.local.capacity": {"cpu": 4, "memory": "16GiB", "gpu": 0},
}


def test_plan_follows_the_form(panels):
    panel = panels(SitesPanel, config=load_config(overrides=CONFIG))
    assert "cloud" in panel.sites_html.value and "public" in panel.sites_html.value
    assert panel.plan.chosen.site == "local"  # private first
    panel.form["gpu"].widget.value = "2"
    assert panel.plan.chosen.site == "cloud"
    assert "capacity" in panel.plan_html.value  # local rejected, with its reason
    panel.form["tiers"].widget.value = ("private",)
    assert panel.plan.chosen is None and "no site" in panel.status.value
    assert "tiers = ['private']" in panel.code_view.code.value
    # Labels fit their 9em (the hint is a tooltip); tables have headers, numbers aligned.
    assert panel.form["tiers"].widget.description == "tiers"
    assert "<caption>configured sites</caption><thead>" in panel.sites_html.value
    assert '<td class="num">64</td>' in panel.sites_html.value
    assert "gpu: 2" in panel.code_view.yaml.value


def test_bad_value_shows_red_label_and_disables_plan(panels):
    panel = panels(SitesPanel, config=load_config(overrides=CONFIG))
    button = panel.buttons["plan"][0]
    assert not button.disabled
    panel.form["memory"].widget.value = "lots"
    assert button.disabled and "hybridnb-invalid" in panel.form["memory"].message.value
    panel.form["cpu"].widget.value = "-1"
    assert panel.form["cpu"].error == "must be > 0, got -1"
    panel.form["memory"].widget.value = "2GiB"
    assert button.disabled  # cpu is still wrong
    panel.form["cpu"].widget.value = "8"
    assert not button.disabled and panel.form.errors == {}
    panel.click("plan")  # re-reads the user's config: only the built-in local site
    assert panel.runner.last_error is None and "cloud" not in panel.sites_html.value
    assert panel.plan.request.cpu == 8

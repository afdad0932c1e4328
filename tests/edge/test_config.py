"""The ``edge:`` section of a site: validated like the rest (file, line, key path, fix)."""

from __future__ import annotations

import textwrap

import pytest

from hybridnb.cli import main
from hybridnb.config import ConfigError, load_config

GOOD = """
sites:
  shop:
    tier: edge
    capacity: {cpu: 2, memory: 4GiB}
    network: {bandwidth_mbps: 50}
    edge:
      agent: {address: 10.0.3.7, cert: /etc/hybridnb/shop.pem}
      link: {availability: 0.9, max_outage_s: 7200}
      rollout: {watch_s: 15, keep_versions: 3}
      buffer: {max_bytes: 256MiB, sample_interval_s: 2}
"""

CASES = {
    # name: (yaml, key path, line, words in the message)
    "edge block on a private site": (
        """
        sites:
          vault:
            tier: private
            capacity: {cpu: 2, memory: 4GiB}
            edge:
              link: {bandwidth_mbps: 20}
        """, "sites.vault.edge", 6, ["tier is 'private'", "set 'tier: edge'"]),
    "agent beyond loopback without a pinned certificate": (
        """
        sites:
          shop:
            tier: edge
            capacity: {cpu: 2, memory: 4GiB}
            edge:
              agent:
                address: 10.0.3.7
        """, "sites.shop.edge.agent.cert", 8, ["beyond loopback", "add 'cert: PATH'"]),
    "availability above one": (
        """
        sites:
          shop:
            tier: edge
            capacity: {cpu: 2, memory: 4GiB}
            edge:
              link: {availability: 1.5}
        """, "sites.shop.edge.link.availability", 7, ["must be ≤ 1", "1.5"]),
    "a buffer too small to hold anything": (
        """
        sites:
          shop:
            tier: edge
            capacity: {cpu: 2, memory: 4GiB}
            edge:
              buffer:
                max_bytes: 1KiB
        """, "sites.shop.edge.buffer.max_bytes", 8, ["must be ≥"]),
    "misspelt rollout key": (
        """
        sites:
          shop:
            tier: edge
            capacity: {cpu: 2, memory: 4GiB}
            edge:
              rollout:
                wacth_s: 5
        """, "sites.shop.edge.rollout.wacth_s", 8, ["did you mean 'watch_s'"]),
    "bad fingerprint": (
        """
        sites:
          shop:
            tier: edge
            capacity: {cpu: 2, memory: 4GiB}
            edge:
              agent: {address: 127.0.0.1, fingerprint: "md5:abc"}
        """, "sites.shop.edge.agent.fingerprint", 7, ["md5:abc", "sha256:HEX"]),
}


def _write(directory, text):
    path = directory / "hybridnb.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_an_edge_site_carries_its_link_policy_and_limits(hybridnb_home):
    _write(hybridnb_home / "work", GOOD)
    site = load_config().site("shop")
    assert site.edge is not None and site.edge.agent is not None
    assert site.edge.agent.url == "https://10.0.3.7:8443"
    assert site.link_mbps == 50  # the site's network bandwidth: one place owns it
    assert site.edge.link.availability == 0.9 and site.edge.rollout.keep_versions == 3
    assert site.edge.buffer.max_bytes == 256 * 2**20
    # Defaults where the file says nothing; an edge site without the block still loads.
    assert site.edge.rollout.stall_timeout_s == 10 and site.edge.buffer.max_records is None
    plain = load_config(overrides={"sites.kiosk": {"tier": "edge",
                                                   "capacity": {"cpu": 1, "memory": 1}}})
    assert plain.site("kiosk").edge is None


@pytest.mark.parametrize("case", sorted(CASES))
def test_problem_names_file_line_key_and_fix(case, hybridnb_home):
    text, key, line, words = CASES[case]
    path = _write(hybridnb_home / "work", text)
    with pytest.raises(ConfigError) as info:
        load_config()
    matching = [p for p in info.value.problems if p.path == key]
    assert matching, f"no problem at {key!r}: {info.value}"
    problem = matching[0]
    assert (problem.source, problem.line) == (str(path), line), str(problem)
    for word in [*words, "Fix:"]:
        assert word in str(problem), str(problem)


def test_cli_refuses_a_bad_edge_section_with_exit_2(hybridnb_home, capsys):
    text, key, _, _ = CASES["agent beyond loopback without a pinned certificate"]
    path = _write(hybridnb_home / "work", text)
    assert main(["sites", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err

"""The edge agent's own metric families (next to the endpoint's, which the front counts).

>>> sorted(HELP)[0]
'hybridnb_edge_buffer_bytes'
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

#: Help texts by family name as scraped: the one copy (:mod:`hybridnb.monitor.names`
#: reads it). The last one is recorded by the centre, not the agent.
HELP = {
    "hybridnb_edge_endpoint_ready": "1 if a model version serves at the edge site, else 0.",
    "hybridnb_edge_buffer_records": "Records buffered at the edge, not yet acknowledged.",
    "hybridnb_edge_buffer_bytes": "Disk the edge buffer uses.",
    "hybridnb_edge_buffer_dropped_total": "Buffered records dropped because the buffer "
                                          "was full.",
    "hybridnb_edge_rollouts_total": "Rollouts finished at the edge, by result.",
    "hybridnb_edge_last_contact_timestamp_seconds": "Unix time the centre last reached "
                                                    "the edge site's agent.",
}
#: Rollout results, the bounded values of ``result``.
RESULTS = ("active", "rolled_back", "refused")


class EdgeCollector:
    """A prometheus_client collector reading the agent's live values when scraped.

    ``values()`` returns ``ready``, ``records``, ``bytes``, ``dropped`` and ``rollouts``
    (a dict by result).
    """

    def __init__(self, values: Callable[[], dict[str, Any]]):
        self.values = values

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        v = self.values()
        for name, key in (("hybridnb_edge_endpoint_ready", "ready"),
                          ("hybridnb_edge_buffer_records", "records"),
                          ("hybridnb_edge_buffer_bytes", "bytes")):
            yield GaugeMetricFamily(name, HELP[name], value=float(v[key]))
        yield CounterMetricFamily("hybridnb_edge_buffer_dropped",
                                  HELP["hybridnb_edge_buffer_dropped_total"],
                                  value=float(v["dropped"]))
        rollouts = CounterMetricFamily("hybridnb_edge_rollouts",
                                       HELP["hybridnb_edge_rollouts_total"], labels=["result"])
        for result in RESULTS:
            rollouts.add_metric([result], float(v["rollouts"].get(result, 0)))
        yield rollouts

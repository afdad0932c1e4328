"""The pods KubeSpawner makes for profiles, built offline (``python -m hybridnb.hub.kubepods``).

Reads ``{group: {slug: profile}}`` as JSON on stdin and writes ``{"group/slug": pod}``
on stdout. Run by :func:`hybridnb.hub.render.profile_pods` with a kubeconfig that names
a cluster nobody runs: ``KubeSpawner(_mock=True)`` reads it when made, and building a pod
manifest never contacts it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

#: The single-user image of the pods (the chart's default when a team names none).
IMAGE = "quay.io/jupyterhub/k8s-singleuser-sample:4.4.0"


async def pods(profiles: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    from kubernetes_asyncio.client import ApiClient
    from kubespawner import KubeSpawner

    out: dict[str, dict[str, Any]] = {}
    for group, by_slug in profiles.items():
        for slug in by_slug:
            spawner = KubeSpawner(_mock=True, namespace="jhub", image=IMAGE,
                                  profile_list=list(by_slug.values()))
            spawner.user_options = {"profile": slug}
            await spawner.load_user_options()
            pod = await spawner.get_pod_manifest()
            out[f"{group}/{slug}"] = ApiClient().sanitize_for_serialization(pod)
    return out


def main() -> int:
    json.dump(asyncio.run(pods(json.load(sys.stdin))), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

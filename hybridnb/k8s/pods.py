"""How hybridnb's pods run: security contexts every pod it renders carries, and their check.

Pods meet the Kubernetes Pod Security Standard *restricted* profile: not root, no
privilege escalation, no capabilities, the runtime's default seccomp profile.

``runAsNonRoot: true`` alone is not enough: the kubelet then needs to *know* the user is
not root, and refuses to start a container whose image's ``USER`` is root or a name
(``CreateContainerConfigError: container has runAsNonRoot and image has non-numeric user``).
So the uid is given as a number: the one hybridnb's images run as.

>>> pod_security_context()["runAsUser"], container_security_context()["capabilities"]
(1000, {'drop': ['ALL']})
>>> pod_security_problems({"securityContext": {"runAsNonRoot": True},
...                        "containers": [{"name": "c", "image": "i"}]})[0]  # doctest: +ELLIPSIS
'containers[0] (c): runAsNonRoot without a numeric runAsUser: the kubelet refuses ...'

"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: uid and gid that hybridnb's container images run as (``environments/``, ``hybridnb
#: images build``): a numeric, non-root user, so ``runAsNonRoot`` holds for any image.
RUN_AS_USER = 1000
RUN_AS_GROUP = 1000


def pod_security_context(*, uid: int = RUN_AS_USER, gid: int = RUN_AS_GROUP,
                         volumes: bool = True) -> dict[str, Any]:
    """The pod-level ``securityContext``: a numeric non-root user and group.

    With ``volumes``, ``fsGroup`` makes mounted volumes (``emptyDir``, claims) writable
    by that group, so a process running as ``uid`` can write its run directory.

    >>> sorted(pod_security_context(volumes=False).items())  # doctest: +NORMALIZE_WHITESPACE
    [('runAsGroup', 1000), ('runAsNonRoot', True), ('runAsUser', 1000),
     ('seccompProfile', {'type': 'RuntimeDefault'})]
    """
    context: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": int(uid),
                               "runAsGroup": int(gid)}
    if volumes:
        context["fsGroup"] = int(gid)
    context["seccompProfile"] = {"type": "RuntimeDefault"}
    return context


def container_security_context(*, read_only_root: bool = True) -> dict[str, Any]:
    """The container-level ``securityContext``: no escalation, no capabilities.

    ``read_only_root`` (a read-only root file system) suits servers that write only to
    mounted volumes; a notebook kernel writes its runtime files under ``$HOME``.

    >>> container_security_context(read_only_root=False)["readOnlyRootFilesystem"]
    False
    """
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": read_only_root,
            "capabilities": {"drop": ["ALL"]}}


def pod_security_problems(pod_spec: Mapping[str, Any]) -> list[str]:
    """Why the kubelet would refuse, or the *restricted* profile reject, ``pod_spec``.

    Checks each container with its pod's defaults: a numeric non-zero ``runAsUser`` when
    ``runAsNonRoot`` is set (the kubelet's rule) and the restricted profile (non-root,
    ``allowPrivilegeEscalation: false``, all capabilities dropped, ``RuntimeDefault`` or
    ``Localhost`` seccomp). Empty when the pod would run.
    """
    pod = pod_spec.get("securityContext") or {}
    problems = []
    for field in ("initContainers", "containers"):
        for i, container in enumerate(pod_spec.get(field) or []):
            where = f"{field}[{i}] ({container.get('name', '?')})"
            own = container.get("securityContext") or {}

            def get(key: str, own: Mapping[str, Any] = own) -> Any:
                return own.get(key, pod.get(key))

            uid = get("runAsUser")
            if get("runAsNonRoot") is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            elif not isinstance(uid, int) or isinstance(uid, bool):
                problems.append(f"{where}: runAsNonRoot without a numeric runAsUser: the "
                                "kubelet refuses images whose user is root or a name")
            elif uid == 0:
                problems.append(f"{where}: runAsUser 0 is root")
            if own.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in ((own.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{where}: capabilities do not drop ALL")
            seccomp = (get("seccompProfile") or {}).get("type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{where}: seccompProfile is {seccomp!r}, not RuntimeDefault")
    return problems

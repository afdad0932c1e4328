"""TLS for clusters: temporary certificates for local and SSH sites, files for the rest.

Key material never appears in a ``repr`` or a log: :func:`redacted` is what handles show,
and temporary certificates for SSH sites are written to files (mode 0600) so that only
their paths travel in the remote command line, never the keys.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ..fileio import atomic_write_text

if TYPE_CHECKING:
    from distributed.security import Security

    from ..config import Site


class InsecureSiteWarning(UserWarning):
    """A site runs Dask without TLS although its processes listen beyond loopback."""


_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_plain(site: Site, where: str | None = None) -> None:
    """Warn, once per site and process, that ``site`` runs Dask over plain tcp.

    Called where a cluster starts or a worker joins without TLS because the site says
    ``tls: false``: the opt-out stays possible, but never silent. ``where`` names the
    listening address(es); by default they come from the site's options.
    """
    where = where or _listen_addresses(site)
    with _warned_lock:
        if site.name in _warned:
            return
        _warned.add(site.name)
    warnings.warn(
        f"site '{site.name}' runs Dask without TLS (sites.{site.name}.tls: false) and its "
        f"processes listen on {where}: Dask has no other authentication, so anyone who can "
        "reach them can run code as you and read your data. Remove 'tls: false' (TLS is "
        "the default there) unless every host on that network is trusted",
        InsecureSiteWarning, stacklevel=3)


def warn_if_plain(sites: list[Site], security: Security | None) -> None:
    """:func:`warn_plain` for each of ``sites`` that opted out of TLS although its
    processes listen beyond loopback, when the cluster runs without ``security``."""
    if security is not None:
        return
    for site in sites:
        if site.tls_opted_out and site.listens_beyond_loopback:
            warn_plain(site)


def _listen_addresses(site: Site) -> str:
    if site.backend == "ssh" and site.ssh is not None:
        return ", ".join(site.ssh.hosts)
    if site.backend == "scheduler" and site.scheduler is not None:
        return site.scheduler.address
    if site.backend == "local" and site.local is not None and site.local.host:
        return site.local.host
    return f"the network of its {site.backend} backend"


def temporary(directory: str | Path | None = None) -> Security:
    """A self-signed certificate for every role of one cluster.

    With ``directory`` the certificate and key are written there (0600) and the returned
    ``Security`` names the files, as remote processes need; without, they stay in memory.
    """
    from distributed.security import Security

    sec = Security.temporary()
    if directory is None:
        return sec
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert, key = d / "tls.crt", d / "tls.key"
    for path, text in ((cert, sec.tls_ca_file), (key, sec.tls_scheduler_key)):
        atomic_write_text(path, text, mode=0o600)
    return from_files(cert, cert, key)


def from_files(ca: str | Path, cert: str | Path, key: str | Path) -> Security:
    """A ``Security`` that uses one certificate/key pair for every role, from files."""
    from distributed.security import Security

    ca, cert, key = str(ca), str(cert), str(key)
    return Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key,
                    tls_scheduler_cert=cert, tls_scheduler_key=key,
                    tls_worker_cert=cert, tls_worker_key=key, require_encryption=True)


def dask_config(sec: Security) -> dict[str, object]:
    """Dask config keys that make processes started elsewhere use ``sec`` (file paths only)."""
    out: dict[str, object] = {"distributed.comm.require-encryption": True,
                              "distributed.comm.default-scheme": "tls",
                              "distributed.comm.tls.ca-file": getattr(sec, "tls_ca_file", None)}
    for role in ("scheduler", "worker", "client"):
        for part in ("cert", "key"):
            out[f"distributed.comm.tls.{role}.{part}"] = getattr(sec, f"tls_{role}_{part}")
    return out


def redacted(sec: Security | None) -> str:
    """A description of ``sec`` that is safe to show: never a key or certificate."""
    ca = getattr(sec, "tls_ca_file", None) or ""
    if sec is None or (not sec.require_encryption and not ca):
        return "none"
    where = "in memory" if "BEGIN" in ca else "files"
    return f"TLS ({where})"

"""Typed models of a hybrid cloud: sites, datasets and policies.

These are the shapes of ``hybridnb.yaml`` after all layers are merged. They hold no
I/O; :func:`hybridnb.config.load_config` reads the layers, merges them and validates
them into a :class:`HybridConfig`.

A site, as written in YAML::

    sites:
      onprem:
        tier: private            # private | public | edge
        backend: ssh             # local | scheduler | ssh | kubernetes (or a plug-in)
        ssh: {hosts: [10.0.0.11, 10.0.0.12], user: ml, key: ~/.ssh/id_ed25519}
        capacity: {cpu: 64, memory: 256GiB, gpu: 4, gpu_type: a100}
        cost: {cpu_hour: 0.0, gpu_hour: 0.0, egress_gb: 0.0}
        network: {bandwidth_mbps: 10000, latency_ms: 1, to: {aws: {bandwidth_mbps: 1000}}}
        classifications: [public, internal, pii]
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)

from .gateway import GatewayOptions
from .images import DEFAULT_REGISTRY, REGISTRY_PATTERN, TAG_PATTERN, default_image
from .teams import Teams
from .units import format_bytes, parse_bytes

Tier = Literal["private", "public", "edge"]
ByteSize = Annotated[int, BeforeValidator(parse_bytes), Field(ge=0)]
NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]

#: The backends hybridnb ships. Plug-ins add more through the
#: ``hybridnb.site_backends`` entry-point group (see :mod:`hybridnb.config.backends`).
BUILTIN_BACKENDS = ("local", "scheduler", "ssh", "kubernetes", "gateway")


class _Model(BaseModel):
    # Unknown keys are errors (with a "did you mean"), never silently ignored.
    model_config = ConfigDict(extra="forbid", validate_default=True)


class LocalOptions(_Model):
    """Options of the ``local`` backend (a Dask ``LocalCluster`` on this machine)."""

    processes: bool = Field(True, description="Workers in processes of their own; false: "
                            "threads of this process (faster to start, one GIL)")
    host: str | None = Field(None, description="Address to listen on; default 127.0.0.1. "
                             "Set a reachable one when workers of other sites join")


class SchedulerOptions(_Model):
    """Options of the ``scheduler`` backend: connect to a running Dask scheduler."""

    address: str = Field(pattern=r"^(tcp|tls|inproc|ucx|ws|wss)://.+",
                         description="Scheduler address, e.g. tls://10.0.0.5:8786")
    timeout: NonNegative = Field(10.0, description="Seconds to wait when connecting")
    tls_ca_file: str | None = Field(None, description="CA certificate (PEM) of a tls:// scheduler")
    tls_cert: str | None = Field(None, description="Client certificate (PEM file)")
    tls_key: str | None = Field(None, description="Client key (PEM file)")


class SSHOptions(_Model):
    """Options of the ``ssh`` backend: ``distributed.SSHCluster`` over these hosts.

    The first host runs the scheduler, the others run workers (as in SSHCluster).
    """

    hosts: list[str] = Field(min_length=1)
    user: str | None = Field(None, description="SSH user; default: asyncssh's (your SSH "
                             "config, else your login name)")
    key: str | None = Field(None, description="Path of the private key")
    port: int = Field(22, ge=1, le=65535)
    python: str | None = Field(None, description="Python on the remote hosts")
    known_hosts: str | None = Field(
        None, description="known_hosts file; None uses ~/.ssh/known_hosts; 'ignore' skips "
        "host key checks (throw-away test networks only)")
    connect_timeout: Positive = Field(
        10.0, description="Seconds to open an SSH connection and log in")
    start_timeout: Positive = Field(
        60.0, description="Seconds for a remote scheduler or worker to report its address")
    scheduler_port: int = Field(
        0, ge=0, le=65535, description="Port of the scheduler on the first host; 0: any "
        "free one. Fix it when workers started elsewhere join it (hybridnb worker ADDRESS "
        "--site NAME: a cloud bursting into this cluster)")


class KubernetesOptions(_Model):
    """Options of the ``kubernetes`` backend (dask-kubernetes' operator ``KubeCluster``)."""

    context: str | None = Field(None, description="kubeconfig context; None uses the current one")
    namespace: str = Field("default", description="Namespace of the cluster's pods")
    image: str = Field(default_factory=lambda: default_image("worker"),
                       description="Image of the site's pods; default: hybridnb's worker image "
                       "(images.registry and images.tag; the cuda variant on a site with GPUs)")
    env: dict[str, str] = Field(default_factory=dict,
                                description="Environment of the scheduler and workers")
    service_account: str | None = Field(None, description="Service account of the pods")
    worker_cpu: NonNegative | None = Field(
        None, description="CPU request of each worker (and its --nthreads)")
    worker_memory: ByteSize | None = Field(
        None, description="Memory request and limit of each worker (and its --memory-limit)")


class Capacity(_Model):
    """What a site can run at once."""

    cpu: NonNegative = Field(description="CPU cores")
    memory: ByteSize = Field(description="Memory in bytes (accepts '256GiB')")
    gpu: int = Field(0, ge=0)
    gpu_type: str | None = Field(None, description="GPU model, e.g. a100 (informative)")


class Cost(_Model):
    """Prices in US dollars."""

    cpu_hour: NonNegative = 0.0
    gpu_hour: NonNegative = 0.0
    egress_gb: NonNegative = Field(0.0, description="Per GB leaving the site")


class Link(_Model):
    """A network path from one site to another."""

    bandwidth_mbps: Annotated[float, Field(gt=0)] = 1000.0
    latency_ms: NonNegative = 1.0


class Network(Link):
    """The site's default link, and specific links to other sites (``to``)."""

    to: dict[str, Link] = Field(default_factory=dict)

    def link_to(self, site: str) -> Link:
        """The link to ``site``: a specific one if declared, else the default."""
        return self.to.get(site) or Link(bandwidth_mbps=self.bandwidth_mbps,
                                          latency_ms=self.latency_ms)


class EdgeAgentOptions(_Model):
    """Where the central side reaches an edge site's agent, and how it trusts it.

    The agent (``hybridnb edge agent`` on the edge machine) accepts rollouts and buffers
    metrics; its control port is token-authenticated and, beyond loopback, TLS with a
    self-signed certificate that the central side pins (``cert``).
    """

    address: str = Field(description="Host or address of the agent's control port, as "
                         "the central side reaches it")
    port: int = Field(8443, ge=1, le=65535, description="The agent's control port")
    cert: str | None = Field(
        None, description="The agent's certificate (PEM file, written by 'hybridnb edge "
        "init'); the only certificate trusted for this agent. Required beyond loopback")
    fingerprint: str | None = Field(
        None, pattern=r"^sha256:[0-9a-f]{64}$",
        description="sha256:HEX of the certificate, checked against 'cert' when given")
    token_file: str | None = Field(
        None, description="File holding the agent's token (mode 600); default: "
        "$HYBRIDNB_EDGE_TOKEN")
    front_host: str = Field("127.0.0.1", description="Where the edge endpoint answers "
                            "its local clients (beyond loopback it needs a token)")
    front_port: int = Field(8080, ge=1, le=65535, description="The edge endpoint's port")

    @property
    def url(self) -> str:
        """``https://address:port`` (``http://`` on loopback without a certificate)."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{'https' if self.cert else 'http'}://{host}:{self.port}"


class EdgeLink(_Model):
    """The link from the rest of the hybrid cloud to an edge site: thin and intermittent."""

    bandwidth_mbps: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Usable bandwidth in Mbit/s; default: the site's "
        "network.bandwidth_mbps")
    availability: Annotated[float, Field(gt=0, le=1)] = Field(
        0.99, description="Expected fraction of time the link is up (0-1]")
    max_outage_s: Positive = Field(
        3600.0, description="Longest outage to ride out: the buffer should hold this long")


class EdgeRolloutPolicy(_Model):
    """How a new version reaches an edge site and takes over."""

    health_timeout_s: Positive = Field(
        120.0, description="Seconds the new version has to load and answer its checks")
    watch_s: NonNegative = Field(
        10.0, description="Seconds the old version stays warm after the switch; the new "
        "one failing its health checks then switches back by itself")
    keep_versions: int = Field(2, ge=1, description="Versions kept on disk (active "
                               "included) for rolling back")
    stall_timeout_s: Positive = Field(
        10.0, description="Seconds without progress before a transfer reconnects and "
        "resumes where it stopped")
    deadline_s: Positive | None = Field(
        None, description="Seconds a push keeps retrying over a flapping link; default: "
        "the bundle's transfer time at the link's bandwidth and availability, x4, plus 10 "
        "minutes")


class EdgeBufferLimits(_Model):
    """What an edge site keeps on disk while the link is down: metrics and request logs."""

    max_bytes: ByteSize = Field(64 * 2**20, ge=2**20, description="Disk the buffer may "
                                "use (accepts '64MiB'); beyond it the oldest records go")
    max_records: int | None = Field(None, ge=1, description="Records kept at most "
                                    "(none: only max_bytes bounds it)")
    sample_interval_s: Positive = Field(
        5.0, description="Seconds between two snapshots of the endpoint's counters")


class EdgeOptions(_Model):
    """An edge site's agent, link, rollout policy and buffer limits (``sites.X.edge``).

    As written in YAML::

        sites:
          shop:
            tier: edge
            capacity: {cpu: 4, memory: 8GiB}
            edge:
              agent: {address: 10.0.3.7, cert: ~/.config/hybridnb/shop-agent.pem,
                      token_file: ~/.config/hybridnb/shop-agent.token}
              link: {bandwidth_mbps: 20, availability: 0.95, max_outage_s: 7200}
              rollout: {watch_s: 15, keep_versions: 3}
              buffer: {max_bytes: 256MiB, sample_interval_s: 5}
    """

    agent: EdgeAgentOptions | None = Field(
        None, description="The site's agent; none: the site is only rendered, not reached")
    link: EdgeLink = Field(default_factory=EdgeLink)
    rollout: EdgeRolloutPolicy = Field(default_factory=EdgeRolloutPolicy)
    buffer: EdgeBufferLimits = Field(default_factory=EdgeBufferLimits)


class Site(_Model):
    """Where compute lives: tier, backend and its options, capacity, cost, network."""

    name: str = Field("", description="Set from its key under sites:")
    tier: Tier = Field("private", description="private, public or edge: what the planner "
                       "and the TLS default go by")
    backend: str = Field("local", description="How its clusters start: local, scheduler, "
                         "ssh, kubernetes, gateway, or a plug-in's name")
    local: LocalOptions | None = None
    scheduler: SchedulerOptions | None = None
    ssh: SSHOptions | None = None
    kubernetes: KubernetesOptions | None = None
    gateway: GatewayOptions | None = None
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="Options of a plug-in backend")
    capacity: Capacity
    cost: Cost = Field(default_factory=Cost)
    network: Network = Field(default_factory=Network)
    labels: dict[str, str] = Field(default_factory=dict, description="Kubernetes node "
                                   "labels of its pods (hub profiles' node selectors)")
    # Residency is opt-in: a site holds only public data unless it says otherwise.
    classifications: list[str] = Field(default_factory=lambda: ["public"], description=(
        "Data classifications that may live and be processed here"))
    preemptible: bool = Field(False, description="Its machines may be taken back: plans "
                              "rank it after equal sites that are not")
    edge: EdgeOptions | None = Field(
        None, description="Agent, link, rollout policy and buffer of an edge site "
        "(tier: edge only)")
    tls: bool | None = Field(
        None, description="Encrypt and authenticate Dask traffic with TLS; default (null): "
        "on for public and edge sites and wherever the site's processes listen beyond "
        "loopback. false there warns")
    _tls_given: bool | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _default_tls(self) -> Site:
        # The one place TLS's default lives, decided once every layer is merged. Dask has
        # no authentication but TLS client certificates: whoever reaches a plain tcp://
        # scheduler or worker runs code as the user. So TLS is on wherever the site's
        # processes listen beyond loopback (ssh hosts, a remote scheduler, Kubernetes
        # pods, a local site given a real host to join a hybrid cluster), whatever its
        # tier, and on every public or edge site, whose traffic leaves the private
        # network. A private local site bound to 127.0.0.1 (or in-process) stays plain
        # tcp: only this machine reaches it, which the project's rule ("nothing beyond
        # loopback without auth") accepts, and TLS would encrypt every worker-to-worker
        # transfer for no exposure. Loopback is not private on a machine shared with
        # other users (a JupyterHub with local spawners): set ``tls: true`` there.
        self._tls_given = self.tls
        if self.tls is None:
            self.tls = self.tier != "private" or self.listens_beyond_loopback
        return self

    @property
    def listens_beyond_loopback(self) -> bool:
        """Whether this site's Dask processes listen on an address other than loopback.

        Pure (no DNS): a host name other than ``localhost`` counts as beyond loopback,
        and so does every Kubernetes or plug-in site.

        >>> Site(backend="ssh", ssh={"hosts": ["10.0.0.5"]},
        ...      capacity={"cpu": 1, "memory": 1}).listens_beyond_loopback
        True
        >>> Site(capacity={"cpu": 1, "memory": 1}).listens_beyond_loopback  # local
        False
        """
        if self.backend == "local":
            host = self.local.host if self.local is not None else None
            return host is not None and not is_loopback(host)
        if self.backend == "scheduler":
            return self.scheduler is None or not address_is_loopback(self.scheduler.address)
        if self.backend == "ssh":
            return self.ssh is None or not all(is_loopback(h) for h in self.ssh.hosts)
        return True

    @property
    def tls_opted_out(self) -> bool:
        """Whether the configuration says ``tls: false`` for this site."""
        return self._tls_given is False

    @property
    def link_mbps(self) -> float:
        """The edge link's bandwidth (``edge.link``), else the site's network bandwidth."""
        given = self.edge.link.bandwidth_mbps if self.edge is not None else None
        return given if given is not None else self.network.bandwidth_mbps

    def allows(self, classification: str) -> bool:
        """Whether data of ``classification`` may live and be processed here."""
        return classification in self.classifications

    def backend_options(self) -> Any:
        """The options block of this site's backend (a model, or ``options`` for plug-ins)."""
        if self.backend in BUILTIN_BACKENDS:
            return getattr(self, self.backend)
        return self.options

    def __repr__(self) -> str:
        gpu = f", gpu={self.capacity.gpu}" if self.capacity.gpu else ""
        return (f"Site({self.name!r}, tier={self.tier}, backend={self.backend}, "
                f"cpu={self.capacity.cpu:g}, memory={format_bytes(self.capacity.memory)}{gpu})")

    __str__ = __repr__


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 maybe in brackets) is loopback.

    >>> is_loopback("127.0.0.1"), is_loopback("[::1]"), is_loopback("10.0.0.5")
    (True, True, False)
    """
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def address_is_loopback(address: str) -> bool:
    """Whether a Dask address (``tcp://host:port``, ``inproc://…``) stays on this machine.

    >>> address_is_loopback("tcp://127.0.0.1:8786"), address_is_loopback("tls://sched:8786")
    (True, False)
    """
    if address.startswith("inproc://"):
        return True
    try:
        host = urlsplit(address if "://" in address else f"tcp://{address}").hostname
    except ValueError:
        return False
    return host is not None and is_loopback(host)


class Dataset(_Model):
    """Where data lives and how sensitive it is."""

    name: str = Field("", description="Set from its key under datasets:")
    site: str = Field(description="The site it lives on")
    path: str = Field(description="Path or URL on the site")
    size: ByteSize | None = Field(None, description="Its size, for egress cost and "
                                  "transfer time in plans")
    format: str = Field("parquet", description="parquet, csv, npy, zarr, images, builtin, …")
    classification: str = Field("internal", description="How sensitive it is: one of "
                                "policies.classifications")

    def __repr__(self) -> str:
        size = f", size={format_bytes(self.size)}" if self.size is not None else ""
        return (f"Dataset({self.name!r}, site={self.site}, "
                f"classification={self.classification}{size})")

    __str__ = __repr__


class Budget(_Model):
    """Spending limits in US dollars; None means no limit."""

    per_job: NonNegative | None = Field(None, description="Most a job's estimated cost may "
                                        "be; dearer sites are rejected")
    monthly: NonNegative | None = Field(None, description="Monthly limit (recorded; not "
                                        "checked by the planner yet)")


class Policies(_Model):
    """Team-wide rules for placement and residency."""

    placement: Literal["private-first", "cheapest", "fastest"] = Field(
        "private-first", description="How feasible sites are ranked")
    burst: bool = Field(True, description="Burst to public sites when private capacity is short")
    budget: Budget = Field(default_factory=Budget)
    classifications: list[str] = Field(
        default_factory=lambda: ["public", "internal", "confidential", "pii"],
        description="Known data classifications, least sensitive first")
    scheduler_site: str | None = Field(
        None, description="Site of a hybrid cluster's scheduler; default: the first private site")


class Jobs(_Model):
    """Notebook jobs (``hybridnb jobs``, the JupyterLab sidebar): the per-user queue."""

    max_concurrent: int = Field(2, ge=1, description="Jobs of one user running at once; "
                                "more wait in the queue")


class Images(_Model):
    """Where hybridnb's own container images live (:mod:`hybridnb.config.images`)."""

    registry: str = Field(DEFAULT_REGISTRY, pattern=REGISTRY_PATTERN,
                          description="Registry and path of hybridnb's images, e.g. "
                          "registry.example.com/ml (images are REGISTRY/KIND:TAG)")
    tag: str | None = Field(None, pattern=TAG_PATTERN,
                            description="Tag of hybridnb's images; default: the package version")

    def image(self, kind: str, variant: str = "cpu") -> str:
        """The reference of hybridnb's ``kind`` image here (see :func:`default_image`)."""
        return default_image(kind, variant=variant, registry=self.registry, tag=self.tag)


class HybridConfig(_Model):
    """The merged, validated configuration.

    ``sources`` maps each dotted key path to where its value came from (a file and line,
    the built-in default, or arguments); :meth:`source_of` looks one up.
    """

    sites: dict[str, Site] = Field(default_factory=dict)
    datasets: dict[str, Dataset] = Field(default_factory=dict)
    policies: Policies = Field(default_factory=Policies)
    jobs: Jobs = Field(default_factory=Jobs)
    teams: Teams | None = Field(None, description="Groups, quotas and the hub service "
                                "(a JupyterHub for teams: hybridnb.config.teams)")
    images: Images = Field(default_factory=Images)

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)
    _layers: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _names_from_keys(self) -> HybridConfig:
        for key, site in self.sites.items():
            site.name = site.name or key
        for key, data in self.datasets.items():
            data.name = data.name or key
        for site in self.sites.values():  # unless a site names its image: hybridnb's worker
            if site.backend == "kubernetes" and site.kubernetes is None:
                site.kubernetes = KubernetesOptions()
            if site.kubernetes is not None and "image" not in site.kubernetes.model_fields_set:
                site.kubernetes.image = self.images.image(
                    "worker", "cuda" if site.capacity.gpu else "cpu")
        return self

    @property
    def sources(self) -> dict[str, str]:
        return dict(self._sources)

    @property
    def layers(self) -> list[str]:
        """The layers that were read, lowest first."""
        return list(self._layers)

    def source_of(self, path: str) -> str:
        """Where the value at dotted ``path`` (or its nearest parent) came from.

        Values nobody set come from the models' defaults and say ``"default"``.
        """
        parts = path.split(".")
        while parts:
            hit = self._sources.get(".".join(parts))
            if hit:
                return hit
            parts.pop()
        return "default"

    def site(self, name: str) -> Site:
        """The site called ``name``; a clear error naming the known sites otherwise."""
        from ..errors import UsageError, did_you_mean

        try:
            return self.sites[name]
        except KeyError:
            known = ", ".join(sorted(self.sites)) or "none"
            raise UsageError(
                f"unknown site '{name}'{did_you_mean(name, self.sites)}; configured sites: "
                f"{known}. Declare it under 'sites:' in hybridnb.yaml") from None

    def dataset(self, name: str) -> Dataset:
        """The dataset called ``name``; a clear error naming the known datasets otherwise."""
        from ..errors import UsageError, did_you_mean

        try:
            return self.datasets[name]
        except KeyError:
            known = ", ".join(sorted(self.datasets)) or "none"
            raise UsageError(
                f"unknown dataset '{name}'{did_you_mean(name, self.datasets)}; configured "
                f"datasets: {known}. Declare it under 'datasets:' in hybridnb.yaml") from None

    def restrict(self, user: str) -> HybridConfig:
        """The configuration as ``user`` sees it inside a team's hub (``teams:``).

        Only the sites of their groups remain, each holding only the classifications
        their groups may handle; datasets on sites they cannot see are gone. Without
        ``teams:`` it is the configuration itself.

        >>> from hybridnb.config import load_config
        >>> config = load_config(overrides={"teams": {"groups": {"g": {
        ...     "members": ["ann"], "sites": ["local"], "classifications": ["public"]}}}})
        >>> sorted(config.restrict("ann").sites), sorted(config.restrict("zed").sites)
        (['local'], [])
        """
        teams = self.teams
        if teams is None:
            return self
        visible = teams.sites_for(user)
        classes = set(teams.classifications_for(user))
        sites = {name: site.model_copy(update={
            "classifications": [c for c in site.classifications if c in classes]})
            for name, site in self.sites.items() if name in visible}
        datasets = {name: d for name, d in self.datasets.items() if d.site in sites}
        return self.model_copy(update={"sites": sites, "datasets": datasets})

    def __repr__(self) -> str:
        return (f"HybridConfig(sites={list(self.sites)}, datasets={list(self.datasets)}, "
                f"placement={self.policies.placement})")

    __str__ = __repr__

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(
            f"<tr><td>{escape(s.name)}</td><td>{s.tier}</td><td>{escape(s.backend)}</td>"
            f"<td>{s.capacity.cpu:g}</td><td>{format_bytes(s.capacity.memory)}</td>"
            f"<td>{s.capacity.gpu}</td><td>{escape(', '.join(s.classifications))}</td></tr>"
            for s in self.sites.values())
        head = "".join(f"<th>{h}</th>" for h in
                       ("site", "tier", "backend", "cpu", "memory", "gpu", "data allowed"))
        return (f"<table><caption>hybridnb sites</caption><tr>{head}</tr>{rows}</table>"
                f"<p>{len(self.datasets)} dataset(s); layers: "
                f"{escape(' → '.join(self._layers))}</p>")

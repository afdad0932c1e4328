"""The ``teams:`` section: groups, what each may use, quotas, and the hub service.

A JupyterHub admin writes it into the team's ``hybridnb.yaml`` (the
``/etc/hybridnb/hybridnb.yaml`` layer; ``hybridnb hub render`` mounts that file into
every user's server)::

    teams:
      contact: "#ml-platform on chat, or ml-platform@example.org"
      admins: [carol]                    # see every user's usage on the admin page
      service: {url: "http://127.0.0.1:10101", on_outage: refuse}
      sizes:
        small: {cpu: 2, memory: 4GiB}
        gpu: {cpu: 8, memory: 32GiB, gpu: 1}
      groups:
        research:
          members: [alice, carol]
          sites: [local, gateway]        # the sites its members see
          classifications: [public, internal]
          sizes: [small]
          per_user: {clusters: 1, workers: 4, cpus: 8, endpoints: 2, jobs: 2}
          total: {clusters: 10, gpu_hours_per_day: 0}
        clinical:
          members: [bob]
          sites: [local]
          classifications: [public, internal, pii]
          sizes: [small, gpu]
          per_user: {clusters: 2, gpus: 1, gpu_hours_per_day: 8}
      users:
        bob: {per_user: {clusters: 3}}    # one user's own quota, above the group's

Quotas are limits on what is running at once (``clusters``, ``workers``, ``cpus``,
``gpus``, ``endpoints``, ``jobs``, ``runs``) and on ``gpu_hours_per_day``; a missing
one means no limit. The hub service (:mod:`hybridnb.hub`) enforces them; users'
hybridnb asks it before each start (:func:`hybridnb.team.admit`).

Inside a hub (``$JUPYTERHUB_USER`` set)
:meth:`HybridConfig.restrict <hybridnb.config.HybridConfig.restrict>` narrows the configuration to
what the user's groups may use: other sites disappear and each site keeps only the
classifications the user may handle, so the planner, the sidebar and every start follow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .units import parse_bytes

if TYPE_CHECKING:
    from .problems import ConfigProblem

NonNegative = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0)]
ByteSize = Annotated[int, BeforeValidator(parse_bytes), Field(ge=0)]

#: What a quota limits, in the order messages list them.
QUOTA_KEYS = ("clusters", "workers", "cpus", "gpus", "endpoints", "jobs", "runs",
              "gpu_hours_per_day")
#: Environment variable naming the hub user (JupyterHub sets it in single-user servers).
USER_ENV = "JUPYTERHUB_USER"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class Quota(_Model):
    """Limits; ``None`` (absent) means no limit."""

    clusters: Count | None = Field(None, description="Dask clusters running at once")
    workers: Count | None = Field(None, description="Dask workers across running clusters")
    cpus: NonNegative | None = Field(None, description="CPU cores across everything running")
    gpus: Count | None = Field(None, description="GPUs across everything running")
    endpoints: Count | None = Field(None, description="Model endpoints running at once")
    jobs: Count | None = Field(None, description="Notebook jobs running at once")
    runs: Count | None = Field(None, description="Training runs running at once")
    gpu_hours_per_day: NonNegative | None = Field(
        None, description="GPU-hours used since midnight UTC, running work included")

    def limits(self) -> dict[str, float]:
        """The limits that are set.

        >>> Quota(clusters=1, cpus=8).limits()
        {'clusters': 1, 'cpus': 8.0}
        """
        return {k: v for k in QUOTA_KEYS if (v := getattr(self, k)) is not None}


class Size(_Model):
    """A size of single-user server (a profile of the hub's spawner)."""

    cpu: Annotated[float, Field(gt=0)] = Field(description="CPU cores (the limit)")
    memory: ByteSize = Field(description="Memory limit, e.g. 8GiB")
    gpu: Count = 0
    cpu_guarantee: NonNegative | None = Field(
        None, description="Cores guaranteed; default half the limit")
    memory_guarantee: ByteSize | None = Field(
        None, description="Memory guaranteed; default half the limit")
    description: str = Field("", description="Shown beside the size in the hub's profiles")


class Group(_Model):
    """A group of users: what its members may use, and its quotas."""

    members: list[str] = Field(default_factory=list, description="Hub user names")
    sites: list[str] = Field(min_length=1, description="Sites its members see and use")
    classifications: list[str] = Field(
        default_factory=lambda: ["public"],
        description="Data classifications its members may handle")
    sizes: list[str] = Field(default_factory=list,
                             description="Server sizes (teams.sizes) its members may pick")
    per_user: Quota = Field(default_factory=Quota, description="Each member's quota")
    total: Quota = Field(default_factory=Quota, description="The whole group's quota")
    contact: str | None = Field(None, description="Who to ask for more; default "
                                "teams.contact")


class UserEntry(_Model):
    """One user's own settings, above their groups'."""

    groups: list[str] = Field(default_factory=list, description="More groups of this user")
    per_user: Quota = Field(default_factory=Quota, description="This user's quota")


class Service(_Model):
    """Where users' hybridnb finds the hub service, and what it does without it."""

    name: str = Field("hybridnb", pattern=r"^[a-z][a-z0-9-]*$",
                      description="The service's name in the hub (/services/NAME/)")
    url: str | None = Field(None, pattern=r"^https?://.+",
                            description="URL users' servers reach the service at, e.g. "
                            "http://127.0.0.1:10101; none: no service (outside a hub)")
    listen: str = Field("127.0.0.1:10101", pattern=r"^[^:]+:[0-9]{1,5}$",
                        description="host:port the service listens on")
    timeout: Annotated[float, Field(gt=0)] = Field(
        2.0, description="Seconds a start waits for the service")
    on_outage: Literal["refuse", "local-only"] = Field(
        "refuse", description="When the service is down: refuse new starts, or allow "
        "starts on the local site only (running work is never stopped)")
    database: str | None = Field(
        None, description="SQLAlchemy URL of the ledger; default SQLite in the "
        "service's $HYBRIDNB_HOME (postgresql://... for PostgreSQL)")
    managed: bool = Field(True, description="The hub starts the service (else it "
                          "runs apart and registers by URL)")
    api_token_env: str = Field(
        "HYBRIDNB_HUB_SERVICE_TOKEN", pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable holding the service's API token (in the "
        "hub's and the service's environment; never in a file)")
    image: str = Field("hybridnb/hybridnb:latest",
                       description="Image of the service's pod (zero-to-jupyterhub)")
    reap_after: NonNegative = Field(
        300.0, description="Seconds after which a start never confirmed is forgotten")


class Teams(_Model):
    """Groups, their sites, classifications and quotas; admins; the hub service."""

    contact: str = Field("your JupyterHub admin",
                         description="Who users ask for more quota or access")
    admins: list[str] = Field(default_factory=list,
                              description="Users who see everyone's usage")
    groups: dict[str, Group] = Field(min_length=1)
    users: dict[str, UserEntry] = Field(default_factory=dict)
    sizes: dict[str, Size] = Field(default_factory=dict)
    service: Service = Field(default_factory=Service)
    image: str | None = Field(None, description="Single-user image for rendered "
                              "profiles; default the chart's")

    # -- who is in what -------------------------------------------------------------

    def groups_of(self, user: str) -> list[str]:
        """The groups ``user`` belongs to, in configuration order.

        >>> t = Teams(groups={"a": {"members": ["x"], "sites": ["local"]},
        ...                   "b": {"sites": ["local"]}}, users={"x": {"groups": ["b"]}})
        >>> t.groups_of("x"), t.groups_of("nobody")
        (['a', 'b'], [])
        """
        extra = self.users[user].groups if user in self.users else []
        return [g for g, group in self.groups.items() if user in group.members or g in extra]

    def members(self) -> list[str]:
        """Every user named anywhere in the section, sorted."""
        names = {m for g in self.groups.values() for m in g.members}
        return sorted(names | set(self.users) | set(self.admins))

    def sites_for(self, user: str) -> list[str]:
        """Sites ``user`` may use (their groups', in order)."""
        out: list[str] = []
        for g in self.groups_of(user):
            out += [s for s in self.groups[g].sites if s not in out]
        return out

    def classifications_for(self, user: str) -> list[str]:
        out: list[str] = []
        for g in self.groups_of(user):
            out += [c for c in self.groups[g].classifications if c not in out]
        return out

    def charged_group(self, user: str, site: str) -> str | None:
        """The group a start on ``site`` counts against: the first that allows the site."""
        return next((g for g in self.groups_of(user) if site in self.groups[g].sites), None)

    def user_quota(self, user: str, group: str | None) -> dict[str, float]:
        """``user``'s limits: the group's ``per_user``, overridden by ``users.NAME``."""
        limits = dict(self.groups[group].per_user.limits()) if group else {}
        if user in self.users:
            limits.update(self.users[user].per_user.limits())
        return limits

    def contact_for(self, group: str | None) -> str:
        if group and self.groups[group].contact:
            return str(self.groups[group].contact)
        return self.contact


def hub_user(environ: Mapping[str, str]) -> str | None:
    """The hub user this process serves (``$JUPYTERHUB_USER``), if any."""
    return environ.get(USER_ENV) or None


# -- validation across keys -------------------------------------------------------------


def cross_checks(data: Mapping[str, Any], problem: Callable[..., ConfigProblem],
                 known_classes: list[str]) -> list[ConfigProblem]:
    """Problems of ``teams:`` that one key cannot know alone: unknown groups, sites,
    classifications and sizes, a user in no group. Defensive on untyped data, like
    :func:`hybridnb.config.validate.cross_checks`."""
    from ..errors import did_you_mean

    raw = data.get("teams")
    if not isinstance(raw, Mapping):
        return []
    out: list[ConfigProblem] = []
    sites = _mapping(data.get("sites"))
    groups = _mapping(raw.get("groups"))
    sizes = _mapping(raw.get("sizes"))
    users = _mapping(raw.get("users"))
    members: set[str] = set()
    for gname, graw in groups.items():
        group = _mapping(graw)
        at = ("teams", "groups", gname)
        members.update(str(m) for m in _sequence(group.get("members")))
        for i, site in enumerate(_sequence(group.get("sites"))):
            if site not in sites:
                out.append(problem((*at, "sites", i),
                                   f"group '{gname}' names unknown site {site!r}"
                                   f"{did_you_mean(site, sites)}",
                                   f"use one of the configured sites: {', '.join(sites)}"))
        for i, cls in enumerate(_sequence(group.get("classifications"))):
            if cls not in known_classes:
                out.append(problem((*at, "classifications", i),
                                   f"unknown classification {cls!r}"
                                   f"{did_you_mean(cls, known_classes)}",
                                   f"use one of {', '.join(known_classes)} or add it to "
                                   "policies.classifications"))
        for i, size in enumerate(_sequence(group.get("sizes"))):
            if size not in sizes:
                out.append(problem((*at, "sizes", i), f"unknown size {size!r}"
                                   f"{did_you_mean(size, sizes)}",
                                   "declare it under teams.sizes"
                                   + (f" or use one of {', '.join(sizes)}" if sizes else "")))
    for uname, uraw in users.items():
        for i, gname in enumerate(_sequence(_mapping(uraw).get("groups"))):
            if gname not in groups:
                out.append(problem(("teams", "users", uname, "groups", i),
                                   f"user '{uname}' names unknown group {gname!r}"
                                   f"{did_you_mean(gname, groups)}",
                                   f"use one of the groups: {', '.join(groups)}"))
            else:
                members.add(uname)
    for uname in users:
        if uname not in members:
            out.append(problem(("teams", "users", uname), f"user '{uname}' is in no group",
                               f"add '{uname}' to the members of a group under "
                               "teams.groups, or give it 'groups: [NAME]'"))
    for i, admin in enumerate(_sequence(raw.get("admins"))):
        if str(admin) not in members:
            out.append(problem(("teams", "admins", i), f"admin '{admin}' is in no group",
                               f"add '{admin}' to the members of a group under teams.groups"))
    return out


def _mapping(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def _sequence(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []

"""Autoscaling on in-flight requests per replica, with upscale and downscale delays.

The decision is a pure function of what was observed and when, so it is tested
without processes; the deployment samples the router's in-flight counts and applies
the answer. Like Kubernetes' HPA and KServe's autoscaler: scale up once load stays
above the target for ``upscale_delay_s``, down once it stays below half the target
for ``downscale_delay_s`` (the gap keeps it from flapping).

>>> a = Autoscaler(AutoscalePolicy(min=1, max=3, target_in_flight=2, upscale_delay_s=1))
>>> a.desired(current=1, in_flight=8, t=0.0), a.desired(current=1, in_flight=8, t=1.5)
(1, 3)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import UsageError


@dataclass(frozen=True)
class AutoscalePolicy:
    """Bounds, target and delays of the autoscaler: the one place their defaults live.

    Parameters
    ----------
    min, max:
        Replica bounds.
    target_in_flight:
        Requests in flight per replica the autoscaler aims for.
    upscale_delay_s, downscale_delay_s:
        How long load must stay high (low) before replicas are added (removed).
    interval_s:
        How often the router's in-flight count is sampled.
    """

    min: int = 1
    max: int = 4
    target_in_flight: float = 8.0
    upscale_delay_s: float = 2.0
    downscale_delay_s: float = 10.0
    interval_s: float = 0.25

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.max:
            raise UsageError(f"autoscale needs 1 <= min <= max, got min={self.min}, "
                             f"max={self.max}")
        if self.target_in_flight <= 0 or self.interval_s <= 0:
            raise UsageError("autoscale target_in_flight and interval_s must be positive")
        if self.upscale_delay_s < 0 or self.downscale_delay_s < 0:
            raise UsageError("autoscale delays must not be negative")

    @classmethod
    def coerce(cls, value: AutoscalePolicy | Mapping[str, Any] | None
               ) -> AutoscalePolicy | None:
        """A policy from a dict (unknown keys are a :class:`UsageError`), or ``None``."""
        if value is None or isinstance(value, AutoscalePolicy):
            return value
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise UsageError(f"unknown autoscale key(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(known))}")
        return cls(**dict(value))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Autoscaler:
    """Turns samples of in-flight requests into a desired replica count."""

    def __init__(self, policy: AutoscalePolicy):
        self.policy = policy
        self._high_since: float | None = None
        self._low_since: float | None = None
        self.peak = 0.0

    def desired(self, current: int, in_flight: float, t: float) -> int:
        """The replica count to run, given ``in_flight`` requests in total at time ``t``."""
        p = self.policy
        per = in_flight / max(current, 1)
        want = min(p.max, max(p.min, math.ceil(in_flight / p.target_in_flight)))
        if per > p.target_in_flight:
            self._low_since = None
            if self._high_since is None:
                self._high_since, self.peak = t, in_flight
            else:
                self.peak = max(self.peak, in_flight)
            if t - self._high_since >= p.upscale_delay_s and current < p.max:
                self._high_since = None
                # Size for the peak seen while waiting: one step, not one replica a delay.
                return min(p.max, max(current + 1, want,
                                      math.ceil(self.peak / p.target_in_flight)))
        elif per < p.target_in_flight / 2:
            self._high_since = None
            self._low_since = t if self._low_since is None else self._low_since
            if t - self._low_since >= p.downscale_delay_s and current > p.min:
                self._low_since = t  # one replica per delay: go down gently
                return current - 1
        else:
            self._high_since = self._low_since = None
        return min(p.max, max(p.min, current))

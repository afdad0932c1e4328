"""Bearer tokens for endpoints.

Loopback-only servers may run open; a server bound to any other address must have a
token, because anyone on the network could otherwise use (and load) the model.

>>> check_bearer("Bearer s3cret", "s3cret"), check_bearer("Bearer nope", "s3cret")
(True, False)
>>> resolve_token(None, "127.0.0.1", env={}) is None
True
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Mapping

from ..errors import UsageError

TOKEN_ENV = "HYBRIDNB_ENDPOINT_TOKEN"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(token: str | None, host: str,
                  env: Mapping[str, str] | None = None) -> str | None:
    """The token to require: ``token``, else ``$HYBRIDNB_ENDPOINT_TOKEN``, else none.

    Raises :class:`UsageError` when there is none and ``host`` is not loopback.
    """
    env = os.environ if env is None else env
    token = token or env.get(TOKEN_ENV) or None
    if token is None and not is_loopback(host):
        raise UsageError(f"refusing to serve on {host} without a token: pass --token or "
                         f"set {TOKEN_ENV} (only loopback addresses may run open)")
    return token


def check_bearer(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (constant-time compare)."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())

"""Who may call the node: a bearer token, or nobody-checks only on loopback by explicit choice.

The policy is checked before the server binds: without a token the node refuses to start
unless it is bound to a loopback address *and* ``--allow-anonymous`` was given, so an open
node on a network interface can never happen by omission. Tokens are compared in constant
time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hmac
import ipaddress

from edgeinfer.errors import EdgeInferError
from edgeinfer.serve.config import TOKEN_ENV, NodeConfig

__all__ = ["PUBLIC_PATHS", "AccessPolicy", "access_policy", "is_loopback", "policy_for"]

#: paths anyone may read: probes, the static dashboard shell (it holds no data) and the spec
PUBLIC_PATHS = ("/healthz", "/readyz", "/openapi.json", "/", "/dashboard", "/static/")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1 or 'localhost')."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class AccessPolicy:
    """The node's decision for each request: which paths are public, and the token check."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    @property
    def anonymous(self) -> bool:
        """Whether requests are accepted without a token."""
        return self.token is None

    @staticmethod
    def is_public(path: str) -> bool:
        """Whether ``path`` needs no token."""
        return path in PUBLIC_PATHS[:-1] or path.startswith(PUBLIC_PATHS[-1])

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries the token."""
        if self.token is None:
            return True
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(value.strip().encode(), self.token.encode())


def policy_for(config: NodeConfig) -> AccessPolicy:
    """The access policy of ``config``; raises EdgeInferError when the node must not start."""
    return access_policy(config.resolved_token(), config.allow_anonymous, config.host)


def access_policy(token: str | None, allow_anonymous: bool, host: str) -> AccessPolicy:
    """The policy for a server bound to ``host`` (``edgeinfer serve``, ``split-node``): the
    token when given, else anonymous only by explicit choice on loopback; raises
    EdgeInferError when the server must not start."""
    if token is not None:
        if len(token) < 8:
            raise EdgeInferError("the API token is shorter than 8 characters: use a longer one")
        return AccessPolicy(token)
    if not allow_anonymous:
        raise EdgeInferError(
            f"no API token: give --token-file (or set {TOKEN_ENV}); anonymous access needs "
            "--allow-anonymous and a loopback --host"
        )
    if not is_loopback(host):
        raise EdgeInferError(
            f"--allow-anonymous on {host} would open the node to the network: bind to "
            "127.0.0.1 or give --token"
        )
    return AccessPolicy(None)

"""Who a request is: a voter (the ``qwenrl_voter`` cookie) or the admin (a password).

Every client gets a random voter id in the ``qwenrl_voter`` cookie (``app.api`` sets it; the UI's
handlers read it). The admin has one password, signed login tokens for a cookie, and a lockout
on guesses: the REST API (``Authorization: Bearer PASSWORD`` or the login cookie) and the
Training tab (``app.tabs.training``) both ask :class:`AdminAuth`; wrong passwords count against
the client that sent them (:class:`app.limits.AdminLockout`).
"""

from __future__ import annotations

import hmac
import re
import secrets
import time

from .errors import RateLimited
from .limits import AdminLockout, LimitExceeded

VOTER_COOKIE = "qwenrl_voter"
_VOTER_ID = re.compile(r"^[0-9a-f]{32}$")


def is_voter_id(value: object) -> bool:
    """Whether ``value`` is a voter id as the studio mints them (32 hex digits)."""
    return isinstance(value, str) and _VOTER_ID.match(value) is not None


class AdminAuth:
    """The admin password, and signed login tokens for a cookie (valid ``ttl_s``); wrong
    passwords count against the client that sent them (``lockout``, see :meth:`verify`)."""

    def __init__(self, password: str | None, ttl_s: float = 12 * 3600, lockout: AdminLockout | None = None):
        self.password = password or None
        self.ttl_s = ttl_s
        self.lockout = lockout or AdminLockout()
        self._key = secrets.token_bytes(32)  # tokens die with the server

    def verify(self, candidate: str | None, client: str | None) -> bool:
        """:meth:`check_password` for a login from ``client`` (an address): RateLimited while the
        client is locked out, even with the right password; a wrong one counts towards a lockout."""
        client = client or "unknown"
        try:
            self.lockout.check(client)
        except LimitExceeded as exc:
            raise RateLimited(exc.retry_after, str(exc)) from None
        if self.check_password(candidate):
            self.lockout.succeeded(client)
            return True
        if self.enabled:
            self.lockout.failed(client)
        return False

    @property
    def enabled(self) -> bool:
        return self.password is not None

    def check_password(self, candidate: str | None) -> bool:
        if not self.enabled or not isinstance(candidate, str):
            return False
        return hmac.compare_digest(candidate.encode(), self.password.encode())  # type: ignore[union-attr]

    def issue_token(self) -> str:
        expiry = str(int(time.time() + self.ttl_s))
        return f"{expiry}.{hmac.new(self._key, expiry.encode(), 'sha256').hexdigest()}"

    def check_token(self, token: str | None) -> bool:
        if not self.enabled or not token or "." not in token:
            return False
        expiry, _, mac = token.partition(".")
        good = hmac.new(self._key, expiry.encode(), "sha256").hexdigest()
        return hmac.compare_digest(mac, good) and expiry.isdigit() and int(expiry) > time.time()

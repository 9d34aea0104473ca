"""The studio's limits on what one client may ask: request rates and sizes, admin guesses, new voters, open battles.

Each is a small object over in-memory state (per process, like the rate limits' token
buckets), with its numbers as settings:

* :class:`RequestRates` — token buckets per voter and per address: how often a client may ask
  for a battle or vote.
* :class:`BodyLimit` — an ASGI middleware that answers 413 before anything parses a body
  larger than its limit (the REST API's bodies are a few hundred bytes; the UI's events a few
  kilobytes).
* :class:`AdminLockout` — after ``max_failures`` wrong admin passwords from one client within
  ``window_s``, that client is locked out for ``lockout_s`` (429 with Retry-After, even with the
  right password), and the lockout is logged.
* :class:`VoterLimits` — new voters per address (a hard limit, so that dropping the cookie does
  not mint voters without end), voters created in a burst from one address (their votes are
  flagged ``burst``, stored, and left out of the default boards), and a cap on battles served
  but not voted on, per voter and per address (so that a client that never votes back cannot
  fill the store with battles).

Nothing here imports gradio, fastapi or torch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

import orjson

log = logging.getLogger("qwenrl.studio")

#: the REST API's bodies (a vote, a live prompt, a login, a job) are far below this
API_MAX_BYTES = 16 * 1024
#: the UI's event payloads (a prompt, the job fields table) are far below this
OTHER_MAX_BYTES = 1024 * 1024
#: how much of a refused input a refusal may quote
EXCERPT_CHARS = 60
BURST_FLAG = "burst"
#: new voters one address may bring in 10 minutes (a team behind one NAT, or a load test of 32
#: clients run twice and a few more, stays under it; a script that drops its cookie does not)
NEW_VOTERS = 120
#: new voters from one address within a minute before the next ones' votes are flagged ``burst``
BURST_VOTERS = 16


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """A short quote of a refused input: its repr cut to ``limit`` characters, with its length."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(text) if isinstance(value, str) else text
    return f"{text[:limit]!r}… ({len(text):,} characters)"


class LimitExceeded(Exception):
    """A client over one of the limits; ``retry_after`` seconds until it may try again."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = max(0.0, float(retry_after))


# -- request rates ----------------------------------------------------------------------------


class TokenBucket:
    """Per-key token buckets (``rate`` per second, ``burst`` capacity), bounded in size."""

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000):
        self.rate, self.burst, self.max_keys = float(rate), float(burst), max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """0 if a token was taken, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return wait


class RequestRates:
    """How often one client may ask for a battle or vote: a token bucket per voter (``rate`` a
    second, ``burst`` at once) and a wider one per address."""

    def __init__(self, rate: float = 20.0, burst: float = 40.0, ip_rate: float = 2000.0, ip_burst: float = 4000.0) -> None:
        self.voter_bucket = TokenBucket(rate, burst)
        self.ip_bucket = TokenBucket(ip_rate, ip_burst)

    def check(self, voter: str, address: str | None = None) -> None:
        """Take a token for the voter (and its address); LimitExceeded when either bucket is empty."""
        wait = self.voter_bucket.take(voter)
        if not wait and address:
            wait = self.ip_bucket.take(address)
        if wait:
            raise LimitExceeded(f"too many requests; retry in {wait:.2f}s", wait)


# -- request bodies ---------------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: 413 for a request body over the limit, before the app reads it.

    A declared ``Content-Length`` over the limit is refused at once; a body sent in chunks is
    read up to the limit and refused as soon as it passes it. Routes under ``api_prefix`` get
    ``api_max_bytes``, the others ``other_max_bytes``.
    """

    def __init__(self, app, *, api_max_bytes: int = API_MAX_BYTES, other_max_bytes: int = OTHER_MAX_BYTES,
                 api_prefix: str = "/api/") -> None:
        self.app = app
        self.api_max_bytes = api_max_bytes
        self.other_max_bytes = other_max_bytes
        self.api_prefix = api_prefix

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.api_max_bytes if scope.get("path", "").startswith(self.api_prefix) else self.other_max_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await _too_large(send, declared, limit)
                    return
        # read the body here (it is small, or it is refused): the app sees it replayed
        messages, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                messages.append(message)
                break
            size += len(message.get("body", b""))
            if size > limit:
                await _too_large(send, size, limit, partial=True)
                return
            messages.append(message)
            if not message.get("more_body", False):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _too_large(send, size: int, limit: int, partial: bool = False) -> None:
    what = f"more than {limit:,}" if partial else f"{size:,}"
    body = orjson.dumps({"detail": f"request body too large: {what} bytes; at most {limit:,}"})
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# -- admin passwords --------------------------------------------------------------------------


class AdminLockout:
    """Wrong admin passwords per client: ``max_failures`` within ``window_s`` lock the client
    out for ``lockout_s``; each lockout is logged (``qwenrl.studio`` logger, warning)."""

    def __init__(self, max_failures: int = 5, window_s: float = 600.0, lockout_s: float = 300.0,
                 max_clients: int = 100_000) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, client: str, now: float | None = None) -> None:
        """Raise LimitExceeded while ``client`` is locked out."""
        now = time.monotonic() if now is None else now
        with self._lock:
            until = self._locked.get(client)
            if until is not None and until <= now:
                del self._locked[client]
                until = None
        if until is not None:
            raise LimitExceeded(f"too many wrong admin passwords from this client; try again in {until - now:.0f} s",
                                until - now)

    def failed(self, client: str, now: float | None = None) -> None:
        """Count a wrong password; the ``max_failures``-th within the window locks the client out."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._failures.pop(client, deque())
            while times and times[0] <= now - self.window_s:
                times.popleft()
            times.append(now)
            if len(times) >= self.max_failures:
                self._locked[client] = now + self.lockout_s
                times.clear()
                log.warning("admin lockout: %d wrong admin passwords from %s within %.0f s; locked out for %.0f s",
                            self.max_failures, client, self.window_s, self.lockout_s)
            self._failures[client] = times
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


# -- voters and battles -----------------------------------------------------------------------


@dataclass
class _Voter:
    address: str
    flags: str


class VoterLimits:
    """New voters per address, burst flags, and battles served but not voted on.

    * A voter is *new* the first time it asks for a battle (``known`` tells voters of an earlier
      run, e.g. from the store, which are not new). At most ``new_voters`` new voters per
      address within ``new_voter_window_s``: beyond, LimitExceeded (keep your cookie).
    * A new voter that arrives when ``burst_voters`` others appeared from the same address in
      the last ``burst_window_s`` is flagged ``burst``: its votes are stored with that flag and
      left out of the default boards (a team behind one address that arrives over a few
      minutes is not a burst; a script that drops its cookie on every vote is).
    * At most ``open_per_voter`` battles served to one voter, and ``open_per_address`` to one
      address, that have no vote yet and are younger than ``open_ttl_s``.
    """

    def __init__(self, *, new_voters: int = NEW_VOTERS, new_voter_window_s: float = 600.0, burst_voters: int = BURST_VOTERS,
                 burst_window_s: float = 60.0, open_per_voter: int = 20, open_per_address: int = 100,
                 open_ttl_s: float = 600.0, known: Callable[[str], bool] | None = None,
                 max_voters: int = 200_000) -> None:
        self.new_voters, self.new_voter_window_s = new_voters, new_voter_window_s
        self.burst_voters, self.burst_window_s = burst_voters, burst_window_s
        self.open_per_voter, self.open_per_address, self.open_ttl_s = open_per_voter, open_per_address, open_ttl_s
        self.known = known
        self.max_voters = max_voters
        self._voters: OrderedDict[str, _Voter] = OrderedDict()
        self._arrivals: dict[str, deque[float]] = {}  #: address → when its new voters appeared
        self._open: OrderedDict[str, tuple[str, str, float]] = OrderedDict()  #: battle → (voter, address, served), oldest first
        self._open_by_voter: dict[str, int] = {}
        self._open_by_address: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, voter: str, address: str | None, now: float | None = None) -> None:
        """Before serving ``voter`` a battle: register it if new, and check the open-battle
        caps. LimitExceeded (nothing recorded) when over a limit."""
        now = time.monotonic() if now is None else now
        address = address or "unknown"
        with self._lock:
            entry = self._voters.get(voter)
        if entry is None:
            known = bool(self.known and self.known(voter))  # a store lookup: outside the lock
            with self._lock:
                entry = self._voters.get(voter) or self._register(voter, address, known, now)
        with self._lock:
            self._expire(now)
            mine = self._open_by_voter.get(voter, 0)
            if mine >= self.open_per_voter:
                oldest = next(t for v, _, t in self._open.values() if v == voter)
                wait = oldest + self.open_ttl_s - now
                raise LimitExceeded(f"{mine} battles served to you have no vote yet: vote on one, "
                                    f"or wait {wait:.0f} s", wait)
            if self._open_by_address.get(entry.address, 0) >= self.open_per_address:
                oldest = next(t for _, a, t in self._open.values() if a == entry.address)
                raise LimitExceeded(f"{self.open_per_address} battles served to your address have no vote yet; "
                                    "vote on them first", oldest + self.open_ttl_s - now)

    def _register(self, voter: str, address: str, known: bool, now: float) -> _Voter:
        flags = ""
        if not known:
            arrivals = self._arrivals.setdefault(address, deque())
            while arrivals and arrivals[0] <= now - self.new_voter_window_s:
                arrivals.popleft()
            if len(arrivals) >= self.new_voters:
                wait = arrivals[0] + self.new_voter_window_s - now
                raise LimitExceeded(f"too many new voters from your address ({self.new_voters} in "
                                    f"{self.new_voter_window_s / 60:.0f} min): keep your cookie between requests; "
                                    f"retry in {wait:.0f} s", wait)
            recent = sum(1 for t in arrivals if t > now - self.burst_window_s)
            flags = BURST_FLAG if recent >= self.burst_voters else ""
            arrivals.append(now)
        entry = self._voters[voter] = _Voter(address, flags)
        while len(self._voters) > self.max_voters:
            self._voters.popitem(last=False)
        return entry

    def _expire(self, now: float) -> None:
        while self._open:
            battle_id, (_, _, served) = next(iter(self._open.items()))
            if served > now - self.open_ttl_s:
                break
            self._close(battle_id)

    def _close(self, battle_id: str) -> None:
        voter, address, _ = self._open.pop(battle_id)
        self._open_by_voter[voter] = self._open_by_voter.get(voter, 1) - 1
        if self._open_by_voter[voter] <= 0:
            del self._open_by_voter[voter]
        self._open_by_address[address] = self._open_by_address.get(address, 1) - 1
        if self._open_by_address[address] <= 0:
            del self._open_by_address[address]

    def served(self, voter: str, battle_id: str, now: float | None = None) -> None:
        """A battle was served to ``voter`` (after :meth:`admit`)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            entry = self._voters.get(voter)
            address = entry.address if entry is not None else "unknown"
            self._open[battle_id] = (voter, address, now)
            self._open_by_voter[voter] = self._open_by_voter.get(voter, 0) + 1
            self._open_by_address[address] = self._open_by_address.get(address, 0) + 1

    def voted(self, voter: str, battle_id: str) -> None:
        """``voter`` voted on ``battle_id``: it is no longer open."""
        with self._lock:
            if battle_id in self._open:
                self._close(battle_id)

    def flags(self, voter: str) -> str:
        """The flags this voter's votes carry: ``burst`` or empty."""
        with self._lock:
            entry = self._voters.get(voter)
        return entry.flags if entry is not None else ""

    def vote_flags(self, voter: str) -> list[str]:
        """The flags a vote of ``voter`` is stored with (``burst`` for a voter created in a burst)."""
        return [BURST_FLAG] if self.flags(voter) == BURST_FLAG else []

"""The studio's refusals: what the arena will not do, with the HTTP status that fits.

The REST API answers an ``ArenaError`` with its ``status`` (and a ``RateLimited`` with a
Retry-After header); the UI's handlers show its message. Nothing here imports anything.
"""

from __future__ import annotations


class ArenaError(ValueError):
    """A request the arena refuses; ``status`` is the HTTP status that fits it."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class RateLimited(ArenaError):
    """A client over a rate or a limit (429); ``retry_after`` seconds until it may try again."""

    def __init__(self, retry_after: float, message: str | None = None):
        super().__init__(message or f"too many requests; retry in {retry_after:.2f}s", 429)
        self.retry_after = retry_after

"""Bounded retries with exponential backoff and jitter, honouring Retry-After."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from car_jax.errors import UserError

T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class BackendError(UserError):
    """A backend failed for good (bad key, unknown model, unreachable after retries)."""

    exit_code = 3


class TransientError(Exception):
    """A failure worth retrying: 429, 5xx, timeout, connection error, broken response."""

    def __init__(self, status: str, retry_after: float | None = None):
        super().__init__(status)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait for one answer and how often to try again.

    Attempt `i` (0-based) that fails transiently waits `Retry-After` when the server sent one,
    else `min(max_delay, base_delay * 2**i)` scaled by a random factor in [1 - jitter, 1]; waits
    are capped at `max_wait` so a hostile Retry-After cannot hang a run.
    """

    attempts: int = 5
    timeout: float = 120.0  # seconds for one HTTP request
    base_delay: float = 1.0
    max_delay: float = 30.0
    jitter: float = 0.5
    max_wait: float = 120.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def __post_init__(self):
        if self.attempts < 1:
            raise UserError(f"retry attempts must be >= 1, got {self.attempts}")
        if self.timeout <= 0:
            raise UserError(f"request timeout must be > 0 seconds, got {self.timeout}")

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt `attempt` (0-based)."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_wait)
        backoff = min(self.max_delay, self.base_delay * (2**attempt))
        return min(backoff * (1.0 - self.jitter * rng.random()), self.max_wait)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def call_with_retries(
    fn: Callable[[], T],
    *,
    backend: str,
    policy: RetryPolicy,
    what: str = "request",
    rng: random.Random | None = None,
    on_retry: Callable[[int, TransientError, float], None] | None = None,
) -> T:
    """Call `fn` until it returns; retry `TransientError` up to `policy.attempts` times in all.

    Any other exception propagates at once. When every attempt failed, raise `BackendError`
    naming the backend, the number of attempts and the last status.
    """
    rng = rng or random.Random()
    last: TransientError | None = None
    for attempt in range(policy.attempts):
        try:
            return fn()
        except TransientError as err:
            last = err
            if attempt + 1 == policy.attempts:
                break
            wait = policy.delay(attempt, err.retry_after, rng)
            if on_retry is not None:
                on_retry(attempt + 1, err, wait)
            policy.sleep(wait)
    assert last is not None
    raise BackendError(
        f"{backend}: {what} failed after {policy.attempts} attempt(s); last status: {last.status}"
    )

"""Bounded retries with exponential backoff and jitter, honouring Retry-After; a deadline for
the whole of each request; one line on stderr per retry."""

from __future__ import annotations

import contextlib
import email.utils
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

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


def print_to_stderr(line: str) -> None:
    """Print one line on stderr (where progress goes; stdout is the command's result)."""
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait for one answer and how often to try again.

    Attempt `i` (0-based) that fails transiently waits `Retry-After` when the server sent one,
    else `min(max_delay, base_delay * 2**i)` scaled by a random factor in [1 - jitter, 1]; waits
    are capped at `max_wait` so a hostile Retry-After cannot hang a run. `timeout` bounds one
    whole request (connecting, sending, and every byte of the answer), not each socket read.
    `report` receives one line per retry (backend, status, wait); None keeps quiet.
    """

    attempts: int = 5
    timeout: float = 120.0  # seconds for one whole HTTP request
    base_delay: float = 1.0
    max_delay: float = 30.0
    jitter: float = 0.5
    max_wait: float = 120.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    report: Callable[[str], None] | None = field(default=print_to_stderr, compare=False, repr=False)

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

    Any other exception propagates at once. Each retry is told to `policy.report` in one line
    (backend, status, wait). When every attempt failed, raise `BackendError` naming the backend,
    the number of attempts and the last status.
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
            if policy.report is not None:
                policy.report(retry_line(backend, err, wait, attempt + 2, policy.attempts))
            if on_retry is not None:
                on_retry(attempt + 1, err, wait)
            policy.sleep(wait)
    assert last is not None
    raise BackendError(
        f"{backend}: {what} failed after {policy.attempts} attempt(s); last status: {last.status}"
    )


def retry_line(backend: str, err: TransientError, wait: float, next_attempt: int, of: int) -> str:
    """`gemini (...): HTTP 429 ...; retrying in 30 s (attempt 2 of 5)`, on one line."""
    status = " ".join(str(err.status).split())
    status = status if len(status) <= 160 else status[:157] + "..."
    told = " (Retry-After)" if err.retry_after is not None else ""
    return f"{backend}: {status}; retrying in {wait:.1f} s{told} (attempt {next_attempt} of {of})"


def run_with_deadline(
    fn: Callable[[], T], seconds: float, *, abort: Callable[[], None] | None = None
) -> T:
    """`fn()`, or `TransientError("timed out ...")` when it has not returned within `seconds`.

    `fn` runs in a daemon thread so that a server that keeps the connection alive by sending a
    byte now and then cannot stretch the wait: socket timeouts bound each read, this bounds the
    whole request. On expiry `abort` (e.g. closing the socket) lets the thread end early.
    """
    box: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # handed to the caller below
            box["error"] = err
        finally:
            done.set()

    worker = threading.Thread(target=work, name="car-jax-vlm-request", daemon=True)
    worker.start()
    if not done.wait(seconds):
        if abort is not None:
            # Best effort: the thread is a daemon and its result is dropped anyway.
            with contextlib.suppress(Exception):
                abort()
        raise TransientError(f"timed out after {seconds:g} s (deadline for the whole request)")
    if "error" in box:
        raise box["error"]
    return box["value"]

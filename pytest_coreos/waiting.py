"""One polling helper for everything the plugin waits for, with tenacity underneath.

A check either returns its result or raises :class:`NotReady` describing what it saw.
Only ``NotReady`` (and the transient errors a caller names) are retried; anything else is
a real failure and propagates at once. A timeout raises :class:`BootTimeoutError` with the
last state seen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import tenacity

from pytest_coreos.errors import BootTimeoutError

T = TypeVar("T")


class NotReady(Exception):
    """Raised by a check that should be tried again; its message is the state seen."""


def poll(
    check: Callable[[], T],
    *,
    what: str,
    timeout: float,
    transient: tuple[type[BaseException], ...] = (),
    interval: float = 0.005,
    max_interval: float = 0.05,
    hint: str = "",
    notes: Callable[[], list[str]] | None = None,
) -> T:
    """Call ``check`` until it returns, for at most ``timeout`` seconds.

    The interval starts short and doubles up to ``max_interval``: a cluster on loopback is
    often ready within tens of milliseconds, and a fixed long sleep would dominate.
    On timeout, ``notes`` (e.g. log tails) are attached to the error with ``add_note``.
    """
    last_state = ["nothing yet"]

    def remember(state: tenacity.RetryCallState) -> None:
        if state.outcome is not None and state.outcome.failed:
            error = state.outcome.exception()
            last_state[0] = str(error) or type(error).__name__

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type((NotReady, *transient)),
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_exponential(multiplier=interval, min=interval, max=max_interval),
        after=remember,
        reraise=False,
    )
    try:
        return retrying(check)
    except tenacity.RetryError as exhausted:
        error = BootTimeoutError(what, timeout, last_state[0], hint)
        if notes is not None:
            for note in notes():
                error.add_note(note)
        raise error from exhausted.last_attempt.exception()

"""The Alpaca adapter's backoff: which failures are tried again, how long it waits, how often.

Waits are jittered exponential (``backoff_base_s`` doubling up to ``backoff_max_s``); the token
bucket adds the venue's own reset wait after a 429. Every retry is counted and logged.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
    wait_random_exponential,
)

from rebalance_stream.brokers.alpaca_config import AlpacaConfig
from rebalance_stream.brokers.alpaca_errors import describe, is_retryable_read
from rebalance_stream.brokers.alpaca_http import RequestStats

log = structlog.get_logger(__name__)


def backoff(
    config: AlpacaConfig,
    stats: RequestStats,
    sleep: Callable[[float], None],
    attempts: int,
    *,
    retry_on: Callable[[BaseException], bool] = is_retryable_read,
    retry_none: bool = False,
) -> Retrying:
    """At most ``attempts`` calls, again after a failure ``retry_on`` accepts (and after a
    None result, with ``retry_none``). The last failure is raised; with ``retry_none`` a call
    still None after the last attempt gives None."""
    retry = retry_if_exception(retry_on)

    def before_sleep(state: RetryCallState) -> None:
        stats.add(retries=1)
        outcome = state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        log.info(
            "alpaca_retry",
            attempt=state.attempt_number,
            error=str(describe(error)) if error is not None else "not found yet",
        )

    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=config.backoff_base_s, max=config.backoff_max_s),
        retry=(retry | retry_if_result(_is_none)) if retry_none else retry,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
        retry_error_callback=_give_up_with_none if retry_none else None,
    )


def _is_none(value: object) -> bool:
    return value is None


def _give_up_with_none(state: RetryCallState) -> None:
    """After the last lookup: None when it found nothing; its error when it failed."""
    outcome = state.outcome
    if outcome is not None and outcome.failed:
        outcome.result()  # re-raises the lookup's error

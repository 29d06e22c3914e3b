"""What an Alpaca failure means, by operation, HTTP status, Alpaca's error code and message.

    failure                                     read       submit     cancel
    connection error, timeout, cut body         retry      unknown    retry
    429                                         retry      retry      retry
    5xx                                         retry      unknown    retry
    404 with an Alpaca error body               not_found  fatal      not_found
    422 "client_order_id must be unique"        fatal      duplicate  already_done
    422 (not fractionable, bad qty, ...)        fatal      rejected   already_done
    400; 403 (buying power, wash trade, PDT)    fatal      rejected   fatal
    401, 404 without an Alpaca body, 3xx, ...   fatal      fatal      fatal

``unknown``: the order may have been accepted. It is looked up by client_order_id, never sent
again. A 429 comes from Alpaca's rate limiter, before the order is processed, so a submit
answered 429 is sent again after the limit resets; it keeps its client_order_id, so were it
placed after all, the resend would be refused as a duplicate and the order adopted.

A 404 without Alpaca's JSON body is a wrong URL, not a missing position: reading it
as "no position" would size trades on a zero holding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

import requests
from alpaca.common.exceptions import APIError

from rebalance_stream.brokers.protocol import (
    BrokerError,
    BrokerUnavailable,
    DuplicateClientOrderId,
    OrderNotFound,
    OrderRejected,
)

DUPLICATE_CLIENT_ORDER_ID_MESSAGE = "client_order_id must be unique"
HTTP_BAD_REQUEST = 400
HTTP_FORBIDDEN = 403
HTTP_NOT_FOUND = 404
HTTP_UNPROCESSABLE = 422
HTTP_TOO_MANY_REQUESTS = 429
HTTP_SERVER_ERROR = 500
_MAX_MESSAGE_CHARS = 300

# Transport failures after which the request may or may not have reached Alpaca.
_TRANSIENT_TRANSPORT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    requests.exceptions.JSONDecodeError,
)
VENUE_FAILURES = (APIError, requests.RequestException)


class Operation(StrEnum):
    READ = "read"
    SUBMIT = "submit"
    CANCEL = "cancel"


class Outcome(StrEnum):
    RETRY = "retry"
    UNKNOWN = "unknown"
    NOT_FOUND = "not_found"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    ALREADY_DONE = "already_done"
    FATAL = "fatal"


class HttpStatusError(requests.RequestException):
    """An HTTP response of 3xx or more, raised before alpaca-py sees it (so it cannot retry).

    Carries the status and Alpaca's code and message; never the request or its headers.
    """

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def from_response(cls, response: requests.Response) -> HttpStatusError:
        code, message = _parse_error_body(response.text)
        return cls(response.status_code, code, message)


@dataclass(frozen=True, slots=True)
class ApiFailure:
    """One failed call: HTTP status (None for a transport failure), Alpaca's code and message."""

    status: int | None
    code: int | None
    message: str
    transient: bool

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        code = f" (code {self.code})" if self.code is not None else ""
        return f"HTTP {self.status}{code}: {self.message}"


def describe(exc: BaseException) -> ApiFailure:
    """The failure behind one of ``VENUE_FAILURES``."""
    if isinstance(exc, HttpStatusError):
        return _status_failure(exc.status, exc.code, exc.message)
    if isinstance(exc, APIError):
        code, message = _parse_error_body(str(exc))
        status = exc.status_code
        if isinstance(status, int):
            return _status_failure(status, code, message)
        return ApiFailure(None, code, message, transient=False)
    message = f"{type(exc).__name__}: {_truncate(str(exc))}"
    return ApiFailure(None, None, message, transient=isinstance(exc, _TRANSIENT_TRANSPORT))


def classify(failure: ApiFailure, operation: Operation) -> Outcome:
    """Where ``failure`` of ``operation`` falls in the module's table."""
    if failure.status == HTTP_TOO_MANY_REQUESTS:
        return Outcome.RETRY
    if failure.transient:
        return Outcome.UNKNOWN if operation is Operation.SUBMIT else Outcome.RETRY
    if operation is Operation.SUBMIT:
        return _classify_submit(failure)
    if failure.status == HTTP_NOT_FOUND and failure.code is not None:
        return Outcome.NOT_FOUND
    if operation is Operation.CANCEL and failure.status == HTTP_UNPROCESSABLE:
        return Outcome.ALREADY_DONE
    return Outcome.FATAL


def is_retryable_read(exc: BaseException) -> bool:
    """Whether a read (or cancel) that raised ``exc`` may be sent again."""
    if not isinstance(exc, VENUE_FAILURES):
        return False
    return classify(describe(exc), Operation.READ) is Outcome.RETRY


def is_rate_limited(exc: BaseException) -> bool:
    """Whether ``exc`` is Alpaca's 429: refused before processing, so any call may be resent."""
    return isinstance(exc, VENUE_FAILURES) and describe(exc).status == HTTP_TOO_MANY_REQUESTS


def to_broker_error(failure: ApiFailure, outcome: Outcome, subject: str) -> BrokerError:
    """The protocol's error for ``outcome``; ``subject`` names the order, asset or call."""
    if outcome is Outcome.NOT_FOUND:
        return OrderNotFound(subject)
    if outcome is Outcome.DUPLICATE:
        return DuplicateClientOrderId(subject)
    if outcome is Outcome.REJECTED:
        return OrderRejected(str(failure))
    if outcome in (Outcome.RETRY, Outcome.UNKNOWN):
        return BrokerUnavailable(f"{subject}: {failure}")
    return BrokerError(f"{subject}: {failure}")


def _classify_submit(failure: ApiFailure) -> Outcome:
    status = failure.status
    if status == HTTP_UNPROCESSABLE and DUPLICATE_CLIENT_ORDER_ID_MESSAGE in failure.message:
        return Outcome.DUPLICATE
    if status in (HTTP_BAD_REQUEST, HTTP_FORBIDDEN, HTTP_UNPROCESSABLE):
        return Outcome.REJECTED
    return Outcome.FATAL


def _status_failure(status: int, code: int | None, message: str) -> ApiFailure:
    transient = status == HTTP_TOO_MANY_REQUESTS or status >= HTTP_SERVER_ERROR
    return ApiFailure(status, code, message, transient=transient)


def _parse_error_body(text: str) -> tuple[int | None, str]:
    """Alpaca's ``{"code": 40310000, "message": "..."}``, or the raw text with no code."""
    try:
        body = json.loads(text)
    except ValueError:
        return None, _truncate(text)
    if not isinstance(body, dict):
        return None, _truncate(text)
    code = body.get("code")
    message = body.get("message")
    return (
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        _truncate(message if isinstance(message, str) else text),
    )


def _truncate(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[:_MAX_MESSAGE_CHARS] + "..."

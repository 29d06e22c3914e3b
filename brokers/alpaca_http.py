"""The HTTP layer under alpaca-py: one guarded adapter mounted on each client's session.

Every request that alpaca-py sends through its ``requests`` session:

1. waits for a token from the key's bucket, and is counted;
2. gets a (connect, read) timeout, since alpaca-py sets none;
3. reports its rate-limit headers to the bucket;
4. raises HttpStatusError for a status of 300 or more before alpaca-py sees the response, so
   alpaca-py's own retry (429 and 504, POST /v2/orders included) can never run;
5. decodes JSON numbers as Decimal, never float.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests
from alpaca.common.rest import RESTClient
from requests.adapters import HTTPAdapter

from rebalance_stream.brokers.alpaca_errors import HTTP_TOO_MANY_REQUESTS, HttpStatusError
from rebalance_stream.brokers.rate_limit import TokenBucket

_FIRST_ERROR_STATUS = 300

Timeout = float | tuple[float, float] | tuple[float, None] | None


@dataclass
class RequestStats:
    """Counters for metrics: HTTP requests sent, retries, 429s seen, submits of unknown outcome.

    Thread-safe through ``add``.
    """

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    unknown_outcomes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, requests: int = 0, retries: int = 0, rate_limited: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.retries += retries
            self.rate_limited += rate_limited

    def add_unknown_outcome(self) -> None:
        with self._lock:
            self.unknown_outcomes += 1


class GuardedAdapter(HTTPAdapter):
    """A requests adapter that rate-limits, times out, counts, and raises on error statuses."""

    def __init__(
        self,
        bucket: TokenBucket,
        stats: RequestStats,
        timeout_s: tuple[float, float],
        pool_maxsize: int = 10,
    ) -> None:
        # max_retries=0: urllib3 must not resend either.
        super().__init__(pool_maxsize=pool_maxsize, max_retries=0)
        self._bucket = bucket
        self._stats = stats
        self._timeout_s = timeout_s

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Timeout = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        self._bucket.acquire()
        self._stats.add(requests=1)
        response = super().send(
            request,
            stream=stream,
            timeout=self._timeout_s if timeout is None else timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )
        self._bucket.observe(response.headers)
        if response.status_code == HTTP_TOO_MANY_REQUESTS:
            self._stats.add(rate_limited=1)
        if response.status_code >= _FIRST_ERROR_STATUS:
            error = HttpStatusError.from_response(response)
            response.close()
            raise error
        _decode_numbers_as_decimal(response)
        return response


def guard(client: RESTClient, adapter: GuardedAdapter) -> None:
    """Route every request of ``client`` through ``adapter``.

    Raises RuntimeError when alpaca-py no longer sends through a ``requests`` session: then
    its retries and missing timeouts would be back, so failing at start is the safe answer.
    """
    session = getattr(client, "_session", None)
    if not isinstance(session, requests.Session):
        raise RuntimeError("alpaca-py no longer exposes a requests session; cannot guard it")
    session.mount("https://", adapter)
    session.mount("http://", adapter)


def close_session(client: RESTClient) -> None:
    """Close the connections of a client that ``guard`` accepted."""
    session = getattr(client, "_session", None)
    if isinstance(session, requests.Session):
        session.close()


def _decode_numbers_as_decimal(response: requests.Response) -> None:
    """Make ``response.json()``, which alpaca-py calls, read JSON numbers as Decimal."""
    decode = response.json

    def exact_json(**kwargs: Any) -> Any:
        kwargs.setdefault("parse_float", Decimal)
        return decode(**kwargs)

    response.json = exact_json  # type: ignore[method-assign]

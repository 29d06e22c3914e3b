"""Deterministic client_order_ids (SPEC 3.5), so a restarted plan finds its own orders.

``rs1-{base32(sha256(plan_id))[:16]}-{SYMBOL}-{B|S}-{attempt}``, lower-case base32 without
padding, attempt from 1. The format is pinned by a golden test: never change it.
"""

from __future__ import annotations

import base64
import functools
import hashlib

from rebalance_stream.contracts.execution import OrderSide

CLIENT_ORDER_ID_PREFIX = "rs1-"
MAX_CLIENT_ORDER_ID_LENGTH = 48
_PLAN_HASH_CHARS = 16


PLAN_HASHES_KEPT = 4096


@functools.lru_cache(maxsize=PLAN_HASHES_KEPT)
def plan_hash(plan_id: str) -> str:
    """The 16-character lower-case base32 digest of a plan_id (the latest ones are kept: a
    plan's orders ask for it several times)."""
    digest = hashlib.sha256(plan_id.encode("utf-8")).digest()
    return base64.b32encode(digest).decode("ascii").rstrip("=").lower()[:_PLAN_HASH_CHARS]


def client_order_id(plan_id: str, symbol: str, side: OrderSide, attempt: int = 1) -> str:
    """The client_order_id of one order of a plan; ``attempt`` counts replacements from 1."""
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    side_letter = "B" if side is OrderSide.BUY else "S"
    value = f"{CLIENT_ORDER_ID_PREFIX}{plan_hash(plan_id)}-{symbol.upper()}-{side_letter}-{attempt}"
    if len(value) > MAX_CLIENT_ORDER_ID_LENGTH:
        raise ValueError(f"client_order_id longer than {MAX_CLIENT_ORDER_ID_LENGTH}: {value}")
    return value


def without_attempt(client_order_id: str) -> str:
    """The plan item an order is an attempt of: ``rs1-…-SPY-B-2`` -> ``rs1-…-SPY-B``; an id
    with no ``-`` (not ours) is its own."""
    return client_order_id.rpartition("-")[0] or client_order_id


def with_attempt(first_client_order_id: str, attempt: int) -> str:
    """The client_order_id of another attempt of the same plan item:
    ``rs1-…-SPY-B-1`` and 3 -> ``rs1-…-SPY-B-3``."""
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    value = f"{without_attempt(first_client_order_id)}-{attempt}"
    if len(value) > MAX_CLIENT_ORDER_ID_LENGTH:
        raise ValueError(f"client_order_id longer than {MAX_CLIENT_ORDER_ID_LENGTH}: {value}")
    return value

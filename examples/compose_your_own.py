"""Compose rebalance-stream's operators into your own reactivex pipeline.

Here a user wants only the admission half of the job (decode, validate, dedupe, staleness)
and their own sink: they count plans per account and print the ones that would trade.
Run it with ``python examples/compose_your_own.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import reactivex
from reactivex import operators as ops

from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.ledger.memory import InMemoryLedger
from rebalance_stream.operators import (
    Envelope,
    InputRecord,
    SourcePosition,
    decode,
    dedupe,
    reject_stale,
    validate,
)

PLANS = Path(__file__).parent / "plans"


def records_from(paths: list[Path]) -> list[InputRecord]:
    received_at = datetime.now(UTC)
    return [
        InputRecord(SourcePosition("my-topic", 0, offset), None, path.read_bytes(), (), received_at)
        for offset, path in enumerate(paths)
    ]


def plans_that_would_trade(records: list[InputRecord]) -> list[dict[str, Any]]:
    """The admitted plans with at least one BUY or SELL, as small summaries."""

    def summary(envelope: Envelope[Any]) -> dict[str, Any]:
        event: RebalancePlanned = envelope.payload
        plan = event.rebalance_plan
        offset = envelope.position.offset
        return {"offset": offset, "plan_id": plan.plan_id, "items": len(plan.items)}

    return (
        reactivex.from_iterable(records)
        .pipe(
            decode(),
            validate(),
            dedupe(InMemoryLedger()),
            reject_stale(timedelta(0), clock=lambda: datetime.now(UTC)),
            ops.filter(lambda envelope: isinstance(envelope.payload, RebalancePlanned)),
            ops.filter(lambda envelope: envelope.payload.trades_required),
            ops.map(summary),
            ops.to_list(),
        )
        .run()
    )


if __name__ == "__main__":
    for line in plans_that_would_trade(records_from(sorted(PLANS.glob("*.json")))):
        print(json.dumps(line))

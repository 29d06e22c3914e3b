"""Shared test helpers: a controllable clock, input records, paper accounts."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from plan_factory import Trade, planned

from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.brokers.paper_account import PaperAccount
from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.operators.decode import decode_record
from rebalance_stream.operators.flow import (
    DecodedDocument,
    Disposition,
    Envelope,
    Failed,
    InputRecord,
    SourcePosition,
)
from rebalance_stream.operators.output_events import disposition_of
from rebalance_stream.operators.validate import validate_envelope

T0 = datetime(2026, 11, 30, 14, 30, 5, tzinfo=UTC)
INPUT_TOPIC = "rebalance.planned"


class FixedClock:
    """A clock that moves only when told to."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def record(
    value: bytes | dict[str, Any],
    offset: int = 0,
    *,
    key: bytes | None = None,
    partition: int = 0,
    received_at: datetime = T0,
    topic: str = INPUT_TOPIC,
) -> InputRecord:
    """An input record; a dict is JSON-encoded and keyed by its plan's account_id."""
    if isinstance(value, dict):
        if key is None:
            key = value["rebalance_plan"]["account_id"].encode()
        value = json.dumps(value).encode()
    position = SourcePosition(topic, partition, offset)
    return InputRecord(position, key, value, (("origin", b"test"),), received_at)


ACCOUNT: dict[str, Any] = {
    "cash": "20000.00",
    "positions": {"SPY": "40", "TQQQ": "100", "IWM": "10"},
    "prices": {
        "SPY": "500.00",
        "TQQQ": "80.00",
        "IWM": "200.00",
        "VTI": "250.00",
        "GLD": "190.00",
        "ARKK": "40.00",
    },
    "fractionable": ["SPY", "VTI", "GLD"],
    "market": "open",
    "fill": {"default": "immediate", "ARKK": {"partial": "0.5"}},
}


def paper_account(**changes: Any) -> PaperAccount:
    """The test account, with top-level fields replaced."""
    return PaperAccount.model_validate({**ACCOUNT, **changes})


def started_broker(
    account: PaperAccount | None = None, clock: FixedClock | None = None
) -> PaperBroker:
    broker = PaperBroker(account or paper_account(), clock=clock or FixedClock())
    broker.start()
    return broker


def validated(document: dict[str, Any], offset: int = 0, topic: str = INPUT_TOPIC) -> Envelope[Any]:
    """A document decoded and validated, as the two steps before dedupe leave it."""
    decoded = decode_record(record(document, offset, topic=topic))
    assert isinstance(decoded.payload, DecodedDocument)
    envelope = validate_envelope(decoded, decoded.payload)
    assert isinstance(envelope.payload, RebalancePlanned)
    return envelope


def decided_disposition(
    plan_id: str, offset: int = 0, reason: str = "risk says no", topic: str = INPUT_TOPIC
) -> Disposition:
    """The Disposition of a plan that failed at risk (one WorkflowFailed), owning its outcome."""
    document = planned(plan_id, [Trade("SPY", "BUY", "1500.00")], event_id=f"e-{plan_id}")
    envelope = validated(document, offset, topic)
    failure = Failed(FailureStep.RISK, "RISK", reason, "RiskDenied", "check_risk")
    return disposition_of(replace(envelope.failed(failure), owns_outcome=True), T0)

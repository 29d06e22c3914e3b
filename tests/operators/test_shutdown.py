"""hold_back_unstarted: plans not started when the job stops get no outputs and no ack."""

from __future__ import annotations

from typing import Any

import reactivex
from plan_factory import Trade, planned
from reactivex import operators as ops
from support import T0, record

from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.operators.decode import decode_record
from rebalance_stream.operators.flow import DecodedDocument, Envelope, Failed, NotStarted
from rebalance_stream.operators.output_events import disposition_of
from rebalance_stream.operators.shutdown import hold_back_unstarted
from rebalance_stream.operators.validate import validate_envelope

ITEMS = [Trade("SPY", "BUY", "1500.00")]


def validated(plan_id: str, offset: int) -> Envelope[Any]:
    decoded = decode_record(record(planned(plan_id, ITEMS), offset))
    assert isinstance(decoded.payload, DecodedDocument)
    return validate_envelope(decoded, decoded.payload)


def test_hold_back_unstarted_holds_back_plans_after_the_stop_and_passes_settled_ones() -> None:
    stop = {"now": False}
    failure = Failed(FailureStep.RISK, "RISK", "no", "RiskDenied", "check_risk")
    settled = validated("p3", 3).failed(failure)

    def stop_after_first(envelope: Envelope[Any]) -> None:
        stop["now"] = True

    out = (
        reactivex.of(validated("p1", 1), validated("p2", 2), settled)
        .pipe(
            hold_back_unstarted(lambda _position: stop["now"]),
            ops.do_action(stop_after_first),
            ops.to_list(),
        )
        .run()
    )

    assert out[0].payload == validated("p1", 1).payload
    assert isinstance(out[1].payload, NotStarted)
    assert out[2] is settled


def test_not_started_plan_has_no_outputs_and_is_marked_so_it_is_never_acknowledged() -> None:
    envelope = validated("p1", 1).with_payload(NotStarted("stopping"))

    disposition = disposition_of(envelope, T0)

    assert (disposition.outputs, disposition.not_started, disposition.plan_id) == ((), True, "p1")

"""The Ledger contract, run against both InMemoryLedger and SqliteLedger (SPEC 3.9).

Every ClaimStatus path, first-writer-wins outcomes, notional per account and New York trading
day, and expiry; then a property: any sequence of operations answers alike on both ledgers.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from changelog_double import MemoryChangelog
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test
from ledger_builders import (
    ACCOUNT,
    ITEMS,
    NEW_YORK,
    OTHER_ITEMS,
    TODAY,
    execution,
    header,
    intent,
    outcome,
    outputs_for,
    plan_claim,
    terminal,
    wire,
)
from support import T0

from rebalance_stream.contracts.outcomes import (
    TradeExecuted,
)
from rebalance_stream.ledger.kafka_ledger import KafkaLedger
from rebalance_stream.ledger.memory import InMemoryLedger
from rebalance_stream.ledger.protocol import (
    Claim,
    ClaimStatus,
    Ledger,
    PublishedInput,
    PublishedInputs,
    decode_outputs,
    encode_outputs,
    trading_day,
)
from rebalance_stream.ledger.sqlite import SqliteLedger


def decided(ledger: Ledger, plan_id: str, variant: int = 0, digest: str | None = None) -> None:
    """Claim a plan (from an input with ``digest``) and record its outputs."""
    assert ledger.claim(plan_claim(plan_id, input_digest=digest)).status is ClaimStatus.NEW
    ledger.record_outcomes([outcome(plan_id, variant)])


# -- fixture ---------------------------------------------------------------------------------


def open_memory(_: Path) -> Ledger:
    return InMemoryLedger()


def open_sqlite(directory: Path) -> Ledger:
    return SqliteLedger(directory / "ledger.sqlite")


def open_kafka(_: Path) -> Ledger:
    """A KafkaLedger over an in-memory changelog, owning partition 0 (where claims without a
    partition go); tests/streams has it over real Kafka."""
    log = MemoryChangelog()
    ledger = KafkaLedger(log.writer(), log.reader())
    ledger.restore([0])
    return ledger


OPENERS: dict[str, Callable[[Path], Ledger]] = {
    "kafka": open_kafka,
    "memory": open_memory,
    "sqlite": open_sqlite,
}


@pytest.fixture(params=sorted(OPENERS))
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    opened = OPENERS[request.param](tmp_path)
    yield opened
    opened.close()


# -- claim: every ClaimStatus ----------------------------------------------------------------


def test_claim_unknown_plan_is_new(ledger: Ledger) -> None:
    answer = ledger.claim(plan_claim("p1"))

    assert answer == Claim(ClaimStatus.NEW, "evt-p1", T0)


def test_claim_same_event_while_in_flight_here_is_duplicate_event(ledger: Ledger) -> None:
    ledger.claim(plan_claim("p1"))

    answer = ledger.claim(plan_claim("p1", received_at=T0 + timedelta(minutes=5)))

    assert answer == Claim(ClaimStatus.DUPLICATE_EVENT, "evt-p1", T0)


# RESUME needs a restart, which only the SQLite ledger survives: see test_sqlite_ledger.py.


def test_claim_same_event_after_release_resumes_the_plan(ledger: Ledger) -> None:
    first = ledger.claim(plan_claim("p1"))
    ledger.release(["p1"])

    again = ledger.claim(plan_claim("p1"))
    while_resumed = ledger.claim(plan_claim("p1"))

    assert (first.status, again.status) == (ClaimStatus.NEW, ClaimStatus.RESUME)
    assert while_resumed.status is ClaimStatus.DUPLICATE_EVENT
    assert again.first_received_at == first.first_received_at


def test_claim_same_event_after_outcome_republishes_exact_outputs(ledger: Ledger) -> None:
    decided(ledger, "p1")

    answer = ledger.claim(plan_claim("p1", received_at=T0 + timedelta(minutes=5)))

    assert answer.status is ClaimStatus.REPUBLISH
    assert (answer.first_event_id, answer.first_received_at) == ("evt-p1", T0)
    assert wire(answer.outputs) == wire(outputs_for("p1"))


def test_claim_same_event_after_acknowledgement_is_duplicate_event(ledger: Ledger) -> None:
    decided(ledger, "p1")
    ledger.mark_acknowledged(["p1"])

    answer = ledger.claim(plan_claim("p1"))

    assert answer == Claim(ClaimStatus.DUPLICATE_EVENT, "evt-p1", T0)


@pytest.mark.parametrize("state", ["claimed", "decided", "acknowledged"])
def test_claim_other_event_same_items_is_duplicate_plan(ledger: Ledger, state: str) -> None:
    ledger.claim(plan_claim("p1"))
    if state != "claimed":
        ledger.record_outcomes([outcome("p1")])
    if state == "acknowledged":
        ledger.mark_acknowledged(["p1"])

    answer = ledger.claim(plan_claim("p1", "evt-p1-again", received_at=T0 + timedelta(hours=1)))

    assert answer == Claim(ClaimStatus.DUPLICATE_PLAN, "evt-p1", T0)


def test_claim_duplicate_plans_event_again_is_duplicate_event(ledger: Ledger) -> None:
    ledger.claim(plan_claim("p1"))
    ledger.claim(plan_claim("p1", "evt-p1-again"))

    answer = ledger.claim(plan_claim("p1", "evt-p1-again"))

    assert answer == Claim(ClaimStatus.DUPLICATE_EVENT, "evt-p1", T0)


@pytest.mark.parametrize("event_id", ["evt-p1", "evt-p1-edited"])
def test_claim_same_plan_other_items_is_conflict(ledger: Ledger, event_id: str) -> None:
    ledger.claim(plan_claim("p1"))

    answer = ledger.claim(plan_claim("p1", event_id, items=OTHER_ITEMS))

    assert answer == Claim(ClaimStatus.CONFLICT, "evt-p1", T0)


def test_claim_conflicting_event_again_is_duplicate_event(ledger: Ledger) -> None:
    ledger.claim(plan_claim("p1"))
    ledger.claim(plan_claim("p1", "evt-p1-edited", items=OTHER_ITEMS))

    answer = ledger.claim(plan_claim("p1", "evt-p1-edited", items=OTHER_ITEMS))

    assert answer == Claim(ClaimStatus.DUPLICATE_EVENT, "evt-p1", T0)


def test_claim_first_event_with_other_items_stays_a_conflict(ledger: Ledger) -> None:
    decided(ledger, "p1")
    ledger.claim(plan_claim("p1", items=OTHER_ITEMS))

    answer = ledger.claim(plan_claim("p1", items=OTHER_ITEMS))

    assert answer == Claim(ClaimStatus.CONFLICT, "evt-p1", T0)


def test_claim_event_id_reused_for_unknown_plan_is_reused_and_claims_nothing(
    ledger: Ledger,
) -> None:
    ledger.claim(plan_claim("p1"))
    later = T0 + timedelta(minutes=1)

    reused = ledger.claim(plan_claim("p2", "evt-p1", received_at=later))
    own = ledger.claim(plan_claim("p2", received_at=later))

    assert reused == Claim(ClaimStatus.EVENT_ID_REUSED, "evt-p1", later)
    assert own == Claim(ClaimStatus.NEW, "evt-p2", later)


def test_claim_event_id_reused_for_known_plan_reports_that_plans_first_event(
    ledger: Ledger,
) -> None:
    ledger.claim(plan_claim("p1"))
    ledger.claim(plan_claim("p2", received_at=T0 + timedelta(minutes=1)))

    answer = ledger.claim(plan_claim("p2", "evt-p1", received_at=T0 + timedelta(minutes=2)))

    assert answer == Claim(ClaimStatus.EVENT_ID_REUSED, "evt-p2", T0 + timedelta(minutes=1))


def test_claim_received_at_in_other_zone_is_the_same_instant(ledger: Ledger) -> None:
    in_new_york = T0.astimezone(NEW_YORK)
    ledger.claim(plan_claim("p1", received_at=in_new_york))

    answer = ledger.claim(plan_claim("p1"))

    assert answer.first_received_at == T0


# -- acknowledgements and outcomes -----------------------------------------------------------


def test_mark_acknowledged_before_outcome_is_ignored(ledger: Ledger) -> None:
    ledger.claim(plan_claim("p1"))
    ledger.mark_acknowledged(["p1", "never-claimed"])
    ledger.record_outcomes([outcome("p1")])

    answer = ledger.claim(plan_claim("p1"))

    assert answer.status is ClaimStatus.REPUBLISH


# -- published inputs ------------------------------------------------------------------------


@pytest.fixture(params=sorted(OPENERS))
def knows_inputs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    opened = OPENERS[request.param](tmp_path)
    assert isinstance(opened, PublishedInputs)
    yield opened
    opened.close()


def published(ledger: Ledger, digest: str) -> PublishedInput | None:
    """What the ledger says of ``digest`` once everything buffered is written."""
    flush = getattr(ledger, "flush", None)
    if flush is not None:
        flush()
    assert isinstance(ledger, PublishedInputs)
    return ledger.published_inputs([digest]).get(digest)


def test_published_input_only_once_decided_and_acknowledged(knows_inputs: Ledger) -> None:
    ledger = knows_inputs
    ledger.claim(plan_claim("p1", input_digest="d1"))
    claimed = published(ledger, "d1")
    ledger.record_outcomes([outcome("p1")])
    decided_only = published(ledger, "d1")
    ledger.mark_acknowledged(["p1"])

    assert (claimed, decided_only) == (None, None)
    assert published(ledger, "d1") == PublishedInput("p1", "evt-p1", "corr-p1")
    assert published(ledger, "other") is None


def test_published_inputs_answers_many_digests_in_one_read(knows_inputs: Ledger) -> None:
    """Only the published ones come back, each under its own digest; the rest are left out."""
    ledger = knows_inputs
    for plan_id, digest in (("p1", "d1"), ("p2", "d2"), ("p3", "d3")):
        decided(ledger, plan_id, digest=digest)
    ledger.mark_acknowledged(["p1", "p3"])
    flush = getattr(ledger, "flush", None)
    if flush is not None:
        flush()
    assert isinstance(ledger, PublishedInputs)

    found = ledger.published_inputs(["d3", "d2", "d1", "unknown", "d1"])

    assert found == {
        "d1": PublishedInput("p1", "evt-p1", "corr-p1"),
        "d3": PublishedInput("p3", "evt-p3", "corr-p3"),
    }
    assert ledger.published_inputs([]) == {}


def test_published_input_needs_the_claims_correlation_id(knows_inputs: Ledger) -> None:
    """Without it, a skipped input could not be logged with its ids: the full path decides."""
    ledger = knows_inputs
    ledger.claim(plan_claim("p1", input_digest="d1", correlation_id=None))
    ledger.record_outcomes([outcome("p1")])
    ledger.mark_acknowledged(["p1"])

    assert published(ledger, "d1") is None


def test_published_input_is_the_first_claims_digest_only(knows_inputs: Ledger) -> None:
    """A later event of the plan (a duplicate, a conflict) never stands for the plan's input."""
    ledger = knows_inputs
    decided(ledger, "p1", digest="d1")
    again = ledger.claim(plan_claim("p1", "evt-p1-again", input_digest="d2"))
    conflict = ledger.claim(plan_claim("p1", "evt-p1-other", items=OTHER_ITEMS, input_digest="d3"))
    ledger.mark_acknowledged(["p1"])

    assert (again.status, conflict.status) == (ClaimStatus.DUPLICATE_PLAN, ClaimStatus.CONFLICT)
    first = PublishedInput("p1", "evt-p1", "corr-p1")
    assert [published(ledger, d) for d in ("d1", "d2", "d3")] == [first, None, None]


def test_published_input_is_forgotten_with_its_plan(knows_inputs: Ledger) -> None:
    ledger = knows_inputs
    decided(ledger, "p1", digest="d1")
    ledger.mark_acknowledged(["p1"])

    ledger.expire(T0 + timedelta(days=1))

    assert published(ledger, "d1") is None


def test_kafka_ledger_knows_published_inputs_only_in_the_process_that_claimed_them() -> None:
    """Its changelog has no digests: restored elsewhere, an input takes the full path
    (dedupe), which decides the same; a partition given up takes its digests with it."""
    log = MemoryChangelog()
    first = KafkaLedger(log.writer(), log.reader())
    first.restore([0])
    decided(first, "p1", digest="d1")
    first.mark_acknowledged(["p1"])
    here = published(first, "d1")
    first.forget([0])
    first.restore([1])  # partition 0 did not come back
    after_revocation = first.published_inputs(["d1"]).get("d1")
    restored = KafkaLedger(log.writer(), log.reader())
    restored.restore([0])

    assert here == PublishedInput("p1", "evt-p1", "corr-p1")
    assert (after_revocation, restored.published_inputs(["d1"]).get("d1")) == (None, None)
    assert restored.claim(plan_claim("p1")).status is ClaimStatus.DUPLICATE_EVENT
    first.close()
    restored.close()


def test_record_outcomes_first_writer_wins(ledger: Ledger) -> None:
    decided(ledger, "p1", variant=0)
    ledger.claim(plan_claim("p2"))

    on_record = ledger.record_outcomes([outcome("p1", variant=1), outcome("p2", variant=2)])

    assert [wire(outputs) for outputs in on_record] == [
        wire(outputs_for("p1", 0)),
        wire(outputs_for("p2", 2)),
    ]
    assert wire(ledger.claim(plan_claim("p1")).outputs) == wire(outputs_for("p1", 0))


def test_record_outcomes_same_plan_twice_in_one_call_keeps_the_first(ledger: Ledger) -> None:
    ledger.claim(plan_claim("p1"))

    on_record = ledger.record_outcomes([outcome("p1", variant=0), outcome("p1", variant=3)])

    assert [wire(outputs) for outputs in on_record] == [wire(outputs_for("p1", 0))] * 2


def test_record_outcomes_unclaimed_plan_returns_its_outputs_unrecorded(ledger: Ledger) -> None:
    on_record = ledger.record_outcomes([outcome("ghost", variant=1)])

    assert [wire(outputs) for outputs in on_record] == [wire(outputs_for("ghost", 1))]
    assert ledger.claim(plan_claim("ghost")).status is ClaimStatus.NEW


def test_record_outcomes_empty_returns_empty(ledger: Ledger) -> None:
    assert ledger.record_outcomes([]) == []


# -- orders and notional ---------------------------------------------------------------------


def test_notional_used_counts_the_expected_notional_of_open_intents(ledger: Ledger) -> None:
    ledger.record_intents([intent("p1", "VTI", "40", "250.00"), intent("p1", "GLD", "3", "190.10")])

    assert ledger.notional_used(ACCOUNT, TODAY) == Decimal("10570.30")


def test_notional_used_counts_an_intent_without_price_as_zero(ledger: Ledger) -> None:
    ledger.record_intents([intent("p1", price=None)])

    assert ledger.notional_used(ACCOUNT, TODAY) == Decimal(0)


def test_notional_used_replaces_expected_by_filled_notional_once_terminal(ledger: Ledger) -> None:
    vti, gld = intent("p1", "VTI", "40", "250.00"), intent("p1", "GLD", "3", "190.10")
    ledger.record_intents([vti, gld])

    ledger.record_terminals([terminal(vti, "20", "251.50"), terminal(gld, "0", None)])

    assert ledger.notional_used(ACCOUNT, TODAY) == Decimal("5030.00")


def test_notional_used_read_first_then_kept_in_step_with_every_later_write(
    ledger: Ledger,
) -> None:
    vti, bnd = intent("p1", "VTI", "40", "250.00"), intent("p2", "BND", "1", "99.99")
    other = intent("p3", "VTI", "2", "10.00", account_id="acct-2")
    stranger = intent("p9", "GLD", "5", "190.00")
    ledger.record_intents([vti])
    seen = [ledger.notional_used(ACCOUNT, TODAY)]

    ledger.record_intents([bnd, other])
    seen.append(ledger.notional_used(ACCOUNT, TODAY))
    ledger.record_terminals([terminal(vti, "20", "250.00")])
    seen.append(ledger.notional_used(ACCOUNT, TODAY))
    ledger.record_intents([intent("p1", "VTI", "1", "1.00")])  # kept: the first intent wins
    seen.append(ledger.notional_used(ACCOUNT, TODAY))
    ledger.record_terminals([terminal(stranger, "5", "190.00")])  # no intent: counts nothing
    seen.append(ledger.notional_used(ACCOUNT, TODAY))
    ledger.record_terminals([terminal(vti, "40", "250.00")])  # the last terminal wins
    seen.append(ledger.notional_used(ACCOUNT, TODAY))

    expected = ["10000", "10099.99", "5099.99", "5099.99", "5099.99", "10099.99"]
    assert seen == [Decimal(total) for total in expected]
    assert ledger.notional_used("acct-2", TODAY) == Decimal("20.00")


def test_notional_used_of_an_intent_whose_terminal_came_first_is_the_filled_one(
    ledger: Ledger,
) -> None:
    order = intent("p1", "VTI", "40", "250.00")
    ledger.record_terminals([terminal(order, "1", "250.00")])
    before = ledger.notional_used(ACCOUNT, TODAY)

    ledger.record_intents([order])

    assert (before, ledger.notional_used(ACCOUNT, TODAY)) == (Decimal(0), Decimal("250.00"))


def test_notional_used_of_two_days_is_kept_apart(ledger: Ledger) -> None:
    today, tomorrow = intent("p1"), intent("p2", recorded_at=T0 + timedelta(days=1))
    ledger.record_intents([today])
    first = ledger.notional_used(ACCOUNT, TODAY)

    ledger.record_intents([tomorrow])

    assert first == Decimal("10000.00")
    assert ledger.notional_used(ACCOUNT, TODAY + timedelta(days=1)) == Decimal("10000.00")
    assert ledger.notional_used(ACCOUNT, TODAY) == Decimal("10000.00")


def test_open_intents_are_those_without_a_terminal_state_oldest_first(ledger: Ledger) -> None:
    later = T0 + timedelta(seconds=1)
    vti, gld = intent("p1", "VTI"), intent("p1", "GLD", "3", "190.10", recorded_at=later)
    spy = intent("p2", "SPY", "2", "0.4567")
    ledger.record_intents([gld, vti])
    ledger.record_intents([spy])

    ledger.record_terminals([terminal(vti, "40", "250.00")])

    assert ledger.open_intents() == sorted(
        [gld, spy], key=lambda i: (i.recorded_at, i.client_order_id)
    )


def test_record_intents_first_intent_wins(ledger: Ledger) -> None:
    ledger.record_intents([intent("p1", qty="40", price="250.00")])

    ledger.record_intents([intent("p1", qty="80", price="999.00")])

    assert ledger.notional_used(ACCOUNT, TODAY) == Decimal("10000.00")


def test_record_terminals_last_terminal_wins(ledger: Ledger) -> None:
    vti = intent("p1")
    ledger.record_intents([vti])
    ledger.record_terminals([terminal(vti, "10", "250.00")])

    ledger.record_terminals([terminal(vti, "40", "250.00")])

    assert ledger.notional_used(ACCOUNT, TODAY) == Decimal("10000.00")


def test_notional_used_skips_other_accounts_and_other_days(ledger: Ledger) -> None:
    ledger.record_intents(
        [
            intent("p1", "VTI"),
            intent("p2", "VTI", account_id="acct-2"),
            intent("p3", "VTI", recorded_at=T0 + timedelta(days=1)),
        ]
    )

    assert ledger.notional_used(ACCOUNT, TODAY) == Decimal("10000.00")
    assert ledger.notional_used("acct-2", TODAY) == Decimal("10000.00")
    assert ledger.notional_used(ACCOUNT, TODAY + timedelta(days=1)) == Decimal("10000.00")
    assert ledger.notional_used("acct-3", TODAY) == Decimal(0)


def test_notional_used_counts_in_the_new_york_trading_day(ledger: Ledger) -> None:
    late_evening = datetime(2026, 11, 30, 4, 30, tzinfo=UTC)  # 23:30 on the 29th in New York
    ledger.record_intents([intent("p1", recorded_at=late_evening)])

    assert ledger.notional_used(ACCOUNT, date(2026, 11, 29)) == Decimal("10000.00")
    assert ledger.notional_used(ACCOUNT, date(2026, 11, 30)) == Decimal(0)


# -- expire ----------------------------------------------------------------------------------


def test_expire_forgets_plans_received_before_with_their_events_and_orders(
    ledger: Ledger,
) -> None:
    decided(ledger, "old")
    old_order = intent("old", "VTI")
    ledger.record_intents([old_order])
    ledger.record_terminals([terminal(old_order, "40", "250.00")])
    later = T0 + timedelta(days=8)
    ledger.claim(plan_claim("new", received_at=later))
    ledger.record_intents([intent("new", "GLD", "1", "190.00", recorded_at=later)])

    expired = ledger.expire(T0 + timedelta(days=7))

    assert expired == 1
    assert ledger.notional_used(ACCOUNT, TODAY) == Decimal(0)
    assert ledger.claim(plan_claim("other", "evt-old")).status is ClaimStatus.NEW
    assert ledger.claim(plan_claim("old", "evt-old-again")).status is ClaimStatus.NEW
    assert ledger.claim(plan_claim("new", "evt-new-again")).status is ClaimStatus.DUPLICATE_PLAN
    assert ledger.notional_used(ACCOUNT, TODAY + timedelta(days=8)) == Decimal("190.00")


def test_expire_keeps_a_plan_received_exactly_at_the_cutoff(ledger: Ledger) -> None:
    ledger.claim(plan_claim("p1"))

    assert ledger.expire(T0) == 0
    assert ledger.claim(plan_claim("p1", "evt-p1-again")).status is ClaimStatus.DUPLICATE_PLAN


def test_close_twice_is_harmless(ledger: Ledger) -> None:
    ledger.close()

    ledger.close()


# -- properties ------------------------------------------------------------------------------


@given(
    filled_qty=st.decimals(min_value=0, max_value=40, places=9),
    metadata=st.dictionaries(st.text(max_size=5), st.text(max_size=5) | st.integers(), max_size=3),
)
def test_decode_outputs_re_encodes_to_the_stored_bytes(
    filled_qty: Decimal, metadata: dict[str, Any]
) -> None:
    result = execution("p1", format(filled_qty, "f"))
    traded = TradeExecuted(
        **{**header("p1", "TradeExecuted"), "metadata": metadata},
        success=result.success,
        orders_placed=1,
        orders_succeeded=result.orders_succeeded,
        execution_data=result,
    )
    stored = encode_outputs([traded, *outputs_for("p1")])

    assert encode_outputs(decode_outputs(stored)) == stored


PLANS = st.sampled_from(["p1", "p2", "p3"])
TIMES = st.sampled_from([T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)])
# Mostly the plan's own first event; sometimes a second event of it, or p1's event reused.
EVENTS = st.sampled_from(["first", "first", "first", "second", "evt-p1"])
FINGERPRINTS = st.sampled_from([ITEMS, ITEMS, ITEMS, OTHER_ITEMS])


SYMBOLS = st.sampled_from(["VTI", "BND"])
QUANTITIES = st.sampled_from(["1", "40", "0.5"])
PRICES = st.sampled_from(["250.00", "99.99", None])
DAYS = st.sampled_from([T0, T0 + timedelta(hours=1), T0 + timedelta(days=1)])
ACCOUNTS = st.sampled_from([ACCOUNT, "acct-2"])


def answered(answer: Claim) -> tuple[object, ...]:
    return (answer.status, answer.first_event_id, answer.first_received_at, wire(answer.outputs))


class LedgersAgree(RuleBasedStateMachine):
    """Both ledgers get the same calls and give the same answers.

    The SQLite ledger may also be flushed and reopened (a restart). A restart forgets which
    plans are in flight, so an undecided plan's first event resumes it there, once, where the
    in-memory ledger (never restarted) still has it in flight and answers DUPLICATE_EVENT.
    """

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.path = Path(self.directory.name) / "ledger.sqlite"
        self.memory = InMemoryLedger()
        self.sqlite = SqliteLedger(self.path, synchronous="NORMAL")
        self.claimed_since_open: set[str] = set()

    @rule(plan_id=PLANS, event=EVENTS, items=FINGERPRINTS, received_at=TIMES)
    def claim(self, plan_id: str, event: str, items: str, received_at: datetime) -> None:
        event_id = {"first": f"evt-{plan_id}", "second": f"evt-{plan_id}-2"}.get(event, event)
        request = plan_claim(plan_id, event_id, items=items, received_at=received_at)
        durable, memory = self.sqlite.claim(request), self.memory.claim(request)
        if durable.status is ClaimStatus.RESUME:
            assert plan_id not in self.claimed_since_open
            assert answered(replace(durable, status=ClaimStatus.DUPLICATE_EVENT)) == answered(
                memory
            )
        else:
            assert answered(durable) == answered(memory)
        if durable.status in {ClaimStatus.NEW, ClaimStatus.RESUME}:
            self.claimed_since_open.add(plan_id)

    @rule(plan_id=PLANS, variant=st.integers(0, 2))
    def record_outcome(self, plan_id: str, variant: int) -> None:
        decided = [outcome(plan_id, variant)]
        durable, memory = self.sqlite.record_outcomes(decided), self.memory.record_outcomes(decided)
        assert [wire(outputs) for outputs in durable] == [wire(outputs) for outputs in memory]

    @rule(plan_id=PLANS)
    def acknowledge(self, plan_id: str) -> None:
        self.sqlite.mark_acknowledged([plan_id])
        self.memory.mark_acknowledged([plan_id])

    @rule(before=TIMES)
    def expire(self, before: datetime) -> None:
        assert self.sqlite.expire(before) == self.memory.expire(before)

    @rule(plan_id=PLANS, symbol=SYMBOLS, qty=QUANTITIES, price=PRICES, at=DAYS, account=ACCOUNTS)
    def record_intent(
        self, plan_id: str, symbol: str, qty: str, price: str | None, at: datetime, account: str
    ) -> None:
        order = intent(plan_id, symbol, qty, price, account_id=account, recorded_at=at)
        self.sqlite.record_intents([order])
        self.memory.record_intents([order])

    @rule(plan_id=PLANS, symbol=SYMBOLS, qty=QUANTITIES, price=PRICES)
    def record_terminal(self, plan_id: str, symbol: str, qty: str, price: str | None) -> None:
        ended = terminal(intent(plan_id, symbol), qty, price)
        self.sqlite.record_terminals([ended])
        self.memory.record_terminals([ended])

    @rule(account=ACCOUNTS, at=DAYS)
    def notional_is_the_exact_sum(self, account: str, at: datetime) -> None:
        """The running totals equal a sum over the file by a ledger that has none yet."""
        day = trading_day(at)
        self.sqlite.flush()
        fresh = SqliteLedger(self.path, synchronous="NORMAL")
        exact = fresh.notional_used(account, day)
        fresh.close()
        assert self.sqlite.notional_used(account, day) == exact
        assert self.memory.notional_used(account, day) == exact

    @rule()
    def flush(self) -> None:
        self.sqlite.flush()

    @rule()
    def restart(self) -> None:
        self.sqlite.close()
        self.sqlite = SqliteLedger(self.path, synchronous="NORMAL")
        self.claimed_since_open.clear()

    def teardown(self) -> None:
        self.sqlite.close()
        self.directory.cleanup()


def test_ledgers_answer_any_sequence_of_calls_alike() -> None:
    run_state_machine_as_test(
        LedgersAgree, settings=settings(max_examples=200, stateful_step_count=30, deadline=None)
    )

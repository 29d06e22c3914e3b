"""InMemoryLedger: the ledger for one process's lifetime (simulate, tests, a throwaway run).

It keeps the same rules as the durable ledger, through ``decide_claim``, and forgets everything
when the process ends. A plan claimed here is in flight until it is decided or released; a
released plan's first event resumes it.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal

from rebalance_stream.contracts.outcomes import OutputEvent
from rebalance_stream.ledger.notional import DailyNotional
from rebalance_stream.ledger.protocol import (
    Claim,
    ClaimStatus,
    KnownPlan,
    OrderIntent,
    OrderTerminal,
    PlanClaim,
    PlanOutcome,
    PublishedInput,
    decide_claim,
    trading_day,
)


class InMemoryLedger:
    """A Ledger in dictionaries, behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: dict[str, KnownPlan] = {}
        self._events: dict[str, str] = {}
        self._intents: dict[str, OrderIntent] = {}
        self._terminals: dict[str, OrderTerminal] = {}
        self._in_flight: set[str] = set()
        self._digests: dict[str, tuple[str, str]] = {}
        """input_digest -> (plan_id, correlation_id), of NEW claims that had both."""
        self._notional = DailyNotional()

    def claim(self, request: PlanClaim) -> Claim:
        with self._lock:
            known = self._plans.get(request.plan_id)
            event_plan_id = self._events.get(request.event_id)
            in_flight = request.plan_id in self._in_flight
            answer = decide_claim(request, known, event_plan_id, in_flight_here=in_flight)
            if answer.status in (ClaimStatus.NEW, ClaimStatus.RESUME):
                self._in_flight.add(request.plan_id)
            if answer.status is ClaimStatus.NEW:
                self._plans[request.plan_id] = KnownPlan(
                    request.plan_id,
                    request.event_id,
                    request.items_fingerprint,
                    request.received_at,
                )
                if request.input_digest is not None and request.correlation_id is not None:
                    ids = (request.plan_id, request.correlation_id)
                    self._digests.setdefault(request.input_digest, ids)
            if answer.status is not ClaimStatus.EVENT_ID_REUSED:
                self._events.setdefault(request.event_id, request.plan_id)
            return answer

    def release(self, plan_ids: Sequence[str]) -> None:
        with self._lock:
            self._in_flight.difference_update(plan_ids)

    def record_intents(self, intents: Sequence[OrderIntent]) -> None:
        with self._lock:
            ended = any(i.client_order_id in self._terminals for i in intents)
            kept = [self._intents.setdefault(i.client_order_id, i) for i in intents]
            all_new = all(k is i for k, i in zip(kept, intents, strict=True)) and not ended
            self._notional.intents_recorded(intents, all_new=all_new)

    def record_terminals(self, terminals: Sequence[OrderTerminal]) -> None:
        with self._lock:
            for terminal in terminals:
                self._terminals[terminal.client_order_id] = terminal
            self._notional.terminals_recorded(terminals)

    def open_intents(self) -> list[OrderIntent]:
        with self._lock:
            open_ = [i for i in self._intents.values() if i.client_order_id not in self._terminals]
            return sorted(open_, key=lambda i: (i.recorded_at, i.client_order_id))

    def notional_used(self, account_id: str, day: date) -> Decimal:
        with self._lock:
            return self._notional.total(
                account_id, day, lambda: self._sum_notional(account_id, day)
            )

    def _sum_notional(self, account_id: str, day: date) -> Decimal:
        total = Decimal(0)
        for intent in self._intents.values():
            if intent.account_id != account_id or trading_day(intent.recorded_at) != day:
                continue
            terminal = self._terminals.get(intent.client_order_id)
            total += terminal.filled_notional if terminal else intent.expected_notional
        return total

    def record_outcomes(self, outcomes: Sequence[PlanOutcome]) -> list[tuple[OutputEvent, ...]]:
        with self._lock:
            self._in_flight.difference_update(outcome.plan_id for outcome in outcomes)
            return [self._record_outcome(outcome) for outcome in outcomes]

    def _record_outcome(self, outcome: PlanOutcome) -> tuple[OutputEvent, ...]:
        known = self._plans.get(outcome.plan_id)
        if known is None:
            return outcome.outputs
        if known.outputs is not None:
            return known.outputs
        self._plans[outcome.plan_id] = replace(known, outputs=outcome.outputs)
        return outcome.outputs

    def mark_acknowledged(self, plan_ids: Sequence[str]) -> None:
        with self._lock:
            for plan_id in plan_ids:
                known = self._plans.get(plan_id)
                if known is not None and known.outputs is not None:
                    self._plans[plan_id] = replace(known, acknowledged=True)

    def published_inputs(self, input_digests: Collection[str]) -> dict[str, PublishedInput]:
        found: dict[str, PublishedInput] = {}
        with self._lock:
            for digest in input_digests:
                plan_id, correlation_id = self._digests.get(digest, ("", ""))
                known = self._plans.get(plan_id)
                if known is not None and known.acknowledged:
                    found[digest] = PublishedInput(plan_id, known.first_event_id, correlation_id)
        return found

    def expire(self, before: datetime) -> int:
        with self._lock:
            old = [p for p, known in self._plans.items() if known.first_received_at < before]
            for plan_id in old:
                del self._plans[plan_id]
                self._in_flight.discard(plan_id)
            gone = set(old)
            self._events = {e: p for e, p in self._events.items() if p not in gone}
            self._digests = {d: ids for d, ids in self._digests.items() if ids[0] not in gone}
            for order_id in [o for o, i in self._intents.items() if i.plan_id in gone]:
                del self._intents[order_id]
                self._terminals.pop(order_id, None)
            self._notional.forget()
            return len(old)

    def close(self) -> None:
        """Nothing to release."""

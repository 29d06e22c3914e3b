"""DailyNotional: each account's notional per trading day, kept as running totals.

A ledger reads the day's total once from its store, then keeps it in step as it records:

    intent recorded (new)        total += qty * expected_price
    its terminal recorded        total += filled notional - that expected notional
    anything it cannot follow    every total is dropped and read again on next use

so a plan's daily-limit check costs a dictionary lookup, not a sum over the day's orders. What it
cannot follow: an intent recorded before (its row was kept, so nothing changes), an intent
whose terminal came first, a terminal of an intent this process did not record (after a
restart), a second terminal of one order, and rows expiring. Not thread-safe: the ledger
calls it under its own lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal

from rebalance_stream.ledger.protocol import OrderIntent, OrderTerminal, trading_day

DayKey = tuple[str, date]


class DailyNotional:
    """Running totals per (account_id, trading day); only the newest day seen is kept."""

    def __init__(self) -> None:
        self._totals: dict[DayKey, Decimal] = {}
        # Intents recorded here that have no terminal yet: where they count, and how much.
        self._expected: dict[str, tuple[DayKey, Decimal]] = {}
        self._newest_day: date | None = None

    def kept(self, account_id: str, day: date) -> Decimal | None:
        """The day's running total, or None when it has not been read (or was dropped)."""
        return self._totals.get((account_id, day))

    def total(self, account_id: str, day: date, load: Callable[[], Decimal]) -> Decimal:
        """The day's total, from ``load`` (the store's exact sum) the first time it is asked."""
        key = (account_id, day)
        total = self._totals.get(key)
        if total is None:
            total = load()
            self._keep(key, total)
        return total

    def intents_recorded(self, intents: Sequence[OrderIntent], *, all_new: bool) -> None:
        """After a write of ``intents``; ``all_new`` False when the store kept an earlier row
        or already had a terminal state for one of them."""
        if not all_new:
            self.forget()
            return
        for intent in intents:
            key = (intent.account_id, trading_day(intent.recorded_at))
            expected = intent.expected_notional
            self._expected[intent.client_order_id] = (key, expected)
            if key in self._totals:
                self._totals[key] += expected

    def terminals_recorded(self, terminals: Sequence[OrderTerminal]) -> None:
        """After ``terminals`` were recorded (buffered writes count: reads see them)."""
        for terminal in terminals:
            known = self._expected.pop(terminal.client_order_id, None)
            if known is None:
                self.forget()
                continue
            key, expected = known
            if key in self._totals:
                self._totals[key] += terminal.filled_notional - expected

    def forget(self) -> None:
        """Drop every total; the next ``total`` reads the store again."""
        self._totals.clear()

    def _keep(self, key: DayKey, total: Decimal) -> None:
        day = key[1]
        if self._newest_day is None or day > self._newest_day:
            self._newest_day = day
            self._totals = {k: v for k, v in self._totals.items() if k[1] >= day}
            # An intent of an earlier day that never got a terminal no longer matters here.
            self._expected = {c: e for c, e in self._expected.items() if e[0][1] >= day}
        self._totals[key] = total

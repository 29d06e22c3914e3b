"""The account book keeps positions from the stream's fills, and reads the venue again
whenever its last read can no longer be trusted."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from account_book_support import (
    MAX_AGE_S,
    FakeBroker,
    ManualClock,
    book_of,
    connected_book,
    fill,
    held,
)

from rebalance_stream.brokers.account_book import BookStats
from rebalance_stream.contracts.execution import OrderSide


def test_positions_are_read_once_then_kept_while_connected_and_young() -> None:
    book, broker, clock = connected_book()

    first = book.positions()
    clock.now += 59.9
    again = book.positions()

    assert first == again == held()
    assert broker.positions_calls == 1
    assert book.stats == BookStats(positions_reads=1, positions_kept=1)


def test_positions_returned_are_copies_the_caller_may_change() -> None:
    book, broker, _ = connected_book()

    book.positions()["SPY"] = Decimal(999)
    kept = book.positions()
    kept["QQQ"] = Decimal(999)
    del kept["SPY"]

    assert book.positions() == held()
    assert broker.positions_calls == 1


def test_a_fill_sets_the_position_the_venue_reports_not_a_delta() -> None:
    book, broker, _ = connected_book()
    book.positions()

    book.filled(fill("SPY", Decimal(12), qty=Decimal(3)))
    book.filled(fill("IWM", Decimal(4), qty=Decimal(4)))

    assert book.positions() == {"SPY": Decimal(12), "QQQ": Decimal(5), "IWM": Decimal(4)}
    assert broker.positions_calls == 1


def test_a_fill_leaving_no_position_removes_the_symbol() -> None:
    book, broker, _ = connected_book()
    book.positions()

    book.filled(fill("QQQ", Decimal(0), side=OrderSide.SELL, qty=Decimal(5)))

    assert book.positions() == {"SPY": Decimal(10)}
    assert broker.positions_calls == 1


def test_a_fill_without_a_position_makes_the_next_read_ask_the_venue() -> None:
    book, broker, _ = connected_book()
    book.positions()
    book.filled(fill("SPY", None))
    broker.held = {"SPY": Decimal(11)}

    assert book.positions() == {"SPY": Decimal(11)}
    assert broker.positions_calls == 2
    assert book.positions() == {"SPY": Decimal(11)}
    assert broker.positions_calls == 2


def test_positions_are_read_again_once_max_age_has_passed() -> None:
    book, broker, clock = connected_book()
    book.positions()
    clock.now = 1000.0 + MAX_AGE_S
    broker.held = {"SPY": Decimal(7)}

    assert book.positions() == {"SPY": Decimal(7)}
    assert broker.positions_calls == 2
    assert book.stats == BookStats(positions_reads=2, positions_kept=0)


def test_positions_are_read_on_every_call_while_disconnected_and_once_after() -> None:
    book, broker, _ = connected_book()
    book.positions()

    book.disconnected()
    book.positions()
    book.positions()
    assert broker.positions_calls == 3

    book.connected(2)
    book.positions()
    book.positions()
    assert broker.positions_calls == 4
    assert book.stats == BookStats(positions_reads=4, positions_kept=1)


def test_positions_are_read_again_after_a_reconnect() -> None:
    book, broker, _ = connected_book()
    book.positions()

    book.connected(2)
    book.positions()
    book.positions()

    assert broker.positions_calls == 2


def test_positions_are_read_again_after_a_fill_learned_outside_the_stream() -> None:
    book, broker, _ = connected_book()
    book.positions()
    book.buying_power(Decimal(0))

    book.stale("fill learned over REST")
    book.positions()
    book.buying_power(Decimal(0))

    assert (broker.positions_calls, broker.account_calls) == (2, 2)


def test_positions_are_never_trusted_before_the_stream_first_connects() -> None:
    broker = FakeBroker(held(), Decimal(1000))
    book = book_of(broker, ManualClock())

    book.positions()
    book.positions()

    assert broker.positions_calls == 2


def test_max_age_zero_reads_the_venue_on_every_call() -> None:
    book, broker, _ = connected_book(max_age_s=0)

    book.positions()
    book.positions()
    book.buying_power(Decimal(0))
    book.buying_power(Decimal(0))

    assert (broker.positions_calls, broker.account_calls) == (2, 2)


def test_a_fill_during_a_positions_read_makes_that_read_untrusted() -> None:
    book, broker, _ = connected_book()
    broker.during_positions = lambda: book.filled(fill("SPY", Decimal(11)))

    first = book.positions()
    broker.during_positions = None
    broker.held = {"SPY": Decimal(11), "QQQ": Decimal(5)}
    second = book.positions()
    third = book.positions()

    assert first == held()
    assert second == third == {"SPY": Decimal(11), "QQQ": Decimal(5)}
    assert broker.positions_calls == 2


def test_a_negative_max_age_is_refused() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        book_of(FakeBroker({}, Decimal(0)), ManualClock(), max_age_s=-1.0)


def test_an_order_that_ended_before_its_fills_came_makes_reads_wait_for_them() -> None:
    book, broker, clock = connected_book()
    book.positions()
    clock.now += 1
    book.orders_ended({"rs1-abc-SPY-S-1": Decimal(4), "rs1-abc-QQQ-S-1": Decimal(0)})

    unheard = book.positions()  # SPY's fill has not come: the venue is read
    book.filled(fill("SPY", Decimal(6), client_order_id="rs1-abc-SPY-S-1", qty=Decimal(4)))
    heard = book.positions()

    assert unheard == held()
    assert heard == {"SPY": Decimal(6), "QQQ": Decimal(5)}
    assert broker.positions_calls == 2


def test_a_read_waits_for_an_awaited_fill_that_comes_within_fill_wait_s() -> None:
    broker, clock = FakeBroker(held(), Decimal(1000)), ManualClock()
    book = book_of(broker, clock, fill_wait_s=10.0)
    book.connected(1)
    book.positions()
    book.orders_ended({"rs1-abc-SPY-S-1": Decimal(4)})
    late = fill("SPY", Decimal(6), client_order_id="rs1-abc-SPY-S-1", qty=Decimal(4))
    threading.Timer(0.05, book.filled, (late,)).start()

    positions = book.positions()

    assert positions == {"SPY": Decimal(6), "QQQ": Decimal(5)}
    assert broker.positions_calls == 1


def test_an_order_whose_fills_came_first_awaits_nothing() -> None:
    book, broker, _ = connected_book()
    book.positions()
    book.filled(fill("SPY", Decimal(6), client_order_id="rs1-abc-SPY-S-1", qty=Decimal(4)))
    book.orders_ended({"rs1-abc-SPY-S-1": Decimal(4)})

    assert book.positions() == {"SPY": Decimal(6), "QQQ": Decimal(5)}
    assert broker.positions_calls == 1

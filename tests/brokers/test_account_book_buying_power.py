"""The account book keeps a lower bound of buying power: the last read, less what buys have
spent since (ours while they run, fills of buys not ours); sells are never credited."""

from __future__ import annotations

from decimal import Decimal

from account_book_support import (
    connected_book,
    fill,
)

from rebalance_stream.brokers.account_book import BookStats
from rebalance_stream.contracts.execution import OrderSide


def test_buying_power_is_kept_while_it_covers_what_is_needed() -> None:
    book, broker, _ = connected_book()

    assert book.buying_power(Decimal(500)) == Decimal(1000)
    broker.buying_power = Decimal(1500)
    assert book.buying_power(Decimal(1000)) == Decimal(1000)
    assert broker.account_calls == 1

    assert book.buying_power(Decimal("1000.01")) == Decimal(1500)
    assert broker.account_calls == 2
    assert book.stats == BookStats(buying_power_reads=2, buying_power_kept=1)


def test_a_short_bound_reads_the_venue_and_subtracts_running_spending() -> None:
    book, broker, _ = connected_book()
    book.buying_power(Decimal(0))

    with book.spending(Decimal(300), ["rs1-abc-SPY-B-1"]):
        broker.buying_power = Decimal(2000)
        assert book.buying_power(Decimal(800)) == Decimal(1700)

    assert broker.account_calls == 2


def test_spending_counts_while_running_and_after_until_a_later_read() -> None:
    book, broker, clock = connected_book()
    assert book.buying_power(Decimal(0)) == Decimal(1000)

    with book.spending(Decimal(300), ["rs1-abc-SPY-B-1"]):
        assert book.buying_power(Decimal(0)) == Decimal(700)
        clock.now += 1
    clock.now += 1
    assert book.buying_power(Decimal(0)) == Decimal(700)
    assert broker.account_calls == 1

    broker.buying_power = Decimal(750)  # the venue has seen the buy
    assert book.buying_power(Decimal(701)) == Decimal(750)
    assert book.buying_power(Decimal(0)) == Decimal(750)
    assert broker.account_calls == 2


def test_spending_ended_at_the_instant_a_read_starts_still_counts() -> None:
    book, broker, _ = connected_book()

    with book.spending(Decimal(300), ["rs1-abc-SPY-B-1"]):
        pass
    assert book.buying_power(Decimal(0)) == Decimal(700)
    assert broker.account_calls == 1


def test_a_running_spending_is_subtracted_from_a_fresh_read() -> None:
    book, broker, _ = connected_book()

    with book.spending(Decimal(200), ["rs1-abc-SPY-B-1"]):
        assert book.buying_power(Decimal(0)) == Decimal(800)

    assert broker.account_calls == 1


def test_a_buy_fill_of_a_running_spending_is_not_subtracted_again() -> None:
    book, broker, _ = connected_book()
    book.buying_power(Decimal(0))

    with book.spending(Decimal(300), ["rs1-abc-SPY-B-1"]):
        book.filled(fill("SPY", Decimal(12), client_order_id="rs1-abc-SPY-B-2", qty=Decimal(2)))
        assert book.buying_power(Decimal(0)) == Decimal(700)

    assert broker.account_calls == 1


def test_a_buy_fill_not_ours_is_subtracted_and_a_sell_fill_is_never_credited() -> None:
    book, broker, _ = connected_book()
    book.buying_power(Decimal(0))

    with book.spending(Decimal(300), ["rs1-abc-SPY-B-1"]):
        book.filled(
            fill("QQQ", Decimal(8), client_order_id="manual-7", qty=Decimal(3), price=Decimal(50))
        )
        assert book.buying_power(Decimal(0)) == Decimal(550)
        book.filled(
            fill(
                "SPY",
                Decimal(0),
                client_order_id="rs1-abc-SPY-S-1",
                side=OrderSide.SELL,
                qty=Decimal(10),
                price=Decimal(100),
            )
        )
        book.filled(fill("QQQ", Decimal(0), side=OrderSide.SELL, qty=Decimal(8)))
        assert book.buying_power(Decimal(0)) == Decimal(550)

    assert broker.account_calls == 1
    assert book.stats == BookStats(buying_power_reads=1, buying_power_kept=2)


def test_a_buy_fill_not_ours_during_a_buying_power_read_is_counted() -> None:
    book, broker, _ = connected_book()
    other = fill("SPY", Decimal(11), qty=Decimal(2), price=Decimal(50))
    broker.during_account = lambda: book.filled(other)

    first = book.buying_power(Decimal(0))
    kept = book.buying_power(Decimal(0))

    assert (first, kept) == (Decimal(900), Decimal(900))
    assert broker.account_calls == 1


def test_fills_count_what_the_order_spent_in_all_and_a_late_fill_changes_nothing() -> None:
    book, broker, _ = connected_book()
    first = book.buying_power(Decimal(0))
    book.positions()

    book.filled(fill("QQQ", Decimal(5), qty=Decimal(5), price=Decimal(10)))  # partial: 50.00
    book.filled(fill("QQQ", Decimal(10), qty=Decimal(10), price=Decimal(11)))  # all: 110.00
    book.filled(fill("QQQ", Decimal(5), qty=Decimal(5), price=Decimal(10)))  # late: nothing
    after = book.buying_power(Decimal(0))

    assert first - after == Decimal(110)
    assert book.positions()["QQQ"] == Decimal(10)  # the late fill's position is not taken
    assert broker.positions_calls == 1

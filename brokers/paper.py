"""The embedded paper broker: simulates a venue from a PaperAccount, optionally persisted.

Market orders fill at the account's price by the symbol's fill model (SPEC 4):

    immediate        -> filled at once
    {"partial": f}   -> f of the qty filled, the rest canceled at once (IOC)
    reject           -> recorded as rejected (returned, not raised)
    {"delay_ms": n}  -> open until the first call at or after submitted_at + n ms, then filled

Each symbol has one price, so its quote has bid = ask = that price. A limit order that is
marketable (a buy at or above the price, a sell at or below it) follows the fill model as a
market order does, at the price; one that is not rests open until canceled. Prices do not
change while the broker runs; a resting limit that a newer account file's price makes
marketable fills in full when next settled, like a due delayed order.

With a state path, cash, positions and orders live in SQLite and outlive the process.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import structlog

from rebalance_stream.brokers.paper_account import DelayedFill, PaperAccount, PartialFill
from rebalance_stream.brokers.paper_fills import (
    QTY_QUANTUM,
    WHOLE_SHARE,
    executed,
    quantity_of,
    round_down,
)
from rebalance_stream.brokers.paper_rules import (
    buying_power,
    check_order,
    is_marketable,
    price_or_reject,
)
from rebalance_stream.brokers.paper_state import DEFAULT_RETAINED_ORDERS, PaperState
from rebalance_stream.brokers.protocol import (
    AccountSnapshot,
    AssetInfo,
    BrokerOrder,
    BrokerOrderStatus,
    DuplicateClientOrderId,
    MarketClock,
    OrderNotFound,
    OrderRejected,
    OrderRequest,
    Quote,
    UnknownAsset,
)
from rebalance_stream.contracts.execution import OrderSide

log = structlog.get_logger(__name__)

# Fixed forever: broker_order_id = uuid5(namespace, client_order_id), so ids are reproducible.
PAPER_ORDER_NAMESPACE = uuid.UUID("6ab84c5c-d453-45f6-8d8c-c7a6cd34fc7f")
FILL_MODEL_REJECT_REASON = "rejected by paper fill model"

_MS_PER_S = 1000

_EVENT_BY_STATUS = {
    BrokerOrderStatus.NEW: "paper_order_accepted",
    BrokerOrderStatus.FILLED: "paper_order_filled",
    BrokerOrderStatus.CANCELED: "paper_order_canceled",
    BrokerOrderStatus.REJECTED: "paper_order_rejected",
}


def broker_order_id_for(client_order_id: str) -> str:
    """The paper broker's deterministic order id for a client_order_id."""
    return str(uuid.uuid5(PAPER_ORDER_NAMESPACE, client_order_id))


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PaperBroker:
    """A Broker over a PaperAccount. Thread-safe: one lock serializes every call.

    The constructor stores configuration; ``start()`` opens the state (or use ``with``).
    Calls before ``start()`` or after ``close()`` raise RuntimeError. Memory keeps the open
    orders and the last ``retained_orders`` terminal ones (see ``PaperState``).
    """

    def __init__(
        self,
        account: PaperAccount,
        *,
        state_path: Path | None = None,
        clock: Callable[[], datetime] | None = None,
        retained_orders: int = DEFAULT_RETAINED_ORDERS,
    ) -> None:
        self._account = account
        self._state_path = state_path
        self._retained_orders = retained_orders
        self._clock = clock or _utc_now
        self._lock = threading.Lock()
        self._state: PaperState | None = None
        self._started_at: datetime | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Open the state: load it from the state file when initialized, else seed it."""
        with self._lock:
            if self._state is not None:
                return
            self._state = PaperState.open(
                self._state_path,
                cash=self._account.cash,
                positions=self._account.positions,
                retained_orders=self._retained_orders,
            )
            self._started_at = self._now()
            log.info(
                "paper_broker_started",
                state_path=str(self._state_path) if self._state_path else None,
                cash=str(self._state.cash),
                orders_in_memory=self._state.orders_in_memory,
            )
            self._cancel_unpriced(self._state)

    def close(self) -> None:
        """Close the state; idempotent."""
        with self._lock:
            if self._state is not None:
                self._state.close()
                self._state = None
                log.info("paper_broker_closed")

    def __enter__(self) -> PaperBroker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- Broker ------------------------------------------------------------------------------

    def get_clock(self) -> MarketClock:
        """Open or closed as the account says, at the injected clock's time."""
        with self._session():
            return MarketClock(is_open=self._account.market == "open", timestamp=self._now())

    def get_account(self) -> AccountSnapshot:
        """Cash, and buying power: cash minus the cost reserved by open buy orders."""
        with self._session() as state:
            return AccountSnapshot(cash=state.cash, buying_power=buying_power(state, self._account))

    def get_position_qty(self, symbol: str) -> Decimal:
        """The quantity held, Decimal 0 when there is no position."""
        with self._session() as state:
            return state.position(symbol.upper())

    def get_positions(self) -> dict[str, Decimal]:
        """Every position held, by upper-case symbol."""
        with self._session() as state:
            return state.positions()

    def get_asset(self, symbol: str) -> AssetInfo:
        """Raises UnknownAsset when the account has no price for the symbol."""
        with self._session():
            upper = symbol.upper()
            if self._account.price_of(upper) is None:
                raise UnknownAsset(upper)
            fractionable = self._account.is_fractionable(upper)
            return AssetInfo(symbol=upper, tradable=True, fractionable=fractionable)

    def get_latest_price(self, symbol: str) -> Decimal | None:
        """The account's price for the symbol, or None."""
        with self._session():
            return self._account.price_of(symbol)

    def get_latest_prices(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """The account's price of each symbol that has one."""
        with self._session():
            prices = {symbol.upper(): self._account.price_of(symbol) for symbol in symbols}
            return {symbol: price for symbol, price in prices.items() if price is not None}

    def get_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        """Bid = ask = the account's price, at the clock's time; unknown symbols are absent."""
        with self._session():
            now = self._now()
            prices = {symbol.upper(): self._account.price_of(symbol) for symbol in symbols}
            return {s: Quote(p, p, now) for s, p in prices.items() if p is not None}

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Record a market or limit order; apply the symbol's fill model if it is marketable,
        else leave it open (status new).

        Raises DuplicateClientOrderId when the client_order_id was ever used, and OrderRejected
        (nothing recorded) for an unknown symbol, a bad amount, or too little cash or shares (a
        limit buy needs its qty at the limit price).
        """
        with self._session() as state:
            broker_order_id = broker_order_id_for(request.client_order_id)
            if state.order(broker_order_id) is not None:
                raise DuplicateClientOrderId(request.client_order_id)
            try:
                price = check_order(state, self._account, request)
            except OrderRejected as exc:
                log.info(
                    "paper_order_refused", client_order_id=request.client_order_id, reason=str(exc)
                )
                raise
            order = BrokerOrder(
                broker_order_id=broker_order_id,
                client_order_id=request.client_order_id,
                symbol=request.symbol.upper(),
                side=request.side,
                status=BrokerOrderStatus.NEW,
                qty=request.qty,
                notional=request.notional,
                filled_qty=Decimal(0),
                filled_avg_price=None,
                submitted_at=self._now(),
                order_type=request.order_type,
                limit_price=request.limit_price,
            )
            return self._apply_fill_model(state, order, price)

    def get_order(self, broker_order_id: str) -> BrokerOrder:
        """Raises OrderNotFound."""
        with self._session() as state:
            order = state.order(broker_order_id)
            if order is None:
                raise OrderNotFound(broker_order_id)
            return order

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """The order with this client_order_id, or None."""
        with self._session() as state:
            return state.order(broker_order_id_for(client_order_id))

    def cancel_order(self, broker_order_id: str) -> None:
        """Cancel an open order (a resting limit included), keeping its filled qty; a terminal
        order is left as it is.

        Raises OrderNotFound.
        """
        with self._session() as state:
            order = state.order(broker_order_id)
            if order is None:
                raise OrderNotFound(broker_order_id)
            if order.is_terminal:
                return
            canceled = replace(order, status=BrokerOrderStatus.CANCELED)
            self._save(state, canceled, Decimal(0), Decimal(0))

    def list_orders(self, client_order_id_prefix: str = "") -> list[BrokerOrder]:
        """Every order whose client_order_id starts with the prefix, oldest first."""
        with self._session() as state:
            return [
                o for o in state.orders() if o.client_order_id.startswith(client_order_id_prefix)
            ]

    # -- internals ---------------------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[PaperState]:
        """Sleep the simulated latency, lock, and settle delayed orders that are due."""
        if self._account.latency_ms:
            # Outside the lock: a venue's latency does not serialize concurrent callers.
            time.sleep(self._account.latency_ms / _MS_PER_S)
        with self._lock:
            if self._state is None:
                raise RuntimeError("PaperBroker is not started; call start() first")
            self._settle_due(self._state)
            yield self._state

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the paper broker's clock must return timezone-aware datetimes")
        return now.astimezone(UTC)

    def _price(self, symbol: str) -> Decimal:
        return price_or_reject(self._account, symbol)

    def _apply_fill_model(
        self, state: PaperState, order: BrokerOrder, price: Decimal
    ) -> BrokerOrder:
        model = self._account.fill_model_for(order.symbol)
        if isinstance(model, DelayedFill) or not is_marketable(
            order.side, order.limit_price, price
        ):
            result = order
        elif model == "reject":
            result = replace(
                order, status=BrokerOrderStatus.REJECTED, reject_reason=FILL_MODEL_REJECT_REASON
            )
        else:
            result = self._fill_fraction(order, price, model)
        self._save(state, result, result.filled_qty, price)
        return result

    def _fill_fraction(
        self, order: BrokerOrder, price: Decimal, model: PartialFill | str
    ) -> BrokerOrder:
        """Fill the model's fraction at once and cancel the rest (IOC); ``immediate`` is all."""
        qty = quantity_of(order.qty, order.notional, price)
        fraction = model.partial if isinstance(model, PartialFill) else Decimal(1)
        quantum = QTY_QUANTUM if self._account.is_fractionable(order.symbol) else WHOLE_SHARE
        part = round_down(qty * fraction, quantum)
        status = BrokerOrderStatus.FILLED if part == qty else BrokerOrderStatus.CANCELED
        return executed(order, part, price, status, order.submitted_at)

    def _settle_due(self, state: PaperState) -> None:
        """Fill every marketable open order whose delay has passed, at the time it became due.

        A limit order cannot have filled before this broker started with the price that makes
        it marketable, so it is due no earlier than the start.
        """
        now = self._now()
        for order in state.open_orders():
            price = self._price(order.symbol)
            if not is_marketable(order.side, order.limit_price, price):
                continue
            model = self._account.fill_model_for(order.symbol)
            # An order left open by an earlier account file whose model is no longer a delay
            # is due at once.
            delay_ms = model.delay_ms if isinstance(model, DelayedFill) else 0
            due_at = order.submitted_at + timedelta(milliseconds=delay_ms)
            if order.limit_price is not None and self._started_at is not None:
                due_at = max(due_at, self._started_at)
            if due_at > now:
                continue
            fill_qty = quantity_of(order.qty, order.notional, price) - order.filled_qty
            filled = executed(
                order, order.filled_qty + fill_qty, price, BrokerOrderStatus.FILLED, due_at
            )
            self._save(state, filled, fill_qty, price)

    def _cancel_unpriced(self, state: PaperState) -> None:
        """Cancel open orders whose symbol lost its price in a newer account file."""
        for order in state.open_orders():
            if self._account.price_of(order.symbol) is None:
                canceled = replace(order, status=BrokerOrderStatus.CANCELED)
                self._save(state, canceled, Decimal(0), Decimal(0))

    @staticmethod
    def _save(state: PaperState, order: BrokerOrder, fill_qty: Decimal, price: Decimal) -> None:
        """Persist ``order`` with ``fill_qty`` newly filled at ``price``, and log it."""
        signed = fill_qty if order.side is OrderSide.BUY else -fill_qty
        cash = state.cash - signed * price
        state.save(order, cash=cash, qty=state.position(order.symbol) + signed)
        log.info(
            _EVENT_BY_STATUS.get(order.status, "paper_order_updated"),
            client_order_id=order.client_order_id,
            broker_order_id=order.broker_order_id,
            symbol=order.symbol,
            side=order.side.value,
            status=order.status.value,
            filled_qty=str(order.filled_qty),
            cash=str(cash),
        )

"""Readable tables of dispositions, for ``simulate`` and ``demo``."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from rich.console import Console
from rich.table import Table

from rebalance_stream.brokers.protocol import AccountSnapshot
from rebalance_stream.contracts.outcomes import TradeExecuted, WorkflowCompleted, WorkflowFailed
from rebalance_stream.operators.flow import DeadLetter, Disposition
from rebalance_stream.sinks.routing import OutputTopics

CENT = Decimal("0.01")


def outcome_label(disposition: Disposition) -> str:
    """completed, failed, dead-lettered or skipped: what a reader of the topics would see."""
    if disposition.skipped is not None:
        return "skipped (duplicate)"
    kinds = {type(output) for output in disposition.outputs}
    if WorkflowCompleted in kinds:
        return "completed"
    if WorkflowFailed in kinds:
        return "failed"
    return "dead-lettered" if DeadLetter in kinds else "no outputs"


def _reason(disposition: Disposition) -> str:
    if disposition.skipped is not None:
        return disposition.skipped.reason_code
    for output in disposition.outputs:
        if isinstance(output, WorkflowFailed):
            return f"{output.error_details.reason_code}: {output.failure_reason}"
        if isinstance(output, DeadLetter):
            return f"{output.failure.reason_code}: {output.failure.reason}"
        if isinstance(output, TradeExecuted) and output.failure_reason:
            return output.failure_reason
    return ""


def _topics(disposition: Disposition, topics: OutputTopics) -> str:
    names = [
        topics.dead_letter if isinstance(output, DeadLetter) else topics.for_event(output)
        for output in disposition.outputs
    ]
    return ", ".join(names) or "-"


def _trade(disposition: Disposition) -> TradeExecuted | None:
    found = [output for output in disposition.outputs if isinstance(output, TradeExecuted)]
    return found[0] if found else None


def outcomes_table(
    dispositions: Sequence[Disposition], sources: Sequence[str], topics: OutputTopics
) -> Table:
    """One row per input: its plan, outcome, orders and the topics it was written to."""
    table = Table(title="Outcome per input", show_lines=False)
    for column in (
        "p:offset",
        "input",
        "plan_id",
        "outcome",
        "orders",
        "filled $",
        "topics",
        "reason",
    ):
        table.add_column(column, overflow="fold")
    for disposition, source in zip(dispositions, sources, strict=True):
        trade = _trade(disposition)
        result = trade.execution_data if trade else None
        table.add_row(
            f"{disposition.position.partition}:{disposition.position.offset}",
            source,
            disposition.plan_id or "-",
            outcome_label(disposition),
            f"{result.orders_succeeded}/{result.orders_placed}" if result else "-",
            format(result.total_trade_value.quantize(CENT), "f") if result else "-",
            _topics(disposition, topics),
            _reason(disposition),
        )
    return table


def orders_table(dispositions: Sequence[Disposition]) -> Table:
    """One row per order of every executed plan."""
    table = Table(title="Orders")
    for column in ("p:offset", "symbol", "side", "qty", "filled", "avg price", "status", "note"):
        table.add_column(column, overflow="fold")
    for disposition in dispositions:
        trade = _trade(disposition)
        for order in trade.execution_data.orders if trade else ():
            note = order.skip_reason.value if order.skip_reason else order.error_message or ""
            table.add_row(
                f"{disposition.position.partition}:{disposition.position.offset}",
                order.symbol,
                order.side.value,
                format(order.planned_qty, "f") if order.planned_qty is not None else "-",
                format(order.filled_qty, "f"),
                format(order.filled_avg_price, "f") if order.filled_avg_price else "-",
                order.status,
                note,
            )
    return table


def portfolio_table(account: AccountSnapshot, positions: dict[str, Decimal]) -> Table:
    """Cash, to the cent, and each position held."""
    table = Table(title="Paper account after the run")
    table.add_column("holding")
    table.add_column("quantity", justify="right")
    table.add_row("cash", format(account.cash.quantize(CENT), "f"))
    for symbol, qty in sorted(positions.items()):
        table.add_row(symbol, format(qty.normalize(), "f"))
    return table


def print_report(console: Console, *tables: Table) -> None:
    for table in tables:
        console.print(table)

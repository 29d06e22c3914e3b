"""Broker adapters behind one protocol: the embedded paper broker, and Alpaca."""

from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.brokers.paper_account import PaperAccount
from rebalance_stream.brokers.protocol import (
    TERMINAL_STATUSES,
    AccountSnapshot,
    AssetInfo,
    Broker,
    BrokerError,
    BrokerOrder,
    BrokerOrderStatus,
    BrokerUnavailable,
    DuplicateClientOrderId,
    MarketClock,
    OrderNotFound,
    OrderRejected,
    OrderRequest,
    Quote,
    UnknownAsset,
)

__all__ = [
    "TERMINAL_STATUSES",
    "AccountSnapshot",
    "AssetInfo",
    "Broker",
    "BrokerError",
    "BrokerOrder",
    "BrokerOrderStatus",
    "BrokerUnavailable",
    "DuplicateClientOrderId",
    "MarketClock",
    "OrderNotFound",
    "OrderRejected",
    "OrderRequest",
    "PaperAccount",
    "PaperBroker",
    "Quote",
    "UnknownAsset",
]

"""The paper account file (SPEC 4): the embedded broker's starting state and behaviour.

Decimals may be written as strings or JSON numbers; numbers are read exactly, never via float.
Symbols are upper-cased. ``fill`` maps ``"default"`` and symbols to a fill model.
"""

from __future__ import annotations

import json
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rebalance_stream.contracts.wire import Money

DEFAULT_FILL_KEY = "default"
SAMPLE_ACCOUNT_RESOURCE = "sample_account.json"


class PartialFill(BaseModel):
    """Fill ``partial`` of the quantity at once and cancel the rest, like an IOC order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    partial: Money

    @field_validator("partial")
    @classmethod
    def _fraction_in_range(cls, value: Decimal) -> Decimal:
        if not 0 < value <= 1:
            raise ValueError("partial must be in (0, 1]")
        return value


class DelayedFill(BaseModel):
    """Leave the order open, and fill it entirely once ``delay_ms`` have passed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    delay_ms: Annotated[int, Field(ge=0)]


V = TypeVar("V")

FillModel = Literal["immediate", "reject"] | PartialFill | DelayedFill
"""``"immediate"``, ``"reject"``, ``{"partial": fraction}`` or ``{"delay_ms": n}``."""


def _upper_keys(mapping: dict[str, V]) -> dict[str, V]:
    return {key.upper(): value for key, value in mapping.items()}


def _default_fill() -> dict[str, FillModel]:
    return {DEFAULT_FILL_KEY: "immediate"}


class PaperAccount(BaseModel):
    """A frozen paper account: cash, positions, prices, fractionable symbols, market, fills."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cash: Money
    positions: dict[str, Money] = Field(default_factory=dict)
    prices: dict[str, Money] = Field(default_factory=dict)
    fractionable: frozenset[str] = frozenset()
    market: Literal["open", "closed"] = "open"
    fill: dict[str, FillModel] = Field(default_factory=_default_fill)
    latency_ms: Annotated[int, Field(ge=0)] = 0

    @field_validator("cash")
    @classmethod
    def _cash_not_negative(cls, value: Decimal) -> Decimal:
        if value < 0:
            raise ValueError("cash must not be negative")
        return value

    @field_validator("positions")
    @classmethod
    def _positions_not_negative(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        if any(qty < 0 for qty in value.values()):
            raise ValueError("positions must not be negative (no shorting)")
        return _upper_keys(value)

    @field_validator("prices")
    @classmethod
    def _prices_positive(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        if any(price <= 0 for price in value.values()):
            raise ValueError("prices must be positive")
        return _upper_keys(value)

    @field_validator("fractionable")
    @classmethod
    def _upper_symbols(cls, value: frozenset[str]) -> frozenset[str]:
        return frozenset(symbol.upper() for symbol in value)

    @field_validator("fill")
    @classmethod
    def _upper_fill_symbols(cls, value: dict[str, FillModel]) -> dict[str, FillModel]:
        return {
            DEFAULT_FILL_KEY if key.lower() == DEFAULT_FILL_KEY else key.upper(): model
            for key, model in value.items()
        }

    @classmethod
    def from_json(cls, text: str) -> PaperAccount:
        """Parse an account document; JSON numbers become exact Decimals."""
        return cls.model_validate(json.loads(text, parse_float=Decimal))

    @classmethod
    def from_file(cls, path: Path | str) -> PaperAccount:
        """Load an account file (UTF-8 JSON). Raises OSError or pydantic.ValidationError."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    @classmethod
    def sample(cls) -> PaperAccount:
        """The built-in sample account shipped with the package."""
        resource = files("rebalance_stream.brokers").joinpath(SAMPLE_ACCOUNT_RESOURCE)
        return cls.from_json(resource.read_text(encoding="utf-8"))

    def fill_model_for(self, symbol: str) -> FillModel:
        """The symbol's fill model, else the default one, else ``"immediate"``."""
        return self.fill.get(symbol.upper(), self.fill.get(DEFAULT_FILL_KEY, "immediate"))

    def price_of(self, symbol: str) -> Decimal | None:
        """The symbol's price, or None when the account has none (an unknown asset)."""
        return self.prices.get(symbol.upper())

    def is_fractionable(self, symbol: str) -> bool:
        return symbol.upper() in self.fractionable

"""The Alpaca adapter's settings, from Alpaca's own environment variables; paper by default."""

from __future__ import annotations

from typing import Final

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PAPER_BASE_URL: Final = "https://paper-api.alpaca.markets"
DATA_BASE_URL: Final = "https://data.alpaca.markets"


class AlpacaConfig(BaseSettings):
    """Credentials, endpoints, timeouts and limits; paper trading unless the base URL says not.

    Credentials and URLs use Alpaca's own variables (``APCA_API_KEY_ID``, ``APCA_API_SECRET_KEY``,
    ``APCA_API_BASE_URL``, ``APCA_API_DATA_URL``); the rest ``REBALANCE_STREAM_ALPACA_*``.
    The secret is a SecretStr: it never appears in a repr.
    """

    model_config = SettingsConfigDict(
        env_prefix="REBALANCE_STREAM_ALPACA_", extra="ignore", frozen=True, populate_by_name=True
    )

    key_id: str = Field(validation_alias="APCA_API_KEY_ID", min_length=1)
    secret_key: SecretStr = Field(validation_alias="APCA_API_SECRET_KEY")
    base_url: str = Field(PAPER_BASE_URL, validation_alias="APCA_API_BASE_URL")
    data_url: str = Field(DATA_BASE_URL, validation_alias="APCA_API_DATA_URL")
    data_feed: str | None = None
    """``iex`` or ``sip``; None lets Alpaca choose by subscription."""
    connect_timeout_s: float = Field(3.05, gt=0)
    read_timeout_s: float = Field(10.0, gt=0)
    rate_limit_per_minute: float = Field(200, gt=0)
    rate_limit_burst: float | None = Field(None, ge=1)
    read_attempts: int = Field(4, ge=1)
    """Attempts of each read or cancel, the first included."""
    submit_attempts: int = Field(4, ge=1)
    """Sends of one order, the first included, while Alpaca answers 429 (rate limited)."""
    resolve_attempts: int = Field(6, ge=1)
    """Lookups by client_order_id after a submit of unknown outcome."""
    backoff_base_s: float = Field(0.25, gt=0)
    backoff_max_s: float = Field(8.0, gt=0)
    pool_size: int = Field(10, ge=1)
    asset_cache_s: float = Field(300.0, ge=0)
    """How long an asset (fractionable or not) is kept before it is read again; 0: never kept."""
    clock_cache_s: float = Field(30.0, ge=0)
    """How long a market clock reading is kept, never past a minute before the next open or
    close; 0: the clock is read for every plan."""
    market_data_share_s: float = Field(0.25, ge=0)
    """How long one snapshots answer (prices and quotes) also serves other plans trading the
    same symbols; plans asking while it is out wait for it. 0: each plan reads its own."""
    account_book_s: float = Field(30.0, ge=0)
    """With the trade-updates stream: how long positions and buying power read from Alpaca
    are kept, moved by the stream's fills, before they are read again (see
    ``account_book``); 0: read before every plan."""
    stream_url: str | None = None
    """The trade_updates websocket; default: the base URL as wss://…/stream."""

    @field_validator("base_url", "data_url")
    @classmethod
    def _without_version(cls, value: str) -> str:
        """alpaca-py appends ``/v2``; accept a URL written with or without it."""
        value = value.rstrip("/")
        return value.removesuffix("/v2")

    @property
    def is_paper(self) -> bool:
        return self.base_url == PAPER_BASE_URL

    @property
    def trade_stream_url(self) -> str:
        """Where trade updates stream from: ``stream_url``, else ``wss://{base host}/stream``."""
        if self.stream_url:
            return self.stream_url
        scheme, _, rest = self.base_url.partition("://")
        websocket = "ws" if scheme == "http" else "wss"
        return f"{websocket}://{rest}/stream"

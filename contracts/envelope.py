"""The base envelope that every event carries (SPEC 2)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from rebalance_stream.contracts.wire import UtcTimestamp

NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]

SCHEMA_VERSION = "1.0"
SUPPORTED_MAJOR_VERSION = "1"
SOURCE_MODULE = "rebalance_stream"


class Contract(BaseModel):
    """Frozen, ignores unknown fields: upstream may add fields without breaking us."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class EventEnvelope(Contract):
    """Fields common to every event. ``metadata: null`` on the wire becomes ``{}``."""

    EVENT_TYPE: ClassVar[str] = ""

    event_id: NonEmptyStr
    correlation_id: NonEmptyStr
    causation_id: NonEmptyStr
    event_type: NonEmptyStr
    timestamp: UtcTimestamp
    source_module: NonEmptyStr
    source_component: str | None = None
    schema_version: Annotated[str, StringConstraints(pattern=r"^\d+\.\d+$")] = SCHEMA_VERSION
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata", mode="before")
    @classmethod
    def _null_metadata_is_empty(cls, value: object) -> object:
        return {} if value is None else value

    @field_validator("event_type")
    @classmethod
    def _matches_class(cls, value: str) -> str:
        if cls.EVENT_TYPE and value != cls.EVENT_TYPE:
            raise ValueError(f"event_type must be {cls.EVENT_TYPE!r}")
        return value

    @field_validator("schema_version")
    @classmethod
    def _supported_major(cls, value: str) -> str:
        if value.split(".", 1)[0] != SUPPORTED_MAJOR_VERSION:
            raise ValueError(f"unsupported schema_version {value!r}")
        return value

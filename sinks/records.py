"""The record a sink sends: topic, key, value and headers, all bytes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProducerRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> bytes | None:
        """The last value of a header, or None."""
        found = [value for key, value in self.headers if key == name]
        return found[-1] if found else None

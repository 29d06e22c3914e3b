"""Scenario 6, a peer for reference: the same job as the simplest Quix Streams application.

Quix Streams runs on confluent-kafka (librdkafka), which moves several times more records per
second than kafka-python, so its figure is context, not a target. It is not a dependency of
this project: the scenario is skipped unless ``quixstreams`` is importable.
"""

from __future__ import annotations

import importlib.util
from typing import Any


def run() -> dict[str, Any]:
    if importlib.util.find_spec("quixstreams") is None:
        return {
            "status": "skipped",
            "reason": "not installed: quixstreams is not importable (deliberately not a "
            "dependency; `pip install quixstreams` to enable this scenario)",
        }
    return {
        "status": "skipped",
        "reason": "quixstreams is installed, but the peer application is not written yet: "
        "issue 15 item 6 (consume, validate with the same pydantic models, produce)",
    }

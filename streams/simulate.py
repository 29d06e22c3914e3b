"""Run plan files through the whole pipeline in-process against a paper account.

The same operators as the Kafka job, with plan files standing in for input records and a
table standing in for the output topics. No Kafka, no network.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from reactivex import from_iterable
from reactivex import operators as ops

from rebalance_stream.operators.flow import Disposition, InputRecord, SourcePosition
from rebalance_stream.streams.pipeline import (
    PipelineConfig,
    PipelineDependencies,
    process_rebalance_plans,
)

SIMULATE_TOPIC = "simulate"


def _account_key(value: bytes) -> bytes | None:
    """The plan's account_id as the record key, as a well-behaved producer would set it."""
    try:
        account = json.loads(value)["rebalance_plan"].get("account_id", "default")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return account.encode() if isinstance(account, str) else None


def plan_file_records(paths: Sequence[Path], received_at: datetime) -> list[InputRecord]:
    """One input record per file, in the given order, offsets from 0 on one partition."""
    records = []
    for offset, path in enumerate(paths):
        value = path.read_bytes()
        headers = (("source.file", path.name.encode()),)
        position = SourcePosition(SIMULATE_TOPIC, 0, offset)
        records.append(InputRecord(position, _account_key(value), value, headers, received_at))
    return records


def run_in_process(
    records: Sequence[InputRecord], config: PipelineConfig, deps: PipelineDependencies
) -> list[Disposition]:
    """Push the records through the pipeline; return their dispositions in offset order."""
    pipeline = process_rebalance_plans(config, deps)
    results: list[Disposition] = from_iterable(records).pipe(pipeline, ops.to_list()).run()
    return sorted(results, key=lambda d: (d.position.partition, d.position.offset))

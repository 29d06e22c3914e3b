"""skip_published_inputs: an input already executed and published, settled before it is decoded.

A replay from old offsets reads inputs whose plans are done. The ledger keeps the digest of the
bytes each plan was first claimed from (``PlanClaim.input_digest``); an input with those exact
bytes, once its plan's outputs are all in Kafka, can only be a duplicate (SPEC 3.9). It gets the
Disposition that ``dedupe`` would give it, at once, without being decoded, validated,
fingerprinted or claimed, and without passing the operators that decide the other inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import reactivex
import structlog
from reactivex import Observable
from reactivex import operators as ops
from reactivex.scheduler import ImmediateScheduler

from rebalance_stream.ledger.protocol import (
    ClaimStatus,
    PublishedInput,
    PublishedInputs,
    input_digest,
)
from rebalance_stream.operators.dedupe import skip_duplicate
from rebalance_stream.operators.flow import (
    Clock,
    Disposition,
    Envelope,
    EventIdentity,
    InputRecord,
    Op,
    SourcePosition,
)
from rebalance_stream.operators.output_events import disposition_of, log_decision

log = structlog.get_logger(__name__)
_AT_ONCE = ImmediateScheduler.singleton()


def skipped_envelope(record: InputRecord, published: PublishedInput) -> Envelope[Any]:
    """An input whose bytes were ``published``'s first input, with that input's ids, settled
    and logged as dedupe settles a duplicate (``skip_duplicate``, DUPLICATE_EVENT)."""
    identity = EventIdentity(event_id=published.event_id, correlation_id=published.correlation_id)
    undecoded = Envelope(record=record, payload=record, identity=identity)
    status = ClaimStatus.DUPLICATE_EVENT
    return skip_duplicate(undecoded, published.plan_id, status, published.event_id)


def published_among(
    store: PublishedInputs, records: Sequence[InputRecord]
) -> dict[SourcePosition, PublishedInput]:
    """The records whose exact bytes were a published plan's first input, by position, from
    one ledger read. When the read fails, none (a warning): the full path decides them."""
    digests = {record.position: input_digest(record.value) for record in records}
    try:
        published = store.published_inputs(set(digests.values()))
    except Exception as exc:  # the lookup only saves work: the full path decides instead
        first = records[0].position if records else None
        log.warning(
            "published_input_lookup_failed",
            error=repr(exc),
            records=len(records),
            topic=first.topic if first else None,
            partition=first.partition if first else None,
            offset=first.offset if first else None,
        )
        return {}
    return {
        position: published[digest] for position, digest in digests.items() if digest in published
    }


def log_settled_duplicates(records: Sequence[InputRecord]) -> None:
    """One line per partition for published inputs settled together (a replay's batch)."""
    by_partition: dict[tuple[str, int], list[int]] = {}
    for record in records:
        position = record.position
        by_partition.setdefault((position.topic, position.partition), []).append(position.offset)
    for (topic, partition), offsets in by_partition.items():
        log.info(
            "published_inputs_skipped",
            status=ClaimStatus.DUPLICATE_EVENT.value,
            topic=topic,
            partition=partition,
            count=len(offsets),
            first_offset=offsets[0],
            last_offset=offsets[-1],
        )


def _is_settled(routed: InputRecord | Disposition) -> bool:
    return isinstance(routed, Disposition)


def _is_undecided(routed: InputRecord | Disposition) -> bool:
    return not isinstance(routed, Disposition)


def skip_published_inputs(
    store: PublishedInputs, clock: Clock, others: Op[InputRecord, Disposition]
) -> Op[InputRecord, Disposition]:
    """Give each input whose bytes the ledger says were executed and published its duplicate's
    Disposition at once; every other input goes through ``others``.

    -r1-r2-|   ->   -D1--D2-|   (r1's bytes were a plan's first event, and its outputs are in
                                 Kafka: D1 is skipped; D2 is what ``others`` made of r2)
    Dispositions come out in the order they are decided, so D1 may overtake an earlier
    input's. A skipped input is not checked for its key (``mis_keyed`` stays False): it was
    checked when it was first executed. When the lookup fails, the input takes ``others``.
    """

    def route(record: InputRecord) -> InputRecord | Disposition:
        published = published_among(store, (record,)).get(record.position)
        if published is None:
            return record
        envelope = skipped_envelope(record, published)
        disposition = disposition_of(envelope, clock())
        log_decision(envelope, disposition)
        return disposition

    def split(routed: Observable[InputRecord | Disposition]) -> Observable[Disposition]:
        settled = cast(Observable[Disposition], routed.pipe(ops.filter(_is_settled)))
        undecided = cast(Observable[InputRecord], routed.pipe(ops.filter(_is_undecided)))
        # Both paths must be subscribed before ``publish`` connects the source: reactivex.merge
        # would subscribe them on the subscriber's scheduler (a new thread under ``run()``),
        # and records published before that would be lost.
        paths = reactivex.from_iterable((settled, undecided.pipe(others)), _AT_ONCE)
        return paths.pipe(ops.merge_all())

    def apply(records: Observable[InputRecord]) -> Observable[Disposition]:
        return records.pipe(ops.map(route), ops.publish(split))

    return apply

"""The Kafka ledger over the real broker: a compacted changelog partitioned like the input,
restored by a new instance after the one that wrote it is gone."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from kafka import KafkaAdminClient  # type: ignore[import-untyped]
from kafka.admin import ConfigResource, ConfigResourceType  # type: ignore[import-untyped]
from ledger_builders import ACCOUNT, TODAY, intent, outcome, plan_claim, wire
from test_job_on_kafka import settings_for

from rebalance_stream.ledger.protocol import ClaimStatus, PlanClaim
from rebalance_stream.ledger.sqlite_schema import LedgerError
from rebalance_stream.streams.ledger_changelog import ensure_changelog_topic, open_kafka_ledger
from rebalance_stream.streams.runner import open_ledger
from rebalance_stream.streams.settings import Settings

pytestmark = pytest.mark.kafka


def ledger_settings(kafka_broker: str, topic_factory: Any) -> Settings:
    changelog = f"ledger-{uuid.uuid4().hex[:12]}"
    return settings_for(kafka_broker, topic_factory).model_copy(
        update={"ledger": "kafka", "topic_ledger_changelog": changelog}
    )


def test_changelog_is_created_compacted_with_the_inputs_partitions(
    kafka_broker: str, topic_factory: Any
) -> None:
    settings = ledger_settings(kafka_broker, topic_factory)

    partitions = ensure_changelog_topic(settings)

    admin = KafkaAdminClient(bootstrap_servers=kafka_broker)
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, settings.topic_ledger_changelog)
        described = admin.describe_configs([resource])
    finally:
        admin.close()
    configs = next(iter(described.values()))[settings.topic_ledger_changelog]
    assert partitions == 3
    assert configs["cleanup.policy"]["value"] == "compact"


def test_changelog_with_other_partition_count_is_refused(
    kafka_broker: str, topic_factory: Any
) -> None:
    settings = ledger_settings(kafka_broker, topic_factory).model_copy(
        update={"topic_ledger_changelog": topic_factory("ledger", partitions=2)}
    )

    with pytest.raises(LedgerError, match=r"has 2 partitions, the input .* has 3"):
        open_kafka_ledger(settings)


def test_a_new_instance_restores_what_a_closed_one_wrote(
    kafka_broker: str, topic_factory: Any
) -> None:
    settings = ledger_settings(kafka_broker, topic_factory)
    first = open_ledger(settings)
    claims = {
        plan_id: replace(plan_claim(plan_id), partition=partition)
        for partition, plan_id in enumerate(["p0", "p1", "p2"])
    }
    for claim in claims.values():
        first.claim(claim)
    open_order = intent("p1", "BND", "2", "50.00")
    first.record_intents([intent("p0"), open_order])
    first.record_outcomes([outcome("p0")])
    first.mark_acknowledged(["p0"])
    first.record_outcomes([outcome("p2")])
    first.close()

    second = open_ledger(settings)
    second.restore([0, 1, 2])  # type: ignore[attr-defined]
    answers = {plan_id: second.claim(claim) for plan_id, claim in claims.items()}
    notional = second.notional_used(ACCOUNT, TODAY)
    open_intents = second.open_intents()
    second.close()

    assert {plan_id: answer.status for plan_id, answer in answers.items()} == {
        "p0": ClaimStatus.DUPLICATE_EVENT,
        "p1": ClaimStatus.RESUME,
        "p2": ClaimStatus.REPUBLISH,
    }
    assert wire(answers["p2"].outputs) == wire(outcome("p2").outputs)
    assert notional == Decimal("10100.00")
    assert open_intents == sorted([intent("p0"), open_order], key=lambda i: i.client_order_id)


def test_a_claim_in_one_partition_is_unknown_to_an_instance_restoring_another(
    kafka_broker: str, topic_factory: Any
) -> None:
    settings = ledger_settings(kafka_broker, topic_factory)
    first = open_ledger(settings)
    first.claim(PlanClaim("px", "evt-px", "f", _now(), "acct-1", partition=2))
    first.record_intents([])  # flushes the claim
    first.close()

    other = open_ledger(settings)
    other.restore([0, 1])  # type: ignore[attr-defined]
    status = other.claim(PlanClaim("px", "evt-px", "f", _now(), "acct-1", partition=2)).status
    other.close()

    assert status is ClaimStatus.NEW


def _now() -> datetime:
    return datetime(2026, 11, 30, 15, 0, tzinfo=UTC)

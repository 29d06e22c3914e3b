"""Fuzz the decode and validate path (SPEC 1, 2): random bytes, random JSON documents and mutated
RebalancePlanned documents never raise, and every input that is not a valid plan is dead-lettered:
its dead-letter record holds the original bytes and key, the original headers and the dlq.* ones.

Inputs go through the operators' pure functions as the pipeline chains them: decode_record, then
validate_envelope when decoding gave a document, then disposition_of (at a fixed time) and the
sink's producer_records. The numbers of inputs are asserted, not assumed.

Hypothesis runs derandomized (its seed comes from each test's source) and without an example
database. Hypothesis 6.170 still lets two things steer its choices: str hashing (some strategy
labels are hash() based) and a pool of constants that it collects from the imported local
modules. So a run repeats exactly with the same PYTHONHASHSEED and the same test selection;
export PYTHONHASHSEED=0 where CI must try the same inputs every time.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import random
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plan_factory import Trade, planned

from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.operators.decode import DEFAULT_MAX_INPUT_BYTES, decode_record
from rebalance_stream.operators.flow import (
    DeadLetter,
    DecodedDocument,
    Envelope,
    Failed,
    InputRecord,
    SourcePosition,
)
from rebalance_stream.operators.output_events import disposition_of
from rebalance_stream.operators.validate import validate_envelope
from rebalance_stream.sinks.records import ProducerRecord
from rebalance_stream.sinks.routing import OutputTopics, producer_records
from rebalance_stream.streams.logs import configure_logging

DECIDED_AT = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
RECEIVED_AT = datetime(2026, 11, 30, 14, 59, 59, tzinfo=UTC)
INPUT = SourcePosition("rebalance.planned", 2, 4711)
KEY = b"acct-1"
HEADERS = (("traceparent", b"00-4bf92f3577b34da6-00f067aa0ba902b7-01"), ("empty", b""))
TOPICS = OutputTopics()
DLQ_HEADERS = (
    "dlq.error.type",
    "dlq.error.message",
    "dlq.error.reason_code",
    "dlq.failure_step",
    "dlq.source.topic",
    "dlq.source.partition",
    "dlq.source.offset",
)
# Hypothesis spends about 0.5 ms per example on itself, and far more on deep strategies, so
# each example is a batch of inputs: 10,000 byte strings and 10,000 JSON documents in all.
BATCH = 10
RANDOM_BYTES = 10_000
RANDOM_JSON = 4_000
MUTATED_PLANS = 6_000
SIZE_LIMIT_EXAMPLES = 300
FUZZ = settings(
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(autouse=True)
def production_logging() -> Iterator[io.StringIO]:
    """The steps log what they reject: render it as production does (JSON), into memory."""
    saved = structlog.get_config()
    out = io.StringIO()
    configure_logging(log_format="json", level="debug", stream=out)
    try:
        yield out
    finally:
        structlog.configure(**saved)


def input_record(value: bytes) -> InputRecord:
    return InputRecord(INPUT, KEY, value, HEADERS, RECEIVED_AT)


def decide(value: bytes, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> bool:
    """Run one input through decode, validate and the output stage; check its dead letter.

    Returns whether the input was a valid plan. Raises (fails the example) when any step raises,
    when an invalid input has no dead letter, or when a valid one has one.
    """
    envelope: Envelope[Any] = decode_record(input_record(value), max_input_bytes)
    if isinstance(envelope.payload, DecodedDocument):
        envelope = validate_envelope(envelope, envelope.payload)
    valid = isinstance(envelope.payload, RebalancePlanned)
    disposition = disposition_of(envelope, DECIDED_AT)
    records = producer_records(disposition, TOPICS, max_input_bytes)
    dead_letters = [output for output in disposition.outputs if isinstance(output, DeadLetter)]
    dead_records = [record for record in records if record.topic == TOPICS.dead_letter]
    if valid:
        assert dead_letters == []
        assert dead_records == []
    else:
        assert len(dead_letters) == 1
        assert len(dead_records) == 1
        step = dead_letters[0].failure.stage.value.encode()
        check_dead_letter_record(dead_records[0], value, step, max_input_bytes)
    return valid


def check_dead_letter_record(
    record: ProducerRecord, value: bytes, step: bytes, max_input_bytes: int
) -> None:
    assert record.key == KEY
    assert record.headers[: len(HEADERS)] == HEADERS
    headers = dict(record.headers[len(HEADERS) :])
    assert set(DLQ_HEADERS) <= set(headers)
    assert headers["dlq.failure_step"] == step
    assert step in {b"decode", b"validation"}
    assert headers["dlq.source.topic"] == INPUT.topic.encode()
    assert headers["dlq.source.partition"] == str(INPUT.partition).encode()
    assert headers["dlq.source.offset"] == str(INPUT.offset).encode()
    assert headers["dlq.error.type"]
    assert headers["dlq.error.message"]
    if len(value) <= max_input_bytes:
        assert record.value == value
        assert "dlq.original.sha256" not in headers
    else:
        assert record.value == value[:max_input_bytes]
        assert headers["dlq.original.sha256"] == hashlib.sha256(value).hexdigest().encode()
        assert headers["dlq.original.size"] == str(len(value)).encode()
        assert headers["dlq.error.reason_code"] == b"INPUT_TOO_LARGE"


def run_counted(test: Callable[[dict[str, int]], None]) -> dict[str, int]:
    counts: dict[str, int] = {"inputs": 0, "valid": 0}
    test(counts)
    return counts


def batches(inputs: st.SearchStrategy[Any], size: int = BATCH) -> st.SearchStrategy[list[Any]]:
    return st.lists(inputs, min_size=size, max_size=size)


# --- strategies -------------------------------------------------------------------------------

SYMBOLS = ("VTI", "SPY", "GLD", "TQQQ", "BND", "BRK.B")
AMOUNTS = st.decimals(
    min_value=Decimal("0.01"), max_value=Decimal("250000"), places=2, allow_nan=False
)


@st.composite
def trades(draw: st.DrawFn, symbol: str) -> Trade:
    action = draw(st.sampled_from(["BUY", "SELL", "HOLD"]))
    amount = draw(AMOUNTS)
    signed = {"BUY": amount, "SELL": -amount, "HOLD": Decimal(0)}[action]
    return Trade(symbol, action, format(signed, "f"), draw(st.integers(1, 5)))


@st.composite
def valid_plans(draw: st.DrawFn) -> dict[str, Any]:
    """A RebalancePlanned document as the upstream service writes it (plan_factory)."""
    symbols = draw(st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=4, unique=True))
    plan_trades = [draw(trades(symbol)) for symbol in symbols]
    plan_id = f"plan-{draw(st.integers(0, 10**6))}"
    account = draw(st.sampled_from(["acct-1", "acct-2", "default"]))
    return planned(plan_id, plan_trades, account_id=account)


def base_plans(count: int = 40) -> tuple[dict[str, Any], ...]:
    """planned() documents of 1 to 4 items and every action, built once from a fixed seed:
    drawing a fresh plan per example would cost Hypothesis about 3 ms each."""
    rng = random.Random(20261130)
    plans = []
    for index in range(count):
        symbols = rng.sample(SYMBOLS, rng.randint(1, 4))
        plan_trades = []
        for symbol in symbols:
            action = rng.choice(["BUY", "SELL", "HOLD"])
            amount = Decimal(rng.randint(1, 25_000_000)) / 100
            signed = {"BUY": amount, "SELL": -amount, "HOLD": Decimal(0)}[action]
            plan_trades.append(Trade(symbol, action, format(signed, "f"), rng.randint(1, 5)))
        plans.append(planned(f"plan-{index}", plan_trades, account_id=f"acct-{index % 3}"))
    return tuple(plans)


BASE_PLANS = base_plans()


def encodings() -> st.SearchStrategy[Callable[[Any], bytes]]:
    def compact(document: Any) -> bytes:
        return json.dumps(document, separators=(",", ":")).encode()

    def indented(document: Any) -> bytes:
        return json.dumps(document, indent=2, ensure_ascii=False).encode("utf-8", "surrogatepass")

    return st.sampled_from([compact, indented])


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and Infinity too: JSON extensions that decode must reject
    | st.text(max_size=30)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=12,
)
FINITE_JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
) | st.text(max_size=30)
FINITE_JSON = st.recursive(
    FINITE_JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=2) | st.dictionaries(st.text(max_size=6), children, max_size=2)
    ),
    max_leaves=3,
)
"""JSON that the standard allows (no NaN or Infinity): what a harmless extra field may hold."""
SMALL_JSON = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=2) | st.dictionaries(st.text(max_size=6), children, max_size=2)
    ),
    max_leaves=3,
)

# A raw JSON number literal, written into the document as is (json.dumps cannot write these).
RAW = "\x00raw:"
RAW_PATTERN = re.compile(r'"\\u0000raw:([^"]*)"')
RAW_NUMBERS = (
    "1E+400",
    "-1E-999999999",
    "-0",
    "0E-8",
    "123456789012345678901234567890.123456789012345678901234567890",
    "1" * 4000,  # below Python's 4300-digit limit for int()
    "1" * 4301,  # above it
    "1e999999999999999999999",  # beyond Decimal's exponent
    "1e999999999",  # a billion digits as an int or a plain decimal
    "0.1",
    "-250000.00",
)
HOSTILE_SCALARS = st.sampled_from(
    [
        "",
        " ",
        "NaN",
        "-Infinity",
        "sNaN",
        "1e999999999",
        "\ud800",  # a lone surrogate
        "0E-8",
        "-0",
        "1E+3",
        "2026-11-30T14:30:00",  # no timezone
        "2026-13-45T99:00:00Z",
        "2026-11-30T14:30:00+14:00",
        "ABCDEFGHIJK",
        "\u00df" * 6,  # upper-cases to 12 characters
        "\u0000",
        "\ufeffVTI",
        "\U0001f680" * 3,
        "BUY",
        "sell",
        "HOLD",
        "URGENT",
        "RebalancePlanned",
        "2.0",
        "1.x",
        0,
        -1,
        6,
        10**30,
        1e308,
        -0.0,
        True,
        False,
        None,
        [],
        {},
        *(RAW + number for number in RAW_NUMBERS),
    ]
)


def encode_with_raw_numbers(document: Any, encode: Callable[[Any], bytes]) -> bytes:
    text = encode(document).decode("utf-8", "surrogatepass")
    return RAW_PATTERN.sub(lambda match: match.group(1), text).encode("utf-8", "surrogatepass")


@st.composite
def envelope_like(draw: st.DrawFn) -> dict[str, Any]:
    """Objects that look like events: envelope fields with odd values, and random extras."""
    fields: dict[str, Any] = {}
    for name in ("event_id", "correlation_id", "causation_id", "source_module", "timestamp"):
        if draw(st.booleans()):
            fields[name] = draw(st.text(min_size=1, max_size=12) | HOSTILE_SCALARS)
    if draw(st.integers(0, 3)):
        fields["event_type"] = draw(
            st.sampled_from(["RebalancePlanned", "TradeExecuted", "rebalanceplanned", ""])
            | st.text(max_size=20)
        )
    if draw(st.booleans()):
        fields["schema_version"] = draw(
            st.sampled_from(["1.0", "1.9", "2.0", "1", "01.0", ""]) | JSON_SCALARS
        )
    for name in ("rebalance_plan", "trades_required", "metadata", "allocation_comparison"):
        if draw(st.booleans()):
            fields[name] = draw(SMALL_JSON | HOSTILE_SCALARS)
    return {**draw(st.dictionaries(st.text(max_size=8), SMALL_JSON, max_size=2)), **fields}


# --- mutations of a valid plan, each with what it must do to validity -------------------------

Path = tuple[str | int, ...]
MODEL_OBJECTS = ((), ("rebalance_plan",), ("allocation_comparison",))
REQUIRED = {
    (): (
        "event_id",
        "correlation_id",
        "causation_id",
        "event_type",
        "timestamp",
        "source_module",
        "rebalance_plan",
        "trades_required",
    ),
    ("rebalance_plan",): (
        "plan_id",
        "correlation_id",
        "causation_id",
        "timestamp",
        "items",
        "total_portfolio_value",
        "total_trade_value",
    ),
    ("item",): (
        "symbol",
        "current_weight",
        "target_weight",
        "weight_diff",
        "target_value",
        "current_value",
        "trade_amount",
        "action",
        "priority",
    ),
}
ITEM_DECIMALS = ("current_weight", "target_weight", "weight_diff", "target_value", "trade_amount")
PLAN_DECIMALS = ("total_portfolio_value", "total_trade_value", "max_drift_tolerance")


def required_fields(document: dict[str, Any]) -> list[Path]:
    """Every required field's path; a plan without it, or with a container there, is invalid."""
    paths: list[Path] = [(name,) for name in REQUIRED[()]]
    paths += [("rebalance_plan", name) for name in REQUIRED[("rebalance_plan",)]]
    for index in range(len(document["rebalance_plan"]["items"])):
        paths += [("rebalance_plan", "items", index, name) for name in REQUIRED[("item",)]]
    return paths


def all_paths(node: Any, prefix: Path = ()) -> Iterator[Path]:
    items: Any = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in items:
        yield (*prefix, key)
        yield from all_paths(child, (*prefix, key))


def parent_of(document: Any, path: Path) -> Any:
    node = document
    for key in path[:-1]:
        node = node[key]
    return node


@st.composite
def breaking_mutation(draw: st.DrawFn, document: dict[str, Any]) -> None:
    """Delete a required field, or put an object or a list where it wants a scalar."""
    path = draw(st.sampled_from(required_fields(document)))
    parent = parent_of(document, path)
    if path[-1] in {"rebalance_plan", "items"} or draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(
            st.lists(SMALL_JSON, max_size=3) | st.dictionaries(st.text(max_size=8), SMALL_JSON)
        )


@st.composite
def harmless_mutation(draw: st.DrawFn, document: dict[str, Any]) -> None:
    """Changes that SPEC 2 allows: unknown extra fields, decimals as JSON numbers, another
    timezone, metadata as an object, a lower-case padded symbol, a 1.x schema_version."""
    plan = document["rebalance_plan"]
    items = plan["items"]
    index = draw(st.integers(0, len(items) - 1))
    kind = draw(st.integers(0, 5))
    if kind == 0:
        target = parent_of(document, (*draw(st.sampled_from(MODEL_OBJECTS)), "_"))
        target = target if draw(st.integers(0, 3)) else items[index]
        target[f"x-{draw(st.text(max_size=8))}"] = draw(FINITE_JSON)
    elif kind == 1:
        name = draw(st.sampled_from(ITEM_DECIMALS))
        items[index][name] = RAW + items[index][name].removeprefix(RAW)
    elif kind == 2:
        plan[draw(st.sampled_from(PLAN_DECIMALS))] = RAW + "0.05"
        zone = draw(st.sampled_from(["+00:00", "+05:30", "-08:00", ".123456Z", "z"]))
        document["timestamp"] = "2026-11-30T14:30:00" + zone
    elif kind == 3:
        holder = draw(st.sampled_from([document, plan]))
        holder["metadata"] = draw(st.dictionaries(st.text(max_size=8), FINITE_JSON, max_size=3))
    elif kind == 4:
        items[index]["symbol"] = f"  {items[index]['symbol'].lower()} "
    else:
        document["schema_version"] = draw(st.sampled_from(["1.0", "1.1", "1.99"]))


@st.composite
def wild_mutation(draw: st.DrawFn, document: dict[str, Any]) -> None:
    """Anything at any path: delete it, or replace it with a random or a hostile value."""
    path = draw(st.sampled_from(list(all_paths(document))))
    parent = parent_of(document, path)
    if draw(st.integers(0, 3)) == 0:
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(HOSTILE_SCALARS | SMALL_JSON | st.text(max_size=12))


@st.composite
def mutated_plans(draw: st.DrawFn) -> tuple[bytes, bool | None]:
    """A mutated valid plan, encoded, and whether it must be valid (None: either is fine)."""
    document = copy.deepcopy(draw(st.sampled_from(BASE_PLANS)))
    expected: bool | None = True
    for _ in range(draw(st.integers(0, 2))):
        draw(harmless_mutation(document))
    choice = draw(st.integers(0, 2))
    if choice == 0:
        draw(breaking_mutation(document))
        expected = False
    elif choice == 1:
        for _ in range(draw(st.integers(1, 2))):
            draw(wild_mutation(document))
        expected = None
    return encode_with_raw_numbers(document, draw(encodings())), expected


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    """A valid plan's bytes with bytes flipped, cut, inserted or the end truncated."""
    data = bytearray(draw(encodings())(draw(st.sampled_from(BASE_PLANS))))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data) - 1))
        kind = draw(st.integers(0, 3))
        if kind == 0:
            data[position] = draw(st.integers(0, 255))
        elif kind == 1:
            del data[position : position + draw(st.integers(1, 16))]
        elif kind == 2:
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[position:]
        if not data:
            break
    return bytes(data)


JSON_TOKENS = st.lists(
    st.sampled_from(
        [
            b"{",
            b"}",
            b"[",
            b"]",
            b'"',
            b":",
            b",",
            b"1",
            b"-",
            b"e",
            b".",
            b"0",
            b" ",
            b"\n",
            b"true",
            b"null",
            b"NaN",
            b'"event_id"',
            b'"event_type"',
            b'"RebalancePlanned"',
            b"\\u",
            b"\\ud800",
            b"\xff",
            b"\xc3",
            b"\xef\xbb\xbf",
        ]
    ),
    max_size=40,
).map(b"".join)


# --- the tests --------------------------------------------------------------------------------


def test_random_byte_strings_are_dead_lettered_never_raised() -> None:
    @settings(FUZZ, max_examples=RANDOM_BYTES // BATCH)
    @given(batches(st.binary(max_size=512) | mutated_bytes() | JSON_TOKENS))
    def check(counts: dict[str, int], values: list[bytes]) -> None:
        for value in values:
            counts["inputs"] += 1
            counts["valid"] += decide(value)

    counts = run_counted(check)

    assert counts["inputs"] >= RANDOM_BYTES


def test_random_json_documents_are_dead_lettered_never_raised() -> None:
    @settings(FUZZ, max_examples=RANDOM_JSON // BATCH)
    @given(batches(st.one_of(JSON_VALUES, envelope_like())), encodings())
    def check(counts: dict[str, int], documents: list[Any], encode: Callable[[Any], bytes]) -> None:
        for document in documents:
            counts["inputs"] += 1
            counts["valid"] += decide(encode_with_raw_numbers(document, encode))

    counts = run_counted(check)

    assert counts["inputs"] >= RANDOM_JSON
    assert counts["valid"] == 0


def test_mutated_plans_are_dead_lettered_exactly_when_invalid() -> None:
    @settings(FUZZ, max_examples=MUTATED_PLANS // BATCH)
    @given(batches(mutated_plans()))
    def check(counts: dict[str, int], mutated: list[tuple[bytes, bool | None]]) -> None:
        for value, expected in mutated:
            counts["inputs"] += 1
            valid = decide(value)
            counts["valid"] += valid
            if expected is not None:
                assert valid is expected, value

    counts = run_counted(check)

    assert counts["inputs"] >= MUTATED_PLANS
    assert counts["inputs"] + RANDOM_JSON >= 10_000
    # Both outcomes were exercised in quantity, not just one of them.
    assert counts["valid"] > MUTATED_PLANS // 5
    assert counts["inputs"] - counts["valid"] > MUTATED_PLANS // 5


def test_inputs_above_the_size_limit_are_dead_lettered_truncated() -> None:
    @settings(FUZZ, max_examples=SIZE_LIMIT_EXAMPLES)
    @given(
        st.binary(max_size=600) | valid_plans().map(lambda d: json.dumps(d).encode()),
        st.integers(1, 400),
    )
    def check(counts: dict[str, int], value: bytes, limit: int) -> None:
        counts["inputs"] += 1
        valid = decide(value, limit)
        counts["valid"] += valid
        assert not (valid and len(value) > limit)

    counts = run_counted(check)

    assert counts["inputs"] >= SIZE_LIMIT_EXAMPLES


def test_valid_plans_from_the_factory_are_never_dead_lettered() -> None:
    @settings(FUZZ, max_examples=200)
    @given(valid_plans(), encodings())
    def check(document: dict[str, Any], encode: Callable[[Any], bytes]) -> None:
        assert decide(encode(document))

    check()


# Inputs that once made the pure functions raise: each was a poison pill in the running job
# (the exception ended the stream, and the same record came back after every restart).
ONCE_CRASHING = [
    pytest.param(b'{"event_id": ' + b"1" * 4301 + b"}", id="int-over-4300-digits"),
    pytest.param(b'{"event_id": 1e999999999999999999999}', id="exponent-beyond-decimal"),
    pytest.param(
        json.dumps({"correlation_id": "\ud800", "event_type": "RebalancePlanned"}).encode(),
        id="lone-surrogate-correlation-id",
    ),
    pytest.param(
        json.dumps({**BASE_PLANS[0], "event_id": "\udfff"}).encode(), id="lone-surrogate-event-id"
    ),
]


@pytest.mark.parametrize("value", ONCE_CRASHING)
def test_inputs_that_once_crashed_are_dead_lettered(value: bytes) -> None:
    assert decide(value) is False


def test_numbers_python_cannot_hold_are_dead_lettered_as_malformed_json() -> None:
    for literal in (b"1" * 4301, b"1e999999999999999999999", b"-1E-999999999999999999999"):
        envelope = decode_record(input_record(b'{"event_id": ' + literal + b"}"))

        assert isinstance(envelope.payload, Failed), literal
        assert envelope.payload.reason_code == "MALFORMED_JSON"
        assert envelope.payload.dead_letter


# JSON numbers become Decimal before validation, and pydantic turned an integral Decimal for an
# int field into an int: for 1e999999999 that was a billion digits, minutes of CPU and
# gigabytes, while the consumer stood still. Money printed it as a billion-digit string. A
# subprocess bounds each check, so a regression fails here instead of hanging the suite.
ONCE_HANGING = [
    pytest.param(("rebalance_plan", "items", 0, "priority"), "1e999999999", id="priority"),
    pytest.param(("rebalance_plan", "items", 0, "priority"), "-1E-999999999", id="priority-tiny"),
    pytest.param(
        ("rebalance_plan", "estimated_duration_minutes"), "1e999999999", id="duration-minutes"
    ),
    pytest.param(("rebalance_plan", "items", 0, "target_value"), "1e999999999", id="money-huge"),
    pytest.param(("rebalance_plan", "items", 0, "target_value"), "1e-999999999", id="money-tiny"),
]
HANG_LIMIT_S = 5


@pytest.mark.parametrize(("path", "literal"), ONCE_HANGING)
def test_numbers_of_a_billion_digits_are_rejected_promptly(path: Path, literal: str) -> None:
    document = copy.deepcopy(BASE_PLANS[0])
    parent_of(document, path)[path[-1]] = RAW + literal
    value = encode_with_raw_numbers(document, lambda raw: json.dumps(raw).encode())
    script = (
        "import sys\n"
        "from rebalance_stream.contracts.rebalance import RebalancePlanned\n"
        "from rebalance_stream.operators.decode import parse_json_object\n"
        "try:\n"
        "    RebalancePlanned.model_validate(parse_json_object(sys.stdin.buffer.read()))\n"
        "except ValueError as exc:\n"
        "    print('rejected:', 'out of range' in str(exc))\n"
    )
    try:
        result = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
            [sys.executable, "-c", script],
            input=value,
            capture_output=True,
            timeout=HANG_LIMIT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"validating {'.'.join(map(str, path))}={literal} ran for {HANG_LIMIT_S} s")
    assert result.stdout == b"rejected: True\n"

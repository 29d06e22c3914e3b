"""The ``schemas`` command: one JSON Schema file per event."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from rebalance_stream.streams.cli import app

EXPECTED_FILES = [
    "RebalancePlanned.schema.json",
    "TradeExecuted.schema.json",
    "WorkflowCompleted.schema.json",
    "WorkflowFailed.schema.json",
]


def test_schemas_command_empty_directory_writes_exactly_four_schemas(tmp_path: Path) -> None:
    runner = CliRunner()

    result = runner.invoke(app, ["schemas", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == EXPECTED_FILES
    assert result.output.splitlines() == [f"wrote {tmp_path / name}" for name in EXPECTED_FILES]


def test_schemas_command_missing_directory_is_created(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "schemas"

    result = CliRunner().invoke(app, ["schemas", str(target)])

    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in target.iterdir()) == EXPECTED_FILES


def test_schemas_command_each_schema_has_envelope_properties(tmp_path: Path) -> None:
    CliRunner().invoke(app, ["schemas", str(tmp_path)])

    schemas = {name: json.loads((tmp_path / name).read_text("utf-8")) for name in EXPECTED_FILES}

    for name, schema in schemas.items():
        assert schema["title"] == name.removesuffix(".schema.json")
        assert schema["type"] == "object"
        assert isinstance(schema["properties"], dict), name
        assert {"event_id", "correlation_id"} <= schema["properties"].keys(), name


def test_schemas_command_rebalance_planned_requires_rebalance_plan(tmp_path: Path) -> None:
    CliRunner().invoke(app, ["schemas", str(tmp_path)])

    schema = json.loads((tmp_path / "RebalancePlanned.schema.json").read_text("utf-8"))

    assert "rebalance_plan" in schema["required"]
    assert {"event_id", "correlation_id", "causation_id", "timestamp"} <= set(schema["required"])

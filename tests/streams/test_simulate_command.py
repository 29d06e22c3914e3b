"""``rebalance-stream simulate`` on the bundled samples prints the outcome of each plan."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rebalance_stream.streams.cli import app

PLANS = sorted((Path(__file__).resolve().parents[2] / "examples" / "plans").glob("*.json"))


def rows_by_input(output: str) -> dict[str, str]:
    """The first table line of each input file, keyed by file name."""
    rows = {}
    for line in output.splitlines():
        for path in PLANS:
            if path.name in line:
                rows[path.name] = line
    return rows


@pytest.fixture
def simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("REBALANCE_STREAM_PAPER_STATE", str(tmp_path / "paper.sqlite"))
    result = CliRunner().invoke(app, ["simulate", *map(str, PLANS)])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_simulate_samples_each_input_gets_its_outcome(simulated: str) -> None:
    rows = rows_by_input(simulated)

    assert "completed" in rows["01-rotation.json"]
    assert "3/3" in rows["01-rotation.json"]
    assert "completed" in rows["02-no-trade.json"]
    assert "failed" in rows["03-partial-fill.json"]
    assert "partial execution: 1/2" in rows["03-partial-fill.json"]
    assert "skipped (duplicate)" in rows["04-duplicate-plan.json"]
    assert "PLAN_ID_CONFLICT" in rows["05-plan-id-conflict.json"]
    assert "dead-lettered" in rows["06-malformed.json"]
    assert "SCHEMA_INVALID" in rows["07-schema-invalid.json"]
    assert "failed" in rows["08-risk-breach.json"]


def test_simulate_rerun_on_kept_paper_state_adopts_orders_instead_of_trading_again(
    tmp_path: Path, simulated: str
) -> None:
    rerun = CliRunner().invoke(
        app,
        ["simulate", str(PLANS[0])],
        env={"REBALANCE_STREAM_PAPER_STATE": str(tmp_path / "paper.sqlite")},
    )

    assert rerun.exit_code == 0, rerun.output
    rows = rows_by_input(rerun.stdout)
    assert "completed" in rows["01-rotation.json"]
    assert "3/3" in rows["01-rotation.json"]

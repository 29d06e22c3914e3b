"""The targets of issue 15, the table printed at the end, and the PNG chart."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

THROUGHPUT_TARGET = 0.85
LATENCY_OVERHEAD_P99_TARGET_MS = 25.0
REPLAY_TARGET = 0.8
RSS_GROWTH_TARGET = 0.10
REQUESTS_PER_ORDER_TARGET = 1.2


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    goal: str
    scenario: str
    measured: Callable[[dict[str, Any]], float | None]
    passes: Callable[[float], bool]


def _latency_overhead(result: dict[str, Any]) -> float | None:
    run = result.get("paper_0ms")
    return None if run is None else float(run["overhead_ms"]["p99"])


TARGETS = (
    Target(
        "throughput_vs_bare_kafka_python",
        f">= {THROUGHPUT_TARGET} x baseline",
        "throughput",
        lambda r: r.get("ratio"),
        lambda v: v >= THROUGHPUT_TARGET,
    ),
    Target(
        "latency_overhead_p99_ms",
        f"<= {LATENCY_OVERHEAD_P99_TARGET_MS:g} ms beyond the broker's round trip meanwhile"
        " (paper 0 ms)",
        "latency",
        _latency_overhead,
        lambda v: v <= LATENCY_OVERHEAD_P99_TARGET_MS,
    ),
    Target(
        "replay_vs_bare_consume",
        f">= {REPLAY_TARGET} x baseline",
        "replay",
        lambda r: r.get("ratio"),
        lambda v: v >= REPLAY_TARGET,
    ),
    Target(
        "rss_growth_10_to_100pct",
        f"<= {RSS_GROWTH_TARGET:.0%}",
        "memory",
        lambda r: r.get("growth"),
        lambda v: v <= RSS_GROWTH_TARGET,
    ),
    Target(
        "http_requests_per_order",
        f"<= {REQUESTS_PER_ORDER_TARGET} (with the trade-updates stream)",
        "requests_per_order",
        lambda r: r.get("requests_per_order"),
        lambda v: v <= REQUESTS_PER_ORDER_TARGET,
    ),
)


def judge(scenarios: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target with its measured value and pass, fail or not measured."""
    verdicts = []
    for target in TARGETS:
        result = scenarios.get(target.scenario, {})
        value = target.measured(result) if result.get("status") == "measured" else None
        if value is None or math.isnan(value):
            verdict = "not measured"
        else:
            verdict = "pass" if target.passes(value) else "fail"
        verdicts.append(
            {"target": target.name, "goal": target.goal, "measured": value, "verdict": verdict}
        )
    return verdicts


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"  # noqa: PLR2004
    return f"{value:,}" if isinstance(value, int) else str(value)


def rows(scenarios: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(figure, ours, baseline, ratio) for every measured figure; skipped ones say why."""
    table: list[tuple[str, str, str, str]] = []
    for name, result in scenarios.items():
        if result.get("status") != "measured":
            table.append((name, str(result.get("status")), "", str(result.get("reason", ""))))
            continue
        table.extend(_scenario_rows(name, result))
    return table


def _scenario_rows(name: str, r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    if name in ("throughput", "replay"):
        main = (
            f"{name} (plans/s)",
            _fmt(r["ours_plans_per_s"]),
            _fmt(r["baseline_plans_per_s"]),
            _fmt(r["ratio"]),
        )
        extra = [
            (
                f"{name} {key.removeprefix('supplementary_')} (plans/s, ratio to pinned)",
                _fmt(value["ours_plans_per_s"]),
                _fmt(r["ours_plans_per_s"]),
                _fmt(value.get("ratio_to_pinned")),
            )
            for key, value in r.items()
            if key.startswith("supplementary_") and "ratio_to_pinned" in value
        ]
        return [main, *extra]
    if name == "latency":
        out = []
        for key in sorted(k for k in r if k.startswith("paper_")):
            run = r[key]
            base = run.get("round_trip_beside_ms", r["baseline_round_trip_ms"])
            for pct in ("p50", "p95", "p99"):
                ours = run["latency_ms"][pct]
                ratio = f"{_fmt(run['ratio'][pct])} ({run['overhead_ms'][pct]:+,.1f} ms)"
                out.append((f"latency {key} {pct} (ms)", _fmt(ours), _fmt(base[pct]), ratio))
        return out
    if name == "memory":
        ours, bare = r["ours"], r["baseline_bare_consume"]
        return [
            ("RSS at 10% (MiB)", _fmt(ours["rss_10pct_mib"]), _fmt(bare["rss_10pct_mib"]), ""),
            ("RSS at 100% (MiB)", _fmt(ours["rss_100pct_mib"]), _fmt(bare["rss_100pct_mib"]), ""),
            ("RSS growth 10->100%", f"{r['growth']:.1%}", f"{r['baseline_growth']:.1%}", ""),
        ]
    if name == "requests_per_order":
        floor = _fmt(r["baseline_requests_per_order"])
        polling = r.get("polling", {})
        return [
            (
                "HTTP requests per order (stream)",
                _fmt(r["requests_per_order"]),
                floor,
                _fmt(r["ratio"]),
            ),
            (
                "order-endpoint requests per order (stream)",
                _fmt(r.get("order_requests_per_order")),
                floor,
                "",
            ),
            (
                "HTTP requests per order (polling)",
                _fmt(polling.get("requests_per_order")),
                floor,
                "",
            ),
        ]
    if name == "execution_slippage":
        return [
            (
                f"slippage {strategy} (bps, {run['orders']} items)",
                _fmt(run["slippage_bps"]),
                _fmt(r["baseline_slippage_bps"]),
                f"{_fmt(run['orders_per_item'])} orders/item",
            )
            for strategy, run in r["strategies"].items()
        ]
    if name == "peer_quixstreams":
        role = f"{r['role']} (Quix Streams {r['quixstreams']})"
        return [("peer Quix Streams (plans/s)", "-", _fmt(r["plans_per_s"]), role)]
    return [(name, "measured", "", "")]


def table_text(scenarios: dict[str, dict[str, Any]], verdicts: list[dict[str, Any]]) -> str:
    header = ("figure", "ours", "baseline", "ratio")
    body = rows(scenarios)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(3)]
    lines = []
    for row in [header, *body]:
        cells = [row[i].ljust(widths[i]) if i == 0 else row[i].rjust(widths[i]) for i in range(3)]
        lines.append("  ".join([*cells, row[3]]))
    lines.insert(1, "-" * len(lines[0]))
    lines.append("")
    lines.append("targets:")
    for verdict in verdicts:
        measured = _fmt(verdict["measured"])
        lines.append(
            f"  {verdict['verdict']:>12}  {verdict['target']} = {measured} ({verdict['goal']})"
        )
    return "\n".join(lines)


def chart(scenarios: dict[str, dict[str, Any]], path: Path) -> str | None:
    """Draw the headline figures as a PNG; return why not when matplotlib is missing."""
    try:
        import matplotlib as mpl

        mpl.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no chart: matplotlib is not installed (pip install '.[bench]', or make bench)"
    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    _bars(axes[0][0], scenarios.get("throughput"), "Throughput (plans/s)")
    _bars(axes[0][1], scenarios.get("replay"), "Replay, all duplicates (plans/s)")
    _latency(axes[1][0], scenarios.get("latency"))
    _memory(axes[1][1], scenarios.get("memory"))
    figure.suptitle("rebalance-stream against bare kafka-python, same run")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return None


def _missing(axis: Any, title: str) -> None:
    axis.set_title(title)
    axis.text(0.5, 0.5, "not measured", ha="center", va="center")
    axis.set_axis_off()


def _bars(axis: Any, result: dict[str, Any] | None, title: str) -> None:
    if not result or result.get("status") != "measured":
        _missing(axis, title)
        return
    values = [result["ours_plans_per_s"], result["baseline_plans_per_s"]]
    bars = axis.bar(["rebalance-stream", "bare kafka-python"], values, color=["C0", "C7"])
    axis.bar_label(bars, fmt="%.0f")
    axis.set_title(f"{title}: ratio {result['ratio']}")


def _latency(axis: Any, result: dict[str, Any] | None) -> None:
    title = "Latency, publish to WorkflowCompleted (ms)"
    if not result or result.get("status") != "measured":
        _missing(axis, title)
        return
    series = {"broker round trip, idle": result["baseline_round_trip_ms"]}
    paper_0 = result.get("paper_0ms", {})
    if "round_trip_beside_ms" in paper_0:
        series["broker round trip, beside paper 0ms"] = paper_0["round_trip_beside_ms"]
    for key in sorted(k for k in result if k.startswith("paper_")):
        series[f"job, {key.replace('_', ' ')}"] = result[key]["latency_ms"]
    percentiles = ("p50", "p95", "p99")
    width = 0.8 / len(series)
    for index, (label, summary) in enumerate(series.items()):
        positions = [p + index * width for p in range(len(percentiles))]
        axis.bar(positions, [summary[p] for p in percentiles], width, label=label)
    axis.set_xticks([p + width * (len(series) - 1) / 2 for p in range(len(percentiles))])
    axis.set_xticklabels(percentiles)
    axis.set_yscale("log")
    axis.set_title(title)
    axis.legend(fontsize="small", loc="upper left")


def _memory(axis: Any, result: dict[str, Any] | None) -> None:
    title = "RSS while draining the backlog (MiB)"
    if not result or result.get("status") != "measured":
        _missing(axis, title)
        return
    for label, side in (("job", result["ours"]), ("bare consume", result["baseline_bare_consume"])):
        curve = side["rss_curve_mib"]
        axis.plot(
            [int(k.rstrip("%")) for k in curve], list(curve.values()), marker="o", label=label
        )
    axis.set_xlabel("% of the backlog")
    axis.set_title(f"{title}: growth {result['growth']:.0%}")
    axis.legend(fontsize="small")

"""The ``rebalance-stream`` command line."""

from __future__ import annotations

import json
import signal
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from reactivex.scheduler import ThreadPoolScheduler
from rich.console import Console

from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.brokers.paper_account import PaperAccount
from rebalance_stream.brokers.protocol import Broker
from rebalance_stream.contracts.outcomes import TradeExecuted, WorkflowCompleted, WorkflowFailed
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.ledger.memory import InMemoryLedger
from rebalance_stream.operators.market_gate import MarketClockFailure
from rebalance_stream.streams import report
from rebalance_stream.streams.crash_points import crash_hook
from rebalance_stream.streams.demo import run_demo
from rebalance_stream.streams.health import HealthServer
from rebalance_stream.streams.kafka_clients import create_topics
from rebalance_stream.streams.kill_switch import KillSwitchReader
from rebalance_stream.streams.logs import configure_logging
from rebalance_stream.streams.pipeline import PipelineConfig, PipelineDependencies, utc_now
from rebalance_stream.streams.replay import ReplayOptions, replay_main
from rebalance_stream.streams.runner import JobHooks, PlanConsumerJob, open_ledger, output_topics
from rebalance_stream.streams.settings import Settings, load_settings
from rebalance_stream.streams.simulate import plan_file_records, run_in_process

if TYPE_CHECKING:
    from rebalance_stream.brokers.alpaca_trade_updates import AlpacaTradeUpdates

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)

SCHEMA_EVENTS = (RebalancePlanned, TradeExecuted, WorkflowCompleted, WorkflowFailed)


def open_broker(settings: Settings) -> AbstractContextManager[Broker]:
    """The broker that REBALANCE_STREAM_BROKER names, not yet started (use it with ``with``).

    ``alpaca`` reads Alpaca's own variables (APCA_API_KEY_ID, APCA_API_SECRET_KEY,
    APCA_API_BASE_URL, APCA_API_DATA_URL); the base URL defaults to the paper endpoint.
    """
    if settings.broker == "alpaca":
        # Imported here: alpaca-py takes most of a second to import, and paper runs skip it.
        from rebalance_stream.brokers.alpaca import AlpacaBroker, AlpacaConfig

        return AlpacaBroker(AlpacaConfig())
    return PaperBroker(paper_account_of(settings, None), state_path=settings.paper_state)


def open_order_watch(
    settings: Settings, broker: Broker
) -> AbstractContextManager[AlpacaTradeUpdates | None]:
    """Alpaca's trade-updates stream when REBALANCE_STREAM_ALPACA_TRADE_UPDATES is on (the
    default), keeping the account book unless REBALANCE_STREAM_ALPACA_ACCOUNT_BOOK_S is 0;
    otherwise None, and orders are polled over REST."""
    if settings.broker != "alpaca" or not settings.alpaca_trade_updates:
        return nullcontext(None)
    from rebalance_stream.brokers.alpaca import AlpacaConfig
    from rebalance_stream.brokers.alpaca_trade_updates import trade_updates_for

    return trade_updates_for(AlpacaConfig(), broker)


def paper_account_of(settings: Settings, override: Path | None) -> PaperAccount:
    path = override or settings.paper_account
    return PaperAccount.from_file(path) if path else PaperAccount.sample()


@app.command()
def simulate(
    plans: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="Plan files")],
    account: Annotated[
        Path | None, typer.Option(help="Paper account file (default: the built-in sample)")
    ] = None,
    max_plan_age_s: Annotated[
        int, typer.Option(help="Staleness limit in seconds; 0 (the default here) turns it off")
    ] = 0,
    treat_partial_as_failure: Annotated[
        bool | None, typer.Option(help="Override REBALANCE_STREAM_TREAT_PARTIAL_EXECUTION_...")
    ] = None,
    market_clock_failure: Annotated[MarketClockFailure | None, typer.Option()] = None,
    verbose: Annotated[bool, typer.Option(help="Log every state change to stderr")] = False,
) -> None:
    """Run RebalancePlanned files through the pipeline against a paper account, in-process."""
    overrides: dict[str, object] = {"max_plan_age_s": max_plan_age_s}
    if treat_partial_as_failure is not None:
        overrides["treat_partial_execution_as_failure"] = treat_partial_as_failure
    if market_clock_failure is not None:
        overrides["market_clock_failure"] = market_clock_failure
    settings = load_settings(**overrides)
    configure_logging(settings.log_format, "debug" if verbose else "warning")
    paper = paper_account_of(settings, account)
    records = plan_file_records(plans, utc_now())
    with PaperBroker(paper, state_path=settings.paper_state) as broker:
        deps = PipelineDependencies(
            broker=broker,
            ledger=InMemoryLedger(),
            kill_switch=KillSwitchReader(settings.kill_switch, settings.kill_switch_file),
            scheduler=ThreadPoolScheduler(settings.max_concurrent_orders),
        )
        dispositions = run_in_process(records, PipelineConfig.from_settings(settings), deps)
        held = broker.get_positions()
        console = Console(width=160)
        sources = [path.name for path in plans]
        report.print_report(
            console,
            report.outcomes_table(dispositions, sources, output_topics(settings)),
            report.orders_table(dispositions),
            report.portfolio_table(broker.get_account(), held),
        )


@app.command()
def schemas(
    directory: Annotated[Path, typer.Argument(file_okay=False, help="Where to write them")],
) -> None:
    """Write one JSON Schema per event: NAME.schema.json."""
    directory.mkdir(parents=True, exist_ok=True)
    for event in SCHEMA_EVENTS:
        mode: Literal["validation", "serialization"] = (
            "validation" if event is RebalancePlanned else "serialization"
        )
        schema = event.model_json_schema(mode=mode)
        target = directory / f"{event.__name__}.schema.json"
        target.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        typer.echo(f"wrote {target}")


topics_app = typer.Typer(no_args_is_help=True, help="Manage the job's Kafka topics.")
app.add_typer(topics_app, name="topics")


@topics_app.command("create")
def topics_create(
    input_partitions: Annotated[int, typer.Option(min=1, help="Partitions of the input")] = 3,
) -> None:
    """Create the input and output topics of SPEC 1 that do not exist yet."""
    settings = load_settings()
    for name in create_topics(settings, input_partitions):
        typer.echo(name)


@app.command()
def run() -> None:
    """Consume RebalancePlanned from Kafka until SIGINT or SIGTERM (configured as SPEC 4 says)."""
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    ledger = open_ledger(settings)
    try:
        with open_broker(settings) as broker, open_order_watch(settings, broker) as watch:
            hooks = JobHooks(
                checkpoint=crash_hook(settings.test_crash_at),
                order_watch=watch,
                account_reads=watch.account_book if watch is not None else None,
            )
            job = PlanConsumerJob(settings, broker, ledger, hooks)
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda _signum, _frame: job.stop())
            health = HealthServer(
                job.metrics.registry,
                job.readiness,
                job.heartbeat,
                host=settings.health_host,
                port=settings.health_port,
            )
            with health:
                code = job.run()
    finally:
        ledger.close()
    raise typer.Exit(code)


@app.command(
    "fake-alpaca",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def fake_alpaca(context: typer.Context) -> None:
    """Serve a fake Alpaca API on 127.0.0.1 for tests and dry runs (--port, --account FILE,
    --rate-limit); keys from APCA_API_KEY_ID and APCA_API_SECRET_KEY."""
    from rebalance_stream.brokers.fake_alpaca.server import serve  # only this command needs it

    configure_logging(None, "info")
    raise typer.Exit(serve(context.args))


@app.command()
def replay(  # noqa: PLR0913 - typer maps each option to one parameter
    *,
    from_offset: Annotated[
        str | None, typer.Option(help="P:O[,P:O...] or O (every partition)")
    ] = None,
    from_time: Annotated[str | None, typer.Option(help="ISO-8601 with a timezone")] = None,
    to_offset: Annotated[str | None, typer.Option(help="exclusive end offsets")] = None,
    to_time: Annotated[str | None, typer.Option(help="exclusive end time")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="(default) what the job would do")
    ] = False,
    audit: Annotated[
        bool, typer.Option("--audit", help="recorded outcomes beside the topics")
    ] = False,
    republish: Annotated[
        bool, typer.Option("--republish", help="re-emit recorded outcomes")
    ] = False,
    commit: Annotated[str | None, typer.Option(help="commit the end positions for GROUP")] = None,
    json_lines: Annotated[bool, typer.Option("--json", help="the report as JSON lines")] = False,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress")] = None,
    progress_every: Annotated[int, typer.Option(help="records per progress log line")] = 1000,
    idle_timeout_s: Annotated[float, typer.Option(help="fail when nothing advances")] = 30.0,
    audit_lookback_s: Annotated[
        int, typer.Option(help="audit: outputs from this long before")
    ] = 3600,
) -> None:
    """Read a range of the input topic again, then stop: --dry-run (default), --audit or
    --republish. Never executes a plan, never writes the ledger, never moves the live group."""
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    options = ReplayOptions(
        from_offset=from_offset,
        from_time=from_time,
        to_offset=to_offset,
        to_time=to_time,
        dry_run=dry_run,
        audit=audit,
        republish=republish,
        commit=commit,
        json_lines=json_lines,
        progress_every=progress_every,
        idle_timeout_s=idle_timeout_s,
        audit_lookback_s=audit_lookback_s,
        progress_bar=progress,
    )
    raise typer.Exit(replay_main(settings, options))


@app.command()
def demo() -> None:
    """Publish sample plans to Kafka (a local one when none is configured), run the job until
    each is decided, and print what happened."""
    settings = load_settings()
    configure_logging(settings.log_format, "warning")
    decided = run_demo(settings, Console(width=160))
    typer.echo(f"{len(decided)} inputs decided")


def main() -> None:
    app()

"""structlog set-up: JSON lines in production, readable lines on a terminal (SPEC 4)."""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog


def configure_logging(
    log_format: Literal["console", "json"] | None = None,
    level: str = "info",
    stream: TextIO | None = None,
) -> None:
    """Send structlog lines to ``stream`` (stderr); ``None`` picks console on a terminal."""
    out = stream or sys.stderr
    chosen = log_format or ("console" if out.isatty() else "json")
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if chosen == "console"
        else structlog.processors.JSONRenderer(sort_keys=True)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )

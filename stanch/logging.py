"""structlog set-up: JSON lines off a terminal, readable on one; ids bound, secrets redacted."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from stanch.redact import redact

_configured = False


def _redact_processor(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return redact(event_dict)


def configure_logging(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """Configure structlog and stdlib logging once per process."""
    global _configured
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not getattr(stream, "isatty", lambda: False)())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=getattr(stream, "isatty", lambda: False)())
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_processor,
        structlog.processors.format_exc_info,
        renderer,
    ]
    lvl = getattr(logging, level.upper(), logging.INFO)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=lvl, stream=stream, format="%(levelname)s %(name)s %(message)s",
                        force=True)
    for noisy in ("httpx", "httpcore", "uvicorn.access", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(lvl, logging.WARNING))
    _configured = True


def get_logger(name: str | None = None, **bound: Any) -> Any:
    return structlog.get_logger(name).bind(**bound)

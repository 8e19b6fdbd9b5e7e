"""structlog, configured once: one JSON line per event on stdout, pretty on a terminal.

Ids (`request_id`, `tenant_id`, later `delivery_id`) are bound with `bind_contextvars` and merged
first. Before rendering, every string value is scrubbed: email addresses are masked and API keys
and webhook secrets are replaced, so a careless log call cannot leak them.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_SECRET = re.compile(r"\b(lg_live_|whsec_)[A-Za-z0-9_\-+/=]+")
_SENSITIVE_KEYS = frozenset({"key", "api_key", "secret", "password", "authorization"})


def mask(text: str) -> str:
    """Mask emails to `a***@example.com` and replace keys and secrets with their prefix."""
    if "@" in text:
        text = _EMAIL.sub(r"\1***@\2", text)
    if "lg_live_" in text or "whsec_" in text:
        text = _SECRET.sub(r"\1[redacted]", text)
    return text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {
            k: "[redacted]" if k.lower() in _SENSITIVE_KEYS else _scrub(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def scrub_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for name, value in event_dict.items():
        if name.lower() in _SENSITIVE_KEYS:
            event_dict[name] = "[redacted]"
        else:
            event_dict[name] = _scrub(value)
    return event_dict


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure_logging(log_format: str = "auto", level: str = "info") -> None:
    """Configure structlog for this process; `auto` is pretty on a TTY and JSON otherwise."""
    pretty = log_format == "console" or (log_format == "auto" and sys.stdout.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer()
        if pretty
        else structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrub_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )

"""Field types shared by the request models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator


def _in_utc(value: datetime) -> datetime:
    """Normalise to UTC (a time without zone is taken as UTC); refuse what UTC cannot hold."""
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as e:
        raise ValueError("is outside the range of representable times") from e


# An instant, as RFC 3339; stored and compared in UTC.
Moment = Annotated[datetime, AfterValidator(_in_utc)]


def _zoned(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("needs a time zone (RFC 3339), e.g. 2026-01-01T09:00:00Z")
    return _in_utc(value)


# An instant that must say its zone: where a guess would schedule at the wrong hour.
ZonedMoment = Annotated[datetime, AfterValidator(_zoned)]

"""Normalising the matching keys: email trimmed and lower-cased, phone to E.164."""

from __future__ import annotations

import re

import phonenumbers

# Deliberately loose: one @, something on each side, a dot in the domain, no spaces. Whether the
# mailbox exists is not knowable here; rejecting unusual but valid addresses would lose leads.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


class InvalidValue(ValueError):
    """A field's value cannot be normalised; the message says why, for the error's `fields`."""


def normalize_email(raw: str) -> str:
    email = raw.strip().lower()
    if not _EMAIL.match(email):
        raise InvalidValue("not an email address")
    return email


def normalize_phone(raw: str, default_region: str | None) -> str:
    """The number in E.164 (`+14155550123`), using `default_region` when it has no +country."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as e:
        if e.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise InvalidValue(
                "needs a country code (+44 …); LEADGATE_DEFAULT_PHONE_REGION sets one for "
                "numbers written without"
            ) from e
        raise InvalidValue("not a phone number") from e
    if not phonenumbers.is_possible_number(number):
        raise InvalidValue("not a possible phone number")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))

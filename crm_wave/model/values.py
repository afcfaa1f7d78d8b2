"""Validators and normalisers for the values both systems exchange.

Every function raises `ValueError` with a message that reads well after a field
name, e.g. ``f"Email: {exc}"`` -> "Email: 'bob@' is not a valid email address (...)".
Pure functions: no dagster, httpx or duckdb imports.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import pycountry

__all__ = [
    "format_decimal",
    "normalize_country",
    "normalize_currency",
    "normalize_email",
    "normalize_subdivision",
    "parse_decimal",
    "show_value",
]

_MAX_SHOWN = 60
_COUNTRY_RE = re.compile(r"^[A-Za-z]{2}$")
_CURRENCY_RE = re.compile(r"^[A-Za-z]{3}$")
_SUBDIVISION_RE = re.compile(r"^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$")


def show_value(value: object, limit: int = _MAX_SHOWN) -> str:
    """`repr` of a value for an error message, truncated to about `limit` characters."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _expect_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected {what} as a string, got {type(value).__name__} {show_value(value)}")
    return value.strip()


def normalize_email(s: str) -> str:
    """Trim and lower-case an email address; ValueError when it is not a valid address."""
    text = _expect_str(s, "an email address")
    if not text:
        raise ValueError("empty string is not a valid email address")
    from email_validator import EmailNotValidError, validate_email  # 40-100 ms of regexes: only when an address is read

    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"{show_value(text)} is not a valid email address ({exc})") from None
    return result.normalized.lower()


def normalize_country(s: str) -> str:
    """ISO 3166-1 alpha-2 code, upper-case (" no" -> "NO"); ValueError when unknown."""
    text = _expect_str(s, "an ISO 3166-1 alpha-2 country code")
    if not _COUNTRY_RE.match(text) or pycountry.countries.get(alpha_2=text.upper()) is None:
        raise ValueError(f"{show_value(text)} is not an ISO 3166-1 alpha-2 country code (e.g. 'NO')")
    return text.upper()


def normalize_subdivision(s: str, *, country: str | None = None) -> str:
    """ISO 3166-2 subdivision code, upper-case ("us-ca" -> "US-CA"); ValueError when unknown.

    With `country` (alpha-2), the subdivision must also belong to that country.
    """
    text = _expect_str(s, "an ISO 3166-2 subdivision code")
    code = text.upper()
    if not _SUBDIVISION_RE.match(text) or pycountry.subdivisions.get(code=code) is None:
        raise ValueError(f"{show_value(text)} is not an ISO 3166-2 subdivision code (e.g. 'US-CA')")
    if country is not None and code.split("-", 1)[0] != country.strip().upper():
        raise ValueError(f"{show_value(text)} is not a subdivision of country {show_value(country)}")
    return code


def normalize_currency(s: str) -> str:
    """ISO 4217 currency code, upper-case ("nok" -> "NOK"); ValueError when unknown."""
    text = _expect_str(s, "an ISO 4217 currency code")
    if not _CURRENCY_RE.match(text) or pycountry.currencies.get(alpha_3=text.upper()) is None:
        raise ValueError(f"{show_value(text)} is not an ISO 4217 currency code (e.g. 'NOK')")
    return text.upper()


def parse_decimal(s: str | int | float | Decimal, *, scale: int | None = None) -> Decimal:
    """A finite Decimal from a decimal string (or int/float/Decimal).

    With `scale`, the result is rounded half-up to that many decimal places.
    ValueError for non-numeric text, NaN and infinities.
    """
    if isinstance(s, bool) or not isinstance(s, (str, int, float, Decimal)):
        raise ValueError(f"expected a decimal number, got {type(s).__name__} {show_value(s)}")
    text = str(s).strip() if not isinstance(s, Decimal) else None
    try:
        value = s if isinstance(s, Decimal) else Decimal(text)  # type: ignore[arg-type]
    except (InvalidOperation, ValueError):
        raise ValueError(f"{show_value(s)} is not a decimal number") from None
    if not value.is_finite():
        raise ValueError(f"{show_value(s)} is not a finite decimal number")
    if scale is not None:
        try:
            value = value.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
        except InvalidOperation:
            raise ValueError(f"{show_value(s)} is too large to round to {scale} decimal places") from None
    return value


def format_decimal(d: Decimal | str | int, scale: int | None) -> str:
    """Plain (no exponent) text of a decimal rounded half-up to `scale` places ("149.9", 2 -> "149.90").

    With `scale=None` the value keeps its own scale. Negative zero prints as zero.
    """
    value = parse_decimal(d, scale=scale)
    if value.is_zero():
        value = abs(value)
    return format(value, "f")

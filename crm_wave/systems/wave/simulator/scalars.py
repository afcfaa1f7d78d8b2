"""Scalar bindings: Date, DateTime and Decimal (see `values` for the formats)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from ariadne import ScalarType

from .values import fmt_datetime, fmt_decimal, parse_date, parse_datetime_us, to_decimal

__all__ = ["BINDABLES"]

date_scalar = ScalarType("Date")
datetime_scalar = ScalarType("DateTime")
decimal_scalar = ScalarType("Decimal")


@date_scalar.serializer
def serialize_date(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return parse_date(value)


@date_scalar.value_parser
def parse_date_value(value: Any) -> str:
    return parse_date(value)


@datetime_scalar.serializer
def serialize_datetime(value: Any) -> str:
    """Stored times are epoch milliseconds."""
    if isinstance(value, int):
        return fmt_datetime(value)
    if isinstance(value, datetime):
        return fmt_datetime(int(value.timestamp() * 1000))
    return fmt_datetime(parse_datetime_us(value) // 1000)


@datetime_scalar.value_parser
def parse_datetime_value(value: Any) -> int:
    """DateTime inputs become epoch microseconds."""
    return parse_datetime_us(value)


@decimal_scalar.serializer
def serialize_decimal(value: Any) -> str:
    """Strings are already canonical (stored values, minor units); numbers get `fmt_decimal`."""
    return value if isinstance(value, str) else fmt_decimal(value)


@decimal_scalar.value_parser
def parse_decimal_value(value: Any) -> Decimal:
    return to_decimal(value)


BINDABLES = [date_scalar, datetime_scalar, decimal_scalar]

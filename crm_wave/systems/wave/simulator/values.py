"""Value formats of the Wave simulator: ids, decimals, money, dates, currencies, places.

Decisions where Wave's documentation is silent:

- `Decimal` outputs are canonical strings: rounded to the field's scale (product
  `unitPrice` 5 places, invoice item `quantity`/`unitPrice` 8 places, ties away from
  zero), then stripped of trailing zeros but never below two decimals:
  `14.99 -> "14.99"`, `10 -> "10.00"`, `0.123456 -> "0.12346"` (unitPrice).
- `Money.value` always has the currency's exponent of decimals ("100.00", JPY "100").
- `DateTime` outputs are UTC with milliseconds (`2024-05-01T12:00:00.000Z`); inputs
  accept any ISO-8601 form (a naive value is read as UTC).
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, date, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache
from typing import Any

import pycountry

from crm_wave.model.money import currency_exponent

# ---------------------------------------------------------------- ids


def encode_id(*parts: tuple[str, object]) -> str:
    """`encode_id(("Business", uuid), ("Customer", 3))` -> base64 of `Business:<uuid>;Customer:3`."""
    raw = ";".join(f"{kind}:{value}" for kind, value in parts)
    return base64.b64encode(raw.encode()).decode()


def decode_id(value: object) -> dict[str, str] | None:
    """Decode an opaque id into `{kind: value}`; None when it is not a well-formed id."""
    if not isinstance(value, str) or not value:
        return None
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    parts: dict[str, str] = {}
    for piece in raw.split(";"):
        kind, sep, val = piece.partition(":")
        if not sep or not kind or not val or kind in parts:
            return None
        parts[kind] = val
    return parts


def business_id(bid: str) -> str:
    return encode_id(("Business", bid))


def node_id(kind: str, bid: str, n: int) -> str:
    """The id of a business-owned node; accounts put the account first, as Wave does."""
    if kind == "Account":
        return encode_id(("Account", n), ("Business", bid))
    return encode_id(("Business", bid), (kind, n))


def parse_node_id(value: object, kind: str) -> tuple[str, int] | None:
    """`(business uuid, n)` of an id of `kind`, or None when malformed / another kind."""
    parts = decode_id(value)
    if not parts or set(parts) != {"Business", kind}:
        return None
    try:
        n = int(parts[kind])
    except ValueError:
        return None
    return (parts["Business"], n) if n > 0 else None


def parse_business_id(value: object) -> str | None:
    parts = decode_id(value)
    if not parts or set(parts) != {"Business"}:
        return None
    return parts["Business"]


# ---------------------------------------------------------------- decimals

PRODUCT_PRICE_PLACES = 5
ITEM_PLACES = 8


def to_decimal(value: object) -> Decimal:
    """Parse a Decimal input (string, int or float); ValueError when it is not a finite number."""
    if isinstance(value, bool):
        raise ValueError("Decimal cannot represent a boolean")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, float):
        d = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"Decimal cannot represent {value!r}") from None
    else:
        raise ValueError(f"Decimal cannot represent {value!r}")
    if not d.is_finite():
        raise ValueError(f"Decimal cannot represent {value!r}")
    try:  # the finest scale Wave keeps (an invoice item's 8 decimals) must hold it: 1e308 does not
        round_places(d, 8)
    except InvalidOperation:
        raise ValueError(f"Decimal cannot represent {value!r}: too many digits") from None
    return d


def round_places(d: Decimal, places: int) -> Decimal:
    """Round to `places` decimals, ties away from zero."""
    return d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def fmt_decimal(value: object, places: int | None = None) -> str:
    """Canonical Decimal string (see module docstring)."""
    d = to_decimal(value)
    if places is not None:
        d = round_places(d, places)
    if d == 0:
        d = Decimal(0)
    s = format(d.normalize(), "f")
    whole, _, frac = s.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


# ---------------------------------------------------------------- currencies

_SYMBOLS = {"USD": "$", "CAD": "$", "AUD": "$", "NZD": "$", "SGD": "$", "HKD": "$", "MXN": "$",
            "EUR": "€", "GBP": "£", "JPY": "¥", "CNY": "¥", "INR": "₹", "NOK": "kr", "SEK": "kr",
            "DKK": "kr", "ISK": "kr", "CHF": "CHF", "BRL": "R$", "ZAR": "R", "KRW": "₩", "PLN": "zł",
            "RUB": "₽", "TRY": "₺", "ILS": "₪", "NGN": "₦", "PHP": "₱", "THB": "฿", "VND": "₫"}


@cache
def currency(code: str) -> dict[str, Any]:
    """The `Currency` object for an ISO 4217 code."""
    found = pycountry.currencies.get(alpha_3=code)
    name = found.name if found else code
    return {
        "code": code,
        "exponent": currency_exponent(code),
        "name": name,
        "plural": name if name.endswith("s") else f"{name}s",
        "symbol": _SYMBOLS.get(code, code),
    }


def round_money(amount: Decimal, code: str) -> Decimal:
    return round_places(amount, currency_exponent(code))


def money(amount: object, code: str) -> dict[str, Any]:
    """The `Money` object: `value` in major units, `minorUnitValue`/`raw` in minor units."""
    exp = currency_exponent(code)
    q = round_places(to_decimal(amount), exp)
    if q == 0:
        q = Decimal(0).quantize(Decimal(1).scaleb(-exp))
    minor = int(q.scaleb(exp))
    return {"value": f"{q:.{exp}f}", "minorUnitValue": str(minor), "raw": minor, "currency": currency(code)}


# ---------------------------------------------------------------- countries and provinces

_CURRENCY_OF_COUNTRY = {
    "US": "USD", "CA": "CAD", "GB": "GBP", "NO": "NOK", "SE": "SEK", "DK": "DKK", "IS": "ISK",
    "CH": "CHF", "LI": "CHF", "AU": "AUD", "NZ": "NZD", "JP": "JPY", "CN": "CNY", "IN": "INR",
    "MX": "MXN", "BR": "BRL", "ZA": "ZAR", "KR": "KRW", "PL": "PLN", "SG": "SGD", "HK": "HKD",
    "TR": "TRY", "IL": "ILS", "NG": "NGN", "PH": "PHP", "TH": "THB", "VN": "VND", "RU": "RUB",
}
_EURO = {"AT", "BE", "CY", "DE", "EE", "ES", "FI", "FR", "GR", "HR", "IE", "IT", "LT", "LU", "LV",
         "MT", "NL", "PT", "SI", "SK"}
_WITH_ARTICLE = {"US", "GB", "NL", "PH", "AE", "BS", "CZ", "DO", "GM", "MV", "KY", "VG", "VI", "CF",
                 "KM", "MH", "SB", "VA", "CD", "CG"}


def currency_of_country(code: str) -> str:
    if code in _EURO:
        return "EUR"
    return _CURRENCY_OF_COUNTRY.get(code, "USD")


@cache
def country(code: str) -> dict[str, Any]:
    """The `Country` object (provinces resolved lazily from `_code`)."""
    found = pycountry.countries.get(alpha_2=code)
    name = (getattr(found, "common_name", None) or found.name) if found else code
    return {
        "code": code,
        "name": name,
        "nameWithArticle": f"the {name}" if code in _WITH_ARTICLE else name,
        "currency": currency(currency_of_country(code)),
        "_code": code,
    }


@cache
def province(code: str) -> dict[str, Any] | None:
    """The `Province` object for an ISO 3166-2 code, or None when the code is unknown."""
    found = pycountry.subdivisions.get(code=code.upper()) if code else None
    if not found:
        return None
    return {"code": found.code, "name": found.name, "slug": re.sub(r"[^a-z0-9]+", "-", found.name.lower()).strip("-")}


@cache
def provinces_of(country_code: str) -> list[dict[str, Any]]:
    subs = pycountry.subdivisions.get(country_code=country_code) or []
    return [p for p in (province(s.code) for s in sorted(subs, key=lambda s: s.code)) if p]


# ---------------------------------------------------------------- dates and times


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def fmt_datetime(ms: int) -> str:
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_datetime_us(value: object) -> int:
    """Microseconds since the epoch of an ISO-8601 DateTime input (naive = UTC)."""
    if not isinstance(value, str):
        raise ValueError(f"DateTime cannot represent {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"DateTime cannot represent {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def us_to_ms(us: int, *, up: bool) -> int:
    """Microseconds to whole milliseconds, rounding down (`up=False`) or up."""
    return int(Decimal(us).scaleb(-3).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR))


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_date(value: object) -> str:
    """A `Date` input (`yyyy-MM-dd`), returned as the same canonical string."""
    if not isinstance(value, str) or not _DATE_RE.match(value):
        raise ValueError(f"Date cannot represent {value!r}; expected yyyy-MM-dd")
    return date.fromisoformat(value).isoformat()


def today() -> str:
    return datetime.now(UTC).date().isoformat()

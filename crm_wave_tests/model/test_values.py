"""The shared value rules: good inputs normalise, bad ones raise ValueError with a usable message."""

from __future__ import annotations

from decimal import Decimal

import pytest

from crm_wave.model.values import (
    format_decimal,
    normalize_country,
    normalize_currency,
    normalize_email,
    normalize_subdivision,
    parse_decimal,
    show_value,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("bob@example.com", "bob@example.com"),
        ("  Bob.Smith@Example.COM ", "bob.smith@example.com"),
        ("post@fjord-consulting.no", "post@fjord-consulting.no"),
        ("a+tag@sub.domain.co.uk", "a+tag@sub.domain.co.uk"),
    ],
)
def test_normalize_email_good(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "bob", "bob@", "@example.com", "bob@@example.com", "bob@exa mple.com",
                                 "bob@localhost", 42, None])
def test_normalize_email_bad(raw: object) -> None:
    with pytest.raises(ValueError) as exc:
        normalize_email(raw)  # type: ignore[arg-type]
    message = str(exc.value)
    assert message and "email" in message.lower()
    if isinstance(raw, str) and raw.strip():
        assert repr(raw.strip()) in message  # names the bad value


@pytest.mark.parametrize(("raw", "expected"), [("NO", "NO"), ("no", "NO"), (" se ", "SE"), ("Us", "US"), ("GB", "GB")])
def test_normalize_country_good(raw: str, expected: str) -> None:
    assert normalize_country(raw) == expected


@pytest.mark.parametrize("raw", ["", "XX", "NOR", "Norway", "N0", "UK", 1])
def test_normalize_country_bad(raw: object) -> None:
    with pytest.raises(ValueError, match="country code"):
        normalize_country(raw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("raw", "expected"), [("US-CA", "US-CA"), ("us-ca", "US-CA"), (" NO-03 ", "NO-03"),
                                               ("GB-LND", "GB-LND"), ("SE-AB", "SE-AB")])
def test_normalize_subdivision_good(raw: str, expected: str) -> None:
    assert normalize_subdivision(raw) == expected


@pytest.mark.parametrize("raw", ["", "CA", "US-XX", "US_CA", "California", "USCA", "XX-YY"])
def test_normalize_subdivision_bad(raw: str) -> None:
    with pytest.raises(ValueError, match="3166-2"):
        normalize_subdivision(raw)


def test_normalize_subdivision_checks_country() -> None:
    assert normalize_subdivision("us-ca", country="us") == "US-CA"
    with pytest.raises(ValueError, match="not a subdivision of country 'NO'"):
        normalize_subdivision("US-CA", country="NO")


@pytest.mark.parametrize(("raw", "expected"), [("NOK", "NOK"), ("usd", "USD"), (" eur ", "EUR"), ("SEK", "SEK")])
def test_normalize_currency_good(raw: str, expected: str) -> None:
    assert normalize_currency(raw) == expected


@pytest.mark.parametrize("raw", ["", "XYZ", "KR", "NOKK", "kroner", None])
def test_normalize_currency_bad(raw: object) -> None:
    with pytest.raises(ValueError, match="currency code"):
        normalize_currency(raw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "scale", "expected"),
    [
        ("149.90", None, Decimal("149.90")),
        (" 12 ", None, Decimal("12")),
        ("-3.5", None, Decimal("-3.5")),
        ("1e3", None, Decimal("1000")),
        (7, None, Decimal(7)),
        (Decimal("2.345"), 2, Decimal("2.35")),
        ("2.344", 2, Decimal("2.34")),
        ("0.125", 2, Decimal("0.13")),
        ("10", 2, Decimal("10.00")),
    ],
)
def test_parse_decimal_good(raw: object, scale: int | None, expected: Decimal) -> None:
    value = parse_decimal(raw, scale=scale)  # type: ignore[arg-type]
    assert value == expected
    if scale is not None:
        assert value.as_tuple().exponent == -scale


@pytest.mark.parametrize("raw", ["", "abc", "1,5", "NaN", "nan", "Infinity", "-inf", "1.2.3", True, None, [1]])
def test_parse_decimal_bad(raw: object) -> None:
    with pytest.raises(ValueError, match="decimal"):
        parse_decimal(raw)  # type: ignore[arg-type]


def test_parse_decimal_too_large_for_scale() -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_decimal("1e100000", scale=2)


@pytest.mark.parametrize(
    ("raw", "scale", "expected"),
    [("149.9", 2, "149.90"), (Decimal("1E+3"), 2, "1000.00"), ("0.005", 2, "0.01"), ("-0.001", 2, "0.00"),
     ("2.50", None, "2.50"), (3, 0, "3"), ("1e-7", None, "0.0000001")],
)
def test_format_decimal(raw: object, scale: int | None, expected: str) -> None:
    assert format_decimal(raw, scale) == expected  # type: ignore[arg-type]


def test_show_value_truncates() -> None:
    shown = show_value("x" * 500)
    assert len(shown) <= 60 and shown.endswith("...")
    assert show_value("short") == "'short'"

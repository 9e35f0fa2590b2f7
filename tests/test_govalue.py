"""ketch.govalue: Go's value parsing with Go's error texts, shared by the
server's flags (Go's flag package, which says only "parse error" or "value out
of range") and ketchctl's (pflag, which prints strconv's or time's error whole)."""

from __future__ import annotations

import pytest
from ketch.config.flags import FLAGS
from ketch.ctl.flags import Flag, FlagError, parse_flags
from ketch.govalue import UINT, parse_bool, parse_duration, parse_int, parse_uint


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_int("x"), 'strconv.ParseInt: parsing "x": invalid syntax'),
        (lambda: parse_int("9223372036854775808"),
         'strconv.ParseInt: parsing "9223372036854775808": value out of range'),
        (lambda: parse_uint("-1"), 'strconv.ParseUint: parsing "-1": invalid syntax'),
        (lambda: parse_uint("0x1f", 16), 'strconv.ParseUint: parsing "0x1f": invalid syntax'),
        (lambda: parse_bool("yes"), 'strconv.ParseBool: parsing "yes": invalid syntax'),
        (lambda: parse_duration("5"), 'time: missing unit in duration "5"'),
        (lambda: parse_duration("5x"), 'time: invalid duration "5x"'),
    ],
)
def test_go_error_texts(call: object, message: str) -> None:
    with pytest.raises(ValueError) as e:
        call()  # type: ignore[operator]
    assert str(e.value) == message


def test_values() -> None:
    assert parse_int("0x10") == parse_int("020") == parse_int("0b10000") == parse_int("1_6") == 16
    assert parse_int("ff", 16) == 255 and parse_uint("18446744073709551615") == 2**64 - 1
    assert parse_duration("1h30m") == 5400 and parse_duration("250ms") == 0.25
    assert parse_bool("T") is True and parse_bool("False") is False


def test_the_two_flag_packages_wrap_the_same_error() -> None:
    with pytest.raises(ValueError, match=r"^parse error$"):
        FLAGS["election-timeout"].kind.parse("x")  # Go's flag package
    with pytest.raises(ValueError, match=r"^value out of range$"):
        UINT.parse("18446744073709551616")
    with pytest.raises(FlagError) as e:
        parse_flags(["--limit=x"], [Flag("limit", "int", 0)])  # pflag
    assert str(e.value) == 'invalid argument "x" for "--limit" flag: strconv.ParseInt: parsing "x": invalid syntax'

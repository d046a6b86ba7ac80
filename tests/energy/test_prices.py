"""Price series: CSV validation by line, idempotent storage, reads per period, CLI."""

from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from energy.errors import ValidationError
from energy.prices import list_series, parse_price_csv, read_prices, store_prices
from tests.noaber.test_cli_core import _noaber

GOOD = """timestamp,price_eur_per_kwh
2026-10-25T01:45:00+02:00,0.081
2026-10-25T02:00:00+02:00,-0.012
2026-10-25T02:00:00+01:00,0.075
2026-10-25T02:15:00+01:00,0.07
"""


def _write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "prices.csv"
    f.write_text(text)
    return f


def test_dst_repeated_hour_is_two_isps_and_reimport_is_idempotent(sessions, tmp_path):
    prices = parse_price_csv(_write(tmp_path, GOOD))
    assert len(prices) == 4 and prices.iloc[1] == Decimal("-0.012")
    with sessions.begin() as s:
        assert store_prices(s, "epex-nl-day-ahead", prices) == 4
    with sessions.begin() as s:
        store_prices(s, "epex-nl-day-ahead", prices)
    with sessions() as s:
        back = read_prices(s, "epex-nl-day-ahead")
        assert list_series(s)[0][:2] == ("epex-nl-day-ahead", 4)
        window = read_prices(
            s,
            "epex-nl-day-ahead",
            pd.Timestamp("2026-10-25T00:00Z"),
            pd.Timestamp("2026-10-25T01:00Z"),
        )
    assert back.index[2] == pd.Timestamp("2026-10-25T01:00:00Z")
    assert back.tolist() == [0.081, -0.012, 0.075, 0.07]
    assert window.tolist() == [-0.012]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timestamp,price_eur_per_kwh\n2026-01-01T00:00:00,0.1\n", "line 2.*no timezone"),
        ("timestamp,price_eur_per_kwh\n2026-01-01T00:05:00Z,0.1\n", "line 2.*not the start"),
        (
            "timestamp,price_eur_per_kwh\n2026-01-01T00:00:00Z,0.1\n2026-01-01T00:00:00Z,0.2\n",
            "line 3.*also on line 2",
        ),
        ("timestamp,price_eur_per_kwh\n2026-01-01T00:00:00Z,abc\n", "line 2.*not a number"),
        ("timestamp,price_eur_per_kwh\n2026-01-01T00:00:00Z,85.3\n", "line 2.*EUR/MWh"),
        ("time,price\n2026-01-01T00:00:00Z,0.1\n", "line 1.*columns"),
    ],
)
def test_bad_rows_are_named(tmp_path, text, message):
    with pytest.raises(ValidationError, match=message):
        parse_price_csv(_write(tmp_path, text))


def test_cli_import_and_list(tmp_path):
    f = _write(tmp_path, GOOD)
    out = _noaber(tmp_path, "prices", "import", "epex-nl-day-ahead", str(f))
    assert out.returncode == 0, out.stderr
    assert "epex-nl-day-ahead: 4 ISPs" in out.stdout
    bad = _write(tmp_path, "timestamp,price_eur_per_kwh\n2026-01-01T00:00:00Z,x\n")
    out = _noaber(tmp_path, "prices", "import", "epex-nl-day-ahead", str(bad))
    assert out.returncode == 1 and "line 2" in out.stderr and "Traceback" not in out.stderr
    listing = _noaber(tmp_path, "prices", "list")
    assert "epex-nl-day-ahead: 4 ISPs" in listing.stdout

"""Day-ahead prices from ENTSO-E (entsoe-py's raw client and parser) on recorded answers:
PT15M and PT60M days, 23- and 25-hour local days, "no data", idempotent re-fetch, a changed
price reported and kept, and the plan's horizon taking fetched prices over the fallback."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest
import requests
from requests.adapters import BaseAdapter
from typer.testing import CliRunner

from energy.errors import NoaberError, ValidationError
from energy.prices import (
    NoPricesPublished,
    compare_prices,
    fetch_day_ahead,
    parse_day_ahead_xml,
    read_horizon_prices,
    read_prices,
    store_new_prices,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "entsoe"
TZ = "Europe/Amsterdam"
TOKEN = "test-token-7f3a9c0e1b2d4f6a8c0e"
#: The recorded answer for each requested periodStart (UTC, as entsoe-py sends it).
ANSWERS = {
    "202509162200": "nl-2025-09-17-pt60m.xml",
    "202612022300": "nl-2026-12-03-pt15m.xml",
    "202603282300": "nl-2026-03-29-pt15m-23h.xml",
    "202610242200": "nl-2026-10-25-pt15m-25h.xml",
    "202612032300": "ack-no-data.xml",
}


class Recorded(BaseAdapter):
    """Serves the recorded ENTSO-E answer of a request's periodStart; notes every request."""

    def __init__(self, status: int = 200, body: str | None = None):
        super().__init__()
        self.status, self.body = status, body
        self.requests: list[dict[str, str]] = []

    def send(self, request, **kwargs):
        params = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        self.requests.append(params)
        resp = requests.Response()
        resp.status_code = self.status
        resp.headers["content-type"] = "text/xml"
        body = self.body or (DATA / ANSWERS[params["periodStart"]]).read_text(encoding="utf-8")
        resp._content = body.encode()
        resp.url = request.url
        resp.request = request
        return resp

    def close(self) -> None:
        pass


def _session(adapter: Recorded) -> requests.Session:
    s = requests.Session()
    s.mount("https://", adapter)
    return s


def _local(day: str, hhmm: str, fold: int = 0) -> pd.Timestamp:
    """A local wall time as UTC (``fold=1``: the second 02:xx of an autumn DST day)."""
    wall = dt.datetime.fromisoformat(f"{day}T{hhmm}").replace(fold=fold)
    return pd.Timestamp(wall.replace(tzinfo=__import__("zoneinfo").ZoneInfo(TZ))).tz_convert("UTC")


def test_pt15m_day_with_a03_gaps_and_the_request_entsoe_gets():
    adapter = Recorded()
    got = fetch_day_ahead(TOKEN, "NL", dt.date(2026, 12, 3), session=_session(adapter))
    # the request: day-ahead prices of the NL zone for the local day, in UTC
    (req,) = adapter.requests
    assert req["documentType"] == "A44"
    assert req["in_Domain"] == req["out_Domain"] == "10YNL----------L"
    assert (req["periodStart"], req["periodEnd"]) == ("202612022300", "202612032300")
    assert got.resolutions == ("PT15M",) and len(got.prices) == 96
    assert got.document == "5d1c0f8a2b7e4c90a3f61e2d7b8c9a01" and got.revision == "1"
    p = got.prices
    # hand-read from the file: 00:00 local is position 1 (88.1 - 1.5 * 1.8 = 85.4 EUR/MWh)
    assert p[_local("2026-12-03", "00:00")] == Decimal("0.085400")
    # the flat hour 02:00-03:00 has one point (position 9); positions 10-12 repeat it
    for m in ("02:00", "02:15", "02:30", "02:45"):
        assert p[_local("2026-12-03", m)] == Decimal("0.082000")
    # 17:00 local: position 69, 158.31 + 1.5 * 1.6 = 160.71
    assert p[_local("2026-12-03", "17:00")] == Decimal("0.160710")
    # the day ends on flat hours whose last positions are omitted: 23:45 is 92.0
    assert p[_local("2026-12-03", "23:45")] == Decimal("0.092000")


def test_pt60m_day_expands_each_hour_to_its_four_isps():
    text = (DATA / "nl-2025-09-17-pt60m.xml").read_text(encoding="utf-8")
    got = parse_day_ahead_xml(text, "NL", dt.date(2025, 9, 17))
    assert got.resolutions == ("PT60M",) and len(got.prices) == 96
    assert got.prices.iloc[:4].tolist() == [Decimal("0.074780")] * 4  # 00:00-01:00 local
    assert got.prices.iloc[4:8].tolist() == [Decimal("0.066860")] * 4
    assert got.prices[_local("2025-09-17", "14:45")] == Decimal("0.025000")  # position 15
    assert got.prices.iloc[-1] == Decimal("0.071430")
    assert got.created == "2025-09-17T13:17:54Z"


def test_dst_days_have_92_and_100_isps():
    short = fetch_day_ahead(TOKEN, "NL", dt.date(2026, 3, 29), session=_session(Recorded()))
    assert len(short.prices) == 92
    assert short.prices.index[0] == pd.Timestamp("2026-03-28T23:00Z")
    assert short.prices.index[-1] == pd.Timestamp("2026-03-29T21:45Z")
    # 01:45 CET is followed by 03:00 CEST; 12:00 local is negative (-12.71 EUR/MWh, flat hour)
    assert short.prices[_local("2026-03-29", "03:00")] == Decimal("0.069250")
    assert short.prices[_local("2026-03-29", "12:30")] == Decimal("-0.012710")
    long = fetch_day_ahead(TOKEN, "NL", dt.date(2026, 10, 25), session=_session(Recorded()))
    assert len(long.prices) == 100
    first = long.prices[_local("2026-10-25", "02:00", fold=0)]
    second = long.prices[_local("2026-10-25", "02:00", fold=1)]
    assert (first, second) == (Decimal("0.084020"), Decimal("0.081350"))
    assert long.prices.index[-1] == pd.Timestamp("2026-10-25T22:45Z")


def test_no_data_and_http_errors_are_one_line_without_the_token():
    with pytest.raises(NoPricesPublished, match="no day-ahead prices for NL on 2026-12-04"):
        fetch_day_ahead(TOKEN, "NL", dt.date(2026, 12, 4), session=_session(Recorded()))
    ack = (DATA / "ack-no-data.xml").read_text(encoding="utf-8")
    with pytest.raises(NoPricesPublished, match="999: No matching data"):
        parse_day_ahead_xml(ack, "NL", dt.date(2026, 12, 4))
    unauthorized = ack.replace("No matching data found for Data item", "Unauthorized. Token")
    with pytest.raises(NoaberError) as info:
        fetch_day_ahead(
            TOKEN, "NL", dt.date(2026, 12, 3), session=_session(Recorded(401, unauthorized))
        )
    assert "HTTP 401" in str(info.value) and "Unauthorized" in str(info.value)
    assert TOKEN not in str(info.value)
    with pytest.raises(NoaberError, match="NOABER_ENTSOE_TOKEN"):
        fetch_day_ahead("", "NL", dt.date(2026, 12, 3))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("<currency_Unit.name>EUR", "<currency_Unit.name>UAH"), "UAH"),
        (lambda t: t.replace("10YNL----------L</in", "10YBE----------2</in"), "in_Domain"),
        (lambda t: t.replace("PT15M", "PT5M"), "resolution 'PT5M'"),
        (lambda t: t.replace("2026-12-03T23:00Z", "2026-12-03T22:00Z"), "4 of the 96 ISPs"),
        (lambda t: t[:200], "not XML"),
    ],
)
def test_a_broken_answer_is_named_and_stores_nothing(edit, message):
    text = edit((DATA / "nl-2026-12-03-pt15m.xml").read_text(encoding="utf-8"))
    with pytest.raises(ValidationError, match=message):
        parse_day_ahead_xml(text, "NL", dt.date(2026, 12, 3))


def test_refetch_is_idempotent_and_a_changed_price_is_kept_and_reported(sessions):
    got = fetch_day_ahead(TOKEN, "NL", dt.date(2026, 12, 3), session=_session(Recorded()))
    with sessions.begin() as s:
        first = store_new_prices(s, "entsoe-nl-day-ahead", got.prices)
    assert (len(first.new), first.unchanged, first.changed) == (96, 0, [])
    with sessions.begin() as s:
        again = store_new_prices(s, "entsoe-nl-day-ahead", got.prices)
    assert (len(again.new), again.unchanged, again.changed) == (0, 96, [])
    revised = got.prices.copy()
    revised.iloc[10] = Decimal("0.123456")
    with sessions.begin() as s:
        diff = store_new_prices(s, "entsoe-nl-day-ahead", revised)
    assert [c.offered_eur_per_kwh for c in diff.changed] == [Decimal("0.123456")]
    assert "stored 0.08" in diff.changed_text(TZ) and "now 0.123456" in diff.changed_text(TZ)
    with sessions() as s:
        assert read_prices(s, "entsoe-nl-day-ahead").iloc[10] == float(got.prices.iloc[10])
    with sessions.begin() as s:
        store_new_prices(s, "entsoe-nl-day-ahead", revised, replace_changed=True)
    with sessions() as s:
        assert read_prices(s, "entsoe-nl-day-ahead").iloc[10] == 0.123456
        assert compare_prices(s, "entsoe-nl-day-ahead", revised).changed == []


def test_fetched_prices_replace_the_fallback_for_the_hours_they_cover(sessions):
    """Before the fetch tomorrow's steps take last week's shape; after it, the fetched
    prices, and the horizon says which steps are which."""
    week_before = fetch_day_ahead(TOKEN, "NL", dt.date(2026, 12, 3), session=_session(Recorded()))
    shifted = week_before.prices.copy()
    shifted.index = shifted.index + pd.Timedelta(days=7)  # 10-12-2026 (a Thursday too)
    with sessions.begin() as s:
        store_new_prices(s, "nl", week_before.prices)
    with sessions() as s:
        later = pd.date_range(shifted.index[0], periods=96, freq="15min")
        before = read_horizon_prices(s, "nl", later, TZ)
    assert not before.known.any() and "1 week(s) before" in (before.fallback or "")
    with sessions.begin() as s:
        store_new_prices(s, "nl", shifted.iloc[:48] + Decimal("0.01"))
    with sessions() as s:
        after = read_horizon_prices(s, "nl", later, TZ)
    assert after.known[:48].all() and not after.known[48:].any()
    assert after.values[0] == pytest.approx(float(week_before.prices.iloc[0]) + 0.01)
    assert after.values[60] == pytest.approx(float(week_before.prices.iloc[60]))
    assert after.known_until == shifted.index[48]
    assert "prices known until 10-12-2026 12:00" in (after.fallback or "")


def test_cli_fetch_stores_reports_and_audits(tmp_path, monkeypatch, settings_env):
    from energy.db import make_engine, session_factory
    from energy.models import AuditEntry
    from noaber.cli import app
    from noaber.cli import prices as cli_prices

    monkeypatch.setenv("NOABER_ENTSOE_TOKEN", TOKEN)
    from energy.settings import get_settings

    get_settings.cache_clear()
    assert TOKEN not in repr(get_settings()) and TOKEN not in str(get_settings().model_dump())
    adapter = Recorded()
    monkeypatch.setattr(cli_prices, "_http_session", lambda: _session(adapter))
    runner = CliRunner()
    out = runner.invoke(app, ["prices", "fetch", "--zone", "NL", "--day", "2026-10-25"])
    assert out.exit_code == 0, out.output
    assert "entsoe-nl-day-ahead: 100 ISPs of NL 2026-10-25 (PT15M" in out.output
    assert "100 new, 0 unchanged" in out.output and TOKEN not in out.output
    again = runner.invoke(app, ["prices", "fetch", "--zone", "NL", "--day", "2026-10-25"])
    assert again.exit_code == 0 and "0 new, 100 unchanged" in again.output
    none = runner.invoke(app, ["prices", "fetch", "--zone", "NL", "--day", "2026-12-04"])
    assert none.exit_code == 1 and "No matching data" in str(none.exception)
    bad_day = runner.invoke(app, ["prices", "fetch", "--day", "25-10-2026"])
    assert bad_day.exit_code == 2
    engine = make_engine(get_settings().sqlalchemy_url)
    with session_factory(engine)() as s:
        assert len(read_prices(s, "entsoe-nl-day-ahead")) == 100
        entries = s.query(AuditEntry).filter(AuditEntry.action == "tariff.fetch").all()
    engine.dispose()
    assert len(entries) == 2 and entries[0].detail["document"] == "0f7b2e9c4d6a4b1e9c3d5f7a8b9c0d12"
    assert TOKEN not in repr([e.detail for e in entries])


def test_cli_import_reports_a_changed_price_and_keeps_it(tmp_path, settings_env):
    from noaber.cli import app

    f = tmp_path / "p.csv"
    f.write_text(
        "timestamp,price_eur_per_kwh\n2026-01-01T00:00:00Z,0.1\n2026-01-01T00:15:00Z,0.2\n"
    )
    runner = CliRunner()
    assert runner.invoke(app, ["prices", "import", "s", str(f)]).exit_code == 0
    f.write_text(
        "timestamp,price_eur_per_kwh\n2026-01-01T00:00:00Z,0.1\n2026-01-01T00:15:00Z,0.3\n"
    )
    out = runner.invoke(app, ["prices", "import", "s", str(f)])
    assert out.exit_code == 1 and "1 price(s) differ" in str(out.exception)
    assert "stored 0.200000, now 0.3" in str(out.exception)
    fixed = runner.invoke(app, ["prices", "import", "s", str(f), "--replace"])
    assert fixed.exit_code == 0 and "1 replaced" in fixed.output

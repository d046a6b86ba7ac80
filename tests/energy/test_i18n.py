import datetime as dt

import pytest

from energy.i18n import (
    format_kwh,
    format_local_datetime,
    format_money_cents,
    format_number,
    format_pct,
    template_env,
)


def test_dutch_and_english_formats():
    assert format_money_cents(123456, "nl") == "€\xa01.234,56"
    assert format_money_cents(-5, "nl") == "€\xa0-0,05"
    assert format_money_cents(123456, "en") == "€1,234.56"
    assert format_number(1234.5, 1, "nl") == "1.234,5"
    assert format_kwh(1500, 1, "nl") == "1,5 kWh"
    assert format_pct(0.125, 1, "en") == "12.5%"


def test_local_time_across_dst():
    # 00:30 UTC on 25 Oct 2026 is 02:30 CEST; 01:30 UTC is 02:30 CET (the repeated hour)
    assert (
        format_local_datetime(dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC)) == "25-10-2026 02:30"
    )
    assert (
        format_local_datetime(dt.datetime(2026, 10, 25, 1, 30, tzinfo=dt.UTC)) == "25-10-2026 02:30"
    )
    with pytest.raises(ValueError, match="naive"):
        format_local_datetime(dt.datetime(2026, 1, 1))


def test_templates_translate_and_escape():
    nl = template_env("energy", "nl")
    en = template_env("energy", "en")
    src = "{{ _('Solar') }}|{{ x }}|{{ c|money }}"
    assert nl.from_string(src).render(x="<b>", c=100) == "Zonne-energie|&lt;b&gt;|€\xa01,00"
    assert en.from_string(src).render(x="<b>", c=100) == "Solar|&lt;b&gt;|€1.00"
    page = nl.get_template("noaber_base.html").render()
    assert '<html lang="nl">' in page
    with pytest.raises(ValueError, match="locale must be one of"):
        template_env("energy", "fr")

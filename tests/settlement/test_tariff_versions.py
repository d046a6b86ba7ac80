"""A community's tariff versions from a date (settlement/tariff_versions.py): worked by hand
on the shipped 2026 tariff (one version, 2026-01-01 to 2027-01-01, shared 0.15 EUR/kWh, fee
1.50 EUR/month, V2G 0.05 EUR/kWh, VAT 21 %); stored, audited and in force for new runs, on
SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from energy.audit import Actor
from energy.errors import ValidationError
from energy.models import AuditEntry
from settlement.models import CommunityTariff, SettlementRun
from settlement.pricing import load_tariff
from settlement.tariff_versions import (
    VersionChange,
    add_version,
    community_tariff,
    version_rows,
    with_version,
)

D = dt.date
SHIPPED = load_tariff(None)


def _spans(tariff) -> list[tuple[str, str, str | None, str]]:
    return [
        (
            r["valid_from"],
            r["valid_to"],
            r["shared_price_eur_per_kwh"],
            r["fixed_fee_eur_per_month"],
        )
        for r in version_rows(tariff)
    ]


def test_a_version_from_a_date_splits_the_one_in_force() -> None:
    new = with_version(
        SHIPPED, VersionChange(D(2026, 7, 1), shared_price_eur_per_kwh=Decimal("0.18"))
    )
    assert _spans(new) == [
        ("2026-01-01", "2026-07-01", "0.15", "1.50"),
        ("2026-07-01", "2027-01-01", "0.18", "1.50"),  # the fee copied from the one in force
    ]
    assert new.version_for_day(D(2026, 6, 30)).shared_price["price"] == Decimal("0.15")
    assert new.version_for_day(D(2026, 7, 1)).shared_price["price"] == Decimal("0.18")
    assert new.digest != SHIPPED.digest
    # the tax bands and VAT are the old version's
    assert new.versions[1].energy_tax_bands == SHIPPED.versions[0].energy_tax_bands
    assert new.versions[1].vat_pct == Decimal("21")


def test_the_same_date_again_replaces_and_a_later_date_splits_again() -> None:
    a = with_version(
        SHIPPED, VersionChange(D(2026, 7, 1), shared_price_eur_per_kwh=Decimal("0.18"))
    )
    b = with_version(a, VersionChange(D(2026, 7, 1), fixed_fee_eur_per_month=Decimal("2.00")))
    assert _spans(b) == [
        ("2026-01-01", "2026-07-01", "0.15", "1.50"),
        ("2026-07-01", "2027-01-01", "0.18", "2.00"),  # corrected, not added
    ]
    c = with_version(b, VersionChange(D(2026, 3, 1), v2g_compensation_eur_per_kwh=Decimal("0.07")))
    assert [(r["valid_from"], r["valid_to"], r["v2g_compensation_eur_per_kwh"]) for r in version_rows(c)] == [
        ("2026-01-01", "2026-03-01", "0.05"),
        ("2026-03-01", "2026-07-01", "0.07"),
        ("2026-07-01", "2027-01-01", "0.05"),  # later versions stay as they were
    ]  # fmt: skip
    # from the end of the last version: extended to the next 1 January, no gap
    d = with_version(SHIPPED, VersionChange(D(2027, 1, 1), vat_pct=Decimal("9")))
    assert [(r["valid_from"], r["valid_to"], r["vat_pct"]) for r in version_rows(d)] == [
        ("2026-01-01", "2027-01-01", "21"),
        ("2027-01-01", "2028-01-01", "9"),
    ]


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (VersionChange(D(2025, 12, 31), vat_pct=Decimal("21")), "valid_from", "before the tariff's first"),
        (VersionChange(D(2027, 2, 1), vat_pct=Decimal("21")), "valid_from", "gap"),
        (VersionChange(D(2026, 5, 1), shared_price_eur_per_kwh=Decimal("-0.01")), "shared_price_eur_per_kwh", ">= 0"),
        (VersionChange(D(2026, 5, 1), shared_price_eur_per_kwh=Decimal("0.123456789")), "shared_price_eur_per_kwh", "8 decimals"),
        (VersionChange(D(2026, 5, 1), fixed_fee_eur_per_month=Decimal("1.505")), "fixed_fee_eur_per_month", "whole cents"),
        (VersionChange(D(2026, 5, 1), vat_pct=Decimal("121")), "vat_pct", "at most 100"),
        (VersionChange(D(2026, 5, 1), v2g_compensation_eur_per_kwh=Decimal("NaN")), "v2g_compensation_eur_per_kwh", ">= 0"),
    ],
)  # fmt: skip
def test_refused_changes_name_their_field(change, field, words) -> None:
    with pytest.raises(ValidationError) as err:
        with_version(SHIPPED, change)
    assert err.value.location == field and words in err.value.message


def test_stored_audited_and_in_force_for_new_runs(sessions) -> None:
    actor = Actor("oper", "api")
    with sessions() as s, s.begin():
        assert community_tariff(s, "c1", SHIPPED) is SHIPPED  # never changed: the file's
        s.add(
            SettlementRun(
                community="c1", period="2026-08", data_version="v", provisional=False,
                status="posted", tariff_digest=SHIPPED.digest, kind="settle",
            )
        )  # fmt: skip
        s.flush()
        added = add_version(s, "c1", SHIPPED, VersionChange(D(2026, 7, 1), Decimal("0.18")), actor)
        assert added.settled_after == ("2026-08",)  # settled on the old price: to run again
    with sessions() as s:
        now = community_tariff(s, "c1", SHIPPED)
        assert now.digest == added.tariff.digest
        assert now.version_for_day(D(2026, 8, 1)).shared_price["price"] == Decimal("0.18")
        assert community_tariff(s, "c2", SHIPPED) is SHIPPED  # another community: untouched
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "tariff.version")).one()
        assert entry.actor == "oper" and entry.target == "c1"
        assert entry.detail["changed"] == {"shared_price_eur_per_kwh": "0.18"}
        assert entry.detail["previous_digest"] == SHIPPED.digest
    # a second change builds on the stored one, not on the file's
    with sessions() as s, s.begin():
        add_version(
            s,
            "c1",
            SHIPPED,
            VersionChange(D(2026, 10, 1), fixed_fee_eur_per_month=Decimal("2")),
            actor,
        )
    with sessions() as s:
        now = community_tariff(s, "c1", SHIPPED)
        assert _spans(now) == [
            ("2026-01-01", "2026-07-01", "0.15", "1.50"),
            ("2026-07-01", "2026-10-01", "0.18", "1.50"),
            ("2026-10-01", "2027-01-01", "0.18", "2"),
        ]
    # a refused change stores nothing
    with pytest.raises(ValidationError), sessions() as s, s.begin():
        add_version(s, "c1", SHIPPED, VersionChange(D(2030, 1, 1), vat_pct=Decimal("9")), actor)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(CommunityTariff)) == 2

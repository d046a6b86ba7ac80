"""Privacy by design in the core: pseudonymous ids checked at the one writer and at user
creation, consents, and the site manager's view of a person's car."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from energy.errors import ValidationError
from energy.models import AssetKind, ConsentPurpose, Member, MemberKind, Quantity, Role
from energy.privacy import (
    ev_detail_visible,
    find_member,
    give_consent,
    has_consent,
    new_member_ref,
    withdraw_consent,
)
from energy.pseudonyms import name_words
from energy.siteconfig import import_site_file, normalise_iban
from energy.sites import (
    AssetSpec,
    ChannelSpec,
    MemberSpec,
    SiteSpec,
    ensure_asset,
    ensure_channel,
    ensure_member,
    ensure_site,
)
from energy.users import change_role, create_user, user_may_see_asset

ANNA = MemberSpec("m-3a7f01", MemberKind.PERSON, "Anna Bakker", "a.bakker@example.org")
SITE = SiteSpec("zaal", "871685900000000509", 52.9, 6.8, 40, 25)
T0 = dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC)


def test_name_words_fold_accents_and_skip_particles() -> None:
    assert name_words("Fatima El Amrani", "f.elamrani@example.org") == {
        "fatima",
        "amrani",
        "elamrani",
    }
    assert name_words("Jan van der Berg") == {"jan", "berg"}
    assert name_words("Zoë Çelik") == {"zoe", "celik"}


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        (MemberSpec("m-ev-anna", MemberKind.PERSON, "Anna Bakker"), "ref"),
        (MemberSpec("m-bakker-1", MemberKind.PERSON, "Anna Bakker"), "ref"),
        (
            MemberSpec("m-7f3a9c", MemberKind.PERSON, "A. B.", "abakker@x.org", label="ev-bakker"),
            None,
        ),
    ],
)
def test_a_person_ref_with_a_name_is_refused(sessions, spec: MemberSpec, where) -> None:
    with sessions() as s:
        if where is None:  # the e-mail and label words count too, but this ref has none
            assert ensure_member(s, spec).row.ref == "m-7f3a9c"
            return
        with pytest.raises(ValidationError, match="must be pseudonymous") as err:
            ensure_member(s, spec, source="s.yaml", path="members[0]")
        assert str(err.value).startswith("s.yaml:members[0].ref: member ref")
        assert s.scalar(select(Member)) is None


def test_an_organisation_may_keep_its_name_in_the_ref(sessions) -> None:
    with sessions() as s:
        spec = MemberSpec("m-dorpshuis", MemberKind.ORGANISATION, "Dorpshuis De Noaberhof")
        assert ensure_member(s, spec).row.ref == "m-dorpshuis"


def test_asset_names_channel_keys_and_usernames_of_a_person_hold_no_name(sessions) -> None:
    with sessions() as s:
        anna = ensure_member(s, ANNA).row
        site = ensure_site(s, SITE).row
        with pytest.raises(ValidationError, match=r"assets\[2\]\.name: asset name 'ev-anna'"):
            ensure_asset(s, site, AssetSpec("ev-anna", AssetKind.EV, anna.id), path="assets[2]")
        car = ensure_asset(s, site, AssetSpec("ev-1", AssetKind.EV, anna.id)).row
        with pytest.raises(ValidationError, match="channel key 'zaal/bakker/power'"):
            ensure_channel(s, car, ChannelSpec("zaal/bakker/power", Quantity.POWER, "W"))
        assert ensure_channel(s, car, ChannelSpec("zaal/ev-1/power", Quantity.POWER, "W")).row.id
        with pytest.raises(ValidationError, match=r"user:username: username 'anna\.b'"):
            create_user(s, "anna.b", "long-enough-pw", "member", member_ref=ANNA.ref)
        user = create_user(s, "lid-7", "long-enough-pw", "member", member_ref=ANNA.ref)
        oper = create_user(s, "annab", "long-enough-pw", "operator")  # staff: not a member id
        with pytest.raises(ValidationError, match="username 'annab'"):
            change_role(s, oper, "member", member_ref=ANNA.ref)
        change_role(s, user, Role.FIRM, member_ref=ANNA.ref)
        assert user.role is Role.FIRM and user.token_version == 1


def test_site_file_with_a_named_ref_names_file_and_path(sessions, tmp_path) -> None:
    doc = """
site: {name: zaal, ean: "871685900000000509", latitude: 52.9, longitude: 6.8,
       grid_import_limit_kw: 40, grid_export_limit_kw: 25}
members:
  - {ref: m-3a7f01, name: Jan Hofstee, iban: NL02 ABNA 0123 4567 89, licence_plate: x-456-cd, label: ev-jan}
  - {ref: m-ev-anna, name: Anna Bakker}
"""
    f = tmp_path / "s.yaml"
    f.write_text(doc, encoding="utf-8")
    with pytest.raises(ValidationError, match=r"s\.yaml:members\[1\]\.ref: member ref 'm-ev-anna'"):
        import_site_file(f, sessions)
    with sessions() as s:
        assert s.scalar(select(Member)) is None  # one transaction: nothing stored
    f.write_text(doc.replace("m-ev-anna", "m-88c0de"), encoding="utf-8")
    import_site_file(f, sessions)
    with sessions() as s:
        jan = find_member(s, "m-3a7f01").personal
        assert (jan.iban, jan.licence_plate, jan.label) == (
            "NL02ABNA0123456789",
            "X-456-CD",
            "ev-jan",
        )


def test_iban_check_digits() -> None:
    assert normalise_iban("nl91 abna 0417 1643 00") == "NL91ABNA0417164300"
    with pytest.raises(ValueError, match="check digits do not match: 'NL92ABNA0417164300'"):
        normalise_iban("NL92ABNA0417164300")


def test_new_refs_are_opaque_and_unique(sessions) -> None:
    with sessions() as s:
        refs = {new_member_ref(s) for _ in range(50)}
    assert len(refs) == 50 and all(len(r) == 8 and r.startswith("m-") for r in refs)


def test_consent_gives_the_site_manager_the_car_until_withdrawn(sessions) -> None:
    with sessions() as s:
        anna = ensure_member(s, ANNA).row
        site = ensure_site(s, SITE).row
        car = ensure_asset(s, site, AssetSpec("ev-1", AssetKind.EV, anna.id)).row
        pv = ensure_asset(s, site, AssetSpec("pv", AssetKind.PV, anna.id)).row
        mgr = create_user(s, "beheer", "long-enough-pw", "site_manager", site_names=["zaal"])
        oper = create_user(s, "oper", "long-enough-pw", "operator")
        assert not user_may_see_asset(s, mgr, car) and user_may_see_asset(s, mgr, pv)
        assert user_may_see_asset(s, oper, car)
        consent, new = give_consent(s, anna, "ev_detail_site_manager", at=T0)
        assert new and give_consent(s, anna, ConsentPurpose.EV_DETAIL_SITE_MANAGER) == (
            consent,
            False,
        )
        assert ev_detail_visible(s, car) and user_may_see_asset(s, mgr, car)
        assert withdraw_consent(s, anna, "ev_detail_site_manager", at=T0 + dt.timedelta(days=2))
        assert withdraw_consent(s, anna, "ev_detail_site_manager") is None
        assert not has_consent(s, anna.id, ConsentPurpose.EV_DETAIL_SITE_MANAGER)
        assert not user_may_see_asset(s, mgr, car)
        give_consent(s, anna, "ev_detail_site_manager", at=T0 + dt.timedelta(days=3))
        assert [(c.given_at.day, c.withdrawn_at and c.withdrawn_at.day) for c in anna.consents] == [
            (1, 3),
            (4, None),
        ]  # the history stays: a new row after a withdrawal
        with pytest.raises(ValidationError, match="consent:purpose: must be one of"):
            give_consent(s, anna, "marketing")


def test_erasure_renames_ids_written_before_the_check(sessions) -> None:
    from energy.privacy import erase_core

    with sessions() as s:
        anna = ensure_member(s, ANNA).row
        site = ensure_site(s, SITE).row
        car = ensure_asset(s, site, AssetSpec("ev-1", AssetKind.EV, anna.id)).row
        ch = ensure_channel(s, car, ChannelSpec("zaal/ev-1/power", Quantity.POWER, "W")).row
        car.name, ch.key = "ev-anna", "zaal/ev-anna/power"  # as an older release stored them
        s.flush()
        report = erase_core(s, anna, at=T0)
        assert (report.assets_renamed, report.channels_renamed) == ([car.id], [ch.id])
        assert car.name == f"ev-{car.id}" and ch.key == f"zaal/ev-{car.id}/power-{ch.id}"
        assert report.personal_deleted and anna.erased_at == T0 and anna.personal is None
        again = erase_core(s, anna)
        assert not again.personal_deleted and again.assets_renamed == []

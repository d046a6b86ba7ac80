"""``noaber member set-iban``: a member's IBAN, BIC and direct-debit mandate, on SQLite and
PostgreSQL: checked (ISO 13616 mod 97 by a hand-worked example), stored in personal data only,
audited by field name (never the value), and a bad value changes nothing."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from energy.audit import verify as verify_audit
from energy.models import AuditEntry, Member
from energy.sites import MemberSpec, ensure_member
from tests.noaber.test_privacy import cli  # noqa: F401  (the in-process CLI fixture)

# ISO 13616 by hand: NL91ABNA0417164300 -> ABNA0417164300NL91 -> letters as numbers
# (A=10, B=11, N=23, L=21): 10112310 0417164300 2321 91 -> mod 97 = 1 (valid); the same
# account with check digits 92 gives mod 97 = 2 (invalid).
GOOD = "NL91 ABNA 0417 1643 00"
BAD_CHECK = "NL92ABNA0417164300"


def _member(sessions, ref: str = "m-3c9e21", name: str | None = "Sanne de Vries") -> None:
    with sessions() as s, s.begin():
        ensure_member(s, MemberSpec(ref, name=name))


def _personal(sessions, ref: str = "m-3c9e21"):
    with sessions() as s:
        p = s.scalar(select(Member).where(Member.ref == ref)).personal
        return None if p is None else (p.iban, p.bic, p.sepa_mandate_id, p.sepa_mandate_date)


def test_set_iban_stores_and_audits_by_field(sessions, cli) -> None:  # noqa: F811
    _member(sessions)
    out = cli("--as", "beheer", "member", "set-iban", "m-3c9e21", GOOD, "--bic", "abnanl2a")
    assert out.exit_code == 0 and "iban, bic set" in out.output, out.output
    assert _personal(sessions) == ("NL91ABNA0417164300", "ABNANL2A", None, None)
    again = cli("member", "set-iban", "m-3c9e21", "NL91ABNA0417164300")
    assert again.exit_code == 0 and "unchanged" in again.output
    signed = cli(
        "member",
        "set-iban",
        "m-3c9e21",
        GOOD,
        "--mandate-id",
        "NB-MANDAAT-0007",
        "--mandate-date",
        "2026-09-30",
    )
    assert signed.exit_code == 0 and "sepa_mandate_id, sepa_mandate_date set" in signed.output
    assert _personal(sessions)[2:] == ("NB-MANDAAT-0007", dt.date(2026, 9, 30))
    with sessions() as s:
        entries = list(s.scalars(select(AuditEntry).where(AuditEntry.target == "m-3c9e21")))
        assert [e.action for e in entries] == ["member.update", "member.update"]
        assert entries[0].actor == "beheer"
        assert entries[0].detail == {"fields": ["iban", "bic"]}
        # the log holds field names, never the account
        assert not any("ABNA" in str(e.detail) or "0417" in str(e.detail) for e in entries)
        n, problems = verify_audit(s)
        assert n == 2 and not problems


def test_bad_values_name_the_member_and_change_nothing(sessions, cli) -> None:  # noqa: F811
    _member(sessions)
    assert cli("member", "set-iban", "m-3c9e21", GOOD).exit_code == 0
    before = _personal(sessions)
    cases = {
        (BAD_CHECK,): "member m-3c9e21:iban: IBAN check digits do not match",
        ("NL91ABNA04",): "member m-3c9e21:iban: not an IBAN",
        (GOOD, "--bic", "ABN"): "member m-3c9e21:bic: not a BIC",
        (GOOD, "--mandate-id", "M-1"): "member m-3c9e21:mandate_date: a direct-debit mandate",
        (GOOD, "--mandate-id", "M-1", "--mandate-date", "2026-13-01"): "not a date",
        (GOOD, "--mandate-id", "M\u00e9-1", "--mandate-date", "2026-01-01"): "mandate_id",
        (GOOD, "--mandate-id", "M-1", "--mandate-date", "2999-01-01"): "in the future",
    }
    for args, message in cases.items():
        out = cli("member", "set-iban", "m-3c9e21", *args)
        assert out.exit_code == 1 and message in out.output, (args, out.output)
    assert _personal(sessions) == before
    missing = cli("member", "set-iban", "m-nobody", GOOD)
    assert missing.exit_code == 1 and "no member 'm-nobody'" in missing.output
    _member(sessions, "m-5d0b77", name=None)  # a pseudonymous member without personal data
    bare = cli("member", "set-iban", "m-5d0b77", GOOD)
    assert bare.exit_code == 1 and "m-5d0b77 has no personal data" in bare.output
    assert _personal(sessions, "m-5d0b77") is None

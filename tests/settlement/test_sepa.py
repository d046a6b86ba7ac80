"""SEPA payment runs (issue 13, point 6) on SQLite and PostgreSQL: files valid against the
ISO 20022 XSDs (checked here with ``xmlschema`` on the schema files, apart from the export's
own check), amounts equal to the statements, recorded in the ledger, never made twice."""

from __future__ import annotations

import datetime as dt
import functools
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import sepaxml
import xmlschema
from sqlalchemy import func, select

from energy.errors import NoaberError, ValidationError
from energy.models import Member, MemberPersonal
from settlement import ledger
from settlement.audit import reconcile
from settlement.community import parse_community
from settlement.models import PaymentRun, Transfer
from settlement.sepa import bank_account, outstanding_cents, payment_run, write_files
from settlement.settle import post_run
from settlement.statements import find_statement, member_totals, statement_data
from tests.settlement.conftest import COMMUNITY, make_plan

SCHEMAS = Path(sepaxml.__file__).parent / "schemas"
BANK = {
    "name": "Dorpshuis Test Energie",
    "iban": "NL91 ABNA 0417 1643 00",
    "bic": "ABNANL2A",
    "creditor_id": "NL98ZZZ999999999999",
}
IBANS = {
    "m-pv01": "NL20INGB0001234567",
    "m-dh01": "NL39RABO0300065264",
    "m-ev01": "DE89370400440532013000",
    "m-cl01": "NL02ABNA0123456789",
}
WHEN = dt.date(2026, 11, 10)


@functools.cache
def _xsd(schema: str) -> xmlschema.XMLSchema:
    """The ISO 20022 schema shipped with ``sepaxml`` (parsed once: it takes about a second)."""
    return xmlschema.XMLSchema(SCHEMAS / f"{schema}.xsd")


def _community():
    return parse_community({**COMMUNITY, "payments": BANK}, "test-community")


def _bank_data(sessions, skip: str | None = None) -> None:
    with sessions() as s, s.begin():
        for ref, iban in IBANS.items():
            if ref == skip:
                continue
            p = s.scalars(select(MemberPersonal).join(Member).where(Member.ref == ref)).one()
            p.iban = iban
            p.sepa_mandate_id = f"MANDATE-{ref}"
            p.sepa_mandate_date = dt.date(2026, 1, 15)


def _ns(schema: str) -> dict[str, str]:
    return {"p": f"urn:iso:std:iso:20022:tech:xsd:{schema}"}


def test_payment_run_files_validate_and_the_ledger_shows_it(sessions, tmp_path):
    post_run(sessions, make_plan())
    _bank_data(sessions)
    with sessions() as s:
        owed = outstanding_cents(s, "dorp-test", "2026-10")
        # a second method: the members' statement totals
        assert owed == {k: v for k, v in member_totals(s, "dorp-test", "2026-10").items() if v}
        n_before = s.scalar(select(func.count()).select_from(Transfer))
    assert any(v > 0 for v in owed.values()) and any(v < 0 for v in owed.values())

    result = payment_run(sessions, _community(), "2026-10", WHEN)
    paths = write_files(result, tmp_path, "dorp-test-2026-10")
    assert [p.name for p in paths] == [
        "dorp-test-2026-10-pain.001.001.03.xml",
        "dorp-test-2026-10-pain.008.001.02.xml",
    ]
    for path, schema in zip(paths, ("pain.001.001.03", "pain.008.001.02")):
        _xsd(schema).validate(str(path))  # raises on an invalid file
        root = ET.parse(path).getroot()
        ns = _ns(schema)
        amounts = root.findall(".//p:InstdAmt", ns)
        ibans = [e.text for e in root.findall(".//p:CdtrAcct/p:Id/p:IBAN", ns)]
        ibans += [e.text for e in root.findall(".//p:DbtrAcct/p:Id/p:IBAN", ns)]
        want = {r: v for r, v in owed.items() if (v > 0) == (schema.startswith("pain.001"))}
        cents = sorted(round(float(a.text) * 100) for a in amounts)
        assert cents == sorted(abs(v) for v in want.values())
        assert root.find(".//p:GrpHdr/p:NbOfTxs", ns).text == str(len(want))
        # the community's own account is the other side of every transaction
        assert set(ibans) == {IBANS[r] for r in want} | {"NL91ABNA0417164300"}
        if schema.startswith("pain.008"):
            assert {e.text for e in root.findall(".//p:MndtId", ns)} == {
                f"MANDATE-{r}" for r in want
            }
    with sessions() as s:
        assert outstanding_cents(s, "dorp-test", "2026-10") == {}
        bank = ledger.balances(s, "cents", [bank_account("dorp-test")])[bank_account("dorp-test")]
        assert bank == sum(owed.values())  # paid out minus collected
        assert ledger.verify(s).ok
        assert reconcile(s, "dorp-test", "2026-10").ok
        st = statement_data(s, find_statement(s, "m-dh01", "2026-10").id)
        assert st.total.net_cents == owed["m-dh01"]  # the statement still shows what was settled
        n_after = s.scalar(select(func.count()).select_from(Transfer))
        assert n_after == n_before + len(owed)

    with pytest.raises(NoaberError, match="not made twice"):
        payment_run(sessions, _community(), "2026-10", WHEN)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Transfer)) == n_after
        assert s.scalar(select(func.count()).select_from(PaymentRun)) == 1


def test_a_member_without_iban_is_named_and_nothing_is_paid(sqlite_sessions):
    post_run(sqlite_sessions, make_plan())
    _bank_data(sqlite_sessions, skip="m-cl01")
    with pytest.raises(ValidationError, match="member m-cl01: no valid IBAN"):
        payment_run(sqlite_sessions, _community(), "2026-10", WHEN)
    with sqlite_sessions() as s:
        assert s.scalar(select(func.count()).select_from(PaymentRun)) == 0
        assert not s.scalars(select(Transfer).where(Transfer.code == "payout")).first()
    with pytest.raises(NoaberError, match="not settled"):
        payment_run(sqlite_sessions, _community(), "2026-11", WHEN)


def test_the_xsd_check_is_not_a_formality(tmp_path):
    """The schema refuses a file with a broken IBAN (so the validations above can fail)."""
    good = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"><CstmrCdtTrfInitn>'
        "<GrpHdr><MsgId>X</MsgId><CreDtTm>2026-11-10T10:00:00</CreDtTm><NbOfTxs>1</NbOfTxs>"
        "<InitgPty><Nm>A</Nm></InitgPty></GrpHdr>"
        "<PmtInf><PmtInfId>P</PmtInfId><PmtMtd>TRF</PmtMtd><ReqdExctnDt>2026-11-10</ReqdExctnDt>"
        "<Dbtr><Nm>A</Nm></Dbtr><DbtrAcct><Id><IBAN>{iban}</IBAN></Id></DbtrAcct>"
        "<DbtrAgt><FinInstnId><BIC>ABNANL2A</BIC></FinInstnId></DbtrAgt>"
        "<CdtTrfTxInf><PmtId><EndToEndId>E</EndToEndId></PmtId>"
        '<Amt><InstdAmt Ccy="EUR">1.00</InstdAmt></Amt><Cdtr><Nm>B</Nm></Cdtr>'
        "<CdtrAcct><Id><IBAN>NL20INGB0001234567</IBAN></Id></CdtrAcct></CdtTrfTxInf>"
        "</PmtInf></CstmrCdtTrfInitn></Document>"
    )
    xsd = _xsd("pain.001.001.03")
    xsd.validate(good.format(iban="NL91ABNA0417164300"))
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        xsd.validate(good.format(iban="nl91 abna"))


def test_a_correction_of_a_paid_month_is_paid_with_the_next_run(sqlite_sessions):
    from settlement.community import MeterData
    from tests.settlement.conftest import meter_data

    post_run(sqlite_sessions, make_plan())
    _bank_data(sqlite_sessions)
    payment_run(sqlite_sessions, _community(), "2026-10", WHEN)
    with sqlite_sessions() as s:
        paid_oct = member_totals(s, "dorp-test", "2026-10")
    d = meter_data()
    off = d.offtake_wh.copy()
    off[1000:1100, 1] += 300  # October corrected after it was paid
    post_run(sqlite_sessions, make_plan(data=MeterData(d.isps, d.members, off, d.injection_wh)))
    post_run(sqlite_sessions, make_plan("2026-11", meter_data("2026-11")))
    with sqlite_sessions() as s:
        oct_now = member_totals(s, "dorp-test", "2026-10")
        nov = member_totals(s, "dorp-test", "2026-11")
        owed = outstanding_cents(s, "dorp-test", "2026-11")
    assert oct_now != paid_oct
    expect = {r: nov[r] + oct_now[r] - paid_oct[r] for r in nov}
    assert owed == {r: v for r, v in expect.items() if v}
    with pytest.raises(NoaberError, match="not made twice"):
        payment_run(sqlite_sessions, _community(), "2026-10", WHEN)
    result = payment_run(sqlite_sessions, _community(), "2026-11", dt.date(2026, 12, 10))
    got = {p.member_ref: p.amount_cents for p in result.payouts}
    got |= {p.member_ref: -p.amount_cents for p in result.collections}
    assert got == owed

"""A charge point id belongs to one site (``ocpp_charge_points``), on SQLite and PostgreSQL:
the site import validates the ``ocpp:`` section (unknown asset, duplicate ids, bad limits,
unknown fields: an error naming the field, nothing stored) and binds its ids; an id bound to
another site is refused on import, and a charger booting with it at another site's central
system is Rejected and audited."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from energy.audit import Actor, entries
from energy.chargepoints import OcppChargePoint, bound_site
from energy.errors import ValidationError
from energy.models import Site
from energy.samples import SampleStore
from energy.siteconfig import import_site, parse_site_document
from modbus_gateway.ocpp.sim import SimulatedCharger
from noaber.services.ocpp import OcppService, ocpp_site
from tests.net import scaled

SITE = Path(__file__).parents[1] / "data" / "ocpp" / "site_ocpp.yaml"
OTHER_EAN = "871685900000000028"


def _doc(**cp) -> dict:
    data = yaml.safe_load(SITE.read_text())
    data["ocpp"]["charge_points"][0].update(cp)
    return data


def _other(cp_id: str | None = "CP-1") -> dict:
    """A second site (its own name and EAN) whose section lists ``cp_id`` (None: no ocpp:)."""
    data = _doc()
    data["site"].update(name="sportclub-ocpp", ean=OTHER_EAN)
    if cp_id is None:
        del data["ocpp"]
    else:
        data["ocpp"]["charge_points"][0]["id"] = cp_id
    return data


def _import(sessions, data: dict, source: str = "site.yaml"):
    doc = parse_site_document(data, source)
    with sessions.begin() as session:
        return import_site(session, doc, source)


def _sites(sessions) -> list[str]:
    with sessions() as s:
        return sorted(s.scalars(select(Site.name)))


def _bindings(sessions) -> dict[str, str]:
    with sessions() as s:
        rows = s.execute(
            select(OcppChargePoint.charge_point_id, Site.name).join(
                Site, Site.id == OcppChargePoint.site_id
            )
        ).all()
    return dict(rows)


@pytest.mark.parametrize(
    ("change", "location", "words"),
    [
        (lambda d: d["ocpp"]["charge_points"][0].update(asset="ev-9"),
         "ocpp.charge_points[0].asset", "unknown asset 'ev-9'"),
        (lambda d: d["ocpp"]["charge_points"].append(
            {**d["ocpp"]["charge_points"][0], "asset": "ev-2"}),
         "ocpp.charge_points[1].id", "duplicate charge point id 'CP-1'"),
        (lambda d: d["ocpp"]["charge_points"][0].update(
            limits={"power_w_min": 5000, "power_w_max": 3000}),
         "ocpp.charge_points[0].limits", "power_w_min 5000 W is above power_w_max 3000 W"),
        (lambda d: d["ocpp"]["charge_points"][0].update(limits={"power_w_min": 20000}),
         "ocpp.charge_points[0].limits", "leave no setpoint"),
        (lambda d: d["ocpp"]["charge_points"][0].update(max_power_w=-5),
         "ocpp.charge_points[0].max_power_w", "greater than 0"),
        (lambda d: d["ocpp"]["charge_points"][0].update(id="CP 1/x"),
         "ocpp.charge_points[0].id", "should match pattern"),
        (lambda d: d["ocpp"]["charge_points"][0].update(colour="red"),
         "ocpp.charge_points[0].colour", "unknown field"),
        (lambda d: d["ocpp"]["charge_points"][0].update(fallback_power_w=9000),
         "ocpp.charge_points[0].fallback_power_w", "above the site's bound"),
    ],
)  # fmt: skip
def test_a_bad_ocpp_section_is_refused_naming_the_field_and_nothing_is_stored(
    sessions, change, location, words
):
    data = _doc()
    data["assets"].append(copy.deepcopy(data["assets"][0]) | {"name": "ev-2"})
    change(data)
    with pytest.raises(ValidationError) as err:
        _import(sessions, data)
    assert err.value.location == location, str(err.value)
    assert words in str(err.value) and "site.yaml" in str(err.value)
    assert _sites(sessions) == [] and _bindings(sessions) == {}


def test_a_charge_point_id_is_bound_to_one_site(sessions):
    res = _import(sessions, _doc())
    assert res.created["ocpp_charge_points"] == 1
    assert _bindings(sessions) == {"CP-1": "dorpshuis-ocpp"}
    assert not _import(sessions, _doc()).changed  # the same file again changes nothing

    # another site listing the same id: refused, naming the field; nothing of it stored
    with pytest.raises(ValidationError) as err:
        _import(sessions, _other("CP-1"), "other.yaml")
    assert err.value.location == "ocpp.charge_points[0].id"
    assert "bound to site 'dorpshuis-ocpp'" in str(err.value) and "other.yaml" in str(err.value)
    assert _sites(sessions) == ["dorpshuis-ocpp"]
    assert _bindings(sessions) == {"CP-1": "dorpshuis-ocpp"}

    # the first site drops the charger (its ocpp: section goes): the id is free again
    first = _doc()
    del first["ocpp"]
    assert _import(sessions, first).updated["ocpp_charge_points"] == 1
    assert _bindings(sessions) == {}
    _import(sessions, _other("CP-1"), "other.yaml")
    assert _bindings(sessions) == {"CP-1": "sportclub-ocpp"}
    with sessions() as s:
        assert bound_site(s, "CP-1") == "sportclub-ocpp" and bound_site(s, "CP-9") is None
        assert s.scalar(select(func.count()).select_from(OcppChargePoint)) == 1


async def test_a_charger_bound_to_another_site_is_rejected_at_boot_and_audited(
    engine, sessions, tmp_path
):
    _import(sessions, _doc())  # CP-1 belongs to dorpshuis-ocpp
    _import(sessions, _other(None), "other.yaml")  # the sports club, without chargers
    # the sports club's file now lists CP-1 (edited, not imported): its central system must
    # not take the charger of the dorpshuis
    doc = parse_site_document(_other("CP-1"), "other.yaml")
    service = OcppService(
        ocpp_site(doc, "other.yaml"),
        engine,
        SampleStore(tmp_path / "samples"),
        tmp_path / "spool.sqlite",
        Actor("installer", "cli"),
        flush_interval_s=0.05,
    )
    port = await service.start("127.0.0.1", 0)
    sim = SimulatedCharger(f"ws://127.0.0.1:{port}", "CP-1", "2.0.1", meter_interval_s=0.05)
    task = asyncio.create_task(sim.run())
    try:
        await asyncio.wait_for(sim.booted.wait(), scaled(10))
        assert sim.boot_status == "Rejected"
        why = dict(service.central.rejected)["CP-1"]
        assert why == "charge point id bound to site 'dorpshuis-ocpp', not 'sportclub-ocpp'"
        assert not service.central.chargers["CP-1"].accepted
        with sessions() as s:
            audit = entries(s, action="ocpp.boot_rejected")
        assert [(e.target, e.actor) for e in audit] == [("sportclub-ocpp/CP-1", "installer")]
        assert audit[0].detail["why"] == why
    finally:
        sim.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, scaled(10))
        await service.stop()
        service.close()

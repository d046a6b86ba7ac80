"""Site descriptions: precise errors, idempotent import, bad files change nothing."""

from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from energy.errors import ValidationError
from energy.models import Asset, Channel, Community, Device, Member, MemberPersonal, Site
from energy.siteconfig import (
    ean_check_digit_ok,
    import_site,
    import_site_file,
    load_site_file,
    load_site_text,
)

DEMO = Path(__file__).parents[2] / "noaber" / "services" / "demo" / "data" / "demo_site.yaml"


def _counts(session) -> dict[str, int]:
    return {
        m.__name__: session.scalar(select(func.count()).select_from(m))
        for m in (Site, Asset, Device, Channel, Member, MemberPersonal, Community)
    }


def test_import_is_idempotent(sessions):
    first = import_site_file(DEMO, sessions)
    assert first.created["sites"] == 1 and first.created["channels"] == 13
    with sessions() as s:
        before = _counts(s)
    again = import_site_file(DEMO, sessions)
    assert not again.changed
    assert again.channel_ids == first.channel_ids
    with sessions() as s:
        assert _counts(s) == before
        site = s.scalar(select(Site).where(Site.name == "dorpshuis-noaberhof"))
        assert site.grid_import_limit_kw == 40 and site.community.name == "energie-exloo"
        anna = s.scalar(select(Member).where(Member.ref == "m-4c1e7a"))
        assert anna.personal.name == "Anna Bakker"


def test_change_in_file_updates_in_place(sessions, tmp_path):
    import_site_file(DEMO, sessions)
    doc = yaml.safe_load(DEMO.read_text())
    doc["site"]["grid_import_limit_kw"] = 55
    f = tmp_path / "site.yaml"
    f.write_text(yaml.safe_dump(doc))
    res = import_site_file(f, sessions)
    assert res.updated == {"sites": 1} and not res.created
    with sessions() as s:
        assert s.scalar(select(Site.grid_import_limit_kw)) == 55


@pytest.mark.parametrize(
    ("mutate", "location", "message"),
    [
        (
            lambda d: d["site"].update(grid_import_limit_kw=-5),
            "site.grid_import_limit_kw",
            "greater than 0",
        ),
        (lambda d: d["site"].update(ean="871685900000000012"), "site.ean", "check digit"),
        (lambda d: d["assets"][1].update(kind="windmill"), "assets[1].kind", "windmill"),
        (lambda d: d["assets"][0]["channels"][1].update(unit="MW"), "assets[0].channels[1]", "MW"),
        (
            lambda d: d["assets"][0]["channels"][0].update(device="nope"),
            "",
            "unknown device 'nope'",
        ),
        (lambda d: d["site"].pop("ean"), "site.ean", "required field is missing"),
        (lambda d: d["site"].update(colour="green"), "site.colour", "unknown field"),
        (lambda d: d["site"].update(timezone="Mars/Olympus"), "site.timezone", "unknown timezone"),
    ],
)
def test_errors_name_file_path_and_value(tmp_path, mutate, location, message):
    doc = yaml.safe_load(DEMO.read_text())
    mutate(doc)
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(doc))
    with pytest.raises(ValidationError) as err:
        load_site_file(f)
    text = str(err.value)
    assert str(f) in text and location in text and message in text


def test_malformed_yaml_names_line():
    with pytest.raises(
        ValidationError, match=r"x.yaml:line 4, column 1: malformed YAML.*started at line 3"
    ):
        load_site_text("site:\n  name: a\n  ean: [1, 2\n", "x.yaml")


def test_unknown_owner_in_store_rolls_back_everything(sessions, tmp_path):
    import_site_file(DEMO, sessions)
    with sessions() as s:
        before = _counts(s)
    doc = yaml.safe_load(DEMO.read_text())
    doc["site"]["name"] = "school-b"
    doc["site"]["ean"] = "871685900000000035"
    doc["members"] = []
    doc["community"] = None
    doc["assets"][2]["owner"] = "m-nobody"
    f = tmp_path / "school.yaml"
    f.write_text(yaml.safe_dump(doc))
    with pytest.raises(ValidationError, match=r"assets\[2\]\.owner: unknown member 'm-nobody'"):
        import_site_file(f, sessions)
    with sessions() as s:
        assert _counts(s) == before


def test_ean_clash_is_refused(sessions):
    import_site_file(DEMO, sessions)
    doc = load_site_text(
        DEMO.read_text().replace("dorpshuis-noaberhof", "other-site"), "clash.yaml"
    )
    with pytest.raises(ValidationError, match="already belongs to site 'dorpshuis-noaberhof'"):
        with sessions() as s, s.begin():
            import_site(s, doc, "clash.yaml")


def test_ean_check_digit():
    assert ean_check_digit_ok("871685900000000011")
    assert not ean_check_digit_ok("871685900000000012")
    assert not ean_check_digit_ok("87168590000000001")


def test_channel_gap_rule_from_the_file_reaches_the_store(sessions, tmp_path):
    doc = yaml.safe_load(DEMO.read_text())
    doc["assets"][0]["channels"][0]["max_gap_s"] = 900
    f = tmp_path / "site.yaml"
    f.write_text(yaml.safe_dump(doc))
    res = import_site_file(f, sessions)
    with sessions() as s:
        gaps = dict(s.execute(select(Channel.id, Channel.max_gap_s)).tuples().all())
    first = doc["assets"][0]
    key = next(k for k, i in res.channel_ids.items() if gaps[i] is not None)
    assert gaps[res.channel_ids[key]] == 900
    assert key.split("/")[1] == first["name"]
    assert sum(g is not None for g in gaps.values()) == 1

    doc["assets"][0]["channels"][0]["max_gap_s"] = 0
    f.write_text(yaml.safe_dump(doc))
    with pytest.raises(ValidationError) as err:
        load_site_file(f)
    assert "assets[0].channels[0].max_gap_s" in str(err.value)
    assert "greater than 0" in str(err.value)

"""No English on Dutch pages: every string of every page template (and the strings the
routers translate) has a Dutch translation in its package's catalogue or energy's.

The msgids are extracted with Babel's Jinja2 extractor (``jinja2.ext.babel_extract``) from
each package's ``templates/`` and with Babel's Python extractor from ``noaber/api``; the
strings the routers pass to ``gettext`` from tables (error titles, role and task labels,
form field labels, refusal templates) are added from those tables.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from energy.audit import ACTIONS
from energy.models import AssetKind, MemberKind, Quantity
from energy.sitecontrols import ControlError

#: Packages whose templates are served as pages, and the catalogue each one's strings use.
PAGE_PACKAGES = ("energy", "noaber.api", "optimizer", "settlement", "meetkoffer")
JINJA = {"**/templates/**.html": "jinja2"}
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2)}


def _catalogue(package: str, locale: str):
    po = resources.files(package) / "locale" / locale / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as fh:
        return read_po(fh, locale=locale)


def template_msgids(package: str) -> set[str]:
    root = Path(str(resources.files(package)))
    ids: set[str] = set()
    for _file, _line, message, _comments, _ctx in extract_from_dir(
        root,
        method_map=[("templates/**.html", "jinja2")],
        options_map={"templates/**.html": {"extensions": "jinja2.ext.i18n"}},
        keywords=KEYWORDS,
    ):
        ids.add(message[0] if isinstance(message, tuple) else message)
    return ids


def router_msgids() -> set[str]:
    """Strings :mod:`noaber.api` translates out of tables."""
    from noaber.api.language import ROLE_LABELS, ROLE_NAV
    from noaber.api.routers.my import SESSION_FIELDS
    from noaber.api.routers.operator import FORM_ERRORS, MEMBER_LABELS
    from noaber.api.routers.pages import ERROR_TITLES, GROUP_STYLE

    ids = set(ERROR_TITLES.values()) | set(ROLE_LABELS.values()) | set(SESSION_FIELDS.values())
    ids |= {label for nav in ROLE_NAV.values() for _href, label in nav}
    ids |= {label for label, _colour in GROUP_STYLE.values()}
    ids |= {msgid for _field, _part, msgid in FORM_ERRORS} | set(MEMBER_LABELS.values())
    from noaber.api.routers import tariffs

    ids |= set(tariffs.LABELS.values()) | set(tariffs.ERRORS.values())
    ids |= {"queued", "running", "done", "failed"}  # a job's state (job.html)
    # slugs shown by their display name (``_(site.kind)``, ``_(asset.kind.value)``, ...)
    ids |= {k.value for k in AssetKind} | {q.value for q in Quantity}
    ids |= {k.value for k in MemberKind} | {"posted", "pending", "voided"} | set(ACTIONS)
    ids |= {"dorpshuis", "factory"}
    root = Path(str(resources.files("noaber.api")))
    for _file, _line, message, _comments, _ctx in extract_from_dir(
        root,
        # pages.py picks its login messages with conditional expressions (which the Python
        # extractor joins into one string); they are checked by the login tests
        method_map=[("routers/pages.py", "ignore"), ("**.py", "python")],
        keywords={"gettext": (2,), "_t": (2,)},
    ):
        ids.add(message if isinstance(message, str) else message[0])
    return ids


def control_templates() -> set[str]:
    """The refusal templates of :mod:`energy.sitecontrols` (shown translated on forms)."""
    import ast

    src = Path(str(resources.files("energy"))) / "sitecontrols.py"
    out = set()
    for node in ast.walk(ast.parse(src.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "_bad":
            arg = node.args[1]
            if isinstance(arg, ast.Constant):
                out.add(arg.value)
            elif isinstance(arg, ast.JoinedStr):  # pragma: no cover - refused below
                out.add("<f-string>")
    return out


def _untranslated(package: str, ids: set[str]) -> list[str]:
    own, core = _catalogue(package, "nl"), _catalogue("energy", "nl")
    return sorted(
        i
        for i in ids
        if i and not any((m := c.get(i)) is not None and m.string for c in (own, core))
    )


@pytest.mark.parametrize("package", PAGE_PACKAGES)
def test_every_page_string_has_a_dutch_translation(package) -> None:
    ids = template_msgids(package)
    if package == "noaber.api":
        ids |= router_msgids() | control_templates()
    assert ids, f"no strings extracted from {package}: the extraction is broken"
    assert _untranslated(package, ids) == []


def test_refusals_are_templates() -> None:
    templates = control_templates()
    assert "<f-string>" not in templates and len(templates) >= 12
    err = ControlError("soc_min_pct", "got {value:g}", "src", value=12.5)
    assert err.message == "got 12.5" and err.location == "soc_min_pct"

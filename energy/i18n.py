"""Translatable pages, statements and reports: Jinja2 with Babel catalogues, locale formatting.

Each package keeps its templates in ``<package>/templates/`` and its catalogues in
``<package>/locale/<locale>/LC_MESSAGES/messages.po``. Catalogues are read at run time with
Babel (no compile step), Dutch is the default for members and volunteers, and numbers, dates
and money follow the reader's locale (``€ 1.234,56`` in Dutch, Europe/Amsterdam time).
"""

from __future__ import annotations

import datetime as dt
import gettext
import io
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Any

import jinja2
from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import (
    NumberPattern,
    format_currency,
    format_decimal,
    format_percent,
    parse_pattern,
)

from energy.timegrid import LOCAL_TZ

SUPPORTED_LOCALES = ("nl", "en")
DEFAULT_LOCALE = "nl"
_BABEL_LOCALE = {"nl": "nl_NL", "en": "en_GB"}


@dataclass(frozen=True)
class LangLink:
    """One language of the switch: its code, how it names itself, the page in it."""

    code: str
    label: str
    href: str
    current: bool


@dataclass(frozen=True)
class NavLink:
    """A link of the page header (the user's tasks)."""

    href: str
    label: str
    current: bool = False


@dataclass(frozen=True)
class PageChrome:
    """What the header of a served page shows: the language switch and, when signed in, the
    user's name and role, their task links and the sign-out form (with its ``csrf`` token).

    Set per request by the application (``noaber.api.language.PageChromeMiddleware``) in
    :data:`PAGE_CHROME`; ``noaber_base.html`` reads it through the ``chrome()`` global. A
    document rendered outside a request (a PDF, a report file) has none and shows no header
    controls.
    """

    locale: str
    langs: tuple[LangLink, ...] = ()
    user_name: str | None = None
    role_label: str | None = None
    nav: tuple[NavLink, ...] = ()
    csrf: str | None = None


#: The header of the page being served (None outside a request).
PAGE_CHROME: ContextVar[PageChrome | None] = ContextVar("noaber_page_chrome", default=None)
#: Or what makes it, called only when a page shows the header (a JSON answer never needs the
#: header, so it need not look up the user for it); the caller makes it keep its result.
PAGE_CHROME_SOURCE: ContextVar[Callable[[], PageChrome | None] | None] = ContextVar(
    "noaber_page_chrome_source", default=None
)


def page_chrome() -> PageChrome | None:
    """The header of the page being served: :data:`PAGE_CHROME`, else the result of
    :data:`PAGE_CHROME_SOURCE`; None outside a request (templates' ``chrome()``)."""
    chrome = PAGE_CHROME.get()
    if chrome is None:
        source = PAGE_CHROME_SOURCE.get()
        if source is not None:
            chrome = source()
    return chrome


def _check_locale(locale: str) -> str:
    if locale not in SUPPORTED_LOCALES:
        raise ValueError(f"locale must be one of {', '.join(SUPPORTED_LOCALES)}, got {locale!r}")
    return locale


@lru_cache(maxsize=64)
@lru_cache(maxsize=32)
def translations(package: str, locale: str) -> gettext.NullTranslations:
    """The gettext translations of ``package`` for ``locale`` (``energy``'s as fallback).

    Kept per (package, locale) once read: parsing the ``.po`` catalogues took longer than
    rendering a page. The result is shared; callers only read it (``gettext``).
    """
    _check_locale(locale)
    result: gettext.NullTranslations | None = None
    for pkg in dict.fromkeys((package, "energy")):
        try:
            po = resources.files(pkg) / "locale" / locale / "LC_MESSAGES" / "messages.po"
            if not po.is_file():
                continue
            with po.open("rb") as fh:
                catalog = read_po(fh, locale=_BABEL_LOCALE[locale])
        except ModuleNotFoundError:
            continue
        buf = io.BytesIO()
        write_mo(buf, catalog)
        buf.seek(0)
        t = gettext.GNUTranslations(buf)
        if result is None:
            result = t
        else:
            result.add_fallback(t)
    return result or gettext.NullTranslations()


@lru_cache(maxsize=8)
def _babel_locale(locale: str) -> Locale:
    """Babel's parsed locale of ``nl``/``en``, kept (parsing it again took most of a number's
    formatting time on a page)."""
    return Locale.parse(_BABEL_LOCALE[_check_locale(locale)])


@lru_cache(maxsize=64)
def _number_pattern(fmt: str) -> NumberPattern:
    """Babel's parsed number pattern ``fmt``, kept (what ``format_decimal`` parses per call)."""
    return parse_pattern(fmt)


def format_money_cents(cents: int, locale: str = DEFAULT_LOCALE) -> str:
    """Integer euro cents as money in the locale: ``123456`` -> ``€ 1.234,56`` (nl)."""
    return format_currency(
        Decimal(int(cents)) / 100, "EUR", locale=_BABEL_LOCALE[_check_locale(locale)]
    )


def format_number(
    value: float | int | Decimal | None, decimals: int = 0, locale: str = DEFAULT_LOCALE
) -> str:
    """A number with grouping and a fixed number of decimals in the locale (``1.234,5``)."""
    if value is None:
        return "–"
    fmt = "#,##0" + ("." + "0" * decimals if decimals > 0 else "")
    return format_decimal(value, format=_number_pattern(fmt), locale=_babel_locale(locale))


def format_kwh(
    energy_wh: float | int | None, decimals: int = 1, locale: str = DEFAULT_LOCALE
) -> str:
    """Energy given in Wh, shown in kWh: ``1234.5`` -> ``1,2 kWh`` (nl)."""
    if energy_wh is None:
        return "–"
    return f"{format_number(Decimal(str(energy_wh)) / 1000, decimals, locale)} kWh"


def format_pct(share: float | None, decimals: int = 1, locale: str = DEFAULT_LOCALE) -> str:
    """A share (0..1) as a percentage: ``0.125`` -> ``12,5%``."""
    if share is None:
        return "–"
    fmt = "#,##0" + ("." + "0" * decimals if decimals > 0 else "") + "%"
    return format_percent(share, format=_number_pattern(fmt), locale=_babel_locale(locale))


def format_local_datetime(
    t: dt.datetime | Any, fmt: str = "%d-%m-%Y %H:%M", tz: str = LOCAL_TZ
) -> str:
    """A UTC datetime (or pandas Timestamp) in local time, ``dd-mm-yyyy HH:MM`` by default."""
    from zoneinfo import ZoneInfo

    if t is None:
        return "–"
    if not isinstance(t, dt.datetime):
        t = t.to_pydatetime()
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t!r} cannot be shown in local time")
    return t.astimezone(ZoneInfo(tz)).strftime(fmt)


def template_env(package: str, locale: str = DEFAULT_LOCALE) -> jinja2.Environment:
    """A Jinja2 environment for ``package``'s templates (then ``energy``'s) in ``locale``.

    Autoescaping is on for HTML. ``{% extends "noaber_base.html" %}`` gives the common page
    layout. Filters: ``money``, ``number``, ``kwh``, ``pct``, ``localtime``, ``localdate``.
    """
    _check_locale(locale)
    loaders: list[jinja2.BaseLoader] = []
    for pkg in dict.fromkeys((package, "energy")):
        try:
            if (resources.files(pkg) / "templates").is_dir():
                loaders.append(jinja2.PackageLoader(pkg, "templates"))
        except ModuleNotFoundError:
            continue
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(["html", "htm", "xml", "j2"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(translations(package, locale), newstyle=True)  # type: ignore[attr-defined]
    env.globals["locale"] = locale
    env.globals["chrome"] = page_chrome
    env.filters["money"] = lambda c: format_money_cents(c, locale)
    env.filters["number"] = lambda v, d=0: format_number(v, d, locale)
    env.filters["kwh"] = lambda v, d=1: format_kwh(v, d, locale)
    env.filters["pct"] = lambda v, d=1: format_pct(v, d, locale)
    env.filters["localtime"] = lambda t, fmt="%d-%m-%Y %H:%M": format_local_datetime(t, fmt)
    env.filters["localdate"] = lambda t: format_local_datetime(t, "%d-%m-%Y")
    return env

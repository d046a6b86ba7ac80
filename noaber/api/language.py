"""One language mechanism for every page, and the header every page carries.

The reader's language is, in this order: the ``?lang=`` parameter (``nl`` or ``en``; the one
name every page and report takes), the language cookie :data:`LANG_COOKIE` (set by
:class:`PageChromeMiddleware` whenever a page is opened with ``?lang=``, so the switch in the
header persists), the configured ``NOABER_LOCALE`` (Dutch by default). The browser's
``Accept-Language`` is not followed: pages are Dutch for members and volunteers unless they
switch (docs/ARCHITECTURE.md, Language), whatever their browser was set up with.

:class:`PageChromeMiddleware` also puts the :class:`energy.i18n.PageChrome` of the request
(who is signed in, their start page's links, the language switch) in
:data:`energy.i18n.PAGE_CHROME_SOURCE`, made when ``noaber_base.html`` first reads it (a JSON
answer never does) and reusing the user the route's :func:`noaber.api.deps.get_current_user`
checked for the same token: so every page, whichever package renders it, has the same header
with the user's name, the switch and sign-out.
"""

from __future__ import annotations

import functools
from typing import Annotated
from urllib.parse import parse_qsl, urlencode

from fastapi import Depends, Query, Request
from sqlalchemy import inspect as sa_inspect
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from energy.i18n import (
    DEFAULT_LOCALE,
    PAGE_CHROME_SOURCE,
    SUPPORTED_LOCALES,
    LangLink,
    NavLink,
    PageChrome,
    translations,
)
from energy.models import Role, User
from energy.security import InvalidTokenError, decode_access_token
from energy.settings import Settings
from energy.users import token_user
from noaber.api.deps import TOKEN_COOKIE
from noaber.api.forms import csrf_token

#: The query parameter of the page language (every page and report).
LANG_PARAM = "lang"
#: The cookie that keeps the reader's choice (one year).
LANG_COOKIE = "noaber_lang"
LANG_COOKIE_MAX_AGE_S = 365 * 24 * 3600
#: How each language names itself in the switch.
LANG_NAMES = {"nl": "Nederlands", "en": "English"}


def resolve_locale(query_lang: str | None, cookie_lang: str | None, configured: str) -> str:
    """The reader's language from its sources in the order of the module docstring."""
    for lang in (query_lang, cookie_lang, configured):
        if lang in SUPPORTED_LOCALES:
            return str(lang)
    return DEFAULT_LOCALE


def reader_locale(request: Request, settings: Settings | None = None) -> str:
    """The language of ``request``'s reader (see the module docstring)."""
    settings = settings or request.app.state.settings
    return resolve_locale(
        request.query_params.get(LANG_PARAM),
        request.cookies.get(LANG_COOKIE),
        settings.locale if settings is not None else DEFAULT_LOCALE,
    )


def page_lang(
    request: Request,
    lang: Annotated[
        str | None,
        Query(
            pattern="^(nl|en)$",
            description="Page language: nl or en (default: the language cookie, then the "
            "configured one, Dutch); the choice is kept in a cookie",
        ),
    ] = None,
) -> str:
    """The page language of a route (``?lang=`` validated: anything but nl/en is a 422)."""
    return reader_locale(request)


#: The page language as a route parameter: ``locale: PageLang``.
PageLang = Annotated[str, Depends(page_lang)]


def _t(locale: str, message: str) -> str:
    return translations("noaber.api", locale).gettext(message)


#: The start page's sections per role, as (anchor or path, label) shown in the header.
ROLE_NAV: dict[Role, tuple[tuple[str, str], ...]] = {
    Role.MEMBER: (
        ("/", "Start"),
        ("/#month", "My car"),
        ("/my/session", "My next session"),
        ("/my/statements", "My statements"),
    ),
    Role.SITE_MANAGER: (("/", "Start"),),
    Role.FIRM: (("/", "Start"), ("/campaigns/dashboard", "Campaigns")),
    Role.OPERATOR: (
        ("/", "Start"),
        ("/operator/province", "Province overview"),
        ("/#audit", "Audit log"),
        ("/campaigns/dashboard", "Campaigns"),
    ),
}

#: The role as the header names it.
ROLE_LABELS = {
    Role.MEMBER: "EV owner",
    Role.SITE_MANAGER: "site manager",
    Role.FIRM: "firm",
    Role.OPERATOR: "operator",
}


def switch_href(path: str, query: str, lang: str) -> str:
    """``path`` with its query and ``lang=`` replacing any earlier ``lang``."""
    params = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != LANG_PARAM]
    params.append((LANG_PARAM, lang))
    return path + "?" + urlencode(params)


def user_label(user: User) -> str:
    """The name the header shows: the member's name (personal data, the user's own), else the
    username."""
    member = user.member
    personal = getattr(member, "personal", None) if member is not None else None
    name = getattr(personal, "name", None)
    return str(name) if name else user.username


def chrome_for(
    user: User | None, locale: str, path: str, query: str, csrf: str | None = None
) -> PageChrome:
    """The header of a page for ``user`` (None: not signed in) in ``locale``."""
    langs = tuple(
        LangLink(
            code=code,
            label=LANG_NAMES[code],
            href=switch_href(path, query, code),
            current=code == locale,
        )
        for code in SUPPORTED_LOCALES
    )
    if user is None:
        return PageChrome(locale=locale, langs=langs)
    nav = tuple(
        NavLink(href=href, label=_t(locale, label), current=href == path)
        for href, label in ROLE_NAV.get(user.role, ())
    )
    return PageChrome(
        locale=locale,
        langs=langs,
        user_name=user_label(user),
        role_label=_t(locale, ROLE_LABELS.get(user.role, user.role.value)),
        nav=nav,
        csrf=csrf,
    )


class PageChromeMiddleware:
    """ASGI middleware: the page header of each request (:data:`energy.i18n.PAGE_CHROME_SOURCE`) and
    the language cookie when ``?lang=`` chose a language."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        request.state  # noqa: B018  (made now, so the routes' requests share it: current_user)
        chosen = request.query_params.get(LANG_PARAM)
        chosen = chosen if chosen in SUPPORTED_LOCALES else None
        source = None
        if request.method in ("GET", "HEAD", "POST") and not request.url.path.startswith("/static"):
            # made when a template first asks for it (in the thread rendering it), then kept
            source = functools.cache(functools.partial(self._chrome, request))
        token = PAGE_CHROME_SOURCE.set(source)

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and chosen is not None:
                headers = MutableHeaders(scope=message)
                headers.append(
                    "Set-Cookie",
                    f"{LANG_COOKIE}={chosen}; Max-Age={LANG_COOKIE_MAX_AGE_S}; Path=/; "
                    "SameSite=Lax; HttpOnly",
                )
            await send(message)

        try:
            await self.app(scope, receive, send_with_cookie)
        finally:
            PAGE_CHROME_SOURCE.reset(token)

    @staticmethod
    def _chrome(request: Request) -> PageChrome:
        settings = request.app.state.settings
        locale = reader_locale(request, settings)
        user = None
        csrf = None
        raw = request.cookies.get(TOKEN_COOKIE)
        if raw:
            try:
                claims = decode_access_token(raw, settings.signing_key)
            except InvalidTokenError:
                claims = None
            known = getattr(request.state, "current_user", None)
            if (
                claims is not None
                and known is not None
                and known[0] == claims.token_id
                and sa_inspect(known[1]).session is not None
            ):
                # the route checked this token (noaber.api.deps.get_current_user) and its
                # session is open (an error page may come after the route's session closed)
                return chrome_for(
                    known[1],
                    locale,
                    request.url.path,
                    request.url.query,
                    csrf_token(settings, claims),
                )
            if claims is not None:
                with request.app.state.sessions() as session:
                    user = token_user(session, claims)
                    if user is not None:
                        chrome = chrome_for(
                            user,
                            locale,
                            request.url.path,
                            request.url.query,
                            csrf_token(settings, claims),
                        )
                        return chrome
        return chrome_for(user, locale, request.url.path, request.url.query, csrf)

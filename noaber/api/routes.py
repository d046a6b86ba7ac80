"""Enumerate the HTTP routes of an app, across FastAPI versions.

FastAPI >= 0.12x keeps included routers as lazily combined ``_IncludedRouter`` entries in
``app.routes``; older versions copy each route into ``app.routes``. :func:`iter_routes` yields
``(method, path)`` pairs either way, so the authorization test walks every route, including
those that domain packages add later.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


def _walk(routes: Iterable[Any]) -> Iterator[tuple[str, Any]]:
    for route in routes:
        if hasattr(route, "effective_route_contexts"):
            for ctx in route.effective_route_contexts():
                yield ctx.path, ctx.original_route
        elif hasattr(route, "path"):
            yield route.path, route


def iter_routes(app: Any) -> Iterator[tuple[str, str]]:
    """``(METHOD, path template)`` of every route of ``app`` (HEAD omitted), sorted."""
    seen: set[tuple[str, str]] = set()
    for path, route in _walk(app.routes):
        methods = getattr(route, "methods", None)
        if not methods:  # websockets and mounts: not HTTP endpoints with methods
            seen.add(("MOUNT", path))
            continue
        for m in methods:
            if m != "HEAD":
                seen.add((m, path))
    yield from sorted(seen, key=lambda mp: (mp[1], mp[0]))

"""What the dashboard, schedule and statement pages cost to build, kept until their data change.

One :class:`PageCache` per app (``app.state.page_cache``, :data:`PageCacheDep`): a small LRU
of the expensive, user-independent parts of a page, each under a key that holds everything
the part is built from:

* dashboard: site, period, locale, time zone and, per power channel, its profile group and
  ``channels.readings_version`` (bumped by every transaction that writes its readings,
  :func:`energy.readings.readings_changed`);
* schedule: the stored schedule's id (a plan is never changed once stored: a new plan is a
  new id), locale, time zone and the cars the reader may not see one by one;
* statement: the statement's row and the member's name and kind as read now (the ledger
  lines behind a statement are immutable).

Only parts are kept, never a whole response: the page around them (the reader's name,
links, forms) is rendered per request, and authorisation runs on every request before the
cache is asked.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

T = TypeVar("T")

#: Entries kept per app (each a few hundred kB at most: a week's chart as JSON).
PAGE_CACHE_SIZE = 128


class PageCache:
    """A thread-safe LRU of at most ``maxsize`` entries, with hit and miss counts.

    Two threads missing the same key at once may both build it; the second result replaces
    the first (both are built from the same data, the key says so).
    """

    def __init__(self, maxsize: int = PAGE_CACHE_SIZE) -> None:
        if maxsize < 1:
            raise ValueError(f"PageCache maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        """The entry of ``key``, built by ``build()`` (and kept) when there is none."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]  # type: ignore[no-any-return]
            self.misses += 1
        value = build()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._items.clear()


def page_cache(request: Request) -> PageCache:
    """The app's page cache (made by :func:`noaber.api.app.create_app`)."""
    return request.app.state.page_cache  # type: ignore[no-any-return]


PageCacheDep = Annotated[PageCache, Depends(page_cache)]

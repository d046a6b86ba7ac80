"""The fork server's last preload (:func:`optimizer.batch.preload_modules`): freeze the heap.

The fork server of the batch pool imports :mod:`optimizer.batch` (and with it pandas, Pyomo
and highspy) and the program's main module, then this module. Importing it runs one full
collection and :func:`gc.freeze`: every object the imports made moves to the collector's
permanent generation, so a worker forked from the server never walks those objects in its
own collections, and does not touch (and so copy on write) their pages for that. It also
records which modules the server holds (:data:`PRELOADED`), so the benchmark can show what a
worker still imports by itself (:func:`optimizer.batch.worker_imports`).

Imported anywhere else it freezes that process's heap the same way; nothing else imports it.
"""

from __future__ import annotations

import gc
import os
import sys
from multiprocessing import process, spawn

# pandas imports this lazily when it unpickles a scenario's frame: once here, not per worker
import pyarrow.pandas_compat
import pyarrow.vendored.version  # noqa: F401

import optimizer.batch  # (solving: the optimizer, pandas, Pyomo, highspy)


def _import_main_script() -> None:
    """Import the program's main script as the fork server's ``__main__`` (``__mp_main__``,
    so its ``if __name__ == "__main__":`` part does not run), as multiprocessing would have
    done had CPython 3.11 passed the path on (see :func:`optimizer.batch.preload_modules`).

    A worker forked from here then finds ``__main__`` to be that script and does not run it
    again: its imports are in the frozen heap and in :data:`PRELOADED`. Nothing happens where
    ``__main__`` is that script already (the parent, or a Python that passed the path).
    """
    path = os.environ.get(optimizer.batch.MAIN_PATH_ENV)
    if not path or not os.path.isfile(path):
        return
    current = getattr(sys.modules.get("__main__"), "__file__", None)
    if current and optimizer.batch.main_script_path(str(current)) == path:
        return
    me = process.current_process()
    me._inheriting = True  # type: ignore[attr-defined]
    try:
        spawn.import_main_path(path)
    finally:
        del me._inheriting  # type: ignore[attr-defined]


_import_main_script()
gc.collect()
gc.freeze()

#: The modules the fork server had imported when it froze its heap.
PRELOADED: frozenset[str] = frozenset(sys.modules)

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
import sys

# pandas imports this lazily when it unpickles a scenario's frame: once here, not per worker
import pyarrow.pandas_compat
import pyarrow.vendored.version  # noqa: F401

import optimizer.batch  # noqa: F401  (solving: the optimizer, pandas, Pyomo, highspy)

gc.collect()
gc.freeze()

#: The modules the fork server had imported when it froze its heap.
PRELOADED: frozenset[str] = frozenset(sys.modules)

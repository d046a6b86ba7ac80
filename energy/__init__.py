"""Noaber's core: settings, time grid, errors, db and domain tables, stores, the interval
pipeline, prices, Numba kernels, rendering helpers (i18n, plots, pdf) and migrations.

The core imports no domain package (``modbus_gateway``, ``meetkoffer``, ``optimizer``,
``settlement``) and nothing of the application (``noaber``); ``lint-imports`` checks it
(``[tool.importlinter]`` in ``pyproject.toml``).
"""

__version__ = "0.1.0"

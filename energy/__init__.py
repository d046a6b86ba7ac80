"""Noaber energy core: domain types, time grid, units, stores and kernels.

Importing :mod:`energy` is cheap: it imports neither the API (``energy.api``) nor the
domain packages (``modbus_gateway``, ``meetkoffer``, ``optimizer``, ``settlement``).
Those are wired together only in the composition root (``energy.api`` and ``energy.cli``).
"""

__version__ = "0.1.0"

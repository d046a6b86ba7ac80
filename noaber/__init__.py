"""Noaber, the application: the ``noaber`` command, the API and pages, and the services.

Nothing imports this package. It wires the domain packages (``modbus_gateway``,
``meetkoffer``, ``optimizer``, ``settlement``) together on the core (``energy``):

* :mod:`noaber.cli` - the ``noaber`` command, one module per command group;
* :mod:`noaber.api` - the FastAPI app, its routers, pages and templates;
* :mod:`noaber.services` - long-running processes and jobs: the centre's ingest, the closed
  loop, the demo builder.

The layering (``noaber`` -> domain packages -> ``energy``) is a contract that
``lint-imports`` checks in ``make test`` (``[tool.importlinter]`` in ``pyproject.toml``).
"""

from energy import __version__

__all__ = ["__version__"]

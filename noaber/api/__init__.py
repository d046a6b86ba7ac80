"""The Noaber HTTP API and pages (FastAPI): the composition root for network use.

Only this package and the CLI import the domain packages; ``import energy`` does not import
this one. Build the app with :func:`noaber.api.app.create_app`.
"""

from noaber.api.app import create_app

__all__ = ["create_app"]

"""Routers per resource; each module exposes ``router`` and is included in ``app.py``."""

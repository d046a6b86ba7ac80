"""The settlement tariff a community's new runs use, for the operator's tariff pages.

:func:`file_tariff` is the tariff its community file names (``<communities dir>/<name>.yaml``,
its ``tariff:``), or the shipped 2026 tariff when there is no file or it names none; the
operator's stored versions (:mod:`settlement.tariff_versions`) go over it.
"""

from __future__ import annotations

from energy.settings import Settings
from settlement.pricing import Tariff, load_tariff


def file_tariff(settings: Settings, community: str) -> tuple[Tariff, str]:
    """The community file's tariff and where it came from (the file, or "shipped 2026")."""
    from settlement.community import load_community

    path = settings.communities_path / f"{community}.yaml"
    if "/" in community or community.startswith(".") or not path.is_file():
        return load_tariff(None), "shipped 2026"
    spec = load_community(path)
    if spec.tariff_path is None:
        return load_tariff(None), "shipped 2026"
    return load_tariff(spec.tariff_path), str(spec.tariff_path)

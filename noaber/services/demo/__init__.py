"""The demo (``noaber demo``): a dorpshuis with PV, a battery and three V2G EVs, and a factory.

:mod:`.builder` builds the core (database, site descriptions in ``data/``, users, a week of
samples and their 15-minute readings); each domain package then adds its step, in the order
of :data:`DOMAIN_STEPS`: the gateway polls simulated devices (:mod:`.gateway`), the optimizer
plans today (:mod:`.optimizer`), settlement settles the week (:mod:`.settlement`) and the
Meetkoffer analyses the factory (:mod:`.meetkoffer`).
"""

from __future__ import annotations

from noaber.services.demo import gateway, meetkoffer, optimizer, settlement
from noaber.services.demo.builder import (
    CORE_STEPS,
    DEMO_FACTORY,
    DEMO_LOGINS,
    DEMO_SITE,
    DemoContext,
    DemoLogin,
    DemoStep,
    build_demo,
    check_dir,
    demo_settings,
    demo_week,
    is_demo_login,
    logins_table,
)

#: The domain packages' demo steps, run in this order after :data:`CORE_STEPS`.
DOMAIN_STEPS: tuple[tuple[str, DemoStep], ...] = (
    ("gateway", gateway.demo_step),
    ("optimizer", optimizer.demo_step),
    ("settlement", settlement.demo_step),
    ("meetkoffer", meetkoffer.demo_step),
)

__all__ = [
    "CORE_STEPS",
    "DEMO_FACTORY",
    "DEMO_LOGINS",
    "DEMO_SITE",
    "DOMAIN_STEPS",
    "DemoContext",
    "DemoLogin",
    "DemoStep",
    "build_demo",
    "check_dir",
    "demo_settings",
    "demo_week",
    "is_demo_login",
    "logins_table",
]

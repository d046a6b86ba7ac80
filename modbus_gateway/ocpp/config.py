"""The ``ocpp:`` section of a site description: its schema lives in the core
(:mod:`energy.ocppconfig`), since the site import validates it; the edge uses it from here."""

from energy.ocppconfig import (
    SUBPROTOCOLS,
    VERSION_OF,
    ChargePointConfig,
    OcppConfig,
    OcppVersion,
    parse_ocpp_section,
)

__all__ = [
    "SUBPROTOCOLS",
    "VERSION_OF",
    "ChargePointConfig",
    "OcppConfig",
    "OcppVersion",
    "parse_ocpp_section",
]

"""OCPP: a central system for chargers (1.6J, 2.0.1, 2.1) and a charge-point simulator.

* :mod:`modbus_gateway.ocpp.config`: the ``ocpp:`` section of a site description (charge
  points, id tokens), validated with errors naming the path;
* :mod:`modbus_gateway.ocpp.central`: the central system (CSMS) over websockets: boot,
  authorisation, transactions, meter values as samples, the plan as charging profiles;
* :mod:`modbus_gateway.ocpp.sim`: a charge point built with the same ``ocpp`` library that
  follows the profiles it is sent and falls back when they expire.

Like the rest of the edge package it imports nothing of the other domain packages; the
application (:mod:`noaber.services.ocpp`) hands its samples to the centre's checks.
"""

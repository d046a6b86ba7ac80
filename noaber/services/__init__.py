"""Long-running processes and jobs of the application.

* :mod:`noaber.services.ingest` - the centre: store the gateways' MQTT batches, update intervals;
* :mod:`noaber.services.control` - the closed loop: the optimizer's MPC drives the gateway;
* :mod:`noaber.services.demo` - the demo builder (``noaber demo``).
"""

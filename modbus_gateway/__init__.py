"""Modbus TCP/RTU gateway: device profiles as data, async polling, safe writes, simulators."""

"""Scheduling of PV, building load, battery and V2G EVs under the grid limit (Pyomo + HiGHS)."""

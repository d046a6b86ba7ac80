"""Scheduling of PV, building load, battery and V2G EVs under the grid limit (Pyomo + HiGHS).

Modules, in the order of the staged method (docs/SOURCES.md, Patterns: oemof-solph):

* :mod:`optimizer.scenario` - scenario files (YAML + CSV), validation naming field and value;
* :mod:`optimizer.forecast` - pvlib clear-sky PV x cloud factor, time-of-week load, price CSV;
* :mod:`optimizer.sitestore` - a scenario of a site from the SQL store;
* :mod:`optimizer.model` - parameters, ``build_model()`` (one block per asset kind),
  :class:`~optimizer.model.Planner` (persistent HiGHS, LP first, binaries where needed),
  explanations of infeasible scenarios, the results table;
* :mod:`optimizer.baselines`, :mod:`optimizer.kpis`, :mod:`optimizer.report` - no control and
  self-consumption baselines, KPIs, the schedule per step and asset;
* :mod:`optimizer.mpc` - model-predictive control with a setpoint sink and a visible fallback;
* :mod:`optimizer.batch`, :mod:`optimizer.batch_preload` - many sites in a process pool, and
  what its fork server preloads;
* :mod:`optimizer.store`, :mod:`optimizer.page` - schedules in SQL and their pages;
* :mod:`noaber.cli.optimize` - ``noaber optimize``; :mod:`noaber.services.demo.optimizer` - the demo step.
"""

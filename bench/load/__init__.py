"""Load scenarios: locust users against a local stack the tool starts itself.

``python -m bench.load`` builds its own database, starts a private Redis, gunicorn and a job
worker on the simulated FAL provider, then runs each scenario of the YAML configuration
(bench/load/scenarios.yaml) headless and bounded in time, in a child process of its own
(locust patches the standard library with gevent on import, so only that child imports
it). The results are written as JSON and can be compared with a stored baseline.

Modules: ``config`` (the YAML), ``names`` (scenarios and their tasks), ``stack`` (the
servers), ``swarm`` (the child process), ``api`` (one request and how its outcome counts),
``users`` (the scenarios), ``results`` (samples to figures), ``compare`` (the regression
check). Only ``swarm``, ``users`` and ``api`` import locust.
"""

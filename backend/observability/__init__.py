"""How the service is doing: ``health`` (liveness, readiness and, for operators, status,
per-route metrics and ``/metrics``) and ``metrics`` (the Prometheus metrics every process
counts, read across gunicorn workers and the job worker).

May import: config, db, cache, http, auth.guard.
"""

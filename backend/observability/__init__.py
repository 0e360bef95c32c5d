"""How the service is doing: ``health`` (liveness, readiness and, for operators, details).

May import: config, db, cache, http, auth.guard.
"""

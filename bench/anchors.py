"""Reference figures the report's rows are read against: the anchor column.

A target says what this service must do; an anchor says what others do or claimed, so a
reader can place a figure without looking it up. Anchors are quoted, not measured here
(apart from the figures marked "here", measured once on a machine of this kind).
"""

from __future__ import annotations

ORIGINAL_AUTHORIZE = "original service: claimed < 75 ms, measured 870 ms"
ORIGINAL_HIT_RATE = "original service: claimed 95% hit rate"
ORIGINAL_LOAD = "original service: claimed 10,000 concurrent users, 10,000 req/s"
ORIGINAL_LOGIN = "original service: login p50 235 ms; seed target < 50 ms"
AUTHZ_SERVICES = "SpiceDB p95 5.76 ms; Permit.io PDP p50 7.2 ms; Cerbos < 1 ms"
POSTGREST = "PostgREST: ~3,800 req/s single-row GET, 4 vCPU (p95 28 ms)"
FLASK_HELLO = "Flask + gunicorn hello world, 2 cores: ~1,800 req/s"
REDIS_ROUND_TRIP = "Redis loopback round trip ~0.04 ms"
PYJWT = "PyJWT here: HS256 ~35 µs, ES256 ~90 µs; seed: authentication < 50 ms"
CASBIN = "pycasbin, 7,000 policies, here: ~18 ms per enforce"
RLS_GUIDE = "Supabase RLS guide: wrapped helpers and indexes keep policies at index cost"
NONE = ""

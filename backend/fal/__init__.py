"""FAL.ai: the queue client we use, the circuit breaker, and webhook verification.

- ``queue``: submit, status, result and cancel through the official ``fal-client``.
- ``breaker``: a circuit breaker whose state all processes share (in Postgres).
- ``signatures``: FAL's ED25519 webhook signatures and its JWKS, cached.
- ``progress``: what a webhook or a status answer means for a generation.
- ``metrics``: submissions and webhooks counted for Prometheus.

Functions that touch the database take a psycopg cursor (service role); nothing here knows
Flask, so the worker and the web app share it.
"""

"""Security headers on every response, and CORS by an allow-list.

The API serves JSON to programs, never pages, so the policies are the strictest ones:
nothing may be framed, sniffed, embedded or cached. A view that sets its own
Cache-Control (a public, cacheable document) keeps it.
"""

from __future__ import annotations

from flask import Flask, Response
from flask_cors import CORS

SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "Content-Security-Policy": (
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": (
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
        "microphone=(), payment=(), usb=()"
    ),
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "X-Permitted-Cross-Domain-Policies": "none",
    "X-DNS-Prefetch-Control": "off",
    "Origin-Agent-Cluster": "?1",
}

# what browsers may read from a cross-origin response
EXPOSED_HEADERS = [
    "X-Request-ID",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Retry-After",
    "Preference-Applied",  # whether Prefer: wait was honoured
]


def add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    return response


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    app.after_request(add_security_headers)
    origins = [origin.strip() for origin in settings.CORS_ORIGINS.split(",") if origin.strip()]
    if origins:
        CORS(
            app,
            resources={r"/api/*": {}, r"/auth/*": {}},
            origins=origins,
            expose_headers=EXPOSED_HEADERS,
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "apikey",
                "X-Client-Info",  # the Supabase clients send these two to /auth/v1
                "X-Supabase-Api-Version",
                "X-Request-ID",
                "Prefer",  # Prefer: wait on a generation's creation
                "Last-Event-ID",  # a reconnecting event stream
            ],
            max_age=600,
        )

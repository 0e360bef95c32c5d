"""Web plumbing every route shares: the one error shape (``errors``), request ids, security
headers (``headers``), rate limits (``limits``; on a Redis Cluster, ``limit_storage``), the
OpenAPI document (``openapi``) and its interactive page (``docs``), keyset pagination
(``pagination``) and text the database cannot store, refused at the boundary (``text``).

May import: config, email_address, db (its domain errors), and ``auth.guard`` for the
limiter's key and the document's security scheme. Routes live in ``backend.api`` and
``backend.auth``.
"""

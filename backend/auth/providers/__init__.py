"""The two auth providers, one interface (``base``): ``local`` keeps users in this database's
auth schema as GoTrue does; ``supabase`` delegates to a Supabase project's GoTrue.

May import: config, db, cache, ``auth.accounts``, ``auth.tokens``, ``auth.mailer``. A
provider takes what it needs from a request (the client's address and user agent) as
arguments, never from ``flask.request``.
"""

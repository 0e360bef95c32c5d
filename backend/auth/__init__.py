"""Authentication: tokens, the JWKS, the guard, the routes (ours and GoTrue-compatible),
the providers (``providers/``: local and supabase) and the mailer the local provider sends
confirmations and invitations through.

For other blueprints, two names matter::

    from backend.auth.guard import require_user, current_user

``require_user`` guards a view (401 unless a valid token of a live session) and
``current_user()`` returns the caller (``AuthContext``: ``user_id``, ``email``,
``session_id``, ``claims``, ``token``). ``backend.db.user_transaction(claims)`` then runs SQL
as that caller. ``wiring.init_app`` builds the verifier, the provider and the routes.

May import: config, email_address, db, cache, http. This file imports nothing, so that the
operator's command (``backend.cli``) can use the password rules without loading the web app.
"""

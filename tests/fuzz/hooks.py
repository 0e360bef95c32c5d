"""Schemathesis hooks for tests/test_fuzz.py: every error answer is in its documented shape.

The API's own routes answer errors as {"error", "message", "request_id"}; the Supabase Auth
compatible routes under /auth/v1 answer as GoTrue does, {"code", "error_code", "msg"} with
the status repeated in code, because the official clients parse that shape.
"""

import schemathesis

OUR_SHAPE = {"error", "message", "request_id"}
GOTRUE_SHAPE = {"code", "error_code", "msg"}


@schemathesis.check
def one_error_shape(ctx, response, case):
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict), f"an error body is not a JSON object: {body!r}"
    gotrue = case.path.startswith("/auth/v1/")
    missing = (GOTRUE_SHAPE if gotrue else OUR_SHAPE) - set(body)
    assert not missing, f"the error body lacks {sorted(missing)}: {body!r}"
    if gotrue:
        assert body["code"] == response.status_code, f"code is not the status: {body!r}"
    return True

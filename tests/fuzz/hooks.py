"""Schemathesis hooks for tests/test_fuzz.py: every error answer is the one error shape."""

import schemathesis


@schemathesis.check
def one_error_shape(ctx, response, case):
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict), f"an error body is not a JSON object: {body!r}"
    missing = {"error", "message", "request_id"} - set(body)
    assert not missing, f"the error body lacks {sorted(missing)}: {body!r}"
    return True

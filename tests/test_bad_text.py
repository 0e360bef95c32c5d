"""Text the database cannot store never reaches the driver.

JSON may carry a NUL (\\u0000) or an unpaired surrogate (\\ud800). This suite walks the
OpenAPI document and sends both to every string field of every request body, and to every
query, header and path parameter of every operation: the answer is never a 5xx, always
the one error shape, and a bad body field or query parameter is a 422 that names it. The
GoTrue-compatible routes (in the document too) are tried the same way in their own shape,
below. FAL's webhook checks its signature before it reads anything: an unsigned request is a
401, whatever it carries.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
from api_support import assert_error, assert_names_field, running_api

BAD_JSON_STRINGS = {"nul": "a\u0000b", "surrogate": "a\ud800b"}
# a URL or header carries bytes: the NUL percent-encoded, and a surrogate's UTF-8-like bytes
# (which no decoder turns back into a surrogate, but which must not fail either)
BAD_URL_TOKENS = {"nul": "a%00b", "surrogate": "a%ED%A0%80b"}
GOTRUE_PREFIX = "/auth/v1/"  # GoTrue's error shape: tried by the helpers at the end
# its signature is checked before its headers are read (401); its URL, like any route's, first
SIGNED = {("post", "/api/v1/webhooks/fal")}


@pytest.fixture(scope="module")
def api(database_factory, migrated_template):
    with running_api(database_factory(migrated_template)) as running:
        yield running


@pytest.fixture(scope="module")
def document(api):
    return api.ok("GET", "/api/v1/openapi.json")


@pytest.fixture(scope="module")
def caller(api):
    return api.user("fuzzer")


def resolve(document: dict, node: dict) -> dict:
    while "$ref" in node:
        target = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def operations(document: dict):
    for path, item in document["paths"].items():
        if path.startswith(GOTRUE_PREFIX):
            continue
        shared = item.get("parameters", [])
        for method, operation in item.items():
            if method != "parameters":
                yield method, path, operation, [*shared, *operation.get("parameters", [])]


def request_schema(document: dict, operation: dict) -> dict | None:
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    return resolve(document, body["schema"]) if body else None


def is_string(schema: dict) -> bool:
    kind = schema.get("type")
    return kind == "string" or (isinstance(kind, list) and "string" in kind)


def filled_path(path: str, parameters: list, bad: tuple[str, str] | None = None) -> str:
    """The path with each {name} replaced by a uuid, or by the bad token for one name."""
    for parameter in parameters:
        if parameter["in"] == "path":
            value = bad[1] if bad and bad[0] == parameter["name"] else str(uuid.uuid4())
            path = path.replace("{" + parameter["name"] + "}", value)
    return path


def send(api, caller, method, path, **kwargs):
    return api.call(method.upper(), path, caller, **kwargs)


def assert_one_error_shape(response, context) -> dict:
    assert response.status_code < 500, (context, response.get_data(as_text=True))
    body = response.get_json()
    assert body is not None and {"error", "message", "request_id"} <= set(body), (context, body)
    return body


def is_free_text(schema: dict) -> bool:
    """A string with no format or enum: only the bad-text check can refuse these values."""
    return is_string(schema) and "format" not in schema and "enum" not in schema


def body_cases(document):
    """(method, path, parameters, field, kind, body, free) for every string field of a body."""
    for method, path, operation, parameters in operations(document):
        schema = request_schema(document, operation)
        if schema is None:
            continue
        for field, spec in schema.get("properties", {}).items():
            spec = resolve(document, spec)
            for kind, bad in BAD_JSON_STRINGS.items():
                if is_string(spec):
                    free = is_free_text(spec)
                    yield method, path, parameters, field, kind, {field: bad}, free
                elif spec.get("type") == "object":
                    yield method, path, parameters, field, f"{kind}-key", {field: {bad: 1}}, True
                    deep = {field: {"negative_prompt": {"nested": [bad]}}}
                    yield method, path, parameters, field, f"{kind}-deep", deep, True


def test_every_operation_has_been_found(document):
    found = {(m, p) for m, p, _, _ in operations(document)}
    assert ("post", "/api/v1/generations") in found
    assert ("post", "/api/v1/auth/login") in found


def test_bad_text_in_any_body_field_is_a_422_naming_it(api, document, caller):
    cases = list(body_cases(document))
    assert len(cases) > 20, "the walk found the request bodies"
    for method, path, parameters, field, kind, body, free in cases:
        context = (method, path, field, kind)
        response = send(
            api,
            caller,
            method,
            filled_path(path, parameters),
            data=json.dumps(body),  # ensure_ascii: the bad characters travel as \u escapes
            content_type="application/json",
        )
        assert_one_error_shape(response, context)
        if (method, path) in SIGNED:
            assert response.status_code == 401, (context, response.get_json())
            continue
        assert response.status_code == 422, (context, response.get_json())
        assert_refused_for_bad_text(response.get_json(), field, free)


def assert_refused_for_bad_text(body: dict, field: str, free_text: bool = True) -> None:
    """A details entry for ``field`` (or a path inside it); for free text, saying why.

    A uuid or an enum is refused as a bad uuid or choice before its characters matter.
    """
    problems = [
        problem
        for name, found in body["details"].items()
        if name.rsplit(".", 1)[-1] == field or name.startswith(f"{field}.")
        for problem in found
    ]
    assert problems, (field, body)
    if free_text:
        assert any("NUL character" in problem for problem in problems), (field, body)
    assert field in body["message"], body


def test_bad_text_in_any_query_or_header_parameter_is_a_422_naming_it(api, document, caller):
    tried = 0
    for method, path, _operation, parameters in operations(document):
        for parameter in parameters:
            if parameter["in"] not in ("query", "header"):
                continue
            for kind, token in BAD_URL_TOKENS.items():
                context = (method, path, parameter["name"], kind)
                url = filled_path(path, parameters)
                if parameter["in"] == "query":
                    response = send(api, caller, method, f"{url}?{parameter['name']}={token}")
                elif kind == "nul":  # a header is latin-1 bytes: it can carry a NUL, no surrogate
                    response = send(api, caller, method, url, headers={parameter["name"]: "a\0"})
                else:
                    continue
                tried += 1
                if kind == "surrogate":  # decoded as U+FFFD: storable, only "no 5xx" applies
                    if response.status_code >= 400:
                        assert_one_error_shape(response, context)
                    assert response.status_code < 500, context
                    continue
                assert_one_error_shape(response, context)
                if (method, path) in SIGNED and parameter["in"] == "header":
                    assert response.status_code == 401, (context, response.get_json())
                    continue
                # a URL's text is refused at the boundary, before any signature is read
                assert response.status_code == 422, (context, response.get_json())
                assert_refused_for_bad_text(response.get_json(), parameter["name"])
    assert tried > 10, "the walk found the query and header parameters"


def test_bad_text_in_any_path_token_is_never_a_5xx(api, document, caller):
    tried = 0
    for method, path, _operation, parameters in operations(document):
        for parameter in parameters:
            if parameter["in"] != "path":
                continue
            for kind, token in BAD_URL_TOKENS.items():
                url = filled_path(path, parameters, (parameter["name"], token))
                response = send(api, caller, method, url)
                assert_one_error_shape(response, (method, path, parameter["name"], kind))
                tried += 1
    assert tried > 20


def test_an_unknown_query_parameter_with_a_nul_is_refused_too(api, caller):
    response = api.call("GET", "/api/v1/projects?anything=a%00", caller)
    assert_names_field(assert_error(response, 422, "validation_failed"), "anything")


# the GoTrue-compatible routes, in GoTrue's error shape -------------------------------------


def gotrue(api, path: str, body: dict):
    return api.client.post(
        path, data=json.dumps(body), content_type="application/json", headers={"apikey": "x"}
    )


@pytest.mark.parametrize("kind", sorted(BAD_JSON_STRINGS))
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/auth/v1/signup", {"email": "{bad}@example.com", "password": "long enough"}, "email"),
        ("/auth/v1/signup", {"email": "a@example.com", "password": "long {bad}"}, "password"),
        (
            "/auth/v1/signup",
            {
                "email": "b@example.com",
                "password": "long enough",
                "data": {"display_name": "{bad}"},
            },
            "data.display_name",
        ),
        ("/auth/v1/token?grant_type=password", {"email": "{bad}", "password": "x"}, "email"),
        ("/auth/v1/token?grant_type=refresh_token", {"refresh_token": "{bad}"}, "refresh_token"),
    ],
)
def test_gotrue_routes_refuse_bad_text_naming_the_field(api, path, body, field, kind):
    bad = BAD_JSON_STRINGS[kind]
    filled = json.loads(json.dumps(body).replace("{bad}", bad.replace("\0", "\\u0000")))
    response = gotrue(api, path, filled)
    answer = response.get_json()
    assert response.status_code == 422, answer
    assert answer["error_code"] == "validation_failed"
    assert answer["msg"].startswith(field), answer


def test_gotrue_query_with_a_nul_is_refused(api):
    response = gotrue(api, "/auth/v1/token?grant_type=pass%00word", {})
    assert response.status_code == 422
    assert "grant_type" in response.get_json()["msg"]


def test_the_text_rules_load_nothing_of_the_auth_package():
    """backend.http sits below backend.auth: the address rule Email applies comes from a
    module of its own, which the operator's command shares without the web plumbing."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, backend.http.text; print('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "backend.http.text" in loaded and "backend.email_address" in loaded
    assert [name for name in loaded if name.startswith("backend.auth")] == []

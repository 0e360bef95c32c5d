"""The OpenAPI document covers every REST resource route with schemas and the bearer scheme."""

from __future__ import annotations

import pytest
from api_support import running_api

from backend.http.text import NOT_BLANK

# (method, path) of every REST resource route; models is the one public route
ROUTES = [
    ("get", "/api/v1/projects"),
    ("post", "/api/v1/projects"),
    ("get", "/api/v1/projects/{project_id}"),
    ("patch", "/api/v1/projects/{project_id}"),
    ("delete", "/api/v1/projects/{project_id}"),
    ("put", "/api/v1/projects/{project_id}/teams/{team_id}"),
    ("delete", "/api/v1/projects/{project_id}/teams/{team_id}"),
    ("get", "/api/v1/projects/{project_id}/stats"),
    ("post", "/api/v1/generations"),
    ("get", "/api/v1/generations"),
    ("get", "/api/v1/generations/{generation_id}"),
    ("patch", "/api/v1/generations/{generation_id}"),
    ("delete", "/api/v1/generations/{generation_id}"),
    ("post", "/api/v1/generations/{generation_id}/cancel"),
    ("post", "/api/v1/generations/{generation_id}/authorize"),
    ("put", "/api/v1/generations/{generation_id}/share"),
    ("delete", "/api/v1/generations/{generation_id}/share/{team_id}"),
    ("get", "/api/v1/teams"),
    ("post", "/api/v1/teams"),
    ("get", "/api/v1/teams/{team_id}"),
    ("get", "/api/v1/teams/{team_id}/members"),
    ("get", "/api/v1/teams/{team_id}/permissions"),
    ("get", "/api/v1/teams/{team_id}/stats"),
    ("post", "/api/v1/teams/{team_id}/invite"),
    ("get", "/api/v1/teams/{team_id}/invitations"),
    ("delete", "/api/v1/teams/{team_id}/invitations/{invitation_id}"),
    ("post", "/api/v1/invitations/accept"),
    ("post", "/api/v1/teams/{team_id}/transfer"),
    ("patch", "/api/v1/teams/{team_id}/members/{user_id}"),
    ("delete", "/api/v1/teams/{team_id}/members/{user_id}"),
    ("get", "/api/v1/credits/balance"),
    ("get", "/api/v1/credits/transactions"),
    ("get", "/api/v1/models"),
    ("post", "/api/v1/webhooks/fal"),
    ("get", "/api/v1/generations/{generation_id}/media"),
    ("get", "/api/v1/media/{name}"),
    ("get", "/api/v1/generations/{generation_id}/events"),
    ("get", "/api/v1/webhooks/secret"),
    ("post", "/api/v1/webhooks/secret"),
    ("get", "/api/v1/generations/{generation_id}/webhook-deliveries"),
]
# FAL signs its webhooks (an ED25519 signature, no bearer token); a signed media URL is its
# own credential: both work without a token
PUBLIC = {
    ("get", "/api/v1/models"),
    ("post", "/api/v1/webhooks/fal"),
    ("get", "/api/v1/media/{name}"),
}
# their success is a stream of events or the stored bytes, not a JSON document
NOT_JSON = {
    ("get", "/api/v1/media/{name}"): "application/octet-stream",
    ("get", "/api/v1/generations/{generation_id}/events"): "text/event-stream",
}
WITH_BODY = {
    ("post", "/api/v1/projects"),
    ("patch", "/api/v1/projects/{project_id}"),
    ("put", "/api/v1/projects/{project_id}/teams/{team_id}"),
    ("post", "/api/v1/generations"),
    ("patch", "/api/v1/generations/{generation_id}"),
    ("put", "/api/v1/generations/{generation_id}/share"),
    ("post", "/api/v1/teams"),
    ("post", "/api/v1/teams/{team_id}/invite"),
    ("post", "/api/v1/invitations/accept"),
    ("post", "/api/v1/teams/{team_id}/transfer"),
    ("patch", "/api/v1/teams/{team_id}/members/{user_id}"),
    ("post", "/api/v1/webhooks/fal"),  # documented: FAL's delivery, read raw to verify it
}


def resolve(document: dict, item: dict) -> dict:
    """Follow a local $ref such as #/components/responses/UNPROCESSABLE_ENTITY."""
    if "$ref" not in item:
        return item
    node = document
    for part in item["$ref"].removeprefix("#/").split("/"):
        node = node[part]
    return node


@pytest.fixture(scope="module")
def document(database_factory, migrated_template):
    with running_api(database_factory(migrated_template)) as api:
        return api.ok("GET", "/api/v1/openapi.json")


def test_the_bearer_scheme_is_declared(document):
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


def test_no_resource_route_is_missing_from_the_list_above(document):
    documented = {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
        if not path.startswith(("/api/v1/auth", "/api/v1/health", "/auth/v1"))
    }
    assert documented == set(ROUTES)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_has_schemas_and_security(document, method, path):
    operation = document["paths"][path][method]
    security = operation.get("security")
    assert security == (None if (method, path) in PUBLIC else [{"bearerAuth": []}])

    successes = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
    assert successes
    for code, response in successes.items():
        if (method, path) in NOT_JSON:
            assert list(response["content"]) == [NOT_JSON[method, path]]
        elif code != "204":
            assert response["content"]["application/json"]["schema"]["$ref"]
    errors = [code for code in operation["responses"] if code.startswith("4")]
    assert errors
    for code in errors:
        response = resolve(document, operation["responses"][code])
        assert response["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }

    if (method, path) in WITH_BODY:
        assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    else:
        assert "requestBody" not in operation
    for parameter in document["paths"][path].get("parameters", []):
        if parameter["name"].endswith("_id"):
            assert parameter["schema"]["format"] == "uuid"


def every_operation(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield method, path, operation


def test_no_status_code_hides_under_default(document):
    for method, path, operation in every_operation(document):
        responses = operation["responses"]
        assert "default" not in responses, (method, path)
        assert {"429", "500", "503"} <= set(responses), (method, path)
        if "requestBody" in operation:
            assert {"400", "413"} <= set(responses), (method, path)


def test_the_auth_routes_list_their_refusals(document):
    login = document["paths"]["/api/v1/auth/login"]["post"]["responses"]
    signup = document["paths"]["/api/v1/auth/signup"]["post"]["responses"]
    me = document["paths"]["/api/v1/auth/me"]["get"]["responses"]
    assert {"400", "401", "422"} <= set(login)
    assert {"400", "409", "422"} <= set(signup)
    assert "401" in me


def test_the_document_states_the_rules_the_code_enforces(document):
    schemas = document["components"]["schemas"]
    password = schemas["Credentials"]["properties"]["password"]
    assert (password["minLength"], password["maxLength"]) == (8, 72)
    assert schemas["ProjectUpdate"]["minProperties"] == 1
    for schema, field in [("GenerationCreate", "prompt"), ("ProjectCreate", "name")]:
        assert schemas[schema]["properties"][field]["pattern"] == NOT_BLANK, (schema, field)
    assert schemas["GenerationCreate"]["properties"]["webhook_url"]["pattern"] == "^https?://"


@pytest.mark.parametrize(
    ("collection", "item", "parameter"),
    [
        ("/api/v1/projects", "/api/v1/projects/{project_id}", "project_id"),
        ("/api/v1/teams", "/api/v1/teams/{team_id}/members", "team_id"),
        ("/api/v1/generations", "/api/v1/generations/{generation_id}/cancel", "generation_id"),
    ],
)
def test_a_create_links_to_what_it_made(document, collection, item, parameter):
    links = document["paths"][collection]["post"]["responses"]["201"]["links"].values()
    targets = {link["operationRef"]: link["parameters"] for link in links}
    pointer = item.replace("/", "~1").replace("{", "%7B").replace("}", "%7D")
    methods = [m for m in document["paths"][item] if m != "parameters"]
    for method in methods:
        assert targets[f"#/paths/{pointer}/{method}"] == {parameter: "$response.body#/id"}

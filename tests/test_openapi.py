"""The OpenAPI 3 document is generated from the code and describes auth and errors."""

from __future__ import annotations


def test_the_document_describes_the_auth_routes(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    paths = spec["paths"]
    for path in ("signup", "login", "refresh"):
        operation = paths[f"/api/v1/auth/{path}"]["post"]
        assert "requestBody" in operation and "security" not in operation
    assert paths["/api/v1/auth/me"]["get"]["security"] == [{"bearerAuth": []}]
    assert paths["/api/v1/auth/logout"]["post"]["security"] == [{"bearerAuth": []}]
    assert {"/api/v1/health/live", "/api/v1/health/ready"} <= set(paths)


def test_schemas_name_their_fields_and_the_error_shape(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    assert set(schemas["Signup"]["required"]) == {"email", "password"}
    assert {"error", "message", "request_id"} <= set(schemas["Error"]["properties"])
    me = spec["paths"]["/api/v1/auth/me"]["get"]["responses"]
    assert me["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Profile"
    }

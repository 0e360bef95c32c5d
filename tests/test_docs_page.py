"""The API docs page: served offline from a Python package, under its own CSP, and
rendering every operation of the document in a real browser (headless Chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fixtures_app import PASSWORD, unique_email

from backend.http.headers import SECURITY_HEADERS
from harness.servers import REPO_ROOT, Server

ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
INSTALL_HINT = (
    "Headless Chromium is needed to render the docs page. Install it with:\n"
    "    sudo apt-get install -y chromium\n"
    "(or run .ci/ensure-chromium as root)."
)


def test_the_page_loads_only_its_own_assets(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(source.startswith("/api/v1/docs/") for source in sources)
    assert 'data-spec-url="/api/v1/openapi.json"' in html
    assert "<script>" not in html  # no inline script: the CSP would refuse it
    for source in sources:
        with client.get(source) as asset:
            assert asset.status_code == 200, source
            assert asset.get_data()


def test_the_csp_is_relaxed_for_the_docs_page_only(client):
    csp = client.get("/api/v1/docs").headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    for name in ("script-src", "style-src", "connect-src"):
        assert directives[name] == "'self'"
    assert "unsafe" not in csp
    assert directives["frame-ancestors"] == "'none'"
    strict = SECURITY_HEADERS["Content-Security-Policy"]
    for path in ("/api/v1/openapi.json", "/api/v1/models", "/api/v1/docs/start.js"):
        assert client.get(path).headers["Content-Security-Policy"] == strict, path


def test_assets_are_cacheable_and_only_the_listed_files_are_served(client):
    with client.get("/api/v1/docs/assets/swagger-ui-bundle.js") as bundle:
        assert bundle.status_code == 200
        assert bundle.mimetype == "text/javascript"
        assert "public" in bundle.headers["Cache-Control"]
    for name in ("index.html", "swagger-ui.js.map", "..%2Fswagger-ui.css", "nothing.js"):
        assert client.get(f"/api/v1/docs/assets/{name}").status_code == 404, name


def test_the_document_covers_the_gotrue_routes(client):
    document = client.get("/api/v1/openapi.json").get_json()
    paths = document["paths"]
    expected = {
        ("/auth/v1/signup", "post"),
        ("/auth/v1/verify", "post"),
        ("/auth/v1/resend", "post"),
        ("/auth/v1/token", "post"),
        ("/auth/v1/logout", "post"),
        ("/auth/v1/user", "get"),
        ("/auth/v1/.well-known/jwks.json", "get"),
    }
    documented = {(p, m) for p, item in paths.items() if p.startswith("/auth/v1") for m in item}
    assert documented == expected
    gotrue_errors = {"#/components/schemas/GoTrueError", "#/components/schemas/GoTrueSignupError"}
    for path, method in expected:
        operation = paths[path][method]
        for status, answer in operation["responses"].items():
            if status.startswith(("4", "5")):
                schema = answer["content"]["application/json"]["schema"]
                assert schema.get("$ref") in gotrue_errors, (path, status)
                assert "GoTrue's error shape" in answer["description"], (path, status)
    token = paths["/auth/v1/token"]["post"]
    grant = next(p for p in token["parameters"] if p["name"] == "grant_type")
    assert grant["schema"]["enum"] == ["password", "refresh_token"]
    assert token["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/GoTrueSession"
    }
    assert paths["/auth/v1/user"]["get"]["security"] == [{"bearerAuth": []}]
    schemas = document["components"]["schemas"]
    assert {"email", "password"} == set(schemas["GoTrueSignup"]["required"])
    assert {"access_token", "refresh_token", "user"} <= set(schemas["GoTrueSession"]["properties"])


def test_the_gotrue_answers_have_the_documented_fields(client):
    schemas = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    email = unique_email("docs")
    signup = client.post("/auth/v1/signup", json={"email": email, "password": PASSWORD})
    session = signup.get_json()
    assert signup.status_code == 200, session
    assert set(session) == set(schemas["GoTrueSession"]["properties"])
    assert set(session["user"]) == set(schemas["GoTrueUser"]["properties"])
    bearer = {"Authorization": f"Bearer {session['access_token']}"}
    user = client.get("/auth/v1/user", headers=bearer).get_json()
    assert set(user) == set(schemas["GoTrueUser"]["properties"])
    wrong = client.post(
        "/auth/v1/token?grant_type=password", json={"email": email, "password": "wrong"}
    )
    assert wrong.status_code == 400
    assert set(wrong.get_json()) == set(schemas["GoTrueError"]["properties"])


def test_a_served_public_key_has_the_documented_fields(make_app):
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    client = make_app(JWT_PRIVATE_KEY=pem).test_client()
    schemas = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    (key,) = client.get("/auth/v1/.well-known/jwks.json").get_json()["keys"]
    assert set(key) <= set(schemas["JsonWebKey"]["properties"])


def test_the_document_describes_what_fal_posts(client):
    operation = client.get("/api/v1/openapi.json").get_json()["paths"]["/api/v1/webhooks/fal"]
    delivery = operation["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert delivery == {"$ref": "#/components/schemas/FalDelivery"}
    headers = {p["name"] for p in operation["post"]["parameters"] if p["in"] == "header"}
    assert headers == {
        "X-Fal-Webhook-Request-Id",
        "X-Fal-Webhook-User-Id",
        "X-Fal-Webhook-Timestamp",
        "X-Fal-Webhook-Signature",
    }


def test_the_local_routes_are_absent_when_supabase_answers_auth(make_app):
    app = make_app(
        AUTH_MODE="supabase",
        SUPABASE_URL="http://127.0.0.1:9",
        SUPABASE_ANON_KEY="anon",
    )
    paths = app.test_client().get("/api/v1/openapi.json").get_json()["paths"]
    assert not [p for p in paths if p.startswith("/auth/v1")]


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    pytest.fail(INSTALL_HINT, pytrace=False)


@pytest.fixture(scope="module")
def served(database_factory, migrated_template, tmp_path_factory):
    env = {
        "APP_ENV": "development",
        "CACHE_ENABLED": "false",
        "RATE_LIMIT_ENABLED": "false",
        "ANALYTICS_REFRESH_SECONDS": "0",
    }
    log = tmp_path_factory.mktemp("docs") / "gunicorn.log"
    with Server(database_factory(migrated_template), env, workers=1, log=log) as server:
        yield server


def browse(chromium: str, url: str, *, screenshot: Path | None = None) -> tuple[str, str]:
    """The page's DOM after its scripts ran (a virtual-time budget, so no wall-clock wait)
    and the browser's log."""
    with tempfile.TemporaryDirectory() as profile:
        command = [
            chromium,
            *("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"),
            *("--disable-background-networking", "--disable-component-update"),
            *("--disable-sync", "--no-first-run", "--hide-scrollbars"),
            f"--user-data-dir={profile}",
            "--virtual-time-budget=15000",
            "--window-size=1280,2400",
            "--enable-logging=stderr",  # the page's console, CSP refusals included
            # offline: no name resolves, so nothing but the local server can be reached
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ]
        command += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
        done = subprocess.run(
            [*command, url], capture_output=True, text=True, timeout=180, check=False
        )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, done.stderr


def test_every_operation_renders_in_a_real_browser(chromium, served):
    document = served_document(served)
    dom, log = browse(chromium, served.url("/api/v1/docs"))
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    # a load from another origin, or an inline script or style, would be refused and logged
    assert not [line for line in console if "Content Security Policy" in line], console
    assert 'class="swagger-ui"' in dom, dom[-2000:]
    assert document["info"]["title"] in dom
    rendered = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert rendered == set(document["paths"])
    operations = sum(1 for item in document["paths"].values() for m in item if m != "parameters")
    assert len(re.findall(r'class="opblock-summary-method"', dom)) == operations
    assert {"gotrue_token", "gotrue_signup"} <= set(re.findall(r"gotrue_\w+", dom))


def test_a_screenshot_of_the_page_is_kept(chromium, served):
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / "api-docs.png"
    target.unlink(missing_ok=True)
    browse(chromium, served.url("/api/v1/docs"), screenshot=target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def served_document(server: Server) -> dict:
    with urllib.request.urlopen(server.url("/api/v1/openapi.json"), timeout=10) as answer:  # noqa: S310
        return json.load(answer)

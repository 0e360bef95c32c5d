"""The API docs page: Swagger UI over /api/v1/openapi.json at /api/v1/docs.

Every asset comes from the ``swagger-ui-bundle`` Python package and is served from here:
no CDN, so the page works offline and the browser loads nothing from elsewhere. The page
and its start-up script are our own (flask-smorest's Swagger UI page starts with an inline
script, which a strict Content-Security-Policy forbids). This page is the one place where
the CSP allows scripts, styles, images and fetches, and only from this origin; every API
route keeps the strict one of ``backend.http.headers``.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, abort, send_from_directory, url_for
from swagger_ui_bundle import swagger_ui_path

from backend.http.access import access

# the files the page loads; the package's others (its own index.html, source maps) stay out
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})
ASSET_MAX_AGE = 24 * 3600  # they change only with the package's version

DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Velro API</title>
<link rel="stylesheet" href="{css}">
<link rel="icon" type="image/png" href="{icon}">
</head>
<body>
<div id="swagger-ui" data-spec-url="{spec}"></div>
<script src="{bundle}"></script>
<script src="{start}"></script>
</body>
</html>
"""

# validatorUrl null: Swagger UI would otherwise send the document to an online validator
START = """window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    displayOperationId: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
"""

blp = Blueprint("docs", __name__, url_prefix="/api/v1/docs")


@blp.get("")
@access("public")
def page() -> Response:
    html = PAGE.format(
        css=url_for("docs.asset", filename="swagger-ui.css"),
        icon=url_for("docs.asset", filename="favicon-32x32.png"),
        bundle=url_for("docs.asset", filename="swagger-ui-bundle.js"),
        start=url_for("docs.start_script"),
        spec=url_for("api-docs.openapi_json"),
    )
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


@blp.get("/start.js")
@access("public")
def start_script() -> Response:
    return Response(START, mimetype="text/javascript")


@blp.get("/assets/<filename>")
@access("public")
def asset(filename: str) -> Response:
    if filename not in ASSETS:
        abort(404)
    response = send_from_directory(str(swagger_ui_path), filename, max_age=ASSET_MAX_AGE)
    response.headers["Cache-Control"] = f"public, max-age={ASSET_MAX_AGE}"
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(blp)

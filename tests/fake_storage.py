"""A fake of Supabase Storage's HTTP API, as far as the official client (storage3) uses it:
upload (multipart, ``x-upsert``), sign (``expiresIn``), download by signed URL, list a
folder (``prefix``, ``limit``) and remove (``prefixes``). It checks the service key on
every call but the signed download, and keeps objects in memory."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time

from flask import Flask, Response, abort, jsonify, request
from werkzeug.serving import make_server

TOKEN_KEY = b"fake storage signing key"


class FakeStorage:
    def __init__(self, service_key: str):
        self.service_key = service_key
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.uploads: list[dict] = []
        self.removals: list[list[str]] = []
        self.removes = True  # False: removals answer 200 and remove nothing, as under a policy
        self.app = self._build()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def _authorized(self) -> None:
        expected = f"Bearer {self.service_key}"
        if request.headers.get("Authorization") != expected or (
            request.headers.get("apikey") != self.service_key
        ):
            abort(Response('{"statusCode":"403","error":"Unauthorized"}', 403))

    def _token(self, bucket: str, name: str, expires: int) -> str:
        message = f"{bucket}/{name}:{expires}".encode()
        return f"{expires}.{hmac.new(TOKEN_KEY, message, hashlib.sha256).hexdigest()}"

    def _build(self) -> Flask:
        app = Flask(__name__)

        @app.post("/storage/v1/object/<bucket>/<path:name>")
        def upload(bucket, name):
            self._authorized()
            upsert = request.headers.get("x-upsert") == "true"
            if (bucket, name) in self.objects and not upsert:
                return jsonify(statusCode="409", error="Duplicate"), 400
            file = request.files["file"]
            self.objects[bucket, name] = (file.read(), file.mimetype)
            self.uploads.append({"bucket": bucket, "name": name, "upsert": upsert})
            return jsonify(Key=f"{bucket}/{name}", Id=name)

        @app.post("/storage/v1/object/sign/<bucket>/<path:name>")
        def sign(bucket, name):
            self._authorized()
            if (bucket, name) not in self.objects:
                return jsonify(statusCode="404", error="not_found"), 400
            expires = int(time.time()) + int(request.get_json()["expiresIn"])
            token = self._token(bucket, name, expires)
            return jsonify(signedURL=f"/object/sign/{bucket}/{name}?token={token}")

        @app.get("/storage/v1/object/sign/<bucket>/<path:name>")
        def download(bucket, name):
            expires, _, _digest = request.args.get("token", "").partition(".")
            if not expires.isdigit() or int(expires) < time.time():
                abort(400)
            if not hmac.compare_digest(
                self._token(bucket, name, int(expires)), request.args["token"]
            ):
                abort(400)
            if (bucket, name) not in self.objects:
                return jsonify(statusCode="404", error="not_found"), 400
            body, content_type = self.objects[bucket, name]
            return Response(body, content_type=content_type)

        @app.post("/storage/v1/object/list/<bucket>")
        def list_folder(bucket):
            self._authorized()
            body = request.get_json()
            folder = body["prefix"].rstrip("/") + "/"
            names = sorted(
                name[len(folder) :]
                for stored_bucket, name in self.objects
                if stored_bucket == bucket
                and name.startswith(folder)
                and "/" not in name[len(folder) :]
            )
            return jsonify([{"name": name} for name in names[: int(body["limit"])]])

        @app.delete("/storage/v1/object/<bucket>")
        def remove(bucket):
            self._authorized()
            removed = [
                name
                for name in request.get_json()["prefixes"]
                if self.removes and self.objects.pop((bucket, name), None)
            ]
            self.removals.append(removed)
            return jsonify([{"name": name} for name in removed])

        return app

"""gunicorn's gthread worker, answering the requests gunicorn itself refuses in our error shape.

gunicorn reads a request's line and headers before the app sees it. A request it refuses
there (a request line longer than ``limit_request_line``, too many or too large headers,
bytes that are not HTTP/1.1) never reaches Flask: gunicorn answers with an HTML page of its
own. This worker answers those refusals with the API's one JSON error shape and the headers
every other answer carries. gunicorn.conf.py names it as the worker class.
"""

from __future__ import annotations

import json

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker
from werkzeug.exceptions import default_exceptions

from backend.http import errors
from backend.http.headers import SECURITY_HEADERS
from backend.http.request_id import HEADER, new_id

DETAIL_LIMIT = 200  # characters of gunicorn's own description kept in a 400's message


class Worker(ThreadWorker):
    def init_process(self):
        # gunicorn's handle_error writes every refusal through util.write_error; in this
        # process, refusals are written by refusal_response instead
        util.write_error = self.write_refusal
        super().init_process()

    def write_refusal(self, sock, status: int, reason: str, detail: str) -> None:
        util.write_nonblock(sock, self.refusal_response(status, reason, detail))

    def refusal_response(self, status: int, reason: str, detail: str) -> bytes:
        """The whole HTTP response for a request gunicorn refused."""
        request_id = new_id()
        body = json.dumps(
            {
                "error": _machine_code(status),
                "message": self.sentence(status, detail),
                "request_id": request_id,
            }
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "Connection": "close",
            HEADER: request_id,
            "Cache-Control": "no-store",
            **SECURITY_HEADERS,
        }
        head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        return (head + "\r\n").encode("latin-1") + body

    def sentence(self, status: int, detail: str) -> str:
        cfg = self.cfg
        if status == 414:
            return (
                f"The request line is longer than {cfg.limit_request_line} bytes; shorten the "
                "URL (send long values in the body)."
            )
        if status == 431:
            return (
                f"The request's headers are too large: at most {cfg.limit_request_fields} "
                f"headers of {cfg.limit_request_field_size} bytes each; send fewer or smaller "
                "headers."
            )
        if status == 417:
            return "Only 'Expect: 100-continue' is understood; drop the Expect header."
        if status == 501:
            return "This Transfer-Encoding is not supported; send the body with Content-Length."
        if status == 400:
            return (
                f"The request is not valid HTTP/1.1 ({detail[:DETAIL_LIMIT]}); fix it and "
                "send it again."
            )
        if status == 403:
            return "This request is refused."
        return errors.INTERNAL_ERROR


def _machine_code(status: int) -> str:
    if status >= 500 and status != 501:
        return "internal_error"
    return errors.machine_code(default_exceptions[status]())

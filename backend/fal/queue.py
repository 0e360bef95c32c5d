"""FAL's queue API through the official client (``fal_client.SyncClient``).

The client reads its hosts (``FAL_QUEUE_RUN_HOST``) when imported and always speaks https;
a local fake is reached by setting that variable and trusting its CA through
``SSL_CERT_FILE``, which httpx honours. Errors come out as two kinds: ``FalRejected`` (FAL
refused this request: retrying cannot help) and ``FalUnavailable`` (FAL or the network
failed: retry later).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import fal_client
import httpx

# FAL answers these when the request may succeed later
RETRYABLE_STATUSES = {408, 409, 425, 429}


class FalUnavailable(Exception):
    """FAL or the network failed; the same request may succeed later."""


class FalRejected(Exception):
    """FAL refused the request itself (bad input, unknown model): do not retry."""


@dataclass(frozen=True)
class RequestState:
    """Where a FAL request stands: ``IN_QUEUE``, ``IN_PROGRESS`` or ``COMPLETED``."""

    status: str
    error: str | None = None


def _translate(error: Exception) -> Exception:
    status = None
    if isinstance(error, fal_client.client.FalClientHTTPError):
        status = error.status_code
    elif isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
    if status is not None:
        if 400 <= status < 500 and status not in RETRYABLE_STATUSES:
            return FalRejected(f"FAL refused the request ({status}): {str(error)[:500]}")
        return FalUnavailable(f"FAL answered {status}: {str(error)[:500]}")
    return FalUnavailable(f"FAL is unreachable: {error}")


class FalQueue:
    """The four queue operations the pipeline needs, with errors translated."""

    def __init__(self, key: str, *, timeout_seconds: float = 30.0) -> None:
        self._client = fal_client.SyncClient(key=key, default_timeout=timeout_seconds)

    def submit(self, model_id: str, arguments: dict[str, Any], webhook_url: str) -> str:
        try:
            return self._client.submit(model_id, arguments, webhook_url=webhook_url).request_id
        except (fal_client.client.FalClientError, httpx.HTTPError, ValueError, KeyError) as error:
            raise _translate(error) from error

    def state(self, model_id: str, request_id: str) -> RequestState:
        try:
            status = self._client.status(model_id, request_id)
        except (fal_client.client.FalClientError, httpx.HTTPError, ValueError, KeyError) as error:
            raise _translate(error) from error
        if isinstance(status, fal_client.Completed):
            return RequestState("COMPLETED", status.error)
        if isinstance(status, fal_client.InProgress):
            return RequestState("IN_PROGRESS")
        return RequestState("IN_QUEUE")

    def result(self, model_id: str, request_id: str) -> dict[str, Any]:
        try:
            return self._client.result(model_id, request_id)
        except (fal_client.client.FalClientError, httpx.HTTPError, ValueError) as error:
            raise _translate(error) from error

    def cancel(self, model_id: str, request_id: str) -> None:
        """Take a request off FAL's queue; FalRejected when FAL did not.

        Only an answer whose ``status`` is ``OK`` says FAL removed it. To a request that has
        started FAL answers ``CANCELLATION_REQUESTED`` (it signals the model, which may still
        finish and be charged), to one that has ended ``ALREADY_COMPLETED``. The client's own
        ``cancel`` drops the answer's body, so the handle's URL is called here.
        """
        handle = self._client.get_handle(model_id, request_id)
        try:
            response = handle.client.put(handle.cancel_url)
            response.raise_for_status()
            answer = response.json().get("status")
        except (httpx.HTTPError, ValueError, AttributeError) as error:
            raise _translate(error) from error
        if answer != "OK":
            raise FalRejected(f"FAL did not take the request off its queue: {answer}")

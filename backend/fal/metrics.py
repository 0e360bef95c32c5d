"""What FAL did, counted for Prometheus (every process, including the worker)."""

from __future__ import annotations

from prometheus_client import Counter

SUBMISSIONS = Counter(
    "velro_fal_submissions",
    "Generations sent to FAL, by outcome (queued, rejected, unavailable).",
    ["outcome"],
)
WEBHOOKS = Counter(
    "velro_fal_webhooks",
    "FAL webhook deliveries, by outcome (applied; not_held: acknowledged, of a request its"
    " generation does not hold or of a generation deleted since; unknown_request,"
    " bad_signature, bad_body, keys_unavailable).",
    ["outcome"],
)

# every outcome exported from the start (at 0), so a dashboard's series exist before traffic
for _outcome in ("queued", "rejected", "unavailable"):
    SUBMISSIONS.labels(_outcome)
for _outcome in (
    "applied",
    "not_held",
    "unknown_request",
    "bad_signature",
    "bad_body",
    "keys_unavailable",
):
    WEBHOOKS.labels(_outcome)

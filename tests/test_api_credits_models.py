"""/api/v1/credits (own balance and ledger) and /api/v1/models (public catalog)."""

from __future__ import annotations

import pytest
from api_support import MODEL_COST, assert_error, assert_names_field, running_api


@pytest.fixture(scope="module")
def api(database_factory, migrated_template):
    with running_api(database_factory(migrated_template)) as running:
        yield running


# balance -----------------------------------------------------------------------------------


def test_balance_now_and_totals_as_of_the_last_refresh(api):
    user = api.user()
    assert api.ok("GET", "/api/v1/credits/balance", user) == {
        "balance": 100,
        "plan": "free",
        "totals": None,
    }
    api.generation(user)
    api.refresh_analytics()
    assert api.ok("GET", "/api/v1/credits/balance", user) == {
        "balance": 100 - MODEL_COST,
        "plan": "free",
        "totals": {"credited": 100, "charged": MODEL_COST, "refunded": 0, "charges": 1},
    }


def test_a_suspended_user_still_sees_their_balance_but_no_ledger(api):
    user = api.user()
    api.suspend(user)
    assert api.ok("GET", "/api/v1/credits/balance", user)["balance"] == 100
    assert api.ok("GET", "/api/v1/credits/transactions", user)["items"] == []


# transactions ------------------------------------------------------------------------------


def test_transactions_page_newest_first_and_filter_by_kind(api):
    user, other = api.user(), api.user()
    api.grant_credits(user, 500)
    first, second = api.generation(user), api.generation(user)
    api.ok("POST", f"/api/v1/generations/{first['id']}/cancel", user)
    api.generation(other)

    seen, cursor = [], None
    while True:
        page = api.ok(
            "GET",
            "/api/v1/credits/transactions",
            user,
            query_string={"limit": 2, **({"cursor": cursor} if cursor else {})},
        )
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [(t["kind"], t["amount"], t["generation_id"]) for t in seen] == [
        ("refund", MODEL_COST, first["id"]),
        ("charge", -MODEL_COST, second["id"]),
        ("charge", -MODEL_COST, first["id"]),
        ("grant", 500, None),
        ("grant", 100, None),
    ]
    assert [t["balance_after"] for t in seen] == [550, 500, 550, 600, 100]
    assert seen[0]["refund_of"] == seen[2]["id"]

    charges = api.ok("GET", "/api/v1/credits/transactions", user, query_string={"kind": "charge"})
    assert [t["generation_id"] for t in charges["items"]] == [second["id"], first["id"]]


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ({"kind": "gift"}, 422, "kind"),
        ({"limit": -1}, 422, "limit"),
        ({"cursor": "WyJ4Il0"}, 400, None),
        ({"cursor": "W1sidCIsIjIwMjAtMDEtMDFUMDA6MDA6MDBaIl1d"}, 400, None),
    ],  # a timestamp key
)
def test_transactions_refuse_bad_queries(api, query, status, field):
    user = api.user()
    body = assert_error(
        api.call("GET", "/api/v1/credits/transactions", user, query_string=query), status
    )
    if field:
        assert_names_field(body, field)
    else:
        assert body["error"] == "bad_cursor"


# models ------------------------------------------------------------------------------------


def test_models_are_public(api):
    catalog = api.ok("GET", "/api/v1/models")["items"]
    assert len(catalog) == 7
    flux = next(m for m in catalog if m["id"] == "fal-ai/flux-pro/v1.1-ultra")
    assert (flux["kind"], flux["credit_cost"]) == ("image", 50)
    assert "num_images" in flux["parameter_schema"]["properties"]
    videos = api.ok("GET", "/api/v1/models", query_string={"kind": "video"})["items"]
    assert {m["kind"] for m in videos} == {"video"}
    assert len(videos) == 4


def test_a_disabled_model_is_not_listed(api):
    api.sql("update public.models set enabled = false where id = 'fal-ai/veo3'")
    try:
        ids = [m["id"] for m in api.ok("GET", "/api/v1/models")["items"]]
        assert "fal-ai/veo3" not in ids
    finally:
        api.sql("update public.models set enabled = true where id = 'fal-ai/veo3'")


def test_models_refuse_an_unknown_kind(api):
    assert_names_field(assert_error(api.call("GET", "/api/v1/models?kind=audio"), 422), "kind")

"""/api/v1/generations: create (charged once per key), list, read, retitle, delete, cancel,
authorize, share."""

from __future__ import annotations

import base64
import json
import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from api_support import MODEL, MODEL_COST, assert_error, assert_names_field, running_api


@pytest.fixture(scope="module")
def api(database_factory, migrated_template):
    with running_api(database_factory(migrated_template)) as running:
        yield running


@pytest.fixture(scope="module")
def stranger(api):
    return api.user("stranger")


@pytest.fixture
def owner(api):
    user = api.user("owner")
    api.grant_credits(user, 1000)
    return user


def balance(api, user) -> int:
    return api.ok("GET", "/api/v1/credits/balance", user)["balance"]


def charges(api, user) -> int:
    return len(
        api.sql(
            "select 1 from public.credit_ledger where user_id = %s and kind = 'charge'", (user.id,)
        )
    )


def create(api, user, body=None, key="key-1"):
    body = {"model_id": MODEL, "prompt": "a fox in the snow"} if body is None else body
    headers = {"Idempotency-Key": key} if key is not None else {}
    return api.call("POST", "/api/v1/generations", user, json=body, headers=headers)


# create ------------------------------------------------------------------------------------


def test_create_charges_once_and_stays_pending(api, owner):
    start = balance(api, owner)
    response = create(
        api,
        owner,
        {
            "model_id": MODEL,
            "prompt": "a fox",
            "title": "Fox",
            "parameters": {"num_images": 2, "aspect_ratio": "1:1"},
        },
    )
    assert response.status_code == 201, response.get_json()
    generation = response.get_json()
    assert generation["status"] == "pending"
    assert generation["cost"] == 2 * MODEL_COST, "two images cost twice one"
    assert generation["owner_id"] == owner.id
    assert generation["parameters"] == {"num_images": 2, "aspect_ratio": "1:1"}
    assert "idempotency_key" not in generation
    assert "request_hash" not in generation
    assert balance(api, owner) == start - 2 * MODEL_COST

    replay = create(
        api,
        owner,
        {
            "model_id": MODEL,
            "title": "Fox",
            "prompt": "a fox",
            "parameters": {"aspect_ratio": "1:1", "num_images": 2},
        },
    )
    assert replay.status_code == 200
    assert replay.get_json() == generation
    assert balance(api, owner) == start - 2 * MODEL_COST
    assert charges(api, owner) == 1


def test_a_whole_number_written_with_a_fraction_is_priced_as_that_number(api, owner):
    start = balance(api, owner)
    body = {"model_id": MODEL, "prompt": "two foxes", "parameters": {"num_images": 2.0}}
    response = create(api, owner, body, key="two-point-oh")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["cost"] == 2 * MODEL_COST
    assert balance(api, owner) == start - 2 * MODEL_COST


def test_a_replay_with_another_body_is_a_conflict_and_writes_nothing(api, owner):
    assert create(api, owner, key="fingerprinted").status_code == 201
    before = api.fingerprint()
    for body in (
        {"model_id": MODEL, "prompt": "another fox"},
        {"model_id": MODEL, "prompt": "a fox in the snow", "parameters": {"num_images": 4}},
        {"model_id": MODEL, "prompt": "a fox in the snow", "title": "titled now"},
    ):
        error = assert_error(create(api, owner, body, key="fingerprinted"), 409, "conflict")
        assert "Idempotency-Key" in error["message"]
    assert api.fingerprint() == before


def test_a_replay_asking_for_another_webhook_is_a_conflict_and_writes_nothing(api, owner):
    hook = "https://hooks.example.com/velro"
    body = {"model_id": MODEL, "prompt": "a hooked fox", "webhook_url": hook}
    first = create(api, owner, body, key="hooked")
    assert first.status_code == 201
    unhooked = create(api, owner, {"model_id": MODEL, "prompt": "a plain fox"}, key="plain")
    assert unhooked.status_code == 201
    before = api.fingerprint()
    same_events = {**body, "webhook_events_filter": ["completed", "start"]}
    for replay in (body, same_events):
        assert create(api, owner, replay, key="hooked").get_json() == first.get_json()
    for key, other in (
        ("hooked", {**body, "webhook_url": "https://hooks.example.com/elsewhere"}),
        ("hooked", {**body, "webhook_events_filter": ["completed"]}),
        ("hooked", {"model_id": MODEL, "prompt": "a hooked fox"}),
        ("plain", {"model_id": MODEL, "prompt": "a plain fox", "webhook_url": hook}),
    ):
        error = assert_error(create(api, owner, other, key=key), 409, "conflict")
        assert "Idempotency-Key" in error["message"]
    assert api.fingerprint() == before


def test_without_a_key_every_request_is_a_new_charged_generation(api, owner):
    start = balance(api, owner)
    first, second = (create(api, owner, key=None) for _ in range(2))
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.get_json()["id"] != second.get_json()["id"]
    assert balance(api, owner) == start - 2 * MODEL_COST


@pytest.mark.parametrize(
    ("model_id", "parameters", "cost"),
    [
        (MODEL, {}, MODEL_COST),
        (MODEL, {"num_images": 4}, 4 * MODEL_COST),
        ("fal-ai/kling-video/v2.1/master/text-to-video", {}, 5 * 70),
        ("fal-ai/kling-video/v2.1/master/text-to-video", {"duration": "10"}, 10 * 70),
        ("fal-ai/veo3", {"duration": "6s"}, 6 * 63),
        ("fal-ai/wan-pro/text-to-video", {}, 300),
    ],
)
def test_the_price_follows_the_output(api, owner, model_id, parameters, cost):
    api.grant_credits(owner, 1000)
    start = balance(api, owner)
    body = {"model_id": model_id, "prompt": "priced", "parameters": parameters}
    generation = api.ok("POST", "/api/v1/generations", owner, 201, json=body)
    assert generation["cost"] == cost
    assert balance(api, owner) == start - cost


def test_the_catalog_states_each_price_unit(api):
    units = {m["id"]: m["price_unit"] for m in api.ok("GET", "/api/v1/models")["items"]}
    assert units[MODEL] == "image"
    assert units["fal-ai/veo3"] == "second"
    assert units["fal-ai/wan-pro/text-to-video"] == "generation"


def test_string_parameters_are_bounded(api, owner):
    before = api.fingerprint()
    body = {
        "model_id": "fal-ai/imagen4/preview/ultra",
        "prompt": "x",
        "parameters": {"negative_prompt": "n" * 20_000},
    }
    error = assert_error(create(api, owner, body), 400, "bad_request")
    assert "parameters.negative_prompt must be at most 1000 characters" in error["message"]
    assert api.fingerprint() == before


def test_concurrent_retries_with_one_key_charge_once(api, owner):
    start = balance(api, owner)
    barrier = threading.Barrier(6)

    def submit(_):
        client = api.app.test_client()
        barrier.wait()
        return client.post(
            "/api/v1/generations",
            headers={"Idempotency-Key": "race", "Authorization": f"Bearer {owner.access_token}"},
            json={"model_id": MODEL, "prompt": "a race"},
        )

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(submit, range(6)))
    assert sorted(r.status_code for r in responses) == [200] * 5 + [201]
    assert len({r.get_json()["id"] for r in responses}) == 1
    assert balance(api, owner) == start - MODEL_COST
    assert charges(api, owner) == 1


def test_the_same_key_of_another_user_is_another_generation(api, owner):
    other = api.user("other")
    first = create(api, owner, key="shared-key").get_json()
    second = create(api, other, key="shared-key")
    assert second.status_code == 201
    assert second.get_json()["id"] != first["id"]


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"Idempotency-Key": ""}, "Idempotency-Key"),
        ({"Idempotency-Key": "k" * 256}, "Idempotency-Key"),
    ],
)
def test_create_needs_a_sane_idempotency_key(api, owner, headers, field):
    before = api.fingerprint()
    response = api.call(
        "POST",
        "/api/v1/generations",
        owner,
        headers=headers,
        json={"model_id": MODEL, "prompt": "x"},
    )
    assert_names_field(assert_error(response, 422, "validation_failed"), field)
    assert api.fingerprint() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "x"}, "model_id"),
        ({"model_id": MODEL}, "prompt"),
        ({"model_id": MODEL, "prompt": "   "}, "prompt"),
        ({"model_id": MODEL, "prompt": "x" * 4001}, "prompt"),
        ({"model_id": MODEL, "prompt": "x", "parameters": [1]}, "parameters"),
        ({"model_id": MODEL, "prompt": "x", "project_id": "nope"}, "project_id"),
        ({"model_id": MODEL, "prompt": "x", "title": "t" * 201}, "title"),
        ({"model_id": MODEL, "prompt": "x", "cost": 0}, "cost"),
    ],
)
def test_create_refuses_bad_fields_naming_them(api, owner, body, field):
    before = api.fingerprint()
    assert_names_field(assert_error(create(api, owner, body), 422), field)
    assert api.fingerprint() == before


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"model_id": "fal-ai/nothing", "prompt": "x"}, "model fal-ai/nothing"),
        ({"model_id": MODEL, "prompt": "x", "parameters": {"steps": 3}}, "parameters.steps"),
        (
            {"model_id": MODEL, "prompt": "x", "parameters": {"num_images": "2"}},
            "parameters.num_images",
        ),
        (
            {"model_id": MODEL, "prompt": "x", "parameters": {"num_images": 9}},
            "parameters.num_images",
        ),
        (
            {"model_id": MODEL, "prompt": "x", "parameters": {"aspect_ratio": "5:1"}},
            "parameters.aspect_ratio",
        ),
    ],
)
def test_create_refuses_what_the_model_does_not_take(api, owner, body, words):
    before = api.fingerprint()
    error = assert_error(create(api, owner, body), 400, "bad_request")
    assert words in error["message"]
    assert api.fingerprint() == before


def test_create_without_enough_credits_is_402_and_writes_nothing(api):
    poor = api.user("poor")
    api.set_credits(poor, MODEL_COST - 1)
    before = api.fingerprint()
    assert_error(create(api, poor), 402, "insufficient_credits")
    assert api.fingerprint() == before


def test_create_in_a_project_needs_write_access_there(api, owner, stranger):
    viewer, editor = api.user("viewer"), api.user("editor")
    team = api.team(owner)
    api.join(team, owner, viewer, "viewer")
    api.join(team, owner, editor, "editor")
    project = api.project(owner)
    api.ok(
        "PUT",
        f"/api/v1/projects/{project['id']}/teams/{team['id']}",
        owner,
        json={"access_level": "editor"},
    )
    body = {"model_id": MODEL, "prompt": "x", "project_id": project["id"]}

    before = api.fingerprint()
    assert_error(create(api, viewer, body), 403, "forbidden")
    assert_error(create(api, stranger, body), 404, "not_found")
    assert_error(create(api, owner, {**body, "project_id": str(uuid.uuid4())}), 404)
    assert api.fingerprint() == before
    made = create(api, editor, body)
    assert made.status_code == 201
    assert made.get_json()["project_id"] == project["id"]


def test_a_suspended_user_cannot_create(api, owner):
    api.suspend(owner)
    before = api.fingerprint()
    assert_error(create(api, owner), 403, "forbidden")
    assert api.fingerprint() == before


# list --------------------------------------------------------------------------------------


def test_list_filters_and_pages(api, owner, stranger):
    project = api.project(owner)
    in_project = [api.generation(owner, project_id=project["id"])["id"] for _ in range(3)]
    loose = api.generation(owner)["id"]
    cancelled = api.generation(owner)["id"]
    api.ok("POST", f"/api/v1/generations/{cancelled}/cancel", owner)

    def ids(**query):
        found, cursor = [], None
        while True:
            page = api.ok(
                "GET",
                "/api/v1/generations",
                owner,
                query_string={**query, **({"cursor": cursor} if cursor else {})},
            )
            found += [g["id"] for g in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return found

    assert ids(limit=2) == [cancelled, loose, *reversed(in_project)]
    assert ids(project_id=project["id"], limit=1) == list(reversed(in_project))
    assert ids(status="cancelled") == [cancelled]
    assert ids(status="pending", limit=100) == [loose, *reversed(in_project)]
    assert ids(model_id="fal-ai/veo3") == []
    assert api.ok("GET", "/api/v1/generations", stranger)["items"] == []


def feed(api, user, **query) -> list[str]:
    """Every id of a list, following next_cursor to the end."""
    found, cursor = [], None
    while True:
        page = api.ok(
            "GET",
            "/api/v1/generations",
            user,
            query_string={**query, **({"cursor": cursor} if cursor else {})},
        )
        found += [g["id"] for g in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def test_the_default_list_holds_own_team_and_shared_work_and_public_work_is_its_own_feed(
    api, owner
):
    member = api.user("member")
    team = api.team(owner)
    api.join(team, owner, member, "editor")
    team_project = api.project(owner)
    api.link(team_project, team, owner, "editor")
    gallery = api.project(owner, visibility="public")
    in_team_project = api.generation(owner, project_id=team_project["id"])["id"]
    by_member = api.generation(member, project_id=team_project["id"])["id"]
    shared = api.generation(owner)["id"]
    api.ok("PUT", f"/api/v1/generations/{shared}/share", owner, json={"team_id": team["id"]})
    public = [api.generation(owner, project_id=gallery["id"])["id"] for _ in range(3)]
    own_private = api.generation(member)["id"]

    assert feed(api, member, limit=1) == [own_private, shared, by_member, in_team_project]
    assert feed(api, member, scope="mine") == feed(api, member)
    everyone_public = feed(api, member, scope="public", limit=2)
    assert set(public) <= set(everyone_public)
    assert not {own_private, shared, by_member, in_team_project} & set(everyone_public)
    assert feed(api, member, scope="public", project_id=gallery["id"], limit=1) == list(
        reversed(public)
    )
    # the owner's default list holds her public project's work: it is hers
    assert set(public) <= set(feed(api, owner, limit=100))


def test_the_default_list_reads_a_busy_project_past_its_newest_rows(api, owner):
    """A project whose newest rows all make the page is read on, down to the page's end."""
    member = api.user("member")
    api.grant_credits(member, 1000)
    team = api.team(owner)
    api.join(team, owner, member, "editor")
    project = api.project(owner)
    api.link(project, team, owner)
    older_own = [api.generation(member)["id"] for _ in range(8)]
    newer_in_project = [api.generation(owner, project_id=project["id"])["id"] for _ in range(6)]

    newest_first = [*reversed(newer_in_project), *reversed(older_own)]
    assert feed(api, member, limit=5) == newest_first
    page = api.ok("GET", "/api/v1/generations", member, query_string={"limit": 5})
    assert [g["id"] for g in page["items"]] == newest_first[:5]


def test_a_page_of_the_default_list_can_come_from_one_of_many_projects(api, owner):
    """Eleven reachable projects, one of which holds the page's eleven newest rows: the page
    is that project's work, not one row from each project."""
    api.grant_credits(owner, 21 * MODEL_COST)
    member = api.user("member")
    team = api.team(owner)
    api.join(team, owner, member, "viewer")
    quiet = [api.project(owner) for _ in range(10)]
    busy = api.project(owner)
    for project in [*quiet, busy]:
        api.link(project, team, owner)
    older = [api.generation(owner, project_id=project["id"])["id"] for project in quiet]
    newest = [api.generation(owner, project_id=busy["id"])["id"] for _ in range(11)]

    page = api.ok("GET", "/api/v1/generations", member, query_string={"limit": 10})
    assert [g["id"] for g in page["items"]] == list(reversed(newest))[:10]
    assert feed(api, member, limit=10) == [*reversed(newest), *reversed(older)]


def test_work_shared_with_two_of_a_members_teams_is_listed_once_and_never_passed(api, owner):
    api.grant_credits(owner, 10 * MODEL_COST)
    member = api.user("member")
    api.grant_credits(member, 1000)
    teams = [api.team(owner) for _ in range(2)]
    for team in teams:
        api.join(team, owner, member, "viewer")
    own = [api.generation(member)["id"] for _ in range(4)]  # older than every shared one
    shared = [api.generation(owner)["id"] for _ in range(6)]
    for generation in shared:
        for team in teams:
            path = f"/api/v1/generations/{generation}/share"
            api.ok("PUT", path, owner, json={"team_id": team["id"]})
    newest_first = [*reversed(shared), *reversed(own)]
    for limit in (1, 2, 3, 4, 6, 100):
        assert feed(api, member, limit=limit) == newest_first, f"limit {limit}"


@pytest.mark.parametrize("seed", range(3))
def test_every_page_of_the_default_list_matches_its_definition(api, owner, seed):
    """Random work over several projects, own work and shares, each project and share in one
    or both of the member's teams: every page size walks the same list, newest first, of
    exactly what the member may read (public work aside), each generation once."""
    chance = random.Random(seed)
    api.grant_credits(owner, 30 * MODEL_COST)
    member = api.user("member")
    api.grant_credits(member, 1000)
    teams = [api.team(owner) for _ in range(2)]
    for team in teams:
        api.join(team, owner, member, "viewer")

    def some_teams():
        return chance.choice([teams[:1], teams[1:], teams])

    projects = [api.project(owner) for _ in range(6)]
    for project in projects[:4]:  # the last two are the owner's alone
        for team in some_teams():
            api.link(project, team, owner)
    gallery = api.project(owner, visibility="public")
    expected = []
    for _ in range(30):
        roll = chance.random()
        if roll < 0.15:
            expected.append(api.generation(member)["id"])
        elif roll < 0.25:
            generation = api.generation(owner)["id"]
            path = f"/api/v1/generations/{generation}/share"
            for team in some_teams():
                api.ok("PUT", path, owner, json={"team_id": team["id"]})
            expected.append(generation)
        elif roll < 0.35:
            api.generation(owner, project_id=gallery["id"])  # public: its own feed
        else:
            project = chance.choice(projects)
            generation = api.generation(owner, project_id=project["id"])["id"]
            if project in projects[:4]:
                expected.append(generation)
    newest_first = list(reversed(expected))
    for limit in (1, 2, 3, 7, 50):
        assert feed(api, member, limit=limit) == newest_first, f"limit {limit}"


@pytest.mark.parametrize("seed", range(3))
def test_every_page_of_the_default_list_over_many_projects_matches_its_definition(api, owner, seed):
    """More reachable projects than a page has rows, one of them busier, and the member's
    own work both inside projects (so it is own work and a project's at once) and outside:
    every page size walks exactly that work, newest first, each generation once."""
    chance = random.Random(seed)
    api.grant_credits(owner, 40 * MODEL_COST)
    member = api.user("member")
    api.grant_credits(member, 40 * MODEL_COST)
    team = api.team(owner)
    api.join(team, owner, member, "editor")
    projects = [api.project(owner) for _ in range(8)]
    for project in projects:
        api.link(project, team, owner, "editor")
    expected = []
    for _ in range(36):
        roll = chance.random()
        if roll < 0.15:
            expected.append(api.generation(member)["id"])
            continue
        author = chance.choice([owner, member])
        project = projects[0] if roll < 0.55 else chance.choice(projects)
        expected.append(api.generation(author, project_id=project["id"])["id"])
    newest_first = list(reversed(expected))
    for limit in (1, 2, 3, 5, 7, 50):
        assert feed(api, member, limit=limit) == newest_first, f"limit {limit}"


OTHER_MODEL = "fal-ai/imagen4/preview/ultra"


@pytest.mark.parametrize("seed", range(2))
def test_every_filtered_page_of_the_default_list_matches_its_definition(api, owner, seed):
    """Filters apply inside every source: by status, model or project, each page size walks
    exactly the matching work the member may read (own, in reached projects, shared), newest
    first, each generation once, with more projects than a page has rows."""
    chance = random.Random(seed)
    api.grant_credits(owner, 60 * MODEL_COST)
    member = api.user("member")
    api.grant_credits(member, 20 * MODEL_COST)
    teams = [api.team(owner) for _ in range(2)]
    for team in teams:
        api.join(team, owner, member, "editor")
    projects = [api.project(owner) for _ in range(7)]
    for project in projects[:6]:  # the last is the owner's alone
        api.link(project, chance.choice(teams), owner, "editor")
    made = []  # (id, project id, model id, reached by the member)
    for _ in range(40):
        roll = chance.random()
        model = chance.choice([MODEL, OTHER_MODEL])
        if roll < 0.2:
            project = chance.choice([None, *projects[:6]])
            fields = {"project_id": project["id"]} if project else {}
            generation = api.generation(member, model_id=model, **fields)
            made.append((generation["id"], project and project["id"], model, True))
            continue
        project = chance.choice(projects)
        generation = api.generation(owner, model_id=model, project_id=project["id"])
        shared = roll < 0.35
        if shared:
            path = f"/api/v1/generations/{generation['id']}/share"
            api.ok("PUT", path, owner, json={"team_id": chance.choice(teams)["id"]})
        made.append((generation["id"], project["id"], model, shared or project in projects[:6]))
    cancelled = {row[0] for row in chance.sample(made, 12)}
    for generation in cancelled:
        api.ok("POST", f"/api/v1/generations/{generation}/cancel", owner)

    def expected(project_id=None, status=None, model_id=None) -> list[str]:
        return [
            generation
            for generation, project, model, reached in reversed(made)
            if reached
            and project_id in (None, project)
            and model_id in (None, model)
            and status in (None, "cancelled" if generation in cancelled else "pending")
        ]

    for query in (
        {"status": "cancelled"},
        {"status": "pending", "model_id": OTHER_MODEL},
        {"model_id": MODEL},
        {"project_id": projects[0]["id"]},
        {"project_id": projects[6]["id"]},  # her shares from a project she does not reach
        {"project_id": projects[1]["id"], "status": "pending"},
    ):
        want = expected(**query)
        for limit in (1, 3, 5):
            assert feed(api, member, limit=limit, **query) == want, f"{query} limit {limit}"


def test_the_public_feed_follows_visibility_and_filters(api, owner, stranger):
    gallery = api.project(owner, visibility="public")
    done = api.generation(owner, project_id=gallery["id"])["id"]
    api.ok("POST", f"/api/v1/generations/{done}/cancel", owner)
    pending = api.generation(owner, project_id=gallery["id"])["id"]

    assert feed(api, stranger, scope="public", project_id=gallery["id"]) == [pending, done]
    assert feed(api, stranger, scope="public", status="cancelled", project_id=gallery["id"]) == [
        done
    ]
    assert feed(api, stranger, project_id=gallery["id"]) == []  # not the stranger's work

    api.ok("PATCH", f"/api/v1/projects/{gallery['id']}", owner, json={"visibility": "private"})
    assert not {done, pending} & set(feed(api, stranger, scope="public", limit=100))
    api.ok("PATCH", f"/api/v1/projects/{gallery['id']}", owner, json={"visibility": "public"})
    assert feed(api, stranger, scope="public", project_id=gallery["id"]) == [pending, done]


def test_a_suspended_user_lists_nothing_in_either_feed(api, owner):
    gallery = api.project(owner, visibility="public")
    api.generation(owner, project_id=gallery["id"])
    reader = api.user("reader")
    assert feed(api, reader, scope="public") != []
    api.suspend(reader)
    assert feed(api, reader, scope="public") == []
    assert feed(api, reader) == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "done"}, "status"),
        ({"project_id": "p1"}, "project_id"),
        ({"limit": 101}, "limit"),
        ({"model_id": ""}, "model_id"),
        ({"scope": "everything"}, "scope"),
        ({"scope": ""}, "scope"),
    ],
)
def test_list_refuses_bad_filters(api, owner, query, field):
    response = api.call("GET", "/api/v1/generations", owner, query_string=query)
    assert_names_field(assert_error(response, 422), field)


def forged(*values) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "e30",
        forged(["t", "2024-01-01T00:00:00+00:00"], ["u", 123]),
        forged(["t", "2024-01-01T00:00:00+00:00"], ["u", [1]]),
        forged(["t", 1704067200], ["u", "00000000-0000-0000-0000-000000000000"]),
        forged(["t", "2024-01-01T00:00:00"], ["u", "00000000-0000-0000-0000-000000000000"]),
    ],
)
@pytest.mark.parametrize("scope", ["mine", "public"])
def test_list_refuses_a_forged_cursor(api, owner, cursor, scope):
    query = {"cursor": cursor, "scope": scope}
    response = api.call("GET", "/api/v1/generations", owner, query_string=query)
    assert_error(response, 400, "bad_cursor")


# read, retitle, delete ----------------------------------------------------------------------


def test_read_and_retitle(api, owner):
    generation = api.generation(owner)
    path = f"/api/v1/generations/{generation['id']}"
    assert api.ok("GET", path, owner) == generation
    assert api.ok("PATCH", path, owner, json={"title": "Dusk"})["title"] == "Dusk"
    assert api.ok("PATCH", path, owner, json={"title": None})["title"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": "t" * 201}, "title"),
        ({"title": 5}, "title"),
        ({"title": "ok", "prompt": "changed"}, "prompt"),
    ],
)
def test_retitle_refuses_bad_fields(api, owner, body, field):
    generation = api.generation(owner)
    before = api.fingerprint()
    response = api.call("PATCH", f"/api/v1/generations/{generation['id']}", owner, json=body)
    assert_names_field(assert_error(response, 422), field)
    assert api.fingerprint() == before


def test_unknown_unreadable_and_malformed_ids_are_404(api, owner, stranger):
    generation = api.generation(owner)
    for path in (
        f"/api/v1/generations/{generation['id']}",
        f"/api/v1/generations/{uuid.uuid4()}",
        "/api/v1/generations/not-a-uuid",
    ):
        body = assert_error(api.call("GET", path, stranger), 404, "not_found")
        assert generation["id"] not in str(body)
        assert_error(api.call("PATCH", path, stranger, json={"title": "x"}), 404)
        assert_error(api.call("DELETE", path, stranger), 404)
        assert_error(api.call("POST", f"{path}/cancel", stranger), 404)


def test_a_charged_generation_in_flight_is_not_deleted_until_cancelled(api, owner):
    start = balance(api, owner)
    generation = api.generation(owner)
    path = f"/api/v1/generations/{generation['id']}"
    before = api.fingerprint()
    error = assert_error(api.call("DELETE", path, owner), 409, "conflict")
    assert "cancel it" in error["message"]
    assert api.fingerprint() == before
    api.ok("POST", f"{path}/cancel", owner)
    api.ok("DELETE", path, owner, 204)
    assert_error(api.call("GET", path, owner), 404)
    assert balance(api, owner) == start, "the cancel refunded the charge before the delete"


def test_a_project_with_charged_work_in_flight_is_not_deleted(api, owner):
    project = api.project(owner)
    generation = api.generation(owner, project_id=project["id"])
    before = api.fingerprint()
    response = api.call("DELETE", f"/api/v1/projects/{project['id']}", owner)
    assert_error(response, 409, "conflict")
    assert api.fingerprint() == before
    api.ok("POST", f"/api/v1/generations/{generation['id']}/cancel", owner)
    api.ok("DELETE", f"/api/v1/projects/{project['id']}", owner, 204)


# cancel ------------------------------------------------------------------------------------


def test_cancel_refunds_once(api, owner):
    start = balance(api, owner)
    generation = api.generation(owner)
    cancelled = api.ok("POST", f"/api/v1/generations/{generation['id']}/cancel", owner)
    assert cancelled["status"] == "cancelled"
    assert cancelled["completed_at"] is not None
    assert balance(api, owner) == start
    again = api.call("POST", f"/api/v1/generations/{generation['id']}/cancel", owner)
    assert_error(again, 409, "conflict")
    assert balance(api, owner) == start


# authorize ---------------------------------------------------------------------------------


def test_authorize_answers_in_the_documented_shape(api, owner):
    generation = api.generation(owner)
    answer = api.ok("POST", f"/api/v1/generations/{generation['id']}/authorize", owner)
    assert set(answer) == {
        "access_granted",
        "access_method",
        "effective_role",
        "permissions",
        "response_time_ms",
        "cache_hit",
    }
    assert answer["access_granted"] is True
    assert answer["access_method"] == "direct_ownership"
    assert answer["effective_role"] == "owner"
    assert answer["permissions"] == ["read", "write", "share", "delete"]
    assert isinstance(answer["response_time_ms"], float) and answer["response_time_ms"] > 0
    assert answer["cache_hit"] is False


def test_authorize_tells_nothing_about_what_the_caller_cannot_read(api, owner, stranger):
    generation = api.generation(owner)
    denied = api.ok("POST", f"/api/v1/generations/{generation['id']}/authorize", stranger)
    unknown = api.ok("POST", f"/api/v1/generations/{uuid.uuid4()}/authorize", stranger)
    for answer in (denied, unknown):
        assert answer["access_granted"] is False
        assert (answer["access_method"], answer["effective_role"], answer["permissions"]) == (
            None,
            None,
            [],
        )
    assert_error(api.call("POST", "/api/v1/generations/nope/authorize", stranger), 404)


# share -------------------------------------------------------------------------------------


def test_share_grants_the_team_at_the_lower_role_and_unshare_ends_it(api, owner):
    member = api.user("member")
    team = api.team(owner)
    api.join(team, owner, member, "editor")
    generation = api.generation(owner)
    path = f"/api/v1/generations/{generation['id']}"
    assert_error(api.call("GET", path, member), 404)

    share = api.ok("PUT", f"{path}/share", owner, json={"team_id": team["id"]})
    assert (share["generation_id"], share["team_id"], share["role"]) == (
        generation["id"],
        team["id"],
        "viewer",
    )
    access = api.ok("POST", f"{path}/authorize", member)
    assert (access["access_method"], access["effective_role"]) == ("generation_share", "viewer")
    assert_error(api.call("PATCH", path, member, json={"title": "x"}), 403, "forbidden")

    api.ok("PUT", f"{path}/share", owner, json={"team_id": team["id"], "role": "admin"})
    assert api.ok("POST", f"{path}/authorize", member)["effective_role"] == "editor"
    assert_error(api.call("DELETE", f"{path}/share/{team['id']}", member), 403)

    api.ok("DELETE", f"{path}/share/{team['id']}", owner, 204)
    assert_error(api.call("GET", path, member), 404)
    assert_error(api.call("DELETE", f"{path}/share/{team['id']}", owner), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "team_id"),
        ({"team_id": "t"}, "team_id"),
        ({"team_id": str(uuid.uuid4()), "role": "owner"}, "role"),
    ],
)
def test_share_refuses_bad_fields(api, owner, body, field):
    generation = api.generation(owner)
    response = api.call("PUT", f"/api/v1/generations/{generation['id']}/share", owner, json=body)
    assert_names_field(assert_error(response, 422), field)


def test_share_only_with_own_teams(api, owner, stranger):
    generation = api.generation(owner)
    foreign = api.team(stranger)
    before = api.fingerprint()
    response = api.call(
        "PUT",
        f"/api/v1/generations/{generation['id']}/share",
        owner,
        json={"team_id": foreign["id"]},
    )
    body = assert_error(response, 404, "not_found")
    assert foreign["name"] not in str(body)
    assert api.fingerprint() == before


def test_sharing_into_a_team_needs_editor_and_its_admins_take_shares_out(api, owner):
    team_owner, admin = api.user("team-owner"), api.user("team-admin")
    team = api.team(team_owner)
    api.join(team, team_owner, owner, "viewer")
    api.join(team, team_owner, admin, "admin")
    generation = api.generation(owner)
    share = f"/api/v1/generations/{generation['id']}/share"
    assert_error(api.call("PUT", share, owner, json={"team_id": team["id"]}), 403, "forbidden")

    api.ok(
        "PATCH",
        f"/api/v1/teams/{team['id']}/members/{owner.id}",
        team_owner,
        json={"role": "editor"},
    )
    api.ok("PUT", share, owner, json={"team_id": team["id"], "role": "viewer"})
    assert (
        api.ok("POST", f"/api/v1/generations/{generation['id']}/authorize", admin)["effective_role"]
        == "viewer"
    )
    api.ok("DELETE", f"{share}/{team['id']}", admin, 204)
    assert_error(api.call("GET", f"/api/v1/generations/{generation['id']}", admin), 404)


def test_only_a_generations_owners_share_it_so_a_removed_link_admin_keeps_nothing(api, owner):
    """A link admin who could share the project's work into a team of their own at admin
    would keep admin on it after being removed from the linked team; sharing is the
    creator's and the project owner's, as linking a project is its owner's."""
    editor, link_admin = api.user("editor"), api.user("link-admin")
    api.grant_credits(editor, 1000)
    linked = api.team(owner)
    api.join(linked, owner, link_admin, "admin")
    api.join(linked, owner, editor, "editor")
    project = api.project(owner)
    api.link(project, linked, owner, "admin")
    by_owner = api.generation(owner, project_id=project["id"])
    by_editor = api.generation(editor, project_id=project["id"])
    own_team = api.team(link_admin)
    api.join(own_team, link_admin, owner, "editor")
    api.join(own_team, link_admin, editor, "editor")

    for generation in (by_owner, by_editor):
        path = f"/api/v1/generations/{generation['id']}"
        before = api.fingerprint()
        for team in (own_team, linked):
            body = {"team_id": team["id"], "role": "admin"}
            assert_error(api.call("PUT", f"{path}/share", link_admin, json=body), 403, "forbidden")
        assert api.fingerprint() == before
        access = api.ok("POST", f"{path}/authorize", link_admin)
        assert (access["effective_role"], access["permissions"]) == (
            "admin",
            ["read", "write", "delete"],
        )

    # the creator (direct_ownership) and the project's owner (project_owner) share
    body = {"team_id": own_team["id"], "role": "viewer"}
    api.ok("PUT", f"/api/v1/generations/{by_editor['id']}/share", editor, json=body)
    api.ok("PUT", f"/api/v1/generations/{by_editor['id']}/share", owner, json=body)
    api.ok("PUT", f"/api/v1/generations/{by_owner['id']}/share", owner, json=body)

    api.ok("DELETE", f"/api/v1/teams/{linked['id']}/members/{link_admin.id}", owner, 204)
    for generation in (by_owner, by_editor):
        path = f"/api/v1/generations/{generation['id']}"
        access = api.ok("POST", f"{path}/authorize", link_admin)
        assert (access["access_method"], access["effective_role"]) == ("generation_share", "viewer")
        body = {"team_id": own_team["id"], "role": "admin"}
        assert_error(api.call("PUT", f"{path}/share", link_admin, json=body), 403, "forbidden")
        assert_error(api.call("DELETE", path, link_admin), 403, "forbidden")
        # what was put into her team she may still take out, and then she holds nothing
        api.ok("DELETE", f"{path}/share/{own_team['id']}", link_admin, 204)
        assert_error(api.call("GET", path, link_admin), 404)

"""Media in supabase mode: outputs go to Supabase Storage through the official client and
come back by Storage's own signed URLs (against a local fake of Storage's HTTP API), and
the bucket and its policy are made where a ``storage`` schema exists (and nowhere else)."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
import requests
from fake_storage import FakeStorage
from media_support import running_world
from psycopg.rows import dict_row

from backend.cli import migrations
from backend.fal.simulated_routes import simulator_for
from backend.jobs.engine import install_schema
from backend.media import clean_deleted_generations_media, copy_generation_outputs
from backend.media.storage import BUCKET, SupabaseStorage

SERVICE_KEY = "service-role-key-for-the-fake-storage"


@pytest.fixture
def storage():
    fake = FakeStorage(SERVICE_KEY)
    yield fake
    fake.close()


def test_put_and_signed_url_through_the_official_client(storage):
    client = SupabaseStorage(storage.url, SERVICE_KEY)
    name = "0e6c5a3e-1b2c-4d5e-8f90-123456789abc/0.png"
    client.put(name, b"first", "image/png")
    client.put(name, b"second", "image/png")  # a retried copy replaces its object
    assert storage.objects[BUCKET, name] == (b"second", "image/png")
    assert [upload["upsert"] for upload in storage.uploads] == [True, True]
    response = requests.get(client.signed_url(name, 60), timeout=10)
    assert (response.status_code, response.content) == (200, b"second")
    assert response.headers["Content-Type"] == "image/png"


def test_a_generations_objects_are_deleted_through_the_official_client(storage):
    client = SupabaseStorage(storage.url, SERVICE_KEY)
    gone, kept = uuid.uuid4(), uuid.uuid4()
    for name in (f"{gone}/0.png", f"{gone}/1.jpg", f"{kept}/0.png"):
        client.put(name, b"bytes", "image/png")
    client.delete_generation(gone)
    assert set(storage.objects) == {(BUCKET, f"{kept}/0.png")}
    client.delete_generation(gone)  # nothing left: nothing to do
    assert storage.removals == [[f"{gone}/0.png", f"{gone}/1.jpg"]]


def test_named_objects_are_deleted_through_the_official_client(storage):
    client = SupabaseStorage(storage.url, SERVICE_KEY)
    folder = uuid.uuid4()
    names = [f"{folder}/0-0a1b2c3d.png", f"{folder}/0-4e5f6a7b.png", f"{folder}/1-4e5f6a7b.png"]
    for name in names:
        client.put(name, b"bytes", "image/png")
    client.delete(names[1:])
    client.delete([])  # nothing named: no request
    assert set(storage.objects) == {(BUCKET, names[0])}
    assert storage.removals == [names[1:]]


def test_a_removal_that_removes_nothing_is_an_error_not_a_loop(storage):
    client = SupabaseStorage(storage.url, SERVICE_KEY)
    stuck = uuid.uuid4()
    client.put(f"{stuck}/0.png", b"bytes", "image/png")
    storage.removes = False
    with pytest.raises(RuntimeError, match=r"removed none of .* 1 objects"):
        client.delete_generation(stuck)
    assert storage.removals == [[]]


def test_readers_get_storage_signed_urls(storage, database_factory, migrated_template, tmp_path):
    with running_world(
        database_factory(migrated_template),
        str(tmp_path),
        MEDIA_STORAGE="supabase",
        SUPABASE_URL=storage.url,
        SUPABASE_SERVICE_ROLE_KEY=SERVICE_KEY,
    ) as world:
        owner = world.api.user("supabase")
        world.api.grant_credits(owner, 100)
        generation = world.api.generation(owner)
        # the simulated provider renders the output and serves it, as FAL would
        simulator = simulator_for(world.settings)
        rendered = threading.Event()
        simulator._call_webhook = lambda *args: rendered.set()
        handle = simulator.submit(
            "fal-ai/flux-pro/v1.1-ultra", {"prompt": "stored"}, webhook_url="http://unused/hook"
        )
        assert rendered.wait(30)
        payload = simulator.result("m", handle.request_id)
        assert payload["images"][0]["url"].startswith(f"{world.url}/simulated-fal/files/")
        world.advance(generation["id"], "queued", handle.request_id)
        world.advance(generation["id"], "completed", outputs=payload)
        [row] = copy_generation_outputs(world.settings, generation["id"])
        assert storage.objects[BUCKET, row["storage_path"]][1] == "image/png"
        [media] = world.api.ok("GET", f"/api/v1/generations/{generation['id']}/media", owner)[
            "items"
        ]
        assert media["url"].startswith(f"{storage.url}/storage/v1/object/sign/{BUCKET}/")
        assert (
            requests.get(media["url"], timeout=10).content
            == storage.objects[BUCKET, row["storage_path"]][0]
        )
        stranger = world.api.user("stranger")
        path = f"/api/v1/generations/{generation['id']}/media"
        assert world.api.call("GET", path, stranger).status_code == 404
        # deleted, its object goes at the cleanup job's next run, and its URL stops working
        world.api.ok("DELETE", f"/api/v1/generations/{generation['id']}", owner, 204)
        assert clean_deleted_generations_media(world.settings) == 1
        assert (BUCKET, row["storage_path"]) not in storage.objects
        assert requests.get(media["url"], timeout=10).status_code == 400


STORAGE_STAND_IN = """
create schema storage;
create table storage.buckets (
    id text primary key, name text not null, public boolean default false
);
create table storage.objects (
    id uuid primary key default gen_random_uuid(),
    bucket_id text references storage.buckets (id),
    name text not null
);
alter table storage.objects enable row level security;
create function storage.foldername(name text) returns text[] language sql immutable
as $$ select (string_to_array(name, '/'))[1:array_length(string_to_array(name, '/'), 1) - 1] $$;
"""


def as_user(conn, user_id):
    conn.execute("select set_config('role', 'authenticated', true)")
    conn.execute(
        "select set_config('request.jwt.claims', %s, true)",
        (f'{{"sub": "{user_id}", "role": "authenticated"}}',),
    )


def test_the_bucket_and_its_policy_follow_the_generation(database_factory):
    """Where a storage schema exists (as on Supabase), the migration makes the private
    bucket and a policy that lets exactly the generation's readers see its objects."""
    url = database_factory()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(STORAGE_STAND_IN)
    migrations.apply_database(url, log=lambda _message: None)
    install_schema(url, lambda _message: None)  # a generation commits only with its job
    with psycopg.connect(url, row_factory=dict_row, autocommit=True) as conn:
        assert conn.execute("select * from storage.buckets").fetchall() == [
            {"id": BUCKET, "name": BUCKET, "public": False}
        ]
        owner, stranger = (
            conn.execute(
                "insert into auth.users (id, email) values (gen_random_uuid(), %s) returning id",
                (email,),
            ).fetchone()["id"]
            for email in ("owner@storage.test", "stranger@storage.test")
        )
        conn.execute("select public.grant_credits(%s, 100)", (owner,))
        with conn.transaction():
            as_user(conn, owner)
            generation = conn.execute(
                "select id from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', 'k1')"
            ).fetchone()["id"]
        conn.execute("insert into storage.buckets (id, name) values ('other', 'other')")
        conn.execute("grant usage on schema storage to authenticated")
        conn.execute("grant select on storage.objects to authenticated")
        conn.execute(
            "insert into storage.objects (bucket_id, name) values (%s, %s), (%s, %s), (%s, %s)",
            (BUCKET, f"{generation}/0.png", BUCKET, "not-a-uuid/0.png", "other", f"{generation}/x"),
        )
        for user, expected in ((owner, [f"{generation}/0.png"]), (stranger, [])):
            with conn.transaction():
                as_user(conn, user)
                names = [row["name"] for row in conn.execute("select name from storage.objects")]
            assert names == expected, user


def test_without_a_storage_schema_the_migration_makes_none(db_url):
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select to_regnamespace('storage')").fetchone()[0] is None

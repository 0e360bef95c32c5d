"""When a name or a prompt is blank: the API and the OpenAPI document's pattern agree.

The document publishes the rule as the ``pattern`` of every such field, so a client that
checks a name against it refuses exactly the names the API refuses. Each tricky character is
sent to the API alone and between spaces (201, or a 422 naming the field) and checked
against the published pattern as a JSON Schema validator reads it (jsonschema_rs, which
schemathesis brings: ECMA-262 regular expressions, as the document's readers use).
"""

from __future__ import annotations

import unicodedata

import jsonschema_rs
import pytest
from api_support import assert_error, assert_names_field, running_api

from backend.http.text import INVISIBLE_RANGES, NOT_BLANK, is_blank

# a name made only of these is blank: whitespace, controls, and characters that show nothing
BLANK = {
    "tab": "\t",
    "line-feed": "\n",
    "carriage-return": "\r",
    "vertical-tab": "\v",
    "form-feed": "\f",
    "start-of-heading": "\u0001",
    "file-separator": "\u001c",
    "group-separator": "\u001d",  # a control Python's str.strip() takes for whitespace
    "record-separator": "\u001e",
    "unit-separator": "\u001f",
    "delete": "\u007f",
    "next-line": "\u0085",
    "no-break-space": "\u00a0",
    "soft-hyphen": "\u00ad",
    "combining-grapheme-joiner": "\u034f",
    "arabic-letter-mark": "\u061c",
    "hangul-choseong-filler": "\u115f",
    "ogham-space-mark": "\u1680",
    "mongolian-vowel-separator": "\u180e",
    "en-quad": "\u2000",
    "hair-space": "\u200a",
    "zero-width-space": "\u200b",  # a format character no \\s and no str.strip() takes
    "zero-width-non-joiner": "\u200c",
    "zero-width-joiner": "\u200d",
    "left-to-right-mark": "\u200e",
    "right-to-left-mark": "\u200f",
    "line-separator": "\u2028",
    "paragraph-separator": "\u2029",
    "left-to-right-embedding": "\u202a",
    "right-to-left-override": "\u202e",
    "narrow-no-break-space": "\u202f",
    "medium-mathematical-space": "\u205f",
    "word-joiner": "\u2060",
    "invisible-separator": "\u2063",
    "left-to-right-isolate": "\u2066",
    "ideographic-space": "\u3000",
    "hangul-filler": "\u3164",
    "variation-selector-16": "\ufe0f",
    "byte-order-mark": "\ufeff",  # ECMA-262's \\s takes it, Python's does not
    "halfwidth-hangul-filler": "\uffa0",
    "several": " \u200b\t\u3000\u200d ",
}
# a name with one of these is not blank
SHOWS = {
    "letter": "a",
    "digit": "7",
    "accented": "é",
    "cyrillic": "ж",
    "han": "名",
    "arabic-indic-digit": "\u0663",
    "arabic-number-sign": "\u0600",  # a format character that is drawn
    "combining-acute": "\u0301",  # drawn on a dotted circle when alone
    "braille-blank": "\u2800",  # a character of braille text, though it has no dots
    "interlinear-annotation-anchor": "\ufff9",  # a format character, not an ignorable one
    "emoji": "\U0001f600",
    # past U+FFFF nothing is invisible to the pattern (backend/http/text.py says why)
    "tag-latin-a": "\U000e0041",
}
# the format characters (Cf) of the first plane that are drawn, so count as a name
DRAWN_FORMAT_CHARACTERS = {*range(0x0600, 0x0606), 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2}
DRAWN_FORMAT_CHARACTERS |= {0xFFF9, 0xFFFA, 0xFFFB}  # interlinear annotation
# marks and letters by their category that show nothing: the combining grapheme joiner, the
# Khmer inherent vowels, the Mongolian and other variation selectors, the Hangul fillers
IGNORABLE_MARKS_AND_LETTERS = {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0}
IGNORABLE_MARKS_AND_LETTERS |= {0x180B, 0x180C, 0x180D, 0x180F, *range(0xFE00, 0xFE10)}


@pytest.fixture(scope="module")
def api(database_factory, migrated_template):
    with running_api(database_factory(migrated_template)) as running:
        yield running


@pytest.fixture(scope="module")
def owner(api):
    return api.user("namer")


@pytest.fixture(scope="module")
def published(api):
    """The pattern of a project's name as the document publishes it, read by a validator."""
    document = api.ok("GET", "/api/v1/openapi.json")
    pattern = document["components"]["schemas"]["ProjectCreate"]["properties"]["name"]["pattern"]
    return jsonschema_rs.validator_for({"type": "string", "pattern": pattern})


def cases() -> list:
    """(name, whether it shows): each character alone and between spaces."""
    params = []
    for values, shows in ((BLANK, False), (SHOWS, True)):
        for label, value in values.items():
            params.append(pytest.param(value, shows, id=label))
            params.append(pytest.param(f" {value} ", shows, id=f"{label}-between-spaces"))
    return params


@pytest.mark.parametrize(("name", "shows"), cases())
def test_the_api_and_the_published_pattern_agree_on_what_is_blank(
    api, owner, published, name, shows
):
    response = api.call("POST", "/api/v1/projects", owner, json={"name": name})
    if response.status_code == 422:
        assert_names_field(assert_error(response, 422), "name")
    else:
        assert response.status_code == 201, response.get_json()
    accepted = {"api": response.status_code == 201, "published pattern": published.is_valid(name)}
    assert accepted == {"api": shows, "published pattern": shows}


def test_every_name_and_prompt_publishes_the_rule_the_validator_runs(api):
    schemas = api.ok("GET", "/api/v1/openapi.json")["components"]["schemas"]
    fields = [
        ("ProjectCreate", "name"),
        ("ProjectUpdate", "name"),
        ("TeamCreate", "name"),
        ("GenerationCreate", "prompt"),
    ]
    for schema, field in fields:
        assert schemas[schema]["properties"][field]["pattern"] == NOT_BLANK, (schema, field)


def test_the_invisible_characters_are_the_whitespace_controls_and_format_characters():
    """Every control, space and separator of the first plane is blank, and every format
    character but those that are drawn; of the letters, marks, numbers, punctuation and
    symbols, only the few that show nothing are."""
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue  # a surrogate alone is refused as text the database cannot store
        character = chr(code)
        category = unicodedata.category(character)
        if category in ("Cc", "Zs", "Zl", "Zp") or (
            category == "Cf" and code not in DRAWN_FORMAT_CHARACTERS
        ):
            assert is_blank(character), f"U+{code:04X} {category}"
        elif category[0] in "LMNPS":
            expected = code in IGNORABLE_MARKS_AND_LETTERS
            assert is_blank(character) == expected, f"U+{code:04X} {category}"
    assert all(low <= high <= 0xFFFF for low, high in INVISIBLE_RANGES)

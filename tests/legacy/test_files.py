"""Reading legacy files in every shape found in the wild, and parsing their timestamps."""

import json
from datetime import UTC, datetime

import pytest

from legacy import files
from legacy.files import iter_legacy_files, read_records
from legacy.mapping import InvalidReport, map_legacy, parse_timestamp


def records(path):
    return [
        (r.location, r.value.get("id") if r.value else None, r.error) for r in read_records(path)
    ]


def test_files_are_walked_in_sorted_order_and_hidden_or_other_files_skipped(tmp_path):
    for name in [
        "b.json",
        "a/z.jsonl",
        "a/b/c.json",
        "notes.txt",
        ".mirror.tmp.json",
        ".hidden/x.json",
    ]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")

    walked = [path.relative_to(tmp_path).as_posix() for _, path in iter_legacy_files([tmp_path])]

    assert walked == ["a/b/c.json", "a/z.jsonl", "b.json"]
    # A directory given inside another one is not walked twice.
    assert len(list(iter_legacy_files([tmp_path, tmp_path / "a"]))) == 3


def test_a_big_array_is_read_one_element_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "CHUNK_SIZE", 64)  # elements straddle many reads
    items = [{"id": f"r-{i}", "title": "x" * (i * 37 % 200)} for i in range(50)]
    (tmp_path / "export.json").write_text(
        "\ufeff  [\n" + ",\n".join(json.dumps(i) for i in items) + "\n]\n"
    )

    read = records(tmp_path / "export.json")

    assert [r[1] for r in read] == [i["id"] for i in items]
    assert read[3][0] == "[3]" and all(r[2] is None for r in read)


def test_a_truncated_array_keeps_its_complete_elements(tmp_path):
    text = json.dumps([{"id": "a"}, {"id": "b"}, {"id": "c", "title": "cut here"}])
    (tmp_path / "cut.json").write_text(text[:-12])

    read = records(tmp_path / "cut.json")

    assert read[:2] == [("[0]", "a", None), ("[1]", "b", None)]
    assert read[2][0] == "[2]" and read[2][2].startswith("truncated JSON")


def test_bad_elements_and_lines_are_named_and_the_rest_is_read(tmp_path):
    (tmp_path / "mixed.json").write_text('[{"id": "a"}, 7, {"id": "b"}]')
    (tmp_path / "lines.jsonl").write_text('{"id": "a"}\n\n["x"]\n{broken\n\xff\n{"id": "b"}\n')

    assert records(tmp_path / "mixed.json") == [
        ("[0]", "a", None),
        ("[1]", None, "a number where a report object was expected"),
        ("[2]", "b", None),
    ]
    lines = records(tmp_path / "lines.jsonl")
    assert [(loc, ident) for loc, ident, _ in lines] == [
        ("line 1", "a"),
        ("line 3", None),
        ("line 4", None),
        ("line 5", None),
        ("line 6", "b"),
    ]
    assert lines[1][2] == "an array where a report object was expected"
    assert lines[2][2].startswith("not valid JSON")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"   \n", "empty file"),
        (b'{"id": "x", "title": "half', "truncated JSON"),
        (b"\x00\x01\x02 not json at all", "not valid JSON"),
        (b"\xff\xfe\x00binary", "not UTF-8 text"),
        (b'"just a string"', "top level is a string, not an object or an array"),
    ],
)
def test_files_that_are_not_reports(tmp_path, content, reason):
    (tmp_path / "bad.json").write_bytes(content)

    [(location, _, error)] = records(tmp_path / "bad.json")

    assert location == "" and error.startswith(reason)


def test_objects_one_after_another_in_a_json_file_are_read_as_lines(tmp_path):
    (tmp_path / "concat.json").write_text('{"id": "a"}\n{"id": "b"}\n')

    assert [r[1] for r in records(tmp_path / "concat.json")] == ["a", "b"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-08-07T02:02:00Z", "2025-08-07T02:02:00"),
        ("2025-08-07T04:02:00+02:00", "2025-08-07T02:02:00"),
        ("2025-08-07 02:02:00", "2025-08-07T02:02:00"),
        ("2025-08-07T02:02:00", "2025-08-07T02:02:00"),
        ("2025-08-07t02:02:00z", "2025-08-07T02:02:00"),
        (1754532120, "2025-08-07T02:02:00"),
        (1754532120000, "2025-08-07T02:02:00"),
        (1754532120.5, "2025-08-07T02:02:00.500000"),
        ("1754532120", "2025-08-07T02:02:00"),
    ],
)
def test_every_timestamp_spelling(value, expected):
    assert parse_timestamp(value) == datetime.fromisoformat(expected).replace(tzinfo=UTC)


@pytest.mark.parametrize("value", [True, "yesterday", "", None, [2025], float("nan"), 10**20])
def test_what_is_not_a_timestamp(value):
    with pytest.raises((ValueError, OverflowError, OSError, TypeError)):
        parse_timestamp(value)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"status": "open", "created_at": 1}, "no title"),
        ({"title": ["a"], "status": "open", "created_at": 1}, "title is not a string (got list)"),
        ({"title": "  ", "status": "open", "created_at": 1}, "title is empty"),
        ({"title": "t", "created_at": 1}, "no status"),
        ({"title": "t", "status": "parked", "created_at": 1}, "unknown status 'parked'"),
        ({"title": "t", "status": "open"}, "no created_at"),
        ({"title": "t", "status": "open", "created_at": "soon"}, "unparseable created_at 'soon'"),
    ],
)
def test_invalid_reports_say_why(record, reason):
    with pytest.raises(InvalidReport) as info:
        map_legacy(record)
    assert str(info.value) == reason


@pytest.mark.django_db
def test_the_same_content_in_any_key_order_has_the_same_digest_and_row_id():
    one = {
        "id": "r-1",
        "title": "t",
        "status": "open",
        "created_at": 1,
        "context": {"a": 1, "b": 2},
    }
    two = {
        "context": {"b": 2, "a": 1},
        "created_at": 1,
        "status": "open",
        "title": "t",
        "id": "r-1",
    }

    assert map_legacy(one).digest == map_legacy(two).digest
    assert map_legacy(one).pk == map_legacy(two).pk
    assert map_legacy({**one, "title": "other"}).digest != map_legacy(one).digest

import datetime as dt

from ripple.changes.change import Change, commit_timestamp

COLUMNS = [{"name": "id", "type": "int8"}, {"name": "title", "type": "text"}, {"name": "body", "type": "text"}]


def change(op, record=None, old=None):
    return Change(id=1, schema="public", table="notes", type=op, record=record, old_record=old,
                  columns=COLUMNS, commit_timestamp="2026-01-01T00:00:00.000Z")


def test_commit_timestamp_is_utc_millis_z():
    ts = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert commit_timestamp(ts) == "2026-01-02T01:04:05.678Z"


def test_key_presence_per_type():
    row = {"id": 1, "title": "t", "body": "b"}
    insert, update, delete = change("INSERT", row), change("UPDATE", row, row), change("DELETE", None, row)
    assert "record" in insert.data() and "old_record" not in insert.data()
    assert "record" in update.data() and "old_record" in update.data()
    assert "record" not in delete.data() and delete.data()["old_record"] == row
    assert insert.data()["errors"] is None and insert.data()["columns"] == COLUMNS


def test_filters_see_old_row_on_delete():
    assert change("DELETE", None, {"id": 9}).row == {"id": 9}
    assert change("UPDATE", {"id": 2}, {"id": 1}).row == {"id": 2}


def test_select_keeps_only_listed_columns_and_is_built_once():
    c = change("UPDATE", {"id": 1, "title": "t", "body": "big"}, {"id": 1, "title": "s", "body": "big"})
    data = c.data(("id", "title"))
    assert data["record"] == {"id": 1, "title": "t"} and data["old_record"] == {"id": 1, "title": "s"}
    assert [col["name"] for col in data["columns"]] == ["id", "title"]
    assert c.data(("id", "title")) is data

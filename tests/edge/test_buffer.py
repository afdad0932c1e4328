"""The edge buffer: numbered, bounded on disk (oldest dropped, counted), acknowledged."""

from __future__ import annotations

import os

import pytest

from hybridnb.errors import UsageError
from hybridnb.serve.edge.buffer import RecordBuffer

REQUEST = {"r": "/v2/models/{name}/infer", "c": 200, "d": 0.00123, "v": "1"}


def fill(buf: RecordBuffer, n: int, every: int = 250) -> None:
    for i in range(n):
        buf.append("request", {**REQUEST, "i": i}, ts=float(i))
        if i % every == every - 1:
            buf.flush()
    buf.flush()


def test_a_full_buffer_drops_the_oldest_and_counts_them(tmp_path):
    path = tmp_path / "b.db"
    limit, wal = 256 << 10, 128 << 10
    buf = RecordBuffer(path, max_bytes=limit, wal_bytes=wal)
    fill(buf, 20_000)
    stats = buf.stats()
    assert stats["dropped"] > 0
    assert stats["records"] + stats["dropped"] == 20_000  # every record: kept or counted
    assert stats["bytes"] <= limit
    on_disk = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert on_disk <= limit + 2 * wal  # the database and its write-ahead log, both bounded
    page = buf.read(after=0, limit=1)
    # The oldest went first: what is left is the newest, in order.
    assert page.records[0][0] == stats["dropped"] + 1
    assert page.records[0][3]["i"] == stats["dropped"]
    buf.close()
    again = RecordBuffer(path, max_bytes=limit, wal_bytes=wal)  # the count survives restarts
    assert again.stats()["dropped"] == stats["dropped"] and again.epoch == page.epoch
    again.close()


def test_max_records_bounds_rows_too(tmp_path):
    with RecordBuffer(tmp_path / "b.db", max_records=100) as buf:
        fill(buf, 1000, every=50)
        assert buf.stats()["records"] <= 100 and buf.stats()["dropped"] >= 900


def test_records_are_read_after_a_number_and_deleted_only_when_acknowledged(tmp_path):
    with RecordBuffer(tmp_path / "b.db") as buf:
        fill(buf, 10)
        page = buf.read(after=0, limit=4)
        assert [r[0] for r in page.records] == [1, 2, 3, 4] and page.more and page.last == 4
        assert buf.read(after=page.last).records[0][0] == 5
        assert buf.ack("another-epoch", 10) == 0  # stale: deletes nothing
        assert buf.ack(page.epoch, page.last) == 4
        assert buf.ack(page.epoch, page.last) == 0  # a repeated ack is harmless
        assert [r[0] for r in buf.read(after=0).records] == [5, 6, 7, 8, 9, 10]
        # A reader that knows another epoch (the buffer was wiped) gets everything.
        assert buf.read(after=9, epoch="not-this-one").records[0][0] == 5
        fill(buf, 2)
        assert [r[0] for r in buf.read(after=10).records] == [11, 12]  # numbers go on


def test_numbers_continue_after_everything_was_acknowledged_and_reopened(tmp_path):
    buf = RecordBuffer(tmp_path / "b.db")
    fill(buf, 3)
    buf.ack(buf.epoch, 3)
    buf.close()
    buf = RecordBuffer(tmp_path / "b.db")
    fill(buf, 1)
    assert [r[0] for r in buf.read(after=0).records] == [4]
    buf.close()


def test_a_buffer_too_small_is_refused(tmp_path):
    with pytest.raises(UsageError, match="at least 64 KiB"):
        RecordBuffer(os.fspath(tmp_path / "b.db"), max_bytes=1000)

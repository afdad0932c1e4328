"""Blobs on the edge: received in pieces, hashed whole, refused when wrong."""

from __future__ import annotations

import hashlib
import os

import pytest

from hybridnb.serve.edge.blobs import (
    BlobError,
    BlobStore,
    DigestMismatch,
    OffsetMismatch,
    check_digest,
)

DATA = os.urandom(100_000)
DIGEST = hashlib.sha256(DATA).hexdigest()


def test_a_blob_resumes_where_it_stopped_and_is_kept_when_it_matches(tmp_path):
    store = BlobStore(tmp_path)
    with store.writer(DIGEST, size=len(DATA), offset=0) as w:
        w.write(DATA[:40_000])
    assert store.state(DIGEST).offset == 40_000 and not store.has(DIGEST)
    with pytest.raises(OffsetMismatch) as info:  # the sender thinks it sent less
        store.writer(DIGEST, size=len(DATA), offset=10_000)
    assert info.value.offset == 40_000
    with store.writer(DIGEST, size=len(DATA), offset=40_000) as w:
        w.write(DATA[40_000:])
    assert store.finish(DIGEST, len(DATA)).state.value == "complete"
    assert store.path(DIGEST).read_bytes() == DATA
    assert not (store.partial / DIGEST).exists()
    with pytest.raises(BlobError, match="already complete"):
        store.writer(DIGEST, size=len(DATA), offset=0)


def test_wrong_bytes_are_refused_and_deleted(tmp_path):
    store = BlobStore(tmp_path)
    bad = bytearray(DATA)
    bad[5000] ^= 0xFF
    with store.writer(DIGEST, size=len(DATA), offset=0) as w:
        w.write(bytes(bad))
    with pytest.raises(DigestMismatch, match="refused and deleted"):
        store.finish(DIGEST, len(DATA))
    assert store.state(DIGEST).state.value == "absent"


def test_a_blob_that_rots_on_disk_is_found_and_deleted(tmp_path):
    store = BlobStore(tmp_path)
    with store.writer(DIGEST, size=len(DATA), offset=0) as w:
        w.write(DATA)
    store.finish(DIGEST, len(DATA))
    assert store.verify(DIGEST)
    path = store.path(DIGEST)
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek(10)
        fh.write(b"\x00\x01")
    assert not store.verify(DIGEST) and not store.has(DIGEST)


@pytest.mark.parametrize("name", ["../../etc/passwd", "A" * 64, "ab", DIGEST + "0", ""])
def test_only_hex_digests_name_files(name):
    with pytest.raises(BlobError, match="not a hex SHA-256"):
        check_digest(name)

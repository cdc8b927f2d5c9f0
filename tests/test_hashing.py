from __future__ import annotations

import os
from pathlib import Path

import pytest
import xxhash

from assetver.hashing import CHUNK_SIZE, digest_bytes, digest_file

MiB = 1 << 20


def pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "2d06800538d394c2"),
        (1, "c44bdff4074eecdb"),
        (MiB - 1, "895179b331362d01"),
        (MiB, "6e0d7ac36b8c10ff"),
        (MiB + 1, "47a84c196fd973df"),
        (3 * MiB + 5, "36b06219b3b11d64"),
    ],
)
def test_golden_digests(tmp_path: Path, size: int, expected: str) -> None:
    assert MiB == CHUNK_SIZE, "golden sizes are placed around the chunk boundary"
    data = pattern(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert digest_file(str(path)) == expected
    assert digest_bytes(data) == expected
    assert xxhash.xxh3_64_hexdigest(data) == expected


def test_one_byte(tmp_path: Path) -> None:
    path = tmp_path / "a"
    path.write_bytes(b"a")
    assert digest_file(str(path)) == "e6c632b61e964e1f"


def test_large_sparse_file(tmp_path: Path) -> None:
    path = tmp_path / "sparse"
    with open(path, "wb") as f:
        f.truncate(64 * MiB)
        f.seek(64 * MiB)
        f.write(b"end")
    assert digest_file(str(path)) == "faf58b5ed30b4da7"


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        digest_file(str(fifo))


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        digest_file(str(tmp_path))

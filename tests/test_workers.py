"""Hashing in worker processes gives exactly what hashing here gives."""

from __future__ import annotations

import os
from pathlib import Path

from assetver.workers import hash_files, hash_here

from .conftest import write


def test_workers_match_this_process(tmp_path: Path) -> None:
    paths = [str(write(tmp_path, f"d{i % 5}/f {i}.txt", os.urandom(i * 37))) for i in range(300)]
    paths.append(str(tmp_path / "vanished.txt"))
    paths.append(str(tmp_path / "d0"))
    odd = write(tmp_path, "ünï\ncode.css", "x")
    paths.append(str(odd))
    here = hash_here(paths)
    for processes in (2, 3):
        reported: list[int] = []
        there = hash_files(paths, processes, reported.append)
        assert sum(reported) == len(paths)
        assert [r for r in there if not isinstance(r, OSError)] == [
            r for r in here if not isinstance(r, OSError)
        ]
        assert there[-3] is None
        error = there[-2]
        assert isinstance(error, OSError) and "not a regular file" in str(error)


def test_single_process_is_in_order(tmp_path: Path) -> None:
    paths = [str(write(tmp_path, f"{i}.txt", str(i))) for i in range(10)]
    assert hash_files(paths, 1) == hash_here(paths)

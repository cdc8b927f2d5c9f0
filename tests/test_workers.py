"""Hashing in forked worker processes: same results as hashing in one process, workers
really forked and always reaped, never forked where it is unsafe."""

from __future__ import annotations

import os
import signal
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import assetver
from assetver import workers
from assetver.build import FileReadError, build
from assetver.scan import ALL_FILES, Found, scan
from assetver.statkey import read_stamp
from assetver.workers import CHUNK_FILES, Job, digest_chunks, digest_found, usable_jobs

from .conftest import write

CHILDREN = Path(f"/proc/self/task/{os.getpid()}/children")


def children() -> set[str]:
    return set(CHILDREN.read_text().split()) if CHILDREN.exists() else set()


@pytest.fixture
def fork_at_once(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Workers are normally forked only after 10 ms of work; tests fork at once."""
    if usable_jobs(2) != 2:
        pytest.skip("this process may not fork workers (threads, or no fork here)")
    monkeypatch.setattr(workers, "FORK_AFTER", 0.0)
    yield
    assert not children(), "a worker was left running"


@pytest.fixture
def many(tmp_path: Path) -> Path:
    root = tmp_path / "many"
    for i in range(40 * CHUNK_FILES):
        write(root, f"d{i % 13}/f{i}.txt", f"file {i} " * (i % 50))
    write(root, "big.bin", bytes(range(256)) * 8192)  # 2 MiB: the streamed path
    return root


def chunked(files: list[Found]) -> list[list[Found]]:
    return [files[i : i + CHUNK_FILES] for i in range(0, len(files), CHUNK_FILES)]


def job(root: Path) -> Job:
    real = os.path.realpath(root)
    return Job(real + "/", read_stamp(real))


def found(root: Path) -> list[Found]:
    return scan(str(root), ALL_FILES).files


def test_workers_give_the_results_of_one_process(many: Path, fork_at_once: None) -> None:
    files = found(many)
    one = job(many)  # one clock for both: keys follow its racy rule
    expected = dict(zip((f[0] for f in files), digest_found(one, files), strict=True))
    seen: set[str] = set()
    got = {}
    for chunk, results in digest_chunks(chunked(files), one, 2):
        seen |= children()
        for f, r in zip(chunk, results, strict=True):
            got[f[0]] = r
    assert seen, "no worker was forked"
    assert got == expected


def test_build_with_workers_equals_build_in_one_process(many: Path, fork_at_once: None) -> None:
    one = build(many, jobs=1)
    four = build(many, jobs=4)
    assert one.manifest == four.manifest
    assert one.manifest.to_json() == four.manifest.to_json()


def test_unreadable_file_in_a_worker_chunk_raises_and_reaps(many: Path, fork_at_once: None) -> None:
    """A worker answers None for a file it cannot read; the parent hashes it again and
    raises the one clear error, and the workers are gone when it does. (A directory in
    place of a file is unreadable even to root, which runs CI: every file is replaced
    by one once the first chunk is done, so some chunk still to hash meets them.)"""
    (many / "big.bin").unlink()  # the first directory listed then has several chunks
    paths = [f[1] for f in found(many)]

    def replace_all(done: int, total: int | None) -> None:
        while paths:
            path = paths.pop()
            os.unlink(path)
            os.mkdir(path)

    with pytest.raises(FileReadError, match="exclude it with --exclude"):
        build(many, jobs=2, progress=replace_all)


def test_closing_early_kills_the_workers(many: Path, fork_at_once: None) -> None:
    chunks = digest_chunks(chunked(found(many)), job(many), 2)
    next(chunks)
    next(chunks)
    chunks.close()
    assert not children()


def test_no_fork_with_other_threads(many: Path) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="busy")
    thread.start()
    try:
        assert usable_jobs(4) == 1
        before = children()
        for _ in digest_chunks(chunked(found(many)), job(many), 4):
            assert children() == before
    finally:
        stop.set()
        thread.join()


def test_jobs_one_never_forks() -> None:
    assert usable_jobs(1) == 1
    assert usable_jobs(0) == 1


def test_fifo_in_a_worker_chunk_does_not_hang(tmp_path: Path, fork_at_once: None) -> None:
    """A FIFO swapped in after the scan: opened without blocking, refused, reported."""
    root = tmp_path / "root"
    for i in range(3 * CHUNK_FILES):
        write(root, f"f{i:03}.txt", str(i))
    files = found(root)
    fifo = files[-1][1]
    os.unlink(fifo)
    os.mkfifo(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    results = {
        f[0]: r
        for chunk, rs in digest_chunks(chunked(files), job(root), 2)
        for f, r in zip(chunk, rs, strict=True)
    }
    assert results[files[-1][0]] is None
    assert all(r is not None for p, r in results.items() if p != files[-1][0])
    assert assetver.build_manifest(root, jobs=1)  # the build itself skips the FIFO


def test_a_worker_killed_midway_is_replaced_by_the_parent(many: Path, fork_at_once: None) -> None:
    """Chunks sent to a worker that dies are hashed by the parent; nothing is lost."""
    files = found(many)
    one = job(many)
    expected = dict(zip((f[0] for f in files), digest_found(one, files), strict=True))
    got = {}
    killed = False
    for chunk, results in digest_chunks(chunked(files), one, 2):
        if not killed and children():
            for pid in children():
                os.kill(int(pid), signal.SIGKILL)
            killed = True
        for f, r in zip(chunk, results, strict=True):
            got[f[0]] = r
    assert killed
    assert got == expected

from __future__ import annotations

import json
import logging
import marshal
import os
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import assetver
from assetver import Manifest, ManifestError, RootError
from assetver.build import build, build_cached
from assetver.hashing import digest_bytes
from assetver.manifest import Entry
from assetver.scan import ScanOptions

from .conftest import age, write


def test_build_manifest_contract(tree: Path) -> None:
    m = assetver.build_manifest(tree)
    assert list(m) == sorted(m)
    assert len(m) == 6
    assert m["css/app.css"].digest == "ca450649173fc9bd"
    assert m["css/app.css"].size == len("body { color: red }\n")
    assert "LICENSE" in m
    assert m.total_size() == sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())


def test_manifest_json_is_canonical(tree: Path, tmp_path: Path) -> None:
    m = assetver.build_manifest(tree)
    text = m.to_json()
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert set(data) == {"version", "algorithm", "files"}
    assert data["version"] == 1 and data["algorithm"] == "xxh3_64"
    assert data["files"]["css/app.css"] == {"digest": "ca450649173fc9bd", "size": 20}
    out = tmp_path / "m.json"
    m.dump(out)
    assert Manifest.load(out) == m


def test_canonical_json_with_extra_keys_and_empty() -> None:
    m = Manifest({"a b/ü.css": Entry("0123456789abcdef", 3, {"variants": {"gzip": 2, "br": 1}})})
    text = m.to_json()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert Manifest.from_json(text) == m
    assert Manifest.from_json(text)["a b/ü.css"].extra == {"variants": {"gzip": 2, "br": 1}}
    empty = Manifest().to_json()
    assert empty == json.dumps(json.loads(empty), indent=2, sort_keys=True) + "\n"


def test_determinism_across_creation_order_and_jobs(tmp_path: Path) -> None:
    names = [f"d{i % 7}/f{i}.txt" for i in range(600)]
    a, b = tmp_path / "a", tmp_path / "b"
    for n in names:
        write(a, n, n * 3)
    for n in reversed(names):
        write(b, n, n * 3)
    texts = {
        assetver.build_manifest(root, jobs=jobs).to_json() for root in (a, b) for jobs in (1, 2, 8)
    }
    assert len(texts) == 1


def test_hidden_files_and_state_are_excluded(tree: Path) -> None:
    write(tree, ".env", "SECRET=1")
    write(tree, ".git/config", "x")
    write(tree, "css/.app.css.swp", "x")
    write(tree, ".assetver/manifest.json", "{}")
    write(tree, ".assetver-abc.tmp", "partial")
    assert not any(p.startswith(".") or "/." in p for p in assetver.build_manifest(tree))
    with_hidden = assetver.build_manifest(tree, include_hidden=True)
    assert {".env", ".git/config", "css/.app.css.swp"} <= set(with_hidden)
    assert ".assetver/manifest.json" not in with_hidden
    assert ".assetver-abc.tmp" not in with_hidden


def test_exclude_globs(tree: Path) -> None:
    write(tree, "js/app.js.map", "{}")
    write(tree, "src/main.ts", "x")
    m = assetver.build_manifest(tree, exclude=["*.map", "src", "img/*"])
    assert "js/app.js.map" not in m and "src/main.ts" not in m and "img/logo.svg" not in m
    assert "js/app.js" in m


def test_output_inside_root_is_excluded(tree: Path) -> None:
    out = tree / "assetver.json"
    assetver.build_manifest(tree).dump(out)
    m = assetver.build_manifest(tree, exclude_paths=[out])
    assert "assetver.json" not in m


def test_empty_root(tmp_path: Path) -> None:
    m = assetver.build_manifest(tmp_path)
    assert len(m) == 0
    assert Manifest.from_json(m.to_json()) == m


def test_missing_root_and_file_root(tmp_path: Path) -> None:
    with pytest.raises(RootError, match="does not exist"):
        assetver.build_manifest(tmp_path / "nope")
    f = write(tmp_path, "file", "x")
    with pytest.raises(RootError, match="not a directory"):
        assetver.build_manifest(f)


def test_symlinks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "static"
    write(root, "real/a.css", "a")
    write(tmp_path, "secret.txt", "do not serve")
    (tmp_path / "outside").mkdir()
    write(tmp_path, "outside/b.css", "b")
    os.symlink(root / "real/a.css", root / "inside-link.css")
    os.symlink(root / "real", root / "linked-dir")
    os.symlink(tmp_path / "secret.txt", root / "escape.txt")
    os.symlink(tmp_path / "outside", root / "escape-dir")
    os.symlink("..", root / "real/loop")
    os.symlink(root / "missing", root / "dangling")
    with caplog.at_level(logging.WARNING, logger="assetver"):
        result = build(root)
    m = result.manifest
    assert m["inside-link.css"].digest == m["real/a.css"].digest
    assert "linked-dir/a.css" in m
    assert not any("escape" in p or "secret" in p or "b.css" in p for p in m)
    reasons = dict(result.skipped)
    assert reasons["escape.txt"] == "symlink points outside the root"
    assert reasons["escape-dir"] == "symlink points outside the root"
    assert reasons["real/loop"] == "symlink loop"
    assert "escape.txt" in caplog.text


def test_fifo_socket_and_device_are_skipped_without_hanging(tmp_path: Path) -> None:
    import socket

    root = tmp_path / "static"
    write(root, "a.txt", "a")
    os.mkfifo(root / "fifo")
    os.symlink("/dev/zero", root / "zero")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "sock"))
        m = assetver.build_manifest(root)
    finally:
        sock.close()
    assert list(m) == ["a.txt"]


def test_odd_names(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "static"
    nfd = unicodedata.normalize("NFD", "café.css")
    names = ["with space.css", "ünïcödé/日本.js", nfd, "quote'\"$.txt", "{brace}.txt"]
    for n in names:
        write(root, n, n)
    os.close(os.open(os.fsencode(root) + b"/bad-\xff.css", os.O_CREAT | os.O_WRONLY))
    with caplog.at_level(logging.WARNING, logger="assetver"):
        result = build(root)
    assert sorted(result.manifest) == sorted(names)
    assert nfd in result.manifest and unicodedata.normalize("NFC", nfd) not in result.manifest
    assert [r for _, r in result.skipped] == ["name is not UTF-8"]
    text = result.manifest.to_json()
    assert Manifest.from_json(text.encode()) == result.manifest


def test_deep_nesting(tmp_path: Path) -> None:
    root = tmp_path / "static"
    logical = "/".join(["d"] * 200) + "/deep.txt"
    write(root, logical, "deep")
    assert list(assetver.build_manifest(root)) == [logical]


# -- incremental builds ---------------------------------------------------------------


def cached_build(root: Path, tmp_path: Path) -> assetver.BuildResult:
    return build_cached(root, str(tmp_path / "cache.json"))


def test_cache_reuses_unchanged_files(tree: Path, tmp_path: Path) -> None:
    age(tree)
    first = cached_build(tree, tmp_path)
    assert (first.digested, first.reused) == (6, 0)
    second = cached_build(tree, tmp_path)
    assert (second.digested, second.reused) == (0, 6)
    assert second.manifest == first.manifest


def test_racy_files_are_rehashed(tree: Path, tmp_path: Path) -> None:
    """Files modified in the same tick as the build started cannot be trusted."""
    first = cached_build(tree, tmp_path)
    css = tree / "css/app.css"
    st = css.stat()
    css.write_text("body { color: blu }\n")
    os.utime(css, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = cached_build(tree, tmp_path)
    assert (
        second.manifest["css/app.css"].digest == assetver.build_manifest(tree)["css/app.css"].digest
    )
    assert second.manifest["css/app.css"].digest != first.manifest["css/app.css"].digest


def test_same_size_and_mtime_change_is_detected(tree: Path, tmp_path: Path) -> None:
    css = tree / "css/app.css"
    age(tree, 100)
    before = css.stat()
    first = cached_build(tree, tmp_path)
    css.write_text("body { color: blu }\n")
    os.utime(css, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert css.stat().st_size == before.st_size and css.stat().st_mtime_ns == before.st_mtime_ns
    second = cached_build(tree, tmp_path)
    assert second.digested == 1
    assert second.manifest["css/app.css"].digest != first.manifest["css/app.css"].digest
    assert second.manifest == assetver.build_manifest(tree)


def test_add_delete_rename(tree: Path, tmp_path: Path) -> None:
    age(tree)
    cached_build(tree, tmp_path)
    write(tree, "new.css", "new")
    (tree / "LICENSE").unlink()
    (tree / "js/app.js").rename(tree / "js/main.js")
    result = cached_build(tree, tmp_path)
    assert result.manifest == assetver.build_manifest(tree)
    assert "LICENSE" not in result.manifest and "js/app.js" not in result.manifest
    assert {"new.css", "js/main.js"} <= set(result.manifest)


KEY = b"x" * 32
NO_DIRS = marshal.dumps((None, None))


def _recrafted(
    data: bytes, header: dict[str, object] | None = None, sections: list[bytes] | None = None
) -> bytes:
    """A cache file like ``data`` with header fields or body sections replaced; new
    sections get a correct digest and sizes, so only the later checks can reject them."""
    magic, header_line, body = data.split(b"\n", 2)
    fields = json.loads(header_line)
    if sections is not None:
        body = b"".join(sections)
        fields["sections"] = [len(part) for part in sections]
        fields["body"] = digest_bytes(body)
    fields.update(header or {})
    return magic + b"\n" + json.dumps(fields).encode() + b"\n" + body


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda data: b"",
        lambda data: b'{"format": "assetver-cache", "version": 2, "root": "/", "paths": []}',
        lambda data: data.split(b"\n", 1)[0] + b"\n{not json\n",
        lambda data: _recrafted(data, header={"root": "/elsewhere"}),
        lambda data: _recrafted(data, header={"options": "other"}),
        lambda data: data[:-1] + bytes([data[-1] ^ 1]),
        lambda data: _recrafted(data, header={"sections": [1, 2, 3, 4]}),
        lambda data: _recrafted(data, {"files": 2}, [b"a\0b", KEY, b"0" * 32, NO_DIRS]),
        lambda data: _recrafted(data, {"files": 1}, [b"a", KEY, b"Z" * 16, NO_DIRS]),
        lambda data: _recrafted(data, {"files": 1}, [b"a", KEY, b"0" * 16, b"\x00junk"]),
        lambda data: _recrafted(
            data,
            {"files": 1},
            [b"a", KEY, b"0" * 16, marshal.dumps((["", "b/"], [(1, 2, 3, 4, 5)]))],
        ),
        lambda data: _recrafted(data, {"files": -1}, [b"", b"", b"", NO_DIRS]),
    ],
    ids=[
        "empty",
        "version-2-json",
        "header-not-json",
        "other-root",
        "other-options",
        "body-bit-flipped",
        "sections-do-not-add-up",
        "paths-and-keys-disagree",
        "digests-not-hex",
        "listings-not-marshal",
        "dirs-and-keys-disagree",
        "negative-count",
    ],
)
def test_corrupt_or_foreign_cache_is_ignored(
    tree: Path, tmp_path: Path, corrupt: Callable[[bytes], bytes]
) -> None:
    age(tree)
    cached_build(tree, tmp_path)
    cache = tmp_path / "cache.json"
    cache.write_bytes(corrupt(cache.read_bytes()))
    result = cached_build(tree, tmp_path)
    assert (result.digested, result.reused, result.listed) == (6, 0, True)
    assert result.manifest == assetver.build_manifest(tree)
    again = cached_build(tree, tmp_path)
    assert (again.digested, again.listed) == (0, False)


def test_cache_with_wrong_digest_for_other_root_is_not_trusted(tree: Path, tmp_path: Path) -> None:
    age(tree)
    cached_build(tree, tmp_path)
    other = tmp_path / "other"
    write(other, "css/app.css", "body { color: red }\n")
    result = cached_build(other, tmp_path)
    assert result.reused == 0


def test_truncated_cache_after_crash_is_ignored(tree: Path, tmp_path: Path) -> None:
    age(tree)
    cached_build(tree, tmp_path)
    cache = tmp_path / "cache.json"
    data = cache.read_bytes()
    cache.write_bytes(data[: len(data) // 2])
    result = cached_build(tree, tmp_path)
    assert (result.digested, result.reused) == (6, 0)
    assert cached_build(tree, tmp_path).reused == 6


def test_unchanged_directories_are_not_listed_again(tree: Path, tmp_path: Path) -> None:
    age(tree)
    first = cached_build(tree, tmp_path)
    assert first.listed
    second = cached_build(tree, tmp_path)
    assert (second.digested, second.reused, second.listed) == (0, 6, False)
    assert second.manifest == first.manifest
    (tree / "css/app.css").write_text("body { color: blue}\n")  # same size, same dirs
    third = cached_build(tree, tmp_path)
    assert (third.digested, third.listed) == (1, False)
    assert third.manifest == assetver.build_manifest(tree)


@pytest.mark.parametrize(
    "change",
    [
        lambda root: write(root, "css/new.css", "new\n"),
        lambda root: (root / "js/app.js").unlink(),
        lambda root: (root / "js/app.js").rename(root / "js/main.js"),
        lambda root: (root / "img").rename(root / "images"),
        lambda root: write(root, "img/deep/er/logo.svg", "<svg/>\n"),
        lambda root: (root / "css/app.css").unlink() or (root / "css/app.css").mkdir(),
        lambda root: write(root, ".hidden", "x") and write(root, "visible", "x"),
    ],
    ids=["add", "delete", "rename-file", "rename-dir", "add-nested", "file-to-dir", "names"],
)
def test_changed_directories_are_listed(
    tree: Path, tmp_path: Path, change: Callable[[Path], object]
) -> None:
    """A name added, removed or renamed changes its directory, so the cached listing is
    not used: the tree is scanned and the result equals a fresh build."""
    age(tree)
    cached_build(tree, tmp_path)
    change(tree)
    age(tree)
    result = cached_build(tree, tmp_path)
    assert result.listed
    assert result.manifest == assetver.build_manifest(tree)
    after = cached_build(tree, tmp_path)
    assert (after.digested, after.listed) == (0, False)
    assert after.manifest == result.manifest


def test_directory_changed_after_the_build_started_is_listed_next_time(
    tree: Path, tmp_path: Path
) -> None:
    """The racy rule for directories: a listing is reused only if the directory's mtime
    and ctime are older than the start of the build that listed it."""
    age(tree)
    future = time.time_ns() + 3600 * 10**9
    os.utime(tree / "css", ns=(future, future))
    cached_build(tree, tmp_path)
    again = cached_build(tree, tmp_path)
    assert (again.digested, again.listed) == (0, True)


def test_symlinks_keep_the_tree_listed(tmp_path: Path) -> None:
    """A symlink's target can change without any listed directory changing."""
    root = tmp_path / "static"
    write(root, "css/app.css", "a\n")
    write(root, "real/b.css", "b\n")
    (root / "link").symlink_to(root / "real")
    age(root)
    cached_build(root, tmp_path)
    again = cached_build(root, tmp_path)
    assert (again.digested, again.listed) == (0, True)
    assert set(again.manifest) == {"css/app.css", "real/b.css", "link/b.css"}


def test_other_scan_options_ignore_the_cache(tree: Path, tmp_path: Path) -> None:
    age(tree)
    cached_build(tree, tmp_path)
    result = build_cached(
        tree, str(tmp_path / "cache.json"), options=ScanOptions.make(exclude=["*.svg"])
    )
    assert (result.digested, result.reused) == (5, 0)
    assert "img/logo.svg" not in result.manifest


def test_file_deleted_between_scan_and_hash_is_dropped(tree: Path, tmp_path: Path) -> None:
    """The first progress report (the files reused from the cache) comes after the scan
    and before hashing: a file deleted then is scanned but gone when it is opened."""
    age(tree)
    cached_build(tree, tmp_path)
    write(tree, "new.txt", "new\n")
    write(tree, "LICENSE", "BSD\n")
    reports: list[int] = []

    def vanish(done: int, total: int) -> None:
        if not reports:
            (tree / "new.txt").unlink()
        reports.append(done)

    result = build_cached(tree, str(tmp_path / "cache.json"), jobs=1, progress=vanish)
    assert reports[0] == 5 and result.digested == 2
    assert "new.txt" not in result.manifest
    assert result.manifest == assetver.build_manifest(tree)
    assert len(result.manifest) == 6


def test_file_deleted_while_reusing_listings_falls_back_to_a_scan(
    tree: Path, tmp_path: Path
) -> None:
    """With every directory unchanged the build stats the cached files without listing
    them; a changed file that is gone when it is opened sends the build back to a scan."""
    age(tree)
    cached_build(tree, tmp_path)
    write(tree, "robots.txt", "User-agent: *\nAllow: /\n")
    write(tree, "LICENSE", "BSD\n")
    reports: list[int] = []

    def vanish(done: int, total: int) -> None:
        if not reports:
            (tree / "robots.txt").unlink()
        reports.append(done)

    result = build_cached(tree, str(tmp_path / "cache.json"), jobs=1, progress=vanish)
    assert reports[0] == 4
    assert "robots.txt" not in result.manifest
    assert result.manifest == assetver.build_manifest(tree)
    assert len(result.manifest) == 5


# -- manifest loading -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON"),
        ("[1]", "not an assetver manifest"),
        ('{"version": 3, "algorithm": "xxh3_64", "files": {}}', "manifest version 3"),
        ('{"version": 1, "algorithm": "sha1", "files": {}}', "algorithm 'sha1'"),
        ('{"version": 1, "algorithm": "xxh3_64"}', "no 'files'"),
        (
            '{"version": 1, "algorithm": "xxh3_64", "files": {"a": {"digest": "XYZ", "size": 1}}}',
            "malformed entry for 'a'",
        ),
        (
            '{"version": 1, "algorithm": "xxh3_64", "files": {"a": {"digest": "0123456789abcdef",'
            ' "size": true}}}',
            "malformed entry",
        ),
    ],
)
def test_load_rejects_bad_manifests(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(content)
    with pytest.raises(ManifestError, match=message) as info:
        Manifest.load(path)
    assert str(path) in str(info.value) and "assetver build" in str(info.value)


def test_load_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist; rebuild it"):
        Manifest.load(tmp_path / "none.json")


def test_diff() -> None:
    old = Manifest({"a": Entry("0" * 16, 1), "b": Entry("1" * 16, 1), "c": Entry("2" * 16, 1)})
    new = Manifest({"b": Entry("1" * 16, 1), "c": Entry("3" * 16, 1), "d": Entry("4" * 16, 1)})
    d = old.diff(new)
    assert (d.added, d.removed, d.changed) == (["d"], ["a"], ["c"])
    assert not old.diff(old)


def test_manifest_from_unordered_iterates_in_sorted_order() -> None:
    """A cold build hands its entries over in the order they were hashed; the manifest
    sorts them on first iteration, and looks them up before that."""
    files = {
        "b.js": Entry("1" * 16, 1),
        "a/z.css": Entry("2" * 16, 2),
        "a.css": Entry("3" * 16, 3),
        "a-b/c": Entry("4" * 16, 4),
    }
    m = Manifest.from_unordered(dict(files))
    assert m["b.js"].size == 1 and "a/z.css" in m and len(m) == 4
    assert list(m) == sorted(files) == ["a-b/c", "a.css", "a/z.css", "b.js"]
    assert m == Manifest(files) and hash(Manifest.from_unordered(dict(files))) == hash(m)
    assert Manifest.from_unordered(dict(files)).to_json() == Manifest(files).to_json()
    assert Manifest().diff(Manifest.from_unordered(dict(files))).added == sorted(files)
    assert list(Manifest.from_unordered(dict(files)).items()) == sorted(files.items())


def test_public_api_is_pinned() -> None:
    """What `import assetver` offers is a contract: a change here is a CHANGELOG line."""
    assert assetver.__all__ == [
        "AssetNotFound",
        "AssetverError",
        "BuildResult",
        "CompileError",
        "ConfigError",
        "Entry",
        "FileReadError",
        "Manifest",
        "ManifestDiff",
        "ManifestError",
        "OutputError",
        "RootError",
        "WatchError",
        "__version__",
        "build_manifest",
    ]
    for name in assetver.__all__:
        assert getattr(assetver, name) is not None


@pytest.fixture
def one_second_fs(tmp_path: Path) -> Iterator[Path]:
    """A loop-mounted ext4 with 128-byte inodes: its timestamps have 1-second
    granularity (needs root and mkfs.ext4, which CI has)."""
    import shutil
    import subprocess

    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        pytest.skip("mounting a 1-second ext4 needs root and mkfs.ext4")
    image, mount = tmp_path / "fs.img", tmp_path / "mnt"
    mount.mkdir()
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-I", "128", str(image)], check=True, capture_output=True
    )
    done = subprocess.run(["mount", "-o", "loop", str(image), str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot loop-mount here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_racy_rule_across_filesystems(one_second_fs: Path, tmp_path: Path) -> None:
    """The tree on a 1-second filesystem, its cache on a nanosecond one: a same-size
    rewrite and a new file within the same second as the build are both seen."""
    root = one_second_fs / "static"
    cache_file = str(tmp_path / "cache" / "c")  # on the test's own (nanosecond) filesystem
    for _ in range(5):  # all within one second of the filesystem's clock
        while time.time() % 1 > 0.2:
            time.sleep(0.01)
        write(root, "app.css", "aaaa")
        written = (root / "app.css").stat().st_mtime_ns
        first = build_cached(root, cache_file)
        write(root, "app.css", "bbbb")
        write(root, "new.css", "new")
        if (root / "app.css").stat().st_mtime_ns == written:
            break
        (root / "new.css").unlink()
        os.unlink(cache_file)
    else:
        pytest.skip("could not write, build and rewrite within one second here")
    assert written % 10**9 == 0  # 1-second timestamps indeed
    for _ in range(3):
        again = build_cached(root, cache_file)
        assert again.manifest["app.css"].digest == digest_bytes(b"bbbb")
        assert "new.css" in again.manifest
    assert first.manifest["app.css"].digest == digest_bytes(b"aaaa")

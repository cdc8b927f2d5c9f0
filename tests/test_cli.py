"""The command line through ``main([...])``, and as real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from assetver import Manifest
from assetver.cli import main

from .conftest import write

REPO = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_build_writes_default_manifest(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "build", str(tree))
    assert code == 0 and err == ""
    default = tree / ".assetver" / "manifest.json"
    assert "6 files" in out and "6 hashed" in out and str(default) in out
    m = Manifest.load(default)
    assert m["css/app.css"].digest == "ca450649173fc9bd"
    code, out, _ = run(capsys, "build", str(tree), "--json")
    summary = json.loads(out)
    assert summary["files"] == 6 and summary["bytes"] == m.total_size()
    assert summary["digested"] + summary["reused"] == 6


def test_build_output_options(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "out" / "m.json"
    code, out, _ = run(
        capsys, "build", str(tree), "-m", str(out_file), "--exclude", "*.svg", "-j", "1", "-q"
    )
    assert code == 0 and out == ""
    m = Manifest.load(out_file)
    assert "img/logo.svg" not in m and len(m) == 5
    write(tree, ".hidden", "x")
    run(capsys, "build", str(tree), "-m", str(out_file), "--include-hidden", "--no-cache")
    assert ".hidden" in Manifest.load(out_file)


def test_build_is_byte_identical(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    run(capsys, "build", str(tree), "-m", str(a), "-j", "1")
    run(capsys, "build", str(tree), "-m", str(b), "-j", "4", "--no-cache")
    assert a.read_bytes() == b.read_bytes()


def test_check(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = tmp_path / "m.json"
    run(capsys, "build", str(tree), "-m", str(m))
    code, out, _ = run(capsys, "check", str(tree), "-m", str(m))
    assert code == 0 and "up to date" in out
    write(tree, "new.css", "x")
    (tree / "LICENSE").unlink()
    write(tree, "css/app.css", "changed")
    code, out, _ = run(capsys, "check", str(tree), "-m", str(m))
    assert code == 1
    assert "+ new.css" in out and "- LICENSE" in out and "~ css/app.css" in out
    assert "assetver build" in out
    code, out, _ = run(capsys, "check", str(tree), "-m", str(m), "--json")
    assert code == 1
    got = json.loads(out)
    assert {k: got[k] for k in ("stale", "added", "removed", "changed")} == {
        "stale": True,
        "added": ["new.css"],
        "removed": ["LICENSE"],
        "changed": ["css/app.css"],
    }


def test_check_default_manifest_inside_root(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "build", str(tree))
    assert run(capsys, "check", str(tree))[0] == 0


def test_diff(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    run(capsys, "build", str(tree), "-m", str(old))
    write(tree, "js/app.js", "changed")
    write(tree, "added.txt", "x")
    run(capsys, "build", str(tree), "-m", str(new))
    code, out, _ = run(capsys, "diff", str(old), str(new))
    assert code == 0 and out.splitlines() == ["+ added.txt", "~ js/app.js"]
    code, out, _ = run(capsys, "diff", str(old), str(new), "--json")
    got = json.loads(out)
    assert {k: got[k] for k in ("added", "removed", "changed")} == {
        "added": ["added.txt"],
        "removed": [],
        "changed": ["js/app.js"],
    }
    old_app = Manifest.load(old)["js/app.js"].digest
    new_app = Manifest.load(new)["js/app.js"].digest
    assert got["files"] == [
        {"path": "added.txt", "new": {"digest": Manifest.load(new)["added.txt"].digest}},
        {"path": "js/app.js", "old": {"digest": old_app}, "new": {"digest": new_app}},
    ]
    assert run(capsys, "diff", str(old), str(old)) == (0, "", "")
    assert run(capsys, "diff", str(old), str(new), "--exit-code")[0] == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["build", "{tmp}/missing"], "static root {tmp}/missing does not exist"),
        (["build", "{tmp}/file.txt"], "is not a directory"),
        (["check", "{tmp}/root", "-m", "{tmp}/missing.json"], "does not exist; rebuild it"),
        (["check", "{tmp}/root", "-m", "{tmp}/corrupt.json"], "corrupt.json is not valid JSON"),
        (["check", "{tmp}/root", "-m", "{tmp}/v9.json"], "has manifest version 9"),
        (["diff", "{tmp}/corrupt.json", "{tmp}/v9.json"], "not valid JSON"),
        (["build", "{tmp}/root", "-m", "{tmp}/file.txt/m.json"], "cannot write"),
        (["build", "{tmp}/root", "--jobs", "0"], "--jobs must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    write(tmp_path, "root/a.css", "a")
    write(tmp_path, "file.txt", "x")
    write(tmp_path, "corrupt.json", "{")
    write(tmp_path, "v9.json", '{"version": 9, "algorithm": "xxh3_64", "files": {}}')
    code, out, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("assetver: error: ")
    assert message.format(tmp=tmp_path) in err
    assert "Traceback" not in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["check"]) == 2
    assert main(["--version"]) == 0
    capsys.readouterr()


def test_unwritable_output_keeps_previous_manifest(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    m = out_dir / "m.json"
    run(capsys, "build", str(tree), "-m", str(m))
    before = m.read_bytes()
    write(tree, "new.css", "x")
    (out_dir / ".assetver-cache").unlink()
    os.rename(m, tmp_path / "saved.json")
    (out_dir).rmdir()
    (out_dir).write_text("now a file")
    code, _, err = run(capsys, "build", str(tree), "-m", str(m))
    assert code == 2 and "cannot write" in err
    assert (tmp_path / "saved.json").read_bytes() == before


def run_unprivileged(argv: list[str]) -> tuple[int, str]:
    """Runs ``main(argv)`` in a forked child that is not root (root reads any file)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.close(read_fd)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            os.dup2(write_fd, 2)
            sys.stderr = os.fdopen(2, "w", closefd=False)
            code = main(argv)
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        err = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err


def test_unreadable_file_is_exit_2_naming_it() -> None:
    base = Path(tempfile.mkdtemp(prefix="assetver-perm-"))
    try:
        base.chmod(0o777)
        root = base / "static"
        write(root, "ok.css", "ok")
        secret = write(root, "secret.css", "secret")
        root.chmod(0o755)
        secret.chmod(0)
        code, err = run_unprivileged(["build", str(root), "-m", str(base / "m.json")])
        assert code == 2, err
        assert err.count("\n") == 1
        assert "secret.css" in err and "--exclude" in err
        assert not (base / "m.json").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_installed_script_and_checkout_shim(tree: Path, tmp_path: Path) -> None:
    script = shutil.which("assetver") or str(Path(sys.executable).parent / "assetver")
    for argv in (
        [script],
        [sys.executable, str(REPO / "cli.py")],
        [sys.executable, "-m", "assetver"],
    ):
        out = tmp_path / f"{len(argv)}.json"
        result = subprocess.run(
            [*argv, "build", str(tree), "-m", str(out), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["files"] == 6
        check = subprocess.run(
            [*argv, "check", str(tree), "-m", str(out)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert check.returncode == 0, check.stderr
    bad = subprocess.run(
        [sys.executable, str(REPO / "cli.py"), "build", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


KILLER = """
import os, signal, sys
import assetver.atomic as atomic
real_replace = os.replace
def slow_fsync(fd):
    os.write(int(sys.argv[2]), b"x")
    signal.pause()
atomic.os = type(sys)("os_with_slow_fsync")
atomic.os.__dict__.update(os.__dict__)
atomic.os.fsync = slow_fsync
from assetver.cli import main
sys.exit(main(["build", sys.argv[1], "-m", sys.argv[3], "--no-cache"]))
"""


def test_kill_mid_write_keeps_previous_manifest(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real build process SIGKILLed after writing the new bytes but before the rename."""
    out = tmp_path / "m.json"
    run(capsys, "build", str(tree), "-m", str(out))
    before = out.read_bytes()
    for i in range(200):
        write(tree, f"many/{i}.txt", str(i) * 50)
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLER, str(tree), str(write_fd), str(out)],
        pass_fds=[write_fd],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    os.close(write_fd)
    try:
        assert os.read(read_fd, 1) == b"x", "the build never reached its write"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        os.close(read_fd)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert out.read_bytes() == before
    assert len(Manifest.load(out)) == 6
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline and not list(tmp_path.glob(".assetver-*.tmp")):
        time.sleep(0.01)
    assert list(tmp_path.glob(".assetver-*.tmp")), "the killed build had a temporary file"
    run(capsys, "build", str(tree), "-m", str(out))
    assert len(Manifest.load(out)) == 206

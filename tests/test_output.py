"""The compiled output: its layout, its invariants (every hashed copy hashes to its name,
every digest is that of the served bytes, every rewritten reference names a hashed copy
that exists), Merkle propagation, retention, incremental and crash-safe writes."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import assetver
from assetver import CompileError, Manifest, references
from assetver.cli import main
from assetver.compress import decompress
from assetver.hashing import digest_bytes, integrity
from assetver.output import compile_output
from assetver.retention import clean, prune
from assetver.urls import split_hashed

from .conftest import age, write

FONT = bytes(range(256)) * 40
PNG = b"\x89PNG\r\n\x1a\n" + bytes(300)


def make_site(root: Path) -> None:
    """A small realistic tree: a stylesheet importing another, fonts and images by
    url(), a source map, a script with one, and files nothing references."""
    write(
        root,
        "css/app.css",
        '@import "base.css";\n'
        "@font-face { font-family: F; src: url(../fonts/f.woff2) format('woff2'),"
        ' url("../fonts/f.eot?#iefix") format("embedded-opentype"); }\n'
        "body { background: url(/static/img/bg.png) }\n"
        '.x { content: "url(not-a-ref.png)" } /* url(nor-this.png) */\n'
        + "p { margin: 0 }\n" * 100
        + "/*# sourceMappingURL=app.css.map */\n",
    )
    write(root, "css/base.css", "html { background: url('../img/bg.png') }\n" * 30)
    write(root, "css/app.css.map", '{"version":3,"sources":["app.scss"],"mappings":""}')
    write(root, "fonts/f.woff2", FONT)
    write(root, "fonts/f.eot", FONT[::-1])
    write(root, "img/bg.png", PNG)
    write(root, "js/app.js", "console.log('app');\n" * 80 + "//# sourceMappingURL=app.js.map\n")
    write(root, "js/app.js.map", '{"version":3,"sources":["../css/app.css"],"file":"app.js"}')
    write(root, "LICENSE", "MIT\n")
    write(root, "robots.txt", "User-agent: *\n")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "static"
    make_site(root)
    return root


def output_files(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and ".assetver" not in p.parts
    }


def check_invariants(out: Path) -> Manifest:
    """What every output must satisfy, whatever built it."""
    manifest = Manifest.load(out / ".assetver/manifest.json")
    assert manifest.output
    for logical, entry in manifest.items():
        served = (out / logical).read_bytes()
        copy = (out / entry.hashed).read_bytes()
        assert served == copy, logical
        assert digest_bytes(copy) == entry.digest and len(copy) == entry.size, logical
        if entry.integrity is not None:
            assert entry.integrity == integrity(copy)
        for coding, size in entry.variants.items():
            suffix = {"br": ".br", "gzip": ".gz", "zstd": ".zst"}[coding]
            for path in (out / (entry.hashed + suffix), out / (logical + suffix)):
                variant = path.read_bytes()
                assert len(variant) == size and decompress(variant, coding) == copy, path
    for path, data in output_files(out).items():
        split = split_hashed(path.removesuffix(".br").removesuffix(".gz").removesuffix(".zst"))
        if split is not None and path.endswith((".css", ".js", ".woff2", ".png", ".eot")):
            assert digest_bytes(data) == split[1], f"{path} does not hash to its name"
    for logical, entry in manifest.items():
        refs = references.scan(logical, (out / entry.hashed).read_bytes()) or []
        for ref in refs:
            path = ref.value.split("?")[0].split("#")[0]
            if split_hashed(path) is None:
                continue  # left as written (data:, schemes, unresolved)
            if path.startswith("/static/"):
                target = out / path.removeprefix("/static/")
            else:
                target = out / os.path.dirname(logical) / path
            assert target.is_file(), f"{logical}: {ref.value} names no hashed copy"
    return manifest


def test_layout_and_invariants(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = assetver.build_manifest(site, output=out)
    assert manifest == check_invariants(out)
    app = manifest["css/app.css"]
    text = (out / app.hashed).read_text()
    base, font, eot, png = (
        manifest[p] for p in ("css/base.css", "fonts/f.woff2", "fonts/f.eot", "img/bg.png")
    )
    assert f'@import "{base.hashed.removeprefix("css/")}";' in text
    assert f"url(../{font.hashed})" in text
    assert f'url("../{eot.hashed}?#iefix")' in text
    assert f"url(/static/{png.hashed})" in text
    assert '"url(not-a-ref.png)"' in text and "url(nor-this.png)" in text
    assert "sourceMappingURL=app.css." in text and text.endswith(".map */\n")
    assert app.deps == [
        "css/app.css.map",
        "css/base.css",
        "fonts/f.eot",
        "fonts/f.woff2",
        "img/bg.png",
    ]
    assert app.integrity is not None and app.integrity.startswith("sha384-")
    assert set(app.variants) == {"br", "gzip"}
    assert "variants" not in manifest["img/bg.png"].extra  # PNG: already compressed
    assert "variants" not in manifest["LICENSE"].extra  # too small to gain
    js = (out / manifest["js/app.js"].hashed).read_text()
    assert js.endswith(
        f"//# sourceMappingURL={manifest['js/app.js.map'].hashed.removeprefix('js/')}\n"
    )
    assert (out / ".assetver/.gitignore").read_text().endswith("*\n")


def test_determinism(site: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assetver.build_manifest(site, output=a)
    copy = tmp_path / "elsewhere" / "static"
    make_site(copy)
    assetver.build_manifest(copy, output=b)
    assert output_files(a) == output_files(b)
    assert (a / ".assetver/manifest.json").read_bytes() == (
        b / ".assetver/manifest.json"
    ).read_bytes()


def test_merkle_changes_exactly_the_ancestors(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = assetver.build_manifest(site, output=out)
    write(site, "img/bg.png", PNG + b"changed")
    second = assetver.build_manifest(site, output=out)
    changed = {p for p in first if first[p].digest != second[p].digest}
    assert changed == {"img/bg.png", "css/base.css", "css/app.css"}
    write(site, "fonts/f.woff2", FONT + b"x")
    third = assetver.build_manifest(site, output=out)
    assert {p for p in second if second[p].digest != third[p].digest} == {
        "fonts/f.woff2",
        "css/app.css",
    }
    check_invariants(out)


def test_no_change_rebuild_writes_nothing(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    age(site)
    compile_output(site, out)
    files = [p for p in out.rglob("*") if p.is_file()]  # .assetver/ itself is the clock's
    before = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in files}
    again = compile_output(site, out)
    assert (again.written, again.compressed, again.source.digested) == (0, 0, 0)
    assert [p for p in out.rglob("*") if p.is_file()] == files
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in files} == before


def test_one_change_rewrites_it_and_its_dependants(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    age(site)
    compile_output(site, out)
    write(site, "css/base.css", "html { color: red }\n" * 60)
    result = compile_output(site, out)
    assert result.source.digested == 1
    assert result.compressed == 4  # br and gzip of the new base.css and app.css
    check_invariants(out)


def test_retention_and_pruning(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    v1 = assetver.build_manifest(site, output=out)
    write(site, "css/base.css", "html { color: blue }\n" * 30)
    v2 = assetver.build_manifest(site, output=out)
    old = v1["css/app.css"].hashed
    assert old != v2["css/app.css"].hashed
    for p, entry in v1.items():  # v1's page still loads entirely, with its own bytes
        assert digest_bytes((out / entry.hashed).read_bytes()) == entry.digest, p
    assert prune(str(out), keep=0, keep_for=0) > 0
    assert not (out / old).exists() and not (out / (old + ".br")).exists()
    check_invariants(out)
    for entry in v2.values():
        assert (out / entry.hashed).exists()


def test_keep_counts_builds_and_keep_for_ages(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    versions = []
    for i in range(4):
        write(site, "css/base.css", f"html {{ z-index: {i} }}\n" * 30)
        versions.append(assetver.build_manifest(site, output=out, keep=2, keep_for=0))
    hashed = [v["css/base.css"].hashed for v in versions]
    assert [(out / h).exists() for h in hashed] == [False, True, True, True]
    assert clean(str(out), keep=0, keep_for=0) > 0
    assert [(out / h).exists() for h in hashed] == [False, False, False, True]
    with pytest.raises(assetver.OutputError, match="not a compiled output"):
        clean(str(tmp_path), keep=0)


def test_removed_file_leaves_its_current_path(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = assetver.build_manifest(site, output=out)
    (site / "LICENSE").unlink()
    assetver.build_manifest(site, output=out)
    assert not (out / "LICENSE").exists()
    assert (out / first["LICENSE"].hashed).exists()  # retained for old pages


def test_cycle_is_an_error_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "static"
    write(root, "a.css", '@import "b.css";')
    write(root, "b.css", '@import "a.css";')
    with pytest.raises(CompileError, match=r"a\.css:1:9 @import \"b\.css\" -> b\.css"):
        assetver.build_manifest(root, output=tmp_path / "out")
    left = assetver.build_manifest(root, output=tmp_path / "out", cycles="leave")
    assert (tmp_path / "out" / left["a.css"].hashed).read_bytes() == b'@import "b.css";'


def test_missing_reference_warns_and_strict_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "static"
    write(root, "a.css", "a { b: url(missing.png) }\n/*# sourceMappingURL=a.css.map */")
    out = tmp_path / "out"
    assert main(["build", str(root), "-o", str(out), "-q"]) == 0
    err = capsys.readouterr().err
    assert "a.css:1:8: warning: missing reference" in err and "missing-sourcemap" in err
    assert main(["build", str(root), "-o", str(out), "-q", "--strict"]) == 1
    assert "missing-reference" in capsys.readouterr().err


def test_non_utf8_stylesheet(tmp_path: Path) -> None:
    root = tmp_path / "static"
    write(root, "a.css", b"/* \xe9viter */ a { b: url(i.png) }")
    write(root, "i.png", PNG)
    m = assetver.build_manifest(root, output=tmp_path / "out")
    data = (tmp_path / "out" / m["a.css"].hashed).read_bytes()
    assert data.startswith(b"/* \xe9viter */") and m["i.png"].hashed.encode() in data


def test_foreign_variants_are_left_out(tmp_path: Path) -> None:
    root = tmp_path / "static"
    write(root, "app.css", "a{}" * 1000)
    write(root, "app.css.gz", gzip.compress(b"old bytes", mtime=0))
    m = assetver.build_manifest(root, output=tmp_path / "out")
    assert "app.css.gz" not in m
    assert gzip.decompress((tmp_path / "out/app.css.gz").read_bytes()) == b"a{}" * 1000


def test_output_overlapping_the_root_is_refused(site: Path) -> None:
    for out in (site / "dist", site, site.parent):
        with pytest.raises(assetver.OutputError, match="choose a directory outside it"):
            compile_output(site, out)


def test_cli_o_naming_a_manifest_file_fails_loudly(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "existing"
    existing.write_text("{}")
    for target in (str(tmp_path / "manifest.json"), str(existing)):
        assert main(["build", str(site), "-o", target]) == 2
        assert "-m" in capsys.readouterr().err
        assert not Path(target).is_dir()


def test_cli_build_output_and_json(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert (
        main(["build", str(site), "-o", str(out), "--json", "--compress", "br:5,gzip:6,zstd:3"])
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["output"] == str(out) and summary["files"] == 10
    manifest = check_invariants(out)
    assert set(manifest["css/app.css"].variants) == {"br", "gzip", "zstd"}
    assert main(["diff", str(out), str(out), "--exit-code"]) == 0


def _killer(root: Path, out: Path, delay: float) -> int:
    """Compiles in a child process killed with SIGKILL after ``delay`` seconds."""
    code = f"import assetver; assetver.build_manifest({str(root)!r}, output={str(out)!r}, jobs=1)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    return proc.wait()


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.3, 0.6])
def test_a_kill_at_any_moment_leaves_a_servable_output(
    site: Path, tmp_path: Path, delay: float
) -> None:
    out = tmp_path / "out"
    v1 = assetver.build_manifest(site, output=out)
    for i in range(200):
        write(site, f"more/f{i}.css", f"a{{b:url(../img/bg.png)}} /* {i} */" * 50)
    write(site, "css/base.css", "html { color: green }\n" * 30)
    _killer(site, out, delay)
    current = Manifest.load(out / ".assetver/manifest.json")
    assert current in (v1, current)
    for entry in current.values():  # whatever manifest is in force is complete
        assert digest_bytes((out / entry.hashed).read_bytes()) == entry.digest
    repaired = assetver.build_manifest(site, output=out)
    assert repaired == check_invariants(out)

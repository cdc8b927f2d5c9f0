"""Precompression: codecs round-trip, bytes are deterministic, skip and keep rules."""

from __future__ import annotations

import dataclasses
import gzip
import os
import random
import subprocess
import sys
import threading
import time
import zlib

import pytest
import zstandard

from assetver import compress as c
from assetver.errors import ConfigError

PROPERTIES = ("color", "margin", "padding", "display", "border", "width", "font-size")
VALUES = ("0", "1px", "auto", "none", "flex", "#fff", "100%", "1rem", "var(--bs-gray-500)")


def css(size: int, seed: int = 1) -> bytes:
    """Stylesheet-like text: many short rules drawn from a small vocabulary."""
    rnd = random.Random(seed)
    rules: list[str] = []
    total = 0
    while total < size:
        body = "; ".join(f"{rnd.choice(PROPERTIES)}: {rnd.choice(VALUES)}" for _ in range(4))
        rules.append(f".c{len(rules)} {{ {body}; }}\n")
        total += len(rules[-1])
    return "".join(rules).encode()[:size]


def js(size: int, seed: int = 2) -> bytes:
    """Minified-script-like text."""
    rnd = random.Random(seed)
    names = ["e", "t", "n", "r", "this", "window", "document", "Object"]
    parts: list[str] = []
    total = 0
    while total < size:
        a, b = rnd.choice(names), rnd.choice(names)
        parts.append(
            f"function f{len(parts)}({a},{b}){{return {a}.call({b},{rnd.randint(0, 99)})}};"
        )
        total += len(parts[-1])
    return "".join(parts).encode()[:size]


def big(size: int = 9 << 20) -> bytes:
    """A multi-MB file, past zstd's 8 MiB window limit, quick for every codec."""
    block = css(64 * 1024, seed=3)
    return (block * (size // len(block) + 1))[:size]


TEXTS = {"css": css(150_000), "js": js(120_000), "small": css(2_000)}
LEVELS = [(coding, level) for coding in c.CODINGS for level in c.CODINGS[coding].levels]


@pytest.mark.parametrize(("coding", "level"), LEVELS)
def test_every_level_decodes_to_the_identity_bytes(coding: str, level: int) -> None:
    data = TEXTS["small"] if level > 9 else TEXTS["js"]
    variant = c.compress(data, coding, level)
    assert variant is not None
    assert c.decompress(variant, coding) == data


@pytest.mark.parametrize("coding", list(c.CODINGS))
@pytest.mark.parametrize("name", list(TEXTS))
def test_default_levels_decode_and_repeat_byte_for_byte(coding: str, name: str) -> None:
    data = TEXTS[name]
    level = c.CODINGS[coding].default_level
    first = c.compress(data, coding, level)
    assert first is not None and len(first) < 0.5 * len(data)
    assert c.decompress(first, coding) == data
    assert c.compress(bytes(data), coding, level) == first


def test_a_multi_megabyte_file_round_trips() -> None:
    data = big()
    variants = c.variants_of(data, c.CompressOptions.parse("br,gzip,zstd"))
    assert sorted(variants) == ["br", "gzip", "zstd"]
    for coding, variant in variants.items():
        assert c.decompress(variant, coding) == data


def test_threads_make_the_same_bytes_as_one_thread() -> None:
    options = c.CompressOptions.parse("br:5,gzip,zstd")
    items = [(f"{name}-{i}", data + bytes([i])) for name, data in TEXTS.items() for i in range(2)]
    serial = c.compress_all(items, options, threads=1)
    assert c.compress_all(items, options, threads=4) == serial
    raw: dict[str, bytes | None] = {}

    def run(key: str, data: bytes) -> None:
        raw[key] = c.compress(data, "zstd", 19)

    workers = [threading.Thread(target=run, args=item) for item in items]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert raw == {key: serial[key]["zstd"] for key, _ in items} != {}


def test_gzip_header_has_no_time_and_no_name() -> None:
    data = TEXTS["css"]
    for level, extra_flags in ((9, 2), (6, 0), (1, 4)):
        variant = c.compress(data, "gzip", level)
        assert variant is not None
        assert variant[:10] == bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, extra_flags, 255])
        assert gzip.decompress(variant) == zlib.decompress(variant, wbits=31) == data


@pytest.mark.parametrize("level", [19, 20, 22])
def test_zstd_frames_record_the_size_and_a_window_browsers_accept(level: int) -> None:
    data = big()
    variant = c.compress(data, "zstd", level)
    assert variant is not None
    frame = zstandard.get_frame_parameters(variant)
    assert frame.content_size == len(data)
    assert frame.window_size <= 8 * 1024 * 1024
    if level > 19:
        uncapped = zstandard.ZstdCompressor(level=level).compress(data)
        assert zstandard.get_frame_parameters(uncapped).window_size > 8 * 1024 * 1024


def test_small_zstd_frames_have_small_windows() -> None:
    variant = c.compress(TEXTS["small"], "zstd", 19)
    assert variant is not None
    assert zstandard.get_frame_parameters(variant).window_size <= 2048


@pytest.mark.parametrize(
    ("coding", "level"),
    [("zstd", 23), ("zstd", 0), ("zstd", -5), ("br", 12), ("br", -1), ("gzip", 0), ("gzip", 10)],
)
def test_levels_out_of_range_are_refused(coding: str, level: int) -> None:
    with pytest.raises(ConfigError, match=f"{coding} level {level} is out of range"):
        c.compress(b"x" * 2000, coding, level)
    with pytest.raises(ConfigError):
        c.variant_key("0123456789abcdef", coding, level)


def test_unknown_codings_are_refused() -> None:
    for call in (
        lambda: c.compress(b"x", "deflate", 6),
        lambda: c.decompress(b"x", "deflate"),
        lambda: c.library_version("deflate"),
    ):
        with pytest.raises(ConfigError, match="unknown coding 'deflate'"):
            call()


@pytest.mark.parametrize(
    "path",
    [
        "img/photo.jpg",
        "IMG/PHOTO.JPG",
        "fonts/a.WOFF2",
        "fonts/a.woff",
        "x.tar.gz",
        "app.css.br",
        "app.js.Zst",
        "pics/a.avif",
        "media/clip.mp4",
        "docs/report.docx",
        "sound.OPUS",
    ],
)
def test_compressed_formats_are_skipped(path: str) -> None:
    assert not c.should_compress(path, 100_000)


@pytest.mark.parametrize(
    "path",
    [
        "css/app.css",
        "js/katex.min.js",
        "fonts/a.ttf",
        "fonts/a.OTF",
        "fonts/a.eot",
        "favicon.ico",
        "app.wasm",
        "icons/x.SVG",
        "LICENSE",
        "data/x.json",
        "styles/_vars.scss",
        "dir.gz/readme",
    ],
)
def test_text_and_uncompressed_formats_are_kept(path: str) -> None:
    assert c.should_compress(path, 100_000)


def test_empty_and_small_files_are_skipped() -> None:
    assert not c.should_compress("app.css", 0)
    assert not c.should_compress("app.css", 0, min_size=0)
    assert not c.should_compress("app.css", 1023)
    assert c.should_compress("app.css", 1024)
    assert c.should_compress("app.css", 1, min_size=0)
    assert c.compress(b"", "br", 11) is None
    assert c.variants_of(b"", c.CompressOptions()) == {}


def test_the_probe_rejects_incompressible_bytes() -> None:
    rnd = random.Random(4)
    noise = rnd.randbytes(200_000)
    woff2_like = c.compress(TEXTS["css"] + TEXTS["js"], "br", 5)
    assert woff2_like is not None and len(woff2_like) >= c.PROBE_MIN_SIZE
    for data in (noise, woff2_like):
        assert c.incompressible(data)
        assert c.variants_of(data, c.CompressOptions.parse("br,gzip,zstd")) == {}
    assert not c.incompressible(TEXTS["css"])
    assert not c.incompressible(noise[:1000])
    half = b"".join(noise[i : i + 512] + TEXTS["js"][i : i + 512] for i in range(0, 65536, 512))
    assert not c.incompressible(half)
    assert sorted(c.variants_of(half, c.CompressOptions())) == ["br", "gzip"]


def test_the_keep_rule_judges_each_coding_on_its_own() -> None:
    html = b'<!DOCTYPE html><html><head><meta charset="utf-8"><title>Hello</title></head>'
    html += b"<body></body></html>\n"
    options = c.CompressOptions.parse("br,gzip,zstd")
    sizes = {coding: len(c._ENCODERS[coding](html, level)) for coding, level in options.levels}
    assert sizes["br"] <= 0.95 * len(html) < sizes["gzip"]
    assert c.compress(html, "gzip", 9) is None
    kept = {coding for coding, size in sizes.items() if size <= 0.95 * len(html)}
    assert set(c.variants_of(html, options)) == kept
    assert c.compress(os.urandom(5000), "br", 11) is None


@pytest.mark.parametrize(
    ("text", "levels"),
    [
        ("br,gzip", (("br", 11), ("gzip", 9))),
        ("gzip, br", (("br", 11), ("gzip", 9))),
        ("br:5,gzip:9,zstd:19", (("br", 5), ("gzip", 9), ("zstd", 19))),
        ("ZSTD:3,Br:0", (("br", 0), ("zstd", 3))),
        ("zstd:22", (("zstd", 22),)),
        ("none", ()),
        (" None ", ()),
    ],
)
def test_options_parse(text: str, levels: tuple[tuple[str, int], ...]) -> None:
    options = c.CompressOptions.parse(text)
    assert options.levels == levels
    assert c.CompressOptions.parse(str(options)) == options


def test_default_options_are_brotli_and_gzip_and_frozen() -> None:
    options = c.CompressOptions()
    assert options == c.CompressOptions.parse("br,gzip") == c.CompressOptions.parse("gzip,br")
    assert str(options) == "br:11,gzip:9"
    assert hash(options) == hash(c.CompressOptions.parse("br:11,gzip:9"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.levels = ()  # type: ignore[misc]
    assert c.CompressOptions((("gzip", 6), ("br", 4))).levels == (("br", 4), ("gzip", 6))
    with pytest.raises(ConfigError, match="name each coding once"):
        c.CompressOptions((("br", 4), ("br", 5)))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"compression '': '' is not a coding; use br, gzip or zstd"),
        ("brotli", r"'brotli' is not a coding; use br, gzip or zstd, each with an optional"),
        ("br,gz", r"compression 'br,gz': 'gz' is not a coding"),
        ("none,br", r"'none' is not a coding; .* or none"),
        ("br,,gzip", r"'' is not a coding"),
        ("br:12", r"'br:12': br levels are 0-11"),
        ("br:x", r"'br:x': br levels are 0-11"),
        ("br:", r"'br:': br levels are 0-11"),
        ("gzip:0", r"'gzip:0': gzip levels are 1-9"),
        ("zstd:23", r"'zstd:23': zstd levels are 1-22"),
        ("zstd:-1", r"'zstd:-1': zstd levels are 1-22"),
        ("br,br:5", r"'br:5' names br a second time; name it once"),
    ],
)
def test_bad_options_name_the_token_and_the_fix(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        c.CompressOptions.parse(text)
    assert "\n" not in str(raised.value)


def test_largest_items_run_first() -> None:
    sizes = [3_000, 90_000, 20_000, 90_000, 150_000, 5_000]
    items = [(f"f{i}", css(size, seed=i)) for i, size in enumerate(sizes)]
    order: list[str] = []
    results = c.compress_all(
        items, c.CompressOptions.parse("gzip"), threads=1, progress=lambda key, _: order.append(key)
    )
    assert order == ["f4", "f1", "f3", "f2", "f5", "f0"]
    assert list(results) == [key for key, _ in items]


def os_threads() -> int | None:
    """Threads of this process as the OS counts them (native ones too), where it says."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    except OSError:
        return None


def test_compress_all_keeps_every_key_and_leaves_no_thread() -> None:
    before = threading.active_count(), os_threads()
    noise = random.Random(5).randbytes(50_000)
    items = [("noise", noise), ("css", TEXTS["css"]), ("js", TEXTS["js"]), ("empty", b"")]
    done: list[tuple[str, str, list[str]]] = []

    def progress(key: str, variants: dict[str, bytes]) -> None:
        done.append((key, threading.current_thread().name, sorted(variants)))

    results = c.compress_all(items, c.CompressOptions(), threads=3, progress=progress)
    assert threading.active_count() == before[0]
    deadline = time.monotonic() + 1.0  # a joined thread may take a moment to leave the OS
    while (os_threads() or 0) > (before[1] or 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (os_threads() or 0) <= (before[1] or 0)
    assert list(results) == ["noise", "css", "js", "empty"]
    assert results["noise"] == results["empty"] == {}
    assert sorted(results["css"]) == sorted(results["js"]) == ["br", "gzip"]
    assert {name for _, name, _ in done} == {threading.current_thread().name}
    assert sorted(key for key, _, _ in done) == sorted(results)
    assert c.compress_all([], c.CompressOptions()) == {}
    assert c.compress_all(items, c.CompressOptions.parse("none"), threads=2)["css"] == {}


def test_compress_all_raises_what_a_codec_raises() -> None:
    items: list[tuple[str, bytes]] = [("ok", TEXTS["css"]), ("bad", "not bytes")]  # type: ignore[list-item]
    with pytest.raises(TypeError):
        c.compress_all(items, c.CompressOptions(), threads=2)
    with pytest.raises(ConfigError, match="threads=0: use 1 or more"):
        c.compress_all(items, c.CompressOptions(), threads=0)


def test_variant_keys_name_what_makes_the_bytes() -> None:
    key = c.variant_key("0123456789abcdef", "br", 11)
    assert key.startswith("0123456789abcdef:br:11:brotli-")
    assert c.variant_key("0123456789abcdef", "br", 11) == key
    assert c.variant_key("0123456789abcdef", "br", 5) != key
    assert c.variant_key("fedcba9876543210", "br", 11) != key
    assert c.library_version("gzip") == f"zlib-{zlib.ZLIB_RUNTIME_VERSION}"
    assert c.library_version("zstd").startswith(f"zstandard-{zstandard.__version__}-libzstd-1.")
    assert c.variant_key("0123456789abcdef", "zstd", 19).endswith(c.library_version("zstd") + ":1")


@pytest.mark.parametrize("coding", list(c.CODINGS))
def test_damaged_variants_are_value_errors(coding: str) -> None:
    variant = c.compress(TEXTS["css"], coding, 3)
    assert variant is not None
    for damaged in (b"", b"garbage" * 10, variant[: len(variant) // 2], variant + b"\x01"):
        with pytest.raises(ValueError, match=f"not valid {coding} data"):
            c.decompress(damaged, coding)


def test_foreign_variants_decode() -> None:
    data = TEXTS["js"]
    with_name = gzip.compress(data)
    assert c.decompress(with_name, "gzip") == data
    frames = zstandard.ZstdCompressor(level=3).compress(data) * 2
    assert c.decompress(frames, "zstd") == data * 2
    streamed = zstandard.ZstdCompressor(level=3, write_content_size=False).compress(data)
    assert c.decompress(streamed, "zstd") == data


def test_zstd_windows_browsers_refuse_are_not_decoded() -> None:
    params = zstandard.ZstdCompressionParameters(compression_level=3, window_log=24)
    stream = zstandard.ZstdCompressor(compression_params=params).compressobj()
    wide = stream.compress(TEXTS["css"]) + stream.flush()
    assert zstandard.get_frame_parameters(wide).window_size == 16 * 1024 * 1024
    with pytest.raises(ValueError, match="not valid zstd data"):
        c.decompress(wide, "zstd")


def test_importing_assetver_loads_no_codec() -> None:
    code = (
        "import sys, assetver, assetver.compress; "
        "lazy = {'brotli', 'zstandard', 'gzip', 'concurrent.futures.thread'}; "
        "print(sorted(lazy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "[]\n"

"""Precompressed variants: brotli, gzip and zstd copies of an asset's bytes.

The one home of the codecs: only this module imports brotli, zstandard, zlib and gzip,
each at first use, so that ``import assetver`` stays cheap. A variant's bytes depend on
the identity bytes, the coding, the level and the library version only (`variant_key`),
never on the time, a file name, the platform or the thread that made them.
"""

from __future__ import annotations

import posixpath
import struct
import threading
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from .errors import ConfigError
from .workers import available_cpus

if TYPE_CHECKING:
    import zstandard

K = TypeVar("K", bound=Hashable)


class Coding(NamedTuple):
    default_level: int
    levels: range


CODINGS = {
    "br": Coding(11, range(0, 12)),
    "gzip": Coding(9, range(1, 10)),
    "zstd": Coding(19, range(1, 23)),
}
"""Content codings and their levels (the suffixes of their files are `.http.SUFFIXES`)."""

SKIP_EXTENSIONS = frozenset(
    "jpg jpeg jpe jfif png apng gif webp avif jxl heic heif swf woff woff2 "  # noqa: SIM905
    "zip gz tgz bz2 tbz tbz2 xz txz br zst zstd 7z rar lz lzma lz4 "
    "jar whl apk xpi epub docx xlsx pptx odt ods odp "
    "3gp 3gpp asf avi flv m4v mkv mov mp4 mpeg mpg ogv webm wmv "
    "mp3 ogg oga opus m4a aac flac weba wma".split()
)
"""Extensions of formats compressed already: WhiteNoise's list and the research's
additions. ttf, otf, eot, ico, wasm and svg are not in it: they halve or better."""

MIN_SIZE = 1024
"""Default smallest file worth variants: smaller responses fit in one packet anyway."""

KEEP_RATIO = 0.95
"""A variant is kept only if it is at most this fraction of the identity bytes."""

PROBE_MIN_SIZE = 16 * 1024
PROBE_RATIO = 0.98
"""The probe is zstd level 3 on the whole file, under 1% of the time of brotli 11.
Formats compressed already probe at 0.999 to 1.0; text mixed into random bytes probed at
0.975 or less whenever a strong codec brought it to `KEEP_RATIO`, from 16 KiB up. Smaller
files are not probed: containers blur the probe there, and the strong codecs are quick."""

ZSTD_WINDOW_LOG = 23
"""8 MiB: browsers refuse zstd frames that declare a larger window (RFC 9659)."""

BROTLI_LGWIN = 22
"""brotli's default window (4 MiB), in generic mode, passed explicitly so that the bytes
do not change with a library's defaults."""

_FORMAT = 1
"""Part of `variant_key`: bump it when a parameter here changes the bytes of variants."""

_local = threading.local()


def _check(coding: str, level: int | None = None) -> Coding:
    spec = CODINGS.get(coding)
    if spec is None:
        raise ConfigError(f"unknown coding {coding!r}: use one of {', '.join(CODINGS)}")
    if level is not None and level not in spec.levels:
        known = f"{spec.levels[0]}-{spec.levels[-1]}"
        raise ConfigError(f"{coding} level {level} is out of range: use {known}")
    return spec


@dataclass(frozen=True, slots=True)
class CompressOptions:
    """Which variants to make: (coding, level) pairs, kept in `CODINGS` order."""

    levels: tuple[tuple[str, int], ...] = (("br", 11), ("gzip", 9))

    def __post_init__(self) -> None:
        for coding, level in self.levels:
            _check(coding, level)
        if len(dict(self.levels)) != len(self.levels):
            raise ConfigError(f"compression {self}: name each coding once")
        order = list(CODINGS)
        ordered = tuple(sorted(self.levels, key=lambda pair: order.index(pair[0])))
        object.__setattr__(self, "levels", ordered)

    @classmethod
    def parse(cls, text: str) -> CompressOptions:
        """Reads ``"br,gzip"``, ``"br:5,gzip:9,zstd:19"`` or ``"none"``."""
        tokens = [token.strip().lower() for token in text.split(",")]
        if tokens == ["none"]:
            return cls(())
        levels: dict[str, int] = {}
        for token in tokens:
            coding, colon, level = token.partition(":")
            where = f"compression {text!r}: {token!r}"
            if coding not in CODINGS:
                fix = "use br, gzip or zstd, each with an optional :level (br:11,gzip:9), or none"
                raise ConfigError(f"{where} is not a coding; {fix}")
            if coding in levels:
                raise ConfigError(f"{where} names {coding} a second time; name it once")
            known = CODINGS[coding].levels
            if not colon:
                levels[coding] = CODINGS[coding].default_level
            elif level.isdigit() and int(level) in known:
                levels[coding] = int(level)
            else:
                raise ConfigError(f"{where}: {coding} levels are {known[0]}-{known[-1]}")
        return cls(tuple(levels.items()))

    def __str__(self) -> str:
        return ",".join(f"{coding}:{level}" for coding, level in self.levels) or "none"


def should_compress(logical_path: str, size: int, *, min_size: int = MIN_SIZE) -> bool:
    """Tells whether a file may get variants, from its name and size alone."""
    extension = posixpath.splitext(logical_path)[1][1:].lower()
    return size > 0 and size >= min_size and extension not in SKIP_EXTENSIONS


def incompressible(data: bytes) -> bool:
    """Tells whether a cheap probe shows that ``data`` cannot shrink to `KEEP_RATIO`, so
    that no slow codec is wasted on it (formats missing from `SKIP_EXTENSIONS`)."""
    return len(data) >= PROBE_MIN_SIZE and len(_zstd(data, 3)) > PROBE_RATIO * len(data)


def compress(data: bytes, coding: str, level: int) -> bytes | None:
    """Returns the ``coding`` variant of ``data``, or None unless it is at most
    `KEEP_RATIO` of the input (serving the identity bytes is as good then)."""
    _check(coding, level)
    if not data:
        return None
    variant = _ENCODERS[coding](data, level)
    return variant if len(variant) <= KEEP_RATIO * len(data) else None


def _brotli(data: bytes, level: int) -> bytes:
    import brotli

    return bytes(brotli.compress(data, mode=brotli.MODE_GENERIC, quality=level, lgwin=BROTLI_LGWIN))


def _gzip(data: bytes, level: int) -> bytes:
    """One member with mtime 0, no name and OS 255 ("unknown"), framed here because the
    header `gzip` writes differs between its functions and between Python versions."""
    import zlib

    deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(data) + deflate.flush()
    extra_flags = 2 if level == 9 else 4 if level == 1 else 0
    header = struct.pack("<BBBBIBB", 0x1F, 0x8B, 8, 0, 0, extra_flags, 255)
    return header + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def _zstd(data: bytes, level: int) -> bytes:
    """A one-shot frame: it records the content size and zstd fits the window to the
    input, but at levels 20-22 only `ZSTD_WINDOW_LOG` keeps it under 8 MiB."""
    compressors: dict[int, zstandard.ZstdCompressor] = getattr(_local, "zstd", {})
    compressor = compressors.get(level)
    if compressor is None:
        import zstandard

        window_log = zstandard.ZstdCompressionParameters.from_level(level).window_log
        params = zstandard.ZstdCompressionParameters(
            compression_level=level, window_log=min(window_log, ZSTD_WINDOW_LOG)
        )
        compressor = compressors[level] = zstandard.ZstdCompressor(compression_params=params)
    return compressor.compress(data)


_ENCODERS: dict[str, Callable[[bytes, int], bytes]] = {
    "br": _brotli,
    "gzip": _gzip,
    "zstd": _zstd,
}


def variants_of(data: bytes, options: CompressOptions) -> dict[str, bytes]:
    """Returns the kept variants of ``data`` (coding -> bytes), each judged on its own."""
    if not options.levels or incompressible(data):
        return {}
    made = {coding: compress(data, coding, level) for coding, level in options.levels}
    return {coding: variant for coding, variant in made.items() if variant is not None}


def _own_compressors() -> None:
    """Gives the calling thread its own zstd compressors: they must not be shared."""
    _local.zstd = {}


def compress_all(
    items: Iterable[tuple[K, bytes]],
    options: CompressOptions,
    *,
    threads: int | None = None,
    progress: Callable[[K, dict[str, bytes]], None] | None = None,
) -> dict[K, dict[str, bytes]]:
    """Returns `variants_of` the bytes of each item, by key, in the order of ``items``.

    The largest items start first, so that a big file does not finish last, on
    ``threads`` threads (default: one per CPU): the codecs release the GIL, so threads
    scale as well as processes do (1.96x against 1.93x on 2 CPUs) without forking or
    pickling. ``progress`` is called in the calling thread as each item finishes. No
    thread outlives the call, so the caller may fork afterwards.
    """
    if threads is not None and threads < 1:
        raise ConfigError(f"threads={threads}: use 1 or more, or None for one per CPU")
    unique = dict(items)
    results: dict[K, dict[str, bytes]] = {key: {} for key in unique}
    if not unique:
        return results
    from concurrent.futures import ThreadPoolExecutor, as_completed

    jobs = sorted(unique.items(), key=lambda item: len(item[1]), reverse=True)
    workers = min(threads or available_cpus(), len(jobs))
    pool = ThreadPoolExecutor(workers, "assetver-compress", _own_compressors)
    try:
        futures = {pool.submit(variants_of, data, options): key for key, data in jobs}
        for future in as_completed(futures):
            key = futures[future]
            results[key] = future.result()
            if progress is not None:
                progress(key, results[key])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


@cache
def library_version(coding: str) -> str:
    """Names the library making ``coding`` variants, down to the version: its bytes may
    change from one version to the next (libzstd 1.5.5 and 1.5.7 differ)."""
    _check(coding)
    if coding == "br":
        import brotli

        return f"brotli-{brotli.__version__}"
    if coding == "gzip":
        import zlib

        return f"zlib-{zlib.ZLIB_RUNTIME_VERSION}"
    import zstandard

    libzstd = ".".join(map(str, zstandard.ZSTD_VERSION))
    return f"zstandard-{zstandard.__version__}-libzstd-{libzstd}"


def variant_key(digest: str, coding: str, level: int) -> str:
    """What makes a variant reusable: equal keys mean byte-identical variants, so that a
    build never recompresses a digest it already has a variant (or a refusal) of."""
    _check(coding, level)
    return f"{digest}:{coding}:{level}:{library_version(coding)}:{_FORMAT}"


def decompress(data: bytes, coding: str) -> bytes:
    """Returns the identity bytes of a variant, for tests and for checking variants found
    in a tree; raises ValueError unless ``data`` is complete and decodes the way browsers
    decode it (zstd: one or more frames, windows of at most 8 MiB)."""
    import gzip
    import zlib

    import brotli
    import zstandard

    _check(coding)
    try:
        if not data:
            raise ValueError("empty")
        if coding == "br":
            return bytes(brotli.decompress(data))
        if coding == "gzip":
            return gzip.decompress(data)
        decompressor = zstandard.ZstdDecompressor(max_window_size=1 << ZSTD_WINDOW_LOG)
        parts = []
        while data:
            frame = decompressor.decompressobj()
            parts.append(frame.decompress(data))
            if not frame.eof:
                raise ValueError("truncated")
            data = frame.unused_data
        return b"".join(parts)
    except (ValueError, OSError, EOFError, brotli.error, zlib.error, zstandard.ZstdError) as e:
        raise ValueError(f"not valid {coding} data: {e}") from e

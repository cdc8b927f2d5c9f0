"""HTTP rules shared by every adapter: content codings and media types.

Pure functions and constants; no framework imports.
"""

from __future__ import annotations

import mimetypes
import posixpath

ENCODINGS = (("br", ".br"), ("zstd", ".zst"), ("gzip", ".gz"))
"""Content codings of precompressed variants, best (smallest) first, with the suffix of
their files: what the handler negotiates and nginx's ``*_static`` modules look for."""

SUFFIXES = dict(ENCODINGS)

TYPES = {
    ".css": "text/css",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".ico": "image/vnd.microsoft.icon",
    ".avif": "image/avif",
    ".webp": "image/webp",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".txt": "text/plain",
    ".html": "text/html",
    ".htm": "text/html",
    ".cjs": "text/javascript",
    ".vtt": "text/vtt",
    ".xml": "application/xml",
    ".jsonld": "application/ld+json",
    ".pdf": "application/pdf",
    ".csv": "text/csv",
    ".md": "text/markdown",
    ".eot": "application/vnd.ms-fontobject",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".apng": "image/apng",
    ".jxl": "image/jxl",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".ogg": "audio/ogg",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".zip": "application/zip",
    ".gz": "application/gzip",
}
"""Media types browsers enforce (module scripts, fonts, wasm, manifests) whatever the
host's tables say; nginx's configuration sets the same."""


def content_type(logical_path: str) -> str:
    """Returns the media type of ``logical_path``, independent of the OS mimetypes table
    for the types web assets need; compressed archives are ``application/gzip`` (RFC 6713)
    or ``application/octet-stream``, as Tornado does."""
    ext = posixpath.splitext(logical_path)[1].lower()
    known = TYPES.get(ext)
    if known is not None:
        return known
    mime_type, encoding = mimetypes.guess_type(logical_path)
    if encoding == "gzip":
        return "application/gzip"
    if encoding is not None or mime_type is None:
        return "application/octet-stream"
    return mime_type


def accepted_encodings(header: str | None) -> tuple[str, ...]:
    """Returns the codings of `ENCODINGS` that an ``Accept-Encoding`` value accepts,
    best first (RFC 9110 12.5.3: q-values, ``*``, ``q=0`` refuses; ``x-gzip`` is
    ``gzip``; a higher q wins, equal q go by `ENCODINGS` order)."""
    if not header:
        return ()
    weights: dict[str, float] = {}
    for item in header.split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        if not name:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:
                    q = 0.0
        if name == "x-gzip":
            name = "gzip"
        weights[name] = q
    star = weights.get("*", 0.0)
    ranked = []
    for rank, (coding, _suffix) in enumerate(ENCODINGS):
        q = weights.get(coding, star)
        if q > 0:
            ranked.append((-q, rank, coding))
    return tuple(coding for _, _, coding in sorted(ranked))

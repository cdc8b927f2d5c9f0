"""nginx configuration that serves a root or a compiled output with assetver's policy.

`render` returns text for nginx's ``http { }`` context: ``map`` blocks, an optional
``upstream`` of Tornado processes (as in Tornado's deployment guide) and a ``server``
serving the prefix. ``part="http"`` goes in ``http { }`` and ``part="server"`` inside an
existing ``server { }``. The policy is `assetver.policy`'s, as the handler applies it:
exactly one ``Cache-Control: public, max-age=31536000, immutable`` and a far-future
``Expires`` only for bytes proven to be the digest in the URL; other served bytes
``no-cache`` (``max_age`` applies to unversioned URLs only); errors ``no-store``; a
stale or forged digest gets the ``stale`` policy (``serve``, ``redirect``, ``404``).

**Output** (``manifest.output``): nothing is listed, so a new build into the same DIR
needs no reload. A URL names a hashed copy (``app.<d>.css`` itself, or ``app.css?v=<d>``
mapped by regular expressions to ``app.<d>.css`` as `urls.hashed_path` does); the copy
is served when it exists, current or retained, since a hashed copy is content-addressed.
Immutability is decided from the file ``try_files`` served (``$uri`` read first in
``add_header``), never from the URL. Variants: ``gzip_static`` and, with ``brotli``,
``brotli_static`` (Debian's libnginx-mod-http-brotli-static), ``Vary: Accept-Encoding``
on every file (``gzip_vary`` would open each ``.gz`` to decide); zstd variants are
served by Tornado only (nginx has no stock module). ``stale="redirect"`` sends the *unversioned*
URL (the configuration knows no digests; the handler sends the current versioned URL)
and answers 404 for names that need percent-encoding. A hashed name with a ``?v=``
digest is read by its ``?v=`` (the handler reads the name). The manifest only lists its
logical paths that look hashed (``x.0123456789abcdef.js``), never immutable: regenerate
the configuration when a build adds one. One regular expression runs per request on the
hot path; ``pcre_jit on;`` (nginx's main context) makes it cheaper still.

**Root** (version 1 manifest, files served in place): maps from the manifest hold the
current URLs, so regenerate and reload when it changes, and deploy to a new root rather
than over the old one. nginx cannot prove a root's ``.gz``/``.br`` files hold the
current bytes: precompressed variants are served from an output only.

Both: ``disable_symlinks on`` (nginx serves no symlinked file, where the handler serves
links inside the root); hidden names (`urls.is_hidden`) and ``deny`` get 404; media types
come from `http.TYPES` (a ``types`` block replaces the host's table: other extensions are
``application/octet-stream``). ``Access-Control-Allow-Origin`` goes on 200, 206, 304 and
416. nginx adds headers before it finds a range unsatisfiable and keeps them on the 416,
so a request with a ``Range`` header gets ``no-store`` (where the handler's 206 is
``immutable``). ``open_file_cache`` entries are revalidated every second.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from urllib.parse import quote

from .errors import ConfigError
from .http import TYPES
from .manifest import Manifest
from .policy import CACHEABLE_CODES, STALE_POLICIES, Status, cache_control
from .urls import DIGEST_PATTERN, hashed_path, is_digest, is_hidden, split_hashed

STYLES = ("query", "filename")
PARTS = ("all", "http", "server")

FAR_FUTURE = "Thu, 31 Dec 2037 23:55:55 GMT"
"""The ``Expires`` value of immutable responses: the date nginx's ``expires max`` sends."""

UPSTREAM_NAME = "assetver_frontends"
MAX_BODY_SIZE = "50m"
STALE_LOCATION = "@assetver_stale"

_PREFIX_RE = re.compile(r"/(?:[A-Za-z0-9_~-][A-Za-z0-9._~-]*/)+\Z")
_ADDRESS_RE = re.compile(
    r"(?:(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):)?[0-9]{1,5}\Z|unix:/[^\s;{}\"'$]+\Z"
)
_SERVER_NAME_RE = re.compile(r"[A-Za-z0-9.*~^:_-]+\Z")
_ORIGIN_RE = re.compile(r"[A-Za-z0-9*:/._~%+\[\]-]+\Z")
_SPECIAL_RE = re.compile(r'[\\"\n\r\t$]')

_BARE = "[^/.]+"
"""A name without an extension."""
_EXT = r"\.[^./]*"
"""A name's last extension."""
_DIGEST = r"\." + DIGEST_PATTERN
_HAS_V = r"~*(?:^|&)v(?:=|&|$)"
"""A ``v`` argument, as nginx's case-insensitive ``$arg_v`` finds it, empty or not."""
_SAFE_URI = r"~^[A-Za-z0-9._~!$&'()*+,;=:@/-]+$"
"""A decoded URI that is its own percent-encoding, so it can go in a Location."""


def render(
    manifest: Manifest,
    *,
    root: str,
    prefix: str = "/static/",
    style: str = "query",
    listen: str = "80",
    server_name: str | None = None,
    upstreams: Sequence[str] = (),
    part: str = "all",
    brotli: bool = False,
    max_age: int = 0,
    deny: Iterable[str] = (),
    stale: str = "serve",
    allow_origin: str | None = "*",
    open_file_cache: int = 256,
) -> str:
    """Returns nginx configuration serving ``manifest`` from ``root``.

    ``root`` is the absolute path of the static root, or of the output DIR when
    ``manifest.output``; ``prefix`` the URL prefix; ``style`` which URLs of a root are
    current (``"query"``: ``?v=<digest>``, ``"filename"``: ``app.<digest>.css``; an
    output serves both). ``listen`` and ``server_name`` go in the ``server``; each of
    ``upstreams`` (``ADDR:PORT``) is a Tornado process that gets every request outside
    the prefix. ``part`` is ``"all"``, ``"http"`` or ``"server"``. ``brotli`` serves an
    output's ``.br`` variants. ``max_age`` is how long unversioned responses may be
    cached (0: ``no-cache``); ``deny`` lists logical paths never served; ``stale`` is
    one of `policy.STALE_POLICIES`; ``allow_origin`` the ``Access-Control-Allow-Origin``
    value (None: no header); ``open_file_cache`` how many open files and failed
    look-ups each worker keeps (0: none). Raises `.ConfigError` for invalid values.
    """
    _check(root=root, prefix=prefix, style=style, listen=listen, server_name=server_name)
    if part not in PARTS:
        raise ConfigError(f"part={part!r} is not one of {PARTS}")
    for address in upstreams:
        if not _ADDRESS_RE.match(address):
            raise ConfigError(f"upstream {address!r} is not ADDR:PORT or unix:/PATH")
    if type(max_age) is not int or max_age < 0:
        raise ConfigError(f"max_age={max_age!r} must be a whole number of seconds >= 0")
    if type(open_file_cache) is not int or open_file_cache < 0:
        raise ConfigError(f"open_file_cache={open_file_cache!r} must be a number of files >= 0")
    if stale not in STALE_POLICIES:
        raise ConfigError(f"stale={stale!r} is not one of {STALE_POLICIES}")
    if allow_origin is not None and not _ORIGIN_RE.match(allow_origin):
        raise ConfigError(f"allow_origin {allow_origin!r} is not *, null or an origin")
    if brotli and not manifest.output:
        raise ConfigError(
            "brotli variants are served from an output only (a root's .br files are not "
            "proven to hold the current bytes): compile one with assetver build ROOT --output DIR"
        )
    denied = {d for d in deny if not is_hidden(d)}
    if manifest.output:
        maps, try_files = _output_maps(manifest, prefix=prefix, stale=stale)
    else:
        maps, try_files = _root_maps(manifest, prefix=prefix, style=style, stale=stale, deny=denied)
    out: list[str] = []
    if part in ("all", "http"):
        out += [*maps, *_header_maps(max_age)]
        if "${assetver_dollar}" in "".join(maps) or "$" in root:
            out += ['geo $assetver_dollar { default "$"; }', ""]
        out += _upstream(upstreams) if upstreams else []
    if part == "http":
        return "\n".join(out).rstrip("\n") + "\n"
    locations = _locations(
        root,
        prefix,
        denied,
        try_files=f"{try_files} {STALE_LOCATION if stale == 'redirect' else '=404'}",
        variants=manifest.output,
        brotli=brotli,
        allow_origin=allow_origin,
        file_cache=open_file_cache,
    )
    if upstreams or part == "all":
        locations += _root_location(upstreams)
    if part == "server":
        return "\n".join(locations).rstrip("\n") + "\n"
    out += ["server {", f"    listen {listen};"]
    if server_name:
        out.append(f"    server_name {' '.join(server_name.split())};")
    out += [f"    {line}" if line else "" for line in locations]
    return "\n".join([*out, "}"]) + "\n"


def _check(*, root: str, prefix: str, style: str, listen: str, server_name: str | None) -> None:
    if style not in STYLES:
        raise ConfigError(f"style={style!r} is not one of {STYLES}")
    if not _PREFIX_RE.match(prefix):
        raise ConfigError(
            f"prefix {prefix!r} must look like /static/: slashes around letters, digits, "
            "'.', '_', '~' or '-', no segment starting with '.'"
        )
    if not root.startswith("/"):
        raise ConfigError(f"root {root!r} must be an absolute path")
    if any(c in root for c in "\0\n\r"):
        raise ConfigError(f"root {root!r} contains a control character nginx cannot load")
    if not _ADDRESS_RE.match(listen):
        raise ConfigError(f"listen {listen!r} is not PORT, ADDR:PORT or unix:/PATH")
    names = (server_name or "").split()
    if server_name is not None and not (names and all(_SERVER_NAME_RE.match(n) for n in names)):
        raise ConfigError(f"server name {server_name!r} is not a list of host names")


def _shapes() -> list[tuple[str, str]]:
    """Returns the hashed paths (after the prefix) as (regex, what it captures as the
    path it is a hashed copy of): `urls.split_hashed`, the digest before the last
    extension, else at the end of a name without one. Anchored at the end, so cheap
    without PCRE's JIT; exact for what reaches them: the prefix location's URIs, where
    no name starts with a dot (``location ~ /\\.`` answers those first)."""
    return [(f"(.*){_DIGEST}({_EXT})", "$1$2"), (f"((?:.*/)?{_BARE}){_DIGEST}", "$1")]


def _map(source: str, name: str, default: str, entries: Iterable[tuple[str, str]]) -> list[str]:
    lines = [f"map {source} ${name} {{", f"    default {default};"]
    lines += [f"    {key} {value};" for key, value in entries]
    return [*lines, "}", ""]


def _looking_hashed(manifest: Manifest, prefix: str) -> list[str]:
    """Returns the URIs of logical paths whose names look hashed: each is a file of its
    own, never the hashed copy its name suggests."""
    return sorted(prefix + p for p in manifest if split_hashed(p) and not is_hidden(p))


def _output_maps(manifest: Manifest, *, prefix: str, stale: str) -> tuple[list[str], str]:
    """The hashed copy a URL names is tried as ``<prefix>./<hashed path>``: the same
    file, a URI no request has (nginx removes ``/./``), so ``$uri`` starting so in
    ``add_header`` means a hashed copy was served, told without a costly regex."""
    p = re.escape(prefix)
    own = [uri[len(prefix) :] for uri in _looking_hashed(manifest, prefix)]
    unless_own = f"(?!(?:{'|'.join(map(re.escape, own))})$)" if own else ""
    named = f".*{_DIGEST}{_EXT}|(?:.*/)?{_BARE}{_DIGEST}"
    query = [
        (_quote(f"~^({DIGEST_PATTERN})&{p}(.*)({_EXT})$"), f'"{prefix}./$2.$1$3"'),
        (_quote(f"~^({DIGEST_PATTERN})&{p}(.*[^/])$"), f'"{prefix}./$2.$1"'),
    ]
    name = [(_quote(f"~^{p}({unless_own}(?:{named}))$"), f'"{prefix}./$1"')]
    logical = [(_quote(prefix + path), "$uri") for path in own]
    logical += [(_quote(f"~^{p}{regex}$"), f'"{prefix}{capture}"') for regex, capture in _shapes()]
    requested = '"$assetver_copy$assetver_has_v"'
    out = [f"# assetver: the output under {prefix}, nothing listed: a new build needs no reload"]
    out += _hash_sizes([_quote(prefix + path) for path in own])
    out += ["# the hashed copy a URL names (app.<v>.css for app.css?v=<v>), as <prefix>./<path>"]
    by_v = [('""', "$assetver_named_copy")]
    out += _map("$arg_v", "assetver_copy", "$assetver_query_copy", by_v)
    out += _map('"$arg_v&$uri"', "assetver_query_copy", "$assetver_named_copy", query)
    out += _map("$uri", "assetver_named_copy", '""', name)
    out += _map("$args", "assetver_has_v", '""', [(_quote(_HAS_V), "v")])
    out += _map(requested, "assetver_asked", Status.STALE.value, [('""', Status.ABSENT.value)])
    out += ["# read first in add_header, where $uri is the file try_files served"]
    served = [(_quote(f"~^{p}\\./"), Status.CURRENT.value)]
    out += _map("$uri", "assetver_status", "$assetver_asked", served)
    if stale != "404":
        out += _map("$uri", "assetver_logical", "$uri", logical)
    if stale == "serve":
        return out, "$assetver_copy $assetver_logical"
    out += _map(requested, "assetver_absent", '""', [('""', "$uri")])
    if stale == "redirect":
        safe = [(_quote(_SAFE_URI), "$assetver_logical")]
        out += _map("$assetver_logical", "assetver_target", '""', safe)
        out += _map("$assetver_absent", "assetver_redirect", '""', [('""', "$assetver_target")])
    return out, "$assetver_copy $assetver_absent"


def _root_maps(
    manifest: Manifest, *, prefix: str, style: str, stale: str, deny: set[str]
) -> tuple[list[str], str]:
    files: dict[str, tuple[str, str]] = {}
    entries: dict[str, tuple[str, str]] = {}
    for logical, entry in manifest.items():
        if logical in deny or is_hidden(logical):
            continue
        if not is_digest(entry.digest):
            raise ConfigError(f"{logical!r} has a malformed digest {entry.digest!r}")
        hashed = prefix + hashed_path(logical, entry.digest)
        key = f"{entry.digest} {prefix}{logical}" if style == "query" else hashed
        url = f"{prefix}{quote(logical)}?v={entry.digest}" if style == "query" else quote(hashed)
        files.setdefault(key.lower(), (_quote(key), _quote(logical, variables=True)))
        entries.setdefault((prefix + logical).lower(), (_quote(prefix + logical), _quote(url)))
    p = re.escape(prefix)
    own = [_quote(uri) for uri in _looking_hashed(manifest, prefix)]
    logical_uri = [(uri, "$uri") for uri in own]
    logical_uri += [(_quote(f"~^{p}{rx}$"), f'"{prefix}{capture}"') for rx, capture in _shapes()]
    split = [(uri, '""') for uri in own] + [(_quote(f"~^{p}{rx}$"), "h") for rx, _ in _shapes()]
    stale_value = "$assetver_logical" if stale == "serve" else '""'
    source = '"$arg_v $uri"' if style == "query" else "$uri"
    out = [f"# assetver: {len(files)} current {style}-style URLs under {prefix}"]
    out += _hash_sizes([k for k, _ in (*files.values(), *entries.values())])
    out += _map(source, "assetver_file", '""', files.values())
    out += ["# the logical URI a URL names: a hashed name's, unless it is a file of its own"]
    out += _map("$uri", "assetver_logical", "$uri", logical_uri)
    out += _map("$uri", "assetver_split", '""', split)
    out += _map("$args", "assetver_has_v", '""', [(_quote(_HAS_V), "v")])
    out += ["# the current URL of each logical path"]
    out += _map("$assetver_logical", "assetver_entry", '""', entries.values())
    asked = [('""', Status.ABSENT.value)]
    out += _map('"$assetver_has_v$assetver_split"', "assetver_asked", Status.STALE.value, asked)
    current = Status.CURRENT.value
    out += _map("$assetver_file", "assetver_status", current, [('""', "$assetver_asked")])
    out += ["# served when the current file is not: plain URLs as they are, stale ones by policy"]
    out += _map("$assetver_file", "assetver_fallback", '""', [('""', "$assetver_noncurrent")])
    plain = [(Status.ABSENT.value, "$uri")]
    out += _map("$assetver_asked", "assetver_noncurrent", "$assetver_stale", plain)
    out += _map("$assetver_entry", "assetver_stale", stale_value, [('""', "$uri")])
    if stale == "redirect":
        redirect = [(Status.STALE.value, "$assetver_entry")]
        out += _map("$assetver_status", "assetver_redirect", '""', redirect)
    return out, f"{prefix}$assetver_file $assetver_fallback"


def _header_maps(max_age: int) -> list[str]:
    """Maps from the request's status to the caching headers, through
    `policy.cache_control`; ``range`` is a request with a Range header. nginx adds
    them to 2xx and 3xx only (here 200 and 304: a 206 is still a 200 then), where the
    policy does not depend on the code; errors get the ``always`` one."""
    states = [Status.CURRENT, Status.STALE, Status.ABSENT]
    cache = [(s.value, _quote(cache_control(s, 200, max_age=max_age))) for s in states]
    expires = [(s.value, _quote(FAR_FUTURE)) for s in states if s.immutable]
    errors = [(str(code), '""') for code in CACHEABLE_CODES]
    out = _map("$http_range", "assetver_caching", "range", [('""', "$assetver_status")])
    out += _map("$assetver_caching", "assetver_cache_control", _no_store(), cache)
    out += _map("$assetver_caching", "assetver_expires", '""', expires)
    return out + _map("$status", "assetver_error_cache_control", _no_store(), errors)


def _no_store() -> str:
    return _quote(cache_control(None, 404))


def _hash_sizes(keys: Sequence[str]) -> list[str]:
    """Returns map_hash_max_size and map_hash_bucket_size for these quoted keys.

    nginx looks for the smallest table where every bucket's keys fit in a bucket; from
    a max size above 10000 it starts 1000 below it. A table four times the number of
    keys leaves a few keys per bucket at worst, and buckets hold six of the longest.
    Both are ``http``-level and must precede every other ``map``.
    """
    if not keys:
        return [""]
    longest = max(len(k.encode("utf-8", "surrogateescape")) for k in keys)
    element = 8 + (longest + 7) // 8 * 8
    bucket = min(max(64, (8 + 6 * element + 63) // 64 * 64), 32768)
    return [
        f"map_hash_max_size {max(4 * len(keys), 16384)};",
        f"map_hash_bucket_size {bucket};",
        "",
    ]


def _upstream(upstreams: Sequence[str]) -> list[str]:
    out = [f"upstream {UPSTREAM_NAME} {{"]
    out += [f"    server {address};" for address in upstreams]
    return [*out, "}", ""]


def _types(exts: Iterable[str] | None = None) -> list[str]:
    """Returns a ``types`` block of `http.TYPES` (of ``exts`` only, when given)."""
    by_type: dict[str, list[str]] = {}
    for ext, media_type in TYPES.items():
        if exts is None or ext in exts:
            by_type.setdefault(media_type, []).append(ext.lstrip("."))
    lines = [f"    {media_type} {' '.join(names)};" for media_type, names in by_type.items()]
    return ["types {", *lines, "}", "default_type application/octet-stream;"]


def _locations(
    root: str,
    prefix: str,
    deny: set[str],
    *,
    try_files: str,
    variants: bool,
    brotli: bool,
    allow_origin: str | None,
    file_cache: int,
) -> list[str]:
    root = root.rstrip("/") or "/"
    origin = (
        [f"add_header Access-Control-Allow-Origin {_quote(allow_origin)};"] if allow_origin else []
    )
    headers = [
        # from=$document_root would end with alias's slash, where brotli_static fails
        f"disable_symlinks on {_quote('from=' + root, variables=True)};",
        "add_header Cache-Control $assetver_cache_control;",
        "add_header Cache-Control $assetver_error_cache_control always;",
        "add_header Expires $assetver_expires;",
        *origin,
        "add_header X-Content-Type-Options nosniff;",
    ]
    cache = [
        f"open_file_cache max={file_cache} inactive=20s;",
        "open_file_cache_valid 1s;",
        "open_file_cache_errors on;",
    ]
    compressed = ["gzip_static on;", *(["brotli_static on;"] if brotli else [])]
    compressed += ["gzip_proxied any;", "gzip_vary off;", "add_header Vary Accept-Encoding;"]
    body = [
        f"alias {_quote(root.rstrip('/') + '/', variables=True)};",
        f"try_files {try_files};",
        "sendfile on;",
        "tcp_nopush on;",
        *(compressed if variants else []),
        *_types(),
        *(cache if file_cache else []),
        *headers,
        "location ~ /\\. {",
        "    return 404;",
        "}",
    ]
    for logical in sorted(deny):
        body += [f"location = {_quote(prefix + logical)} {{", "    return 404;", "}"]
    out = _block(f"location ^~ {prefix}", body)
    if try_files.endswith(STALE_LOCATION):
        redirect = [
            "absolute_redirect off;",
            f"add_header Cache-Control {_quote(cache_control(None, 302))} always;",
            'if ($assetver_redirect = "") {',
            "    return 404;",
            "}",
            "return 302 $assetver_redirect;",
        ]
        out += _block(f"location {STALE_LOCATION}", redirect)
    for name in ("favicon.ico", "robots.txt"):
        own = [f"root {_quote(root, variables=True)};", "try_files $uri =404;"]
        out += _block(
            f"location = /{name}", [*own, *_types([posixpath.splitext(name)[1]]), *headers]
        )
    return out


def _block(head: str, body: Iterable[str]) -> list[str]:
    return [f"{head} {{", *(f"    {line}" for line in body), "}", ""]


def _root_location(upstreams: Sequence[str]) -> list[str]:
    if not upstreams:
        return _block(
            "location /", [f"add_header Cache-Control {_no_store()} always;", "return 404;"]
        )
    proxy = [
        f"client_max_body_size {MAX_BODY_SIZE};",
        "proxy_pass_header Server;",
        "proxy_set_header Host $http_host;",
        "proxy_redirect off;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Scheme $scheme;",
        "proxy_next_upstream error;",
        f"proxy_pass http://{UPSTREAM_NAME};",
    ]
    return _block("location /", proxy)


def _quote(text: str, *, variables: bool = False) -> str:
    """Returns ``text`` as one quoted nginx token; with ``variables``, for a directive
    that expands variables, where ``$`` becomes the ``$assetver_dollar`` variable."""
    if _SPECIAL_RE.search(text) is None:
        return f'"{text}"'
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    if variables:
        escaped = escaped.replace("$", "${assetver_dollar}")
    return f'"{escaped}"'

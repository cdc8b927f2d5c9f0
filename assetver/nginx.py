"""nginx configuration that serves the static root with assetver's caching policy.

`render` returns text for nginx's ``http { }`` context (a file to ``include`` there or
drop in ``conf.d/``): the ``map`` blocks, an optional ``upstream`` of Tornado
processes laid out like Tornado's deployment guide, and a ``server`` that serves the
prefix from the root. ``part="http"`` and ``part="server"`` split it for users who
already have a ``server { }``: the first goes in ``http { }``, the second inside the
existing ``server { }``.

The policy matches `assetver.tornado.StaticFileHandler`:

* a URL carrying the current digest (``/static/css/app.css?v=<digest>`` in query
  style, ``/static/css/app.<digest>.css`` in filename style) gets exactly one
  ``Cache-Control: public, max-age=31536000, immutable`` and a far-future ``Expires``
  (``add_header`` from maps; nginx's ``expires`` is not used because it adds a second
  ``Cache-Control``);
* no digest, a stale or a forged one: the current bytes with ``Cache-Control:
  no-cache`` (or ``public, max-age=N`` with ``max_age``), revalidated by nginx's ETag;
  hashed names of either style with a digest that is not current map to the current
  file, as the handler does;
* errors (404 under the prefix, dotfiles, the manifest) get ``Cache-Control: no-store``.

How the digest is checked: a map generated from the manifest takes the decoded, normalised
``$uri`` (and ``$arg_v`` in query style, as ``"$arg_v $uri"``: nginx rejects spaces in the
request line, so the first space ends the raw argument) to the logical path of the file
whose current digest that is, and ``try_files`` serves that file. nginx compares map keys
case-insensitively, so a hit always serves the file the digest was computed from. The
hash tables are sized for the manifest with ``map_hash_max_size`` and
``map_hash_bucket_size``; those are ``http``-level and must precede every other ``map``,
so include the ``http`` part before your own maps.

nginx cannot check that a file still has its manifest digest: regenerate the
configuration and reload nginx whenever the manifest changes, and deploy new files to a
new root rather than over the old one, so that an old digest never names new bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from .errors import ConfigError
from .manifest import Manifest
from .policy import IMMUTABLE, NO_STORE, REVALIDATE
from .urls import hashed_path

STYLES = ("query", "filename")
PARTS = ("all", "http", "server")

FAR_FUTURE = "Thu, 31 Dec 2037 23:55:55 GMT"
"""The ``Expires`` value of current versions: the date nginx's ``expires max`` sends."""

UPSTREAM_NAME = "assetver_frontends"
MAX_BODY_SIZE = "50m"

_DIGEST_RE = re.compile(r"[0-9a-f]{16}\Z")
_PREFIX_RE = re.compile(r"/(?:[A-Za-z0-9_~-][A-Za-z0-9._~-]*/)+\Z")
_ADDRESS_RE = re.compile(
    r"(?:(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):)?[0-9]{1,5}\Z|unix:/[^\s;{}\"'$]+\Z"
)
_SERVER_NAME_RE = re.compile(r"[A-Za-z0-9.*~^:_-]+\Z")
_SPECIAL_RE = re.compile(r'[\\"\n\r\t$]')
_HASHED_RE = r"\.[0-9a-f]{16}(\.[^./]+)?$"
_CACHEABLE_STATUSES = ("200", "206", "304")


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
    open_file_cache: int = 256,
) -> str:
    """Returns nginx configuration for ``manifest``, whose files live in ``root``.

    ``root`` is the absolute path of the static directory; ``prefix`` the URL prefix
    (Tornado's ``static_url_prefix``); ``style`` which URLs are current: ``"query"``
    (``?v=<digest>``) or ``"filename"`` (``app.<digest>.css``). ``listen`` and
    ``server_name`` go in the ``server``. Each of ``upstreams`` (``ADDR:PORT``) is a
    Tornado process that gets every request outside the prefix, as in Tornado's
    deployment guide. ``part`` is ``"all"``, ``"http"`` (maps and upstream only) or
    ``"server"`` (locations only). ``brotli`` adds ``brotli_static on`` (needs the
    ngx_brotli module). ``max_age`` is how long unversioned responses may be cached
    (0: ``no-cache``). ``deny`` lists logical paths never served (a manifest kept in
    the root under a name without a dot). ``open_file_cache`` is how many open files
    and failed look-ups each worker keeps, revalidated every second (0: none); it takes
    the extra look-ups of ``try_files`` and ``gzip_static`` off the request path. Raises
    `.ConfigError` for invalid values.
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
    denied = set(deny)
    out: list[str] = []
    if part in ("all", "http"):
        out += _http_part(
            manifest, root=root, prefix=prefix, style=style, max_age=max_age, deny=denied
        )
        if upstreams:
            out += _upstream(upstreams)
    if part == "http":
        return "\n".join(out).rstrip("\n") + "\n"
    locations = _locations(root, prefix, denied, brotli=brotli, file_cache=open_file_cache)
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


def _http_part(
    manifest: Manifest, *, root: str, prefix: str, style: str, max_age: int, deny: set[str]
) -> list[str]:
    pairs = sorted(_current_pairs(manifest, prefix=prefix, style=style, deny=deny).items())
    needs_dollar = "$" in root or any("$" in value for _, value in pairs)
    max_size, bucket_size = _hash_sizes(len(k.encode("utf-8", "surrogateescape")) for k, _ in pairs)
    source = '"$arg_v $uri"' if style == "query" else "$uri"
    out = [
        f"# assetver: {len(pairs)} current {style}-style URLs under {prefix}",
        f"map_hash_max_size {max_size};",
        f"map_hash_bucket_size {bucket_size};",
        "",
    ]
    if needs_dollar:
        out += ['geo $assetver_dollar { default "$"; }', ""]
    out.append(f"map {source} $assetver_file {{")
    out.append('    default "";')
    out += [f"    {_quote(key)} {_quote(value, variables=True)};" for key, value in pairs]
    out.append("}")
    out += [
        "",
        "map $uri $assetver_unhashed {",
        '    default "";',
        f"    {_quote('~^' + re.escape(prefix) + '(.+)' + _HASHED_RE)} {_quote(prefix + '$1$2')};",
        "}",
        "",
        "map $assetver_file $assetver_current {",
        '    "" 0;',
        "    default 1;",
        "}",
        "",
    ]
    revalidate = f"public, max-age={max_age}" if max_age else REVALIDATE
    out.append('map "$status$assetver_current" $assetver_cache_control {')
    out.append(f"    default {_quote(NO_STORE)};")
    for status in _CACHEABLE_STATUSES:
        out.append(f"    {status}1 {_quote(IMMUTABLE)};")
        out.append(f"    {status}0 {_quote(revalidate)};")
    out += ["}", "", 'map "$status$assetver_current" $assetver_expires {', '    default "";']
    out += [f"    {status}1 {_quote(FAR_FUTURE)};" for status in _CACHEABLE_STATUSES]
    out += ["}", ""]
    return out


def _current_pairs(
    manifest: Manifest, *, prefix: str, style: str, deny: set[str]
) -> dict[str, str]:
    """Returns map key -> logical path of every current URL, one per case-folded key."""
    pairs: dict[str, str] = {}
    seen: set[str] = set()
    for logical, entry in manifest.items():
        if logical in deny or _is_hidden(logical):
            continue
        if not _DIGEST_RE.match(entry.digest):
            raise ConfigError(f"{logical!r} has a malformed digest {entry.digest!r}")
        if style == "query":
            key = f"{entry.digest} {prefix}{logical}"
        else:
            key = prefix + hashed_path(logical, entry.digest)
        folded = key.lower()
        if folded not in seen:
            seen.add(folded)
            pairs[key] = logical
    return pairs


def _hash_sizes(key_lengths: Iterable[int]) -> tuple[int, int]:
    """Returns (map_hash_max_size, map_hash_bucket_size) for keys of these byte lengths.

    nginx looks for the smallest table where every bucket's keys fit in a bucket; from
    a max size above 10000 it starts 1000 below it. A table four times the number of
    keys leaves a few keys per bucket at worst, and buckets hold six of the longest.
    """
    n = 0
    longest = 0
    for length in key_lengths:
        n += 1
        longest = max(longest, length)
    element = 8 + (longest + 2 + 7) // 8 * 8
    bucket = min(max(64, (8 + 6 * element + 63) // 64 * 64), 32768)
    return max(4 * n, 16384), bucket


def _is_hidden(logical: str) -> bool:
    return logical.startswith(".") or "/." in logical


def _upstream(upstreams: Sequence[str]) -> list[str]:
    out = [f"upstream {UPSTREAM_NAME} {{"]
    out += [f"    server {address};" for address in upstreams]
    return [*out, "}", ""]


def _locations(
    root: str, prefix: str, deny: set[str], *, brotli: bool, file_cache: int
) -> list[str]:
    root = root.rstrip("/") or "/"
    cache = [
        f"open_file_cache max={file_cache} inactive=20s;",
        "open_file_cache_valid 1s;",
        "open_file_cache_errors on;",
    ]
    common = [
        *(cache if file_cache else []),
        "disable_symlinks if_not_owner from=$document_root;",
        "add_header Cache-Control $assetver_cache_control always;",
        "add_header Expires $assetver_expires always;",
        "add_header X-Content-Type-Options nosniff always;",
    ]
    out = [
        f"location ^~ {prefix} {{",
        f"    alias {_quote(root.rstrip('/') + '/', variables=True)};",
        f"    try_files {prefix}$assetver_file $uri $assetver_unhashed =404;",
        "    default_type application/octet-stream;",
        "    sendfile on;",
        "    tcp_nopush on;",
        "    gzip_static on;",
        *(["    brotli_static on;"] if brotli else []),
        "    gzip_vary on;",
        *("    " + h for h in common),
        "    location ~ /\\. {",
        "        return 404;",
        "    }",
    ]
    for logical in sorted(d for d in deny if not _is_hidden(d)):
        out += [f"    location = {_quote(prefix + logical)} {{", "        return 404;", "    }"]
    out += ["}", ""]
    for name in ("favicon.ico", "robots.txt"):
        out += [
            f"location = /{name} {{",
            f"    root {_quote(root, variables=True)};",
            "    try_files $uri =404;",
            *("    " + h for h in common),
            "}",
            "",
        ]
    return out


def _root_location(upstreams: Sequence[str]) -> list[str]:
    if not upstreams:
        return [
            "location / {",
            f"    add_header Cache-Control {_quote(NO_STORE)} always;",
            "    return 404;",
            "}",
        ]
    return [
        "location / {",
        f"    client_max_body_size {MAX_BODY_SIZE};",
        "    proxy_pass_header Server;",
        "    proxy_set_header Host $http_host;",
        "    proxy_redirect off;",
        "    proxy_set_header X-Real-IP $remote_addr;",
        "    proxy_set_header X-Scheme $scheme;",
        "    proxy_next_upstream error;",
        f"    proxy_pass http://{UPSTREAM_NAME};",
        "}",
    ]


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

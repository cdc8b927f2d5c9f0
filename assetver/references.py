"""References inside one file's bytes: find them, resolve them, rewrite them in place.

`scan` finds the URLs a stylesheet names (``url()``, ``@import``, ``image-set()``,
``src()``, the effective ``sourceMappingURL``) and, in JavaScript, only the effective
``sourceMappingURL`` (ECMA-426's extraction without parsing). The CSS side is a lexer
built from CSS Syntax 3 in a few regexes: comments, strings and escapes are consumed
whole, so nothing inside them is ever taken for a reference, and no Python runs per
ordinary character. It works on bytes, so any encoding passes through untouched and
every offset is a byte offset. `resolve` turns a reference into a logical path,
`hashed_url` gives its new text and `splice` changes only those bytes.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from .diagnostics import Diagnostic
from .urls import hashed_path

# The CSS lexer: one regex whose every branch starts with a literal byte (``/ " ' \ @ (``),
# so `re` skips ordinary text in C. Comments, strings and escaped names are consumed
# whole; ``url(``, ``src(`` and ``image-set(`` are recognised at their ``(`` by looking
# back at the name. Inside ``image-set()`` and ``@namespace`` brackets matter too.
_IDC = rb"\-\w\x80-\xff\x00"
_HEX = rb"[0-9a-fA-F]{1,6}(?:\r\n|[ \t\n\r\f])?"
_ESC_BODY = rb"(?:" + _HEX + rb"|[^\n\r\f0-9a-fA-F])"
_ESC = rb"\\" + _ESC_BODY
_STR = rb"(?:[^%s\\\n\r\f]+|\\(?:" + _HEX + rb"|\r\n|[\s\S])?)*"
_COMMENT_BODY = rb"(?:[^*]*\*+(?:[^/*][^*]*\*+)*/|[\s\S]*)"
_BEFORE = rb"(?:(?<![" + _IDC + rb"\\#@])|(?<=(?:(?<!\\)|(?<=\\\\))<!--))"
_FUNCTIONS = {"url": "url", "src": "src", "iset": "image-set", "wset": "-webkit-image-set"}
_TOKENS = (
    rb"/\*(?P<c>" + _COMMENT_BODY + rb")"
    rb'|"(?P<dq>' + _STR % b'"' + rb')"?'
    rb"|'(?P<sq>" + _STR % b"'" + rb")'?"
    rb"|\\(?P<e>" + _ESC_BODY + rb"(?:[" + _IDC + rb"]+|" + _ESC + rb")*)\(?"
    rb"|@(?P<at>(?i:import|namespace))(?![" + _IDC + rb"]|\\(?![\n\r\f]))"
    rb"|\((?<=[lLcCtT]\()(?:"
    + b"|".join(
        rb"(?<=" + _BEFORE + rb"(?i:" + name.encode() + rb")\()(?P<" + group.encode() + rb">)"
        for group, name in _FUNCTIONS.items()
    )
    + rb")"
)
_MAIN = re.compile(_TOKENS)
_NESTED = re.compile(_TOKENS + b"".join(rb"|\%c(?P<b%d>)" % (c, c) for c in b"()[]{};"))
_QUOTED = {c: re.compile(rb"%c(%s)(%c?)" % (c, _STR % bytes([c]), c)) for c in b"\"'"}
_URL_TOKEN = re.compile(
    rb"[ \t\n\r\f]*((?:[^\"'()\\ \t\n\r\f\x01-\x08\x0b\x0e-\x1f\x7f]+|" + _ESC + rb")*)"
    rb"[ \t\n\r\f]*(\)?)"
)
_REMNANT = re.compile(rb"(?:[^)\\]+|\\" + _ESC_BODY + rb"?)*\)?")
_SKIP = re.compile(rb"(?:[ \t\n\r\f]+|/\*" + _COMMENT_BODY + rb")*")
_BRACKETS = re.compile(rb"[()\[\]{}]")
_CLOSER = {40: 41, 91: 93, 123: 125}
_JS_WS = (  # ECMAScript white space (TAB VT FF SP NBSP ZWNBSP and Zs), in UTF-8
    rb"(?:[\t\x0b\x0c ]|\xc2\xa0|\xef\xbb\xbf|\xe1\x9a\x80|\xe2\x80[\x80-\x8a\xaf]"
    rb"|\xe2\x81\x9f|\xe3\x80\x80)"
)
_ANY_WS = rb"(?:" + _JS_WS + rb"|[\n\r]|\xe2\x80[\xa8\xa9])"
_SOURCEMAP = re.compile(
    rb"[@#]" + _ANY_WS + rb"*sourceMappingURL=((?:(?!" + _ANY_WS + rb")[\s\S])*?)" + _ANY_WS + rb"*"
)
_JS_OPEN = re.compile(rb"/[/*]")
_JS_SPACES = re.compile(_JS_WS + rb"*")
_JS_GUARD = re.compile(rb"[`\"']|\*/")
_IDENT_BYTES = frozenset(b"-_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\x00")
_UNESCAPE = re.compile(
    r"\\(?:([0-9a-fA-F]{1,6})(?:\r\n|[ \t\n\r\f])?|(\r\n|[\n\r\f])|(.)|\Z)", re.S
)
_OPEN_HEX = re.compile(r"(?:^|[^\\])(?:\\\\)*\\[0-9a-fA-F]{1,6}\Z")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_C0_AND_SPACE = "".join(map(chr, range(0x21)))
_DIGITS = "0123456789"
_BLOCK, _IMAGE_SET, _NAMESPACE = 0, 1, 2
_CSS_NEWLINES = (b"\n", b"\r", b"\f")
_JS_NEWLINES = (b"\n", b"\r", b"\xe2\x80\xa8", b"\xe2\x80\xa9")


@dataclass(frozen=True, slots=True)
class Reference:
    """A URL inside a file: ``data[start:end]`` is its raw text, without quotes.

    ``line`` and ``column`` (1-based, in characters) locate the token carrying it: the
    opening quote of a string, the ``url(`` of a url token, the ``/*`` or ``//`` of a
    source-map comment. ``problem`` says why a reference cannot be rewritten (bad url,
    unterminated at end of file, not UTF-8).
    """

    kind: str
    start: int
    end: int
    raw: str
    value: str
    line: int
    column: int
    quote: str = ""
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where a reference leads: ``status`` is ``ok``, ``missing``, ``excluded``,
    ``outside-root``, ``skipped`` or ``malformed``; ``target`` the logical path;
    ``detail`` the skip or malformation reason; ``segment`` the range of the URL's
    last path segment in ``Reference.value``, where the digest goes."""

    status: str
    target: str | None = None
    detail: str = ""
    hint: str | None = None
    segment: tuple[int, int] = (0, 0)


def scan(logical_path: str, data: bytes) -> list[Reference] | None:
    """The references in ``data`` in source order, or None if the file is not rewritable."""
    lower = logical_path.lower()
    if lower.endswith(".css"):
        return _finish(data, _scan_css(data), _CSS_NEWLINES)
    if lower.endswith((".js", ".mjs")):
        return _finish(data, _scan_js(data), _JS_NEWLINES)
    return None


_Found = tuple[str, int, int, int, str, "str | None"]
"""(kind, token start, URL start, URL end, quote, problem) before line numbers."""


def _scan_css(data: bytes) -> list[_Found]:
    n = len(data)
    found: list[_Found] = []
    spans: list[tuple[int, int]] = []
    depth = _Depth(data, spans)
    stack: list[tuple[int | None, int]] = []
    expect, expect_kind = -1, ""
    sourcemap: _Found | None = None
    sourcemap_end = 0
    pos = 0

    def add(kind: str, tok: int, s: int, e: int, quote: str, problem: str | None) -> None:
        if not (stack and any(f[1] == _NAMESPACE for f in stack)):
            found.append((kind, tok, s, e, quote, problem))

    def string(q: int, kind: str | None) -> int:
        m = _QUOTED[data[q]].match(data, q)
        assert m is not None
        spans.append((q, m.end()))
        if kind:
            problem = None if m.group(2) else _unclosed(data, m.end(), "string")
            add(kind, q, q + 1, m.end(1), chr(data[q]), problem)
        return m.end()

    def function(name: str, tok: int, p: int) -> int:
        nonlocal expect, expect_kind
        if name == "url":
            kind = "import" if tok == expect else "url"
            m = _URL_TOKEN.match(data, p)
            assert m is not None
            if m.start(1) == m.end(1) and m.end(1) < n and data[m.end(1)] in b"\"'":
                if stack:
                    stack.append((41, _BLOCK))
                return string(m.end(1), kind)
            end, problem = m.end(), None
            if not m.group(2):
                if end == n:
                    problem = "unterminated url( at end of file"
                else:
                    remnant = _REMNANT.match(data, end)
                    assert remnant is not None
                    end, problem = remnant.end(), "bad url (space, quote or parenthesis)"
            spans.append((p - 1, end))
            stop = m.end(1) if problem is None else end - (data[end - 1 : end] == b")")
            add(kind, tok, m.start(1), stop, "", problem)
            return end
        if name == "src":
            q = _skip(data, p)
            if q < n and data[q] in b"\"'":
                expect, expect_kind = q, "src"
        if name in ("image-set", "-webkit-image-set"):
            stack.append((41, _IMAGE_SET))
        elif stack:
            stack.append((41, _BLOCK))
        return p

    def at_rule(name: str, tok: int, end: int) -> None:
        nonlocal expect, expect_kind
        if name == "import" and not stack:
            q = _skip(data, end)
            if q < n and data[q] in b"\"'uU\\" and not depth.at(tok):
                expect, expect_kind = q, "import"
        elif name == "namespace" and not any(f[1] == _NAMESPACE for f in stack):
            enclosing = depth.at(tok)
            outer = stack[-1][0] if stack else enclosing[-1] if enclosing else None
            stack.append((outer, _NAMESPACE))

    while True:
        m = (_NESTED if stack else _MAIN).search(data, pos)
        if m is None:
            break
        group, start, pos = m.lastgroup, m.start(), m.end()
        if group == "c":
            spans.append((start, pos))
            if data[start + 2 : start + 3] in (b"#", b"@"):
                closed = data.endswith(b"*/", 0, pos) and pos - start >= 4
                sm = _SOURCEMAP.fullmatch(data, start + 2, pos - 2 if closed else pos)
                if sm:
                    problem = None if closed else "unterminated comment at end of file"
                    sourcemap = ("sourcemap", start, sm.start(1), sm.end(1), "", problem)
                    sourcemap_end = pos
        elif group in ("dq", "sq"):
            kind = expect_kind if start == expect else None
            if kind is None and stack and stack[-1][1] == _IMAGE_SET:
                kind = "image-set"
            pos = string(start, kind)
        elif group == "e":
            name_end = m.end("e")
            spans.append((start, name_end))
            word = _word(data, start, name_end)
            if word and word[1] == "at":
                at_rule(word[2], word[0], name_end)
            if word and word[1] == "ident" and pos > name_end:
                pos = function(word[2], word[0], pos)
            elif pos > name_end and stack:
                stack.append((41, _BLOCK))
        elif group == "at":
            at_rule(m.group("at").decode().lower(), start, pos)
        elif group and group[0] == "b":
            ch = data[start]
            if stack[-1][1] == _NAMESPACE and (ch in b";{" or ch == stack[-1][0]):
                stack.pop()
                if not stack:
                    continue
            if ch in _CLOSER:
                stack.append((_CLOSER[ch], _BLOCK))
            elif ch == stack[-1][0]:
                stack.pop()
        else:
            name = _FUNCTIONS[group or ""]
            pos = function(name, start - len(name), pos)
    if sourcemap and _skip(data, sourcemap_end) == n:
        found.append(sourcemap)
    return found


def _skip(data: bytes, pos: int) -> int:
    m = _SKIP.match(data, pos)
    return m.end() if m else pos


def _unclosed(data: bytes, end: int, what: str) -> str:
    if end >= len(data):
        return f"unterminated {what} at end of file"
    return f"{what} broken by a newline"


class _Depth:
    """The brackets open at a position, counted outside comments, strings and url
    tokens (the recorded spans) only when asked: ``@import`` must be at top level."""

    def __init__(self, data: bytes, spans: list[tuple[int, int]]) -> None:
        self.data, self.spans, self.pos, self.next, self.open = data, spans, 0, 0, list[int]()

    def at(self, pos: int) -> list[int]:
        while self.pos < pos:
            gap_end, resume = pos, pos
            if self.next < len(self.spans) and self.spans[self.next][0] < pos:
                gap_end, resume = self.spans[self.next]
                self.next += 1
            for m in _BRACKETS.finditer(self.data, self.pos, gap_end):
                ch = self.data[m.start()]
                if ch in _CLOSER:
                    self.open.append(_CLOSER[ch])
                elif self.open and ch == self.open[-1]:
                    self.open.pop()
            self.pos = resume
        return self.open


def _word(data: bytes, start: int, end: int) -> tuple[int, str, str] | None:
    """The token around an escape at ``start``: (token start, "ident" | "at", name),
    or None for hashes and numbers; only names with escapes get here."""
    w = start
    while w and (data[w - 1] in _IDENT_BYTES or data[w - 1] >= 0x80):
        w -= 1
    if data.startswith(b"--", w) and data.endswith(b"<!", 0, w) and not _escaped(data, w - 2):
        w += 2
    text = data[w:end].decode("utf-8", "surrogateescape")
    if text[0] in _DIGITS or (text[0] == "-" and len(text) > 1 and text[1] in _DIGITS):
        return None
    name = _unescape(text, string=False)[0]
    lowered = name.lower() if name.isascii() else name
    if w and data[w - 1] == 0x40:
        return w - 1, "at", lowered
    if w and data[w - 1] == 0x23:
        return None
    return w, "ident", lowered


def _escaped(data: bytes, pos: int) -> bool:
    """Whether the byte at ``pos`` follows an odd run of backslashes."""
    run = 0
    while pos > run and data[pos - run - 1] == 0x5C:
        run += 1
    return run % 2 == 1


def _scan_js(data: bytes) -> list[_Found]:
    """ECMA-426's extraction without parsing, read from the last line up, plus the guard
    its issue note announces: no rewrite when the candidate or any comment after it
    holds a quote, a backtick or ``*/`` (it may be text inside a template literal)."""
    if b"sourceMappingURL" not in data:
        return []
    later_guard = False
    for start, end in _lines_backwards(data):
        code, candidate, after_guard, line_guard = _js_line(data, start, end)
        if candidate:
            return [] if after_guard or later_guard else [candidate]
        if code:
            return []
        later_guard = later_guard or line_guard
    return []


def _js_line(data: bytes, pos: int, end: int) -> tuple[bool, _Found | None, bool, bool]:
    """One line: whether it holds code, the source-map comment after its last code, and
    whether a comment after that one (or any comment) trips the guard. Steps from
    comment to comment, never per character."""
    code, candidate, after_guard, line_guard = False, None, False, False
    while pos < end:
        m = _JS_OPEN.search(data, pos, end)
        gap_end = m.start() if m else end
        if _JS_SPACES.match(data, pos, gap_end).end() < gap_end:  # type: ignore[union-attr]
            code, candidate, after_guard = True, None, False
        if m is None:
            break
        line_comment = data[m.start() + 1] == 0x2F
        close = end if line_comment else data.find(b"*/", m.end(), end)
        body_end = end if close < 0 else close
        sm = _SOURCEMAP.fullmatch(data, m.end(), body_end) if close >= 0 else None
        guard = bool(_JS_GUARD.search(data, m.end(), body_end))
        if sm:
            candidate, after_guard = ("sourcemap", m.start(), *sm.span(1), "", None), False
        after_guard, line_guard = after_guard or guard, line_guard or guard
        if line_comment or close < 0:
            break
        pos = close + 2
    return code, candidate, after_guard, line_guard


def _lines_backwards(data: bytes) -> Iterator[tuple[int, int]]:
    """ECMAScript lines, last first: split on LF, CR, U+2028 and U+2029."""
    marks = (b"\n", b"\r", b"\xe2\x80\xa8", b"\xe2\x80\xa9")
    end = len(data)
    last = [data.rfind(mark, 0, end) for mark in marks]
    while True:
        i = max(range(4), key=last.__getitem__)
        if last[i] < 0:
            yield 0, end
            return
        yield last[i] + len(marks[i]), end
        end = last[i]
        last[i] = data.rfind(marks[i], 0, end)


def _finish(data: bytes, found: list[_Found], newlines: tuple[bytes, ...]) -> list[Reference]:
    """Builds references: unescaped values, and line/column counted incrementally."""
    refs: list[Reference] = []
    line, column, last = 1, 1, 0
    marks = [mark for mark in newlines if mark in data] if found else []
    for kind, tok, start, end, quote_char, problem in found:
        segment = data[last:tok]
        breaks = sum(segment.count(mark) for mark in marks) - segment.count(b"\r\n")
        if breaks:
            line += breaks
            line_start = max(segment.rfind(mark) + len(mark) for mark in marks if mark in segment)
            column = 1 + len(segment[line_start:].decode("utf-8", "replace"))
        else:
            column += len(segment.decode("utf-8", "replace"))
        last = tok
        raw_bytes = data[start:end]
        raw = raw_bytes.decode("utf-8", "surrogateescape")
        if problem is None and not raw.isascii():
            try:
                raw_bytes.decode("utf-8")
            except UnicodeDecodeError:
                problem = "not valid UTF-8"
        if kind == "sourcemap":
            value = raw.replace("\x00", "\ufffd")
        else:
            value = _unescape(raw, string=bool(quote_char))[0]
        refs.append(Reference(kind, start, end, raw, value, line, column, quote_char, problem))
    return refs


def _unescape(raw: str, *, string: bool) -> tuple[str, list[int] | None]:
    """CSS-unescapes ``raw``; the list maps each value index (and the end) to ``raw``,
    None when they are the same."""
    if "\\" not in raw:
        return raw.replace("\x00", "\ufffd"), None
    out: list[str] = []
    offsets: list[int] = []
    last = 0
    for m in _UNESCAPE.finditer(raw):
        out.append(raw[last : m.start()])
        offsets.extend(range(last, m.start()))
        hex_digits, newline, char = m.groups()
        if hex_digits:
            cp = int(hex_digits, 16)
            char = chr(cp) if 0 < cp <= 0x10FFFF and not 0xD800 <= cp <= 0xDFFF else "\ufffd"
        elif newline is not None:
            char = ""
        elif char is None:
            char = "" if string else "\ufffd"
        out.append(char)
        offsets.extend([m.start()] * len(char))
        last = m.end()
    out.append(raw[last:])
    offsets.extend(range(last, len(raw) + 1))
    return "".join(out).replace("\x00", "\ufffd"), offsets


def resolve(
    ref: Reference,
    source_logical: str,
    *,
    prefix: str,
    lookup: Callable[[str], str],
    suggest: Callable[[str], str | None] | None = None,
) -> Resolution:
    """Resolves ``ref`` (found in ``source_logical``) to a logical path.

    ``lookup(path)`` answers ``ok``, ``missing`` or ``excluded`` from the manifest, so
    nothing is read from disk and a path above the root is never asked about.
    ``suggest(path)`` may offer a near miss for a missing target.
    """
    if ref.problem:
        return Resolution("malformed", detail=ref.problem)
    value = ref.value
    url = value.strip(_C0_AND_SPACE)
    lead = len(value) - len(value.lstrip(_C0_AND_SPACE))
    slashed = url.replace("\\", "/")
    if not url or url[0] == "#" or _SCHEME.match(url) or slashed.startswith("//"):
        reason = "empty" if not url else "fragment" if url[0] == "#" else "absolute URL"
        return Resolution("skipped", detail=reason)
    if any(c in url for c in "\t\n\r"):
        return Resolution("malformed", detail="tab or newline inside the URL")
    cut = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=len(url))
    path = slashed[:cut]
    if not path:
        return Resolution("skipped", detail="empty path")
    rooted = path[0] == "/"
    parts = path[1:].split("/") if rooted else path.split("/")
    stack = [] if rooted else source_logical.split("/")[:-1]
    for part in parts:
        name = _percent_decode(part)
        if name is None:
            return Resolution("malformed", detail=f"undecodable path segment {part!r}")
        if name == "..":
            if stack:
                stack.pop()
            elif not rooted:
                return Resolution("outside-root")
        elif name != ".":
            stack.append(name)
    if _percent_decode(parts[-1]) in ("", ".", ".."):
        return Resolution("skipped", detail="directory")
    names = [s for s in stack if s]
    if rooted:
        head = [s for s in prefix.split("/") if s]
        if names[: len(head)] != head:
            return Resolution("skipped", detail="outside the prefix")
        names = names[len(head) :]
    if not names:
        return Resolution("skipped", detail="directory")
    target = "/".join(names)
    status = lookup(target)
    hint = suggest(target) if status == "missing" and suggest else None
    last = (lead + path.rfind("/") + 1, lead + cut)
    return Resolution(status, target, hint=hint, segment=last)


def _percent_decode(part: str) -> str | None:
    if "%" not in part:
        return part
    try:
        decoded = unquote_to_bytes(part).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if any(c in decoded for c in "/\\\x00") else decoded


def hashed_url(ref: Reference, resolution: Resolution, digest: str) -> str:
    """The new raw text of ``ref``: the same URL naming the hashed path of its target
    (`hashed_path`), with its form, query and fragment unchanged, valid where it sits."""
    assert resolution.status == "ok" and resolution.target is not None
    a, b = resolution.segment
    segment = ref.value[a:b]
    name = posixpath.basename(resolution.target)
    hashed = posixpath.basename(hashed_path(name, digest))
    stem, ext = posixpath.splitext(name)
    head = segment[: len(segment) - len(ext)]
    if segment.endswith(ext) and hashed.startswith(stem) and _percent_decode(head) == stem:
        a = b = b - len(ext)
        text = hashed[len(stem) : len(hashed) - len(ext)]
    else:
        text = quote(hashed, safe="!$&*+,;=:@-._~")
    if ref.kind == "sourcemap":
        return ref.raw[:a] + text + ref.raw[b:]
    offsets = _unescape(ref.raw, string=bool(ref.quote))[1]
    if offsets:
        a, b = offsets[a], offsets[b]
        if text[0] in "0123456789abcdefABCDEF" and _OPEN_HEX.search(ref.raw[:a]):
            text = " " + text
    return ref.raw[:a] + text + ref.raw[b:]


def splice(data: bytes, edits: Sequence[tuple[Reference, str]]) -> bytes:
    """``data`` with each reference's span replaced by its new text; nothing else moves."""
    out: list[bytes] = []
    last = 0
    for ref, text in sorted(edits, key=lambda edit: edit[0].start):
        if ref.start < last:
            raise ValueError(f"overlapping references at byte {ref.start}")
        out += (data[last : ref.start], text.encode("utf-8", "surrogateescape"))
        last = ref.end
    out.append(data[last:])
    return b"".join(out)


def diagnose(logical_path: str, ref: Reference, resolution: Resolution) -> Diagnostic | None:
    """The warning a resolution deserves, or None for resolved and skipped references."""
    what = "source map" if ref.kind == "sourcemap" else "reference"
    status, target = resolution.status, resolution.target
    if status == "missing":
        kind = "missing-sourcemap" if ref.kind == "sourcemap" else "missing-reference"
        hint = f"; did you mean {resolution.hint}?" if resolution.hint else ""
        message = f'missing {what} "{ref.raw}" ({target}{hint}); left unchanged'
    elif status == "excluded":
        kind = "excluded-reference"
        message = f'{what} "{ref.raw}" names {target}, which the build excludes; left unchanged'
    elif status == "outside-root":
        kind = "outside-root"
        message = f'{what} "{ref.raw}" points outside the root; left unchanged, never read'
    elif status == "malformed":
        kind = "malformed-reference"
        message = f'malformed {what} "{ref.raw}" ({resolution.detail}); left unchanged'
    else:
        return None
    return Diagnostic(logical_path, ref.line, ref.column, kind, message)


def near_miss(paths: Iterable[str]) -> Callable[[str], str | None]:
    """A ``suggest`` for `resolve`: the path that differs from a missing one only in case."""
    folded: dict[str, str] = {}
    for path in sorted(paths):
        folded.setdefault(path.casefold(), path)
    return lambda target: folded.get(target.casefold())

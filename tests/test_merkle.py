"""Merkle order over references (research 8.3: G1-G5, G8, G9, G12 at the pure level),
cycles, ``cycles="leave"``, reuse by key, and the propagation property."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assetver.errors import CompileError
from assetver.hashing import digest_bytes
from assetver.merkle import (
    Compiled,
    ReferenceCycleError,
    compile_tree,
    deps_of,
    plan,
    rewrite_one,
)
from assetver.references import Reference, Resolution, resolve, scan
from assetver.urls import hashed_path, is_rewritable


def resolved_of(
    tree: Mapping[str, bytes], prefix: str = "/static/"
) -> dict[str, list[tuple[Reference, Resolution]]]:
    def lookup(path: str) -> str:
        return "ok" if path in tree else "missing"

    return {
        path: [(r, resolve(r, path, prefix=prefix, lookup=lookup)) for r in scan(path, data) or []]
        for path, data in tree.items()
        if is_rewritable(path)
    }


def build(
    tree: Mapping[str, bytes],
    cycles: str = "error",
    reuse: Mapping[str, tuple[Any, ...]] | None = None,
    reads: list[str] | None = None,
    prefix: str = "/static/",
) -> Compiled:
    def data_of(path: str) -> bytes:
        if reads is not None:
            reads.append(path)
        return tree[path]

    return compile_tree(
        resolved_of(tree, prefix),
        data_of=data_of,
        digest_of=lambda path: digest_bytes(tree[path]),
        hexdigest=digest_bytes,
        cycles=cycles,
        reuse=reuse,
    )


def digests(tree: Mapping[str, bytes], compiled: Compiled) -> dict[str, str]:
    return {
        path: compiled.files[path].digest if path in compiled.files else digest_bytes(data)
        for path, data in tree.items()
    }


def hashed(compiled: Compiled, tree: Mapping[str, bytes], path: str) -> str:
    return hashed_path(path, digests(tree, compiled)[path]).rsplit("/", 1)[-1]


G1 = {
    "css/a.css": b'@import "b.css"; x{y:url(../img/y.png)}',
    "css/b.css": b"x{y:url(../img/x.png)}",
    "img/x.png": b"x-png",
    "img/y.png": b"y-png",
    "img/z.png": b"z-png",
}


def test_g1_a_stylesheet_digest_covers_its_targets() -> None:
    compiled = build(G1)
    x = digest_bytes(G1["img/x.png"])
    b = compiled.files["css/b.css"]
    assert b.data == f"x{{y:url(../img/x.{x}.png)}}".encode()
    assert b.digest == digest_bytes(b.data) == "993e632b8567b7a1"
    a = compiled.files["css/a.css"]
    y = digest_bytes(G1["img/y.png"])
    assert a.data == f'@import "b.{b.digest}.css"; x{{y:url(../img/y.{y}.png)}}'.encode()
    assert a.digest == "e1f4256c0b96aa07"
    assert a.deps == ("css/b.css", "img/y.png")
    assert a.size == len(a.data)
    assert compiled.order.index("css/b.css") < compiled.order.index("css/a.css")

    changed_x = build({**G1, "img/x.png": b"x-png 2"})
    assert changed_x.files["css/b.css"].digest != b.digest
    assert changed_x.files["css/a.css"].digest != a.digest
    changed_z = build({**G1, "img/z.png": b"z-png 2"})
    assert {p: o.digest for p, o in changed_z.files.items()} == {
        p: o.digest for p, o in compiled.files.items()
    }
    assert build(G1) == compiled


def test_g2_diamond() -> None:
    tree = {
        "css/a.css": b'@import "c.css";\n@import "b.css";',
        "css/b.css": b"p{q:url(../img/x.png)}",
        "css/c.css": b"r{s:url(../img/x.png)}",
        "img/x.png": b"x",
    }
    compiled = build(tree)
    x = digest_bytes(b"x")
    assert f"x.{x}.png".encode() in (compiled.files["css/b.css"].data or b"")
    assert f"x.{x}.png".encode() in (compiled.files["css/c.css"].data or b"")
    assert compiled.files["css/a.css"].deps == ("css/b.css", "css/c.css")
    assert compiled.order[-1] == "css/a.css"


G3 = {
    "css/a.css": b'@import "b.css";\nx{y:url(../img/x.png)}',
    "css/b.css": b'p{}\n\n@import "c.css";',
    "css/c.css": b"url(a.css)",
    "css/d.css": b'@import "d.css";',
    "css/e.css": b'@import "a.css";',
    "img/x.png": b"x",
}
G3_CYCLES = [
    'css/a.css:1:9 @import "b.css" -> css/b.css:3:9 @import "c.css" -> css/c.css:1:1'
    " url(a.css) -> css/a.css",
    'css/d.css:1:9 @import "d.css" -> css/d.css',
]


def test_g3_every_cycle_is_reported_with_locations() -> None:
    with pytest.raises(ReferenceCycleError) as error:
        build(G3)
    assert isinstance(error.value, CompileError)
    assert [str(c) for c in error.value.cycles] == G3_CYCLES
    message = str(error.value)
    assert message.startswith("2 reference cycles: " + "; ".join(G3_CYCLES))
    assert 'cycles="leave"' in message
    assert [(d.kind, d.severity, d.logical_path) for d in error.value.diagnostics] == [
        ("reference-cycle", "error", "css/a.css"),
        ("reference-cycle", "error", "css/d.css"),
    ]


def test_g3_leave_keeps_references_inside_a_cycle_as_written() -> None:
    compiled = build(G3, cycles="leave")
    x = digest_bytes(b"x")
    assert (
        compiled.files["css/a.css"].data
        == f'@import "b.css";\nx{{y:url(../img/x.{x}.png)}}'.encode()
    )
    assert compiled.files["css/a.css"].deps == ("img/x.png",)
    for path in ("css/b.css", "css/c.css", "css/d.css"):
        assert compiled.files[path].data == G3[path]
        assert compiled.files[path].digest == digest_bytes(G3[path])
    a = compiled.files["css/a.css"].digest
    assert compiled.files["css/e.css"].data == f'@import "a.{a}.css";'.encode()
    assert [str(d) for d in compiled.diagnostics] == [
        f"css/a.css:1:9: warning: reference cycle {G3_CYCLES[0]}; references inside it left"
        " unchanged [reference-cycle]",
        f"css/d.css:1:9: warning: reference cycle {G3_CYCLES[1]}; references inside it left"
        " unchanged [reference-cycle]",
    ]


def test_g4_a_fragment_does_not_make_another_target() -> None:
    tree = {"css/a.css": b"a{behavior:url(a.css#x)}"}
    with pytest.raises(CompileError, match=r"css/a\.css:1:12 url\(a\.css#x\) -> css/a\.css"):
        build(tree)


def test_a_cycle_walk_visits_every_member() -> None:
    tree = {
        "a.css": b'@import "b.css";',
        "b.css": b'@import "a.css"; @import "c.css";',
        "c.css": b'@import "b.css";',
    }
    with pytest.raises(ReferenceCycleError) as error:
        build(tree)
    assert str(error.value.cycles[0]) == (
        'a.css:1:9 @import "b.css" -> b.css:1:26 @import "c.css" -> c.css:1:9 @import "b.css"'
        ' -> b.css:1:9 @import "a.css" -> a.css'
    )


def test_g5_deep_chains_whatever_the_depth_order() -> None:
    tree = {"c0.css": b"a{b:url(x.png)}", "x.png": b"x"}
    for level in range(1, 9):
        tree["d/" * level + f"c{level}.css"] = f'@import "../c{level - 1}.css";'.encode()
    compiled = build(tree)
    for path, out in compiled.files.items():
        assert out.deps and out.data != tree[path]


def test_a_chain_longer_than_the_recursion_limit() -> None:
    tree = {f"c{i}.css": f'@import "c{i - 1}.css";'.encode() for i in range(1, 3000)}
    tree["c0.css"] = b"a{}"
    compiled = build(tree)
    assert compiled.order[:3] == ("c0.css", "c1.css", "c2.css")
    assert compiled.files["c2999.css"].deps == ("c2998.css",)


def test_g6_a_missing_reference_does_not_break_its_parents() -> None:
    tree = {"css/a.css": b'@import "b.css";', "css/b.css": b'@import "missing.css";'}
    compiled = build(tree)
    b = compiled.files["css/b.css"]
    assert b.data == tree["css/b.css"] and b.digest == digest_bytes(tree["css/b.css"])
    assert compiled.files["css/a.css"].data == f'@import "b.{b.digest}.css";'.encode()
    assert [(d.logical_path, d.kind) for d in compiled.diagnostics] == [
        ("css/b.css", "missing-reference")
    ]


def test_g8_a_source_map_is_a_leaf() -> None:
    tree = {
        "js/app.js": b"f();\n//# sourceMappingURL=app.js.map\n",
        "js/app.js.map": b'{"version":3,"file":"app.js","sources":["../css/app.css"]}',
        "css/app.css": b"a{}\n/*# sourceMappingURL=app.css.map */",
    }
    compiled = build(tree)
    js = compiled.files["js/app.js"]
    assert js.deps == ("js/app.js.map",)
    assert (
        js.data
        == f"f();\n//# sourceMappingURL={hashed(compiled, tree, 'js/app.js.map')}\n".encode()
    )
    assert compiled.files["css/app.css"].data == tree["css/app.css"]
    changed = build({**tree, "js/app.js.map": b"{}"})
    assert changed.files["js/app.js"].digest != js.digest


def test_g9_spellings_of_one_target_make_one_edge() -> None:
    spellings = ["../img/a.png", "/static/img/a.png", "./../css/../img/a.png", "../img//a.png"]
    source = " ".join(f"x{{y:url({url})}}" for url in spellings).encode()
    tree = {"css/t.css": source, "img/a.png": b"a"}
    compiled = build(tree)
    a = digest_bytes(b"a")
    out = compiled.files["css/t.css"]
    assert out.deps == ("img/a.png",)
    expected = " ".join(f"x{{y:url({url[:-4]}.{a}.png)}}" for url in spellings)
    assert out.data == expected.encode()


def test_g12_independent_of_enumeration_order() -> None:
    tree = {**G1, "css/c.css": b'@import "a.css"; @import "b.css";'}
    backwards = dict(reversed(list(tree.items())))
    assert build(tree) == build(backwards)
    assert str(build_error(G3)) == str(build_error(dict(reversed(list(G3.items())))))


def build_error(tree: Mapping[str, bytes]) -> CompileError:
    with pytest.raises(CompileError) as error:
        build(tree)
    return error.value


def test_reuse_skips_files_whose_key_still_matches() -> None:
    tree = {**G1, "css/other.css": b"p{q:url(../img/z.png)}"}
    first = build(tree)
    record = {
        path: (out.key, out.digest, out.size, "caller's own") for path, out in first.files.items()
    }
    reads: list[str] = []
    again = build(tree, reuse=record, reads=reads)
    assert reads == []
    assert all(out.data is None for out in again.files.values())
    assert {p: o.digest for p, o in again.files.items()} == {
        p: o.digest for p, o in first.files.items()
    }

    reads.clear()
    changed = build({**tree, "img/x.png": b"x-png 2"}, reuse=record, reads=reads)
    assert sorted(reads) == ["css/a.css", "css/b.css"]
    fresh = build({**tree, "img/x.png": b"x-png 2"})
    assert {p: o.digest for p, o in changed.files.items()} == {
        p: o.digest for p, o in fresh.files.items()
    }


def test_the_key_covers_which_references_are_rewritten() -> None:
    tree = {"a.css": b"x{y:url(img/a.png) z:url(/static/img/a.png)}", "img/a.png": b"a"}
    first = build(tree)
    record = {path: (out.key, out.digest, out.size) for path, out in first.files.items()}
    elsewhere = build(tree, reuse=record, prefix="/assets/")
    out = elsewhere.files["a.css"]
    assert out.data is not None and out.digest != first.files["a.css"].digest
    assert out.deps == first.files["a.css"].deps == ("img/a.png",)


def test_plan_and_rewrite_one_give_what_compile_tree_gives() -> None:
    resolved = resolved_of(G1)
    steps = plan(resolved)
    done: dict[str, str] = {}
    for path in steps.order:
        edits = steps.edits[path]
        out = rewrite_one(
            G1[path], edits, lambda t: done.get(t) or digest_bytes(G1[t]), digest_bytes
        )
        assert out.deps == deps_of(edits)
        assert out.key[0] == digest_bytes(G1[path])
        done[path] = out.digest
    assert done == {path: out.digest for path, out in build(G1).files.items()}


def test_unknown_cycles_policy() -> None:
    with pytest.raises(ValueError, match="cycles='ignore'"):
        build(G1, cycles="ignore")


@st.composite
def dags(draw: st.DrawFn) -> dict[str, bytes]:
    leaves = [f"img/l{i}.png" for i in range(draw(st.integers(1, 4)))]
    tree = {leaf: leaf.encode() for leaf in leaves}
    for i in range(draw(st.integers(1, 6))):
        targets = draw(st.lists(st.sampled_from(leaves + [f"css/s{j}.css" for j in range(i)])))
        body = " ".join(f"a{{b:url(../{t})}}" for t in targets)
        tree[f"css/s{i}.css"] = body.encode()
    return tree


@settings(max_examples=150)
@given(dags(), st.data())
def test_mutating_a_leaf_changes_exactly_its_ancestors(
    tree: dict[str, bytes], data: st.DataObject
) -> None:
    leaf = data.draw(st.sampled_from(sorted(p for p in tree if p.endswith(".png"))))
    before = digests(tree, build(tree))
    mutated = {**tree, leaf: tree[leaf] + b"!"}
    after = digests(mutated, build(mutated))
    parents: dict[str, set[str]] = {}
    for path, refs in resolved_of(tree).items():
        for _, res in refs:
            parents.setdefault(res.target or "", set()).add(path)
    ancestors, todo = {leaf}, [leaf]
    while todo:
        for parent in parents.get(todo.pop(), ()):
            if parent not in ancestors:
                ancestors.add(parent)
                todo.append(parent)
    assert {p for p in tree if before[p] != after[p]} == ancestors

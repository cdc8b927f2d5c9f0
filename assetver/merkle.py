"""Merkle order over the reference graph: targets first, so a file's digest covers theirs.

A rewritable file's output is its bytes with every resolved reference pointing at the
target's hashed path; its digest is the digest of that output, so changing a font gives
every stylesheet that reaches it a new URL. Cycles have no such digest: they are found
as strongly connected components (iterative Tarjan) and either raise, naming every
cycle with the location of each edge, or (``cycles="leave"``) keep the references inside
the cycle as written, which is still correct, only less cacheable.

A build calls `compile_tree`. It is incremental when given ``reuse``: a file whose key
(what its output is a pure function of: its source digest, and where each rewritten
reference sits with the digest it receives) matches the one recorded is not read or
rewritten; its recorded digest and size stand.
A caller wanting finer control runs `plan` and then `rewrite_one` per file, in order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .diagnostics import Diagnostic
from .errors import CompileError
from .references import Reference, Resolution, diagnose, hashed_url, splice

Resolved = Sequence[tuple[Reference, Resolution]]
"""A file's references with their resolutions, in source order."""


Key = tuple[str, tuple[tuple[int, str], ...]]
"""What an output is a function of: (source digest, ((URL start, target digest), ...)
for the references rewritten). Opaque to callers, who store and compare it."""


@dataclass(frozen=True, slots=True)
class Output:
    """A rewritable file as served: its bytes (None when reused, not rebuilt), their
    digest and size, the targets whose digests they embed (``deps``, sorted, unique),
    and the `Key` they were made from."""

    data: bytes | None
    digest: str
    size: int
    deps: tuple[str, ...]
    key: Key


@dataclass(frozen=True, slots=True)
class Cycle:
    """A strongly connected component as a closed walk: (file, reference) edges in the
    order they are followed, back to the first file."""

    members: tuple[str, ...]
    edges: tuple[tuple[str, Reference], ...]

    def __str__(self) -> str:
        steps = [f"{path}:{ref.line}:{ref.column} {label(ref)}" for path, ref in self.edges]
        return " -> ".join([*steps, self.edges[0][0]])


@dataclass(frozen=True, slots=True)
class Plan:
    """What to rewrite, in which order: ``order`` lists every rewritable file, targets
    first; ``edits[path]`` holds the references to rewrite (all resolved ones, except
    those inside a cycle left as written)."""

    order: tuple[str, ...]
    edits: Mapping[str, tuple[tuple[Reference, Resolution], ...]]
    cycles: tuple[Cycle, ...]
    diagnostics: tuple[Diagnostic, ...]


@dataclass(frozen=True, slots=True)
class Compiled:
    """Every rewritable file's `Output`, the order they were built in, and every
    diagnostic (unresolved references, cycles left as written)."""

    files: Mapping[str, Output]
    order: tuple[str, ...]
    cycles: tuple[Cycle, ...]
    diagnostics: tuple[Diagnostic, ...]


class ReferenceCycleError(CompileError):
    """References form a cycle, so no digest can cover them (``cycles="error"``).

    ``cycles`` holds every cycle and ``diagnostics`` every finding of the plan, so a
    caller can print them all before failing.
    """

    def __init__(self, cycles: Sequence[Cycle], diagnostics: Sequence[Diagnostic]) -> None:
        self.cycles = tuple(cycles)
        self.diagnostics = tuple(diagnostics)
        count = "a reference cycle" if len(cycles) == 1 else f"{len(cycles)} reference cycles"
        listed = "; ".join(map(str, cycles))
        super().__init__(
            f"{count}: {listed}; break a reference in each, or build with "
            f'cycles="leave" (--cycles=leave) to leave references inside a cycle unversioned'
        )


def label(ref: Reference) -> str:
    """How a reference reads in a message: ``@import "b.css"``, ``url(a.png)``."""
    quoted = f"{ref.quote}{ref.raw}{ref.quote}"
    if ref.kind == "import":
        return f"@import {quoted}" if ref.quote else f"@import url({ref.raw})"
    if ref.kind == "sourcemap":
        return f"sourceMappingURL={ref.raw}"
    return f"{ref.kind}({quoted})"


def plan(resolved: Mapping[str, Resolved], *, cycles: str = "error") -> Plan:
    """Orders the rewritable files in ``resolved`` (all of them, even those without
    references) targets first, and finds every cycle among them.

    Raises `ReferenceCycleError` on a cycle when ``cycles`` is ``"error"``; with
    ``"leave"`` the references inside each cycle are left out of ``edits``.
    """
    if cycles not in ("error", "leave"):
        raise ValueError(f"cycles={cycles!r} is not 'error' or 'leave'")
    graph = {path: sorted(_targets(resolved[path], resolved)) for path in sorted(resolved)}
    components = _tarjan(graph)
    cyclic = [c for c in components if len(c) > 1 or c[0] in graph[c[0]]]
    found = tuple(_walk(sorted(c), resolved) for c in cyclic)
    component_of = {path: i for i, c in enumerate(cyclic) for path in c}
    diagnostics = [
        d for path in graph for ref, res in resolved[path] if (d := diagnose(path, ref, res))
    ]
    severity = "error" if cycles == "error" else "warning"
    suffix = "" if cycles == "error" else "; references inside it left unchanged"
    for cycle in found:
        path, ref = cycle.edges[0]
        message = f"reference cycle {cycle}{suffix}"
        diagnostics.append(
            Diagnostic(path, ref.line, ref.column, "reference-cycle", message, severity)
        )
    if found and cycles == "error":
        raise ReferenceCycleError(found, diagnostics)

    def rewritten(path: str, res: Resolution) -> bool:
        component = component_of.get(path)
        return res.status == "ok" and (
            component is None or component_of.get(res.target or "") != component
        )

    edits = {path: tuple(e for e in resolved[path] if rewritten(path, e[1])) for path in graph}
    order = tuple(path for component in components for path in component)
    return Plan(order, edits, found, tuple(diagnostics))


def deps_of(edits: Resolved) -> tuple[str, ...]:
    """The sorted, unique targets of ``edits``: whose digests a rewritten file embeds."""
    return tuple(sorted({res.target for _, res in edits if res.target is not None}))


def rewrite_one(
    data: bytes,
    edits: Resolved,
    digest_of: Callable[[str], str],
    hexdigest: Callable[[bytes], str],
) -> Output:
    """One file's output: ``edits`` (resolved references) pointing at the hashed paths
    of their targets, whose digests ``digest_of`` gives. No edits: the bytes as they are,
    under their plain digest."""
    deps = deps_of(edits)
    digests = {target: digest_of(target) for target in deps}
    key = (hexdigest(data), tuple((ref.start, digests[res.target or ""]) for ref, res in edits))
    if not deps:
        return Output(data, key[0], len(data), (), key)
    out = splice(
        data, [(ref, hashed_url(ref, res, digests[res.target or ""])) for ref, res in edits]
    )
    return Output(out, hexdigest(out), len(out), deps, key)


def compile_tree(
    resolved: Mapping[str, Resolved],
    *,
    data_of: Callable[[str], bytes],
    digest_of: Callable[[str], str],
    hexdigest: Callable[[bytes], str],
    cycles: str = "error",
    reuse: Mapping[str, tuple[Any, ...]] | None = None,
) -> Compiled:
    """Rewrites every file of ``resolved`` (each rewritable file with its resolved
    references) in Merkle order.

    ``data_of(path)`` gives a rewritable file's bytes, and is only called for files that
    are rebuilt; ``digest_of(path)`` the plain content digest of any file (a leaf's
    digest; a rewritable file's source digest, for its key); ``hexdigest`` the digest
    of bytes (`assetver.hashing.digest_bytes`). ``reuse[path]`` is a record starting
    ``(key, digest, size, ...)`` from an earlier build: when the key still matches, that
    digest and size are taken as they are.
    """
    steps = plan(resolved, cycles=cycles)
    files: dict[str, Output] = {}

    def digest(target: str) -> str:
        return files[target].digest if target in files else digest_of(target)

    for path in steps.order:
        edits = steps.edits[path]
        key = (digest_of(path), tuple((ref.start, digest(res.target or "")) for ref, res in edits))
        known = reuse.get(path) if reuse is not None else None
        if known is not None and known[0] == key:
            files[path] = Output(None, known[1], known[2], deps_of(edits), key)
        else:
            files[path] = rewrite_one(data_of(path), edits, digest, hexdigest)
    return Compiled(files, steps.order, steps.cycles, steps.diagnostics)


def _targets(refs: Resolved, nodes: Container[str]) -> set[str]:
    return {r.target for _, r in refs if r.status == "ok" and r.target and r.target in nodes}


def _tarjan(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Strongly connected components, each after every component it reaches: the
    order a Merkle build needs. Iterative, so a deep chain cannot hit a recursion limit."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            successors = graph[node]
            if i < len(successors):
                work.append((node, i + 1))
                succ = successors[i]
                if succ not in index:
                    work.append((succ, 0))
                elif succ in on_stack:
                    low[node] = min(low[node], index[succ])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _walk(members: list[str], resolved: Mapping[str, Resolved]) -> Cycle:
    """A closed walk through a cycle's members, from the smallest, following each
    file's references in source order: the shortest way to each member not yet seen,
    then back to the start."""
    inside = set(members)
    out = {
        path: [(ref, res.target) for ref, res in resolved[path] if res.status == "ok"]
        for path in members
    }
    start = current = members[0]
    seen = {start}
    edges: list[tuple[str, Reference]] = []
    while True:
        goal = (lambda p: p not in seen) if len(seen) < len(inside) else start.__eq__
        parents: dict[str, tuple[str, Reference]] = {}
        queue = deque([current])
        reached = None
        while queue and reached is None:
            node = queue.popleft()
            for ref, target in out[node]:
                if target in inside and target not in parents:
                    parents[target] = (node, ref)
                    if goal(target):
                        reached = target
                        break
                    queue.append(target)
        assert reached is not None, "a strongly connected component is closed"
        path = []
        node = reached
        while True:
            source, ref = parents[node]
            path.append((source, ref))
            if source == current:
                break
            node = source
        edges.extend(reversed(path))
        seen.update(p for p, _ in path)
        seen.add(reached)
        current = reached
        if reached == start:
            return Cycle(tuple(members), tuple(edges))

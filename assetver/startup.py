"""A server's assets at start-up: the manifest loaded, built or compiled, the files it
serves proven, and in debug mode a watcher that keeps both fresh.

Framework-neutral, like `.serving`: the Tornado adapter calls `start` while the
Application is built (before ``server.start(n)`` forks) and `watch` from its event loop.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .build import BuildResult, build
from .cache import load as load_cache
from .errors import ConfigError, ManifestError
from .manifest import Manifest
from .scan import ScanOptions
from .serving import Assets, Config, check_manifest
from .statkey import RACY, Key, read_stamp, split_keys
from .urls import state_manifest

if TYPE_CHECKING:
    from .output import CompileOptions

log = logging.getLogger("assetver")

VERIFY_SECONDS = 1.0
"""How soon after a rebuild that looked only where events pointed a debug watcher looks
at everything."""

RECHECK_SECONDS = 0.05
"""How soon a debug watcher hashes again files too recent to prove by their stat keys."""

SETTLE_SECONDS = 2.5
"""How long start-up waits at most for files changed just before it to become old
enough to prove by their stat keys (see `.statkey`)."""


def scan_options(*, exclude: Iterable[str] = (), include_hidden: bool = False) -> ScanOptions:
    """The scan options of an application's settings (``assetver_exclude`` must be a
    list: a bare string would be taken character by character)."""
    if isinstance(exclude, str):
        raise ConfigError(f"assetver_exclude={exclude!r} must be a list of glob patterns")
    return ScanOptions.make(exclude=exclude, include_hidden=include_hidden)


def debug_settings(config: Config) -> CompileOptions:
    """How debug mode compiles: root-relative references under the app's prefix, and no
    variants (a font edit reaches every stylesheet's URL in milliseconds, not after
    brotli 11; the identity bytes and URLs are those of a production build)."""
    from .output import CompileOptions

    return CompileOptions.make(prefix=config.prefix, compress="none")


def output_manifest_path(output: str) -> str:
    """Where a compiled output keeps its manifest."""
    return state_manifest(output)


def start(config: Config) -> Assets:
    """Returns the `Assets` an Application serves with.

    Production: the manifest file (of the output, or ``assetver_manifest``), checked
    against the files; without one the root is built once, here. Debug: the root is
    built (or compiled into the output) now, and `watch` keeps it fresh.
    """
    if config.debug:
        _refuse_tornado_fork()
    if config.output is not None:
        return _start_output(config)
    return _start_root(config)


def _load(path: str, config: Config) -> Manifest:
    try:
        return Manifest.load(path, fix=f"rebuild it with: assetver build {config.root}")
    except ManifestError as e:
        raise ConfigError(f"assetver_manifest: {e}") from e


def _start_output(config: Config) -> Assets:
    assert config.output is not None
    if config.debug:
        from .output import compile_output

        compiled = compile_output(
            config.root, config.output, options=config.options, settings=debug_settings(config)
        )
        return Assets(config, compiled.manifest, {})
    path = config.manifest_path or output_manifest_path(config.output)
    manifest = _load(path, config)
    if not manifest.output:
        raise ConfigError(
            f"assetver_manifest: {path} is the manifest of a root, not of an output; "
            f"compile one with: assetver build {config.root} -o {config.output}"
        )
    present = {}
    for logical, entry in manifest.items():
        if os.path.isfile(os.path.join(config.output, entry.hashed or "")):
            present[logical] = entry
    check_manifest(config, manifest, Manifest(present, output=True))
    return Assets(config, manifest, {})


def _start_root(config: Config) -> Assets:
    options = config.options
    loaded = None
    if config.manifest_path is not None:
        options = options.with_excluded(config.manifest_path)
        loaded = _load(config.manifest_path, config)
        if loaded.output:
            raise ConfigError(
                f"assetver_manifest: {config.manifest_path} is the manifest of a compiled "
                "output; serve it with assetver_output=<its directory>"
            )
    result = _prove(config, options, settle=not config.debug)
    found = result.manifest
    if loaded is None or config.debug:
        assets = Assets(config, found, proofs(result))
        assets.cache = result.cache
        return assets
    check_manifest(config, loaded, found)
    proven = {
        p: k
        for p, k in proofs(result).items()
        if p in loaded and loaded[p].digest == found[p].digest
    }
    return Assets(config, loaded, proven)


def proofs(result: BuildResult) -> dict[str, Key]:
    """Logical path -> stat key of every file the build's digest is proven for."""
    cache = result.cache
    return {p: k for p, k in zip(cache.paths, split_keys(cache.keys), strict=True) if k != RACY}


def _prove(config: Config, options: ScanOptions, *, settle: bool) -> BuildResult:
    """Hashes the root, reusing a build cache beside the manifest when there is one
    (read, never written: a server does not write to its tree). With ``settle``,
    files changed too recently to prove are hashed again once they are old enough."""
    previous = None
    probe = None
    if config.manifest_path is not None:
        state = os.path.dirname(os.path.abspath(config.manifest_path))
        options = options.with_excluded(os.path.join(state, ".assetver-cache"))
        previous = load_cache(
            os.path.join(state, ".assetver-cache"), config.root, options.fingerprint
        )
        if os.access(state, os.W_OK):
            probe = state
    result = build(
        config.root, options=options, previous=previous, stamp=read_stamp(config.root, probe)
    )
    deadline = time.monotonic() + SETTLE_SECONDS
    while settle and RACY in split_keys(result.cache.keys) and time.monotonic() < deadline:
        time.sleep(0.05)
        result = build(
            config.root,
            options=options,
            previous=result.cache,
            stamp=read_stamp(config.root, probe),
        )
    return result


def watch(
    assets: Assets,
    deliver: Callable[[tuple[Manifest, dict[str, Key]]], Any],
    *,
    alive: Callable[[], bool],
    task_id: int | None = None,
) -> Callable[[], None]:
    """Starts a watcher that keeps ``assets`` fresh; ``deliver((manifest, proofs))`` is
    called on the watcher's thread with each new version. Returns its stop function.
    ``task_id`` is the adapter's number of a forked child, where no watcher may run."""
    from .watch import Watcher, refuse_in_child

    refuse_in_child(task_id)
    config = assets.config
    options = config.options
    if config.manifest_path is not None:
        options = options.with_excluded(config.manifest_path)
    state: dict[str, Any] = {"manifest": assets.manifest, "cache": assets.cache, "starting": True}

    def rebuild(changed: frozenset[str] | None) -> float | None:
        # Events say what to look at first; a full pass a moment later catches what
        # they missed (a queue overflow, a change on another mount).
        again = None if changed is None else VERIFY_SECONDS
        if config.output is not None:
            from .output import compile_output

            compiled = compile_output(
                config.root,
                config.output,
                options=options,
                settings=debug_settings(config),
                only=changed,
            )
            update: tuple[Manifest, dict[str, Key]] = (compiled.manifest, {})
        else:
            result = build(
                config.root,
                options=options,
                previous=state["cache"],
                stamp=read_stamp(config.root),
                only=changed,
            )
            state["cache"] = result.cache
            update = (result.manifest, proofs(result))
            if len(result.cache.paths) > len(update[1]):  # files too recent to prove
                again = RECHECK_SECONDS
        if update[0] != state["manifest"] or update[1] != state.get("proofs"):
            state["manifest"], state["proofs"] = update
            if state["starting"]:  # on the caller's thread: the first URL is already fresh
                assets.set_manifest(*update)
            else:
                deliver(update)
        return again

    directories = len(assets.cache.dirs or ()) if assets.cache is not None else 0
    watcher = Watcher(
        config.root, rebuild=rebuild, options=options, alive=alive, directories=directories
    )
    watcher.start()
    state["starting"] = False
    return watcher.stop


def _refuse_tornado_fork() -> None:
    """Debug mode cannot run in the processes ``tornado.process.fork_processes`` makes
    (each would watch and rebuild on its own); fail once, clearly, as they start."""
    global _registered
    if not _registered and hasattr(os, "register_at_fork"):
        _registered = True
        os.register_at_fork(after_in_child=_child_check)


_registered = False


def _child_check() -> None:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "fork_processes" and "tornado" in frame.f_code.co_filename:
            sys.stderr.write(
                "assetver: error: debug mode (debug=True) cannot run in forked processes: "
                "each would watch and rebuild on its own. Start one process "
                "(server.start(1) or fork_processes(1)), as Tornado's autoreload requires\n"
            )
            sys.stderr.flush()
            import signal

            os.kill(os.getppid(), signal.SIGTERM)
            os._exit(2)
        frame = frame.f_back  # type: ignore[assignment]

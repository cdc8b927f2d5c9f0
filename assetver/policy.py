"""The caching policy: what a request for an asset is, and what caching its answer gets.

One function decides a request's `Status` and one maps a status and an HTTP status code
to the caching headers; the Tornado handler calls them per request, and the nginx
configuration is rendered from them, so both always agree. The rule they encode is
DESIGN.md's immutable promise: far-future ``immutable`` caching only for bytes proven to
be the digest the URL names.
"""

from __future__ import annotations

import enum

from .urls import is_digest

IMMUTABLE_SECONDS = 31536000

IMMUTABLE = f"public, max-age={IMMUTABLE_SECONDS}, immutable"
"""Cache-Control for bytes proven to be the digest in their URL: one year, never
revalidated."""

REVALIDATE = "no-cache"
"""Cache-Control for everything else that is served: cache, but revalidate every use."""

NO_STORE = "no-store"
"""Cache-Control for errors, redirects and anything that must not outlive this deploy."""

CACHEABLE_CODES = (200, 206, 304)
"""HTTP statuses whose caching follows the asset's status; every other gets `NO_STORE`."""

STALE_POLICIES = ("serve", "redirect", "404")
"""What a stale or forged digest gets: current bytes revalidated, a redirect to the
current URL, or a 404."""


class Status(enum.Enum):
    """What a request for a file in the manifest asks for."""

    CURRENT = "current"
    """The manifest's digest, and the bytes to send are proven to be it."""
    RETAINED = "retained"
    """An earlier digest whose hashed copy the output still holds (a rolling deploy)."""
    STALE = "stale"
    """A digest that is neither current nor retained."""
    FORGED = "forged"
    """Something in the digest's place that is not a digest at all."""
    ABSENT = "absent"
    """No digest: an unversioned URL."""
    UNPROVEN = "unproven"
    """The current digest, but the bytes at hand are not proven to be it (a file edited
    in place, a save the watcher has not seen yet)."""

    @property
    def immutable(self) -> bool:
        return self in (Status.CURRENT, Status.RETAINED)


def classify(
    requested: str | None, current: str, *, proven: bool, retained: bool = False
) -> Status:
    """Returns the status of a request for ``requested`` (the digest in the URL, or
    None) of a file whose manifest digest is ``current``.

    ``proven`` says whether the bytes that would be sent are proven to be ``current``;
    ``retained`` whether a hashed copy of ``requested`` exists in the output.
    """
    if requested is None:
        return Status.ABSENT
    if requested == current:
        return Status.CURRENT if proven else Status.UNPROVEN
    if retained:
        return Status.RETAINED
    return Status.STALE if is_digest(requested) else Status.FORGED


def cache_control(status: Status | None, code: int = 200, *, max_age: int = 0) -> str:
    """Returns the one Cache-Control value of a response.

    ``status`` is None for files outside the manifest; ``max_age`` is how long an
    unversioned answer may be cached (0: revalidate), and applies to unversioned
    requests only, never to a stale, forged or unproven digest.
    """
    if code not in CACHEABLE_CODES:
        return NO_STORE
    if status is not None and status.immutable:
        return IMMUTABLE
    if status is Status.ABSENT and max_age:
        return f"public, max-age={max_age}"
    return REVALIDATE

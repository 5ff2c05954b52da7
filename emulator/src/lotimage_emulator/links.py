"""Picture links: unguessable tokens that work for a while, as a CDN signs them.

A link is issued when a task finishes (or shows a preview) and works for ``image_ttl_seconds``
from then; after that it answers 403 for good. The contract says a ``task/progress`` answer carries
the current links, so reading a task again renews the expired ones: new tokens for the same
pictures, the way a client gets fresh Discord links by fetching the message again. Expiry is
decided here once, for the picture route and for renewal alike; the engine calls in under its lock.
"""

from __future__ import annotations

import secrets

from lotimage_emulator.models import ImageRef, Task


class PictureLinks:
    """Every link ever issued (expired ones too, so they answer 403 rather than 404)."""

    def __init__(self) -> None:
        self._refs: dict[str, ImageRef] = {}

    def issue(self, task: Task, variant: str, at: float) -> str:
        """Issue a new link token for a picture of ``task``; it expires a TTL after ``at``."""
        token = secrets.token_urlsafe(18)
        self._refs[token] = ImageRef(task.id, variant, at)
        task.images[variant] = token
        return token

    def find(self, token: str) -> ImageRef | None:
        """Return what a token shows, or ``None`` for a token never issued."""
        return self._refs.get(token)

    @staticmethod
    def expired(ref: ImageRef, now: float, ttl: float) -> bool:
        """Whether a link issued at ``ref.issued`` no longer works at ``now``."""
        return now - ref.issued >= ttl

    def renew(self, task: Task, now: float, ttl: float) -> int:
        """Give each picture ``task`` shows whose link expired a fresh one; return how many.

        A live link is kept, so reading a task twice gives the same links until they expire; the
        old token keeps answering 403. A finished task no longer shows its preview.
        """
        stale = [
            variant
            for variant, token in task.images.items()
            if (variant != "preview" or task.state != "finished")
            and self.expired(self._refs[token], now, ttl)
        ]
        for variant in stale:
            self.issue(task, variant, now)
        return len(stale)

"""The error a request to the studio can end in."""

from __future__ import annotations


class StudioError(ValueError):
    """A request the studio cannot serve: ``status`` is the HTTP status to answer (4xx), the message says why, and
    ``headers`` go with the answer (``Allow`` for a 405).

    Example:
        >>> err = StudioError("label map is 10x10; this model draws 64x64")
        >>> err.status, str(err)
        (400, 'label map is 10x10; this model draws 64x64')
    """

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})

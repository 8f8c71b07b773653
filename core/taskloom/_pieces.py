"""A pickle stream in pieces, read as one: the inverse of `encode_outcome_parts`.

A runner that stores an outcome's pieces side by side (Ray puts each large value in its object
store as it is) hands them back to `loads_parts`, which reads the value across them: each large
value is copied once, from its piece into the value being built, as loading the joined bytes
would copy it, but without the join's copy of every piece first.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from typing import Any

__all__ = ["loads_parts"]


class _Pieces(io.RawIOBase):
    """The pieces as one raw stream. `io.BufferedReader` gives the unpickler the rest of a
    file over it, and hands a read larger than its buffer (a large value) straight to
    ``readinto``, which fills the value from the pieces."""

    def __init__(self, pieces: Sequence[Any]) -> None:
        self._pieces = [memoryview(p).cast("B") for p in pieces]
        self._index = 0
        self._at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        filled, wanted = 0, len(out)
        pieces = self._pieces
        while filled < wanted and self._index < len(pieces):
            piece = pieces[self._index]
            take = min(wanted - filled, len(piece) - self._at)
            out[filled : filled + take] = piece[self._at : self._at + take]
            filled += take
            self._at += take
            if self._at == len(piece):
                self._index, self._at = self._index + 1, 0
        return filled


def loads_parts(parts: Sequence[Any]) -> Any:
    """What `encode_outcome_parts` (or `dumps`) pickled, from its pieces in order.

    The pieces are bytes or any buffers (a ``memoryview``, a ``PickleBuffer``, a view of a
    store); neighbours may have been joined, as long as the order is kept. One piece is
    loaded as `loads` loads it.
    """
    if len(parts) == 1:
        return pickle.loads(parts[0])
    return pickle.Unpickler(io.BufferedReader(_Pieces(parts))).load()

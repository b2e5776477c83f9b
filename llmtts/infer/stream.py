"""Chunked decoding for streaming: audio leaves as soon as its tokens' receptive field is generated.

A chunk covering tokens ``[s, e)`` is decoded from the window ``[s - L, e + R)`` (L, R = the decoder's left and
right context in tokens, ``HiddenDecoder.context``; equal unless the decoder is causal) and cropped to its own
samples, so every sample sees exactly the tokens it sees in the offline pass: the concatenated chunks equal
``decode(all tokens)`` up to float rounding. Chunk sizes start at ``first_chunk`` tokens (latency) and double
up to ``max_chunk`` (throughput: the decoder's extra work is ``(L + R) / chunk``).

``lookahead`` (default R) trades exactness for latency: a chunk is emitted once ``lookahead`` tokens past it
exist, so the first chunk waits for ``first_chunk + lookahead`` tokens instead of ``first_chunk + R``. The left
context stays L; only the last ``R - lookahead`` tokens of each chunk see less right context than offline,
so chunk edges differ slightly from the offline output (the total length is unchanged). A causal decoder
(R = 1) makes the exact stream nearly as early as ``lookahead=0``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from llmtts.errors import UserError


class StreamOptionError(UserError, ValueError):
    """Chunk sizes or look-ahead out of range (one line from the CLI; still a ValueError for API callers)."""


class StreamDecoder:
    def __init__(self, decode: Callable[[torch.Tensor], np.ndarray], context: int | tuple[int, int],
                 samples_per_token: int, first_chunk: int = 1, max_chunk: int = 32, lookahead: int | None = None,
                 incremental: Callable[[torch.Tensor, bool], np.ndarray] | None = None):
        """``context``: the decoder's (left, right) context in tokens, or one number for both sides.
        ``incremental``: a stateful decoder, ``(next states [n, d], final) -> the samples now final``
        (``llmtts.decoder.stream`` for causal decoders), used instead of ``decode`` windows for exact streaming:
        it carries its left context, so every state is decoded once. Chunks then end where the decoder's output is
        final (a little short of the chunk's last token), not on token boundaries; they concatenate the same."""
        if first_chunk < 1 or max_chunk < first_chunk:
            raise StreamOptionError(f"need 1 <= first_chunk <= max_chunk, got {first_chunk}, {max_chunk}")
        self.L, self.R = (context, context) if isinstance(context, int) else context
        self.decode, self.spt = decode, samples_per_token
        self.lookahead = self.R if lookahead is None else lookahead
        if not 0 <= self.lookahead <= self.R:
            raise StreamOptionError(f"lookahead must be in [0, {self.R}] (the decoder's right context), "
                                    f"got {lookahead}")
        self.incremental = incremental if self.lookahead == self.R else None
        self.fed = 0  # states handed to ``incremental``
        self.chunk, self.max_chunk = first_chunk, max_chunk
        self.states: list[torch.Tensor] = []  # [n, d] blocks
        self.n = 0  # tokens received
        self.done = 0  # tokens whose audio has been emitted

    def _all_states(self) -> torch.Tensor:
        if len(self.states) > 1:
            self.states = [torch.cat(self.states)]
        return self.states[0]

    def _window(self, end: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """The states that decode tokens ``[done, end)`` exactly, and the sample span of those tokens in the
        window's audio; marks them emitted."""
        start = max(self.done - self.L, 0)
        stop = min(end + self.R, self.n)
        crop = ((self.done - start) * self.spt, (end - start) * self.spt)
        self.done = end
        return self._all_states()[start:stop], crop

    def _emit(self, end: int) -> np.ndarray:
        if self.incremental is not None:
            final = end >= self.n
            stop = self.n if final else end + self.R  # the chunk and the right context it waits for
            out = self.incremental(self._all_states()[self.fed:stop], final)
            self.fed, self.done = stop, end
            return out
        hidden, (a, b) = self._window(end)
        return self.decode(hidden)[a:b]

    def push(self, hidden: torch.Tensor) -> list[np.ndarray]:
        """Add ``hidden [n, d]`` (new tokens' states); returns the chunks that became final (0 or more)."""
        if hidden.shape[0]:
            self.states.append(hidden)
            self.n += hidden.shape[0]
        out = []
        while self.n - self.lookahead - self.done >= self.chunk:
            out.append(self._emit(self.done + self.chunk))
            self.chunk = min(self.chunk * 2, self.max_chunk)
        return out

    def flush(self) -> np.ndarray | None:
        """The rest, once generation has ended (the true right edge needs no look-ahead)."""
        if self.done >= self.n:
            return None
        return self._emit(self.n)

"""How hidden shards store the decoder's input states: dtype x compression, recorded in ``index.json``.

The decoder reads one ``[T, d]`` state per audio token. At Soprano's d=512 and 15.6 tokens/s, fp16 costs
16 KB per audio second; this module stores them smaller (measured in docs/results.md, "Hidden-state shard
formats"):

========  ==========================================================================  =========================
dtype     stored array                                                                 error bound per value
========  ==========================================================================  =========================
fp16      ``float16 [T, d]``                                                          fp16 rounding (2^-11 rel.)
bf16      ``uint16 [T, d]``: the upper half of each float32 (round to nearest even)   bf16 rounding (2^-8 rel.)
int8      ``int8 [T, d + 2]``: ``q`` in columns ``0..d-1``, the row's float16 scale   ``scale / 2`` (scale =
          ``s`` as two little-endian bytes in columns ``d, d+1``; value = ``q * s``    ``max|row| / 127``, rounded up)
========  ==========================================================================  =========================

``compression``: ``none``, or ``zlib`` (stdlib, level 6) of the ``.npy`` bytes with the bytes of each
element split into planes first (byte shuffle, as blosc does: the high bytes of nearby floats repeat, the low
bytes are noise; an int8 array has one plane). Lossless.

The member is ``KEY.hidden.npy`` for fp16 uncompressed (the original layout, unchanged) and otherwise
``KEY.hidden.<dtype>.npy[.zlib]``, so a reader that does not know a format finds no member it would misread
(uint16 bf16 bits read as numbers would be silent garbage). ``index.json`` records ``hidden_dtype``
(``float16`` | ``bfloat16`` | ``int8``) and ``hidden_compression`` (``none`` | ``zlib``); an index without them
is the original fp16 layout.
"""
from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from llmtts.errors import UserError

DTYPES = ("fp16", "bf16", "int8")
COMPRESSIONS = ("none", "zlib")
# The shards' default (llm dump-hidden --hidden-dtype/--compression, the decoder's on-the-fly rounding): the
# fewest bytes whose decoder stays within seed noise of fp16 (docs/results.md, "Hidden-state shard formats":
# int8 trains a decoder whose mel distance and judge WER fall between two fp16 seeds', at 0.50x fp16's bytes).
DEFAULT_DTYPE = "int8"
DEFAULT_COMPRESSION = "zlib"
_INDEX_NAME = {"fp16": "float16", "bf16": "bfloat16", "int8": "int8"}  # hidden_dtype as index.json spells it
_ZLIB_LEVEL = 6


@dataclass(frozen=True)
class HiddenFormat:
    dtype: str = DEFAULT_DTYPE
    compression: str = DEFAULT_COMPRESSION

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise UserError(f"hidden dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.compression not in COMPRESSIONS:
            raise UserError(f"hidden compression {self.compression!r} is not one of {', '.join(COMPRESSIONS)}")

    @property
    def member(self) -> str:
        """The tar member extension of the states (``KEY.<member>``)."""
        base = "hidden.npy" if self.dtype == "fp16" else f"hidden.{self.dtype}.npy"
        return base if self.compression == "none" else f"{base}.{self.compression}"

    def index_fields(self) -> dict:
        return {"hidden_dtype": _INDEX_NAME[self.dtype], "hidden_compression": self.compression}

    @classmethod
    def from_index(cls, index: Mapping, source: object) -> "HiddenFormat":
        """The format an ``index.json`` records; an unknown one is a one-line error naming the file and key."""
        names = {v: k for k, v in _INDEX_NAME.items()}
        dtype = index.get("hidden_dtype", "float16")
        if dtype not in names:
            raise UserError(f"{source}: hidden_dtype {dtype!r} is not a format this version reads "
                            f"({', '.join(names)}); upgrade llmtts or re-run `llmtts llm dump-hidden`")
        comp = index.get("hidden_compression", "none")
        if comp not in COMPRESSIONS:
            raise UserError(f"{source}: hidden_compression {comp!r} is not a format this version reads "
                            f"({', '.join(COMPRESSIONS)}); upgrade llmtts or re-run `llmtts llm dump-hidden`")
        return cls(names[dtype], comp)

    # --- encode / decode -------------------------------------------------------------------------
    def encode(self, hidden: np.ndarray) -> bytes:
        """float ``[T, d]`` (float32 from the LLM, or float16) -> member bytes."""
        arr = _to_stored(np.asarray(hidden, dtype=np.float32), self.dtype)
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        data = buf.getvalue()
        if self.compression == "zlib":
            data = zlib.compress(_shuffle(data, arr), _ZLIB_LEVEL)
        return data

    def decode(self, data: bytes) -> np.ndarray:
        """Member bytes -> ``[T, d]`` (float16 for fp16, as the shards always gave; float32 otherwise)."""
        if self.compression == "zlib":
            data = _unshuffle(zlib.decompress(data))
        arr = np.load(io.BytesIO(data), allow_pickle=False)
        return _from_stored(arr, self.dtype)

    def round_trip(self, hidden):
        """float32 torch states as the decoder reads them back from shards of this format (on-the-fly mode)."""
        import torch

        if self.dtype == "fp16":
            return hidden.to(torch.float16).to(torch.float32)
        if self.dtype == "bf16":
            return hidden.to(torch.bfloat16).to(torch.float32)
        x = hidden.detach().float().cpu().numpy()
        back = _from_stored(_to_stored(x.reshape(-1, x.shape[-1]), "int8"), "int8").reshape(x.shape)
        return torch.from_numpy(back).to(hidden.device)


def _to_stored(x: np.ndarray, dtype: str) -> np.ndarray:
    if x.ndim != 2:
        raise ValueError(f"hidden states must be [T, d], got shape {x.shape}")
    if dtype == "fp16":
        return x.astype(np.float16)
    if dtype == "bf16":  # torch rounds to nearest even; numpy has no bfloat16
        import torch

        return torch.from_numpy(np.ascontiguousarray(x)).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    peak = np.abs(x).max(axis=1) if x.shape[1] else np.zeros(len(x), np.float32)
    scale = (peak / 127).astype(np.float16)
    # float16 rounding may have made the scale smaller than peak/127: step up so |x / scale| <= 127, no clipping.
    low = scale.astype(np.float32) * 127 < peak
    scale[low] = np.nextafter(scale[low], np.float16(np.inf))
    safe = np.where(scale > 0, scale.astype(np.float32), 1.0)
    q = np.clip(np.rint(x / safe[:, None]), -127, 127).astype(np.int8)
    return np.concatenate([q, scale.astype("<f2").view(np.int8).reshape(-1, 2)], axis=1)


def _from_stored(arr: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "fp16":
        if arr.dtype != np.float16:
            raise ValueError(f"fp16 states stored as {arr.dtype}")
        return arr
    if arr.ndim != 2:
        raise ValueError(f"stored states must be 2-d, got shape {arr.shape}")
    if dtype == "bf16":
        if arr.dtype != np.uint16:
            raise ValueError(f"bf16 states stored as {arr.dtype}")
        return (arr.astype(np.uint32) << 16).view(np.float32)
    if arr.dtype != np.int8 or arr.shape[1] < 2:
        raise ValueError(f"int8 states stored as {arr.dtype} {arr.shape}")
    scale = np.ascontiguousarray(arr[:, -2:]).view("<f2").astype(np.float32)  # [T, 1]
    return arr[:, :-2].astype(np.float32) * scale


def _shuffle(npy: bytes, arr: np.ndarray) -> bytes:
    """Header bytes kept, then the data's byte planes (all first bytes, all second bytes, ...)."""
    size = arr.dtype.itemsize
    head = len(npy) - arr.nbytes
    body = np.frombuffer(npy, np.uint8, offset=head).reshape(-1, size).T.tobytes() if size > 1 else npy[head:]
    return head.to_bytes(4, "little") + size.to_bytes(1, "little") + npy[:head] + body


def _unshuffle(data: bytes) -> bytes:
    head, size = int.from_bytes(data[:4], "little"), data[4]
    npy_head, body = data[5:5 + head], data[5 + head:]
    if size > 1:
        body = np.frombuffer(body, np.uint8).reshape(size, -1).T.tobytes()
    return npy_head + body

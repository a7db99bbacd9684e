"""Weights stored compactly: b-bit codes with group scales (``rtn``), a bitmask plus the nonzero values
(``sparse``), or a table's rows in two groups of their own bit-widths (``rows``). A :class:`Packed` is what a
method hands the saver; ``decode()`` gives back exactly the weights that ran.

Example::

    >>> codes = pack_bits(np.array([1, 2, 3]), 2)   # 3 values x 2 bits in 1 byte
    >>> unpack_bits(codes, 2, 3)
    array([1, 2, 3], dtype=uint8)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned ints < 2**bits into a little-endian bitstream: n values take ceil(n*bits/8) bytes."""
    v = values.astype(np.uint8).ravel()
    planes = ((v[:, None] >> np.arange(bits, dtype=np.uint8)) & 1).astype(np.uint8)
    return np.packbits(planes.ravel(), bitorder="little")


def unpack_bits(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    planes = np.unpackbits(packed, count=n * bits, bitorder="little").reshape(n, bits)
    return (planes.astype(np.uint8) << np.arange(bits, dtype=np.uint8)).sum(axis=1).astype(np.uint8)


@dataclass
class Packed:
    """One weight stored compactly. ``fmt`` is ``rtn`` (b-bit codes + group scales), ``sparse``
    (a bitmask + the nonzero values) or ``rows`` (a table's rows in two groups of their own bit-widths).
    ``tensors`` go to safetensors; ``meta`` to the manifest."""

    fmt: str
    shape: tuple[int, ...]
    tensors: dict[str, torch.Tensor]
    meta: dict = field(default_factory=dict)

    def decode(self) -> torch.Tensor:
        return DECODERS[self.fmt](self)


def _decode_rtn(p: Packed) -> torch.Tensor:
    bits, group = p.meta["bits"], p.meta["group"]
    n = int(np.prod(p.shape))
    q = torch.from_numpy(unpack_bits(p.tensors["codes"].numpy(), bits, n).astype(np.float32))
    q = q.view(-1, group)
    scale = p.tensors["scale"].float().view(-1, 1)
    zero = p.tensors["zero"].float().view(-1, 1) if "zero" in p.tensors else 2 ** (bits - 1)
    return ((q - zero) * scale).view(p.shape)


def _decode_sparse(p: Packed) -> torch.Tensor:
    n = int(np.prod(p.shape))
    mask = torch.from_numpy(np.unpackbits(p.tensors["mask"].numpy(), count=n, bitorder="little").astype(bool))
    out = torch.zeros(n, dtype=p.tensors["values"].dtype)
    out[mask] = p.tensors["values"]
    return out.view(p.shape)


def _decode_rows(p: Packed) -> torch.Tensor:
    """A table saved as a row mask and two groups of rows, each as fp32 values or b-bit codes with one scale a
    row; a group saved with no parts (dropped, or empty) reads back as zeros."""
    seen = torch.from_numpy(np.unpackbits(p.tensors["seen"].numpy(), count=p.shape[0], bitorder="little").astype(bool))
    out = torch.zeros(p.shape)
    for group, rows in (("seen", seen), ("unseen", ~seen)):
        bits, parts = p.meta[f"{group}_bits"], {k[len(group) + 1:]: v for k, v in p.tensors.items()
                                                if k.startswith(group + ".")}
        if parts:
            shape = (int(rows.sum()), p.shape[1])
            codes = Packed("rtn", shape, parts, {"bits": bits, "group": shape[1]})
            out[rows] = parts["values"].float() if bits == 32 else _decode_rtn(codes)
    return out


DECODERS: dict[str, Callable[[Packed], torch.Tensor]] = {"rtn": _decode_rtn, "sparse": _decode_sparse,
                                                         "rows": _decode_rows}

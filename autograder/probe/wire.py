"""The probe wire format: what crosses between the grader and a student's probe process.

One message is one *frame*::

    b"FLW1"                     4 bytes, magic
    header_len                  4 bytes, unsigned, little-endian
    header                      header_len bytes, UTF-8 JSON (strict: no NaN/Infinity tokens,
                                no duplicate keys), an object {"msg": VALUE, "buffers": [META, ...]}
    buffer 0, buffer 1, ...     raw bytes of each tensor, in the order of "buffers"

``META`` is ``{"dtype": "float64", "shape": [40, 5], "device": "cpu", "requires_grad": false}``;
a buffer's length is not sent: it is ``prod(shape) * itemsize(dtype)``, read exactly, little-endian,
C order. A ``VALUE`` is JSON null/true/false/int/str/float/array (a list) or an object with
exactly one tag key:

    {"$tensor": i}              the i-th buffer (each buffer used exactly once)
    {"$tuple": [VALUE, ...]}    a tuple
    {"$dict": [[KEY, VALUE], ...]}   a dict, KEY a str or int
    {"$float": "nan" | "inf" | "-inf"}   a non-finite float (NaN is a value, never an error)
    {"$handle": n, "type": str} an object that stays in the probe process (a module, ...)
    {"$callback": name}         a function the grader evaluates when the student's code calls it

Nothing else is accepted: no pickle, no code, no class names that decode into objects.
:func:`read_frame` enforces the limits of :class:`Limits` and raises :class:`WireError` for
anything malformed, so a probe that sends garbage fails that request and nothing more.
This module is imported by both sides (the grader and ``runtime.py`` in the sandbox).
"""
from __future__ import annotations

import json
import math
import os
import select
import struct
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

MAGIC = b"FLW1"

# dtype name on the wire -> (torch dtype, bytes per element)
DTYPES: dict[str, tuple[torch.dtype, int]] = {
    "bool": (torch.bool, 1),
    "uint8": (torch.uint8, 1),
    "int8": (torch.int8, 1),
    "int16": (torch.int16, 2),
    "int32": (torch.int32, 4),
    "int64": (torch.int64, 8),
    "float16": (torch.float16, 2),
    "bfloat16": (torch.bfloat16, 2),
    "float32": (torch.float32, 4),
    "float64": (torch.float64, 8),
    "complex64": (torch.complex64, 8),
    "complex128": (torch.complex128, 16),
}
_NAMES = {dt: name for name, (dt, _) in DTYPES.items()}
_TAGS = {"$tensor", "$tuple", "$dict", "$float", "$handle", "$callback"}

if sys.byteorder != "little":  # pragma: no cover - every machine this course runs on is little-endian
    raise ImportError("the probe wire format assumes a little-endian machine")


class WireError(ValueError):
    """A frame that breaks the format or its limits."""


class WireTimeout(TimeoutError):
    """No complete frame before the deadline."""


@dataclass(frozen=True)
class Limits:
    max_header: int = 1 << 20          # 1 MiB of JSON
    max_bytes: int = 256 << 20         # all buffers of one frame together
    max_buffers: int = 4096
    max_ndim: int = 16
    max_depth: int = 64
    max_string: int = 64 << 10         # one str value
    max_items: int = 100_000           # list / dict entries in one frame


GRADER_SIDE = Limits()                               # what the grader accepts from a student's process
PROBE_SIDE = Limits(max_header=64 << 20, max_string=16 << 20)   # the grader sends notebook cells


# ----------------------------------------------------------------------------- encoding

def dtype_name(dtype: torch.dtype) -> str:
    try:
        return _NAMES[dtype]
    except KeyError:
        raise WireError(f"dtype {dtype} cannot cross the wire (allowed: {', '.join(DTYPES)})") from None


def tensor_bytes(t: torch.Tensor) -> bytes:
    flat = torch.Tensor.contiguous(torch.Tensor.reshape(torch.Tensor.cpu(torch.Tensor.detach(t)), (-1,)))
    if flat.numel() == 0:
        return b""
    if torch.Tensor.stride(flat)[0] != 1:  # a one-element expanded tensor (t.expand(1)) keeps stride 0
        flat = torch.Tensor.copy_(torch.empty(flat.shape, dtype=flat.dtype), flat)
    return torch.Tensor.numpy(torch.Tensor.view(flat, torch.uint8)).tobytes()


class Encoder:
    """Turns a value into (JSON-able tree, buffers). ``handle`` is called for any object that
    has no wire form (the probe keeps it and sends a handle); without it such objects are errors."""

    def __init__(self, handle=None):
        self.metas: list[dict] = []
        self.buffers: list[bytes] = []
        self.handle = handle

    def tensor(self, t: torch.Tensor) -> dict:
        # Plain torch.Tensor methods, not the object's own: a subclass cannot change what is read.
        base = torch.Tensor.detach(t)
        if type(base) is not torch.Tensor:
            base = torch.Tensor.as_subclass(base, torch.Tensor)
        meta = {"dtype": dtype_name(base.dtype), "shape": [int(s) for s in base.shape],
                "device": str(base.device), "requires_grad": bool(t.requires_grad)}
        self.metas.append(meta)
        self.buffers.append(tensor_bytes(base))
        return {"$tensor": len(self.metas) - 1}

    def value(self, v: Any, depth: int = 0) -> Any:
        if depth > 64:
            raise WireError("value nested too deeply")
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int):
            if not -(1 << 63) <= v < (1 << 63):
                raise WireError("integer out of the 64-bit range")
            return int(v)
        if isinstance(v, float):
            if math.isfinite(v):
                return float(v)
            return {"$float": "nan" if v != v else ("inf" if v > 0 else "-inf")}
        if isinstance(v, torch.Tensor):
            return self.tensor(v)
        if isinstance(v, tuple):
            return {"$tuple": [self.value(x, depth + 1) for x in v]}
        if isinstance(v, list):
            return [self.value(x, depth + 1) for x in v]
        if isinstance(v, dict):
            items = []
            for k, x in v.items():
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise WireError(f"dict key of type {type(k).__name__} cannot cross the wire")
                items.append([k, self.value(x, depth + 1)])
            return {"$dict": items}
        if isinstance(v, Callback):
            return {"$callback": v.name}
        if isinstance(v, Handle):
            return {"$handle": v.id, "type": v.type}
        if self.handle is not None:
            return self.handle(v)
        raise WireError(f"a {type(v).__name__} cannot cross the wire")


def encode(msg: Any, handle=None) -> bytes:
    enc = Encoder(handle)
    tree = enc.value(msg)
    header = json.dumps({"msg": tree, "buffers": enc.metas}, allow_nan=False, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + b"".join(enc.buffers)


# ----------------------------------------------------------------------------- decoding

@dataclass(frozen=True)
class Handle:
    """An object that lives in the probe process (the grader holds only its number)."""
    id: int
    type: str


@dataclass(frozen=True)
class Callback:
    """A function argument: the probe gives the student's code a stand-in that asks the grader."""
    name: str


def _reject_constant(name: str):
    raise WireError(f"JSON constant {name} is not allowed (non-finite floats are tagged)")


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise WireError(f"duplicate JSON key {k!r}")
        out[k] = v
    return out


def _check_meta(meta: Any, limits: Limits) -> tuple[torch.dtype, list[int], int, str, bool]:
    if not isinstance(meta, dict) or set(meta) - {"dtype", "shape", "device", "requires_grad"} or "dtype" not in meta or "shape" not in meta:
        raise WireError(f"malformed buffer description {str(meta)[:200]}")
    name = meta["dtype"]
    if not isinstance(name, str) or name not in DTYPES:
        raise WireError(f"dtype {str(name)[:40]!r} is not allowed (allowed: {', '.join(DTYPES)})")
    shape = meta["shape"]
    if not isinstance(shape, list) or len(shape) > limits.max_ndim or not all(
            type(s) is int and 0 <= s < (1 << 40) for s in shape):
        raise WireError(f"malformed shape {str(shape)[:200]}")
    numel = math.prod(shape)
    dtype, size = DTYPES[name]
    nbytes = numel * size
    device = meta.get("device", "cpu")
    if not isinstance(device, str) or len(device) > 32:
        raise WireError("malformed device")
    rg = meta.get("requires_grad", False)
    if not isinstance(rg, bool):
        raise WireError("malformed requires_grad")
    return dtype, shape, nbytes, device, rg


def _tree(v: Any, tensors: list, used: list[bool], limits: Limits, depth: int, count: list[int]) -> Any:
    count[0] += 1
    if count[0] > limits.max_items:
        raise WireError("too many values in one frame")
    if depth > limits.max_depth:
        raise WireError("value nested too deeply")
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        if not -(1 << 63) <= v < (1 << 63):
            raise WireError("integer out of the 64-bit range")
        return v
    if isinstance(v, float):
        return v
    if isinstance(v, str):
        if len(v) > limits.max_string:
            raise WireError(f"string of {len(v)} characters exceeds {limits.max_string}")
        return v
    if isinstance(v, list):
        return [_tree(x, tensors, used, limits, depth + 1, count) for x in v]
    if isinstance(v, dict):
        if len(v) == 0 or not (set(v) & _TAGS):
            raise WireError(f"untagged object {str(v)[:100]}")
        if "$handle" in v:
            if set(v) != {"$handle", "type"} or type(v["$handle"]) is not int or not isinstance(v["type"], str) or len(v["type"]) > 200:
                raise WireError("malformed handle")
            return Handle(v["$handle"], v["type"])
        if len(v) != 1:
            raise WireError(f"an object must have exactly one tag, got {sorted(v)[:5]}")
        tag, x = next(iter(v.items()))
        if tag == "$tensor":
            if type(x) is not int or not 0 <= x < len(tensors):
                raise WireError(f"tensor reference {x!r} out of range")
            if used[x]:
                raise WireError(f"tensor {x} referenced twice")
            used[x] = True
            return tensors[x]
        if tag == "$tuple":
            if not isinstance(x, list):
                raise WireError("malformed tuple")
            return tuple(_tree(y, tensors, used, limits, depth + 1, count) for y in x)
        if tag == "$dict":
            if not isinstance(x, list):
                raise WireError("malformed dict")
            out = {}
            for item in x:
                if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], (str, int)) or isinstance(item[0], bool):
                    raise WireError("malformed dict entry")
                if isinstance(item[0], str) and len(item[0]) > limits.max_string:
                    raise WireError("dict key too long")
                out[item[0]] = _tree(item[1], tensors, used, limits, depth + 1, count)
            return out
        if tag == "$float":
            if x not in ("nan", "inf", "-inf"):
                raise WireError(f"malformed float tag {str(x)[:20]!r}")
            return float(x)
        if tag == "$callback":
            if not isinstance(x, str) or not x.isidentifier():
                raise WireError("malformed callback name")
            return Callback(x)
        raise WireError(f"unknown tag {tag!r}")
    raise WireError(f"unexpected JSON value of type {type(v).__name__}")


def parse(header: bytes, payload_reader, limits: Limits) -> tuple[Any, list[dict]]:
    """Decode a header (bytes after the length) and read its buffers with ``payload_reader(n)``.
    Returns (message, [meta of each tensor, with 'tensor' added])."""
    try:
        obj = json.loads(header.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except WireError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WireError(f"header is not strict UTF-8 JSON: {str(exc)[:200]}") from None
    if not isinstance(obj, dict) or set(obj) != {"msg", "buffers"} or not isinstance(obj["buffers"], list):
        raise WireError("header must be an object with exactly 'msg' and 'buffers'")
    metas = obj["buffers"]
    if len(metas) > limits.max_buffers:
        raise WireError(f"{len(metas)} buffers exceed the limit of {limits.max_buffers}")
    checked = [_check_meta(m, limits) for m in metas]
    total = sum(c[2] for c in checked)
    if total > limits.max_bytes:
        raise WireError(f"{total} bytes of tensors exceed the limit of {limits.max_bytes}")
    tensors, infos = [], []
    for dtype, shape, nbytes, device, rg in checked:
        raw = payload_reader(nbytes)
        if len(raw) != nbytes:
            raise WireError(f"frame ends early: expected {nbytes} bytes of tensor data, got {len(raw)}")
        if nbytes == 0:
            t = torch.empty(shape, dtype=dtype)
        else:
            t = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape)
        if dtype is torch.bool and nbytes and bool((t.view(torch.uint8) > 1).any()):
            raise WireError("a bool tensor holds bytes other than 0 and 1")
        # where the tensor lived in the sending process (a decoded tensor is always on the CPU)
        t.probe_device, t.probe_requires_grad = device, rg
        tensors.append(t)
        infos.append({"tensor": t, "device": device, "requires_grad": rg})
    used = [False] * len(tensors)
    msg = _tree(obj["msg"], tensors, used, limits, 0, [0])
    if not all(used):
        raise WireError("a buffer is not referenced by the message")
    return msg, infos


def decode(frame: bytes, limits: Limits = GRADER_SIDE) -> tuple[Any, list[dict]]:
    """Decode one complete frame held in memory (tests use this; streams use :func:`read_frame`)."""
    if frame[:4] != MAGIC:
        raise WireError(f"bad magic {frame[:4]!r}: not a probe frame")
    if len(frame) < 8:
        raise WireError("frame shorter than its length field")
    (n,) = struct.unpack("<I", frame[4:8])
    if n > limits.max_header:
        raise WireError(f"header of {n} bytes exceeds the limit of {limits.max_header}")
    header = frame[8 : 8 + n]
    if len(header) != n:
        raise WireError("frame ends inside its header")
    pos = [8 + n]

    def reader(k: int) -> bytes:
        chunk = frame[pos[0] : pos[0] + k]
        pos[0] += k
        return chunk

    msg, infos = parse(header, reader, limits)
    if pos[0] != len(frame):
        raise WireError(f"{len(frame) - pos[0]} trailing bytes after the frame")
    return msg, infos


# ----------------------------------------------------------------------------- streams

def read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    """Read exactly n bytes from a file descriptor before ``deadline`` (time.monotonic());
    b'' prefix on EOF is returned short."""
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WireTimeout(f"no complete message within the time limit ({got} of {n} bytes)")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, limits: Limits, deadline: float | None = None) -> tuple[Any, list[dict]]:
    start = read_exact(fd, 8, deadline)
    if len(start) == 0:
        raise EOFError("the other side closed the connection")
    if len(start) < 8 or start[:4] != MAGIC:
        raise WireError(f"bad frame start {start[:8]!r}: not a probe frame")
    (n,) = struct.unpack("<I", start[4:])
    if n > limits.max_header:
        raise WireError(f"header of {n} bytes exceeds the limit of {limits.max_header}")
    header = read_exact(fd, n, deadline)
    if len(header) != n:
        raise WireError("the connection ended inside a header")
    return parse(header, lambda k: read_exact(fd, k, deadline), limits)


def write_frame(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]

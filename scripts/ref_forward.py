#!/usr/bin/env python3
"""An independent float64 reference forward pass for GGUF Llama / Qwen2 models.

Written from the formats' descriptions, not from llm's C++: its own GGUF parser
(https://github.com/ggml-org/ggml/blob/master/docs/gguf.md), numpy dequantization of
F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K (block layouts of ggml-common.h), and
the Llama architecture (RMSNorm, RoPE, grouped-query causal attention, SwiGLU) with
Qwen2's differences (NeoX RoPE pairing, Q/K/V biases). Needs only numpy.

    ref_forward.py MODEL.gguf --tokens 1,15,27 --out logits.f32 [--argmax ids.txt]

Every position's logits are written as raw little-endian float32, (n_tokens, n_vocab)
row-major (teacher forcing: position i sees tokens 0..i).
"""
import argparse
import struct
import sys

import numpy as np

# ---------------------------------------------------------------------------- GGUF

# Metadata value types.
_SCALARS = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4",
            7: "<u1", 10: "<u8", 11: "<i8", 12: "<f8"}
_STRING, _ARRAY = 8, 9
_STRUCT = {"<u1": "<B", "<i1": "<b", "<u2": "<H", "<i2": "<h", "<u4": "<I", "<i4": "<i",
           "<f4": "<f", "<u8": "<Q", "<i8": "<q", "<f8": "<d"}

# Tensor types: id -> (name, elements per block, bytes per block).
TYPES = {0: ("f32", 1, 4), 1: ("f16", 1, 2), 30: ("bf16", 1, 2), 8: ("q8_0", 32, 34),
         2: ("q4_0", 32, 18), 3: ("q4_1", 32, 20), 6: ("q5_0", 32, 22), 7: ("q5_1", 32, 24),
         12: ("q4_K", 256, 144), 13: ("q5_K", 256, 176), 14: ("q6_K", 256, 210)}


class Gguf:
    def __init__(self, path):
        self.buf = np.memmap(path, dtype=np.uint8, mode="r")
        self.pos = 0
        if bytes(self.buf[:4]) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        self.pos = 4
        version = self._read("<u4")
        if version not in (2, 3):
            raise ValueError(f"{path}: GGUF version {version} not supported")
        n_tensors = self._read("<u8")
        n_kv = self._read("<u8")
        self.meta = {}
        for _ in range(n_kv):
            key = self._string()
            self.meta[key] = self._value(self._read("<u4"))
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            n_dims = self._read("<u4")
            shape = [self._read("<u8") for _ in range(n_dims)]
            ttype = self._read("<u4")
            offset = self._read("<u8")
            infos.append((name, shape, ttype, offset))
        align = int(self.meta.get("general.alignment", 32))
        data_start = (self.pos + align - 1) // align * align
        self.tensors = {}
        for name, shape, ttype, offset in infos:
            self.tensors[name] = (shape, ttype, data_start + offset)

    def _read(self, dtype):
        fmt = _STRUCT[dtype]
        size = struct.calcsize(fmt)
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return v

    def _string(self):
        n = self._read("<u8")
        s = bytes(self.buf[self.pos:self.pos + n]).decode("utf-8", errors="replace")
        self.pos += n
        return s

    def _value(self, vtype):
        if vtype in _SCALARS:
            v = self._read(_SCALARS[vtype])
            return bool(v) if vtype == 7 else v
        if vtype == _STRING:
            return self._string()
        if vtype == _ARRAY:
            etype = self._read("<u4")
            n = self._read("<u8")
            if etype in _SCALARS:
                dt = np.dtype(_SCALARS[etype])
                arr = np.frombuffer(self.buf, dtype=dt, count=n, offset=self.pos).copy()
                self.pos += n * dt.itemsize
                return arr
            return [self._value(etype) for _ in range(n)]
        raise ValueError(f"unknown metadata value type {vtype}")

    def has(self, name):
        return name in self.tensors

    def tensor(self, name):
        """The tensor as float64, numpy shape = reversed ggml shape (rows, cols)."""
        shape, ttype, start = self.tensors[name]
        if ttype not in TYPES:
            raise ValueError(f"tensor {name}: type id {ttype} not supported by the reference")
        _, block, bbytes = TYPES[ttype]
        n = int(np.prod(shape))
        raw = self.buf[start:start + n // block * bbytes]
        return dequantize(ttype, np.asarray(raw), n).reshape(list(reversed(shape)))


# -------------------------------------------------------------------- dequantization

def _f16(b, cols):
    """Little-endian f16 fields at byte columns `cols` of the (n_blocks, bytes) array b."""
    return b[:, cols].copy().view("<f2")[:, 0].astype(np.float64)


def _k_scales(sc):
    """The 8 six-bit (scale, min) pairs packed in 12 bytes (Q4_K, Q5_K), per block.

    Sub-blocks 0..3: scale = low 6 bits of byte j, min = low 6 bits of byte j+4.
    Sub-blocks 4..7: low 4 bits from byte j+4 (scale: its low nibble, min: its high
    nibble), top 2 bits from the top bits of byte j-4 (scale) and byte j (min).
    """
    sc = sc.astype(np.int64)
    scale = np.empty((sc.shape[0], 8), np.int64)
    mn = np.empty((sc.shape[0], 8), np.int64)
    for j in range(4):
        scale[:, j] = sc[:, j] & 63
        mn[:, j] = sc[:, j + 4] & 63
    for j in range(4, 8):
        scale[:, j] = (sc[:, j + 4] & 0xF) | ((sc[:, j - 4] >> 6) << 4)
        mn[:, j] = (sc[:, j + 4] >> 4) | ((sc[:, j] >> 6) << 4)
    return scale, mn


def dequantize(ttype, raw, n):
    name, block, bbytes = TYPES[ttype]
    if name == "f32":
        return raw.view("<f4").astype(np.float64)
    if name == "f16":
        return raw.view("<f2").astype(np.float64)
    if name == "bf16":
        return (raw.view("<u2").astype(np.uint32) << 16).view("<f4").astype(np.float64)
    b = raw.reshape(n // block, bbytes)
    if name == "q8_0":  # d (f16), 32 x int8
        d = _f16(b, [0, 1])
        q = b[:, 2:34].view(np.int8).astype(np.float64)
        return (d[:, None] * q).reshape(-1)
    if name in ("q4_0", "q4_1"):
        # q4_0: d, 16 bytes; q4_1: d, m, 16 bytes. Element j in the low nibble of byte j,
        # element j + 16 in its high nibble.
        d = _f16(b, [0, 1])
        qs = b[:, bbytes - 16:]
        q = np.concatenate([qs & 0xF, qs >> 4], axis=1).astype(np.float64)
        if name == "q4_0":
            return (d[:, None] * (q - 8)).reshape(-1)
        m = _f16(b, [2, 3])
        return (d[:, None] * q + m[:, None]).reshape(-1)
    if name in ("q5_0", "q5_1"):
        # q5_0: d, qh, 16 bytes; q5_1: d, m, qh, 16 bytes. qh is a u32 whose bit j is the
        # fifth bit of element j; the low 4 bits are laid out as in q4_0.
        d = _f16(b, [0, 1])
        h0 = bbytes - 20
        qh = b[:, h0:h0 + 4].copy().view("<u4").astype(np.int64)[:, 0]
        qs = b[:, h0 + 4:].astype(np.int64)
        lo = np.concatenate([qs & 0xF, qs >> 4], axis=1)
        hi = (qh[:, None] >> np.arange(32)[None, :]) & 1
        q = lo | (hi << 4)
        if name == "q5_0":
            return (d[:, None] * (q - 16)).reshape(-1)
        m = _f16(b, [2, 3])
        return (d[:, None] * q + m[:, None]).reshape(-1)
    if name in ("q4_K", "q5_K"):
        # d, dmin (f16), 12 bytes of scales/mins, [q5_K: 32 bytes of high bits], 128 bytes
        # of nibbles. Four 64-element groups: group g takes the low nibbles (sub-block 2g)
        # then the high nibbles (sub-block 2g + 1) of bytes 32g .. 32g + 31.
        # Element = d * scale * q - dmin * min.
        d = _f16(b, [0, 1])
        dmin = _f16(b, [2, 3])
        scale, mn = _k_scales(b[:, 4:16])
        qs = b[:, bbytes - 128:].astype(np.int64).reshape(-1, 4, 32)
        q = np.stack([qs & 0xF, qs >> 4], axis=2).reshape(-1, 8, 32)  # (blocks, sub-block, 32)
        if name == "q5_K":
            # High bit of element l of sub-block s is bit s of qh[l].
            qh = b[:, 16:48].astype(np.int64)
            hbit = (qh[:, None, :] >> np.arange(8)[None, :, None]) & 1
            q = q | (hbit << 4)
        y = d[:, None, None] * scale[:, :, None] * q - dmin[:, None, None] * mn[:, :, None]
        return y.reshape(-1)
    if name == "q6_K":
        # ql (128 bytes: low 4 bits), qh (64: high 2 bits), 16 int8 scales, d (f16).
        # Two halves of 128 elements; in half h, for l in 0..31:
        #   e[l]      = ql[64h + l] & 0xF     | ((qh[32h + l] >> 0) & 3) << 4
        #   e[l + 32] = ql[64h + l + 32] & 0xF | ((qh[32h + l] >> 2) & 3) << 4
        #   e[l + 64] = ql[64h + l] >> 4      | ((qh[32h + l] >> 4) & 3) << 4
        #   e[l + 96] = ql[64h + l + 32] >> 4 | ((qh[32h + l] >> 6) & 3) << 4
        # value = d * scale[element // 16] * (e - 32).
        ql = b[:, 0:128].astype(np.int64).reshape(-1, 2, 64)
        qh = b[:, 128:192].astype(np.int64).reshape(-1, 2, 32)
        sc = b[:, 192:208].view(np.int8).astype(np.float64)
        d = _f16(b, [208, 209])
        e0 = (ql[:, :, 0:32] & 0xF) | (((qh >> 0) & 3) << 4)
        e1 = (ql[:, :, 32:64] & 0xF) | (((qh >> 2) & 3) << 4)
        e2 = (ql[:, :, 0:32] >> 4) | (((qh >> 4) & 3) << 4)
        e3 = (ql[:, :, 32:64] >> 4) | (((qh >> 6) & 3) << 4)
        e = np.concatenate([e0, e1, e2, e3], axis=2).reshape(-1, 16, 16) - 32
        return (d[:, None, None] * sc[:, :, None] * e).reshape(-1)
    raise ValueError(f"type {name} not supported")


# ------------------------------------------------------------------------- forward

class Model:
    def __init__(self, path):
        g = Gguf(path)
        self.g = g
        arch = g.meta["general.architecture"]
        if arch not in ("llama", "qwen2"):
            raise ValueError(f"architecture {arch} not supported")
        m = g.meta
        self.arch = arch
        self.n_embd = int(m[f"{arch}.embedding_length"])
        self.n_layer = int(m[f"{arch}.block_count"])
        self.n_head = int(m[f"{arch}.attention.head_count"])
        self.n_head_kv = int(m.get(f"{arch}.attention.head_count_kv", self.n_head))
        self.head_dim = int(m.get(f"{arch}.attention.key_length", self.n_embd // self.n_head))
        self.eps = float(m.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5))
        self.rope_base = float(m.get(f"{arch}.rope.freq_base", 10000.0))
        self.rope_dim = int(m.get(f"{arch}.rope.dimension_count", self.head_dim))
        scale = 1.0
        if m.get(f"{arch}.rope.scaling.type") == "linear":
            scale = 1.0 / float(m[f"{arch}.rope.scaling.factor"])
        # Llama: pairs (2i, 2i+1) — the HF->GGUF conversion permutes Q/K rows for it.
        # Qwen2: pairs (i, i + d/2), as in the HF "rotate_half" formulation.
        self.neox = arch == "qwen2"
        inv = self.rope_base ** (-np.arange(0, self.rope_dim, 2, dtype=np.float64) / self.rope_dim)
        inv = inv * scale
        if g.has("rope_freqs.weight"):
            inv = inv / g.tensor("rope_freqs.weight")
        self.inv_freq = inv  # (rope_dim / 2)

    def w(self, name):
        return self.g.tensor(name)

    def rms_norm(self, x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * weight

    def rope(self, x, pos):
        """x: (n, heads, head_dim); rotates the first rope_dim dims of each head."""
        ang = pos[:, None].astype(np.float64) * self.inv_freq[None, :]  # (n, rope_dim/2)
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        y = x.copy()
        r = self.rope_dim
        if self.neox:
            a, b = x[..., : r // 2], x[..., r // 2: r]
            y[..., : r // 2] = a * cos - b * sin
            y[..., r // 2: r] = a * sin + b * cos
        else:
            a, b = x[..., 0:r:2], x[..., 1:r:2]
            y[..., 0:r:2] = a * cos - b * sin
            y[..., 1:r:2] = a * sin + b * cos
        return y

    def forward(self, tokens):
        """Logits (n_tokens, n_vocab), float64, for a sequence starting at position 0."""
        tokens = np.asarray(tokens, dtype=np.int64)
        n = len(tokens)
        pos = np.arange(n)
        emb = self.w("token_embd.weight")  # (n_vocab, n_embd)
        x = emb[tokens]  # (n, n_embd)
        hd, nh, nkv = self.head_dim, self.n_head, self.n_head_kv
        group = nh // nkv
        mask = np.triu(np.full((n, n), -np.inf), k=1)  # (n, n): j > i masked
        for l in range(self.n_layer):
            p = f"blk.{l}."
            h = self.rms_norm(x, self.w(p + "attn_norm.weight"))
            q = h @ self.w(p + "attn_q.weight").T  # (n, nh * hd)
            k = h @ self.w(p + "attn_k.weight").T  # (n, nkv * hd)
            v = h @ self.w(p + "attn_v.weight").T
            if self.g.has(p + "attn_q.bias"):
                q = q + self.w(p + "attn_q.bias")
                k = k + self.w(p + "attn_k.bias")
                v = v + self.w(p + "attn_v.bias")
            q = self.rope(q.reshape(n, nh, hd), pos)
            k = self.rope(k.reshape(n, nkv, hd), pos)
            v = v.reshape(n, nkv, hd)
            out = np.empty((n, nh, hd))
            for head in range(nh):
                kh = head // group  # query head -> its shared K/V head
                s = q[:, head, :] @ k[:, kh, :].T / np.sqrt(hd) + mask  # (n, n)
                s = np.exp(s - s.max(axis=1, keepdims=True))
                s /= s.sum(axis=1, keepdims=True)
                out[:, head, :] = s @ v[:, kh, :]
            x = x + out.reshape(n, nh * hd) @ self.w(p + "attn_output.weight").T
            h = self.rms_norm(x, self.w(p + "ffn_norm.weight"))
            gate = h @ self.w(p + "ffn_gate.weight").T  # (n, n_ff)
            up = h @ self.w(p + "ffn_up.weight").T
            x = x + (gate / (1.0 + np.exp(-gate)) * up) @ self.w(p + "ffn_down.weight").T
        h = self.rms_norm(x, self.w("output_norm.weight"))
        out_w = self.w("output.weight") if self.g.has("output.weight") else emb
        return h @ out_w.T  # (n, n_vocab)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids, or @FILE of whitespace-separated ids")
    ap.add_argument("--out", help="write logits as raw float32 (n_tokens, n_vocab)")
    ap.add_argument("--argmax", help="write the argmax id of every position, one per line")
    a = ap.parse_args()
    if a.tokens.startswith("@"):
        with open(a.tokens[1:]) as f:
            tokens = [int(t) for t in f.read().split()]
    else:
        tokens = [int(t) for t in a.tokens.split(",") if t.strip()]
    model = Model(a.model)
    logits = model.forward(tokens)
    if a.out:
        logits.astype("<f4").tofile(a.out)
    if a.argmax:
        with open(a.argmax, "w") as f:
            f.write("\n".join(str(int(i)) for i in logits.argmax(axis=1)) + "\n")
    print(f"{len(tokens)} tokens, vocab {logits.shape[1]}: logits std {logits.std():.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()

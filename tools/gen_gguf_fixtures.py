#!/usr/bin/env python3
"""Writes the GGUF test fixtures under tests/data/gguf/ with gguf-py, the independent oracle.

Regenerate with:  python3 tools/gen_gguf_fixtures.py   (needs `pip install gguf numpy`)

Files written (all small; deterministic for a given gguf-py and numpy):
  dequant_<TYPE>.gguf  for each of the 13 supported types:
      "weights"   [256, 2] of TYPE: random but valid bytes (quant bits uniform; f16 scale fields
                  finite: half drawn from every finite f16 bit pattern, subnormals, negatives and
                  huge values included, half of ordinary magnitude)
      "expected"  [256, 2] F32: gguf.quants.dequantize() of "weights"
    and, for the types gguf-py can quantize (F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0):
      "source"    [256, 2] F32: random values of varying magnitude
      "quantized" [256, 2] of TYPE: gguf.quants.quantize() of "source"
  metadata.gguf + metadata.json: one key of every metadata value type, arrays of strings, ints,
      an empty-string element and a nested array, general.alignment = 64, and two tensors; the
      JSON lists each key with its GGUF value type name and value.
  version2.gguf, version3.gguf: the same small file with header version 2 and 3. Versions 2
      and 3 share one little-endian layout (v3 added big-endian files), so version 2 is the v3
      file with its version field set to 2.
"""

import json
import struct
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "gguf"
ROWS, ROW_LEN = 2, 256

TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
         "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
# Byte offsets of the f16 scale fields inside one block (ggml-common.h).
F16_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
              "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}
QUANTIZABLE = {"F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"}


def finite_bits(rng, n, bits, exp_mask):
    """Random `bits`-wide float bit patterns whose exponent is not all ones (no inf/NaN)."""
    out = rng.integers(0, 1 << bits, size=n, dtype=np.uint64)
    bad = (out & exp_mask) == exp_mask
    while bad.any():
        out[bad] = rng.integers(0, 1 << bits, size=int(bad.sum()), dtype=np.uint64)
        bad = (out & exp_mask) == exp_mask
    return out


def random_weights(rng, name):
    n = ROWS * ROW_LEN
    if name == "F32":
        return finite_bits(rng, n, 32, 0x7F800000).astype(np.uint32).view(np.uint8)
    if name == "F16":
        return finite_bits(rng, n, 16, 0x7C00).astype(np.uint16).view(np.uint8)
    if name == "BF16":
        return finite_bits(rng, n, 16, 0x7F80).astype(np.uint16).view(np.uint8)
    qtype = T[name]
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = n // block_size
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for at in F16_FIELDS[name]:
        wild = finite_bits(rng, n_blocks, 16, 0x7C00).astype(np.uint16)
        tame = (rng.uniform(-0.05, 0.05, size=n_blocks)).astype(np.float16).view(np.uint16)
        field = np.where(np.arange(n_blocks) % 2 == 0, wild, tame).astype(np.uint16)
        blocks[:, at:at + 2] = field.view(np.uint8).reshape(n_blocks, 2)
    return blocks.reshape(-1)


def write_dequant_fixture(rng, name):
    qtype = T[name]
    raw = random_weights(rng, name)
    rows = raw.reshape(ROWS, -1)
    expected = gguf.quants.dequantize(rows, qtype).astype(np.float32)
    assert expected.shape == (ROWS, ROW_LEN) and np.isfinite(expected).all(), name
    w = gguf.GGUFWriter(OUT / f"dequant_{name}.gguf", arch="fixture")
    w.add_tensor("weights", rows, raw_dtype=qtype)
    w.add_tensor("expected", expected)
    if name in QUANTIZABLE:
        scale = np.repeat(rng.uniform(0.01, 3.0, size=(ROWS * ROW_LEN) // 32), 32)
        source = (rng.standard_normal(ROWS * ROW_LEN) * scale).astype(np.float32)
        source = source.reshape(ROWS, ROW_LEN)
        quantized = gguf.quants.quantize(source, qtype)
        w.add_tensor("source", source)
        w.add_tensor("quantized", quantized.view(np.uint8).reshape(ROWS, -1), raw_dtype=qtype)
    finish(w)


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# (key, GGUF value type name, value, gguf-py type, array element type)
METADATA = [
    ("test.u8", "U8", 200, V.UINT8, None),
    ("test.i8", "I8", -100, V.INT8, None),
    ("test.u16", "U16", 60000, V.UINT16, None),
    ("test.i16", "I16", -30000, V.INT16, None),
    ("test.u32", "U32", 4000000000, V.UINT32, None),
    ("test.i32", "I32", -2000000000, V.INT32, None),
    ("test.f32", "F32", -0.15625, V.FLOAT32, None),
    ("test.bool_true", "Bool", True, V.BOOL, None),
    ("test.bool_false", "Bool", False, V.BOOL, None),
    ("test.string", "String", "héllo wörld ✓ \"quoted\"\n", V.STRING, None),
    ("test.u64", "U64", 18446744073709551615, V.UINT64, None),
    ("test.i64", "I64", -9223372036854775808, V.INT64, None),
    ("test.f64", "F64", 3.141592653589793, V.FLOAT64, None),
    ("test.strings", "Array", ["<s>", "", "▁the", "ü"], V.ARRAY, V.STRING),
    ("test.i32s", "Array", [1, -2, 3], V.ARRAY, V.INT32),
    ("test.f32s", "Array", [0.5, -0.25], V.ARRAY, V.FLOAT32),
    ("test.nested", "Array", [[1, 2], [3]], V.ARRAY, V.ARRAY),
]


def write_metadata_fixture():
    w = gguf.GGUFWriter(OUT / "metadata.gguf", arch="fixture")
    w.add_custom_alignment(64)
    for key, _, value, vtype, sub in METADATA:
        w.add_key_value(key, value, vtype, sub_type=sub)
    w.add_tensor("a", np.arange(3, dtype=np.float32))
    w.add_tensor("b", np.arange(8, dtype=np.float16).reshape(2, 4))
    finish(w)
    listing = [{"key": "general.architecture", "type": "String", "value": "fixture"},
               {"key": "general.alignment", "type": "U32", "value": 64}]
    listing += [{"key": k, "type": t, "value": v} for k, t, v, _, _ in METADATA]
    (OUT / "metadata.json").write_text(json.dumps(listing, indent=1, ensure_ascii=False) + "\n")


def write_version_fixtures():
    w = gguf.GGUFWriter(OUT / "version3.gguf", arch="fixture")
    w.add_uint32("test.value", 7)
    w.add_tensor("t", np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32))
    finish(w)
    data = bytearray((OUT / "version3.gguf").read_bytes())
    assert struct.unpack_from("<I", data, 4)[0] == 3
    struct.pack_into("<I", data, 4, 2)
    (OUT / "version2.gguf").write_bytes(bytes(data))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261128)
    for name in TYPES:
        write_dequant_fixture(rng, name)
    write_metadata_fixture()
    write_version_fixtures()


if __name__ == "__main__":
    main()

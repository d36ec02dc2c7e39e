#!/usr/bin/env python3
"""Writes the ONNX graph of sentence-transformers/all-MiniLM-L6-v2 from its model.safetensors,
node by node with onnx.helper (no torch, no network): BERT, then mean pooling over the attention
mask and L2 normalisation, so the graph's output is the sentence embedding itself.

Inputs : input_ids int64 [B,S], attention_mask int64 [B,S]  (token_type_ids are all 0: folded in)
Output : sentence_embedding float32 [B,384], unit length
Usage  : python3 build_onnx.py MODEL_DIR OUT.onnx      (needs numpy, onnx, safetensors)

scripts/embedder.sh runs it once at install. The platform's tests check the graph's vectors
against tests/fixtures/embedder/reference.json, computed by reference.py (float64 numpy) beside
this file.
"""
import json, math, os, sys
import numpy as np
import onnx
from onnx import helper as h, TensorProto as T, numpy_helper as nh
from safetensors.numpy import load_file

if len(sys.argv) != 3:
    sys.exit("usage: build_onnx.py MODEL_DIR OUT.onnx")
MODEL, OUT = sys.argv[1], sys.argv[2]

cfg = json.load(open(os.path.join(MODEL, "config.json")))
W = {k[5:] if k.startswith("bert.") else k: v.astype(np.float32)
     for k, v in load_file(os.path.join(MODEL, "model.safetensors")).items()}
H, NH, L, EPS = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"], cfg["layer_norm_eps"]
HD = H // NH

nodes, inits = [], []
_n = [0]
def uid(p):
    _n[0] += 1
    return f"{p}_{_n[0]}"
def init(name, arr):
    inits.append(nh.from_array(np.asarray(arr), name)); return name
def node(op, ins, attrs=None, name=None):
    out = name or uid(op.lower())
    nodes.append(h.make_node(op, ins, [out], name=uid("n_" + op), **(attrs or {})))
    return out

c_half = init("c_half", np.array(0.5, np.float32))
c_one = init("c_one", np.array(1.0, np.float32))
c_rsqrt2 = init("c_rsqrt2", np.array(1 / math.sqrt(2), np.float32))
c_scale = init("c_scale", np.array(1 / math.sqrt(HD), np.float32))
c_neg = init("c_neg", np.array(-10000.0, np.float32))
c_tiny = init("c_tiny", np.array(1e-9, np.float32))
c_l2eps = init("c_l2eps", np.array(1e-12, np.float32))
shape_heads = init("shape_heads", np.array([0, 0, NH, HD], np.int64))
shape_hidden = init("shape_hidden", np.array([0, 0, H], np.int64))
ax1 = init("ax1", np.array([1], np.int64))
axm1 = init("axm1", np.array([-1], np.int64))
zero1 = init("zero1", np.array([0], np.int64))

def layer_norm(x, g, b):
    gi, bi = init(uid("ln_g"), W[g]), init(uid("ln_b"), W[b])
    return node("LayerNormalization", [x, gi, bi], {"axis": -1, "epsilon": EPS})

def linear(x, p):
    w = init(uid(p + ".wT"), np.ascontiguousarray(W[p + ".weight"].T))
    b = init(uid(p + ".b"), W[p + ".bias"])
    return node("Add", [node("MatMul", [x, w]), b])

# --- embeddings ---
word = node("Gather", [init("word_emb", W["embeddings.word_embeddings.weight"]), "input_ids"], {"axis": 0})
seq = node("Slice", [node("Shape", ["input_ids"]), ax1, init("two", np.array([2], np.int64))])
# token_type 0 row folded into the position table (identical arithmetic up to fp32 rounding)
pos_tab = W["embeddings.position_embeddings.weight"] + W["embeddings.token_type_embeddings.weight"][0]
pos = node("Slice", [init("pos_emb", pos_tab), zero1, seq, zero1])           # [S,H]
x = layer_norm(node("Add", [word, pos]), "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias")

# --- attention mask -> additive bias [B,1,1,S]
maskf = node("Cast", ["attention_mask"], {"to": T.FLOAT})
bias = node("Mul", [node("Sub", [c_one, maskf]), c_neg])
bias = node("Unsqueeze", [bias, init("ax12u", np.array([1, 2], np.int64))])

for l in range(L):
    p = f"encoder.layer.{l}."
    q = node("Transpose", [node("Reshape", [linear(x, p + "attention.self.query"), shape_heads])], {"perm": [0, 2, 1, 3]})
    k = node("Transpose", [node("Reshape", [linear(x, p + "attention.self.key"), shape_heads])], {"perm": [0, 2, 3, 1]})
    v = node("Transpose", [node("Reshape", [linear(x, p + "attention.self.value"), shape_heads])], {"perm": [0, 2, 1, 3]})
    s = node("Add", [node("Mul", [node("MatMul", [q, k]), c_scale]), bias])
    pr = node("Softmax", [s], {"axis": -1})
    ctx = node("Reshape", [node("Transpose", [node("MatMul", [pr, v])], {"perm": [0, 2, 1, 3]}), shape_hidden])
    a = linear(ctx, p + "attention.output.dense")
    x = layer_norm(node("Add", [a, x]), p + "attention.output.LayerNorm.weight", p + "attention.output.LayerNorm.bias")
    hdn = linear(x, p + "intermediate.dense")
    gelu = node("Mul", [node("Mul", [hdn, c_half]),
                        node("Add", [node("Erf", [node("Mul", [hdn, c_rsqrt2])]), c_one])])
    o = linear(gelu, p + "output.dense")
    x = layer_norm(node("Add", [o, x]), p + "output.LayerNorm.weight", p + "output.LayerNorm.bias")

# --- mean pooling + L2 normalise
m3 = node("Unsqueeze", [maskf, axm1])                                         # [B,S,1]
summed = node("ReduceSum", [node("Mul", [x, m3]), ax1], {"keepdims": 0})      # [B,H]
cnt = node("Max", [node("ReduceSum", [m3, ax1], {"keepdims": 0}), c_tiny])    # [B,1]
mean = node("Div", [summed, cnt])
nrm = node("Max", [node("Sqrt", [node("ReduceSum", [node("Mul", [mean, mean]), axm1], {"keepdims": 1})]), c_l2eps])
node("Div", [mean, nrm], name="sentence_embedding")

graph = h.make_graph(
    nodes, "all-MiniLM-L6-v2",
    [h.make_tensor_value_info("input_ids", T.INT64, ["batch", "seq"]),
     h.make_tensor_value_info("attention_mask", T.INT64, ["batch", "seq"])],
    [h.make_tensor_value_info("sentence_embedding", T.FLOAT, ["batch", H])],
    inits)
m = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], producer_name="avatar-platform/scripts/embedder/build_onnx.py")
m.ir_version = 8
onnx.checker.check_model(m)
onnx.save(m, OUT)
print(f"wrote {OUT} ({os.path.getsize(OUT)/1e6:.1f} MB, {len(nodes)} nodes)")

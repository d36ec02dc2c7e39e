#!/usr/bin/env python3
"""Plain-numpy forward pass of sentence-transformers/all-MiniLM-L6-v2 (reference vectors).

BERT: word+position+token_type embeddings -> LayerNorm -> 6 x (MHA, add&LN, FFN with erf-GELU, add&LN)
-> mean pooling over attention mask -> L2 normalise.  Tokenised with tokenizer.json, truncation 256
(sentence-transformers max_seq_length), no padding.  Computed in float64 for a clean reference.
Usage: PYTHONPATH=py python3 reference.py MODEL_DIR tests/fixtures/embedder/reference.json
(needs numpy, safetensors and tokenizers; the model as scripts/embedder.sh downloads it, before
its model.safetensors is removed)
"""
import json, math, sys, os
import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "model")
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "reference.json")
MAX_LEN = 256

def erf(x):
    # vectorised erf via math.erf (exact to double precision)
    return np.vectorize(math.erf, otypes=[np.float64])(x)

def load():
    w = {k: v.astype(np.float64) for k, v in load_file(os.path.join(MODEL, "model.safetensors")).items()}
    # some exports prefix keys with "bert." or not
    w = {k[5:] if k.startswith("bert.") else k: v for k, v in w.items()}
    cfg = json.load(open(os.path.join(MODEL, "config.json")))
    tok = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    tok.no_padding()  # tokenizer.json ships Fixed(128) padding
    tok.enable_truncation(MAX_LEN)  # ...and truncation at 128: sentence-transformers uses 256
    return w, cfg, tok

def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b

def lin(x, w, p):
    return x @ w[p + ".weight"].T + w[p + ".bias"]

def embed_one(w, cfg, ids):
    n = len(ids)
    H, nh, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"]
    hd = H // nh
    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][:n]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        q = lin(x, w, p + "attention.self.query").reshape(n, nh, hd).transpose(1, 0, 2)
        k = lin(x, w, p + "attention.self.key").reshape(n, nh, hd).transpose(1, 0, 2)
        v = lin(x, w, p + "attention.self.value").reshape(n, nh, hd).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(n, H)
        a = lin(ctx, w, p + "attention.output.dense")
        x = layer_norm(a + x, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
        h = lin(x, w, p + "intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
        o = lin(h, w, p + "output.dense")
        x = layer_norm(o + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    # mean pooling over attention mask (all ones: no padding, one sentence at a time)
    e = x.mean(0)
    return e / max(np.linalg.norm(e), 1e-12)

LONG = (" ".join([
    "The quarterly maintenance report covers pumps, valves, compressors and the cooling loop.",
    "Inspectors noted corrosion near flange 7B, a worn bearing on pump P-204, and intermittent",
    "pressure drops in the secondary circuit that correlate with night-time load shedding.",
    "Recommended actions include replacing gasket sets, recalibrating sensors PT-11 through PT-19,",
    "and scheduling a vibration analysis before the winter peak.",
]))

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "How do I reset my password?",
    "What is the refund policy for damaged items?",
    "Hi",
    "Der schnelle braune Fuchs springt über den faulen Hund. Café naïve résumé — ünïcödé ✓",
    None,  # long ~256 pieces (filled below)
    None,  # longer than 256 pieces -> truncated
]

def main():
    w, cfg, tok = load()
    # build the long text to be exactly 256 pieces incl. [CLS]/[SEP]
    words = (LONG + " ") * 10
    words = words.split()
    lo = []
    for wd in words:
        lo.append(wd)
        if len(tok.encode(" ".join(lo)).ids) >= MAX_LEN:
            break
    # back off until not truncated: exactly <= 256
    tok.no_truncation()
    while len(tok.encode(" ".join(lo)).ids) > MAX_LEN:
        lo.pop()
    SENTENCES[6] = " ".join(lo)
    SENTENCES[7] = " ".join(words * 2)  # ~ 700+ pieces
    untrunc = [len(tok.encode(s).ids) for s in SENTENCES]
    tok.enable_truncation(MAX_LEN)
    out = []
    for s, n0 in zip(SENTENCES, untrunc):
        ids = tok.encode(s).ids
        v = embed_one(w, cfg, ids)
        out.append({"text": s, "n_pieces": len(ids), "n_pieces_untruncated": n0, "ids": ids,
                    "embedding": [float(f) for f in v]})
        print(f"{len(ids):4d} pieces (untruncated {n0}): {s[:60]!r}")
    c = float(np.dot(out[0]["embedding"], out[1]["embedding"]))
    print(f"cos('A man is eating food.', 'A man is eating a piece of bread.') = {c:.4f}  (model card: 0.7553)")
    json.dump({"model": "all-MiniLM-L6-v2", "max_len": MAX_LEN, "cos_card_example": c, "items": out},
              open(OUT, "w"))
    print("wrote", OUT)

if __name__ == "__main__":
    main()

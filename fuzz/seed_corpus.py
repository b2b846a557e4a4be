#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ from tests/data (small files only) and a few
hand-made valid inputs. Run once; libFuzzer adds entries next to them (scripts/fuzz.sh)."""
import json, os, struct, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
data = os.path.join(root, "tests", "data")
out = os.path.join(root, "fuzz", "corpus")


def put(target, name, payload):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(payload if isinstance(payload, bytes) else payload.encode())


def read(*parts):
    with open(os.path.join(data, *parts), "rb") as f:
        return f.read()


def safetensors(tensors, metadata=None):
    header, blob = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + blob


put("safetensors", "small", safetensors({
    "a": ("F32", [2, 3], struct.pack("<6f", *range(6))),
    "b": ("F16", [2], b"\x00\x3c\x00\x40"),
    "c": ("I64", [1], struct.pack("<q", 7)),
    "e": ("BF16", [0], b""),
}, {"format": "pt"}))
put("safetensors", "empty-table", safetensors({}))

put("torch_pickle", "resid_delta_attn.relu.pt", read("sae", "resid_delta_attn.relu.pt"))
put("torch_pickle", "resid_delta_attn.topk8.pt", read("sae", "resid_delta_attn.topk8.pt"))

put("hf_config", "tiny-gpt2", read("tiny-gpt2", "config.json"))
put("hf_config", "small", json.dumps({"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 8, "n_positions": 16,
                                      "vocab_size": 300, "n_inner": None, "activation_function": "gelu_new",
                                      "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True}))

vocab = json.loads(read("gpt2-tokenizer", "vocab.json"))
small_vocab = {k: v for k, v in vocab.items() if v < 400}
put("tokenizer", "vocab", b"\x00" + json.dumps(small_vocab).encode())
put("tokenizer", "merges", b"\x01" + b"\n".join(read("gpt2-tokenizer", "merges.txt").split(b"\n")[:200]))
put("tokenizer", "tokenizer-json", b"\x02" + read("tokenizer_public.json"))
put("tokenizer", "text", b"\x03" + "When Mary and John went to the store, John gave a drink to<|endoftext|> café 日本 \U0001F600\n\t  12345".encode())
put("tokenizer", "text-invalid", b"\x03ab\xff\xc3(\xe2\x82 \x00z")


def sae_cfg(generation):
    if generation == "old":
        return {"hook_point": "blocks.1.hook_resid_pre", "hook_point_layer": 1, "hook_point_head_index": None,
                "d_in": 8, "d_sae": 16, "dtype": "float32", "activation_fn_str": "relu", "normalize_activations": False}
    if generation == "middle":
        return {"architecture": "standard", "hook_name": "blocks.0.hook_mlp_out", "hook_layer": 0, "hook_head_index": None,
                "d_in": 8, "d_sae": 16, "dtype": "float32", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 4},
                "apply_b_dec_to_input": True, "finetuning_scaling_factor": False, "normalize_activations": "none"}
    return {"architecture": "jumprelu", "d_in": 8, "d_sae": 16, "dtype": "float32", "apply_b_dec_to_input": False,
            "normalize_activations": "layer_norm",
            "meta": {"hook_name": "blocks.1.hook_attn_out", "hook_head_index": None, "sae_lens_version": "6.5.1"}}


for g in ("old", "middle", "new"):
    put("saelens", g, json.dumps(sae_cfg(g)))

put("session", "demo-walkthrough", open(os.path.join(root, "resources", "demo", "ioi-walkthrough.circuitscope.json"), "rb").read())
put("session", "v1", json.dumps({"schema": "circuitscope-session", "version": 1, "model": "../models/gpt2",
                                 "autoencoders": [{"role": "mlp", "spec": "1=saes/mlp1"}], "prompt": "When Mary and John",
                                 "objective": {"kind": "logit_diff", "targets": [" Mary"], "distractors": [" John"]},
                                 "ablations": ["mlp:1:5@3=0.5", "attn:0:1@*"], "trace": {"node": "attn:1:2@3,1", "through": "v",
                                 "downstream": "mlp:1:4@3", "downstream_through": None},
                                 "token_of_interest": 2, "selected_node": "mlp:0:3@2",
                                 "pins": [{"node": "mlp:0:3@2", "note": "note"}],
                                 "view": {"metric": "effect", "top_n": 20, "top_k": 10, "per_unit_write": True,
                                          "inspector_tab": "write"}}))

put("specs", "names", "\n".join([
    "mlp:1:2@-1", "mlp:0:5@3=0.25", "attn:0:2@-1", "attn:1:3@5,2=1e-3", "attn:0:2@*", "mlp_sae:1:9@*",
    "attn_sae:0:4@2", "resid_sae:1:7@0=-2", "emb@3", "attn:1:2@3,1 v mlp:1:4@3", "attn:1:2@3,1 v attn:1:0@3,2 k",
    "mlp:0:1@2 qk", "attn:0:0@1,0 q"]))
print("seed corpora written under", out)

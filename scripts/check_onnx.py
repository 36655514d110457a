#!/usr/bin/env python3
"""Independent check of a Glimpse model package with the reference ONNX tools.

1. onnx.checker.check_model(full_check=True) on every graph of the package.
2. onnxruntime runs vision -> embedding -> decoder (prefill, then three cached steps with the
   past passed explicitly) on the inputs recorded by `glimpse-export reference`, and the
   logits are compared with tract's: max abs diff <= 1e-3.
3. Greedy captioning in onnxruntime gives the same tokens as tract.
4. With matching heads: heads.onnx passes the checker, and onnxruntime's image and text
   embeddings (decoder state -> heads) equal tract's within 1e-4.

usage: check_onnx.py PACKAGE REFERENCE.json
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort

TOL = 1e-3


def main(pkg, ref_path):
    manifest = json.load(open(f"{pkg}/glimpse.json"))
    cfg = manifest["model"]
    eos = manifest["special_tokens"]["eos"]
    graphs = {}
    names = ["vision.onnx", "embedding.onnx", "decoder.onnx"]
    if manifest.get("matching"):
        names.append(manifest["matching"]["file"])
    for name in names:
        model = onnx.load(f"{pkg}/{name}")
        onnx.checker.check_model(model, full_check=True)
        print(f"{name}: onnx.checker full check passed (opset {model.opset_import[0].version})")
        graphs[name] = ort.InferenceSession(f"{pkg}/{name}", providers=["CPUExecutionProvider"])
    vision, embedding, decoder = (graphs[n] for n in ["vision.onnx", "embedding.onnx", "decoder.onnx"])
    decoder_outputs = [o.name for o in decoder.get_outputs()]
    layers, heads = cfg["n_layers"], cfg["n_heads"]
    hd = cfg["d_model"] // heads

    def embed(ids):
        return embedding.run(None, {"input_ids": np.array([ids], dtype=np.int64)})[0]

    def run_decoder(embeds, start, past):
        feed = {
            "inputs_embeds": embeds.astype(np.float32),
            "position_ids": np.arange(start, start + embeds.shape[1], dtype=np.int64)[None, :],
        }
        for i in range(layers):
            feed[f"past_key_values.{i}.key"] = past[2 * i]
            feed[f"past_key_values.{i}.value"] = past[2 * i + 1]
        out = dict(zip(decoder_outputs, decoder.run(None, feed)))
        presents = [out[f"present.{i}.{kv}"] for i in range(layers) for kv in ["key", "value"]]
        run_decoder.last_state = out.get("last_hidden_state")
        return out["logits"], presents

    worst = 0.0
    refs = json.load(open(ref_path))
    for r in refs:
        patches = np.array(r["patches"], dtype=np.float32).reshape(r["patches_shape"])
        image = vision.run(None, {"patches": patches})[0]
        prefix = np.concatenate([image, embed(r["text_ids"])], axis=1)
        assert prefix.shape[1] == r["prefill_len"], (prefix.shape, r["prefill_len"])
        empty = [np.zeros((1, heads, 0, hd), dtype=np.float32) for _ in range(2 * layers)]
        logits, past = run_decoder(prefix, 0, empty)
        diff = np.abs(logits[0, -1] - np.array(r["prefill_logits_last"])).max()
        worst = max(worst, diff)
        pos = prefix.shape[1]
        for tok, want in zip(r["steps"], r["step_logits"]):
            logits, past = run_decoder(embed([tok]), pos, past)
            pos += 1
            diff = np.abs(logits[0, -1] - np.array(want)).max()
            worst = max(worst, diff)
        # greedy caption with the explicit cache
        logits, past = run_decoder(prefix, 0, empty)
        pos, tokens = prefix.shape[1], []
        while len(tokens) < manifest["max_new_tokens"]:
            nxt = int(np.argmax(logits[0, -1]))
            if nxt == eos:
                break
            tokens.append(nxt)
            if len(tokens) == manifest["max_new_tokens"] or pos + 1 > cfg["max_positions"]:
                break
            logits, past = run_decoder(embed([nxt]), pos, past)
            pos += 1
        if tokens != r["greedy_caption_tokens"]:
            sys.exit(f"{r['image']}: onnxruntime greedy tokens {tokens} != tract {r['greedy_caption_tokens']}")
        print(f"{r['image']}: logits agree, same greedy caption ({len(tokens)} tokens)")
        if r.get("image_embedding") is not None:
            heads_graph = graphs[manifest["matching"]["file"]]
            run_decoder(image, 0, empty)
            state = run_decoder.last_state[:, -1, :]
            img = heads_graph.run(["image_embeds"], {"hidden_state": state})[0][0]
            ids = r["match_ids"]
            run_decoder(embed(ids), 0, empty)
            txt = heads_graph.run(["text_embeds"], {"hidden_state": run_decoder.last_state[:, -1, :]})[0][0]
            d = max(np.abs(img - np.array(r["image_embedding"])).max(),
                    np.abs(txt - np.array(r["text_embedding"])).max())
            if d > 1e-4:
                sys.exit(f"{r['image']}: embeddings differ from tract's by {d}")
            print(f"{r['image']}: image and text embeddings agree ({d:.1e})")
    print(f"max abs logit difference tract vs onnxruntime: {worst:.2e}")
    if worst > TOL:
        sys.exit(f"difference {worst} exceeds {TOL}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

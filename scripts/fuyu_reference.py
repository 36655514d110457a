"""Tiny random Fuyu checkpoints and transformers' outputs on them: the reference the
Fuyu import is tested against (tests/fuyu.rs).

Builds `FuyuForCausalLM` models from a `FuyuConfig` with random weights, as transformers'
own tests do (nothing is downloaded), saves each with `save_pretrained` next to a small
tokenizer and a preprocessor config, then runs `FuyuProcessor` and the model on a few
images and prompts and records:

- `patches-<case>.f32`: the processor's patches (little-endian f32, row-major),
- `reference.json`: per case the processor's token ids, the prefill's last-position
  logits, the logits of three cached decode steps fed the greedy tokens, and 20 greedy
  tokens (no end-of-sequence stop).

Run it through `scripts/fuyu-reference OUT` (it sets up the venv).
"""

import json
import os
import struct
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    FuyuConfig,
    FuyuForCausalLM,
    FuyuImageProcessor,
    FuyuProcessor,
    PreTrainedTokenizerFast,
)

CORPUS = [
    "Generate a coco-style caption.",
    "a red circle left of a blue square on a grey table",
    "What colour is the car? How many people are in the picture?",
    "a dog runs in the park; two cats sleep on a sofa near the window",
    "the quick brown fox jumps over the lazy dog 0123456789",
]

# special tokens, in id order after <unk>
SPECIALS = ["<unk>", "<s>", "|ENDOFTEXT|", "<0x04>"]
PLACEHOLDERS = ["|SPEAKER|", "|NEWLINE|"]


def tokenizer():
    """A SentencePiece-style unigram tokenizer (words prefixed with "▁", as Fuyu's is) whose
    pieces include Fuyu's image placeholders `|SPEAKER|` and `|NEWLINE|`: a text of
    placeholders then tokenizes as "▁" followed by them, the id FuyuProcessor drops."""
    words = sorted({w for line in CORPUS for w in line.split()})
    chars = sorted({c for line in CORPUS for c in line} - {" "}) + ["\n"]
    pieces = [(t, 0.0) for t in SPECIALS]
    pieces += [("▁", -2.0)] + [(t, -1.0) for t in PLACEHOLDERS]
    pieces += [(c, -5.0) for c in chars]
    pieces += [("▁" + w, -1.0) for w in words] + [(w, -1.5) for w in words]
    seen, vocab = set(), []
    for p, s in pieces:
        if p not in seen:
            seen.add(p)
            vocab.append((p, s))
    tok = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIALS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="|ENDOFTEXT|",
        unk_token="<unk>",
        pad_token="|ENDOFTEXT|",
    )


MODELS = {
    # several patch rows, non-square images, the published checkpoints' weight names, one file
    "tiny-a": dict(
        text=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37),
        size=dict(height=90, width=150),
        layout="legacy",
        shard=None,
        dtype=torch.float32,
    ),
    # an odd head count (3 heads of 12), current weight names, sharded
    "tiny-b": dict(
        text=dict(hidden_size=36, num_hidden_layers=3, num_attention_heads=3, intermediate_size=50),
        size=dict(height=120, width=120),
        layout="current",
        shard="40KB",
        dtype=torch.float32,
    ),
    # tiny-a's shape saved in bfloat16, as the published checkpoints are, current names
    "tiny-bf16": dict(
        text=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37),
        size=dict(height=90, width=150),
        layout="current",
        shard=None,
        dtype=torch.bfloat16,
    ),
}

CASES = [
    # (image file, width, height, prompt)
    ("wide", 100, 70, "Generate a coco-style caption.\n"),
    ("big", 400, 200, "What colour is the car?\n"),
    ("small", 45, 29, "How many people are in the picture?\n"),
]

STEPS = 3
GREEDY = 20


def image(w, h, seed):
    rng = np.random.default_rng(seed)
    # smooth shapes plus noise: something resizing has to average
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack(
        [
            128 + 100 * np.sin(x / 7.0 + seed),
            128 + 100 * np.cos(y / 5.0),
            (x * 3 + y * 5) % 256,
        ],
        axis=-1,
    )
    noise = rng.integers(-3, 4, size=(h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def rename(name):
    """A weight name as transformers 5 saves it (`language_model.model.*`,
    `vision_embed_tokens.*`, `language_model.lm_head.*`, the published checkpoints' layout)
    in the layout its model classes use (`model.language_model.*`, `model.vision_embed_tokens.*`,
    `lm_head.*`)."""
    if name.startswith("language_model.model."):
        return "model.language_model." + name[len("language_model.model.") :]
    if name.startswith("vision_embed_tokens."):
        return "model." + name
    if name.startswith("language_model.lm_head."):
        return name[len("language_model.") :]
    return name


def current_names(dir):
    """Rewrites a saved checkpoint (every shard and the index) with `rename`d weights."""
    index = os.path.join(dir, "model.safetensors.index.json")
    files = [f for f in os.listdir(dir) if f.endswith(".safetensors")]
    for f in files:
        path = os.path.join(dir, f)
        state = load_file(path)
        save_file({rename(k): v.contiguous() for k, v in state.items()}, path, metadata={"format": "pt"})
    if os.path.exists(index):
        with open(index) as f:
            idx = json.load(f)
        idx["weight_map"] = {rename(k): v for k, v in idx["weight_map"].items()}
        with open(index, "w") as f:
            json.dump(idx, f, indent=2)


def build(name, spec, out):
    torch.manual_seed(len(name) * 7919 + sum(map(ord, name)))
    tok = tokenizer()
    vocab = len(tok)
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIALS + PLACEHOLDERS}
    config = FuyuConfig(
        vocab_size=vocab,
        max_position_embeddings=256,
        layer_norm_eps=1e-5,
        rope_theta=25000.0,
        partial_rotary_factor=0.5,
        qk_layernorm=True,
        hidden_act="relu2",
        patch_size=30,
        num_channels=3,
        image_token_id=ids["|SPEAKER|"],
        bos_token_id=ids["<s>"],
        eos_token_id=ids["|ENDOFTEXT|"],
        pad_token_id=ids["|ENDOFTEXT|"],
        **spec["text"],
    )
    config.text_config.eos_token_id = ids["|ENDOFTEXT|"]
    config.text_config.bos_token_id = ids["<s>"]
    config.text_config.pad_token_id = ids["|ENDOFTEXT|"]
    model = FuyuForCausalLM(config).eval()
    # random init leaves the norms at 1/0: perturb every parameter so each one matters
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    dir = os.path.join(out, name)
    os.makedirs(dir, exist_ok=True)
    model = model.to(spec["dtype"])
    kw = {"max_shard_size": spec["shard"]} if spec["shard"] else {}
    model.save_pretrained(dir, **kw)
    if spec["layout"] == "current":
        current_names(dir)
    # the reference computes in f32 from the saved (possibly bf16-rounded) weights
    model = model.to(torch.float32)
    image_processor = FuyuImageProcessor(size=spec["size"], patch_size=dict(height=30, width=30))
    processor = FuyuProcessor(image_processor=image_processor, tokenizer=tok)
    processor.save_pretrained(dir)
    cases = []
    for case, w, h, prompt in CASES:
        img = image(w, h, len(cases))
        img.save(os.path.join(dir, f"{case}.png"))
        cases.append(run_case(model, processor, dir, case, img, prompt))
    with open(os.path.join(dir, "reference.json"), "w") as f:
        json.dump({"model": name, "vocab_size": vocab, "special": ids, "cases": cases}, f)
    print(f"{name}: vocab {vocab}, {sum(p.numel() for p in model.parameters())} parameters")


@torch.no_grad()
def run_case(model, processor, dir, case, img, prompt):
    inputs = processor(images=img, text=prompt, return_tensors="pt")
    ids = inputs["input_ids"]
    patches = inputs.get("image_patches", inputs.get("pixel_values"))
    if isinstance(patches, list):
        patches = patches[0]
    patches = torch.as_tensor(patches).reshape(-1, 3 * 30 * 30).float()
    with open(os.path.join(dir, f"patches-{case}.f32"), "wb") as f:
        f.write(np.ascontiguousarray(patches.numpy(), dtype="<f4").tobytes())
    out = model(input_ids=ids, pixel_values=patches.unsqueeze(0), use_cache=True)
    cache = out.past_key_values if getattr(out, "past_key_values", None) is not None else out.cache
    prefill = out.logits[0, -1].tolist()
    tokens = []
    steps = []
    logits = out.logits[0, -1]
    pos = ids.shape[1]
    for i in range(GREEDY):
        t = int(torch.argmax(logits))
        tokens.append(t)
        if i == GREEDY - 1:
            break
        o = model(
            input_ids=torch.tensor([[t]]),
            position_ids=torch.tensor([[pos]]),
            past_key_values=cache,
            use_cache=True,
        )
        cache = o.past_key_values if getattr(o, "past_key_values", None) is not None else o.cache
        pos += 1
        logits = o.logits[0, -1]
        if len(steps) < STEPS:
            steps.append(logits.tolist())
    return {
        "case": case,
        "image": f"{case}.png",
        "prompt": prompt,
        "input_ids": ids[0].tolist(),
        "patches": list(patches.shape),
        "prefill_logits": prefill,
        "step_logits": steps,
        "greedy": tokens,
        "text": processor.tokenizer.decode(tokens, skip_special_tokens=True),
    }


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: fuyu_reference.py OUT")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, spec in MODELS.items():
        build(name, spec, out)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Rewrites a package's decoders with each ONNX `Attention` node spelled out as the graph
wrote it before that node: present = Concat(past, new), then MatMul(q, present_kᵀ), a
scale, the causal bias, Softmax and MatMul with present_v. The weights (external data
included) are shared with the original package, so the two packages differ only in how
attention is written: an A/B of the fused, in-place cache against the concatenating one.

    scripts/decompose_attention.py PACKAGE OUT

OUT gets the decoders rewritten (the manifest's sizes and checksums follow) and every
other file of PACKAGE hard-linked (copied across file systems).
"""
import argparse
import hashlib
import json
import os
import shutil
import sys

import onnx
from onnx import helper


def decompose(model):
    g = model.graph
    nodes = []
    for n in g.node:
        if n.op_type != "Attention":
            nodes.append(n)
            continue
        q, k, v, mask, past_k, past_v = n.input
        y, present_k, present_v = n.output[:3]
        scale = next((a.f for a in n.attribute if a.name == "scale"), None)
        if scale is None:
            sys.exit(f"{n.name}: an Attention node without a scale attribute")
        p = n.name
        scale_name = f"{p}/scale"
        g.initializer.append(helper.make_tensor(scale_name, onnx.TensorProto.FLOAT, [], [scale]))
        nodes += [
            helper.make_node("Concat", [past_k, k], [present_k], name=present_k, axis=2),
            helper.make_node("Concat", [past_v, v], [present_v], name=present_v, axis=2),
            helper.make_node("Transpose", [present_k], [f"{p}/k_t"], perm=[0, 1, 3, 2]),
            helper.make_node("MatMul", [q, f"{p}/k_t"], [f"{p}/scores"]),
            helper.make_node("Mul", [f"{p}/scores", scale_name], [f"{p}/scaled"]),
            helper.make_node("Add", [f"{p}/scaled", mask], [f"{p}/masked"]),
            helper.make_node("Softmax", [f"{p}/masked"], [f"{p}/attn"], axis=-1),
            helper.make_node("MatMul", [f"{p}/attn", present_v], [y]),
        ]
    del g.node[:]
    g.node.extend(nodes)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("package")
    ap.add_argument("out")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.package, "glimpse.json")) as f:
        manifest = json.load(f)
    for f in sorted(os.listdir(a.package)):
        src = os.path.abspath(os.path.join(a.package, f))
        dst = os.path.join(a.out, f)
        if f.startswith("decoder") and f.endswith(".onnx"):
            m = onnx.load(src, load_external_data=False)
            decompose(m)
            onnx.save(m, dst)
            data = open(dst, "rb").read()
            entry = manifest.get("files", {}).get(f)
            if entry is not None:
                entry["sha256"] = hashlib.sha256(data).hexdigest()
                entry["bytes"] = len(data)
        elif f != "glimpse.json" and not os.path.lexists(dst):
            # a hard link: the runtime refuses external data that leads outside the folder
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy(src, dst)
    with open(os.path.join(a.out, "glimpse.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"wrote {a.out}: decoders with their Attention nodes spelled out")


if __name__ == "__main__":
    main()

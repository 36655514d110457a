#!/usr/bin/env python3
"""Glimpse (tract) against onnxruntime on the same model package, in one run.

For each precision, `glimpse bench --json` measures our figures on a 640x480 frame and
saves that frame; `glimpse-export reference` turns it into the patches and prompt ids both
runtimes start from; then onnxruntime runs the package's own ONNX graphs (vision ->
embedding -> decoder with the past passed explicitly), one thread like tract, and the same
figures are taken. Prints a Markdown report with our/their ratios; --write FILE replaces
the part of FILE between `<!-- perf:begin -->` and `<!-- perf:end -->` with it.

usage: perf_report.py --glimpse BIN --export BIN [--package DIR] [--runs N]
                      [--precisions f32,f16,int8,q4] [--instructions FILE] [--limits FILE]
                      [--write README.md]
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

BEGIN, END = "<!-- perf:begin -->", "<!-- perf:end -->"

# The targets for the bundled model on the development machine.
TTFT_MS, RSS_MB, LOAD_MS = 50.0, 64.0, 200.0


def median(xs):
    return statistics.median(xs)


def p95(xs):
    s = sorted(xs)
    return s[min(len(s) - 1, round((len(s) - 1) * 0.95))]


def ours(glimpse, package, precision, runs, frame):
    out = subprocess.run(
        [glimpse, "--model", package, "--precision", precision, "--json", "bench",
         "--runs", str(runs), "--save-frame", frame],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def graph_file(name, precision):
    return name if precision == "f32" else name.replace(".onnx", f".{precision}.onnx")


class Ort:
    """The package's graphs in onnxruntime, one thread, full graph optimisation."""

    def __init__(self, ort, package, precision):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL

        def session(name):
            path = os.path.join(package, graph_file(name, precision))
            return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])

        self.vision = session("vision.onnx")
        self.embedding = session("embedding.onnx")
        self.decoder = session("decoder.onnx")
        self.outputs = [o.name for o in self.decoder.get_outputs()]
        m = json.load(open(os.path.join(package, "glimpse.json")))
        cfg = m["model"]
        self.layers, self.heads = cfg["n_layers"], cfg["n_heads"]
        self.hd = cfg["d_model"] // cfg["n_heads"]
        self.eos = m["special_tokens"]["eos"]
        self.max_new = m["max_new_tokens"]
        self.max_positions = cfg["max_positions"]

    def empty(self):
        return [np.zeros((1, self.heads, 0, self.hd), dtype=np.float32)
                for _ in range(2 * self.layers)]

    def embed(self, ids):
        return self.embedding.run(None, {"input_ids": np.array([ids], dtype=np.int64)})[0]

    def decode(self, embeds, start, past):
        feed = {"inputs_embeds": embeds,
                "position_ids": np.arange(start, start + embeds.shape[1], dtype=np.int64)[None]}
        for i in range(self.layers):
            feed[f"past_key_values.{i}.key"] = past[2 * i]
            feed[f"past_key_values.{i}.value"] = past[2 * i + 1]
        out = dict(zip(self.outputs, self.decoder.run(None, feed)))
        present = [out[f"present.{i}.{kv}"] for i in range(self.layers) for kv in ("key", "value")]
        return out["logits"], present


def theirs(package, precision, runs, patches, text_ids):
    import onnxruntime as ort

    loads = []
    for _ in range(3):
        t = time.perf_counter()
        m = Ort(ort, package, precision)
        loads.append((time.perf_counter() - t) * 1e3)
    first, cached, uncached, caption = [], [], [], []
    tokens = 0
    text = m.embed(text_ids)  # as in `glimpse bench`: the prompt's embeddings are ready
    for _ in range(runs):
        t = time.perf_counter()
        image = m.vision.run(None, {"patches": patches})[0]
        prefix = np.concatenate([image, text], axis=1)
        logits, past = m.decode(prefix, 0, m.empty())
        nxt = int(np.argmax(logits[0, -1]))
        first.append((time.perf_counter() - t) * 1e3)
        seq = prefix
        for _ in range(8):
            if seq.shape[1] + 1 > m.max_positions:
                break
            e = m.embed([nxt])
            t = time.perf_counter()
            logits, past = m.decode(e, seq.shape[1], past)
            cached.append((time.perf_counter() - t) * 1e3)
            seq = np.concatenate([seq, e], axis=1)
            t = time.perf_counter()
            m.decode(seq, 0, m.empty())
            uncached.append((time.perf_counter() - t) * 1e3)
            nxt = int(np.argmax(logits[0, -1]))
        # the whole caption from patches, greedy with the cache
        t = time.perf_counter()
        image = m.vision.run(None, {"patches": patches})[0]
        prefix = np.concatenate([image, m.embed(text_ids)], axis=1)
        logits, past = m.decode(prefix, 0, m.empty())
        pos, out = prefix.shape[1], []
        while len(out) < m.max_new:
            nxt = int(np.argmax(logits[0, -1]))
            if nxt == m.eos:
                break
            out.append(nxt)
            if len(out) == m.max_new or pos + 1 > m.max_positions:
                break
            logits, past = m.decode(m.embed([nxt]), pos, past)
            pos += 1
        caption.append((time.perf_counter() - t) * 1e3)
        tokens = len(out)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    stat = lambda xs: {"median_ms": median(xs), "p95_ms": p95(xs), "runs": len(xs)}
    return {
        "load": stat(loads),
        "first_token_from_patches": stat(first),
        "decode_token_cached": stat(cached),
        "decode_token_uncached": stat(uncached),
        "caption_from_patches": stat(caption),
        "caption_tokens": tokens,
        "peak_rss_mb": rss_mb,
    }


def table(precision, us, them):
    rows = [
        ("load package", "load"),
        ("time to first token (from patches)", "first_token_from_patches"),
        ("decode / token, KV cache", "decode_token_cached"),
        ("decode / token, no cache", "decode_token_uncached"),
        (f"caption, {us['caption_tokens']} tokens (from patches)", "caption_from_patches"),
    ]
    lines = [f"**{precision}**", "",
             "| figure | Glimpse (tract), median ms | onnxruntime, median ms | ratio |",
             "|---|---:|---:|---:|"]
    for label, key in rows:
        a, b = us[key]["median_ms"], them[key]["median_ms"]
        lines.append(f"| {label} | {a:.3f} | {b:.3f} | {a / b:.2f} |")
    lines.append(f"| peak resident memory, MB | {us['peak_rss_mb']:.1f} | "
                 f"{them['peak_rss_mb']:.1f} | {us['peak_rss_mb'] / them['peak_rss_mb']:.2f} |")
    return lines


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--glimpse", required=True)
    ap.add_argument("--export", required=True)
    ap.add_argument("--package", default="models/glimpse-default")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--precisions", default="f32,f16,int8,q4")
    ap.add_argument("--instructions", help="output of targets/qemu/instructions.sh to include")
    ap.add_argument("--limits", help="JSON of `cargo bench --bench limits -- --json`")
    ap.add_argument("--write", help="Markdown file whose perf section to replace")
    a = ap.parse_args()
    import onnxruntime as ort

    tmp = tempfile.mkdtemp()
    frame = os.path.join(tmp, "frame.png")
    report = [BEGIN, "",
              f"Measured by `scripts/perf` on {cpu_name()} ({os.cpu_count()} cores), "
              f"onnxruntime {ort.__version__}, one thread each, a 640x480 frame, "
              f"medians of {a.runs} runs (8 decode steps each for the per-token figures). "
              "Both start from the same patches and prompt ids; our preprocessing is "
              "listed on its own. onnxruntime's memory is its Python process's "
              "(interpreter and numpy included).", ""]
    if a.limits:
        lim = json.load(open(a.limits))
        report += [f"What this machine allows (`cargo bench --bench limits`, {lim['simd_lanes']} "
                   "f32 lanes per multiply-add): a decode step reads every weight once, a "
                   "prefill is arithmetic.", "",
                   "| threads | read GB/s | multiply-add GFLOP/s |", "|---:|---:|---:|"]
        report += [f"| {r['threads']} | {r['read_gb_s']:.2f} | {r['fma_gflop_s']:.1f} |"
                   for r in lim["limits"]]
        report += [""]
    summary, tables = [], []
    for precision in a.precisions.split(","):
        us = ours(a.glimpse, a.package, precision, a.runs, frame)
        ref = os.path.join(tmp, "ref.json")
        subprocess.run([a.export, "reference", a.package, frame, "--out", ref],
                       check=True, capture_output=True)
        r = json.load(open(ref))[0]
        patches = np.array(r["patches"], dtype=np.float32).reshape(r["patches_shape"])
        try:
            them = theirs(a.package, precision, a.runs, patches, r["text_ids"])
        except Exception as e:  # an operator onnxruntime lacks at this precision
            tables += [f"**{precision}**: onnxruntime could not run it ({e}).", ""]
            continue
        tables += table(precision, us, them) + [""]
        if precision == "f32":
            summary = [
                "Ours alone (f32, from the frame): preprocessing "
                f"{us['preprocess']['median_ms']:.2f} ms, YUYV→RGB {us['yuyv_to_rgb']['median_ms']:.2f} ms, "
                f"MJPEG decode {us['mjpeg_decode']['median_ms']:.2f} ms, time to first token "
                f"{us['first_token']['median_ms']:.2f} ms (p95 {us['first_token']['p95_ms']:.2f}), "
                f"a follow-up question {us['follow_up_first_token']['median_ms']:.2f} ms, caption "
                f"{us['caption']['median_ms']:.2f} ms.", "",
                "| target | goal | measured (f32) | |", "|---|---|---:|---|",
            ]
            ratio = us["decode_token_cached"]["median_ms"] / them["decode_token_cached"]["median_ms"]
            checks = [
                ("decode / token vs onnxruntime", "ratio ≤ 1.0", f"{ratio:.2f}", ratio <= 1.0),
                ("time to first token, 640x480", f"≤ {TTFT_MS:.0f} ms",
                 f"{us['first_token']['median_ms']:.1f} ms", us["first_token"]["median_ms"] <= TTFT_MS),
                ("peak resident memory", f"≤ {RSS_MB:.0f} MB", f"{us['peak_rss_mb']:.1f} MB",
                 us["peak_rss_mb"] <= RSS_MB),
                ("load", f"≤ {LOAD_MS:.0f} ms", f"{us['load']['median_ms']:.0f} ms",
                 us["load"]["median_ms"] <= LOAD_MS),
            ]
            summary += [f"| {n} | {g} | {m} | {'met' if ok else 'missed'} |" for n, g, m, ok in checks]
            summary.append("")
    report += summary + tables
    if a.instructions:
        report += ["Guest instructions under qemu-user (`targets/qemu/instructions.sh`), the "
                   "ARM proxy (wall-clock time under emulation means nothing):", "", "```"]
        report += open(a.instructions).read().rstrip().splitlines()
        report += ["```", ""]
    report.append(END)
    text = "\n".join(report) + "\n"
    print(text)
    if a.write:
        doc = open(a.write).read()
        if BEGIN not in doc or END not in doc:
            sys.exit(f"{a.write} has no {BEGIN} ... {END} section")
        head, rest = doc.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        open(a.write, "w").write(head + text.rstrip("\n") + tail)
        print(f"wrote the performance section of {a.write}", file=sys.stderr)


if __name__ == "__main__":
    main()

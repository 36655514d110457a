#!/usr/bin/env python3
"""Glimpse (tract) beside onnxruntime on large imported packages, one process each.

For each package: `glimpse bench --light STEPS` (one load, one time to first token on the
frame with the captioning prompt, STEPS cached decode steps, three more prefills from
the same patches once the first has run, peak memory) saves the
patches and prompt ids it fed; then onnxruntime runs the package's own graphs on the same
inputs, on as many threads (intra-op) as Glimpse's matrix products get, in a fresh Python
process so its memory is its own. Prints a Markdown table.

usage: perf_scale.py --glimpse BIN --frame PNG [--steps N] [--max-image WxH] [--profile]
                     [--threads N] PKG [PKG ...]
(PKG may be DIR:PRECISION). `--table-from LOG` prints the table again from the JSON lines
a run wrote on stderr. With --profile, Glimpse also runs the prefill and the steps
once more under its operator profiler, onnxruntime runs the prefill and one step once more
under its own, and each decoder's largest operators are listed under the table.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# prefills after the first, as `glimpse bench --light` runs them: the table's warm prefill
# is their median, for both runtimes
PREFILL_RUNS = 3


def session_options(threads):
    """onnxruntime on `threads` intra-op threads (Glimpse's --threads), every graph
    optimisation on."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


def decoder_step(session, outputs, layers, embeds, start, past):
    """One run of an onnxruntime decoder session: its logits and the grown cache."""
    import numpy as np

    feed = {"inputs_embeds": embeds,
            "position_ids": np.arange(start, start + embeds.shape[1], dtype=np.int64)[None]}
    for i in range(layers):
        feed[f"past_key_values.{i}.key"] = past[2 * i]
        feed[f"past_key_values.{i}.value"] = past[2 * i + 1]
    out = dict(zip(outputs, session.run(None, feed)))
    return out["logits"], [out[f"present.{i}.{kv}"] for i in range(layers)
                            for kv in ("key", "value")]


def ort_run(package, precision, inputs, steps, threads, profile=False):
    """Runs in a child process: load, first token, decode steps; returns the figures (with
    `profile`, also onnxruntime's own operator profile of the prefill and a decode step)."""
    import numpy as np
    import onnxruntime as ort

    def graph(name):
        f = name if precision == "f32" else name.replace(".onnx", f".{precision}.onnx")
        return os.path.join(package, f)

    opts = session_options(threads)
    t = time.perf_counter()
    s = {n: ort.InferenceSession(graph(n), opts, providers=["CPUExecutionProvider"])
         for n in ("vision.onnx", "embedding.onnx", "decoder.onnx")}
    load_ms = (time.perf_counter() - t) * 1e3
    load_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    m = json.load(open(os.path.join(package, "glimpse.json")))["model"]
    layers, heads, hd = m["n_layers"], m["n_heads"], m["d_model"] // m["n_heads"]
    outputs = [o.name for o in s["decoder.onnx"].get_outputs()]

    def embed(ids):
        return s["embedding.onnx"].run(None, {"input_ids": np.array([ids], dtype=np.int64)})[0]

    def decode(embeds, start, past):
        return decoder_step(s["decoder.onnx"], outputs, layers, embeds, start, past)

    patches = np.array(inputs["patches"], dtype=np.float32).reshape(inputs["patches_shape"])

    def first_token():
        """Vision on the patches, the prefill of image and prompt from an empty cache, the
        first token: the prefix, that token and the cache."""
        image = s["vision.onnx"].run(None, {"patches": patches})[0]
        prefix = np.concatenate([image, embed(inputs["text_ids"])], axis=1)
        empty = [np.zeros((1, heads, 0, hd), dtype=np.float32) for _ in range(2 * layers)]
        logits, past = decode(prefix, 0, empty)
        return prefix, int(np.argmax(logits[0, -1])), past

    t = time.perf_counter()
    prefix, nxt, past = first_token()
    first_ms = (time.perf_counter() - t) * 1e3
    pos, step_ms = prefix.shape[1], []
    for _ in range(steps):
        e = embed([nxt])
        t = time.perf_counter()
        logits, past = decode(e, pos, past)
        step_ms.append((time.perf_counter() - t) * 1e3)
        pos += 1
        nxt = int(np.argmax(logits[0, -1]))
    prefill_ms = []
    for _ in range(PREFILL_RUNS):
        t = time.perf_counter()
        first_token()
        prefill_ms.append((time.perf_counter() - t) * 1e3)
    figures = {
        "load_ms": load_ms,
        "load_rss_mb": load_rss,
        "first_token_ms": first_ms,
        "prefill_ms": statistics.median(prefill_ms),
        "decode_ms": statistics.median(step_ms),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "rss_mb": rss_now_mb(),
    }
    if profile:
        del s["decoder.onnx"]
        figures.update(ort_profile(graph("decoder.onnx"), threads, (layers, heads, hd), prefix,
                                   embed, nxt))
    return figures


def ort_profile(decoder, threads, shape, prefix, embed, nxt):
    """onnxruntime's profiler on a fresh decoder session: the prefill once and one decode
    step, as Glimpse's --profile runs them; time by operator type, largest first."""
    import numpy as np
    import onnxruntime as ort

    opts = session_options(threads)
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    session = ort.InferenceSession(decoder, opts, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    layers, heads, hd = shape

    empty = [np.zeros((1, heads, 0, hd), dtype=np.float32) for _ in range(2 * layers)]
    _, past = decoder_step(session, outputs, layers, prefix, 0, empty)
    decoder_step(session, outputs, layers, embed([nxt]), prefix.shape[1], past)
    trace = session.end_profiling()
    events = json.load(open(trace))
    os.remove(trace)
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    result = {}
    for (start, end), key in zip(runs, ("ort_prefill_ops", "ort_decode_ops")):
        by_op = {}
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") \
                    and start <= e["ts"] <= end:
                op = e.get("args", {}).get("op_name", "?")
                ms, calls = by_op.get(op, (0.0, 0))
                by_op[op] = (ms + e["dur"] / 1e3, calls + 1)
        total = sum(ms for ms, _ in by_op.values()) or 1.0
        result[key] = [{"op": op, "ms": ms, "calls": calls, "share": ms / total}
                       for op, (ms, calls) in sorted(by_op.items(), key=lambda kv: -kv[1][0])]
    return result


def rss_now_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--glimpse")
    ap.add_argument("--frame")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--max-image")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for both runtimes: glimpse --threads, onnxruntime's intra-op threads")
    ap.add_argument("--table-from", metavar="LOG",
                    help="print the table again from the JSON lines an earlier run wrote on stderr")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("packages", nargs="*")
    a = ap.parse_args()
    if a.child:
        package, precision, inputs = a.child.split("|")
        print(json.dumps(ort_run(package, precision, json.load(open(inputs)), a.steps, a.threads,
                                 a.profile)))
        return
    if a.table_from:
        rows = [(r["package"], r["glimpse"], r["onnxruntime"])
                for r in map(json.loads, open(a.table_from)) if "package" in r]
        print_table(rows, rows[0][1].get("threads", 1) if rows else 1)
        return
    if not (a.glimpse and a.frame):
        ap.error("--glimpse and --frame are required to measure")
    rows = []
    for spec in a.packages:
        package, _, precision = spec.partition(":")
        tmp = tempfile.mkdtemp()
        inputs = os.path.join(tmp, "inputs.json")
        cmd = [a.glimpse, "--model", package, "bench", a.frame, "--light", str(a.steps),
               "--save-inputs", inputs]
        if precision:
            cmd[3:3] = ["--precision", precision]
        if a.max_image:
            cmd[3:3] = ["--max-image", a.max_image]
        if a.profile:
            cmd.append("--profile")
        cmd[3:3] = ["--threads", str(a.threads)]
        ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        precision = ours["precision"]
        child = subprocess.run(
            [sys.executable, __file__, "--glimpse", a.glimpse, "--frame", a.frame,
             "--steps", str(a.steps), "--threads", str(a.threads),
             "--child", f"{package}|{precision}|{inputs}"] + (["--profile"] if a.profile else []),
            capture_output=True, text=True)
        theirs = json.loads(child.stdout) if child.returncode == 0 else None
        if theirs is None:
            print(f"onnxruntime could not run {package} at {precision}: "
                  f"{child.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        rows.append((package, ours, theirs))
        print(json.dumps({"package": package, "glimpse": ours, "onnxruntime": theirs}),
              file=sys.stderr)
    print_table(rows, a.threads)


def print_table(rows, threads):
    """The Markdown table, then each package's largest decoder operators."""
    gb = lambda b: b / 1e9
    # the median of the warm prefills (logs of runs before them have none)
    warm = lambda o: f"{o['prefill']['median_ms'] / 1e3:.3f}" if "prefill" in o else "-"
    print(f"{threads} thread(s) each\n")
    print("| package | precision | weights GB | image tokens | load s (ours / ort) | "
          "peak RSS GB (ours / ort) | RSS after GB (ours / ort) | peak ÷ weights (ours) | "
          "first token s (ours / ort) | prefill s, warm (ours / ort) | "
          "decode tokens/s (ours / ort) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for package, o, t in rows:
        w = o["weight_bytes"]
        rss = (o["peak_rss_mb"] or 0) * 1024 * 1024
        tt = lambda k, f=1e-3, d=1: f"{t[k] * f:.{d}f}" if t else "-"
        print(f"| {os.path.basename(package.rstrip('/'))} | {o['precision']} | {gb(w):.2f} | "
              f"{o['image_tokens']} | {o['load_ms'] / 1e3:.1f} / {tt('load_ms')} | "
              f"{gb(rss):.2f} / {tt('peak_rss_mb', 1024 * 1024 / 1e9)} | "
              f"{gb((o['rss_mb'] or 0) * 1024 * 1024):.2f} / {tt('rss_mb', 1024 * 1024 / 1e9)} | "
              f"{rss / w:.2f} | "
              f"{o['first_token_ms'] / 1e3:.2f} / {tt('first_token_ms', 1e-3, 2)} | "
              f"{warm(o)} / {tt('prefill_ms', 1e-3, 3) if t and 'prefill_ms' in t else '-'} | "
              f"{o['decode_tokens_per_s']:.2f} / "
              f"{(1e3 / t['decode_ms']) if t else float('nan'):.2f} |")
    for package, o, t in rows:
        for key, what in (("prefill_ops", "prefill"), ("decode_ops", "decode step")):
            for who, figures in (("ours", o), ("ort", t or {})):
                ops = figures.get(key if who == "ours" else f"ort_{key}")
                if ops:
                    top = ", ".join(f"{r['op']} {100 * r['share']:.0f} % ({r['ms']:.1f} ms)"
                                    for r in ops[:4])
                    print(f"- {os.path.basename(package.rstrip('/'))} {o['precision']}, "
                          f"{what} ({who}): {top}")


if __name__ == "__main__":
    main()

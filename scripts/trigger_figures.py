#!/usr/bin/env python3
"""How a `watch --trigger TEXT` threshold splits test scenes, for the README's Matching section.

Writes COUNT test scenes with `glimpse-export scenes`, scores TEXT against each with
`glimpse match --json`, and sorts the scenes by their captions into those holding the
object TEXT names, those holding it at the other size, and the rest. Prints each group's
range and median of similarity, and the share of each group at or above each threshold.

    scripts/trigger_figures.py --bin target/release [--model DIR] [--text "a large red circle"]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="folder holding glimpse and glimpse-export")
    ap.add_argument("--model", help="package to score with [default: the bundled one]")
    ap.add_argument("--text", default="a large red circle")
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--thresholds", default="0.4,0.45,0.5")
    args = ap.parse_args()

    bin_dir = Path(args.bin)
    words = args.text.split()
    if len(words) != 4 or words[0] != "a":
        print(f"--text: expected 'a SIZE COLOUR SHAPE', got {args.text!r}", file=sys.stderr)
        return 2
    size, rest = words[1], " ".join(words[2:])
    other = "small" if size == "large" else "large"

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [bin_dir / "glimpse-export", "scenes", "--count", str(args.count), "--out", tmp],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        scenes = [json.loads(line) for line in (Path(tmp) / "captions.jsonl").open()]
        groups = {"with": [], "other size": [], "rest": []}
        for scene in scenes:
            cmd = [bin_dir / "glimpse", "match", "--json", str(Path(tmp) / scene["image"]), args.text]
            if args.model:
                cmd[2:2] = ["--model", args.model]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            sim = json.loads(out)["matches"][0]["cosine"]
            objects = scene["caption"].split(" left of ")
            if f"a {size} {rest}" in objects:
                groups["with"].append(sim)
            elif f"a {other} {rest}" in objects:
                groups["other size"].append(sim)
            else:
                groups["rest"].append(sim)

    thresholds = [float(t) for t in args.thresholds.split(",")]
    for name, sims in groups.items():
        if not sims:
            print(f"{name}: no scenes")
            continue
        shares = ", ".join(
            f">= {t}: {sum(s >= t for s in sims)} ({100 * sum(s >= t for s in sims) / len(sims):.1f} %)"
            for t in thresholds
        )
        print(
            f"{name}: {len(sims)} scenes, {min(sims):.2f} to {max(sims):.2f} "
            f"(median {statistics.median(sims):.2f}); {shares}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

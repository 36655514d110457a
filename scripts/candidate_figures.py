#!/usr/bin/env python3
"""Every figure the README quotes from the bundled model, measured for a candidate package.

Before a new model replaces `models/glimpse-default`, its figures have to be measured the
way the README's were: the table (200 scenes a split, seed 7), 1000 scenes a split on seeds
7 and 11 alone and scene by scene against the bundled model, the quantized agreement,
captions from seven views, the example frames at every precision, the Matching section's
`glimpse match` example and its trigger figures. This runs those `glimpse-export` and
`glimpse` commands, two at a time by default, writes each one's output to OUT/NAME.txt, and
ends with the examples: which captions and answers differ from examples/captions.jsonl at
which precision (the tests fail on a wrong caption, and on more than two wrong answers of
34).

    scripts/candidate_figures.py --bin target/release PKG --out figures/ [--against OLD]

`--scenes 50 --table-scenes 20` makes a quick run of the same commands.
"""

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRECISIONS = ["f32", "f16", "int8", "q4"]


def commands(export, pkg, against, scenes, table_scenes):
    """(name, argv) of every measurement, the slowest first so two jobs end together."""
    n, t = str(scenes), str(table_scenes)
    return [
        ("views-7", [export, "eval", pkg, "--views", "7", "--against", pkg, "--scenes", n, "--seed", "7"]),
        ("against-7", [export, "eval", pkg, "--against", against, "--scenes", n, "--seed", "7"]),
        ("against-11", [export, "eval", pkg, "--against", against, "--scenes", n, "--seed", "11"]),
        ("eval-7", [export, "eval", pkg, "--scenes", n, "--seed", "7"]),
        ("eval-11", [export, "eval", pkg, "--scenes", n, "--seed", "11"]),
        ("views-table", [export, "eval", pkg, "--views", "7", "--against", pkg, "--scenes", t, "--seed", "7"]),
        ("compare", [export, "compare", pkg, "--scenes", str(2 * table_scenes), "--seed", "7"]),
        ("table", [export, "eval", pkg, "--scenes", t, "--seed", "7"]),
    ]


def run(name, argv, out):
    start = time.monotonic()
    with open(out / f"{name}.txt", "w") as f:
        code = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT).returncode
    took = time.monotonic() - start
    print(f"{name}: {'done' if code == 0 else f'FAILED (exit {code})'} in {took:.0f} s", flush=True)
    return code


def examples(glimpse, pkg):
    """Captions and answers of the example frames that differ from captions.jsonl."""
    lines = [json.loads(line) for line in (ROOT / "examples" / "captions.jsonl").open()]
    report = []
    for p in PRECISIONS:
        base = [glimpse, "--model", pkg, "--precision", p]
        images = [str(ROOT / "examples" / e["image"]) for e in lines]
        out = subprocess.run(base + ["caption"] + images, capture_output=True, text=True)
        if out.returncode != 0:
            report.append(f"{p}: glimpse caption failed: {out.stderr.strip()}")
        captions = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
        wrong_captions = [
            (e["image"], captions.get(img)) for e, img in zip(lines, images) if captions.get(img) != e["caption"]
        ]
        wrong_answers, asked = [], 0
        for e, img in zip(lines, images):
            for qa in e["qa"]:
                asked += 1
                got = subprocess.run(base + ["ask", img, qa["q"]], capture_output=True, text=True).stdout.strip()
                if got != qa["a"]:
                    wrong_answers.append((e["image"], qa["q"], got, qa["a"]))
        report.append(
            f"{p}: captions {len(lines) - len(wrong_captions)} of {len(lines)} right, "
            f"answers {asked - len(wrong_answers)} of {asked}"
        )
        report += [f"  {img}: caption {got!r}" for img, got in wrong_captions]
        report += [f"  {img}: {q!r} answered {got!r}, not {want!r}" for img, q, got, want in wrong_answers]
    return report


# The README's `glimpse match` example: the first example frame, two objects it holds, their
# mix of colour and shape, an object it does not hold, and then its whole caption.
MATCH_TEXTS = ["a small purple diamond", "a large blue square", "a large purple square", "a small red circle"]


def matching(glimpse, bin_dir, pkg, out):
    """The Matching section's figures: the match example, then the trigger figures."""
    scene = str(ROOT / "examples" / "scene-0.png")
    caption = json.loads((ROOT / "examples" / "captions.jsonl").open().readline())["caption"]
    base = [glimpse, "--model", pkg, "match", scene]
    trigger = [sys.executable, str(ROOT / "scripts" / "trigger_figures.py"), "--bin", str(bin_dir), "--model", pkg]
    for name, argv in [("match", base + MATCH_TEXTS), ("match-caption", base + [caption]), ("trigger", trigger)]:
        run(name, argv, out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("package", help="the candidate package")
    ap.add_argument("--bin", required=True, help="folder holding glimpse and glimpse-export")
    ap.add_argument("--out", required=True, help="folder for one NAME.txt per measurement")
    ap.add_argument("--against", default=str(ROOT / "models" / "glimpse-default"),
                    help="package to compare scene by scene [default: the bundled one]")
    ap.add_argument("--scenes", type=int, default=1000, help="scenes a split of the long runs")
    ap.add_argument("--table-scenes", type=int, default=200, help="scenes a split of the README's table")
    ap.add_argument("--jobs", type=int, default=2, help="measurements run at once")
    args = ap.parse_args()

    bin_dir = Path(args.bin)
    export, glimpse = str(bin_dir / "glimpse-export"), str(bin_dir / "glimpse")
    for tool in (export, glimpse):
        if not Path(tool).is_file():
            print(f"--bin: {tool} not found (build with cargo build --release)", file=sys.stderr)
            return 2
    if not (Path(args.package) / "glimpse.json").is_file():
        print(f"{args.package}: not a package (no glimpse.json)", file=sys.stderr)
        return 2
    if args.scenes < 1 or args.table_scenes < 1 or args.jobs < 1:
        print("--scenes, --table-scenes and --jobs: at least 1", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    todo = commands(export, args.package, args.against, args.scenes, args.table_scenes)
    print(f"{len(todo)} measurements of {args.package}, {args.jobs} at a time, into {out}", flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        codes = list(pool.map(lambda c: run(c[0], c[1], out), todo))

    matching(glimpse, bin_dir, args.package, out)
    report = examples(glimpse, args.package)
    (out / "examples.txt").write_text("\n".join(report) + "\n")
    print("\n".join(report))
    failed = [name for (name, _), code in zip(todo, codes) if code != 0]
    if failed:
        print(f"failed: {', '.join(failed)} (see their files in {out})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Image hashing with chunk digests (lib/image: builder and verify on
several threads) against one sequential SHA-256 pass over the same file.

`kyb-hash-bench` (bench/hash_bench.c, built with the project) writes a file of
pseudo-random bytes as criu/pages-1.img of a scratch image, fsyncs it, and per
round times, all from the page cache:

  baseline   kyb_sha256_fd over the file: one core, the whole file; what the
             builder and verify each cost before chunk digests
  build T    kyb_image_builder_finish with KYBERNATE_HASH_THREADS=T: the
             whole-file digest plus one digest per 64 MiB chunk, fsync, manifest
  verify T   kyb_image_verify with KYBERNATE_HASH_THREADS=T: the chunk digests

Figures are medians over the rounds and ratios to the baseline of the same
run (< 1: faster than one sequential pass).

    sudo /usr/bin/python3 bench/hash_bench.py [--build-dir build-x]
        [--size-mib 4096] [--rounds 3] [--threads 1 2 4 8]
        [--work-dir /var/tmp] [--results bench/results | -]
Prints the results and writes bench/results/hash-<date>.md.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.benchlib import machine  # noqa: E402
from tests.harness import default_build_dir  # noqa: E402


def report(data: dict, meta: dict, threads: list) -> str:
    rounds = data["rounds"]
    base = statistics.median(r["baseline"] for r in rounds)
    gib = data["size_mib"] / 1024
    lines = [
        f"# Image hashing: chunk digests on several threads ({meta['date'][:10]})",
        "",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['machine']['cpu']}, {meta['machine']['nproc']} CPUs, "
        f"{meta['machine']['memory']}; `{meta['machine']['uname']}`",
        f"- kybernate: {meta['version']}",
        f"- file: {data['size_mib']} MiB of pseudo-random bytes in {meta['work_dir']} "
        f"(page cache), chunk {data['chunk_mib']} MiB, "
        f"{len(rounds)} rounds; default threads here: {data['default_threads']}",
        "",
        "| what | threads | median s | GiB/s | ratio to baseline |",
        "|---|---|---|---|---|",
        f"| baseline: one sequential sha256 pass | 1 | {base:.3f} | {gib / base:.2f} | 1.00 |",
    ]
    for t in threads:
        for kind in ("build", "verify"):
            v = statistics.median(r[f"{kind}_{t}"] for r in rounds)
            lines.append(f"| {kind} | {t} | {v:.3f} | {gib / v:.2f} | {v / base:.2f} |")
    lines += ["", "Raw (seconds per round):", "", "```", json.dumps(data, indent=1), "```", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", type=Path, default=default_build_dir())
    ap.add_argument("--size-mib", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--work-dir", type=Path, default=Path("/var/tmp"))
    ap.add_argument("--results", default=str(REPO / "bench" / "results"),
                    help="directory for hash-<date>.md, or - to only print")
    args = ap.parse_args()
    tool = args.build_dir / "bench" / "kyb-hash-bench"
    if not tool.exists():
        print(f"hash_bench: {tool} missing: build the project first", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="kyb-hash-bench-", dir=args.work_dir))
    try:
        r = subprocess.run([str(tool), str(scratch), str(args.size_mib), str(args.rounds)]
                           + [str(t) for t in args.threads],
                           capture_output=True, text=True, check=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if r.returncode != 0:
        print(r.stderr, file=sys.stderr)
        return 1
    data = json.loads(r.stdout)
    version = subprocess.run([str(args.build_dir / "cmd" / "kybernate"), "--version"],
                             capture_output=True, text=True).stdout.strip() or "?"
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(["bench/hash_bench.py"] + sys.argv[1:]),
            "machine": machine(), "version": version, "work_dir": str(args.work_dir)}
    text = report(data, meta, args.threads)
    print(text)
    if args.results != "-":
        out = Path(args.results)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"hash-{meta['date'][:10]}.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Compression ratio and speed of image packaging for remote stores
(lib/store/pack: zstd + sha256 of the file and of the blob) per zstd level
and thread count, on real CRIU images.

On one private test node (tests/harness) each workload runs in a container
and is checkpointed with `kybernate checkpoint --to file://DIR` (a real CRIU
image).  Then, for every zstd level and thread count, every file of the
image (each `files` entry and manifest.json: what a remote store uploads)
goes through `kyb-pack-bench pack` (kyb_pack_file with a sink that discards
the blob); the sums over the image are the figures.  The baseline, measured
in the same run and interleaved with the packs, is a plain sequential read
plus sha256 of the same files in Python (hashlib, 1 MiB reads): the least a
packer must do.  Decompression (`kyb-pack-bench unpack`: kyb_unpack_* with
both digest checks, output to /dev/null) is timed per level on the blobs of
the 1-thread packs.

All files are in the page cache (written by the checkpoint moments before
and read once before timing): this measures CPU cost, not the disk.

Workloads:
  counter   tests/programs/counter --mem M: M MiB filled from a xorshift64
            generator, i.e. pseudo-random, incompressible memory (worst case)
  awk-heap  busybox awk holding N strings in an associative array: a real
            heap of small allocations, pointers and text (compressible)

Run as root from the repo (needs a build dir with kyb-pack-bench, see
docs/testing.md):
    sudo /usr/bin/python3 bench/compression.py [--build-dir build-x] [--mem 512]
        [--awk-entries 1500000] [--levels 1 3 6 9 19] [--threads 1 2] [--rounds 3]
        [--results bench/results]
Prints the results and writes bench/results/compression-<date>.md.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.benchlib import machine, make_images, publish, tool_version  # noqa: E402
from tests.harness import default_build_dir, tool_path  # noqa: E402
from tests.harness.node import Node  # noqa: E402

MIB = 1024 * 1024
MB = 1000 * 1000
SLOW_LEVEL = 19  # one round only: ~5-10 MB/s per thread


def sh(*cmd, timeout=600) -> str:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    return (r.stdout or r.stderr).strip()


def run_json(cmd) -> dict:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"failed (rc {r.returncode}): {shlex.join(map(str, cmd))}\n{r.stderr}")
    return json.loads(r.stdout)


def baseline(files: list) -> float:
    """Seconds to read and sha256 every file sequentially (1 MiB reads)."""
    t0 = time.perf_counter()
    for f in files:
        h = hashlib.sha256()
        with open(f, "rb", buffering=0) as fh:
            while True:
                b = fh.read(MIB)
                if not b:
                    break
                h.update(b)
        h.hexdigest()
    return time.perf_counter() - t0


def image_files(image: Path) -> list:
    man = json.loads((image / "manifest.json").read_text())
    return [image / f["path"] for f in man["files"]] + [image / "manifest.json"]


def versions(build_dir: Path) -> dict:
    v = tool_version
    return {
        "kybernate": v(str(build_dir / "cmd" / "kybernate"), "--version"),
        "libzstd": v("pkg-config", "--modversion", "libzstd"),
        "libcrypto (OpenSSL)": v("pkg-config", "--modversion", "libcrypto"),
        "containerd": v("containerd", "--version"),
        "runc": v("runc", "--version"),
        "criu": v("criu", "--version"),
        "python": platform.python_version(),
    }


def bench_image(tool: Path, files: list, blobs: Path, levels, threads, rounds) -> dict:
    total = sum(f.stat().st_size for f in files)
    baseline(files)  # warm the page cache
    base, rows = [], []
    for level in levels:
        for t in threads:
            n = 1 if level >= SLOW_LEVEL else rounds
            times, cpus, blob_total, keep = [], [], 0, t == min(threads)
            for i in range(n):
                base.append(baseline(files))
                wall = cpu = 0.0
                blob_total = 0
                last = keep and i == n - 1  # keep the blobs of this round for unpack
                for k, f in enumerate(files):
                    cmd = [tool, "pack", f, level, t] + ([blobs / f"{k}.zst"] if last else [])
                    r = run_json(cmd)
                    wall += r["wall_s"] - r["sink_s"]
                    cpu += r["cpu_s"]
                    blob_total += r["blob_size"]
                    if last:
                        r["path"] = str(f)
                        (blobs / f"{k}.json").write_text(json.dumps(r))
                times.append(wall)
                cpus.append(cpu)
            row = {"level": level, "threads": t, "file": total, "blob": blob_total,
                   "times": times, "cpu": cpus, "unpack": []}
            if keep:
                for i in range(n):
                    base.append(baseline(files))
                    wall = 0.0
                    for k in range(len(files)):
                        r = json.loads((blobs / f"{k}.json").read_text())
                        u = run_json([tool, "unpack", blobs / f"{k}.zst", r["blob_digest"],
                                      r["file_digest"], r["file_size"]])
                        wall += u["wall_s"]
                    row["unpack"].append(wall)
            rows.append(row)
            print(f"  level {level:2} threads {t}: ratio {total / blob_total:.3f}, pack "
                  f"{mbs(total, statistics.median(times))} MB/s", flush=True)
    return {"files": len(files), "total": total, "baseline": base, "rows": rows}


def mbs(nbytes: int, seconds: float) -> str:
    x = nbytes / seconds / MB
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


def report(results: dict, meta: dict) -> str:
    out = ["# Compression of image parts: zstd level and threads (`lib/store/pack`)", "",
           f"Date: {meta['date']}  ", f"Command: `{meta['command']}`  ",
           f"Rounds: {meta['rounds']} per level and thread count (level {SLOW_LEVEL}: 1); "
           "baseline interleaved with them  ",
           f"Image dir file system: {meta['fs']} (files in the page cache while timed)", "",
           "## Machine", "",
           f"- `uname -a`: {meta['machine']['uname']}",
           f"- CPU: {meta['machine']['cpu']}, nproc {meta['machine']['nproc']}",
           f"- memory: {meta['machine']['memory']}"]
    out += [f"- {k}: {v}" for k, v in meta["versions"].items()]
    out += ["", "## Workloads", ""] + [f"- `{k}`: {v}" for k, v in meta["workloads"].items()]
    out += ["", "## Results", "",
            "Per image, summed over its files (every `files` entry and manifest.json, each "
            "packed as one blob). MB = 10^6 bytes of the *uncompressed* files per second, "
            "median over the rounds. `ratio` = file bytes / blob bytes. `× baseline` = pack "
            "time / baseline time (baseline: Python read + sha256 of the same files, median of "
            "this run). CPU s: user + system of the packer, zstd workers included (median). "
            "Unpack: decompress + both sha256 checks, output to /dev/null, on the 1-thread "
            "blobs.", ""]
    for name, r in results.items():
        b = statistics.median(r["baseline"])
        out += [f"### `{name}`: {r['files']} files, {r['total'] / MIB:.1f} MiB", "",
                f"Baseline (read + sha256): {b:.3f} s = **{mbs(r['total'], b)} MB/s** "
                f"(min {min(r['baseline']):.3f} s, max {max(r['baseline']):.3f} s, "
                f"{len(r['baseline'])} runs)", "",
                "| level | threads | blob MiB | ratio | pack s | pack MB/s | × baseline | "
                "CPU s | unpack MB/s | unpack × baseline |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in r["rows"]:
            t = statistics.median(row["times"])
            u = statistics.median(row["unpack"]) if row["unpack"] else None
            out.append(
                f"| {row['level']} | {row['threads']} | {row['blob'] / MIB:.1f} | "
                f"{row['file'] / row['blob']:.3f} | {t:.3f} | {mbs(row['file'], t)} | "
                f"{t / b:.2f} | {statistics.median(row['cpu']):.2f} | "
                + (f"{mbs(row['file'], u)} | {u / b:.2f} |" if u else "″ | ″ |"))
        out.append("")
    out += ["Raw pack times (s, summed over the image), in round order:", ""]
    for name, r in results.items():
        out.append(f"- {name} baseline: " + ", ".join(f"{x:.3f}" for x in r["baseline"]))
        for row in r["rows"]:
            out.append(f"- {name} level {row['level']} threads {row['threads']}: " +
                       ", ".join(f"{x:.3f}" for x in row["times"]) +
                       ("; unpack " + ", ".join(f"{x:.3f}" for x in row["unpack"])
                        if row["unpack"] else ""))
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", type=Path, default=default_build_dir())
    ap.add_argument("--mem", type=int, default=512, help="counter memory, MiB (default 512)")
    ap.add_argument("--awk-entries", type=int, default=1500000,
                    help="strings the awk-heap workload holds (default 1500000, ~160 MiB)")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 3, 6, 9, 19])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work-dir", type=Path, default=Path("/var/tmp"),
                    help="parent of the scratch dir for images and blobs (default /var/tmp)")
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "results",
                    help="where the .md goes ('-' for none)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (containerd, runc and CRIU)")
    build_dir = args.build_dir.resolve()
    kyb = build_dir / "cmd" / "kybernate"
    tool = build_dir / "bench" / "kyb-pack-bench"
    for p in (kyb, tool):
        if not p.is_file():
            raise SystemExit(f"{p} missing: meson setup {build_dir} && ninja -C {build_dir}")
    os.environ["PATH"] = tool_path()

    node_base = Path(tempfile.mkdtemp(prefix="kyb-bench-", dir="/tmp"))
    work = Path(tempfile.mkdtemp(prefix="kyb-bench-zst-", dir=args.work_dir))
    fs = sh("findmnt", "-n", "-o", "FSTYPE,SOURCE,OPTIONS", "-T", work)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "command": "sudo /usr/bin/python3 " + shlex.join(
                [os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
            "rounds": args.rounds, "fs": f"`{fs}` ({args.work_dir})",
            "machine": machine(), "versions": versions(build_dir),
            "workloads": {
                "counter": f"`counter --mem {args.mem} --verify-every 0 --file /data/state "
                           "--interval 100`: its memory is filled from a xorshift64 generator, "
                           "i.e. **pseudo-random, incompressible** pages (worst case; a real "
                           "workload's pages compress better)",
                "awk-heap": f"busybox `awk` holding {args.awk_entries} strings "
                            "(`a[i] = \"user-\" i \"@example.org session \" (i * 7919) % 100003`)"
                            " in an associative array, then waiting in `system(\"sleep ...\")`: "
                            "a real heap of small allocations, pointers and text "
                            "(compressible; one kind of workload, not a typical one)"}}
    node = Node("packbench", node_base, build_dir)
    results = {}
    t0 = time.monotonic()
    try:
        node.start()
        images = make_images(node, kyb, work / "store", args.mem, args.awk_entries)
        node.stop()  # nothing runs while timing
        blobs = work / "blobs"
        blobs.mkdir()
        for name, image in images.items():
            files = image_files(image)
            print(f"{name}: {len(files)} files, "
                  f"{sum(f.stat().st_size for f in files) / MIB:.1f} MiB", flush=True)
            results[name] = bench_image(tool, files, blobs, args.levels, args.threads,
                                        args.rounds)
    finally:
        node.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(node_base, ignore_errors=True)
    text = report(results, meta)
    publish(text, args.results, "compression", meta["date"], t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

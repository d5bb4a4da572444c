#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""What `kybernate checkpoint --leave-running` costs over containerd's own
checkpoint (`ctr task checkpoint`) of the same container.

On one private test node (tests/harness) a counter container per memory size
(`counter --mem M --file /data/state`) is checkpointed N times by each
method, alternating (which one goes first flips every round), each call
timed wall-clock from the outside:

  kybernate  kybernate --address SOCK checkpoint C --to file://DIR --name rI --leave-running
             (pause, CRIU dump via containerd, rootfs diff, manifest with
              sha256 of every file, fsync, atomic publish, resume)
  ctr        ctr --address SOCK -n default task checkpoint --image-path DIR --work-path DIR2 C
             (runc + CRIU through containerd; the container keeps running)

Before each timed call the page cache is synced (outside the timing), so one
call's dirty pages are not written back during the next.  Images are removed
after each round.  The counter does not verify its memory during the bench
(--verify-every 0) so it takes no CPU.

Run as root from the repo (needs a build dir, see docs/testing.md):
    sudo /usr/bin/python3 bench/checkpoint_overhead.py [--build-dir build-x] [--mem 256 1024]
        [--rounds 7] [--results bench/results]
Prints the results and writes bench/results/checkpoint-overhead-<date>.md.
"""

import argparse
import datetime
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

from bench.benchlib import machine, publish, tool_version  # noqa: E402
from tests.harness import default_build_dir, tool_path  # noqa: E402
from tests.harness.checks import wait_count  # noqa: E402
from tests.harness.node import Node  # noqa: E402

MIB = 1024 * 1024
PHASES = ("pause", "criu_dump", "rootfs_diff", "package")


def sh(*cmd, timeout=600) -> str:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    return (r.stdout or r.stderr).strip()


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def timed(cmd, timeout=600):
    os.sync()
    t0 = time.monotonic()
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit(f"failed (rc {r.returncode}): {shlex.join(map(str, cmd))}\n"
                         f"{r.stderr or r.stdout}")
    return dt, r


def fmt_s(x: float) -> str:
    return f"{x:.3f}"


def fmt_size(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


def versions(build_dir: Path) -> dict:
    v = tool_version
    return {
        "kybernate": v(str(build_dir / "cmd" / "kybernate"), "--version"),
        "containerd": v("containerd", "--version"),
        "runc": v("runc", "--version"),
        "criu": v("criu", "--version") + f" ({shutil.which('criu', path=tool_path())})",
        "python": platform.python_version(),
    }


def bench_one(node: Node, kyb: Path, work: Path, mem: int, rounds: int) -> dict:
    cid = f"bench-{mem}"
    log = node.run_container(cid, ["/usr/bin/counter", "--interval", "100", "--mem", str(mem),
                                   "--verify-every", "0", "--file", "/data/state"])
    wait_count(log, 3, timeout=120)
    store = work / f"store-{mem}"
    times = {"kybernate": [], "ctr": [], "ctr+sync": []}
    sizes = {"kybernate": [], "ctr": []}
    phases = {p: [] for p in PHASES}
    for i in range(rounds):
        order = ("kybernate", "ctr") if i % 2 == 0 else ("ctr", "kybernate")
        for method in order:
            if method == "kybernate":
                name = f"r{i}"
                dt, _ = timed([kyb, "--address", node.socket, "checkpoint", cid,
                               "--to", f"file://{store}", "--name", name, "--leave-running"])
                image = store / name
                man = json.loads((image / "manifest.json").read_text())
                for p in PHASES:
                    phases[p].append(man["timings"].get(p, 0) / 1000)
                sizes[method].append(dir_size(image))
                subprocess.run([kyb, "images", "rm", f"file://{store}/{name}"], check=True,
                               capture_output=True)
            else:
                img, wk = work / f"ctr-{mem}-{i}", work / f"ctr-work-{mem}-{i}"
                dt, _ = timed(["ctr", "--address", node.socket, "-n", "default", "task",
                               "checkpoint", "--image-path", img, "--work-path", wk, cid])
                # kybernate fsyncs its image; ctr leaves it in the page cache.
                t0 = time.monotonic()
                os.sync()
                times["ctr+sync"].append(dt + time.monotonic() - t0)
                sizes[method].append(dir_size(img))
                shutil.rmtree(img)
                shutil.rmtree(wk, ignore_errors=True)
            times[method].append(dt)
            status = node.tasks().get(cid)
            if not status or status[1] != "RUNNING":
                raise SystemExit(f"{cid} is not running after {method} round {i}: {status}")
        print(f"  mem {mem} MiB round {i + 1}/{rounds}: kybernate {times['kybernate'][-1]:.3f} s,"
              f" ctr {times['ctr'][-1]:.3f} s", flush=True)
    before = wait_count(log, 1)[-1]
    wait_count(log, before + 2)  # still counting after all rounds
    node.ctr("tasks", "kill", "--signal", "KILL", cid)
    return {"mem": mem, "times": times, "sizes": sizes, "phases": phases}


def report(results: list, meta: dict) -> str:
    out = ["# Checkpoint overhead: `kybernate checkpoint` vs `ctr task checkpoint`", "",
           f"Date: {meta['date']}  ", f"Command: `{meta['command']}`  ",
           f"Rounds per method and size: {meta['rounds']} (alternating; page cache synced "
           "before each timed call)  ",
           f"Image dir file system: {meta['fs']}", "",
           "## Machine", "",
           f"- `uname -a`: {meta['machine']['uname']}",
           f"- CPU: {meta['machine']['cpu']}, nproc {meta['machine']['nproc']}",
           f"- memory: {meta['machine']['memory']}"]
    out += [f"- {k}: {v}" for k, v in meta["versions"].items()]
    out += ["", "## Results (wall-clock seconds per checkpoint, container left running)", "",
            "| counter --mem | method | median | min | max | image size (median) |",
            "|---:|---|---:|---:|---:|---:|"]
    for r in results:
        for m in ("kybernate", "ctr", "ctr+sync"):
            t = r["times"][m]
            size = r["sizes"].get(m)
            out.append(f"| {r['mem']} MiB | {m} | {fmt_s(statistics.median(t))} | "
                       f"{fmt_s(min(t))} | {fmt_s(max(t))} | "
                       f"{fmt_size(int(statistics.median(size))) if size else '″'} |")
    out += ["", "`ctr+sync`: the ctr call plus the `sync(2)` right after it (kybernate fsyncs "
            "its image before publishing it; ctr leaves the image in the page cache).", "",
            "| counter --mem | overhead kybernate/ctr (median) | (min) | "
            "kybernate − ctr (median, s) | kybernate/(ctr+sync) (median) |",
            "|---:|---:|---:|---:|---:|"]
    for r in results:
        k, c, cs = r["times"]["kybernate"], r["times"]["ctr"], r["times"]["ctr+sync"]
        out.append(f"| {r['mem']} MiB | {statistics.median(k) / statistics.median(c):.2f} | "
                   f"{min(k) / min(c):.2f} | "
                   f"{statistics.median(k) - statistics.median(c):.3f} | "
                   f"{statistics.median(k) / statistics.median(cs):.2f} |")
    out += ["", "kybernate's own phase timings (manifest `timings`, median seconds):", "",
            "| counter --mem | " + " | ".join(PHASES) + " |",
            "|---:|" + "---:|" * len(PHASES)]
    for r in results:
        out.append(f"| {r['mem']} MiB | " + " | ".join(
            fmt_s(statistics.median(r["phases"][p])) for p in PHASES) + " |")
    out += ["", "Raw times (s), in round order:", ""]
    for r in results:
        for m in ("kybernate", "ctr", "ctr+sync"):
            out.append(f"- {r['mem']} MiB {m}: " + ", ".join(fmt_s(t) for t in r["times"][m]))
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", type=Path, default=default_build_dir())
    ap.add_argument("--mem", type=int, nargs="+", default=[256, 1024], help="MiB per container")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--work-dir", type=Path, default=Path("/var/tmp"),
                    help="parent of the scratch dir for images (default /var/tmp)")
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "results",
                    help="where the .md goes ('-' for none)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (containerd, runc and CRIU)")
    build_dir = args.build_dir.resolve()
    kyb = build_dir / "cmd" / "kybernate"
    if not kyb.is_file():
        raise SystemExit(f"{kyb} missing: meson setup {build_dir} && ninja -C {build_dir}")
    os.environ["PATH"] = tool_path()

    node_base = Path(tempfile.mkdtemp(prefix="kyb-bench-", dir="/tmp"))
    work = Path(tempfile.mkdtemp(prefix="kyb-bench-img-", dir=args.work_dir))
    fs = sh("findmnt", "-n", "-o", "FSTYPE,SOURCE,OPTIONS", "-T", work)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "command": "sudo /usr/bin/python3 " + shlex.join(
                [os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
            "rounds": args.rounds, "fs": f"`{fs}` ({args.work_dir})",
            "machine": machine(), "versions": versions(build_dir)}
    node = Node("bench", node_base, build_dir)
    results = []
    t0 = time.monotonic()
    try:
        node.start()
        for mem in args.mem:
            print(f"counter --mem {mem}:", flush=True)
            results.append(bench_one(node, kyb, work, mem, args.rounds))
    finally:
        node.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(node_base, ignore_errors=True)
    text = report(results, meta)
    publish(text, args.results, "checkpoint-overhead", meta["date"], t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

# SPDX-License-Identifier: Apache-2.0
"""What the bench scripts share: the machine and tool versions every result
records (bench/README.md: results name the machine and versions), the real
CRIU images two of them measure, and how a result is printed and written."""

import os
import subprocess
import time
from pathlib import Path

from tests.harness import tool_path
from tests.harness.checks import wait_count, wait_for

REPO = Path(__file__).resolve().parents[1]


def machine() -> dict:
    mem_kib = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"uname": " ".join(os.uname()), "nproc": os.cpu_count(), "cpu": cpu,
            "memory": f"{mem_kib / 1024 / 1024:.1f} GiB"}


def tool_version(*cmd) -> str:
    """First line of a tool's version output, with the harness's PATH; "?"
    when it cannot run or says nothing."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, PATH=tool_path()))
    except OSError:
        return "?"
    out = (r.stdout or r.stderr).strip()
    return out.splitlines()[0] if out else "?"


def checkpoint(node, kyb: Path, store: Path, cid: str) -> Path:
    """`kybernate checkpoint CID --to file://STORE --name CID`; the image dir."""
    r = subprocess.run([str(kyb), "--address", str(node.socket), "checkpoint", cid,
                        "--to", f"file://{store}", "--name", cid],
                       capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"checkpoint of {cid} failed: {r.stderr or r.stdout}")
    return store / cid


def make_images(node, kyb: Path, store: Path, mem: int, awk_entries: int) -> dict:
    """Real CRIU images of two workloads: `counter --mem MEM` (incompressible
    memory) and, when awk_entries > 0, busybox awk holding that many strings
    (a compressible heap).  Name -> image dir."""
    images = {}
    log = node.run_container("counter", ["/usr/bin/counter", "--interval", "100", "--mem", mem,
                                         "--verify-every", "0", "--file", "/data/state"])
    wait_count(log, 3, timeout=300)
    images["counter"] = checkpoint(node, kyb, store, "counter")
    if awk_entries > 0:
        prog = (f'BEGIN {{ for (i = 0; i < {awk_entries}; i++) '
                'a[i] = "user-" i "@example.org session " (i * 7919) % 100003; '
                'print "ready"; fflush(); system("sleep 1000000") }')
        log = node.run_container("awk-heap", ["/bin/awk", prog])
        wait_for(lambda: log.is_file() and "ready" in log.read_text(), 300, f"'ready' in {log}")
        images["awk-heap"] = checkpoint(node, kyb, store, "awk-heap")
    return images


def publish(text: str, results, stem: str, date: str, t0: float) -> None:
    """Prints a report with the total bench time and, unless results is "-",
    writes it to RESULTS/STEM-DATE.md."""
    text += f"\nTotal bench time: {time.monotonic() - t0:.0f} s\n"
    print()
    print(text)
    if str(results) != "-":
        results.mkdir(parents=True, exist_ok=True)
        out = results / f"{stem}-{date[:10]}.md"
        out.write_text(text)
        print(f"written: {os.path.relpath(out, REPO)}")


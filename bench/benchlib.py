# SPDX-License-Identifier: Apache-2.0
"""What every bench records about the machine and the tools it ran with
(bench/README.md: results name the machine and versions)."""

import os
import subprocess

from tests.harness import tool_path


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

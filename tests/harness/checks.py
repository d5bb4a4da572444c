# SPDX-License-Identifier: Apache-2.0
"""Checks the tests share: polling with a deadline, the counter's log, and
what a node must not leave behind after stop()."""

import os
import re
import time
from pathlib import Path

from . import procs
from .node import SHIM_SOCKET_DIR, Node


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll predicate until it returns something true; TimeoutError after
    timeout (a deadline, never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


COUNT_RE = re.compile(r"^count (\d+)$")


def counts(log) -> list:
    """The N of every "count N" line of a counter's log."""
    try:
        text = Path(log).read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [int(m.group(1)) for m in map(COUNT_RE.match, text.splitlines()) if m]


def wait_count(log, n: int, timeout: float = 30) -> list:
    """Wait until the counter's log reached "count n"; returns all counts."""
    def reached():
        c = counts(log)
        return c if c and c[-1] >= n else None
    return wait_for(reached, timeout, f"'count {n}' in {log}")


def assert_consecutive(values: list, first: int = 1) -> None:
    expect = list(range(first, first + len(values)))
    assert values == expect, f"counts not consecutive from {first}: {values}"


def shim_socket_snapshot() -> set:
    return set(os.listdir(SHIM_SOCKET_DIR)) if SHIM_SOCKET_DIR.is_dir() else set()


class Leftovers:
    """What a node could leave behind: create before start(), record() while
    it runs, check() after stop()."""

    def __init__(self, node: Node):
        self.node = node
        self.sockets_before = shim_socket_snapshot()
        self.pids = set()
        self.shim_sockets = set()

    def record(self, *extra_pids) -> None:
        """Remember the node's processes and shim sockets as they are now."""
        self.pids |= set(self.node.owned_pids()) | set(extra_pids)
        self.shim_sockets |= self.node.shim_sockets()

    def problems(self) -> list:
        node = self.node
        out = []
        alive = sorted(p for p in self.pids if procs.alive(p))
        if alive:
            out.append(f"processes alive: {[(p, procs.cmdline(p)) for p in alive]}")
        mentioning = procs.pids_mentioning(str(node.dir))
        if mentioning:
            out.append(f"processes naming the node dir: "
                       f"{[(p, procs.cmdline(p)) for p in mentioning]}")
        mounted = procs.mounts_under(node.dir)
        if mounted:
            out.append(f"mounts left: {mounted}")
        if node.dir.exists():
            out.append(f"node dir {node.dir} still exists")
        cgroups = procs.cgroup_dirs(node.cgroup_parent)
        if cgroups:
            out.append(f"cgroups left: {cgroups}")
        ours = sorted(str(s) for s in self.shim_sockets if s.exists())
        if ours:
            out.append(f"shim sockets left: {ours}")
        # Other nodes (other engineers' tests) may add sockets meanwhile: a
        # new entry counts against us only when nobody listens on it.
        listening = procs.listening_unix_paths()
        stale = sorted(n for n in shim_socket_snapshot() - self.sockets_before
                       if str(SHIM_SOCKET_DIR / n) not in listening)
        if stale:
            out.append(f"new stale entries in {SHIM_SOCKET_DIR}: {stale}")
        return out

    def check(self) -> None:
        problems = self.problems()
        assert not problems, "node left things behind:\n  " + "\n  ".join(problems)

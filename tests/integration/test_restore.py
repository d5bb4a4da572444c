# SPDX-License-Identifier: Apache-2.0
"""`kybernate restore`: a checkpoint image comes back as a NEW container
through containerd's API, with kybernate-runc restoring on create
(issue "Restore into a new container"; the CRI path is test_runtime_restore.py).

The workload is the counter of the test image (--mem fills memory with a
known pattern and reports "memory ok <sum>"; --file keeps /data/state open
and rewrites "count N" into it).  Checked:
  - the new container goes on from the checkpointed count (first line after
    restore = last line before + 1), its memory checksum is the one the old
    container computed, the file it keeps open is intact and still written,
    and it lives in its own cgroup (not the dumped container's);
  - a restored container can be checkpointed and restored again;
  - a missing image, a corrupted image file, a store the node is not
    configured for: each fails with a clear error and leaves no container,
    task or snapshot behind.
"""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.harness.checks import counts, wait_count, wait_for

FILLED_RE = re.compile(r"^memory filled \d+ MiB checksum ([0-9a-f]{16})$", re.M)
MEM_OK_RE = re.compile(r"^memory ok ([0-9a-f]{16})$", re.M)


@pytest.fixture
def store(tmp_path):
    d = tmp_path / "store"
    d.mkdir()
    return d


@pytest.fixture
def rnode(make_node, store, tmp_path):
    """A node whose containerd (and so kybernate-runc) is configured with
    `store` as its default image store."""
    conf = tmp_path / "kybernate.json"
    conf.write_text(json.dumps({"defaultStore": f"file://{store}"}))
    return make_node("r", env={"KYBERNATE_CONFIG": str(conf)})


def kyb(build_dir, node, store, *args, timeout=180):
    cmd = [str(build_dir / "cmd" / "kybernate"), "--address", str(node.socket),
           "--namespace", "default", "--store", f"file://{store}", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def start_counter(node, cid):
    log = node.run_container(cid, ["/usr/bin/counter", "--mem", "64", "--file", "/data/state",
                                   "--interval", "100", "--verify-every", "5"])
    wait_count(log, 8)
    return log


def checkpoint(build_dir, node, store, cid, name, *extra):
    r = kyb(build_dir, node, store, "checkpoint", cid, "--name", name, *extra)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"file://{store}/{name}"


def restore(build_dir, node, store, ref, new_id, log):
    r = kyb(build_dir, node, store, "restore", ref, "--name", new_id, "--log", log,
            "--runc-root", node.runc_root)
    assert r.returncode == 0, f"restore failed: {r.stderr}"
    cid, pid = r.stdout.split()
    assert cid == new_id
    return int(pid)


def containers(node):
    return node.ctr("containers", "ls", "-q", ns="default").stdout.split()


def snapshots(node):
    return [line.split()[0] for line in
            node.ctr("snapshots", "ls", ns="default").stdout.splitlines()[1:] if line.strip()]


def checksum_of(log):
    """The memory checksum a counter computed when it filled its memory."""
    filled = FILLED_RE.findall(Path(log).read_text())
    assert filled, f"{log}: the counter never reported its memory checksum"
    return filled[0]


def assert_goes_on(old_log, new_log, new_pid, new_id, checksum):
    last = counts(old_log)[-1]
    after = wait_count(new_log, last + 6)
    assert after[0] == last + 1, f"restored counter started at {after[0]}, old one stopped at {last}"
    assert after == list(range(last + 1, after[-1] + 1)), "restored counts are not consecutive"
    wait_for(lambda: MEM_OK_RE.findall(Path(new_log).read_text()), 30, "memory ok after restore")
    assert set(MEM_OK_RE.findall(Path(new_log).read_text())) == {checksum}
    assert "memory filled" not in Path(new_log).read_text(), "started fresh, not restored"
    # The file it keeps open is the restored one, and it is still written.
    state = Path(f"/proc/{new_pid}/root/data/state")
    wait_for(lambda: int(state.read_text().split()[1]) > last + 1, 30, "state file written on")
    # Its own cgroup, not the one of the container it was dumped from.
    cg = Path(f"/proc/{new_pid}/cgroup").read_text()
    assert new_id in cg, f"restored process is not in its new container's cgroup:\n{cg}"


def test_restore_goes_on(build_dir, rnode, store):
    old_log = start_counter(rnode, "counter")
    checkpoint(build_dir, rnode, store, "counter", "img1")
    assert rnode.tasks()["counter"][1] == "STOPPED"
    new_log = rnode.logs_dir / "restored.log"
    pid = restore(build_dir, rnode, store, "img1", "restored", new_log)
    assert_goes_on(old_log, new_log, pid, "restored", checksum_of(old_log))
    assert rnode.tasks()["restored"] == (pid, "RUNNING")


def test_restore_twice(build_dir, rnode, store):
    log0 = start_counter(rnode, "c0")
    checkpoint(build_dir, rnode, store, "c0", "gen1")
    log1 = rnode.logs_dir / "c1.log"
    restore(build_dir, rnode, store, "gen1", "c1", log1)
    wait_for(lambda: len(counts(log1)) >= 5, 30, "c1 counting")
    # With CRIU dump options: the manifest records them and kybernate-runc
    # repeats them on `runc restore` (CRIU insists on matching options).
    checkpoint(build_dir, rnode, store, "c1", "gen2", "--file-locks", "--ext-unix-sk")
    opts = json.loads((Path(str(store)) / "gen2" / "manifest.json").read_text())["options"]
    assert opts["fileLocks"] is True and opts["extUnixSk"] is True, opts
    log2 = rnode.logs_dir / "c2.log"
    pid2 = restore(build_dir, rnode, store, "gen2", "c2", log2)
    # The second generation goes on from the first restored container.
    assert_goes_on(log1, log2, pid2, "c2", checksum_of(log0))


def assert_nothing_left(node, new_id, before_snapshots):
    assert new_id not in containers(node)
    assert new_id not in node.tasks()
    assert set(snapshots(node)) == before_snapshots


def test_missing_image_leaves_nothing(build_dir, rnode, store):
    before = set(snapshots(rnode))
    r = kyb(build_dir, rnode, store, "restore", "no-such-image", "--name", "x",
            "--log", rnode.logs_dir / "x.log")
    assert r.returncode == 1
    assert "no-such-image" in r.stderr and "No such file or directory" in r.stderr, r.stderr
    assert_nothing_left(rnode, "x", before)


def test_corrupted_image_refused(build_dir, rnode, store):
    start_counter(rnode, "victim")
    checkpoint(build_dir, rnode, store, "victim", "bad")
    pages = sorted((store / "bad" / "criu").glob("pages-*.img"))[0]
    data = bytearray(pages.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pages.write_bytes(bytes(data))
    before = set(snapshots(rnode))
    r = kyb(build_dir, rnode, store, "restore", "bad", "--name", "y", "--log",
            rnode.logs_dir / "y.log", "--runc-root", rnode.runc_root)
    assert r.returncode == 1
    assert pages.name in r.stderr, r.stderr
    assert "sha256" in r.stderr or "digest" in r.stderr, r.stderr
    assert_nothing_left(rnode, "y", before)


def test_unconfigured_store_refused(build_dir, rnode, store, tmp_path):
    """The CLI may read any store, but kybernate-runc restores only from the
    stores the node is configured for."""
    other = tmp_path / "other"
    other.mkdir()
    start_counter(rnode, "src")
    r = kyb(build_dir, rnode, other, "checkpoint", "src", "--name", "elsewhere")
    assert r.returncode == 0, r.stderr
    before = set(snapshots(rnode))
    r = kyb(build_dir, rnode, store, "restore", f"file://{other}/elsewhere", "--name", "z",
            "--log", rnode.logs_dir / "z.log", "--runc-root", rnode.runc_root)
    assert r.returncode == 1
    assert "not configured" in r.stderr, r.stderr
    assert_nothing_left(rnode, "z", before)

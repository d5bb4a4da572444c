# SPDX-License-Identifier: Apache-2.0
"""`kybernate recover` (docs/checkpoint-restore.md, "Recovering after a killed
checkpoint"): what a checkpoint whose CLI was SIGKILLed left behind -- the
container paused, its CUDA processes locked or checkpointed, a staging
directory in the store -- undone from outside.

Each test gets its own node and file store.  The killed checkpoint is a real
one: `kybernate checkpoint --leave-running`, SIGKILLed while containerd's
Tasks.Checkpoint is in flight (a `criu` wrapper on the node holds runc's
return once the dump is written, until the test opens its gate), or once its
log says the CRIU dump starts (the container is paused by then), or, with the
libcuda TEST DOUBLE, once the double's call log shows the GPU lock while the
driver's checkpoint call is held by the double's delay knob.

What is checked:
  (a) killed with the checkpoint call in flight: the cgroup frozen and a
      .staging-* dir in the store; `recover C`, started while the shim is
      still busy with that call (task status unknown), waits behind it and,
      once the call is let go, exits 0 saying it resumed the task and removed
      the leftover; the task is RUNNING with the same pid, the counter goes
      on with no line lost or repeated and its memory checksum intact, the
      store is empty; with no CUDA driver one info line says the GPU step was
      skipped; a second `recover` (--json) says nothing needed doing, exit 0;
  (b) a container that is not there (by id, in another namespace, by pod)
      or containerd unreachable: exit 1 and a clear error; a bad command line
      exits 2;
  (c) GPU double: killed after the GPU checkpoint, mid-dump -> the process is
      CHECKPOINTED and the task paused; `recover` with the driver's restore
      failing (a fault of the double) resumes the task, exits 1 and names the
      process left CHECKPOINTED; `recover` again: the double's log shows
      restore -> unlock, the process is RUNNING, the container counts on.
      Killed while the driver checkpoints -> the process is LOCKED and the
      task still runs; `recover --json` only unlocks it;
  (d) --json output shape; --stop: a paused task is ended, not resumed, and
      a staging dir whose flock a live process holds is left alone.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import procs, tool_path
from tests.harness.checks import wait_for
from tests.integration.test_checkpoint import (Background, Store, assert_counting_on, mem_ok,
                                               start_counter, task_status)
from tests.integration.test_checkpoint_gpu import CudaDouble

SKIPPED_LINE = "no CUDA driver: GPU recovery skipped"
JSON_KEYS = ["container", "pod", "containerName", "namespace", "found", "hadTask", "resumed",
             "stopped", "gpuProcesses", "gpuRestored", "status", "store", "stagingRemoved",
             "nothingToDo", "ok", "message", "error"]


# ------------------------------------------------------------------ helpers

def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("KYBERNATE_", "KYB_CUDA_DOUBLE"))}


@pytest.fixture
def binary(build_dir) -> str:
    return str(build_dir / "cmd" / "kybernate")


@pytest.fixture
def kyb(binary):
    """kyb(*args, node=, store=, json_out=, env=) -> CompletedProcess of the
    CLI at log level info; no CUDA driver unless env names one."""
    def run(*args, node=None, address=None, store=None, json_out=False, env=None, timeout=300):
        cmd = [binary, "--log-level", "info"]
        if address or node is not None:
            cmd += ["--address", str(address or node.socket)]
        if store:
            cmd += ["--store", store]
        if json_out:
            cmd += ["--json"]
        cmd += [str(a) for a in args]
        e = {**_clean_env(), "KYBERNATE_LIBCUDA": "/nonexistent/libcuda.so.1", **(env or {})}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e)
    return run


@pytest.fixture
def start_checkpoint(binary):
    """start_checkpoint(cid, node=, store=, env=) -> Background of
    `kybernate checkpoint cid --leave-running` at log level debug; killed
    after the test if it still runs."""
    started = []

    def start(cid, *, node, store, env=None):
        e = {**_clean_env(), "KYBERNATE_LIBCUDA": "/nonexistent/libcuda.so.1", **(env or {})}
        b = Background([binary, "--address", str(node.socket), "--store", store,
                        "--log-level", "debug", "checkpoint", cid, "--leave-running"], e)
        started.append(b)
        return b

    yield start
    for b in started:
        if b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait()


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store")
    yield s
    subprocess.run(["rm", "-rf", "--one-file-system", str(s.path)], check=False)


@pytest.fixture
def cuda(tmp_path, build_dir):
    return CudaDouble(tmp_path, build_dir)


@pytest.fixture
def gnode(make_node, cuda):
    """A node whose runc runs CRIU through the double's logging wrapper."""
    return make_node("g", env=cuda.node_env())


# The `criu` the gated node's runc finds (paths baked in: runc runs it with
# containerd's environment).  It runs the real CRIU; when a dump has just
# written its inventory into a staging dir of the test's store, it touches
# `marker` and holds there until `gate` exists -- so runc, the shim and
# containerd are still inside Tasks.Checkpoint when the test kills the CLI.
GATED_CRIU = """#!{python}
# TEST wrapper around criu (tests/integration/test_recover.py).
import glob, os, subprocess, sys, time
rc = subprocess.call([{criu!r}] + sys.argv[1:], close_fds=False)
if glob.glob({store!r} + "/.staging-*/criu/inventory.img"):
    open({marker!r}, "w").close()
    while not os.path.exists({gate!r}):
        time.sleep(0.05)
sys.exit(rc)
"""


class Gate:
    def __init__(self, d: Path):
        self.marker, self.gate = d / "dump-done", d / "open"

    def wait_held(self, p: Background) -> None:
        """Until a dump ended and the wrapper holds runc's checkpoint."""
        wait_for(lambda: self.marker.exists() or p.proc.poll() is not None, 120,
                 "the dump held by the criu wrapper", interval=0.01)
        assert self.marker.exists(), f"rc {p.proc.returncode}\n{p.stderr()}"

    def open(self) -> None:
        self.gate.touch()


@pytest.fixture
def gated(make_node, store, tmp_path):
    """(node, Gate): a node whose runc runs CRIU through GATED_CRIU."""
    d = tmp_path / "gate"
    (d / "bin").mkdir(parents=True)
    g = Gate(d)
    real = shutil.which("criu", path=tool_path())
    assert real, f"criu not on {tool_path()}"
    w = d / "bin" / "criu"
    w.write_text(GATED_CRIU.format(python=sys.executable, criu=real, store=str(store.path),
                                   marker=str(g.marker), gate=str(g.gate)))
    w.chmod(0o755)
    node = make_node("r", env={"PATH": f"{d / 'bin'}:{tool_path()}"})
    yield node, g
    g.open()  # never leave a wrapper waiting


def freezer_state(pid: int) -> str:
    """The cgroup-v1 freezer state of the cgroup `pid` is in (FROZEN, THAWED)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "freezer" in controllers.split(","):
            return Path(f"/sys/fs/cgroup/freezer{path}/freezer.state").read_text().strip()
    raise AssertionError(f"pid {pid} has no freezer cgroup")


def kill_checkpoint(p: Background) -> None:
    """SIGKILL: no handler runs, no rollback."""
    p.send(signal.SIGKILL)
    rc = p.finish()
    assert rc == -signal.SIGKILL, f"rc {rc}\n{p.stderr()}"
    assert "rolling back" not in p.stderr() and "rollback" not in p.stderr(), p.stderr()


def wait_paused(node, cid, pid) -> None:
    """The killed checkpoint's dump is over (containerd answers UNKNOWN while
    the shim is busy with it) and the task is PAUSED, its cgroup frozen."""
    wait_for(lambda: task_status(node, cid) == "PAUSED", 120, f"task {cid} PAUSED")
    assert freezer_state(pid) == "FROZEN"


def staging(store) -> list:
    return [e for e in store.entries() if e.startswith(".staging-")]


def assert_json_shape(j: dict) -> None:
    assert list(j) == JSON_KEYS, list(j)
    for k in ("found", "hadTask", "resumed", "stopped", "nothingToDo", "ok"):
        assert isinstance(j[k], bool), (k, j)
    for k in ("gpuProcesses", "gpuRestored"):
        assert isinstance(j[k], int) and j[k] >= 0, (k, j)
    assert isinstance(j["message"], str) and j["message"], j
    assert j["stagingRemoved"] is None or isinstance(j["stagingRemoved"], int), j
    assert (j["error"] is None) == j["ok"], j


# ------------------------------------------------------------------ tests

def test_recover_after_killed_checkpoint(gated, kyb, binary, start_checkpoint, store):
    """(a) SIGKILL while containerd's checkpoint call is in flight: paused,
    frozen, staging left; recover brings it all back; a second recover has
    nothing to do."""
    node, gate = gated
    log, checksum = start_counter(node, "r1", "--file", "/data/state", mem=256)
    pid = node.tasks()["r1"][0]
    oks_before = len(mem_ok(log))

    p = start_checkpoint("r1", node=node, store=store.uri)
    gate.wait_held(p)  # the dump is written; runc has not returned it yet
    kill_checkpoint(p)
    assert freezer_state(pid) == "FROZEN"
    left = staging(store)
    assert len(left) == 1 and left[0].startswith(".staging-r1-"), store.entries()

    # Recover while that call is still in flight (containerd does not cancel
    # it when its client is gone; the shim is busy, the task's status
    # unknown): the resume waits behind it, and recover with it, until the
    # wrapper lets runc return.
    env = {**_clean_env(), "KYBERNATE_LIBCUDA": "/nonexistent/libcuda.so.1"}
    rec = Background([binary, "--address", str(node.socket), "--store", store.uri,
                      "--log-level", "info", "recover", "r1"], env)
    try:
        rec.wait_line("container r1 is ")  # "... is paused|unknown: resuming it"
        assert "resuming it" in rec.stderr(), rec.stderr()
        assert task_status(node, "r1") == "UNKNOWN"  # the shim is busy with the dump
        assert rec.proc.poll() is None, rec.stderr()  # and recover waits behind it
        gate.open()
        rc = rec.finish(timeout=180)
    finally:
        if rec.proc.poll() is None:
            rec.proc.kill()
            rec.proc.wait()
    out, err = rec.stdout(), rec.stderr()
    assert rc == 0, f"rc {rc}\n{out}\n{err}"
    assert out == (f"container r1: was paused, resumed; 0 CUDA process(es), 0 restored and "
                   f"unlocked; task now running; 1 staging leftover(s) removed from "
                   f"{store.uri}\n"), out
    assert "error" not in err, err
    skipped = [ln for ln in err.splitlines() if SKIPPED_LINE in ln]
    assert len(skipped) == 1 and "info" in skipped[0], err
    assert store.entries() == [], store.entries()
    assert freezer_state(pid) == "THAWED"
    assert_counting_on(node, "r1", log, pid=pid)
    wait_for(lambda: len(mem_ok(log)) > oks_before + 1, 60, "'memory ok' after the recovery")
    assert set(mem_ok(log)) == {checksum}

    # Again: nothing needed doing, exit 0 (d: the --json shape of that).
    r = kyb("recover", "r1", node=node, store=store.uri, json_out=True)
    assert r.returncode == 0, f"rc {r.returncode}\n{r.stdout}\n{r.stderr}"
    j = json.loads(r.stdout)
    assert_json_shape(j)
    assert j == {**j, "container": "r1", "pod": None, "containerName": None,
                 "namespace": "default", "found": True, "hadTask": True, "resumed": False,
                 "stopped": False, "gpuProcesses": 0, "gpuRestored": 0, "status": "running",
                 "store": store.uri, "stagingRemoved": 0, "nothingToDo": True, "ok": True,
                 "error": None}, j
    assert j["message"] == ("container r1: was not paused; 0 CUDA process(es), 0 restored and "
                            "unlocked; task now running; nothing needed doing"), j
    assert_counting_on(node, "r1", log, pid=pid)


def test_recover_not_found(node, kyb, store, tmp_path):
    """(b) no such container: exit 1, a clear error, nothing on stdout."""
    start_counter(node, "r2")
    r = kyb("recover", "nosuch", node=node, store=store.uri)
    assert (r.returncode, r.stdout) == (1, ""), f"rc {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert r.stderr.endswith("kybernate: error: recover: container nosuch not found in "
                             "namespace default\n"), r.stderr
    # r2 exists, but not in k8s.io; nor is there such a pod.
    r = kyb("--namespace", "k8s.io", "recover", "r2", node=node)
    assert r.returncode == 1 and "container r2 not found in namespace k8s.io" in r.stderr, \
        r.stderr
    r = kyb("recover", "--pod", "team/web-0", "--container", "main", node=node)
    assert r.returncode == 1, r.stderr
    assert "no container main in pod team/web-0 in containerd namespace k8s.io" in r.stderr, \
        r.stderr
    # --json: the object says so too.
    r = kyb("recover", "nosuch", node=node, json_out=True)
    assert r.returncode == 1, r.stderr
    j = json.loads(r.stdout)
    assert_json_shape(j)
    assert (j["found"], j["ok"], j["status"], j["stagingRemoved"]) == (False, False, None, None)
    assert j["error"] == "recover: container nosuch not found in namespace default", j
    # containerd unreachable (a missing socket: ENOENT) is an error, not "gone".
    sock = tmp_path / "no-containerd.sock"
    r = kyb("recover", "r2", address=sock)
    assert r.returncode == 1 and f"containerd unreachable at {sock}" in r.stderr, r.stderr
    assert "not found" not in r.stderr, r.stderr
    # A bad command line.
    for args in (["recover"], ["recover", "a", "b"], ["recover", "--pod", "x", "--container", "c"],
                 ["recover", "--pod", "ns/p"], ["recover", "--bogus", "r2"]):
        r = kyb(*args, node=node)
        assert r.returncode == 2, (args, r.stderr)
    assert task_status(node, "r2") == "RUNNING"


def test_recover_gpu_checkpointed(gnode, cuda, kyb, start_checkpoint, store):
    """(c) killed mid-dump after the GPU checkpoint: resume, then restore ->
    unlock in the double."""
    log, _ = start_counter(gnode, "g1", mem=64)
    pid = gnode.tasks()["g1"][0]
    cuda.cuda_process(pid)

    p = start_checkpoint("g1", node=gnode, store=store.uri, env=cuda.cli_env())
    p.wait_line("criu_dump ...")
    kill_checkpoint(p)
    assert cuda.proc_state(pid) == "CHECKPOINTED"
    wait_paused(gnode, "g1", pid)
    before = cuda.calls()
    assert before[:2] == [f"lock {pid} CUDA_SUCCESS", f"checkpoint {pid} CUDA_SUCCESS"], before
    assert all(c.startswith("criu ") for c in before[2:]), before

    # The driver's restore fails first: exit 1, the error names what is
    # left (the process still CHECKPOINTED); the task was resumed all the same.
    r = kyb("recover", "g1", node=gnode, store=store.uri,
            env=cuda.cli_env(fail=f"restore:pid={pid}:CUDA_ERROR_UNKNOWN"))
    assert r.returncode == 1, f"rc {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert r.stdout.startswith("container g1: was paused, resumed; 1 CUDA process(es), 0 restored "
                               "and unlocked; task now running"), r.stdout
    assert re.search(r"^kybernate: error: recover container g1: GPU restore: 1 failure\(s\), "
                     rf"not running: pid {pid} CHECKPOINTED: .*CUDA_ERROR_UNKNOWN", r.stderr,
                     re.M), r.stderr
    assert cuda.proc_state(pid) == "CHECKPOINTED"
    assert task_status(gnode, "g1") == "RUNNING"
    before = cuda.calls()

    r = kyb("recover", "g1", node=gnode, store=store.uri, env=cuda.cli_env())
    assert r.returncode == 0, f"rc {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert r.stdout.startswith("container g1: was not paused; 1 CUDA process(es), 1 restored "
                               "and unlocked; task now running"), r.stdout
    assert cuda.calls()[len(before):] == [f"restore {pid} CUDA_SUCCESS",
                                          f"unlock {pid} CUDA_SUCCESS"], cuda.calls()
    assert cuda.proc_state(pid) == "RUNNING"
    assert SKIPPED_LINE not in r.stderr
    assert staging(store) == [], store.entries()
    assert_counting_on(gnode, "g1", log, pid=pid)


def test_recover_gpu_locked(gnode, cuda, kyb, start_checkpoint, store):
    """(c, d) killed while the driver checkpoints (the double's delay): the
    process stays LOCKED, the task was never paused; recover --json unlocks
    it, and restores nothing."""
    log, _ = start_counter(gnode, "g2")
    pid = gnode.tasks()["g2"][0]
    cuda.cuda_process(pid)

    p = start_checkpoint("g2", node=gnode, store=store.uri,
                         env=cuda.cli_env(fail=f"checkpoint:pid={pid}:delay=60000"))
    # The double logs a call before it writes the new state back: wait for
    # LOCKED in the state file itself, so the kill cannot cut that write.
    # The checkpoint call then holds (60 s) before it changes anything.
    wait_for(lambda: f"proc {pid} LOCKED" in cuda.state.read_text() or p.proc.poll() is not None,
             60, "the GPU lock", interval=0.01)
    kill_checkpoint(p)
    assert cuda.proc_state(pid) == "LOCKED"
    assert cuda.calls() == [f"lock {pid} CUDA_SUCCESS"]
    assert task_status(gnode, "g2") == "RUNNING"

    r = kyb("recover", "g2", node=gnode, store=store.uri, json_out=True, env=cuda.cli_env())
    assert r.returncode == 0, f"rc {r.returncode}\n{r.stdout}\n{r.stderr}"
    j = json.loads(r.stdout)
    assert_json_shape(j)
    assert j == {**j, "container": "g2", "found": True, "hadTask": True, "resumed": False,
                 "stopped": False, "gpuProcesses": 1, "gpuRestored": 1, "status": "running",
                 "stagingRemoved": 1, "nothingToDo": False, "ok": True, "error": None}, j
    assert j["message"] == (f"container g2: was not paused; 1 CUDA process(es), 1 restored and "
                            f"unlocked; task now running; 1 staging leftover(s) removed from "
                            f"{store.uri}"), j
    assert cuda.calls() == [f"lock {pid} CUDA_SUCCESS", f"unlock {pid} CUDA_SUCCESS"]
    assert cuda.proc_state(pid) == "RUNNING"
    assert store.entries() == []
    assert_counting_on(gnode, "g2", log, pid=pid)


def test_recover_stop(node, kyb, store):
    """(d) --stop: a paused task (the image published, the container meant to
    hibernate) is ended, not resumed; a live checkpoint's staging dir (its
    flock held) is left alone."""
    log, _ = start_counter(node, "r3")
    pid = node.tasks()["r3"][0]
    node.ctr("tasks", "pause", "r3")
    wait_for(lambda: task_status(node, "r3") == "PAUSED", 30, "task r3 PAUSED")
    # A staging dir a live process holds (a checkpoint still running), and
    # one nobody holds (a dead one's).
    store.path.mkdir(mode=0o700)
    live = store.path / ".staging-other-AbC123"
    dead = store.path / ".staging-r3-XyZ789"
    live.mkdir()
    dead.mkdir()
    holder = subprocess.Popen(["flock", "--exclusive", str(live), "sleep", "600"])
    try:
        wait_for(lambda: subprocess.run(["flock", "--nonblock", str(live), "true"]).returncode
                 != 0, 30, f"{live} locked")
        r = kyb("recover", "r3", "--stop", node=node, store=store.uri, json_out=True)
        assert r.returncode == 0, f"rc {r.returncode}\n{r.stdout}\n{r.stderr}"
        j = json.loads(r.stdout)
        assert_json_shape(j)
        assert j == {**j, "container": "r3", "resumed": False, "stopped": True,
                     "status": "stopped", "stagingRemoved": 1, "nothingToDo": False,
                     "ok": True}, j
        assert re.fullmatch(r"container r3: stopped \(hibernation\); 0 CUDA "
                            r"process\(es\), 0 restored and unlocked; task now stopped; 1 staging "
                            r"leftover\(s\) removed from \S+", j["message"]), j
        assert store.entries() == [live.name], store.entries()
    finally:
        holder.kill()
        holder.wait()
    wait_for(lambda: not procs.alive(pid), 30, f"pid {pid} gone")
    assert task_status(node, "r3") == "STOPPED"

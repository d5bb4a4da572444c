# SPDX-License-Identifier: Apache-2.0
"""The GPU steps of `kybernate checkpoint` (issue "GPU checkpoint and
restore", item 3) on a test node, with the libcuda TEST DOUBLE in place of
the CUDA driver: no GPU is on this machine, so nothing here touches one.

The CLI loads the double through its ordinary dlopen path
(KYBERNATE_LIBCUDA=<build>/tests/doubles/libcuda-double.so).  The double's
state file names the counter container's init process (its host pid, from
`ctr tasks ls`) as a CUDA process, RUNNING; its call log records every driver
call the CLI makes ("lock <pid> CUDA_SUCCESS timeout=10000", ...).

How "before the CRIU dump" is proven: the node's containerd gets a `criu` on
PATH that is a wrapper around the real one.  Each time runc runs CRIU, the
wrapper appends a line "criu <args> state=<pid>:<STATE>,..." to the same call
log, holding the double's state-file lock while it reads the states and
writes the line -- the lock the double holds while it changes a state and logs
the call.  So the call log is one ordered record of driver calls and CRIU
runs, and each CRIU line carries the states the process had at that moment.

What is checked:
  (a) --leave-running: lock -> checkpoint, then every CRIU run sees the
      process CHECKPOINTED, then restore -> unlock; the process ends RUNNING
      in the double, the container counts on, the manifest's gpus and
      timings are filled;
  (a') without --leave-running: lock -> checkpoint -> CRIU, no restore (the
      task is killed with its GPU state);
  (b) the CRIU dump fails after the GPU checkpoint (store on a 16 MiB tmpfs,
      ENOSPC): the error says so, the double shows restore -> unlock, the
      process is RUNNING, the container counts on, no image;
  (c) the GPU lock times out (fault injected in the double): the checkpoint
      fails naming the timeout, CRIU never ran, nothing is left locked, the
      container runs on;
  (d) no driver (KYBERNATE_LIBCUDA names a missing file): the checkpoint
      works as before and one log line says the GPU steps were skipped;
  (e) SIGINT after the GPU lock, while the driver checkpoints (the double's
      `checkpoint:delay=MS` fault: the call takes that long, then succeeds):
      the call ends, then the rollback restores and unlocks the process; no
      CRIU run, exit 130, the container (not --leave-running) runs on.
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
from tests.harness.checks import counts, wait_count, wait_for

GPU_UUID = "GPU-f45a5189-6446-eea1-0596-804e908f0f9a"
GPU_MEMORY = 150109880320
GPU_MODEL = "NVIDIA H200"
SKIPPED_LINE = "no CUDA driver: GPU steps skipped"

# The wrapper the node's runc finds as `criu`.  Paths are baked in: runc runs
# it with containerd's environment, not the CLI's.
CRIU_WRAPPER = """#!{python}
# TEST wrapper around criu (tests/integration/test_checkpoint_gpu.py): logs
# each CRIU run, with the libcuda test double's process states at that
# moment, into the double's call log, then runs the real criu.
import fcntl, os, sys
with open({state!r}) as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    states = [ln.split()[1] + ":" + ln.split()[2] for ln in f if ln.startswith("proc ")]
    with open({log!r}, "a") as log:
        log.write("criu " + ",".join(sys.argv[1:]) + " state=" + ",".join(states) + "\\n")
os.execv({criu!r}, [{criu!r}] + sys.argv[1:])
"""


# ------------------------------------------------------------------ helpers

class CudaDouble:
    """The libcuda test double's world for one test: state file, call log,
    and the criu wrapper that writes into the same log."""

    def __init__(self, tmp_path: Path, build_dir: Path):
        self.lib = build_dir / "tests" / "doubles" / "libcuda-double.so"
        if not self.lib.is_file():
            pytest.fail(f"{self.lib} is not built (tests/doubles; ninja -C {build_dir})",
                        pytrace=False)
        self.dir = tmp_path / "cuda-double"
        self.dir.mkdir()
        self.state = self.dir / "state"
        self.log = self.dir / "calls.log"
        self.state.write_text("# no CUDA process yet\n")
        self.bin = self.dir / "bin"
        self.bin.mkdir()
        real = shutil.which("criu", path=tool_path())
        assert real, f"criu not on {tool_path()}"
        wrapper = self.bin / "criu"
        wrapper.write_text(CRIU_WRAPPER.format(python=sys.executable, state=str(self.state),
                                               log=str(self.log), criu=real))
        wrapper.chmod(0o755)

    def node_env(self) -> dict:
        return {"PATH": f"{self.bin}:{tool_path()}"}

    def cli_env(self, lib=None, fail=None) -> dict:
        env = {"KYBERNATE_LIBCUDA": str(lib or self.lib),
               "KYB_CUDA_DOUBLE_STATE": str(self.state),
               "KYB_CUDA_DOUBLE_LOG": str(self.log)}
        if fail:
            env["KYB_CUDA_DOUBLE_FAIL"] = fail
        return env

    def cuda_process(self, pid: int) -> None:
        """One GPU; `pid` is a CUDA process, RUNNING; an empty call log."""
        self.state.write_text(f"version 13000\n"
                              f"gpu {GPU_UUID} {GPU_MEMORY} {GPU_MODEL}\n"
                              f"proc {pid} RUNNING\n")
        self.log.write_text("")

    def proc_state(self, pid: int) -> str:
        for line in self.state.read_text().splitlines():
            parts = line.split()
            if parts[:2] == ["proc", str(pid)]:
                return parts[2]
        raise AssertionError(f"pid {pid} not in the double's state:\n{self.state.read_text()}")

    def calls(self) -> list:
        """The call log without state queries and cuInit: driver calls as
        "op pid RESULT", CRIU runs as "criu <STATE of each process>"."""
        out = []
        text = self.log.read_text() if self.log.exists() else ""
        for line in text.splitlines():
            parts = line.split()
            if parts[0] in ("getstate", "init"):
                continue
            if parts[0] == "criu":
                out.append("criu " + parts[-1].removeprefix("state="))
            else:
                out.append(" ".join(parts[:3]))
        return out

    def lock_timeout(self) -> int:
        m = re.search(r"^lock \d+ \S+ timeout=(\d+)$", self.log.read_text(), re.M)
        assert m, self.log.read_text()
        return int(m.group(1))


@pytest.fixture
def cuda(tmp_path, build_dir):
    return CudaDouble(tmp_path, build_dir)


@pytest.fixture
def gnode(make_node, cuda):
    """A started node whose runc finds the logging criu wrapper first."""
    return make_node("g", env=cuda.node_env())


@pytest.fixture
def kyb(build_dir):
    """kyb(*args, node=, env=) -> CompletedProcess of the kybernate CLI, at
    log level info (the GPU steps log what they did)."""
    binary = str(build_dir / "cmd" / "kybernate")
    base = {k: v for k, v in os.environ.items()
            if k not in ("KYBERNATE_STORE", "KYBERNATE_CONTAINERD_ADDRESS", "KYBERNATE_NAMESPACE",
                         "KYBERNATE_LIBCUDA", "KYBERNATE_LOG_LEVEL", "KYBERNATE_LOG_FORMAT")
            and not k.startswith("KYB_CUDA_DOUBLE")}

    def run(*args, node, env=None, timeout=300):
        cmd = [binary, "--address", str(node.socket), "--log-level", "info"]
        cmd += [str(a) for a in args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**base, **(env or {})})

    return run


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "store"
    yield path
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


@pytest.fixture
def tmpfs(tmp_path):
    """tmpfs(name, size_mib) -> Path of a fresh tmpfs; unmounted after."""
    mounted = []

    def mount(name, size_mib):
        d = tmp_path / name
        d.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700",
                        "kybtest-store", str(d)], check=True)
        mounted.append(d)
        return d

    yield mount
    left = [m for d in reversed(mounted) for m in procs.unmount_all_under(d)]
    assert not left, f"could not unmount {left}"


def start_counter(node, cid, mem=0):
    argv = ["/usr/bin/counter", "--interval", "100"] + (["--mem", str(mem)] if mem else [])
    log = node.run_container(cid, argv)
    if mem:
        wait_for(lambda: "memory filled" in _read(log), 60, f"'memory filled' in {log}")
    wait_count(log, 3)
    return log, node.tasks()[cid][0]


def _read(path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def assert_counting_on(node, cid, log, pid, more=3):
    """The task is RUNNING with the same pid and its log goes on, no line
    lost or repeated."""
    t = node.tasks().get(cid)
    assert t == (pid, "RUNNING"), node.ctr("tasks", "ls").stdout
    assert procs.alive(pid)
    seen = wait_count(log, counts(log)[-1] + more)
    assert seen == list(range(seen[0], seen[0] + len(seen))), seen
    assert "memory CORRUPT" not in _read(log)


def split_at_criu(calls: list):
    """(driver calls before the first CRIU run, CRIU runs, driver calls after
    the last); fails if a driver call sits between two CRIU runs."""
    idx = [i for i, c in enumerate(calls) if c.startswith("criu ")]
    assert idx, f"CRIU never ran: {calls}"
    assert idx == list(range(idx[0], idx[-1] + 1)), f"driver call amid CRIU runs: {calls}"
    return calls[:idx[0]], calls[idx[0]:idx[-1] + 1], calls[idx[-1] + 1:]


def manifest(store: Path) -> dict:
    (name,) = os.listdir(store)
    return json.loads((store / name / "manifest.json").read_text())


# ------------------------------------------------------------------ tests

def test_gpu_checkpoint_leave_running(gnode, cuda, kyb, store):
    """(a) lock -> checkpoint before CRIU, restore -> unlock after; the
    process ends RUNNING and the container counts on; manifest gpus."""
    log, pid = start_counter(gnode, "c1")
    cuda.cuda_process(pid)

    r = kyb("checkpoint", "c1", "--to", f"file://{store}", "--leave-running", node=gnode,
            env=cuda.cli_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(f"file://{store}/")

    before, criu_runs, after = split_at_criu(cuda.calls())
    assert before == [f"lock {pid} CUDA_SUCCESS", f"checkpoint {pid} CUDA_SUCCESS"]
    # Every CRIU run (runc's version query and the dump) saw the process
    # with its GPU state in host memory.
    assert set(criu_runs) == {f"criu {pid}:CHECKPOINTED"}, criu_runs
    assert after == [f"restore {pid} CUDA_SUCCESS", f"unlock {pid} CUDA_SUCCESS"]
    assert cuda.proc_state(pid) == "RUNNING"
    assert 9000 < cuda.lock_timeout() <= 10000  # the default, 10 s

    assert f"1 CUDA process(es) in the container: pid {pid}" in r.stderr, r.stderr
    assert "GPU restore of 1 CUDA process(es)" in r.stderr, r.stderr
    assert SKIPPED_LINE not in r.stderr

    man = manifest(store)
    assert man["gpus"] == [{"uuid": GPU_UUID, "model": GPU_MODEL, "memoryBytes": GPU_MEMORY,
                            "cudaVersion": 13000, "pids": [pid]}]
    for t in ("gpu_lock", "gpu_checkpoint", "pause", "criu_dump"):
        assert isinstance(man["timings"].get(t), int), man["timings"]
    # The workload ran again before the image was packaged: the manifest
    # holds the resume and the GPU restore, and the log says so first.
    for t in ("resume", "gpu_restore"):
        assert isinstance(man["timings"].get(t), int), man["timings"]
    again = re.search(r"container c1 runs again \d+ ms after it was stopped \(GPU lock to GPU "
                      r"restore\); the image is packaged meanwhile", r.stderr)
    assert again and again.start() < r.stderr.index(" published in "), r.stderr
    v = kyb("images", "verify", r.stdout.strip(), node=gnode)
    assert v.returncode == 0, v.stderr

    assert_counting_on(gnode, "c1", log, pid)


def test_gpu_checkpoint_stop(gnode, cuda, kyb, store):
    """(a') without --leave-running: the GPU checkpoint precedes CRIU, and
    nothing is restored -- the task is killed with its GPU state."""
    log, pid = start_counter(gnode, "c2")
    cuda.cuda_process(pid)

    r = kyb("checkpoint", "c2", "--to", f"file://{store}", node=gnode, env=cuda.cli_env())
    assert r.returncode == 0, r.stderr
    before, criu_runs, after = split_at_criu(cuda.calls())
    assert before == [f"lock {pid} CUDA_SUCCESS", f"checkpoint {pid} CUDA_SUCCESS"]
    assert set(criu_runs) == {f"criu {pid}:CHECKPOINTED"}, criu_runs
    assert after == []
    wait_for(lambda: gnode.tasks().get("c2", (0, ""))[1] == "STOPPED", 30, "task c2 STOPPED")
    wait_for(lambda: not procs.alive(pid), 30, f"pid {pid} gone")
    assert manifest(store)["gpus"][0]["pids"] == [pid]


def test_gpu_rollback_after_dump_failure(gnode, cuda, kyb, tmpfs):
    """(b) CRIU runs out of space after the GPU checkpoint: the error says
    so, the double shows restore -> unlock, the process is RUNNING, the
    container counts on, the store is empty."""
    log, pid = start_counter(gnode, "c3", mem=64)
    full = tmpfs("full", 16)

    for leave in (["--leave-running"], []):
        cuda.cuda_process(pid)
        r = kyb("checkpoint", "c3", "--to", f"file://{full}", "--name", "big", *leave,
                node=gnode, env=cuda.cli_env())
        assert r.returncode == 1, r.stdout + r.stderr
        assert r.stdout == ""
        err = r.stderr
        assert "kybernate: error: checkpoint c3: " in err and "CRIU dump failed" in err, err
        # CRIU's own "No space left on device" line can be cut short by the
        # full file system its log is on; the statvfs note cannot.
        assert "CRIU dump failed: the store's file system is full (" in err, err
        assert "rollback failed" not in err, err

        before, criu_runs, after = split_at_criu(cuda.calls())
        assert before == [f"lock {pid} CUDA_SUCCESS", f"checkpoint {pid} CUDA_SUCCESS"]
        assert set(criu_runs) == {f"criu {pid}:CHECKPOINTED"}, criu_runs
        assert after == [f"restore {pid} CUDA_SUCCESS", f"unlock {pid} CUDA_SUCCESS"]
        assert cuda.proc_state(pid) == "RUNNING"
        assert "rollback: container c3 resumed" in err, err
        assert f"rollback: GPU state of pid {pid} CHECKPOINTED restored" in err, err
        # The container was resumed before its GPU state came back.
        assert err.index("rollback: container c3 resumed") < err.index("rollback: GPU state")

        assert os.listdir(full) == []
        assert_counting_on(gnode, "c3", log, pid)


def test_gpu_lock_timeout(gnode, cuda, kyb, store):
    """(c) the lock times out: a clear error, no dump, nothing left locked,
    the container runs on."""
    log, pid = start_counter(gnode, "c4")
    cuda.cuda_process(pid)

    r = kyb("checkpoint", "c4", "--to", f"file://{store}", "--leave-running",
            "--gpu-lock-timeout", "1.5", node=gnode,
            env=cuda.cli_env(fail=f"lock:pid={pid}:delay=200:timeout"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout == ""
    err = r.stderr
    assert "kybernate: error: checkpoint c4: GPU lock timeout of 1500 ms ran out: GPU lock " \
           "(rolled back: all 1 CUDA process(es) running again): " \
           f"cuCheckpointProcessLock(pid {pid}, timeout " in err, err
    assert "CUDA_ERROR_NOT_READY" in err, err
    # The lock was the only driver call that changed anything, and CRIU never ran.
    assert cuda.calls() == [f"lock {pid} CUDA_ERROR_NOT_READY"]
    assert 1400 < cuda.lock_timeout() <= 1500
    assert cuda.proc_state(pid) == "RUNNING"
    assert not store.exists() or os.listdir(store) == []
    assert_counting_on(gnode, "c4", log, pid)

    # A lock timeout that is not a positive number of seconds is refused.
    for bad in ("0", "-1", "x", "1e9"):
        r = kyb("checkpoint", "c4", "--gpu-lock-timeout", bad, node=gnode, env=cuda.cli_env())
        assert r.returncode == 2 and "--gpu-lock-timeout" in r.stderr, (bad, r.stderr)
    assert cuda.calls() == [f"lock {pid} CUDA_ERROR_NOT_READY"]


def test_no_driver_skips_gpu_steps(gnode, cuda, kyb, store):
    """(d) KYBERNATE_LIBCUDA names a missing file: the checkpoint works as
    before, and one log line says the GPU steps were skipped."""
    log, pid = start_counter(gnode, "c5")
    cuda.cuda_process(pid)  # the double would call it a CUDA process: it is not loaded
    missing = cuda.dir / "no-such-libcuda.so.1"

    r = kyb("checkpoint", "c5", "--to", f"file://{store}", "--leave-running", node=gnode,
            env=cuda.cli_env(lib=missing))
    assert r.returncode == 0, r.stderr
    skipped = [ln for ln in r.stderr.splitlines() if SKIPPED_LINE in ln]
    assert len(skipped) == 1, r.stderr
    assert "info" in skipped[0] and str(missing) in skipped[0], skipped
    assert "CUDA process" not in r.stderr and "GPU restore" not in r.stderr, r.stderr
    assert [c for c in cuda.calls() if not c.startswith("criu ")] == []
    assert cuda.proc_state(pid) == "RUNNING"
    man = manifest(store)
    assert man["gpus"] == []
    assert "gpu_lock" not in man["timings"] and "gpu_checkpoint" not in man["timings"]
    assert_counting_on(gnode, "c5", log, pid)


def test_gpu_interrupt_after_lock(gnode, cuda, store, build_dir, tmp_path):
    """(e) SIGINT while the process is LOCKED and its checkpoint call runs:
    the call ends, the checkpoint stops before the pause, and the rollback
    brings the process back to RUNNING (restore -> unlock)."""
    log, pid = start_counter(gnode, "c6")
    cuda.cuda_process(pid)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KYBERNATE_", "KYB_CUDA_DOUBLE"))}
    env.update(cuda.cli_env(fail=f"checkpoint:pid={pid}:delay=3000"))
    out, err = tmp_path / "cli.out", tmp_path / "cli.err"
    with open(out, "w") as o, open(err, "w") as e:
        p = subprocess.Popen([str(build_dir / "cmd" / "kybernate"), "--address", str(gnode.socket),
                              "--log-level", "info", "checkpoint", "c6", "--to",
                              f"file://{store}"], stdout=o, stderr=e, env=env)
    try:
        # The lock is logged once it is done; the checkpoint call then sleeps.
        wait_for(lambda: f"lock {pid} CUDA_SUCCESS" in cuda.calls() or p.poll() is not None,
                 60, "the GPU lock", interval=0.01)
        assert p.poll() is None, err.read_text()
        p.send_signal(signal.SIGINT)
        rc = p.wait(120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    text = err.read_text()
    assert rc == 130, f"rc {rc}\n{text}"
    assert out.read_text() == ""
    assert "kybernate: error: checkpoint c6: interrupted by SIGINT (after the GPU checkpoint): " \
           "rolled back, the container keeps running\n" in text, text
    assert f"rollback: GPU state of pid {pid} CHECKPOINTED restored" in text, text
    # Every call the checkpoint made was undone; CRIU never ran.
    assert cuda.calls() == [f"lock {pid} CUDA_SUCCESS", f"checkpoint {pid} CUDA_SUCCESS",
                            f"restore {pid} CUDA_SUCCESS", f"unlock {pid} CUDA_SUCCESS"]
    assert cuda.proc_state(pid) == "RUNNING"
    assert not store.exists() or os.listdir(store) == []
    assert_counting_on(gnode, "c6", log, pid)

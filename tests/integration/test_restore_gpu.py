# SPDX-License-Identifier: Apache-2.0
"""GPU restore in kybernate-runc (docs/runtime.md, "GPU state"): after
`runc restore`, every CUDA process of the restored container is restored
onto the mapped GPUs and unlocked; an image whose GPU state this node cannot
take is refused before anything is created.  On a test node, with the libcuda
TEST DOUBLE in place of the CUDA driver: no GPU is on this machine, so
nothing here touches one.

The checkpoint side is test_checkpoint_gpu.py's: the double's state file
names the counter's init (its host pid) a CUDA process, and `kybernate
checkpoint` (without --leave-running) locks and checkpoints it before CRIU
dumps it; the manifest records the double's GPU.

The restore side: the node's containerd -- and so the shim and kybernate-runc
-- runs with KYBERNATE_LIBCUDA naming a symlink to the double and with the
double's state file and call log (KYB_CUDA_DOUBLE_STATE/_LOG).  CRIU brings
the counter back under a NEW host pid, and the real driver would answer for
it from the driver state in its memory: CHECKPOINTED.  The double stands in
for that memory with its `restored counter` rule: the first driver call on a
live pid named "counter" that it has no `proc` line for adopts it as
CHECKPOINTED (tests/doubles/cuda_double.c).  `kybernate restore` then runs
the whole path: containerd -> shim -> kybernate-runc create -> runc restore
-> GPU restore.

Checked:
  - in place (same GPU): the call log shows restore then unlock of the NEW
    pid, it ends RUNNING in the double, the counter goes on from the
    checkpointed count with its memory intact; the same image again onto
    another GPU of the same model: a restore with one GPU pair, the process
    runs on the new GPU;
  - refusals that leave no container, task, snapshot, runc state, cgroup or
    process: another GPU model, no GPU, a remap on a CUDA 12.8 driver, no
    driver at all (all refused before runc restore: no driver call on any
    process), and a GPU restore that fails after runc restore (fault
    injected in the double: the restored container is removed, its process
    killed); too few GPUs is test_runtime_gpu.c's (one GPU is recorded here);
  - kybernate.io/restore-fallback: cold (recorded in the image's spec from
    the checkpointed container's annotation, which `kybernate restore`
    keeps): a GPU restore refused up front, and one that fails after runc
    restore, each start the container afresh instead;
  - the container's GPUs (docs/gpu.md, "Which GPUs a container has"), with
    the double listing two GPUs and KYBERNATE_NVIDIA_PROC naming a FAKE
    nvidia proc dir (the CLI's and the node's: GPU index -> UUID): a
    container given GPU 0 (ctr run --env NVIDIA_VISIBLE_DEVICES=0) records
    only GPU 0; restored as it was it comes back on GPU 0 in place; with
    `kybernate restore --gpus 1` the new spec says NVIDIA_VISIBLE_DEVICES=
    <GPU 1>, the driver gets one pair GPU 0 -> GPU 1 and the counter goes
    on.  A new container given a GPU of another model, none, or too few is
    refused, leaving nothing.  (linux.devices cannot hold /dev/nvidiaN here:
    no such device nodes; tests/unit/test_ops_gpu_spec.c covers that form.)
"""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.harness import procs
from tests.harness.checks import counts, wait_count, wait_for

GPU_A = "GPU-f45a5189-6446-eea1-0596-804e908f0f9a"  # the checkpoint's GPU
GPU_B = "GPU-0c8f3a7e-1d2b-4c5d-8e9f-a0b1c2d3e4f5"  # another GPU of the same model
GPU_MEMORY = 150109880320
GPU_MODEL = "NVIDIA H200"
OTHER_MODEL = "NVIDIA A100-SXM4-80GB"
FALLBACK = "kybernate.io/restore-fallback"
FILLED_RE = re.compile(r"^memory filled \d+ MiB checksum ([0-9a-f]{16})$", re.M)
MEM_OK_RE = re.compile(r"^memory ok ([0-9a-f]{16})$", re.M)


# ------------------------------------------------------------------ fixtures

class CudaDouble:
    """The libcuda test double's world: state file, call log, and the
    library path the node's kybernate-runc loads (a symlink to the double,
    removed to play a node without a driver)."""

    def __init__(self, base: Path, build_dir: Path):
        self.lib = build_dir / "tests" / "doubles" / "libcuda-double.so"
        if not self.lib.is_file():
            pytest.fail(f"{self.lib} is not built (tests/doubles; ninja -C {build_dir})",
                        pytrace=False)
        self.dir = base / "cuda-double"
        self.dir.mkdir()
        self.state = self.dir / "state"
        self.log = self.dir / "calls.log"
        self.node_lib = self.dir / "libcuda.so.1"
        self.node_lib.symlink_to(self.lib)
        self.set()

    def env(self, lib=None) -> dict:
        return {"KYBERNATE_LIBCUDA": str(lib or self.lib),
                "KYB_CUDA_DOUBLE_STATE": str(self.state),
                "KYB_CUDA_DOUBLE_LOG": str(self.log)}

    def set(self, *lines, version=13000, gpus=((GPU_A, GPU_MODEL),)) -> None:
        """A fresh state (the GPUs, then `lines`) and an empty call log."""
        text = f"version {version}\n"
        text += "".join(f"gpu {u} {GPU_MEMORY} {m}\n" for u, m in gpus)
        text += "".join(f"{ln}\n" for ln in lines)
        self.state.write_text(text)
        self.log.write_text("")

    def procs(self) -> dict:
        """{pid: (STATE, [uuids])} of the double's CUDA processes."""
        out = {}
        for line in self.state.read_text().splitlines():
            parts = line.split()
            if parts[:1] == ["proc"]:
                out[int(parts[1])] = (parts[2], parts[3].split(",") if len(parts) > 3 else [])
        return out

    def calls(self) -> list:
        """The call log without state queries and cuInit: "op pid RESULT[ extra]"."""
        return [ln for ln in self.log.read_text().splitlines()
                if ln.split()[0] not in ("getstate", "init")]


@pytest.fixture
def store(tmp_path):
    d = tmp_path / "store"
    d.mkdir()
    yield d
    subprocess.run(["rm", "-rf", "--one-file-system", str(d)], check=False)


@pytest.fixture
def cuda(tmp_path, build_dir):
    return CudaDouble(tmp_path, build_dir)


def write_nvidia_proc(path: Path, gpus) -> None:
    """A FAKE of the NVIDIA driver's proc dir: gpus/<bus id>/information per
    GPU, the way the driver writes it; GPU i is at bus 0000:1i:00.0 with
    device minor i (index order = bus order)."""
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)
    for i, (uuid, model) in enumerate(gpus):
        bus = f"0000:{0x18 + i:02x}:00.0"
        d = path / "gpus" / bus
        d.mkdir(parents=True)
        (d / "information").write_text(
            f"Model: \t\t {model}\nIRQ:   \t\t 187\nGPU UUID: \t {uuid}\n"
            f"Video BIOS: \t 96.00.a5.00.01\nBus Type: \t PCIe\nDMA Size: \t 52 bits\n"
            f"DMA Mask: \t 0xfffffffffffff\nBus Location: \t {bus}\nDevice Minor: \t {i}\n"
            f"GPU Excluded:\t No\n")


@pytest.fixture
def nvproc(tmp_path):
    """The fake nvidia proc dir (KYBERNATE_NVIDIA_PROC of the node and the
    CLI): GPU_A, GPU_B of one model."""
    path = tmp_path / "nvidia-proc"
    write_nvidia_proc(path, ((GPU_A, GPU_MODEL), (GPU_B, GPU_MODEL)))
    return path


@pytest.fixture
def gnode(make_node, store, cuda, tmp_path, nvproc):
    """A node whose kybernate-runc restores from `store`, loads the driver
    double through the symlink, reads the fake nvidia proc dir and logs at
    info level."""
    conf = tmp_path / "kybernate.json"
    conf.write_text(json.dumps({"defaultStore": f"file://{store}"}))
    env = {"KYBERNATE_CONFIG": str(conf),
           "KYBERNATE_RUNTIME_STATE_DIR": str(tmp_path / "runtime-state"),
           "KYBERNATE_LOG_LEVEL": "info",
           "KYBERNATE_NVIDIA_PROC": str(nvproc),
           **cuda.env(lib=cuda.node_lib)}
    return make_node("gr", env=env)


@pytest.fixture
def kyb(build_dir, store):
    """kyb(*args, node=, env=) -> CompletedProcess of the kybernate CLI."""
    binary = str(build_dir / "cmd" / "kybernate")
    base = {k: v for k, v in os.environ.items()
            if k not in ("KYBERNATE_STORE", "KYBERNATE_CONTAINERD_ADDRESS", "KYBERNATE_NAMESPACE",
                         "KYBERNATE_LIBCUDA", "KYBERNATE_LOG_LEVEL", "KYBERNATE_LOG_FORMAT",
                         "KYBERNATE_NVIDIA_PROC")
            and not k.startswith("KYB_CUDA_DOUBLE")}

    def run(*args, node, env=None, timeout=300):
        cmd = [binary, "--address", str(node.socket), "--namespace", "default",
               "--store", f"file://{store}", *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**base, **(env or {})})

    return run


# ------------------------------------------------------------------ helpers

def _read(path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def checkpoint_gpu_counter(node, cuda, kyb, cid, name, annotations=(), env=(),
                           gpus=((GPU_A, GPU_MODEL),), sees="", kyb_env=None):
    """Run the counter (with `env` as --env NAME=VALUE), make its init a
    CUDA process in the double that sees `sees` ("uuid,uuid"; "" = every
    GPU of `gpus`), and checkpoint it (it stops).  Returns (its log, its old
    pid)."""
    extra = [a for k, v in annotations for a in ("--annotation", f"{k}={v}")]
    extra += [a for k, v in env for a in ("--env", f"{k}={v}")]
    log = node.run_container(cid, ["/usr/bin/counter", "--mem", "64", "--file", "/data/state",
                                   "--interval", "100", "--verify-every", "5"], extra=extra)
    wait_count(log, 8)
    pid = node.tasks()[cid][0]
    cuda.set(f"proc {pid} RUNNING {sees}".rstrip(), gpus=gpus)
    r = kyb("checkpoint", cid, "--name", name, node=node, env={**cuda.env(), **(kyb_env or {})})
    assert r.returncode == 0, r.stderr
    ops = [" ".join(c.split()[:3]) for c in cuda.calls()]
    assert ops == [f"lock {pid} CUDA_SUCCESS", f"checkpoint {pid} CUDA_SUCCESS"], ops
    wait_for(lambda: node.tasks().get(cid, (0, ""))[1] == "STOPPED", 30, f"task {cid} STOPPED")
    return log, pid


def restore(node, kyb, ref, new_id, *args, **kw):
    return kyb("restore", ref, "--name", new_id, "--log", node.logs_dir / f"{new_id}.log",
               "--runc-root", node.runc_root, *args, node=node, **kw)


def restored_pid(r, new_id) -> int:
    assert r.returncode == 0, f"restore failed: {r.stderr}"
    cid, pid = r.stdout.split()
    assert cid == new_id
    return int(pid)


def checksum_of(log) -> str:
    filled = FILLED_RE.findall(_read(log))
    assert filled, f"{log}: the counter never reported its memory checksum"
    return filled[0]


def assert_goes_on(old_log, new_log, checksum):
    last = counts(old_log)[-1]
    after = wait_count(new_log, last + 4)
    assert after[0] == last + 1, f"restored counter started at {after[0]}, old one stopped at {last}"
    assert after == list(range(last + 1, after[-1] + 1)), "restored counts are not consecutive"
    wait_for(lambda: MEM_OK_RE.findall(_read(new_log)), 30, "memory ok after restore")
    assert set(MEM_OK_RE.findall(_read(new_log))) == {checksum}
    assert "memory filled" not in _read(new_log), "started fresh, not restored"


def runc_log(node, cid) -> list:
    """kybernate-runc's lines in the task's --log (JSON lines)."""
    path = node.bundles_dir / "default" / cid / "log.json"
    return [json.loads(ln) for ln in _read(path).splitlines() if ln.strip()]


def snapshots(node) -> set:
    return {line.split()[0] for line in
            node.ctr("snapshots", "ls", ns="default").stdout.splitlines()[1:] if line.strip()}


def containers(node) -> list:
    return node.ctr("containers", "ls", "-q", ns="default").stdout.split()


def refused(node, kyb, ref, new_id, *wants, args=(), env=None):
    """`kybernate restore` (with `args`) fails with every one of `wants` in
    its message, and leaves nothing of the new container.  Returns stderr."""
    before = snapshots(node)
    r = restore(node, kyb, ref, new_id, *args, env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout == ""
    for want in wants:
        assert want in r.stderr, f"want {want!r} in: {r.stderr}"
    assert new_id not in containers(node)
    assert new_id not in node.tasks()
    assert snapshots(node) == before
    assert not (node.runc_root / "default" / new_id).exists(), f"runc state of {new_id} left"
    wait_for(lambda: not procs.cgroup_dirs(f"{node.cgroup_parent}/{new_id}"), 10,
             f"cgroup of {new_id} gone")
    return r.stderr


# ------------------------------------------------------------------ tests

def test_gpu_restore_goes_on(gnode, cuda, kyb, store):
    """Restore then unlock of the NEW pid, RUNNING, counting on; then the
    same image onto another GPU of the same model (one GPU pair)."""
    old_log, old_pid = checkpoint_gpu_counter(gnode, cuda, kyb, "counter", "img")
    gpus = json.loads((store / "img" / "manifest.json").read_text())["gpus"]
    assert [(g["uuid"], g["model"], g["pids"]) for g in gpus] == [(GPU_A, GPU_MODEL, [old_pid])]

    # In place: the node has the checkpoint's GPU.
    cuda.set("restored counter")
    pid = restored_pid(restore(gnode, kyb, "img", "r1"), "r1")
    assert pid != old_pid
    assert cuda.calls() == [f"restore {pid} CUDA_SUCCESS pairs=0", f"unlock {pid} CUDA_SUCCESS"]
    assert cuda.procs() == {pid: ("RUNNING", [GPU_A])}
    assert gpu_line(gnode, "r1"), runc_log(gnode, "r1")
    assert gnode.tasks()["r1"] == (pid, "RUNNING")
    assert "r1" in Path(f"/proc/{pid}/cgroup").read_text()
    assert_goes_on(old_log, gnode.logs_dir / "r1.log", checksum_of(old_log))

    # The same image onto GPU_B: the process saw GPU_A (the rule lists the
    # checkpoint's GPU); this node has only GPU_B.
    cuda.set(f"restored counter {GPU_A}", gpus=((GPU_B, GPU_MODEL),))
    pid2 = restored_pid(restore(gnode, kyb, "img", "r2"), "r2")
    assert pid2 not in (pid, old_pid)
    assert cuda.calls() == [f"restore {pid2} CUDA_SUCCESS pairs=1",
                            f"unlock {pid2} CUDA_SUCCESS"]
    assert cuda.procs() == {pid2: ("RUNNING", [GPU_B])}
    line = gpu_line(gnode, "r2")
    assert line and "1 GPU(s) remapped" in line["msg"], runc_log(gnode, "r2")
    maps = [e["msg"] for e in runc_log(gnode, "r2") if "GPU map" in e["msg"]]
    assert maps == [f"GPU map: {GPU_A} -> {GPU_B}"], maps
    assert_goes_on(old_log, gnode.logs_dir / "r2.log", checksum_of(old_log))


def gpu_line(node, cid):
    """kybernate-runc's info line on the GPU restore of cid, or None."""
    for e in runc_log(node, cid):
        if e.get("level") == "info" and "GPU restore of 1 CUDA process(es)" in e.get("msg", ""):
            return e
    return None


def test_gpu_restore_refusals_leave_nothing(gnode, cuda, kyb):
    """Every GPU restore that cannot happen fails with the reason and leaves
    no container behind."""
    checkpoint_gpu_counter(gnode, cuda, kyb, "counter", "img")

    # Another GPU model on this node: refused before runc restore.
    cuda.set("restored counter", gpus=((GPU_B, OTHER_MODEL),))
    err = refused(gnode, kyb, "img", "x1", "kybernate-runc: restore container x1",
                  "the image's GPUs do not fit this node", "GPU model mismatch",
                  f"{GPU_A} ({GPU_MODEL})", OTHER_MODEL)
    assert cuda.calls() == [], err
    assert cuda.procs() == {}

    # No GPU on the node at all: the driver sees none (cuInit: no device).
    cuda.set("restored counter", gpus=())
    refused(gnode, kyb, "img", "x2", "the image holds GPU state of 1 GPU(s), and this node "
            "cannot restore it (no usable CUDA driver)", "no GPU visible")
    assert cuda.procs() == {}

    # Another GPU of the model, but a CUDA 12.8 driver cannot remap.
    cuda.set("restored counter", version=12080, gpus=((GPU_B, GPU_MODEL),))
    refused(gnode, kyb, "img", "x3", "GPU remapping needs CUDA 13.0")
    assert cuda.calls() == [] and cuda.procs() == {}

    # No driver: KYBERNATE_LIBCUDA names a file that is not there.
    cuda.set("restored counter")
    cuda.node_lib.unlink()
    try:
        refused(gnode, kyb, "img", "x4", "the image holds GPU state of 1 GPU(s), and this node "
                "cannot restore it (no usable CUDA driver): no CUDA driver",
                str(cuda.node_lib))
    finally:
        cuda.node_lib.symlink_to(cuda.lib)
    assert cuda.calls() == [] and cuda.procs() == {}

    # The GPU restore fails after runc restore (fault in the double): the
    # restored container is removed, its process killed.
    cuda.set("restored counter", "fail restore:CUDA_ERROR_UNKNOWN")
    refused(gnode, kyb, "img", "x5", "GPU restore: 1 failure(s)",
            "cuCheckpointProcessRestore(pid", "CUDA_ERROR_UNKNOWN")
    (adopted,) = cuda.procs().items()
    pid, (state, _) = adopted
    assert state == "CHECKPOINTED"
    assert cuda.calls() == [f"restore {pid} CUDA_ERROR_UNKNOWN pairs=0"]
    wait_for(lambda: not procs.alive(pid), 30, f"restored pid {pid} gone")

    # And the node still restores the image once the GPU fits.
    cuda.set("restored counter")
    pid = restored_pid(restore(gnode, kyb, "img", "ok"), "ok")
    assert cuda.procs() == {pid: ("RUNNING", [GPU_A])}


def test_gpu_restore_cold_fallback(gnode, cuda, kyb):
    """With kybernate.io/restore-fallback: cold in the image's spec, a GPU
    restore this node refuses starts the container afresh instead."""
    old_log, _ = checkpoint_gpu_counter(gnode, cuda, kyb, "counter", "img",
                                        annotations=[(FALLBACK, "cold")])
    cuda.set("restored counter", gpus=((GPU_B, OTHER_MODEL),))
    r = restore(gnode, kyb, "img", "cold")
    pid = restored_pid(r, "cold")
    log = gnode.logs_dir / "cold.log"
    assert wait_count(log, 3)[:3] == [1, 2, 3], "the cold container did not start afresh"
    assert checksum_of(log) == checksum_of(old_log)  # filled afresh: the same pattern
    text = _read(log)
    assert "restore failed, creating the container normally" in text, text
    assert "GPU model mismatch" in text, text
    assert cuda.calls() == [] and cuda.procs() == {}
    assert gnode.tasks()["cold"] == (pid, "RUNNING")

    # After runc restore: the restored container is removed first, then the
    # container is created normally (on the checkpoint's files).
    cuda.set("restored counter", "fail restore:CUDA_ERROR_UNKNOWN")
    pid = restored_pid(restore(gnode, kyb, "img", "cold2"), "cold2")
    log = gnode.logs_dir / "cold2.log"
    wait_for(lambda: 3 in counts(log), 30, "fresh counts 1, 2, 3")
    # Found here: between runc restore and the GPU restore the restored
    # process runs (only its CUDA calls would block), so it may print a count
    # or two of the checkpoint's sequence into the log before it is killed;
    # the fresh container's counts follow from 1.
    seen = counts(log)
    first = seen.index(1)
    last = counts(old_log)[-1]
    assert seen[:first] == list(range(last + 1, last + 1 + first)), seen
    assert seen[first:first + 3] == [1, 2, 3], seen
    text = _read(log)
    assert "restore failed, creating the container normally" in text, text
    assert "GPU restore: 1 failure(s)" in text, text
    ((adopted, (state, _)),) = cuda.procs().items()
    assert state == "CHECKPOINTED" and adopted != pid
    assert cuda.calls() == [f"restore {adopted} CUDA_ERROR_UNKNOWN pairs=0"]
    wait_for(lambda: not procs.alive(adopted), 30, f"restored pid {adopted} gone")
    assert gnode.tasks()["cold2"] == (pid, "RUNNING")


# ------------------------------------------------------------------ the container's GPUs

def spec_env(node, cid) -> list:
    """process.env of the container's spec, as containerd holds it."""
    info = json.loads(node.ctr("containers", "info", cid).stdout)
    return info["Spec"]["process"]["env"]


def test_gpu_container_restored_onto_the_gpu_it_is_given(gnode, cuda, kyb, store, nvproc):
    """Checkpointed on GPU 0 of two, restored as a new container given GPU 1:
    the map pairs exactly the process's GPU with the new container's."""
    both = ((GPU_A, GPU_MODEL), (GPU_B, GPU_MODEL))
    proc_env = {"KYBERNATE_NVIDIA_PROC": str(nvproc)}
    old_log, old_pid = checkpoint_gpu_counter(
        gnode, cuda, kyb, "counter", "img", env=[("NVIDIA_VISIBLE_DEVICES", "0")], gpus=both,
        sees=GPU_A, kyb_env=proc_env)
    # Only the container's GPU is recorded, not every GPU the driver lists.
    gpus = json.loads((store / "img" / "manifest.json").read_text())["gpus"]
    assert [(g["uuid"], g["pids"]) for g in gpus] == [(GPU_A, [old_pid])]

    # Restored as it was (the spec still says "0", which kybernate-runc
    # reads through the node's nvidia proc dir): in place on GPU 0.
    cuda.set(f"restored counter {GPU_A}", gpus=both)
    pid0 = restored_pid(restore(gnode, kyb, "img", "r0"), "r0")
    assert cuda.calls() == [f"restore {pid0} CUDA_SUCCESS pairs=0", f"unlock {pid0} CUDA_SUCCESS"]
    assert cuda.procs() == {pid0: ("RUNNING", [GPU_A])}
    assert "NVIDIA_VISIBLE_DEVICES=0" in spec_env(gnode, "r0")
    assert_goes_on(old_log, gnode.logs_dir / "r0.log", checksum_of(old_log))

    # A new container given GPU 1: its spec names GPU 1's UUID, the driver
    # gets one pair GPU 0 -> GPU 1, the process runs on GPU 1.
    cuda.set(f"restored counter {GPU_A}", gpus=both)
    r = restore(gnode, kyb, "img", "r1", "--gpus", "1", env=proc_env)
    pid1 = restored_pid(r, "r1")
    env = spec_env(gnode, "r1")
    assert f"NVIDIA_VISIBLE_DEVICES={GPU_B}" in env and "NVIDIA_VISIBLE_DEVICES=0" not in env, env
    assert cuda.calls() == [f"restore {pid1} CUDA_SUCCESS pairs=1", f"unlock {pid1} CUDA_SUCCESS"]
    assert cuda.procs() == {pid1: ("RUNNING", [GPU_B])}
    maps = [e["msg"] for e in runc_log(gnode, "r1") if "GPU map" in e["msg"]]
    assert maps == [f"GPU map: {GPU_A} -> {GPU_B}"], maps
    assert_goes_on(old_log, gnode.logs_dir / "r1.log", checksum_of(old_log))

    # The same by UUID (no proc files needed for that).
    cuda.set(f"restored counter {GPU_A}", gpus=both)
    pid2 = restored_pid(restore(gnode, kyb, "img", "r2", "--gpus", GPU_B), "r2")
    assert cuda.calls() == [f"restore {pid2} CUDA_SUCCESS pairs=1", f"unlock {pid2} CUDA_SUCCESS"]
    assert f"NVIDIA_VISIBLE_DEVICES={GPU_B}" in spec_env(gnode, "r2")


def test_gpu_restore_onto_gpus_that_do_not_fit(gnode, cuda, kyb, nvproc):
    """A new container given a GPU of another model, no GPU (too few), a
    GPU index or UUID the node lacks, "all" or a MIG device: refused with the
    reason (both sides named where the GPUs do not fit), nothing left."""
    other = "GPU-7d3c2b1a-0f9e-4d8c-b7a6-5e4f3a2b1c0d"
    mixed = ((GPU_A, GPU_MODEL), (other, OTHER_MODEL))
    write_nvidia_proc(nvproc, mixed)
    proc_env = {"KYBERNATE_NVIDIA_PROC": str(nvproc)}
    checkpoint_gpu_counter(gnode, cuda, kyb, "counter", "img",
                           env=[("NVIDIA_VISIBLE_DEVICES", GPU_A)], gpus=mixed, sees=GPU_A,
                           kyb_env=proc_env)

    # Given only the other model's GPU: kybernate-runc refuses before runc restore.
    cuda.set(f"restored counter {GPU_A}", gpus=mixed)
    refused(gnode, kyb, "img", "x1", "the image's GPUs do not fit this node",
            f"the checkpoint's GPUs: {GPU_A} ({GPU_MODEL}); the new container's (from "
            f"NVIDIA_VISIBLE_DEVICES): {other} ({OTHER_MODEL})", "GPU model mismatch",
            args=("--gpus", "1"), env=proc_env)
    assert cuda.calls() == [] and cuda.procs() == {}

    # No GPU for GPU state, a GPU index the node lacks, "all": refused by
    # the CLI before anything is created.
    refused(gnode, kyb, "img", "x2", "--gpus none: the image holds GPU state of 1 GPU(s)",
            args=("--gpus", "none"), env=proc_env)
    refused(gnode, kyb, "img", "x3", "--gpus: GPU index 2, and the node has 2 GPU(s)",
            args=("--gpus", "2"), env=proc_env)
    refused(gnode, kyb, "img", "x4", "--gpus all: name the GPUs", args=("--gpus", "all"))
    refused(gnode, kyb, "img", "x5", "names the MIG device", args=("--gpus", "0:1"))
    # A UUID the node's driver does not list: kybernate-runc says so.
    refused(gnode, kyb, "img", "x6", f"the container's GPU {GPU_B} (from NVIDIA_VISIBLE_DEVICES) "
            "is not among the GPUs the CUDA driver lists", args=("--gpus", GPU_B))
    assert cuda.calls() == [] and cuda.procs() == {}

    # Given the right one, it restores.
    pid = restored_pid(restore(gnode, kyb, "img", "ok", "--gpus", "0", env=proc_env), "ok")
    assert cuda.procs() == {pid: ("RUNNING", [GPU_A])}

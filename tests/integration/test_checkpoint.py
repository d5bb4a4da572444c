# SPDX-License-Identifier: Apache-2.0
"""`kybernate checkpoint` on a test node (issue "Node-level checkpoint").

Each test gets its own node (conftest's `node`) and its own file store under
pytest's tmp_path.  The workload is the counter of the test image: with
`--mem` it fills memory with a known pattern and prints "memory ok <sum>"
while the pattern is intact; with `--file` it keeps a rootfs file open and
rewrites "count N" into it.

What is checked (docs/testing.md, "Checkpoint tests"):
  - a --leave-running checkpoint of a 256 MiB counter: the ref printed, the
    image verifies, the manifest (format, source, OCI spec, versions, files
    and their sha256 recomputed here, timings, the rootfs diff with the open
    file), the page images hold the memory, the container counts on;
  - without --leave-running the task ends stopped and nothing ran after the
    dump;
  - --json output, `images ls` (text and --json), `images rm`, an existing
    name is refused and left untouched;
  - failures (container not found / not running, containerd unreachable, a
    read-only store, a full store, a CRIU failure): the message says why, the
    container still runs, the store holds nothing, not even a staging dir;
  - a flipped byte makes `images verify` fail naming the file;
  - interrupts (SIGINT, SIGTERM; docs/checkpoint-restore.md "Interrupts"):
    sent once the CLI has paused the container, they roll the checkpoint
    back -- exit 128+N with "interrupted by SIG...: rolled back", the
    container RUNNING with the same pid and intact memory, no image and no
    staging dir; a second signal only prints "rollback in progress"; the
    agent's worker (kybernate-agent --checkpoint-worker) does the same and
    ends with its JSON error line.
"""

import hashlib
import json
import os
import re
import signal
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from tests.harness import procs
from tests.harness.checks import counts, wait_count, wait_for

MIB = 1024 * 1024
MEM_OK_RE = re.compile(r"^memory ok ([0-9a-f]{16})$", re.M)
FILLED_RE = re.compile(r"^memory filled (\d+) MiB checksum ([0-9a-f]{16})$", re.M)
DEFAULT_NAME_RE = re.compile(r"^(?P<base>.+)-\d{8}-\d{6}$")
TIMINGS = ("pause", "criu_dump", "rootfs_diff", "package")
RESULT_KEYS = {"container", "name", "ref", "digest", "size", "totalMs"}
SUMMARY_KEYS = {"name", "created", "size", "container", "containerName", "podNamespace",
                "podName", "error"}


# ------------------------------------------------------------------ helpers

@pytest.fixture
def kyb(build_dir):
    """kyb(*args, node=, address=, store=, json_out=) -> CompletedProcess of
    the kybernate CLI (global options first, as the CLI wants them)."""
    binary = str(build_dir / "cmd" / "kybernate")
    env = {k: v for k, v in os.environ.items()
           if k not in ("KYBERNATE_STORE", "KYBERNATE_CONTAINERD_ADDRESS", "KYBERNATE_NAMESPACE")}

    def run(*args, node=None, address=None, store=None, json_out=False, timeout=300):
        cmd = [binary]
        if address or node is not None:
            cmd += ["--address", str(address or node.socket)]
        if store:
            cmd += ["--store", store]
        if json_out:
            cmd += ["--json"]
        cmd += [str(a) for a in args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)

    return run


class Background:
    """A command started in the background; its stdout and stderr are
    collected line by line while it runs, so a test can wait for a line
    (e.g. a phase's start) before it sends a signal."""

    def __init__(self, cmd, env, stdin=None):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env)
        self.out, self.err = [], []
        self.pumps = [threading.Thread(target=self._pump, args=(f, buf), daemon=True)
                      for f, buf in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self.pumps:
            t.start()
        if stdin:
            self.proc.stdin.write(stdin)
            self.proc.stdin.close()

    @staticmethod
    def _pump(f, buf):
        for line in f:
            buf.append(line)

    def stdout(self) -> str:
        return "".join(self.out)

    def stderr(self) -> str:
        return "".join(self.err)

    def wait_line(self, needle: str, timeout: float = 120, stream: str = "stderr") -> None:
        """Until `needle` shows in stdout/stderr; fails if the command ends first."""
        text = self.stdout if stream == "stdout" else self.stderr

        def seen():
            if needle in text():
                return True
            assert self.proc.poll() is None, (f"ended (rc {self.proc.returncode}) before "
                                              f"{needle!r}:\n{self.stdout()}\n{self.stderr()}")
            return False
        wait_for(seen, timeout, f"{needle!r} from {self.proc.args[0]}", interval=0.01)

    def send(self, sig) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = 300) -> int:
        rc = self.proc.wait(timeout)
        for t in self.pumps:
            t.join(10)
        return rc


@pytest.fixture
def kyb_start(build_dir):
    """kyb_start(*args, node=, store=) -> Background of the kybernate CLI at
    log level debug (each phase's start is a line: "criu_dump ...")."""
    binary = str(build_dir / "cmd" / "kybernate")
    env = {k: v for k, v in os.environ.items()
           if k not in ("KYBERNATE_STORE", "KYBERNATE_CONTAINERD_ADDRESS", "KYBERNATE_NAMESPACE",
                        "KYBERNATE_LOG_LEVEL", "KYBERNATE_LOG_FORMAT", "KYBERNATE_AGENT_SOCKET",
                        "KYBERNATE_UPLOADER_SOCKET")}
    started = []

    def start(*args, node, store):
        b = Background([binary, "--address", str(node.socket), "--store", store,
                        "--log-level", "debug"] + [str(a) for a in args], env)
        started.append(b)
        return b

    yield start
    for b in started:  # a failed test must not leave a checkpoint running
        if b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait()


class Store:
    def __init__(self, path: Path):
        self.path = path
        self.uri = f"file://{path}"

    def entries(self) -> list:
        """Everything in the store dir, hidden entries (.staging-*) included."""
        return sorted(os.listdir(self.path)) if self.path.exists() else []

    def image(self, name: str) -> Path:
        return self.path / name


@pytest.fixture
def store(tmp_path):
    """A store dir that does not exist yet (the checkpoint creates it); its
    images (hundreds of MiB) are removed after the test."""
    s = Store(tmp_path / "store")
    yield s
    subprocess.run(["rm", "-rf", "--one-file-system", str(s.path)], check=False)


@pytest.fixture
def tmpfs(tmp_path):
    """tmpfs(name, size_mib, ro=False) -> Path of a fresh tmpfs (mode 0700);
    unmounted after the test."""
    mounted = []

    def mount(name, size_mib, ro=False):
        d = tmp_path / name
        d.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700",
                        "kybtest-store", str(d)], check=True)
        mounted.append(d)
        return d

    yield mount
    left = [m for d in reversed(mounted) for m in procs.unmount_all_under(d)]
    assert not left, f"could not unmount {left}"


def remount_ro(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def start_counter(node, cid, *args, mem=0, filled_timeout=60):
    """Runs the counter (--interval 100, plus args) and waits until it has
    filled its memory and counted a few lines; returns (log, checksum)."""
    argv = ["/usr/bin/counter", "--interval", "100"]
    if mem:
        argv += ["--mem", str(mem)]
    log = node.run_container(cid, argv + list(args))
    checksum = None
    if mem:
        m = wait_for(lambda: FILLED_RE.search(_read(log)), filled_timeout,
                     f"'memory filled' in {log}")
        assert int(m.group(1)) == mem
        checksum = m.group(2)
    wait_count(log, 3)
    return log, checksum


def _read(path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def mem_ok(log) -> list:
    return MEM_OK_RE.findall(_read(log))


def task_status(node, cid):
    t = node.tasks().get(cid)
    return t[1] if t else None


def assert_counting_on(node, cid, log, pid=None, more=3):
    """The container runs (RUNNING, same pid) and its log goes on counting."""
    assert task_status(node, cid) == "RUNNING", node.ctr("tasks", "ls").stdout
    if pid is not None:
        assert node.tasks()[cid][0] == pid and procs.alive(pid)
    last = counts(log)[-1]
    seen = wait_count(log, last + more)
    assert "memory CORRUPT" not in _read(log)
    # No line lost or repeated across the checkpoint.
    assert seen == list(range(seen[0], seen[0] + len(seen))), seen
    return seen


def assert_failed_cleanly(r, store, *needles):
    """A failed checkpoint: exit 1, no ref on stdout, the reason on stderr, and
    nothing in the store (no image, no .staging-* dir)."""
    assert r.returncode == 1, f"rc {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert r.stdout == "", r.stdout
    assert r.stderr.startswith("kybernate: error: checkpoint "), r.stderr
    for n in needles:
        assert n in r.stderr, f"{n!r} not in the error:\n{r.stderr}"
    assert store.entries() == [], f"store {store.path} not empty: {store.entries()}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


def image_files(image: Path) -> dict:
    """Relative path -> size of every regular file of an image but the manifest."""
    out = {}
    for dirpath, dirs, files in os.walk(image):
        for f in files:
            p = Path(dirpath) / f
            rel = str(p.relative_to(image))
            if rel != "manifest.json":
                out[rel] = p.stat().st_size
    return out


def inspect(kyb, ref) -> dict:
    r = kyb("images", "inspect", ref)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def state_count(image: Path) -> int:
    """The "count N" the counter had written into /data/state, from the
    image's rootfs diff."""
    with tarfile.open(image / "rootfs-diff.tar") as tar:
        names = tar.getnames()
        assert "data/state" in names, names
        text = tar.extractfile("data/state").read().decode()
    m = re.fullmatch(r"count (\d+)\n", text)
    assert m, f"data/state holds {text!r}"
    return int(m.group(1))


# ------------------------------------------------------------------ tests

def test_checkpoint_leave_running(node, kyb, store):
    """256 MiB of known memory and an open, modified rootfs file; the default
    image name; the container runs on."""
    log, checksum = start_counter(node, "c1", "--file", "/data/state", mem=256)
    pid = node.tasks()["c1"][0]
    oks_before = len(mem_ok(log))
    before = counts(log)[-1]

    r = kyb("checkpoint", "c1", "--to", store.uri, "--leave-running", node=node)
    after = counts(log)[-1]
    assert r.returncode == 0, r.stderr
    ref = r.stdout.strip()
    assert r.stdout.count("\n") == 1, r.stdout
    assert ref.startswith(f"file://{store.path}/"), ref
    name = ref.rsplit("/", 1)[1]
    m = DEFAULT_NAME_RE.match(name)
    assert m and m.group("base") == "c1", f"default name {name!r}"
    assert store.entries() == [name]
    image = store.image(name)
    # Images hold process memory: the store and image dirs are private.
    assert store.path.stat().st_mode & 0o777 == 0o700
    assert image.stat().st_mode & 0o777 == 0o700

    v = kyb("images", "verify", ref)
    assert v.returncode == 0, v.stderr
    assert re.fullmatch(rf"{re.escape(name)}: ok \(\d+ files match their sha256\)\n", v.stdout)

    man = inspect(kyb, ref)
    assert man == json.loads((image / "manifest.json").read_bytes())
    assert man["kybernateImage"] == 1
    assert man["name"] == name
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", man["created"]), man["created"]
    src = man["source"]
    assert src["containerId"] == "c1" and src["namespace"] == "default", src
    assert src["imageRef"] == "kybernate.test/busybox:1" and src["snapshotter"] == "overlayfs"
    assert "pod" not in src
    spec = man["runtime"]["spec"]
    assert spec["ociVersion"].startswith("1."), spec.get("ociVersion")
    assert spec["process"]["args"] == ["/usr/bin/counter", "--interval", "100", "--mem", "256",
                                       "--file", "/data/state"]
    assert man["runtime"]["name"] == "io.containerd.runc.v2"
    vers = man["versions"]
    assert re.match(r"4\.\d+", vers["criu"]), vers
    assert vers["kernel"] == os.uname().release, vers
    server = node.ctr("version", ns=None).stdout.split("Server:", 1)[1]
    assert vers["containerd"] == re.search(r"Version:\s+(\S+)", server).group(1), vers
    assert vers["kybernate"] == kyb("--version").stdout.split()[-1], vers
    assert man["gpus"] == []
    assert man["options"] == {"leaveRunning": True, "tcpEstablished": False, "extUnixSk": False,
                              "fileLocks": False}

    # files: sorted, exactly what is on disk, sizes and digests right.
    files = man["files"]
    paths = [f["path"] for f in files]
    assert paths == sorted(paths)
    assert {f["path"]: f["size"] for f in files} == image_files(image)
    assert all(re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) for f in files)
    by_path = {f["path"]: f for f in files}
    pages = [p for p in paths if re.fullmatch(r"criu/pages-\d+\.img", p)]
    assert pages, paths
    for p in ["criu/inventory.img", "criu/core-1.img", "rootfs-diff.tar", pages[0]]:
        assert p in by_path, paths
        assert sha256_file(image / p) == by_path[p]["sha256"], p
    # The page images hold the 256 MiB the counter wrote.
    assert sum(by_path[p]["size"] for p in pages) >= 256 * MIB
    # Files over 64 MiB are also pinned chunk by chunk (docs/image-format.md,
    # "Chunk digests"): every chunk digest is its byte range's sha256.
    big = [f for f in files if f["size"] > 64 * MIB]
    assert big, files
    assert all("chunks" not in f for f in files if f["size"] <= 64 * MIB)
    for f in big:
        ch = f["chunks"]
        assert ch["size"] == 64 * MIB
        assert len(ch["sha256"]) == -(-f["size"] // ch["size"])
        with open(image / f["path"], "rb") as fh:
            for want in ch["sha256"]:
                assert hashlib.sha256(fh.read(ch["size"])).hexdigest() == want, f["path"]
    # A flipped byte in the last chunk of the biggest file: named with its chunk.
    f = max(big, key=lambda x: x["size"])
    last = len(f["chunks"]["sha256"]) - 1
    with open(image / f["path"], "r+b") as fh:
        fh.seek(f["size"] - 1)
        orig = fh.read(1)
        fh.seek(f["size"] - 1)
        fh.write(bytes([orig[0] ^ 1]))
    v = kyb("images", "verify", ref)
    assert v.returncode == 1, v.stdout + v.stderr
    assert f"file {f['path']} chunk {last} (bytes {last * 64 * MIB}-{f['size'] - 1}) has " \
        "sha256" in v.stderr, v.stderr
    with open(image / f["path"], "r+b") as fh:
        fh.seek(f["size"] - 1)
        fh.write(orig)
    assert kyb("images", "verify", ref).returncode == 0

    timings = man["timings"]
    for t in TIMINGS:
        assert isinstance(timings.get(t), int) and timings[t] >= 0, timings
    # --leave-running: the container ran again as soon as the dump and the
    # rootfs diff were done, before the image was hashed and the manifest
    # written -- so the manifest can hold the resume's timing.
    assert isinstance(timings.get("resume"), int), timings

    # The rootfs diff holds the open, rewritten file, taken at the dump.
    assert man["rootfs"]["entries"] >= 1 and man["rootfs"]["deleted"] == []
    n = state_count(image)
    assert before <= n <= after + 1, (before, n, after)

    # The container goes on: new lines after the checkpoint, memory intact.
    assert_counting_on(node, "c1", log, pid=pid)
    wait_for(lambda: len(mem_ok(log)) > oks_before + 1, 60, "'memory ok' after the checkpoint")
    assert set(mem_ok(log)) == {checksum}


def test_checkpoint_stops_container(node, kyb, store):
    """Without --leave-running the task is stopped after the image is
    published, and nothing ran after the dump."""
    log, _ = start_counter(node, "c2", "--file", "/data/state", mem=64)
    pid = node.tasks()["c2"][0]

    # --file-locks: the dump option is recorded for the restore to repeat.
    r = kyb("checkpoint", "c2", "--name", "stopped", "--file-locks", store=store.uri, node=node)

    # The image exists and verifies, whatever the exit code said.
    assert store.entries() == ["stopped"], (store.entries(), r.stderr)
    v = kyb("images", "verify", "stopped", store=store.uri)
    assert v.returncode == 0, v.stderr
    assert inspect(kyb, f"{store.uri}/stopped")["options"] == {
        "leaveRunning": False, "tcpEstablished": False, "extUnixSk": False, "fileLocks": True}
    # The task ends STOPPED and its process is gone.
    wait_for(lambda: task_status(node, "c2") == "STOPPED", 30, "task c2 STOPPED")
    wait_for(lambda: not procs.alive(pid), 30, f"pid {pid} gone")
    # Killed while frozen: the last line of the log is the state of the dump
    # (the counter prints "count N" before writing it to the file).
    last = counts(log)[-1]
    assert state_count(store.image("stopped")) in (last, last - 1), last
    assert "counter stopped" not in _read(log)  # SIGKILL, not a clean exit

    assert r.returncode == 0, f"rc {r.returncode}: {r.stderr}"
    assert r.stdout == f"{store.uri}/stopped\n"
    assert r.stderr == ""


def test_json_ls_rm_and_existing_name(node, kyb, store):
    log, _ = start_counter(node, "c3")
    pid = node.tasks()["c3"][0]

    r = kyb("checkpoint", "c3", "--to", store.uri, "--name", "a", "--leave-running",
            node=node, json_out=True)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert set(res) == RESULT_KEYS, res
    assert res["container"] == "c3" and res["name"] == "a"
    assert res["ref"] == f"{store.uri}/a"
    image = store.image("a")
    manifest_bytes = (image / "manifest.json").read_bytes()
    assert res["digest"] == "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
    on_disk = sum(image_files(image).values()) + len(manifest_bytes)
    assert res["size"] == on_disk
    assert isinstance(res["totalMs"], int) and res["totalMs"] > 0

    r = kyb("checkpoint", "c3", "--to", store.uri, "--name", "b", "--leave-running", node=node)
    assert r.returncode == 0, r.stderr

    # images ls: text and JSON, sorted by name; the positional store works too.
    ls = kyb("images", "ls", store=store.uri)
    assert ls.returncode == 0, ls.stderr
    lines = ls.stdout.splitlines()
    assert lines[0].split() == ["NAME", "CREATED", "SIZE", "SOURCE"]
    assert [ln.split()[0] for ln in lines[1:]] == ["a", "b"]
    assert all(ln.split()[-1] == "c3" for ln in lines[1:]), lines
    assert kyb("images", "ls", store.uri).stdout == ls.stdout
    lj = kyb("images", "ls", store=store.uri, json_out=True)
    assert lj.returncode == 0, lj.stderr
    items = json.loads(lj.stdout)
    assert [i["name"] for i in items] == ["a", "b"]
    for i in items:
        assert set(i) == SUMMARY_KEYS, i
        assert i["container"] == "c3" and i["error"] is None
        assert i["created"] == inspect(kyb, f"{store.uri}/{i['name']}")["created"]
    assert items[0]["size"] == res["size"]

    # An existing name: refused, the image untouched, the container runs on.
    mtime = (image / "manifest.json").stat().st_mtime_ns
    r = kyb("checkpoint", "c3", "--to", store.uri, "--name", "a", "--leave-running", node=node)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout == ""
    assert "image a already exists" in r.stderr and str(store.path) in r.stderr, r.stderr
    assert (image / "manifest.json").read_bytes() == manifest_bytes
    assert (image / "manifest.json").stat().st_mtime_ns == mtime
    assert store.entries() == ["a", "b"]
    assert kyb("images", "verify", "a", store=store.uri).returncode == 0
    assert_counting_on(node, "c3", log, pid=pid)

    # images rm: by full ref and by name; gone from disk and from ls.
    rm = kyb("images", "rm", f"{store.uri}/a")
    assert rm.returncode == 0 and rm.stdout == "a\n", rm.stdout + rm.stderr
    assert store.entries() == ["b"]  # no .deleting-* left either
    assert [i["name"] for i in json.loads(kyb("images", "ls", store=store.uri,
                                              json_out=True).stdout)] == ["b"]
    rm = kyb("images", "rm", "b", store=store.uri)
    assert rm.returncode == 0, rm.stderr
    assert store.entries() == []
    assert kyb("images", "ls", store=store.uri).stdout.splitlines()[1:] == []
    assert json.loads(kyb("images", "ls", store=store.uri, json_out=True).stdout) == []
    rm = kyb("images", "rm", "b", store=store.uri)
    assert rm.returncode == 1 and "b" in rm.stderr, rm.stdout + rm.stderr


# ------------------------------------------------------------ failures

def test_error_container_not_found(node, kyb, store):
    log, _ = start_counter(node, "c4")
    r = kyb("checkpoint", "nosuch", "--to", store.uri, "--leave-running", node=node)
    assert_failed_cleanly(r, store, "container nosuch not found in namespace default")
    # In another namespace c4 does not exist either.
    r = kyb("--namespace", "k8s.io", "checkpoint", "c4", "--to", store.uri, node=node)
    assert_failed_cleanly(r, store, "container c4 not found in namespace k8s.io")
    assert_counting_on(node, "c4", log)


def test_error_container_not_running(node, kyb, store):
    log, _ = start_counter(node, "run")
    start_counter(node, "dead")
    node.ctr("tasks", "kill", "--signal", "KILL", "dead")
    wait_for(lambda: task_status(node, "dead") == "STOPPED", 30, "task dead STOPPED")

    r = kyb("checkpoint", "dead", "--to", store.uri, node=node)
    assert_failed_cleanly(r, store, "container dead is not running (task status stopped)")

    node.ctr("tasks", "delete", "dead")
    r = kyb("checkpoint", "dead", "--to", store.uri, "--leave-running", node=node)
    assert_failed_cleanly(r, store, "container dead is not running (it has no task)")
    assert "dead" not in node.tasks()
    assert_counting_on(node, "run", log)


def test_error_containerd_unreachable(node, kyb, store, tmp_path):
    log, _ = start_counter(node, "c5")
    sock = tmp_path / "no-containerd.sock"
    r = kyb("checkpoint", "c5", "--to", store.uri, "--leave-running", address=sock)
    assert_failed_cleanly(r, store, f"containerd unreachable at {sock}")
    assert not store.path.exists()
    assert_counting_on(node, "c5", log)


def test_error_store_read_only(node, kyb, tmpfs):
    log, _ = start_counter(node, "c6")
    pid = node.tasks()["c6"][0]
    mnt = tmpfs("ro", 16)
    (mnt / "store").mkdir(mode=0o700)
    remount_ro(mnt)

    for s in (Store(mnt / "store"), Store(mnt / "absent")):
        for leave in ([], ["--leave-running"]):
            r = kyb("checkpoint", "c6", "--to", s.uri, *leave, node=node)
            assert_failed_cleanly(r, s, f"store {s.path} is on a read-only file system")
            assert_counting_on(node, "c6", log, pid=pid)
    assert sorted(os.listdir(mnt)) == ["store"]


def test_error_store_full(node, kyb, tmpfs):
    """CRIU runs out of space writing 256 MiB of pages into a 16 MiB store:
    the error quotes CRIU's log, the container resumes, the store is empty."""
    log, checksum = start_counter(node, "c7", mem=256)
    pid = node.tasks()["c7"][0]
    s = Store(tmpfs("full", 16))

    for leave in (["--leave-running"], []):
        r = kyb("checkpoint", "c7", "--to", s.uri, "--name", "big", *leave, node=node)
        # CRIU's "No space left on device" can be cut short: its log is on
        # the full file system too; the statvfs note says it in any case.
        assert_failed_cleanly(r, s, "CRIU dump failed: the store's file system is full (",
                              "; CRIU's log says:")
        assert re.search(r"^\(\d+\.\d+\) Error \(criu/", r.stderr, re.M), r.stderr
        # Everything CRIU wrote is gone: the tmpfs is empty again.
        st = os.statvfs(s.path)
        assert st.f_bfree == st.f_blocks, f"{(st.f_blocks - st.f_bfree) * st.f_frsize} bytes used"
        oks = len(mem_ok(log))
        assert_counting_on(node, "c7", log, pid=pid)
        wait_for(lambda: len(mem_ok(log)) > oks, 60, "'memory ok' after the failed checkpoint")
        assert set(mem_ok(log)) == {checksum}


def test_error_criu_fails(node, kyb, store):
    """A file the container holds open after deleting it, bigger than CRIU's
    ghost-file limit (1 MiB; neither containerd nor runc raise it), makes the
    dump fail."""
    script = ("dd if=/dev/zero of=/data/big bs=1M count=4 2>/dev/null && exec 3</data/big && "
              "rm /data/big && exec /usr/bin/counter --interval 100")
    log = node.run_container("c8", ["/bin/sh", "-c", script])
    wait_count(log, 3)
    pid = node.tasks()["c8"][0]

    for leave in (["--leave-running"], []):
        r = kyb("checkpoint", "c8", "--to", store.uri, *leave, node=node)
        assert_failed_cleanly(r, store, "CRIU dump failed; CRIU's log says:",
                              "Can't dump ghost file /data/big")
        assert_counting_on(node, "c8", log, pid=pid)


def test_verify_detects_flipped_byte(node, kyb, store):
    start_counter(node, "c9", "--file", "/data/state", mem=8)
    r = kyb("checkpoint", "c9", "--to", store.uri, "--name", "img", "--leave-running", node=node)
    assert r.returncode == 0, r.stderr
    ref = r.stdout.strip()
    image = store.image("img")
    assert kyb("images", "verify", ref).returncode == 0

    pages = sorted(image.glob("criu/pages-*.img"))[0]
    for f in (pages, image / "criu" / "core-1.img", image / "rootfs-diff.tar"):
        rel = str(f.relative_to(image))
        data = bytearray(f.read_bytes())
        orig = bytes(data)
        data[len(data) // 2] ^= 0x01
        f.write_bytes(data)
        v = kyb("images", "verify", ref)
        assert v.returncode == 1, v.stdout + v.stderr
        assert v.stdout == ""
        assert rel in v.stderr, f"{rel} not named:\n{v.stderr}"
        f.write_bytes(orig)
        v = kyb("images", "verify", ref)
        assert v.returncode == 0, v.stderr

    # A file that is not listed, and a listed file that is missing.
    extra = image / "criu" / "extra.img"
    extra.write_bytes(b"x")
    v = kyb("images", "verify", ref)
    assert v.returncode == 1 and "criu/extra.img is not listed" in v.stderr, v.stderr
    extra.unlink()
    core = image / "criu" / "core-1.img"
    keep = core.read_bytes()
    core.unlink()
    v = kyb("images", "verify", ref)
    assert v.returncode == 1 and "criu/core-1.img listed in the manifest is missing" in v.stderr
    core.write_bytes(keep)
    assert kyb("images", "verify", ref).returncode == 0


# ------------------------------------------------------------ interrupts

INTERRUPTED = ("interrupted by {sig} \\(({where})\\): rolled back, the container keeps "
               "running")


def assert_interrupted(rc, stdout, stderr, sig, where, store):
    """Stopped by `sig` at a phase boundary matching `where` (a regex) and
    rolled back: exit 128+N, nothing on stdout, the container resumed, and
    the store holds nothing, not even a staging dir."""
    assert rc == 128 + sig, f"rc {rc}\nstdout: {stdout}\nstderr: {stderr}"
    assert stdout == "", stdout
    name = signal.Signals(sig).name
    assert re.search(r"^kybernate: error: checkpoint \S+: " + INTERRUPTED.format(sig=name,
                     where=where) + "$", stderr, re.M), stderr
    assert "rollback failed" not in stderr, stderr
    # It was paused: the rollback resumed it.
    assert re.search(r"rollback: container \S+ resumed", stderr), stderr
    assert store.entries() == [], f"store {store.path} not empty: {store.entries()}"


def test_interrupt_sigint_during_dump(node, kyb, kyb_start, store):
    """Ctrl-C while CRIU dumps 512 MiB: the dump ends, then the rollback runs;
    a second signal (SIGTERM here, so it cannot merge with the pending SIGINT)
    neither kills the CLI nor changes the outcome."""
    log, checksum = start_counter(node, "i1", "--file", "/data/state", mem=512)
    pid = node.tasks()["i1"][0]
    oks_before = len(mem_ok(log))

    p = kyb_start("checkpoint", "i1", "--leave-running", node=node, store=store.uri)
    p.wait_line("criu_dump ...")
    p.send(signal.SIGINT)
    p.send(signal.SIGTERM)
    rc = p.finish()
    err = p.stderr()
    assert_interrupted(rc, p.stdout(), err, signal.SIGINT,
                       "after the CRIU dump|after the rootfs diff|before the publish", store)
    assert "kybernate: rollback in progress, please wait" in err, err
    assert "interrupted by SIGTERM" not in err, err

    assert kyb("images", "ls", store=store.uri).stdout.splitlines()[1:] == []
    assert_counting_on(node, "i1", log, pid=pid)
    wait_for(lambda: len(mem_ok(log)) > oks_before + 1, 60, "'memory ok' after the rollback")
    assert set(mem_ok(log)) == {checksum}


def test_interrupt_sigterm_keeps_container(node, kyb_start, store):
    """SIGTERM right after the pause, without --leave-running (the container
    would have been stopped): it is resumed instead and keeps running."""
    log, checksum = start_counter(node, "i2", mem=256)
    pid = node.tasks()["i2"][0]
    oks_before = len(mem_ok(log))

    p = kyb_start("checkpoint", "i2", "--name", "never", node=node, store=store.uri)
    p.wait_line("pause ...")
    p.send(signal.SIGTERM)
    rc = p.finish()
    err = p.stderr()
    assert_interrupted(rc, p.stdout(), err, signal.SIGTERM,
                       "after the pause|after the CRIU dump|after the rootfs diff|"
                       "before the publish", store)
    assert "rollback in progress" not in err, err  # one signal, no notice

    assert_counting_on(node, "i2", log, pid=pid)
    wait_for(lambda: len(mem_ok(log)) > oks_before + 1, 60, "'memory ok' after the rollback")
    assert set(mem_ok(log)) == {checksum}


def test_interrupt_agent_worker(node, build_dir, store):
    """The same operation in kybernate-agent's worker process: SIGTERM sent to
    the worker mid-dump rolls back in the worker, which ends with its JSON
    error line and exit 1 (worker.h); the container runs on."""
    log, checksum = start_counter(node, "i3", mem=256)
    pid = node.tasks()["i3"][0]
    oks_before = len(mem_ok(log))
    job = json.dumps({"address": str(node.socket), "namespace": "default", "containerId": "i3",
                      "store": store.uri, "name": "never"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYBERNATE_")}
    w = Background([str(build_dir / "cmd" / "kybernate-agent"), "--checkpoint-worker",
                    "--log-level", "info"], env, stdin=job)
    try:
        w.wait_line('"criu_dump"', stream="stdout")  # {"phase": "criu_dump", "done": false}
        w.send(signal.SIGTERM)
        rc = w.finish()
    finally:
        if w.proc.poll() is None:
            w.proc.kill()
    lines = [json.loads(ln) for ln in w.stdout().splitlines()]
    assert rc == 1, f"rc {rc}\n{w.stdout()}\n{w.stderr()}"
    e = lines[-1].get("error")
    assert e is not None, lines
    assert re.fullmatch(r"checkpoint i3: " + INTERRUPTED.format(
        sig="SIGTERM", where="after the CRIU dump|after the rootfs diff|before the publish"),
        e["message"]), e
    assert "ref" not in e, e
    assert not any("result" in ln for ln in lines), lines
    assert "rollback: container i3 resumed" in w.stderr(), w.stderr()
    assert store.entries() == [], store.entries()
    assert_counting_on(node, "i3", log, pid=pid)
    wait_for(lambda: len(mem_ok(log)) > oks_before + 1, 60, "'memory ok' after the rollback")
    assert set(mem_ok(log)) == {checksum}

# SPDX-License-Identifier: Apache-2.0
"""kybernate-runc restores on create (docs/runtime.md), driven the way
Kubernetes drives it: the tests play kubelet through CRI (tests/harness/cri.py)
against a test node whose `kybernate` handler runs kybernate-runc.

A counter pod runs under the default handler and is checkpointed with the real
CLI (`kybernate checkpoint`, which stops it); a NEW pod of the same namespace,
under handler `kybernate` with the pod annotation kybernate.io/restore-from,
comes up restored: its log goes on from the checkpointed count, its memory
checksum holds, its open --file is intact.  Then the refusals (missing image,
another namespace's image, a corrupted file, a path as reference, a CRIU
failure), each leaving no half-created container, and the cold fallback —
which also starts the container when the restore outcome it reports to the
node agent (docs/runtime.md, "Reporting the outcome") cannot be delivered: no
agent configured, no socket, an agent that never answers.

What CRIU guarantees, and so what is asserted exactly: the restored process
goes on from the instruction where the dump froze it.  Every line it printed
before the freeze is in the old container's log (the shim drains the pipe
before the old task ends; the task is killed while frozen, so it prints
nothing after the dump), so the first count after restore is exactly the last
count of the old log + 1.  The --file in the image's rootfs diff is written
right after each print, so it holds that last count, or one less when the
freeze fell between the print and the write.
"""

import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests.harness import procs
from tests.harness.checks import Leftovers, assert_consecutive
from tests.harness.cri import CriError, CriSetupError, Kubelet, bundle_spec

K8S = "k8s.io"
RESTORE_FROM = "kybernate.io/restore-from"
FALLBACK = "kybernate.io/restore-fallback"
NAMESPACE = "shop"
COUNT_FILE = "/data/count"


def counter(*extra, interval_ms=100):
    return ["/usr/bin/counter", "--interval", str(interval_ms), "--mem", "64",
            "--file", COUNT_FILE, *extra]


def counts_of(lines) -> list:
    return [int(line.split()[1]) for line in lines
            if line.startswith("count ") and line.split()[1].isdigit()]


def wait_counts(kubelet, cid, n, timeout=60) -> list:
    """Wait until the container's log holds at least n counts; all lines."""
    return kubelet.wait_log(cid, lambda ls: len(counts_of(ls)) >= n, timeout,
                            f"{n} counts")


# ---------------------------------------------------------------- fixtures

class RestoreNode:
    """A node whose kybernate-runc restores from a private store: node config
    (KYBERNATE_CONFIG) with that store as default, restore markers in a
    private state dir (KYBERNATE_RUNTIME_STATE_DIR)."""

    def __init__(self, node, left, store: Path, state: Path, build_dir: Path, scratch: Path):
        self.node, self.left, self.store, self.state = node, left, store, state
        self.scratch = scratch
        self.cli = build_dir / "cmd" / "kybernate"

    def checkpoint(self, cid: str, *extra) -> str:
        """`kybernate checkpoint` of a running container; returns the image
        name (the CLI prints "<store uri>/<name>")."""
        p = subprocess.run([str(self.cli), "--address", str(self.node.socket), "--namespace",
                            K8S, "--store", f"file://{self.store}", "checkpoint", cid, *extra],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"checkpoint failed ({p.returncode}): {p.stderr}"
        ref = p.stdout.strip().splitlines()[-1]
        assert ref.startswith(f"file://{self.store}/"), ref
        return ref.rsplit("/", 1)[1]

    def image(self, name: str) -> Path:
        return self.store / name

    def markers(self) -> list:
        """Container ids with a restore marker (<state>/<root key>/<id>)."""
        return sorted(p.name for p in self.state.glob("*/*") if p.parent.name != "failed")

    def runc_state(self, cid: str) -> Path:
        return self.node.runc_root / K8S / cid


def make_rnode(make_node, nodes_base, build_dir, env=None) -> RestoreNode:
    # nodes_base is shared by the session: a private dir for this test.
    mine = Path(tempfile.mkdtemp(prefix="rt-", dir=nodes_base))
    store, state, config = mine / "store", mine / "state", mine / "kybernate.json"
    store.mkdir()
    config.write_text(json.dumps({"defaultStore": f"file://{store}"}))
    node = make_node("rt", start=False, env={"KYBERNATE_CONFIG": str(config),
                                             "KYBERNATE_RUNTIME_STATE_DIR": str(state),
                                             **(env or {})})
    left = Leftovers(node)
    node.start()
    return RestoreNode(node, left, store, state, build_dir, mine)


@pytest.fixture
def rnode(make_node, nodes_base, build_dir):
    return make_rnode(make_node, nodes_base, build_dir)


def cri_kubelet(rnode):
    try:
        k = Kubelet.for_node(rnode.node)
    except CriSetupError as e:
        pytest.fail(f"{e} (the test machine is not set up: run scripts/setup)", pytrace=False)
    yield k
    try:
        if procs.alive(rnode.node.containerd_pid() or 0):
            k.teardown_all()
    finally:
        k.close()


@pytest.fixture
def kubelet(rnode):
    yield from cri_kubelet(rnode)


# ---------------------------------------------------------------- helpers

def kubelet_labels(kubelet, sid, container="main") -> dict:
    """The labels real kubelet puts on every container (the CRI stand-in
    does not): `kybernate checkpoint` records the source pod from them."""
    meta = kubelet.sandbox_config(sid).metadata
    return {"io.kubernetes.pod.name": meta.name, "io.kubernetes.pod.namespace": meta.namespace,
            "io.kubernetes.pod.uid": meta.uid, "io.kubernetes.container.name": container}


def create_counter(kubelet, sid, *, command=None, annotations=None) -> str:
    return kubelet.create_container(sid, "main", command=command or counter(),
                                    annotations=annotations, labels=kubelet_labels(kubelet, sid))


def run_counter_pod(kubelet, name, namespace=NAMESPACE, *, handler="", annotations=None,
                    command=None):
    sid = kubelet.run_pod(name, namespace, handler=handler, annotations=annotations)
    cid = create_counter(kubelet, sid, command=command)
    kubelet.start_container(cid)
    kubelet.wait_state(cid, "RUNNING")
    return sid, cid


def checksum_of(lines) -> str:
    """The checksum the counter printed when it filled its memory."""
    filled = [line for line in lines if line.startswith("memory filled ")]
    assert len(filled) == 1, f"expected one 'memory filled' line: {filled}"
    return filled[0].rsplit(" ", 1)[1]


def count_file_in_image(image: Path) -> int:
    """The counter's --file as the image's rootfs diff holds it."""
    with tarfile.open(image / "rootfs-diff.tar") as tar:
        member = tar.extractfile(COUNT_FILE.lstrip("/"))
        text = member.read().decode()
    assert text.startswith("count "), text
    return int(text.split()[1])


def image_files(image: Path) -> set:
    return {str(p.relative_to(image)) for p in image.rglob("*") if p.is_file()}


def manifest_files(image: Path) -> set:
    m = json.loads((image / "manifest.json").read_text())
    return {f["path"] for f in m["files"]} | {"manifest.json"}


def checkpoint_counter(rnode, kubelet, cid, min_counts=12):
    """Let the counter pass a memory check, checkpoint it (it stops); returns
    (image name, last count of its log, its memory checksum line value)."""
    lines = wait_counts(kubelet, cid, min_counts)
    assert any(line.startswith("memory ok ") for line in lines), lines
    name = rnode.checkpoint(cid)
    kubelet.wait_state(cid, "EXITED")
    return name, counts_of(kubelet.read_log(cid))[-1]


def assert_restored(rnode, kubelet, cid, last_before, checksum, image):
    """The restored counter goes on from last_before, memory and file intact."""
    lines = wait_counts(kubelet, cid, 12)
    counts = counts_of(lines)
    assert_consecutive(counts, last_before + 1)
    assert not any(line.startswith("memory filled") for line in lines), \
        f"the counter started afresh instead of being restored: {lines[:3]}"
    oks = [line for line in lines if line.startswith("memory ")]
    assert oks and all(line == f"memory ok {checksum}" for line in oks), oks
    assert count_file_in_image(image) in (last_before, last_before - 1)
    # The open file, through the restored process's root: rewritten on each
    # count, so it names a count past the checkpoint.
    pid = kubelet.container_pid(cid)
    text = Path(f"/proc/{pid}/root{COUNT_FILE}").read_text()
    assert text.startswith("count ") and int(text.split()[1]) > last_before, text
    # kybernate-runc answered `start` from its marker; the image is untouched
    # (CRIU's stats-restore went into the private link directory).
    assert cid in rnode.markers()
    assert image_files(image) == manifest_files(image)
    st = kubelet.container_status(cid)
    assert (st.state, st.exit_code) == ("CONTAINER_RUNNING", 0)


def assert_no_container(rnode, kubelet, cid):
    """After a failed start: no runc state, no marker, no process, no cgroup,
    no work dir left of the container."""
    assert not rnode.runc_state(cid).exists(), f"runc state of {cid} left"
    assert cid not in rnode.markers()
    assert not procs.cgroup_dirs(f"{rnode.node.cgroup_parent}/{cid}"), f"cgroup of {cid} left"
    st = kubelet.container_status(cid)
    assert (st.state, st.reason) == ("CONTAINER_EXITED", "StartError"), st


def start_fails(kubelet, sid, annotations=None, command=None) -> tuple:
    """Create the counter in pod sid and start it: the start must fail.
    Returns (container id, error details)."""
    cid = create_counter(kubelet, sid, command=command, annotations=annotations)
    with pytest.raises(CriError) as exc:
        kubelet.start_container(cid)
    assert exc.value.method == "StartContainer"
    return cid, exc.value.details


def teardown_pods(rnode, kubelet, *sids):
    for sid in sids:
        kubelet.stop_pod_and_remove(sid)
    assert not kubelet.list_containers(), "containers still listed"
    assert rnode.markers() == [], f"restore markers left: {rnode.markers()}"
    rnode.node.stop()
    rnode.left.check()


# ---------------------------------------------------------------- tests

def test_restore_into_new_pod_and_again(rnode, kubelet):
    """Checkpoint a counter pod, restore it into a new pod of the same
    namespace under handler `kybernate`; checkpoint the restored one and
    restore it once more: it goes on each time."""
    sid1, cid1 = run_counter_pod(kubelet, "counter")
    rnode.left.record(kubelet.container_pid(cid1))
    checksum = checksum_of(wait_counts(kubelet, cid1, 12))
    name1, last1 = checkpoint_counter(rnode, kubelet, cid1)

    sid2, cid2 = run_counter_pod(kubelet, "counter", handler="kybernate",
                                 annotations={RESTORE_FROM: name1})
    spec = bundle_spec(rnode.node, cid2)
    assert spec["annotations"][RESTORE_FROM] == name1
    assert_restored(rnode, kubelet, cid2, last1, checksum, rnode.image(name1))
    # The sandbox got the annotation too and was created normally.
    assert rnode.markers() == [cid2]
    rnode.left.record(kubelet.container_pid(cid2))

    # Again: the restored container is checkpointed (through kybernate-runc's
    # pass-through) and restored into a third pod.
    name2, last2 = checkpoint_counter(rnode, kubelet, cid2)
    assert last2 > last1
    sid3, cid3 = run_counter_pod(kubelet, "counter", handler="kybernate",
                                 annotations={RESTORE_FROM: name2})
    assert_restored(rnode, kubelet, cid3, last2, checksum, rnode.image(name2))
    rnode.left.record(kubelet.container_pid(cid3))

    # The first image can be restored a second time: nothing wrote into it.
    sid4, cid4 = run_counter_pod(kubelet, "counter", handler="kybernate",
                                 annotations={RESTORE_FROM: name1})
    assert_restored(rnode, kubelet, cid4, last1, checksum, rnode.image(name1))
    # cid2 ended with its checkpoint: the shim's `delete` took its marker.
    assert rnode.markers() == sorted([cid3, cid4])

    teardown_pods(rnode, kubelet, sid1, sid2, sid3, sid4)


def create_with_mount(kubelet, sid, host_dir: Path, target: str) -> str:
    """The counter with a host bind mount (the CRI stand-in's
    create_container has no mounts parameter)."""
    pb = kubelet.pb
    config = kubelet.sandbox_config(sid)
    (Path(config.log_directory) / "main").mkdir(parents=True, exist_ok=True)
    ns = pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD)
    cc = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="main", attempt=0),
        image=pb.ImageSpec(image="kybernate.test/busybox:1"),
        command=counter(), labels=kubelet_labels(kubelet, sid), log_path="main/0.log",
        mounts=[pb.Mount(container_path=target, host_path=str(host_dir))],
        linux=pb.LinuxContainerConfig(
            security_context=pb.LinuxContainerSecurityContext(namespace_options=ns)))
    r = kubelet.rpc("CreateContainer", pb.CreateContainerRequest(
        pod_sandbox_id=sid, config=cc, sandbox_config=config))
    kubelet.containers[r.container_id] = sid
    return r.container_id


def test_refusals_leave_nothing_and_cold_fallback(rnode, kubelet):
    """Every restore that cannot happen fails the start with the cause, and
    leaves no container (no runc state, marker, cgroup or process); with
    kybernate.io/restore-fallback: cold the container starts afresh instead."""
    sid1, cid1 = run_counter_pod(kubelet, "counter")
    rnode.left.record(kubelet.container_pid(cid1))
    checksum = checksum_of(wait_counts(kubelet, cid1, 12))
    name, last = checkpoint_counter(rnode, kubelet, cid1)
    sids = [sid1]

    def refused(annotations, namespace=NAMESPACE, pod="counter") -> str:
        sid = kubelet.run_pod(pod, namespace, handler="kybernate", annotations=annotations)
        sids.append(sid)
        cid, details = start_fails(kubelet, sid)
        assert "OCI runtime create failed: kybernate-runc: restore container" in details, details
        assert_no_container(rnode, kubelet, cid)
        assert kubelet.container_status(cid).message, "the cause must reach ContainerStatus"
        return details

    details = refused({RESTORE_FROM: "no-such-image"})
    assert "no-such-image" in details and "No such file or directory" in details, details

    details = refused({RESTORE_FROM: name}, namespace="other")
    assert "wrong namespace" in details and '"shop"' in details and '"other"' in details, details

    details = refused({RESTORE_FROM: "/tmp/x"})
    assert '"/tmp/x" looks like a path' in details, details

    details = refused({RESTORE_FROM: "main="})
    assert "empty checkpoint reference" in details, details

    details = refused({RESTORE_FROM: name, FALLBACK: "warm"})
    assert "expected \"cold\" or \"none\"" in details, details

    # The map form: "main" is restored, "side" (not in the map) starts afresh.
    sid = kubelet.run_pod("counter", NAMESPACE, handler="kybernate",
                          annotations={RESTORE_FROM: f"main={name}, other=no-such-image"})
    sids.append(sid)
    main = create_counter(kubelet, sid)
    kubelet.start_container(main)
    side = kubelet.create_container(sid, "side", command=counter(),
                                    labels=kubelet_labels(kubelet, sid, "side"))
    kubelet.start_container(side)
    assert_restored(rnode, kubelet, main, last, checksum, rnode.image(name))
    assert_consecutive(counts_of(wait_counts(kubelet, side, 3)), 1)
    assert rnode.markers() == [main]

    # Cold fallback: a missing image starts the container afresh; the reason
    # is a warning in runc's log and on the container's stderr.
    sid = kubelet.run_pod("counter", NAMESPACE, handler="kybernate",
                          annotations={RESTORE_FROM: "no-such-image", FALLBACK: "cold"})
    sids.append(sid)
    cold = create_counter(kubelet, sid)
    kubelet.start_container(cold)
    kubelet.wait_state(cold, "RUNNING")
    lines = wait_counts(kubelet, cold, 3)
    assert_consecutive(counts_of(lines), 1)
    assert checksum_of(lines) == checksum
    warning = [ln for ln in kubelet.read_log(cold, "stderr") if "restore failed" in ln]
    assert warning and "no-such-image" in warning[0] and "cold" in warning[0], warning
    log_json = [json.loads(ln) for ln in
                (rnode.node.bundles_dir / K8S / cold / "log.json").read_text().splitlines()]
    assert any(e["level"] == "warning" and "no-such-image" in e["msg"] for e in log_json)
    # No agent socket on this node: no restore outcome is sent, nothing complains.
    assert not any("restore outcome" in e["msg"] for e in log_json), log_json
    assert cold not in rnode.markers()

    # A CRIU failure: the image holds a bind mount the new container lacks.
    # runc restore fails after creating runc state: kybernate-runc removes it.
    host_dir = rnode.scratch / "hostdir"
    host_dir.mkdir()
    sid = kubelet.run_pod("mounted", NAMESPACE)
    sids.append(sid)
    mounted = create_with_mount(kubelet, sid, host_dir, "/mnt/host")
    kubelet.start_container(mounted)
    kubelet.wait_state(mounted, "RUNNING")
    rnode.left.record(kubelet.container_pid(mounted))
    with_mount, _ = checkpoint_counter(rnode, kubelet, mounted)
    details = refused({RESTORE_FROM: with_mount}, pod="mounted")
    assert "restore failed (exit status 1)" in details, details
    assert "CRIU restore.log kept as" in details, details
    kept = sorted((rnode.state / "failed").glob("*.restore.log"))
    assert len(kept) == 1 and "Error" in kept[0].read_text()
    # ... and with the cold fallback it starts afresh after that clean-up.
    sid = kubelet.run_pod("mounted", NAMESPACE, handler="kybernate",
                          annotations={RESTORE_FROM: with_mount, FALLBACK: "cold"})
    sids.append(sid)
    cold2 = create_counter(kubelet, sid)
    kubelet.start_container(cold2)
    kubelet.wait_state(cold2, "RUNNING")
    assert_consecutive(counts_of(wait_counts(kubelet, cold2, 3)), 1)

    # Last, as it spoils the image: one flipped byte is a digest mismatch
    # that names the file.
    pages = rnode.image(name) / "criu" / "pages-1.img"
    data = bytearray(pages.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pages.write_bytes(bytes(data))
    details = refused({RESTORE_FROM: name})
    assert "criu/pages-1.img" in details and "sha256" in details, details

    teardown_pods(rnode, kubelet, *sids)


@pytest.fixture
def agentless(make_node, nodes_base, build_dir, tmp_path):
    """A node whose containerd names an agent socket where no agent answers."""
    sock = Path(tempfile.mkdtemp(prefix="ag-", dir="/tmp")) / "agent.sock"
    rn = make_rnode(make_node, nodes_base, build_dir, env={"KYBERNATE_AGENT_SOCKET": str(sock)})
    rn.agent_socket = sock
    return rn


def test_cold_fallback_reports_best_effort(agentless):
    """The restore outcome kybernate-runc sends to the agent never stops a
    container: with no socket at the configured path, and with a socket
    whose listener never answers (the report's timeout), the cold fallback
    still starts the container afresh; the failed report is a warning in
    runc's log."""
    import socket
    import time
    rnode = agentless
    sids = []
    for k in cri_kubelet(rnode):
        def cold_start(what):
            sid = k.run_pod("counter", NAMESPACE, handler="kybernate",
                            annotations={RESTORE_FROM: "no-such-image", FALLBACK: "cold"})
            cid = create_counter(k, sid)
            t0 = time.monotonic()
            k.start_container(cid)
            k.wait_state(cid, "RUNNING")
            took = time.monotonic() - t0
            assert_consecutive(counts_of(wait_counts(k, cid, 3)), 1)
            log = [json.loads(ln) for ln in
                   (rnode.node.bundles_dir / K8S / cid / "log.json").read_text().splitlines()]
            notes = [e["msg"] for e in log if "restore outcome" in e["msg"]]
            assert len(notes) == 1 and "not reported, the container starts anyway" in notes[0] \
                and what in notes[0], notes
            sids.append(sid)
            return took

        cold_start("no socket there")
        # A listener that accepts and never answers: the report gives up
        # after its timeout (KYB_AGENT_CLIENT_REPORT_TIMEOUT_S, 5 s).
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
            srv.bind(str(rnode.agent_socket))
            srv.listen(8)
            took = cold_start("no answer within 5.0 s")
        assert took < 60, f"the create took {took:.1f} s"
        teardown_pods(rnode, k, *sids)

# SPDX-License-Identifier: Apache-2.0
"""The Kubernetes path through CRI, with the tests playing kubelet
(tests/harness/cri.py) against a test node's containerd: host-network pods
under the default handler and under `kybernate`, what reaches the OCI specs
kybernate-runc is given, pods of two containers, and teardown through CRI
alone leaving nothing behind."""

import json

import pytest

from tests.harness import procs
from tests.harness.checks import Leftovers, assert_consecutive, wait_for
from tests.harness.cri import (CriError, CriSetupError, Kubelet, bundle_spec, parse_cri_log)
from tests.harness.image import BUSYBOX_REF, PAUSE_REF
from tests.harness.node import shim_socket_path

K8S = "k8s.io"
RESTORE_FROM = "kybernate.io/restore-from"
# A kybernate.io/* annotation kybernate-runc never acts on (passes like any).
NOTE = "kybernate.io/test-note"
CT_TYPE = "io.kubernetes.cri.container-type"
CT_NAME = "io.kubernetes.cri.container-name"
SANDBOX_ID = "io.kubernetes.cri.sandbox-id"


def counter(interval_ms=50, *extra):
    return ["/usr/bin/counter", "--interval", str(interval_ms), *extra]


def counts_of(lines) -> list:
    return [int(line.split()[1]) for line in lines
            if line.startswith("count ") and line.split()[1].isdigit()]


def wait_counts(kubelet, cid, n, timeout=30) -> list:
    """Wait until the container's CRI log reached "count n"; all counts."""
    lines = kubelet.wait_log(cid, lambda ls: (counts_of(ls) or [0])[-1] >= n, timeout,
                             f"'count {n}'")
    return counts_of(lines)


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def cri_node(make_node):
    """A started node and its Leftovers record (made before start)."""
    node = make_node("cri", start=False)
    left = Leftovers(node)
    node.start()
    return node, left


@pytest.fixture
def kubelet(cri_node):
    node, _ = cri_node
    try:
        k = Kubelet.for_node(node)
    except CriSetupError as e:
        pytest.fail(f"{e} (the test machine is not set up: run scripts/setup)", pytrace=False)
    yield k
    try:
        if procs.alive(node.containerd_pid() or 0):
            k.teardown_all()  # a failed test's pods; node.stop() follows
    finally:
        k.close()


# ---------------------------------------------------------------- checks

def pod_pids(node, ids) -> list:
    """Init pids (host) of the sandbox and containers, from the runc states."""
    pids = []
    for i in ids:
        st = node.runc_state(i, ns=K8S)
        assert st, f"no runc state of {i} under {node.runc_root / K8S}"
        pids.append(st["init_process_pid"])
    return pids


def assert_pod_gone(kubelet, node, sid, cids, pids) -> None:
    """After stop_pod_and_remove, through CRI alone (before the node stops):
    no sandbox or container is listed, their processes, runc states,
    bundles, cgroups, mounts, shim and shim socket are gone."""
    assert sid not in {p.id for p in kubelet.list_pods()}
    assert not kubelet.list_containers(), "containers still listed"
    ids = [sid, *cids]
    wait_for(lambda: not any(procs.alive(p) for p in pids), 10, "the pod's processes to end")
    socket = shim_socket_path(node.socket, K8S, sid)
    wait_for(lambda: not socket.exists() and not node.shim_pids(), 10,
             "the pod's shim to exit and remove its socket")
    for i in ids:
        assert not (node.runc_root / K8S / i).exists(), f"runc state of {i} left"
        assert not (node.bundles_dir / K8S / i).exists(), f"bundle of {i} left"
        assert not procs.cgroup_dirs(f"{node.cgroup_parent}/{i}"), f"cgroup of {i} left"
    assert not procs.mounts_under(node.dir), f"mounts left: {procs.mounts_under(node.dir)}"


def teardown_and_check(kubelet, node, left, sid, cids) -> None:
    pids = pod_pids(node, [sid, *cids])
    left.record(*pids)
    kubelet.stop_pod_and_remove(sid)
    assert_pod_gone(kubelet, node, sid, cids, pids)
    node.stop()
    left.check()


def options(node, cid) -> dict:
    """The runc shim's options of a task (options.json of its bundle)."""
    return json.loads((node.bundles_dir / K8S / cid / "options.json").read_text())


# ---------------------------------------------------------------- tests

def test_parse_cri_log():
    text = ("2026-11-28T13:42:24.996211018Z stdout F count 1\n"
            "2026-11-28T13:42:25.000000001Z stderr F oops\n"
            "2026-11-28T13:42:25.057125096Z stdout P cou\n"
            "2026-11-28T13:42:25.057125097Z stdout F nt 2\n"
            "2026-11-28T13:42:25.100000000Z stdout F \n"
            "2026-11-28T13:42:25.107227255Z stdout F count 3")  # still being written
    assert parse_cri_log(text) == ["count 1", "oops", "count 2", ""]
    assert parse_cri_log(text, "stdout") == ["count 1", "count 2", ""]
    assert parse_cri_log(text, "stderr") == ["oops"]


def test_pod_default_handler(cri_node, kubelet):
    """kubelet's path under the default runc handler: a host-network pod runs
    the counter, CRI reports it, teardown through CRI leaves nothing."""
    node, left = cri_node
    v = kubelet.version()
    assert (v.runtime_name, v.runtime_api_version) == ("containerd", "v1")
    pause = kubelet.image_status(PAUSE_REF)
    assert pause and PAUSE_REF in pause.repo_tags and pause.pinned, pause
    assert kubelet.image_status(BUSYBOX_REF), f"{BUSYBOX_REF} not in {K8S}"
    assert kubelet.image_status("kybernate.test/absent:1") is None

    sid = kubelet.run_pod("counter", "default", annotations={RESTORE_FROM: "file:///nowhere"})
    st = kubelet.pod_status(sid).status
    assert kubelet.pb.PodSandboxState.Name(st.state) == "SANDBOX_READY"
    assert st.runtime_handler == ""
    assert st.linux.namespaces.options.network == kubelet.pb.NODE
    assert dict(st.annotations) == {RESTORE_FROM: "file:///nowhere"}

    cid = kubelet.run_container(sid, "main", command=counter())
    assert_consecutive(wait_counts(kubelet, cid, 5))
    cs = kubelet.container_status(cid)
    assert (cs.state, cs.exit_code, cs.name) == ("CONTAINER_RUNNING", 0, "main")
    config = kubelet.sandbox_config(sid)
    assert cs.log_path == f"{config.log_directory}/main/0.log"
    assert config.log_directory.startswith(f"{node.dir}/pods/default_counter_")
    listed = kubelet.list_containers(sandbox_id=sid, state="RUNNING")
    assert [c.id for c in listed] == [cid]

    # The default handler has no pod_annotations: the pod annotation stays
    # out of both specs.  The node's cgroup parent holds the pod.
    for i in (sid, cid):
        spec = bundle_spec(node, i)
        assert RESTORE_FROM not in spec["annotations"]
        assert spec["linux"]["cgroupsPath"] == f"{node.cgroup_parent}/{i}"
        assert options(node, i).get("binary_name", "runc") in ("", "runc")
    sandbox_ns = {n["type"] for n in bundle_spec(node, sid)["linux"]["namespaces"]}
    assert not sandbox_ns & {"network", "uts"}, f"host network pod has {sandbox_ns}"

    teardown_and_check(kubelet, node, left, sid, [cid])


def test_pod_kybernate_handler(cri_node, kubelet):
    """Under handler `kybernate` (kybernate-runc, today a pass-through) the
    counter runs the same way; the restore-from pod annotation reaches the
    container's spec AND the sandbox's spec: kybernate-runc must act only where
    container-type is `container`.

    kybernate-runc does act on the annotation: the checkpoint named here does
    not exist, so `kybernate.io/restore-fallback: cold` makes the container
    start fresh (test_runtime_restore.py covers real restores)."""
    node, left = cri_node
    annotations = {RESTORE_FROM: "file:///ckpt/counter-1", "example.com/other": "x",
                   "kybernate.io/restore-fallback": "cold"}
    sid = kubelet.run_pod("restored", "team-a", annotations=annotations, handler="kybernate")
    st = kubelet.pod_status(sid).status
    assert st.runtime_handler == "kybernate"
    assert dict(st.annotations) == annotations

    cid = kubelet.run_container(sid, "main", command=counter())
    assert_consecutive(wait_counts(kubelet, cid, 5))
    assert kubelet.container_status(cid).running

    # Both tasks ran through kybernate-runc with the node's runc root.
    for i in (sid, cid):
        assert options(node, i) == {"binary_name": str(node.kybernate_runc),
                                    "root": str(node.runc_root)}

    spec = bundle_spec(node, cid)["annotations"]
    assert spec[RESTORE_FROM] == "file:///ckpt/counter-1"
    assert spec[CT_TYPE] == "container" and spec[CT_NAME] == "main"
    assert spec[SANDBOX_ID] == sid
    assert "example.com/other" not in spec, "only pod_annotations = kybernate.io/* pass"

    sandbox = bundle_spec(node, sid)["annotations"]
    assert sandbox[RESTORE_FROM] == "file:///ckpt/counter-1"
    assert sandbox[CT_TYPE] == "sandbox"
    assert CT_NAME not in sandbox
    assert "example.com/other" not in sandbox

    teardown_and_check(kubelet, node, left, sid, [cid])


def test_pod_two_containers(cri_node, kubelet):
    """Two containers of one pod both run; each spec names its container; one
    shim serves the pod (the containers' tasks have the sandbox's address)."""
    node, left = cri_node
    sid = kubelet.run_pod("pair", "default", annotations={NOTE: "pair"}, handler="kybernate")
    cids = [kubelet.run_container(sid, name, command=counter(), labels={"role": name})
            for name in ("first", "second")]
    for cid in cids:
        assert_consecutive(wait_counts(kubelet, cid, 3))
    assert len({kubelet.log_file(c) for c in cids}) == 2
    assert {c.id for c in kubelet.list_containers(sandbox_id=sid, state="RUNNING")} == set(cids)
    assert [c.id for c in kubelet.list_containers(labels={"role": "second"})] == [cids[1]]

    for cid, name in zip(cids, ("first", "second")):
        spec = bundle_spec(node, cid)["annotations"]
        assert (spec[CT_TYPE], spec[CT_NAME], spec[NOTE]) == ("container", name, "pair")
    addresses = {(node.bundles_dir / K8S / i / "address").read_text().strip()
                 for i in (sid, *cids)}
    assert addresses == {f"unix://{shim_socket_path(node.socket, K8S, sid)}"}

    teardown_and_check(kubelet, node, left, sid, cids)


def test_errors_and_half_created_pod(cri_node, kubelet):
    """CRI errors come back with code and details; teardown copes with a pod
    whose containers were created but never started, failed to create, failed
    to start or exited."""
    node, left = cri_node
    with pytest.raises(CriError) as exc:
        kubelet.run_pod("nohandler", "default", handler="nosuch")
    assert "RunPodSandbox" in str(exc.value) and "nosuch" in str(exc.value)
    assert not kubelet.list_pods()

    sid = kubelet.run_pod("half", "default")
    with pytest.raises(CriError) as exc:
        kubelet.create_container(sid, "ghost", "kybernate.test/absent:1")
    assert exc.value.method == "CreateContainer"
    assert exc.value.code == "NOT_FOUND" and "kybernate.test/absent:1" in exc.value.details
    assert "containerd log" in str(exc.value)  # the node's log tail comes along
    created = kubelet.create_container(sid, "idle", command=counter())
    assert kubelet.container_status(created).state == "CONTAINER_CREATED"

    # A failed start: the runtime's error in the CRI error and in the status.
    broken = kubelet.create_container(sid, "broken", command=["/no/such/program"])
    with pytest.raises(CriError) as exc:
        kubelet.start_container(broken)
    assert exc.value.method == "StartContainer" and "/no/such/program" in exc.value.details
    st = kubelet.container_status(broken)
    assert (st.state, st.exit_code, st.reason) == ("CONTAINER_EXITED", 128, "StartError")
    assert "/no/such/program" in st.message

    # A container that exits: wait_state fails at once, with code and log.
    quits = kubelet.create_container(sid, "quits", command=["/bin/sh", "-c", "echo bye; exit 3"])
    kubelet.start_container(quits)
    st = kubelet.wait_state(quits, "EXITED")
    assert (st.exit_code, st.reason) == (3, "Error")
    assert kubelet.read_log(quits) == ["bye"]
    with pytest.raises(CriError, match=r"exited \(code 3.*\['bye'\]"):
        kubelet.wait_state(quits, "RUNNING")

    pids = pod_pids(node, [sid])
    left.record(*pids)
    kubelet.stop_pod_and_remove(sid)
    cids = [created, broken, quits]
    assert_pod_gone(kubelet, node, sid, cids, pids)
    with pytest.raises(CriError) as exc:
        kubelet.container_status(created)
    assert exc.value.code == "NOT_FOUND"
    kubelet.stop_pod_and_remove(sid)  # idempotent: nothing left is no error
    node.stop()
    left.check()

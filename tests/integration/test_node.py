# SPDX-License-Identifier: Apache-2.0
"""The node harness itself: a private containerd runs containers from the
test image, two nodes live side by side, the CRI plugin carries the
kybernate handler, and stop() leaves nothing behind, even after a failed
start."""

import json
import os
import subprocess
import tomllib

import pytest

from tests.harness import REPO_ROOT, procs, tool_path
from tests.harness.checks import Leftovers, assert_consecutive, wait_count
from tests.harness.image import BUSYBOX_REF, PAUSE_REF
from tests.harness.node import NAMESPACES, Node, NodeStartError, shim_socket_path

COUNTER = ["/usr/bin/counter", "--interval", "100"]


def test_node_runs_container(make_node):
    node = make_node("run", start=False)
    left = Leftovers(node)
    node.start()
    for ns in NAMESPACES:
        # Imported and unpacked (the CRI plugin creates containers only from
        # images already unpacked into its snapshotter).
        check = node.ctr("images", "check", ns=ns).stdout.splitlines()
        unpacked = {line.split()[0] for line in check[1:] if line.split()[-1] == "true"}
        assert {BUSYBOX_REF, PAUSE_REF} <= unpacked, f"{ns}:\n" + "\n".join(check)

    log = node.run_container("c1", COUNTER)
    seen = wait_count(log, 5)
    assert_consecutive(seen)

    state = node.runc_state("c1")
    assert state, f"no runc state under the node's runc root {node.runc_root}"
    init = state["init_process_pid"]
    assert node.tasks()["c1"] == (init, "RUNNING")
    assert shim_socket_path(node.socket, "default", "c1").exists()
    assert node.shim_pids(), "no shim names this node's socket"
    assert procs.mounts_under(node.dir), "the container's rootfs is not mounted under the node"
    left.record(init)
    assert {node.containerd_pid(), init} <= left.pids

    node.stop()
    assert not procs.alive(init)
    left.check()
    node.stop()  # idempotent


def test_two_nodes_side_by_side(node_pair):
    a, b = node_pair
    lefts = [Leftovers(a), Leftovers(b)]
    assert a.socket != b.socket and a.runc_root != b.runc_root
    assert a.cgroup_parent != b.cgroup_parent
    logs = [n.run_container("same", COUNTER) for n in (a, b)]
    for log in logs:
        assert_consecutive(wait_count(log, 3))
    pids = [n.runc_state("same")["init_process_pid"] for n in (a, b)]
    assert pids[0] != pids[1]
    assert all(procs.alive(p) for p in pids)
    for n, left, pid in zip((a, b), lefts, pids):
        left.record(pid)

    a.stop()
    lefts[0].check()
    # b is untouched by a's teardown.
    assert procs.alive(pids[1])
    before = wait_count(logs[1], 1)[-1]
    assert_consecutive(wait_count(logs[1], before + 2))
    b.stop()
    lefts[1].check()


def test_kybernate_handler_configured(node):
    plugins = node.ctr("plugins", "ls", ns=None).stdout.splitlines()
    cri = [line.split() for line in plugins if line.split()[:2] == ["io.containerd.grpc.v1", "cri"]]
    assert cri and cri[0][-1] == "ok", f"CRI plugin not ok: {cri}"

    with open(node.config_path, "rb") as fh:
        conf = tomllib.load(fh)
    cri_conf = conf["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri_conf["sandbox_image"] == PAUSE_REF
    assert cri_conf["restrict_oom_score_adj"] is True
    runtimes = cri_conf["containerd"]["runtimes"]
    assert cri_conf["containerd"]["default_runtime_name"] == "runc"
    assert runtimes["runc"]["runtime_type"] == "io.containerd.runc.v2"
    assert runtimes["runc"]["options"]["Root"] == str(node.runc_root)
    kyb = runtimes["kybernate"]
    assert kyb["runtime_type"] == "io.containerd.runc.v2"
    assert kyb["pod_annotations"] == ["kybernate.io/*"]
    assert kyb["options"]["Root"] == str(node.runc_root)
    binary = kyb["options"]["BinaryName"]
    assert os.path.isabs(binary) and binary.endswith("/cmd/kybernate-runc")
    assert os.access(binary, os.X_OK), f"{binary} is not an executable"

    # containerd parsed it: the CRI plugin logs its effective config at start.
    log = node.log_path.read_text(errors="replace")
    assert "kybernate:{Type:io.containerd.runc.v2" in log
    assert f"BinaryName:{binary}" in log
    # The sandbox image is where the CRI plugin looks for it.
    assert PAUSE_REF in node.ctr("images", "ls", "-q", ns="k8s.io").stdout.split()


def test_container_through_kybernate_runc(node):
    """ctr with BinaryName = kybernate-runc: the wrapper passes every runc
    call through (the per-node --root included)."""
    log = node.run_container("wrapped", COUNTER, runtime_binary=node.kybernate_runc)
    assert_consecutive(wait_count(log, 3))
    assert node.runc_state("wrapped"), "kybernate-runc did not keep runc's --root"
    assert node.ctr("tasks", "kill", "wrapped").returncode == 0


def test_stop_after_failed_start(make_node):
    node = make_node("broken", start=False, extra_config="[this is not toml\n")
    left = Leftovers(node)
    with pytest.raises(NodeStartError) as exc:
        node.start()
    assert "exited" in str(exc.value) and "toml" in str(exc.value).lower(), str(exc.value)
    assert node.dir.exists()
    node.stop()
    left.check()
    node.stop()


def test_stop_after_failed_import(make_node, monkeypatch):
    """containerd runs but start() fails later: stop() still ends it."""
    node = make_node("half", start=False)
    left = Leftovers(node)

    def broken_ctr(*args, **kw):
        if "import" in args:
            raise NodeStartError("injected import failure")
        return Node.ctr(node, *args, **kw)

    monkeypatch.setattr(node, "ctr", broken_ctr)
    with pytest.raises(NodeStartError, match="injected"):
        node.start()
    left.record()
    assert procs.alive(node.containerd_pid())
    node.stop()
    left.check()


def test_cli_start_stop(nodes_base, build_dir, node_tools):
    """The CLI scripts/demo uses: start prints eval-able env lines, the node
    outlives the CLI, stop by dir tears it down."""
    kybnode = str(REPO_ROOT / "tests" / "harness" / "kybnode")
    env = dict(os.environ, KYBERNATE_BUILD_DIR=str(build_dir), PATH=tool_path())
    r = subprocess.run([kybnode, "start", "--name", "cli", "--base-dir", str(nodes_base),
                        "--format", "json"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    node = Node.attach(info["KYB_NODE_DIR"])
    left = Leftovers(node)
    try:
        assert info["CONTAINERD_ADDRESS"] == str(node.socket)
        assert procs.alive(int(info["KYB_NODE_PID"]))
        log = node.run_container("c", COUNTER)
        wait_count(log, 2)
        left.record()
        st = subprocess.run([kybnode, "status", info["KYB_NODE_DIR"]], capture_output=True,
                            text=True, env=env, timeout=60)
        assert st.returncode == 0, st.stdout + st.stderr
        assert "c" in json.loads(st.stdout)["tasks"]["default"]
        r = subprocess.run([kybnode, "env", info["KYB_NODE_DIR"]], capture_output=True,
                           text=True, env=env, timeout=60)
        assert f"export KYB_NODE_SOCKET={node.socket}" in r.stdout.splitlines()
        # The default output, eval'd by a shell, makes plain ctr talk to the node.
        sh = subprocess.run(["bash", "-c", f'eval "$({kybnode} env {info["KYB_NODE_DIR"]})" '
                             f'&& ctr tasks ls -q'], capture_output=True, text=True, env=env,
                            timeout=60)
        assert sh.stdout.split() == ["c"], sh.stdout + sh.stderr
    finally:
        r = subprocess.run([kybnode, "stop", info["KYB_NODE_DIR"]], capture_output=True,
                           text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    left.check()

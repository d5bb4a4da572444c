# SPDX-License-Identifier: Apache-2.0
"""Fixtures of the integration tests: the build dir, the test images and
private containerd nodes (tests/harness, see docs/testing.md).

Tests that need root are skipped only when not run as root.  Missing
containerd, runc or CRIU is a broken setup (scripts/setup installs them, CI
runs it), so those tests FAIL and say what is missing.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.harness import BINARIES, default_build_dir, tool_path
from tests.harness.image import build_test_images
from tests.harness.node import Node, NodeError

NODE_TOOLS = ("containerd", "ctr", "containerd-shim-runc-v2", "runc", "criu")


def _require_tools(*tools) -> None:
    missing = [t for t in tools if not shutil.which(t, path=tool_path())]
    if missing:
        pytest.fail(f"not installed: {', '.join(missing)} (PATH {tool_path()}); the test "
                    f"machine is not set up: run scripts/setup", pytrace=False)


@pytest.fixture(scope="session")
def root():
    if os.geteuid() != 0:
        pytest.skip("needs root (containerd, runc and CRIU run as root)")


@pytest.fixture(scope="session")
def criu():
    _require_tools("criu")
    return shutil.which("criu", path=tool_path())


@pytest.fixture(scope="session")
def node_tools(root):
    _require_tools(*NODE_TOOLS)


@pytest.fixture(scope="session")
def build_dir() -> Path:
    d = default_build_dir()
    missing = [f"cmd/{b}" for b in BINARIES if not (d / "cmd" / b).is_file()]
    missing += [f"tests/programs/{p}" for p in ("counter", "sleeper")
                if not (d / "tests" / "programs" / p).is_file()]
    if missing:
        pytest.fail(f"build dir {d} lacks {', '.join(missing)}: build first "
                    f"(meson setup {d} && ninja -C {d}) or set KYBERNATE_BUILD_DIR",
                    pytrace=False)
    return d


@pytest.fixture(scope="session")
def test_images(build_dir):
    return build_test_images(build_dir)


@pytest.fixture(scope="session")
def nodes_base(root):
    """A short parent dir for the node dirs (unix socket paths must stay
    under 108 bytes, so not pytest's tmp_path)."""
    base = Path(tempfile.mkdtemp(prefix="kyb-", dir=os.environ.get("KYBERNATE_NODE_BASE", "/tmp")))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def make_node(nodes_base, build_dir, test_images, node_tools):
    """Factory: make_node(name, start=True, **Node kwargs) -> Node; every node
    made is stopped after the test, and a failed stop fails the test."""
    made = []

    def make(name, start=True, **kw):
        node = Node(name, nodes_base, build_dir, **kw)
        made.append(node)
        if start:
            node.start()
        return node

    yield make
    errors = []
    for node in made:
        try:
            node.stop()
        except NodeError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("; ".join(errors), pytrace=False)


@pytest.fixture
def node(make_node):
    """One started node (namespaces default and k8s.io hold the test images)."""
    return make_node("n")


@pytest.fixture
def node_pair(make_node):
    """Two started nodes side by side."""
    return make_node("a"), make_node("b")


# ---------------------------------------------------------------- Kubernetes doubles

@pytest.fixture
def kube_api():
    """A started Kubernetes API server double (tests/doubles/kube_apiserver.py)
    in this process: http on 127.0.0.1, short bookmark and too-large-rv waits;
    stopped after the test.  docs/testing.md."""
    from tests.doubles.kube_apiserver import KubeApiServer
    with KubeApiServer(bookmark_interval=0.3, too_large_wait=0.3) as api:
        yield api


@pytest.fixture
def kube_client(kube_api):
    """A tests.harness.kubeapi.KubeClient of kube_api."""
    from tests.harness.kubeapi import KubeClient
    client = KubeClient.for_server(kube_api)
    yield client
    client.close()


@pytest.fixture
def make_kubelet(kube_client):
    """Factory: make_kubelet(node, node_name=None, **NodeKubelet kwargs) -> a
    started kubelet stand-in (tests/harness/kubelet.py) of a harness node,
    registered as a Node in kube_api; stopped (its pods torn down) after the
    test, before the nodes stop."""
    from tests.harness.cri import CriSetupError
    from tests.harness.kubelet import NodeKubelet
    made = []

    def make(node, node_name=None, **kw):
        try:
            kubelet = NodeKubelet(kube_client, node, node_name, **kw).start()
        except CriSetupError as e:
            pytest.fail(f"{e} (the test machine is not set up: run scripts/setup)",
                        pytrace=False)
        made.append(kubelet)
        return kubelet

    yield make
    for kubelet in made:
        kubelet.stop()

# SPDX-License-Identifier: Apache-2.0
"""kybernate-operator (issue 6, item 3) against the Kubernetes API server
double (tests/doubles/kube_apiserver.py, with the project's CRDs and
RuntimeClass from deploy/).

Two kinds of tests:

- API only (no root): the operator's side of the contract (docs/api.md)
  with the test playing the node agent (the CheckpointRequest's status
  writer, FakeAgent) and the kubelet (restore pods' status) — a Checkpoint
  of a pod that does not exist, the full roll-up, restores and their
  refusals, retention and image deletion through the finalizer,
  hibernation, NodeLost on both clocks, an operator restarted between
  creating a request and recording it (one request only), leader election
  with two operators, metrics and probes.
- End to end (root: containerd, runc, CRIU): two harness nodes A and B
  sharing a file:// store, each with the kubelet stand-in
  (tests/harness/kubelet.py), the real kybernate-agent on A: a counter pod
  on A, a Checkpoint → Completed, a Restore onto B → a new pod on B whose
  counter goes on from the checkpointed value, and B's agent records
  kybernate-runc's outcome "restored" on the pod; the Checkpoint deleted → its
  image leaves the store.  A Restore with fallback Cold of an image with a
  flipped byte: the pod starts afresh, the Restore completes with Ready
  ColdStarted and the pod gets a Warning ColdStarted Event.  And the operator, then the agent, SIGKILLed while
  the dump runs (a TEST wrapper around runc holds `runc checkpoint`): the
  Checkpoint ends Completed or Failed with a reason, never stuck, with one
  CheckpointRequest.

Operators run with short clocks (--node-lost-after, lease durations) so the
tests wait seconds, not minutes; every wait is a deadline, never a timing
assertion.
"""

import json
import os
import signal
import socket
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.harness import REPO_ROOT, tool_path
from tests.harness.checks import assert_consecutive, wait_for
from tests.harness.kubeapi import KubeApiError

KYB = "kybernate.io/v1alpha1"
NS = "shop"
FINALIZER = "kybernate.io/image"
RUNTIME_CLASS = REPO_ROOT / "deploy" / "cluster" / "runtimeclass.yaml"
DIGEST = "sha256:" + "ab" * 32


def now_rfc3339(offset=0.0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cond(obj, ctype):
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return c
    return None


def phase(obj):
    return (obj.get("status") or {}).get("phase")


def events_of(kc, name, until=None, timeout=15.0):
    """The events about `name`; with `until`, polled until until(events) holds
    (or the timeout passes): the operator writes an event after the status
    change a test waits for, so an immediate read can miss it."""
    deadline = time.monotonic() + timeout
    while True:
        ev = [e for e in kc.list("v1", "events", NS)["items"]
              if e["involvedObject"]["name"] == name]
        if until is None or until(ev) or time.monotonic() > deadline:
            return ev
        time.sleep(0.1)


def get_opt(kc, api_version, plural, name, ns=NS):
    try:
        return kc.get(api_version, plural, name, ns)
    except KubeApiError as e:
        if e.code == 404:
            return None
        raise


# ---------------------------------------------------------------- the operator

class Operator:
    """One kybernate-operator process, its log (JSON lines) and HTTP port."""

    def __init__(self, build_dir, kubeconfig, base: Path, name, *args):
        self.name = name
        self.port = free_port()
        self.log_path = base / f"{name}.log"
        self.cmd = [str(build_dir / "cmd" / "kybernate-operator"), "--kubeconfig",
                    str(kubeconfig), "--metrics-bind-address", f"127.0.0.1:{self.port}",
                    "--log-level", "debug", "--log-format", "json", *args]
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("KYBERNATE_") and k not in ("KUBECONFIG", "POD_NAME",
                                                                     "POD_NAMESPACE")}
        self.proc = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env, start_new_session=True)
        wait_for(lambda: self.http("/healthz")[0] == 200, 30, f"operator {self.name} to serve",
                 interval=0.1)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def http(self, path):
        if not self.alive():
            raise AssertionError(f"operator {self.name} exited {self.proc.returncode}:\n"
                                 f"{self.log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def metrics(self) -> dict:
        code, text = self.http("/metrics")
        assert code == 200, (code, text)
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def logs(self):
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def messages(self):
        return [e.get("msg", "") for e in self.logs()]

    def kill(self):
        self.proc.kill()  # SIGKILL: a crash, no release of anything
        self.proc.wait(10)

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode if self.proc else None


class FakeAgent:
    """The test plays the node agent of API-only tests: it writes
    CheckpointRequest statuses the way docs/api.md says the agent does
    (claim, renew, finish)."""

    def __init__(self, kc, name="agent-x"):
        self.kc, self.name = kc, name

    def requests(self, action=None):
        items = self.kc.list(KYB, "checkpointrequests", NS)["items"]
        return [r for r in items if action is None or r["spec"].get("action") == action]

    def wait_request(self, ckpt_name, action="Checkpoint", timeout=30):
        def found():
            rs = [r for r in self.requests(action) if r["spec"]["checkpointRef"]["name"] ==
                  ckpt_name]
            return rs[0] if rs else None
        return wait_for(found, timeout, f"a {action} request for {ckpt_name}", interval=0.1)

    def _write(self, req, status):
        cur = self.kc.get(KYB, "checkpointrequests", req["metadata"]["name"], NS)
        cur["status"] = status
        return self.kc.update_status(KYB, "checkpointrequests", cur, NS)

    def claim(self, req, renew=None):
        t = now_rfc3339()
        return self._write(req, {"phase": "Running", "step": "dump", "attempts": 1,
                                 "startedAt": t,
                                 "agent": {"podName": self.name, "podUID": "uid-" + self.name,
                                           "claimedAt": t, "renewTime": renew or t},
                                 "timings": {"gpu_lock": 3}})

    def complete(self, req, images=(), gpus=(), message="done"):
        t = now_rfc3339()
        st = {"phase": "Completed", "step": "done", "attempts": 1, "startedAt": t,
              "completedAt": t, "timings": {"dump": 100, "total": 250},
              "agent": {"podName": self.name, "podUID": "uid-" + self.name, "claimedAt": t,
                        "renewTime": t},
              "conditions": [{"type": "Succeeded", "status": "True", "reason": "Completed",
                              "message": message, "lastTransitionTime": t}]}
        if images:
            st["images"] = list(images)
            st["sizeBytes"] = sum(i.get("sizeBytes", 0) for i in images)
        if gpus:
            st["gpus"] = list(gpus)
        return self._write(req, st)

    def fail(self, req, reason, message):
        t = now_rfc3339()
        return self._write(req, {
            "phase": "Failed", "step": "done", "attempts": 1, "startedAt": t, "completedAt": t,
            "agent": {"podName": self.name, "podUID": "uid-" + self.name},
            "conditions": [{"type": "Succeeded", "status": "False", "reason": reason,
                            "message": message, "lastTransitionTime": t}]})


def image(container, ref, size=1000):
    return {"container": container, "imageRef": ref, "imageDigest": DIGEST, "sizeBytes": size}


class World:
    """The API double with the CRDs, the RuntimeClass and namespace `shop`;
    operators started through it are stopped after the test."""

    def __init__(self, api, kc, base, build_dir):
        self.api, self.kc, self.base, self.build_dir = api, kc, base, build_dir
        self.kubeconfig = api.kubeconfig(str(base / "kubeconfig"))
        self.operators = []
        self.agent = FakeAgent(kc)

    def operator(self, name="op", *args, start=True):
        o = Operator(self.build_dir, self.kubeconfig, self.base, name, "--node-lost-after", "4s",
                     "--resync-period", "2s", *args)
        self.operators.append(o)
        return o.start() if start else o

    # objects
    def node(self, name, labels=None):
        return self.kc.create("v1", "nodes", {"apiVersion": "v1", "kind": "Node",
                                              "metadata": {"name": name,
                                                           "labels": labels or {}}})

    def pod(self, name, node="fake-a", containers=("main",), running=True, owner=None,
            labels=None):
        meta = {"name": name, "namespace": NS, "annotations": {"team": "a"},
                "labels": labels or {"app": name, "pod-template-hash": "5d4f"}}
        if owner:  # a real owner: the API server collects pods of a missing one
            meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner["kind"],
                                        "name": owner["metadata"]["name"],
                                        "uid": owner["metadata"]["uid"], "controller": True}]
        created = self.kc.create("v1", "pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": node, "containers": [
                {"name": c, "image": "kybernate.test/busybox:1", "command": ["/usr/bin/counter"]}
                for c in containers]}}, NS)
        if not running:
            return created
        return self.kubelet_status(created, running=containers)

    def kubelet_status(self, pod, running=(), start_error=None):
        """Write a pod's status as the kubelet would."""
        cur = self.kc.get("v1", "pods", pod["metadata"]["name"], NS)
        t = now_rfc3339()
        statuses = []
        for c in cur["spec"]["containers"]:
            s = {"name": c["name"], "image": c["image"], "imageID": "", "restartCount": 0,
                 "ready": c["name"] in running, "started": c["name"] in running}
            if c["name"] in running:
                s["state"] = {"running": {"startedAt": t}}
                s["containerID"] = "containerd://" + c["name"]
            elif start_error:
                s["state"] = {"waiting": {"reason": "CrashLoopBackOff"}}
                s["lastState"] = {"terminated": {"reason": "StartError", "exitCode": 128,
                                                 "message": start_error}}
                s["restartCount"] = 1
            else:
                s["state"] = {"waiting": {"reason": "ContainerCreating"}}
            statuses.append(s)
        cur["status"] = {"phase": "Running" if running or start_error else "Pending",
                         "startTime": t, "containerStatuses": statuses,
                         "conditions": [{"type": "PodScheduled", "status": "True",
                                         "lastTransitionTime": t}]}
        return self.kc.update_status("v1", "pods", cur, NS)

    def checkpoint(self, name, pod, **spec):
        spec = dict(spec, podName=pod)
        return self.kc.create(KYB, "checkpoints", {"apiVersion": KYB, "kind": "Checkpoint",
                                                   "metadata": {"name": name}, "spec": spec}, NS)

    def restore(self, name, **spec):
        return self.kc.create(KYB, "restores", {"apiVersion": KYB, "kind": "Restore",
                                                "metadata": {"name": name}, "spec": spec}, NS)

    def completed_checkpoint(self, name, pod_template, node="fake-a", gpus=(), ref=None):
        """A Checkpoint made Completed by hand (before any operator runs)."""
        ck = self.checkpoint(name, "gone-pod")
        ref = ref or f"file:///mnt/shared/{name}-main"
        ck["status"] = {"phase": "Completed", "nodeName": node, "podUID": "old-uid",
                        "completedAt": now_rfc3339(), "images": [image("main", ref)],
                        "imageRef": ref, "restoreFrom": f"main={ref}", "sizeBytes": 1000,
                        "gpuCount": len(gpus), "podTemplate": pod_template}
        if gpus:
            ck["status"]["gpus"] = list(gpus)
        return self.kc.update_status(KYB, "checkpoints", ck, NS)

    def get(self, plural, name):
        return get_opt(self.kc, KYB, plural, name)

    def wait(self, plural, name, pred, what, timeout=30):
        return wait_for(lambda: (lambda o: o if o is not None and pred(o) else None)(
            self.get(plural, name)), timeout, what, interval=0.1)

    def wait_phase(self, plural, name, *phases, timeout=30):
        return self.wait(plural, name, lambda o: phase(o) in phases,
                         f"{plural} {name} to be {'/'.join(phases)}", timeout)

    def wait_gone(self, plural, name, timeout=30, api_version=KYB):
        wait_for(lambda: get_opt(self.kc, api_version, plural, name) is None, timeout,
                 f"{plural} {name} to be gone", interval=0.1)


def setup_api(api, kc):
    for f in sorted((REPO_ROOT / "deploy" / "crds").glob("kybernate.io_*.yaml")):
        api.load(f)
    api.load(RUNTIME_CLASS)
    kc.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": NS}})


@pytest.fixture
def world(kube_api, kube_client, build_dir, tmp_path):
    setup_api(kube_api, kube_client)
    w = World(kube_api, kube_client, tmp_path, build_dir)
    yield w
    for o in w.operators:
        o.stop()


TEMPLATE = {"metadata": {"labels": {"app": "web", "pod-template-hash": "5d4f"},
                         "annotations": {"team": "a"}},
            "spec": {"nodeName": "fake-a", "restartPolicy": "Always",
                     "containers": [{"name": "main", "image": "kybernate.test/busybox:1",
                                     "command": ["/usr/bin/counter"]}]}}
H200 = {"uuid": "GPU-5a8c2b1e-7d3f-4c9a-b6e2-1f0d9c8b7a65", "model": "NVIDIA H200",
        "memoryBytes": 150754820096}


# ---------------------------------------------------------------- API-only tests

def test_checkpoint_of_missing_pod_fails(world):
    op = world.operator()
    world.node("fake-a")
    world.pod("pending", running=False)
    world.pod("web")
    world.checkpoint("ghost", "no-such-pod")
    world.checkpoint("early", "pending")
    world.checkpoint("typo", "web", containers=["mian"])
    ck = world.wait_phase("checkpoints", "ghost", "Failed")
    st = ck["status"]
    msg = f"pod {NS}/no-such-pod does not exist"
    for ctype in ("PodResolved", "Ready"):
        c = cond(ck, ctype)
        assert (c["status"], c["reason"], c["message"], c["observedGeneration"]) == \
            ("False", "PodNotFound", msg, 1), c
        assert c["lastTransitionTime"] == st["completedAt"]
    assert st["observedGeneration"] == 1
    assert FINALIZER not in (ck["metadata"].get("finalizers") or [])
    assert [(e["type"], e["reason"], e["message"]) for e in events_of(world.kc, "ghost", until=lambda ev: len(ev) > 0)] == \
        [("Warning", "PodNotFound", msg)]
    early = world.wait_phase("checkpoints", "early", "Failed")
    assert cond(early, "Ready")["reason"] == "PodNotRunning"
    assert "is Pending, not Running" in cond(early, "Ready")["message"]
    typo = world.wait_phase("checkpoints", "typo", "Failed")
    assert cond(typo, "PodResolved")["reason"] == "ContainerNotFound"
    assert "has no container mian (its containers: main)" in cond(typo, "Ready")["message"]
    # Nothing was asked of any node.
    assert world.agent.requests() == []
    m = op.metrics()
    assert m['kybernate_operator_checkpoints{phase="Failed"}'] == 3
    assert m["kybernate_operator_checkpoint_requests_created_total"] == 0


def test_checkpoint_restore_and_delete(world):
    """The whole contract with the test as agent and kubelet: request,
    roll-up, a Restore that waits for its Checkpoint, the restore pod, its
    status, metrics, events; deleting the Checkpoint deletes its image."""
    world.node("fake-a", {"nvidia.com/gpu.product": "NVIDIA-H200"})
    world.node("fake-b", {"nvidia.com/gpu.product": "NVIDIA-H200",
                          "kybernate.io/runtime": "ready"})
    pod = world.pod("web", containers=("main",))
    op = world.operator()
    world.checkpoint("web-1", "web", storage="file:///mnt/shared")
    world.restore("web-1-wake", checkpointName="web-1", nodeName="fake-b",
                  podTemplate={"labels": {"restored": "true"}})

    req = world.agent.wait_request("web-1")
    ck = world.wait_phase("checkpoints", "web-1", "Running")
    uid = ck["metadata"]["uid"]
    # The request: named <checkpoint>-<5>, labelled for its node, owned.
    name = req["metadata"]["name"]
    assert name.startswith("web-1-") and len(name) == len("web-1-") + 5
    assert req["metadata"]["labels"] == {"kybernate.io/node": "fake-a"}
    assert req["metadata"]["ownerReferences"] == [{
        "apiVersion": KYB, "kind": "Checkpoint", "name": "web-1", "uid": uid,
        "controller": True, "blockOwnerDeletion": True}]
    spec = req["spec"]
    assert (spec["action"], spec["nodeName"], spec["podNamespace"], spec["podName"],
            spec["podUID"], spec["containers"], spec["storage"], spec["leaveRunning"],
            spec["gpuLockTimeoutSeconds"], spec["checkpointRef"]) == \
        ("Checkpoint", "fake-a", NS, "web", pod["metadata"]["uid"], ["main"],
         "file:///mnt/shared", True, 10, {"name": "web-1", "uid": uid})
    # The Checkpoint: Running, the pod recorded, the finalizer on.
    st = ck["status"]
    assert (st["nodeName"], st["podUID"], st["checkpointRequestName"]) == \
        ("fake-a", pod["metadata"]["uid"], name)
    assert st["podTemplate"]["metadata"]["labels"] == {"app": "web", "pod-template-hash": "5d4f"}
    assert st["podTemplate"]["spec"]["containers"][0]["name"] == "main"
    assert cond(ck, "PodResolved")["reason"] == "Found"
    assert (cond(ck, "Ready")["status"], cond(ck, "Ready")["reason"]) == ("Unknown", "InProgress")
    assert ck["metadata"]["finalizers"] == [FINALIZER]
    # The Restore waits for it.
    rst = world.wait_phase("restores", "web-1-wake", "Pending")
    assert cond(rst, "PodCreated")["reason"] == "CheckpointNotCompleted"

    world.agent.claim(req)
    world.wait("checkpoints", "web-1",
               lambda o: "step dump" in cond(o, "Ready")["message"], "the step rolled up")
    ref = "file:///mnt/shared/web-main-20261201-134000"
    world.agent.complete(req, [image("main", ref, 17481234567)], [H200])
    ck = world.wait_phase("checkpoints", "web-1", "Completed")
    st = ck["status"]
    assert (st["imageRef"], st["imageDigest"], st["sizeBytes"], st["restoreFrom"],
            st["gpuCount"], st["gpus"]) == (ref, DIGEST, 17481234567, f"main={ref}", 1, [H200])
    assert st["images"] == [image("main", ref, 17481234567)]
    assert st["timings"]["total"] == 250 and st["timings"]["dump"] == 100
    ready = cond(ck, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Completed")
    assert ready["message"] == "1 image published (17.5 GB) in 0.25 s"
    assert {"RequestCreated", "Completed"} <= {e["reason"] for e in events_of(
        world.kc, "web-1", until=lambda ev: {"RequestCreated", "Completed"} <= {e["reason"] for e in ev})}

    # The restore pod, on fake-b, from the recorded template.
    rst = world.wait_phase("restores", "web-1-wake", "Restoring")
    p = world.kc.get("v1", "pods", "web-1-wake", NS)
    assert p["spec"]["nodeName"] == "fake-b"
    assert p["spec"]["runtimeClassName"] == "kybernate"
    # The RuntimeClass's nodeSelector, merged by the API server's admission.
    assert p["spec"]["nodeSelector"] == {"kybernate.io/runtime": "ready"}
    assert p["metadata"]["labels"] == {"app": "web", "restored": "true",
                                       "kybernate.io/restore": "web-1-wake"}
    assert p["metadata"]["annotations"] == {"team": "a", "kybernate.io/restore-from": f"main={ref}",
                                            "kybernate.io/restore-fallback": "none"}
    assert not p["metadata"].get("ownerReferences")
    assert (rst["status"]["podName"], rst["status"]["podUID"], rst["status"]["restoreFrom"]) == \
        ("web-1-wake", p["metadata"]["uid"], f"main={ref}")
    assert cond(rst, "PodCreated")["reason"] == "Created"
    world.kubelet_status(p, running=("main",))
    rst = world.wait_phase("restores", "web-1-wake", "Completed")
    ready = cond(rst, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Running")
    assert rst["status"]["nodeName"] == "fake-b" and rst["status"]["timings"]["total"] >= 0
    assert {"PodCreated", "Restored"} <= {e["reason"] for e in events_of(
        world.kc, "web-1-wake", until=lambda ev: {"PodCreated", "Restored"} <= {e["reason"] for e in ev})}
    m = op.metrics()
    assert m['kybernate_operator_checkpoints{phase="Completed"}'] == 1
    assert m['kybernate_operator_restores{phase="Completed"}'] == 1
    assert m["kybernate_operator_checkpoint_requests_created_total"] == 1
    assert m["kybernate_operator_restore_pods_created_total"] == 1
    assert m['kybernate_operator_reconcile_errors_total{kind="checkpoint"}'] == 0

    # Deleting the Checkpoint: a DeleteImage request on its node, then gone.
    world.kc.delete(KYB, "checkpoints", "web-1", NS)
    dreq = world.agent.wait_request("web-1", action="DeleteImage")
    assert (dreq["spec"]["nodeName"], dreq["spec"]["imageRefs"]) == ("fake-a", [ref])
    assert dreq["metadata"]["labels"] == {"kybernate.io/node": "fake-a"}
    assert world.get("checkpoints", "web-1")["metadata"]["deletionTimestamp"]
    world.agent.complete(dreq, message="1 image(s) deleted, 0 already gone")
    world.wait_gone("checkpoints", "web-1")
    # Its requests go with it (GC of dependents); the restored pod stays.
    wait_for(lambda: world.agent.requests() == [], 30, "the requests to be collected")
    assert world.kc.get("v1", "pods", "web-1-wake", NS)
    assert len([e for e in events_of(world.kc, "web-1", until=lambda ev: any(
        e["reason"] == "DeletingImages" for e in ev)) if e["reason"] == "DeletingImages"]) == 1


def test_retention_and_hibernation(world):
    world.node("fake-a")
    world.pod("web")
    world.operator("op", "--keep-last", "5")
    # Three Checkpoints of one pod with keepLast 2, and a failed one.
    refs = {}
    for n in ("c1", "f1", "c2", "c3"):
        world.checkpoint(n, "web", retention={"keepLast": 2})
        req = world.agent.wait_request(n)
        if n.startswith("f"):
            world.agent.fail(req, "GPULockTimeout", "gpu lock: timed out after 10 s")
            f = world.wait_phase("checkpoints", n, "Failed")
            assert cond(f, "Ready")["reason"] == "AgentFailed"
            assert cond(f, "Ready")["message"] == \
                "GPULockTimeout: gpu lock: timed out after 10 s"
            continue
        refs[n] = f"file:///mnt/shared/web-main-{n}"
        world.agent.complete(req, [image("main", refs[n])])
        world.wait_phase("checkpoints", n, "Completed")
    # c3 completed: c1 (the oldest) goes, through its finalizer.
    dreq = world.agent.wait_request("c1", action="DeleteImage")
    assert dreq["spec"]["imageRefs"] == [refs["c1"]]
    world.agent.complete(dreq)
    world.wait_gone("checkpoints", "c1")
    assert {c["metadata"]["name"] for c in world.kc.list(KYB, "checkpoints", NS)["items"]} == \
        {"f1", "c2", "c3"}
    assert "RetentionDeleted" in {e["reason"] for e in events_of(
        world.kc, "c3", until=lambda ev: "RetentionDeleted" in {e["reason"] for e in ev})}

    # Hibernation: the pod is deleted once the image is published.
    solo = world.pod("solo")
    world.checkpoint("solo-h", "solo", leaveRunning=False)
    req = world.agent.wait_request("solo-h")
    assert req["spec"]["leaveRunning"] is False
    world.agent.complete(req, [image("main", "file:///mnt/shared/solo-main-1")])
    ck = world.wait("checkpoints", "solo-h", lambda o: cond(o, "PodDeleted"),
                    "PodDeleted on solo-h")
    assert phase(ck) == "Completed"
    pd = cond(ck, "PodDeleted")
    assert (pd["status"], pd["reason"]) == ("True", "Hibernated"), pd
    # The double deletes a bound pod gracefully, as the API server does.
    p = get_opt(world.kc, "v1", "pods", "solo")
    assert p is None or p["metadata"]["deletionTimestamp"]
    assert p is None or p["metadata"]["uid"] == solo["metadata"]["uid"]
    # A pod a controller owns: deleted all the same, and the Checkpoint says
    # that the controller brings a fresh one.
    ds = world.kc.create("apps/v1", "daemonsets", {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "web-ds"},
        "spec": {"selector": {"matchLabels": {"app": "ds"}}, "template": {
            "metadata": {"labels": {"app": "ds"}},
            "spec": {"containers": [{"name": "main", "image": "kybernate.test/busybox:1"}]}}}}, NS)
    world.pod("rs-pod", owner=ds)
    world.checkpoint("rs-h", "rs-pod", leaveRunning=False)
    world.agent.complete(world.agent.wait_request("rs-h"),
                         [image("main", "file:///mnt/shared/rs-main-1")])
    ck = world.wait("checkpoints", "rs-h", lambda o: cond(o, "PodDeleted"), "PodDeleted on rs-h")
    pd = cond(ck, "PodDeleted")
    assert (pd["status"], pd["reason"]) == ("True", "ControllerRecreates"), pd
    assert "DaemonSet/web-ds" in pd["message"]
    assert ("Warning", "ControllerRecreates") in {(e["type"], e["reason"])
                                                  for e in events_of(world.kc, "rs-h", until=lambda ev: any(
                                                      e["reason"] == "ControllerRecreates" for e in ev))}


def test_node_lost(world):
    world.node("fake-a")
    world.pod("web")
    world.operator()  # --node-lost-after 4s
    # Never claimed: the request is deleted, the Checkpoint fails.
    world.checkpoint("unclaimed", "web")
    req = world.agent.wait_request("unclaimed")
    ck = world.wait_phase("checkpoints", "unclaimed", "Failed", timeout=60)
    ready = cond(ck, "Ready")
    assert (ready["reason"], ready["message"]) == (
        "NodeLost", f"no agent on node fake-a claimed checkpoint request "
                    f"{req['metadata']['name']} within 4s")
    wait_for(lambda: get_opt(world.kc, KYB, "checkpointrequests", req["metadata"]["name"]) is None,
             30, "the unclaimed request to be deleted")
    # Claimed, then the agent went quiet: the Checkpoint fails, the request
    # is left alone for the node's agent.
    world.checkpoint("quiet", "web")
    req = world.agent.claim(world.agent.wait_request("quiet"))
    ck = world.wait_phase("checkpoints", "quiet", "Failed", timeout=60)
    ready = cond(ck, "Ready")
    assert ready["reason"] == "NodeLost"
    assert "the agent on node fake-a (pod agent-x) stopped renewing" in ready["message"]
    left = world.kc.get(KYB, "checkpointrequests", req["metadata"]["name"], NS)
    assert left["status"] == req["status"]
    assert left["metadata"]["resourceVersion"] == req["metadata"]["resourceVersion"]
    # Deleting it: the lost request published nothing known: gone at once.
    world.kc.delete(KYB, "checkpoints", "quiet", NS)
    world.wait_gone("checkpoints", "quiet")
    assert not world.agent.requests("DeleteImage")


def test_restore_refusals(world):
    world.node("fake-a", {"kybernate.io/runtime": "ready", "nvidia.com/gpu.product": "NVIDIA-H200"})
    world.node("fake-h100", {"kybernate.io/runtime": "ready",
                             "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})
    world.completed_checkpoint("done", TEMPLATE, gpus=[H200])
    gvisor = json.loads(json.dumps(TEMPLATE))
    gvisor["spec"]["runtimeClassName"] = "gvisor"
    world.completed_checkpoint("sandboxed", gvisor)
    broken = world.checkpoint("broken", "gone-pod")
    broken["status"] = {"phase": "Failed", "conditions": [{
        "type": "Ready", "status": "False", "reason": "NodeLost", "message": "lost it",
        "lastTransitionTime": now_rfc3339()}]}
    world.kc.update_status(KYB, "checkpoints", broken, NS)
    world.pod("taken", node="fake-a")
    world.operator()

    expect = {
        "r-missing": ({"checkpointName": "nope"}, "CheckpointNotFound",
                      f"checkpoint {NS}/nope does not exist"),
        "r-broken": ({"checkpointName": "broken"}, "CheckpointNotCompleted", "lost it"),
        "r-gpu": ({"checkpointName": "done", "nodeName": "fake-h100"}, "GPUModelMismatch",
                  "node fake-h100 has nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3"),
        "r-taken": ({"checkpointName": "done", "podTemplate": {"name": "taken"}}, "PodExists",
                    f"pod {NS}/taken already exists"),
        "r-nonode": ({"checkpointName": "done", "nodeName": "ghost-node"}, "CreateFailed",
                     "node ghost-node does not exist"),
        "r-class": ({"checkpointName": "sandboxed"}, "RuntimeClassConflict", "gvisor"),
    }
    for name, (spec, _, _) in expect.items():
        world.restore(name, **spec)
    for name, (_, reason, text) in expect.items():
        r = world.wait_phase("restores", name, "Failed")
        for ctype in ("PodCreated", "Ready"):
            c = cond(r, ctype)
            assert (c["status"], c["reason"]) == ("False", reason), (name, c)
            assert text in c["message"], (name, c["message"])
        assert r["status"].get("podName") is None
    # The pod that was there is untouched.
    assert "kybernate.io/restore" not in world.kc.get("v1", "pods", "taken", NS)["metadata"][
        "labels"]

    # A restore whose container cannot start: RestoreFailed with the
    # kubelet's message (which carries kybernate-runc's reason).
    world.restore("r-start", checkpointName="done")
    world.wait_phase("restores", "r-start", "Restoring")
    p = world.kc.get("v1", "pods", "r-start", NS)
    assert p["spec"]["nodeName"] == "fake-a"  # the checkpoint's node by default
    world.kubelet_status(p, start_error="kybernate-runc: restore of main: no image done-main")
    r = world.wait_phase("restores", "r-start", "Failed")
    assert cond(r, "Ready")["reason"] == "RestoreFailed"
    assert cond(r, "Ready")["message"] == ("container main: StartError: kybernate-runc: restore "
                                           "of main: no image done-main")
    assert cond(r, "PodCreated")["status"] == "True"
    # A restore pod deleted before it runs: PodDeleted.
    world.restore("r-gone", checkpointName="done")
    world.wait_phase("restores", "r-gone", "Restoring")
    world.kc.delete("v1", "pods", "r-gone", NS, grace_period=0)
    r = world.wait_phase("restores", "r-gone", "Failed")
    assert cond(r, "Ready")["reason"] == "PodDeleted"
    # From an image reference: the pod spec given, the first container named.
    world.restore("r-image", imageRef="oci://registry.example.com/k/counter:c-1",
                  nodeName="fake-a", fallback="Cold",
                  podTemplate={"name": "from-image", "spec": {"containers": [
                      {"name": "counter", "image": "kybernate.test/busybox:1"}]}})
    world.wait_phase("restores", "r-image", "Restoring")
    p = world.kc.get("v1", "pods", "from-image", NS)
    assert p["metadata"]["annotations"] == {
        "kybernate.io/restore-from": "counter=oci://registry.example.com/k/counter:c-1",
        "kybernate.io/restore-fallback": "cold"}
    assert p["spec"]["nodeName"] == "fake-a" and p["spec"]["runtimeClassName"] == "kybernate"


def test_operator_restarted_between_request_and_status(world):
    """The crash window: the request exists, the Checkpoint does not say so
    yet.  A new operator finds that request (its name comes from the
    Checkpoint's uid) instead of making a second one."""
    world.node("fake-a")
    world.pod("web")
    inj = world.api.inject(r"/checkpoints/web-1/status$", code=500, count=None, method="PUT")
    first = world.operator("first")
    world.checkpoint("web-1", "web")
    req = world.agent.wait_request("web-1")
    wait_for(lambda: any(r.get("code") == 500 and r.get("path", "").endswith("/web-1/status")
                         for r in list(world.api.requests)), 30, "a failed status write")
    first.kill()
    world.api.clear_injections()
    assert inj is not None
    assert phase(world.get("checkpoints", "web-1")) is None
    second = world.operator("second")
    ck = world.wait_phase("checkpoints", "web-1", "Running")
    assert ck["status"]["checkpointRequestName"] == req["metadata"]["name"]
    assert ck["status"]["podTemplate"]["metadata"]["labels"]["app"] == "web"
    assert any("found its request" in m for m in second.messages())
    # Killed again while Running; the agent finishes with no operator there.
    second.kill()
    world.agent.complete(req, [image("main", "file:///mnt/shared/web-main-1")])
    world.operator("third")
    world.wait_phase("checkpoints", "web-1", "Completed")
    created = [r for r in list(world.api.requests) if r.get("method") == "POST" and
               r.get("path", "").endswith("/checkpointrequests") and r.get("code") == 201]
    assert len(created) == 1, created
    assert len(world.agent.requests()) == 1


def test_leader_election(world):
    """Two operators, one Lease: only the leader reconciles; the leader
    SIGKILLed → the other takes over once the lease runs out; SIGTERM →
    the lease is released at once."""
    args = ("--leader-elect", "--lease-name", "kybernate-operator", "--lease-namespace",
            "default", "--lease-duration", "4s", "--renew-deadline", "3s", "--retry-period",
            "500ms")
    a = world.operator("op-a", *args, "--identity", "op-a")
    b = world.operator("op-b", *args, "--identity", "op-b")

    def holder():
        lease = get_opt(world.kc, "coordination.k8s.io/v1", "leases", "kybernate-operator",
                        "default")
        return (lease or {}).get("spec", {}).get("holderIdentity")
    first = wait_for(lambda: holder() in ("op-a", "op-b") and holder(), 30, "a leader")
    leader, standby = (a, b) if first == "op-a" else (b, a)
    wait_for(lambda: leader.metrics()["kybernate_operator_leader"] == 1, 30, "leader gauge")
    world.checkpoint("ghost-1", "nobody")
    world.wait_phase("checkpoints", "ghost-1", "Failed")
    assert standby.metrics()["kybernate_operator_leader"] == 0
    assert standby.metrics()['kybernate_operator_reconciles_total{kind="checkpoint"}'] == 0
    assert leader.metrics()['kybernate_operator_reconciles_total{kind="checkpoint"}'] >= 1
    # Both are ready: a standby serves probes too.
    assert leader.http("/readyz")[0] == 200 and standby.http("/readyz")[0] == 200
    assert not any("caches synced" in m for m in standby.messages())

    leader.kill()
    wait_for(lambda: holder() == standby.name, 30, f"{standby.name} to take over")
    world.checkpoint("ghost-2", "nobody")
    world.wait_phase("checkpoints", "ghost-2", "Failed")
    assert standby.metrics()['kybernate_operator_reconciles_total{kind="checkpoint"}'] >= 1
    lease = world.kc.get("coordination.k8s.io/v1", "leases", "kybernate-operator", "default")
    assert lease["spec"]["leaseTransitions"] >= 1

    # SIGTERM: the controller stops, the lease is released (holder "").
    assert standby.stop() == 0
    assert holder() == ""
    assert any("released" in m for m in standby.messages())
    c = world.operator("op-c", *args, "--identity", "op-c")
    wait_for(lambda: holder() == "op-c", 30, "op-c to take the released lease")
    world.checkpoint("ghost-3", "nobody")
    world.wait_phase("checkpoints", "ghost-3", "Failed")
    assert c.metrics()["kybernate_operator_leader"] == 1


def test_probes_flags_and_logs(world, build_dir):
    op = world.operator()
    assert op.http("/healthz") == (200, "ok\n")
    wait_for(lambda: op.http("/readyz")[0] == 200, 30, "ready")
    assert op.http("/nope")[0] == 404
    text = op.http("/metrics")[1]
    assert "# TYPE kybernate_operator_reconcile_duration_seconds histogram" in text
    assert 'kybernate_operator_build_info{version="' in text
    # JSON lines with the project's fields.
    entry = op.logs()[0]
    assert {"time", "level", "program", "module", "msg"} <= set(entry)
    assert entry["program"] == "kybernate-operator"
    exe = str(build_dir / "cmd" / "kybernate-operator")
    bad = subprocess.run([exe, "--keep-last", "-1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--keep-last" in bad.stderr
    bad = subprocess.run([exe, "--lease-duration", "5s", "--renew-deadline", "9s"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "shorter" in bad.stderr
    # No API configuration at all: a clear error, exit 1.
    none = subprocess.run([exe, "--kubeconfig", str(world.base / "absent"),
                           "--metrics-bind-address", "0", "--log-format", "text"],
                          capture_output=True, text=True, timeout=30)
    assert none.returncode == 1 and "absent" in none.stderr
    assert op.stop() == 0


def test_least_privilege_rbac(build_dir, tmp_path):
    """The operator as its ServiceAccount with exactly deploy/rbac/operator.yaml
    (the double enforces RBAC): every call of a checkpoint, a restore, a
    deletion through the finalizer, retention, hibernation, an unclaimed
    request and leader election is allowed — not one 403."""
    from tests.doubles.kube_apiserver import KubeApiServer
    from tests.harness.kubeapi import KubeClient
    user = "system:serviceaccount:kybernate-system:kybernate-operator"
    with KubeApiServer(token="admin", tokens={"op-token": user}, rbac=True,
                       bookmark_interval=0.3) as api:
        kc = KubeClient.for_server(api)
        setup_api(api, kc)
        api.load(REPO_ROOT / "deploy" / "cluster" / "namespace.yaml")
        api.load(REPO_ROOT / "deploy" / "rbac" / "operator.yaml")
        w = World(api, kc, tmp_path, build_dir)
        w.kubeconfig = api.kubeconfig(str(tmp_path / "op-kubeconfig"), user_token="op-token")
        try:
            w.node("fake-a", {"kybernate.io/runtime": "ready"})
            w.pod("web")
            w.operator("op", "--leader-elect", "--lease-namespace", "kybernate-system",
                       "--keep-last", "1")
            w.checkpoint("ghost", "nobody")
            w.wait_phase("checkpoints", "ghost", "Failed")
            for n in ("c1", "c2"):
                w.checkpoint(n, "web", leaveRunning=(n == "c1"))
                w.agent.complete(w.agent.wait_request(n),
                                 [image("main", f"file:///mnt/shared/web-{n}")])
                w.wait_phase("checkpoints", n, "Completed")
            ck = w.wait("checkpoints", "c2", lambda o: cond(o, "PodDeleted"), "hibernation")
            assert cond(ck, "PodDeleted")["reason"] == "Hibernated"
            w.agent.complete(w.agent.wait_request("c1", action="DeleteImage"))  # retention
            w.wait_gone("checkpoints", "c1")
            w.restore("wake", checkpointName="c2")
            w.wait_phase("restores", "wake", "Restoring")
            w.pod("web2")
            w.checkpoint("lost", "web2")
            w.wait_phase("checkpoints", "lost", "Failed", timeout=60)  # unclaimed: deleted
            denied = [r for r in list(api.requests)
                      if r.get("user") == user and r.get("code") == 403]
            assert denied == [], denied
            assert any(r.get("user") == user for r in list(api.requests))
        finally:
            for o in w.operators:
                o.stop()
            kc.close()


# ---------------------------------------------------------------- end to end (root)

# A TEST wrapper the node's containerd finds as `runc` (first on its PATH):
# it holds `runc checkpoint` while <ctl>/block-checkpoint exists, until
# <ctl>/release-checkpoint appears (or 120 s), and logs it.
RUNC_WRAPPER = """#!/bin/sh
# TEST wrapper around runc (tests/integration/test_operator.py).
ctl='{ctl}'
for a in "$@"; do
  if [ "$a" = checkpoint ]; then
    echo "checkpoint $$" >> "$ctl/log"
    if [ -e "$ctl/block-checkpoint" ]; then
      echo "blocked checkpoint $$" >> "$ctl/log"
      i=0
      while [ ! -e "$ctl/release-checkpoint" ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done
    fi
    break
  fi
done
exec '{runc}' "$@"
"""

COUNT_FILE = "/data/count"


def counts_of(lines):
    return [int(x.split()[1]) for x in lines if x.startswith("count ") and x.split()[1].isdigit()]


class AgentProc:
    """The real kybernate-agent of one harness node."""

    def __init__(self, cluster, name, node, node_name, socket=None):
        self.name = name
        base = cluster.base
        self.socket = socket or base / f"{name}.sock"
        self.log_path = base / f"{name}.log"
        self.cmd = [str(cluster.build_dir / "cmd" / "kybernate-agent"), "--node", node_name,
                    "--kubeconfig", str(cluster.w.kubeconfig), "--containerd", str(node.socket),
                    "--config", str(cluster.config), "--state-dir", str(base / f"state-{node_name}"),
                    "--socket", str(self.socket), "--log-level", "debug", "--shutdown-grace", "20"]
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("KYBERNATE_", "KYB_CUDA_DOUBLE")) and k != "KUBECONFIG"}
        self.env.update({"POD_NAME": name, "POD_UID": f"uid-{name}",
                         "KYBERNATE_LIBCUDA": "/nonexistent/libcuda.so.1", "PATH": tool_path()})
        self.proc = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env, start_new_session=True)
        wait_for(self.watching, 30, f"agent {self.name} to watch", interval=0.1)
        return self

    def watching(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"agent {self.name} exited {self.proc.returncode}:\n"
                                 f"{self.log_path.read_text()[-3000:]}")
        return any("watching" in line for line in
                   self.log_path.read_text(errors="replace").splitlines())

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Cluster:
    """Nodes A and B (harness containerd + kubelet stand-in each; both
    labelled kybernate.io/runtime=ready) sharing one file:// store, the
    runc wrapper on A, the API double with the project's CRDs."""

    def __init__(self, w, base, build_dir, node_a, node_b, kubelet_a, kubelet_b, ctl, shared,
                 config):
        self.w, self.base, self.build_dir = w, base, build_dir
        self.node_a, self.node_b, self.kubelet_a, self.kubelet_b = node_a, node_b, kubelet_a, \
            kubelet_b
        self.ctl, self.shared, self.config = ctl, shared, config
        self.agent_b_socket = base / "agent-b.sock"
        self.agents = []

    def agent(self, name):
        a = AgentProc(self, name, self.node_a, "node-a")
        self.agents.append(a)
        return a.start()

    def agent_b(self, name="agent-b"):
        """The agent of node B, on the socket node B's containerd (and so
        kybernate-runc there) names in KYBERNATE_AGENT_SOCKET."""
        a = AgentProc(self, name, self.node_b, "node-b", socket=self.agent_b_socket)
        self.agents.append(a)
        return a.start()

    def counter_pod(self, name):
        self.w.kc.create("v1", "pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": "counter"}},
            "spec": {"nodeName": "node-a", "containers": [{
                "name": "main", "image": "kybernate.test/busybox:1",
                "command": ["/usr/bin/counter", "--interval", "100", "--mem", "64",
                            "--file", COUNT_FILE]}]}}, NS)
        self.kubelet_a.wait_phase(NS, name, "Running", timeout=120)
        cid = self.kubelet_a.container_id(NS, name)
        self.kubelet_a.cri.wait_log(cid, lambda ls: len(counts_of(ls)) >= 12, 60)
        return cid

    def ctl_log(self):
        p = self.ctl / "log"
        return p.read_text().splitlines() if p.exists() else []

    def requests_of(self, ckpt):
        return [r for r in self.w.kc.list(KYB, "checkpointrequests", NS)["items"]
                if r["spec"]["checkpointRef"]["uid"] == ckpt["metadata"]["uid"]]


@pytest.fixture
def cluster(kube_api, kube_client, make_node, make_kubelet, nodes_base, build_dir, tmp_path):
    setup_api(kube_api, kube_client)
    w = World(kube_api, kube_client, tmp_path, build_dir)
    base = Path(nodes_base) / "operator"
    base.mkdir()
    shared = base / "shared"
    shared.mkdir()
    config = base / "node-config.json"
    config.write_text(json.dumps({"defaultStore": f"file://{shared}", "stores": [],
                                  "runtime": {"delegate": "runc"}}))
    ctl = base / "runc-ctl"
    ctl.mkdir()
    bindir = base / "bin"
    bindir.mkdir()
    real = subprocess.run(["sh", "-c", "command -v runc"], capture_output=True, text=True,
                          env={"PATH": tool_path()}).stdout.strip()
    assert real, "runc not found"
    (bindir / "runc").write_text(RUNC_WRAPPER.format(ctl=ctl, runc=real))
    (bindir / "runc").chmod(0o755)
    node_a = make_node("opa", env={"KYBERNATE_CONFIG": str(config),
                                   "KYBERNATE_RUNTIME_STATE_DIR": str(base / "rt-a"),
                                   "PATH": f"{bindir}:{tool_path()}"})
    # kybernate-runc on B reports restore outcomes to B's agent (cluster.agent_b); on A no agent
    # socket is configured: its reports are not sent.
    node_b = make_node("opb", env={"KYBERNATE_CONFIG": str(config),
                                   "KYBERNATE_RUNTIME_STATE_DIR": str(base / "rt-b"),
                                   "KYBERNATE_AGENT_SOCKET": str(base / "agent-b.sock")})
    ready = {"kybernate.io/runtime": "ready"}
    kubelet_a = make_kubelet(node_a, "node-a", labels=ready, backoff=1.0)
    kubelet_b = make_kubelet(node_b, "node-b", labels=ready, backoff=1.0)
    c = Cluster(w, base, build_dir, node_a, node_b, kubelet_a, kubelet_b, ctl, shared, config)
    yield c
    (ctl / "release-checkpoint").touch()
    for o in w.operators:
        o.stop()
    for a in c.agents:
        a.stop()
    # The pods go before the nodes (the kubelets tear them down at stop).
    for p in kube_client.list("v1", "pods", NS)["items"]:
        try:
            kube_client.delete("v1", "pods", p["metadata"]["name"], NS, grace_period=0)
        except KubeApiError:
            pass
    subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)


def count_file_in_image(image_dir: Path) -> int:
    with tarfile.open(image_dir / "rootfs-diff.tar") as tar:
        text = tar.extractfile(COUNT_FILE.lstrip("/")).read().decode()
    assert text.startswith("count "), text
    return int(text.split()[1])


def manifest_digest(image_dir: Path) -> str:
    import hashlib
    return "sha256:" + hashlib.sha256((image_dir / "manifest.json").read_bytes()).hexdigest()


def test_end_to_end_checkpoint_on_a_restore_on_b(cluster, root):
    """Must-show of issue 6: a Checkpoint of a pod on node A, a Restore onto
    node B through the file store both share — the counter goes on, on B,
    in a new pod.  Then the Checkpoint is deleted and its image with it."""
    w = cluster.w
    cid_a = cluster.counter_pod("counter")
    lines_a = cluster.kubelet_a.cri.read_log(cid_a)
    filled = [x for x in lines_a if x.startswith("memory filled ")]
    assert len(filled) == 1, lines_a[:5]
    checksum = filled[0].rsplit(" ", 1)[1]
    w.operator("op")
    cluster.agent("agent-a")

    w.checkpoint("counter-1", "counter")
    ck = w.wait_phase("checkpoints", "counter-1", "Completed", "Failed", timeout=240)
    st = ck["status"]
    assert phase(ck) == "Completed", json.dumps(st, indent=1)
    name = st["imageRef"].rsplit("/", 1)[1]
    image_dir = cluster.shared / name
    assert st["imageRef"] == f"file://{cluster.shared}/{name}"
    assert st["imageDigest"] == manifest_digest(image_dir)
    assert st["restoreFrom"] == f"main={st['imageRef']}"
    assert st["nodeName"] == "node-a" and st["sizeBytes"] > 0 and st["timings"]["total"] > 0
    assert st["podTemplate"]["spec"]["containers"][0]["command"][0] == "/usr/bin/counter"
    (req,) = cluster.requests_of(ck)
    assert req["status"]["phase"] == "Completed" and req["status"]["attempts"] == 1
    # leaveRunning (default): the original counter runs on.
    cluster.kubelet_a.cri.wait_log(cid_a, lambda ls: counts_of(ls)[-1] > 20, 60)

    cluster.agent_b()
    w.restore("counter-1-b", checkpointName="counter-1", nodeName="node-b",
              podTemplate={"name": "counter-b"})
    r = w.wait_phase("restores", "counter-1-b", "Completed", "Failed", timeout=240)
    assert phase(r) == "Completed", json.dumps(r["status"], indent=1)
    assert r["status"]["nodeName"] == "node-b" and r["status"]["podName"] == "counter-b"
    # A real restore: kybernate-runc told B's agent, which recorded it on the pod.
    assert cond(r, "Ready")["reason"] == "Running", cond(r, "Ready")
    pod_b = w.kc.get("v1", "pods", "counter-b", NS)
    outcome = json.loads(pod_b["metadata"]["annotations"]["kybernate.io/restore-outcome"])
    assert outcome["main"]["outcome"] == "restored" and outcome["main"]["imageRef"] == \
        st["imageRef"], outcome
    evs = events_of(w.kc, "counter-b", lambda ev: any(e["reason"] == "Restored" for e in ev))
    assert any(e["reason"] == "Restored" and e["type"] == "Normal" for e in evs), evs
    assert not any(e["reason"] == "ColdStarted" for e in evs), evs
    assert pod_b["spec"]["runtimeClassName"] == "kybernate"
    assert pod_b["metadata"]["annotations"]["kybernate.io/restore-from"] == st["restoreFrom"]
    cid_b = cluster.kubelet_b.container_id(NS, "counter-b")
    lines_b = cluster.kubelet_b.cri.wait_log(cid_b, lambda ls: len(counts_of(ls)) >= 12, 60)
    counts_b = counts_of(lines_b)
    first = counts_b[0]
    # It goes on from the checkpointed value, not from 1: the image's file
    # holds the count at the dump (or one before: the freeze may fall
    # between the print and the write), the old log printed first - 1.
    assert_consecutive(counts_b, first)
    assert count_file_in_image(image_dir) in (first - 1, first - 2)
    assert first - 1 in counts_of(cluster.kubelet_a.cri.read_log(cid_a))
    assert not any(x.startswith("memory filled") for x in lines_b), lines_b[:3]
    oks = [x for x in lines_b if x.startswith("memory ")]
    assert oks and all(x == f"memory ok {checksum}" for x in oks), oks

    # Deleting the Checkpoint deletes its image from the shared store.
    w.kc.delete(KYB, "checkpoints", "counter-1", NS)
    w.wait_gone("checkpoints", "counter-1", timeout=120)
    assert not image_dir.exists()
    # The restored pod is not the Checkpoint's: it runs on.
    n = counts_of(cluster.kubelet_b.cri.read_log(cid_b))[-1]
    cluster.kubelet_b.cri.wait_log(cid_b, lambda ls: counts_of(ls)[-1] >= n + 3, 60)


def test_cold_fallback_is_reported(cluster, root):
    """A Restore with fallback Cold whose image is broken (one flipped byte:
    kybernate-runc's digest check fails): the pod runs, started afresh (the
    counter begins at 1); kybernate-runc tells B's agent, which annotates the
    pod and records a Warning ColdStarted Event on it; the Restore completes
    with Ready True ColdStarted naming the container and the reason, not
    Running."""
    w = cluster.w
    cluster.counter_pod("counter")
    w.operator("op")
    cluster.agent("agent-a")
    cluster.agent_b()
    w.checkpoint("counter-1", "counter")
    ck = w.wait_phase("checkpoints", "counter-1", "Completed", "Failed", timeout=240)
    assert phase(ck) == "Completed", json.dumps(ck["status"], indent=1)
    pages = cluster.shared / ck["status"]["imageRef"].rsplit("/", 1)[1] / "criu" / "pages-1.img"
    data = bytearray(pages.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pages.write_bytes(bytes(data))

    w.restore("counter-cold", checkpointName="counter-1", nodeName="node-b", fallback="Cold",
              podTemplate={"name": "counter-cold"})
    r = w.wait_phase("restores", "counter-cold", "Completed", "Failed", timeout=240)
    assert phase(r) == "Completed", json.dumps(r["status"], indent=1)
    ready = cond(r, "Ready")
    assert ready["status"] == "True" and ready["reason"] == "ColdStarted", ready
    assert "started afresh (fallback Cold)" in ready["message"], ready
    assert "container main: " in ready["message"] and "criu/pages-1.img" in ready["message"], ready
    # Fresh: the counter starts at 1, not where the checkpoint was.
    cid = cluster.kubelet_b.container_id(NS, "counter-cold")
    lines = cluster.kubelet_b.cri.wait_log(cid, lambda ls: len(counts_of(ls)) >= 3, 60)
    assert counts_of(lines)[0] == 1, lines[:5]
    assert_consecutive(counts_of(lines), 1)
    pod = w.kc.get("v1", "pods", "counter-cold", NS)
    outcome = json.loads(pod["metadata"]["annotations"]["kybernate.io/restore-outcome"])
    assert outcome["main"]["outcome"] == "cold", outcome
    assert "criu/pages-1.img" in outcome["main"]["reason"], outcome
    evs = events_of(w.kc, "counter-cold", lambda ev: any(e["reason"] == "ColdStarted" for e in ev))
    (cold,) = [e for e in evs if e["reason"] == "ColdStarted" and
               e["involvedObject"]["kind"] == "Pod"]
    assert cold["type"] == "Warning" and cold["involvedObject"]["kind"] == "Pod", cold
    assert cold["involvedObject"]["uid"] == pod["metadata"]["uid"], cold
    assert "container main started afresh" in cold["message"], cold
    assert "criu/pages-1.img" in cold["message"], cold
    assert not any(e["reason"] == "Restored" for e in evs), evs
    # The Restore's own Event says it too.
    revs = events_of(w.kc, "counter-cold", lambda ev: any(
        e["involvedObject"]["kind"] == "Restore" for e in ev))
    assert any(e["involvedObject"]["kind"] == "Restore" and e["reason"] == "ColdStarted" and
               e["type"] == "Warning" for e in revs), revs


def test_restarts_mid_checkpoint(cluster, root):
    """The operator SIGKILLed while the agent dumps, and then the agent:
    each Checkpoint ends Completed or Failed with a reason, with one
    CheckpointRequest, never stuck, never dumped twice."""
    w = cluster.w
    cid = cluster.counter_pod("counter")
    (cluster.ctl / "block-checkpoint").touch()
    op1 = w.operator("op1")
    cluster.agent("agent-a")

    # 1. The operator dies mid-dump; a new one rolls the result up.
    w.checkpoint("ck-op", "counter")
    wait_for(lambda: any(x.startswith("blocked checkpoint") for x in cluster.ctl_log()), 120,
             "the dump to start")
    ck = w.wait_phase("checkpoints", "ck-op", "Running")
    op1.kill()
    (cluster.ctl / "block-checkpoint").unlink()
    (cluster.ctl / "release-checkpoint").touch()
    w.operator("op2")
    ck = w.wait_phase("checkpoints", "ck-op", "Completed", "Failed", timeout=240)
    assert phase(ck) == "Completed", json.dumps(ck["status"], indent=1)
    assert len(cluster.requests_of(ck)) == 1
    assert len([x for x in cluster.ctl_log() if x.startswith("checkpoint ")]) == 1

    # 2. The agent dies mid-dump; the next agent fails the request
    # (AgentRestarted, no second dump); the Checkpoint fails with that.
    (cluster.ctl / "release-checkpoint").unlink()
    (cluster.ctl / "block-checkpoint").touch()
    w.checkpoint("ck-agent", "counter")
    wait_for(lambda: len([x for x in cluster.ctl_log() if x.startswith("blocked")]) == 2, 120,
             "the second dump to start")
    cluster.agents[0].kill()
    (cluster.ctl / "block-checkpoint").unlink()
    (cluster.ctl / "release-checkpoint").touch()
    cluster.agent("agent-a2")
    ck = w.wait_phase("checkpoints", "ck-agent", "Completed", "Failed", timeout=240)
    ready = cond(ck, "Ready")
    (req,) = cluster.requests_of(ck)
    if phase(ck) == "Failed":
        assert ready["reason"] == "AgentFailed" and ready["message"].startswith(
            "AgentRestarted: "), ready
    assert req["status"]["attempts"] == 2
    assert len([x for x in cluster.ctl_log() if x.startswith("checkpoint ")]) == 2
    # The workload runs on either way.
    n = counts_of(cluster.kubelet_a.cri.read_log(cid))[-1]
    cluster.kubelet_a.cri.wait_log(cid, lambda ls: counts_of(ls)[-1] >= n + 3, 60)

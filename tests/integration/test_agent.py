# SPDX-License-Identifier: Apache-2.0
"""kybernate-agent (issue 6, item 4) against the Kubernetes API server
double (tests/doubles/kube_apiserver.py, with the project's CRDs from
deploy/crds), a harness node's real containerd/runc/CRIU, and the kubelet
stand-in (tests/harness/kubelet.py) that runs the pods bound to that node.

What is checked:
  - a CheckpointRequest for a running counter pod: the agent claims it,
    checkpoints the container through containerd, and writes Completed with
    imageRef/imageDigest/sizeBytes/timings/conditions; the image verifies,
    its digest is its manifest's sha256, the counter goes on; then a
    DeleteImage request removes the image (and succeeds again when it is
    gone); the local API answers /v1/healthz and checkpoints through
    /v1/checkpoint;
  - a request for a pod that does not exist -> Failed PodNotFound; for a
    pod recreated under the same name (another uid) -> Failed PodReplaced;
    for a file:// store that is not the node's -> Failed StoreNotConfigured;
    nothing is dumped for any of them;
  - the agent SIGKILLed while the dump runs (a TEST wrapper around runc
    holds `runc checkpoint` until the test releases it; the task is paused
    then): its worker dies with it, the request stays Running; a new agent
    (another POD_UID) takes it over and fails it AgentRestarted without
    dumping again (runc checkpoint ran once: the wrapper's log; the second
    agent started no worker: its log), the container is RUNNING again and
    counts on, no image and no staging leftover is in the store;
  - the agent SIGKILLed after the image was published (the wrapper holds
    the `runc resume` that follows the dump): a new agent completes the
    request with that image, resumes the container;
  - the deadline: a dump held past deadlineSeconds -> the agent kills its
    worker; its Resume waits in the shim for the dump to end and thaws the
    container; Failed DeadlineExceeded;
  - SIGTERM during a dump: no new claims, /v1/healthz says stopping, the
    dump finishes, exit 0; SIGTERM past --shutdown-grace: the worker is
    killed, the container resumed, Failed AgentRestarted;
  - a request left Running by a dead agent while the container's CUDA
    process is CHECKPOINTED (the libcuda TEST DOUBLE, no GPU here): the new
    agent restores and unlocks it before it fails the request;
  - an oci:// store (a real registry) through kybernate-uploader: staged
    locally, pushed, the local copy removed; /v1/images/fetch has the
    uploader fetch it; DeleteImage through the uploader;
  - POST /v1/restore-outcome (kybernate-runc's report): bad bodies are
    400 naming the field; a cold start becomes the pod's annotation
    kybernate.io/restore-outcome and a Warning ColdStarted Event, a restore
    another container's entry next to it; a replaced pod (another uid) is
    409, a missing one 404, a pod of another node 403, none of them written;
  - two agents for one node: the second exits at once (host flock).

Needs root (containerd) except the last test.
"""

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness import REPO_ROOT, procs, tool_path
from tests.harness.checks import wait_for

KYB = "kybernate.io/v1alpha1"
NS = "shop"
NODE = "ag-1"

# A TEST wrapper the node's containerd finds as `runc` (first on its PATH):
# it logs the runc commands the tests care about and holds one while
# <ctl>/block-<op> exists, until <ctl>/release-<op> appears (or 120 s).
RUNC_WRAPPER = """#!/bin/sh
# TEST wrapper around runc (tests/integration/test_agent.py).
ctl='{ctl}'
op=
for a in "$@"; do
  case "$a" in checkpoint|resume|pause) op=$a; break;; esac
done
if [ -n "$op" ]; then
  echo "$op $$" >> "$ctl/log"
  if [ -e "$ctl/block-$op" ]; then
    echo "blocked $op $$" >> "$ctl/log"
    i=0
    while [ ! -e "$ctl/release-$op" ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done
    echo "released $op $$" >> "$ctl/log"
  fi
fi
exec '{runc}' "$@"
"""


# ---------------------------------------------------------------- helpers

class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=120):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def local_api(sock, method, path, body=None, timeout=120):
    conn = UnixHTTPConnection(str(sock), timeout)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


class Agent:
    """One kybernate-agent process with its log file (JSON lines)."""

    def __init__(self, build_dir, kubeconfig, base, name, *, node=None, state_dir, store,
                 pod_uid=None, extra_env=None, args=()):
        self.name = name
        self.socket = base / f"{name}.sock"
        self.log_path = base / f"{name}.log"
        config = base / f"{name}-config.json"
        config.write_text(json.dumps({"defaultStore": f"file://{store}", "stores": [],
                                      "runtime": {"delegate": "runc"}}))
        self.cmd = [str(build_dir / "cmd" / "kybernate-agent"), "--node", NODE,
                    "--kubeconfig", str(kubeconfig), "--state-dir", str(state_dir),
                    "--socket", str(self.socket), "--config", str(config),
                    "--log-level", "debug", "--shutdown-grace", "20", *args]
        if node is not None:
            self.cmd += ["--containerd", str(node.socket)]
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("KYBERNATE_", "KYB_CUDA_DOUBLE")) and k != "KUBECONFIG"}
        env.update({"POD_NAME": name, "POD_UID": pod_uid or f"uid-{name}",
                    "KYBERNATE_LIBCUDA": "/nonexistent/libcuda.so.1", "PATH": tool_path()})
        env.update(extra_env or {})
        self.env = env
        self.proc = None

    def start(self, wait=True):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        log.close()
        if wait:
            wait_for(self.watching, 30, f"agent {self.name} to watch", interval=0.1)
        return self

    def watching(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"agent {self.name} exited {self.proc.returncode}:\n"
                                 f"{self.log_path.read_text()[-3000:]}")
        try:
            st, body = local_api(self.socket, "GET", "/v1/healthz", timeout=5)
        except OSError:
            return False
        return st == 200 and body.get("watching")

    def logs(self):
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def messages(self, program="kybernate-agent"):
        return [e["msg"] for e in self.logs() if e.get("program") == program]

    def worker_pids(self):
        pids = []
        for m in self.messages():
            if m.startswith("checkpoint worker ") and ":" in m:
                pids.append(int(m.split()[2].rstrip(":")))
        return pids

    def kill(self):
        self.proc.kill()  # SIGKILL: no handler, no cleanup, like a crash or an OOM kill
        self.proc.wait(10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode if self.proc else None


def request(name, pod_name, pod_uid, **spec):
    s = {"nodeName": NODE, "podNamespace": NS, "podName": pod_name, "podUID": pod_uid,
         "containers": ["main"], "checkpointRef": {"name": name, "uid": f"ckpt-{name}"}}
    s.update(spec)
    return {"apiVersion": KYB, "kind": "CheckpointRequest",
            "metadata": {"name": name, "namespace": NS, "labels": {"kybernate.io/node": NODE}},
            "spec": s}


def counter_pod(name):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"nodeName": NODE, "containers": [{
                "name": "main", "image": "kybernate.test/busybox:1",
                "command": ["/usr/bin/counter", "--interval", "100"]}]}}


def counts_of(lines):
    return [int(x.split()[1]) for x in lines if x.startswith("count ") and x.split()[1].isdigit()]


def condition(obj, ctype="Succeeded"):
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return c
    return None


def manifest_digest(store, name):
    return "sha256:" + hashlib.sha256((store / name / "manifest.json").read_bytes()).hexdigest()


def store_entries(store):
    return sorted(p.name for p in store.iterdir()) if store.exists() else []


# ---------------------------------------------------------------- fixtures

class World:
    """API double with the CRDs, a node with the runc wrapper, its kubelet,
    a counter pod, a store and agents."""

    def __init__(self, api, kc, node, kubelet, base, build_dir, ctl):
        self.api, self.kc, self.node, self.kubelet = api, kc, node, kubelet
        self.base, self.build_dir, self.ctl = base, build_dir, ctl
        self.store = base / "store"
        self.state = base / "state"
        self.kubeconfig = api.kubeconfig(str(base / "kubeconfig"))
        self.agents = []

    def agent(self, name, start=True, **kw):
        kw.setdefault("node", self.node)
        kw.setdefault("state_dir", self.state)
        kw.setdefault("store", self.store)
        a = Agent(self.build_dir, self.kubeconfig, self.base, name, **kw)
        self.agents.append(a)
        return a.start() if start else a

    def pod(self, name="web"):
        created = self.kc.create("v1", "pods", counter_pod(name), NS)
        self.kubelet.wait_phase(NS, name, "Running")
        cid = self.kubelet.container_id(NS, name)
        self.kubelet.cri.wait_log(cid, lambda ls: len(counts_of(ls)) >= 3)
        return created["metadata"]["uid"], cid

    def create(self, obj):
        return self.kc.create(KYB, "checkpointrequests", obj, NS)

    def get(self, name):
        return self.kc.get(KYB, "checkpointrequests", name, NS)

    def wait_final(self, name, timeout=120):
        def final():
            o = self.get(name)
            return (o.get("status") or {}).get("phase") in ("Completed", "Failed") and o
        return wait_for(final, timeout, f"request {name} to finish", interval=0.2)

    def wait_status(self, name, pred, what, timeout=60):
        return wait_for(lambda: pred(self.get(name).get("status") or {}), timeout, what,
                        interval=0.1)

    def task_status(self, cid):
        return self.node.tasks("k8s.io").get(cid, (0, "gone"))[1]

    def frozen(self, cid) -> bool:
        """The container's cgroup freezer state (`ctr tasks ls` answers
        UNKNOWN while the shim is busy with a checkpoint)."""
        paths = (self.node.runc_state(cid, "k8s.io") or {}).get("cgroup_paths") or {}
        if "freezer" in paths:  # cgroup v1
            return Path(paths["freezer"], "freezer.state").read_text().strip() == "FROZEN"
        events = Path(paths[""], "cgroup.events").read_text()  # cgroup v2
        return "frozen 1" in events.splitlines()

    def counter_goes_on(self, cid, more=3):
        before = counts_of(self.kubelet.cri.read_log(cid))
        last = before[-1] if before else 0
        self.kubelet.cri.wait_log(cid, lambda ls: (counts_of(ls) or [0])[-1] >= last + more,
                                  timeout=30)

    def ctl_log(self):
        p = self.ctl / "log"
        return p.read_text().splitlines() if p.exists() else []

    def verify(self, ref):
        return subprocess.run([str(self.build_dir / "cmd" / "kybernate"), "images", "verify",
                               ref], capture_output=True, text=True, timeout=120)


@pytest.fixture
def world(kube_api, kube_client, make_node, make_kubelet, nodes_base, build_dir, tmp_path):
    ctl = tmp_path / "runc-ctl"
    ctl.mkdir()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    real = subprocess.run(["sh", "-c", "command -v runc"], capture_output=True, text=True,
                          env={"PATH": tool_path()}).stdout.strip()
    assert real, "runc not found"
    wrapper = bindir / "runc"
    wrapper.write_text(RUNC_WRAPPER.format(ctl=ctl, runc=real))
    wrapper.chmod(0o755)
    node = make_node("ag", env={"PATH": f"{bindir}:{tool_path()}"})
    for f in sorted((REPO_ROOT / "deploy" / "crds").glob("kybernate.io_*.yaml")):
        kube_api.load(f)
    kube_client.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                            "metadata": {"name": NS}})
    kubelet = make_kubelet(node, NODE, backoff=1.0)
    base = Path(nodes_base) / "agent"
    base.mkdir()
    w = World(kube_api, kube_client, node, kubelet, base, build_dir, ctl)
    yield w
    # Nothing may stay held by a test that failed midway.
    for op in ("checkpoint", "resume", "pause"):
        (ctl / f"release-{op}").touch()
    for a in w.agents:
        a.stop()
    subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)


# ---------------------------------------------------------------- tests

def test_request_checkpointed_and_image_deleted(world):
    uid, cid = world.pod("web")
    agent = world.agent("agent-a")
    world.create(request("web-1", "web", uid))
    done = world.wait_final("web-1")
    st = done["status"]
    assert st["phase"] == "Completed", json.dumps(st, indent=1)
    assert st["attempts"] == 1 and st["step"] == "done"
    assert st["agent"]["podName"] == "agent-a" and st["agent"]["podUID"] == "uid-agent-a"
    (img,) = st["images"]
    name = img["imageRef"].rsplit("/", 1)[1]
    assert img["container"] == "main" and img["imageRef"] == st["imageRef"]
    assert img["imageRef"] == f"file://{world.store}/{name}"
    assert name.startswith("web-main-") and name.endswith("-" + done["metadata"]["uid"][:5])
    assert st["imageDigest"] == manifest_digest(world.store, name)
    assert st["sizeBytes"] == img["sizeBytes"] > 0
    assert {"criu_dump", "rootfs_diff", "package", "total"} <= set(st["timings"])
    c = condition(done)
    assert (c["status"], c["reason"], c["observedGeneration"]) == ("True", "Completed", 1)
    assert st["startedAt"] <= st["completedAt"]
    manifest = json.loads((world.store / name / "manifest.json").read_text())
    assert manifest["source"]["pod"] == {"name": "web", "namespace": NS, "uid": uid,
                                         "container": "main"}
    assert world.verify(img["imageRef"]).returncode == 0
    # leaveRunning (default true): the container runs on, not paused.
    assert world.task_status(cid) == "RUNNING"
    world.counter_goes_on(cid)
    reasons = {e["reason"] for e in world.kc.list("v1", "events", NS)["items"]
               if e["involvedObject"]["name"] == "web-1"}
    assert {"Claimed", "Completed"} <= reasons, reasons

    # DeleteImage: the image goes; deleting it again succeeds too.
    for i in (1, 2):
        world.create(request(f"web-1-del{i}", "web", uid, action="DeleteImage",
                             imageRefs=[img["imageRef"]]))
        d = world.wait_final(f"web-1-del{i}")
        assert d["status"]["phase"] == "Completed", d["status"]
        assert condition(d)["message"] == ("1 image(s) deleted, 0 already gone" if i == 1 else
                                           "0 image(s) deleted, 1 already gone")
        assert name not in store_entries(world.store)

    # The local API: health, and a checkpoint through the agent's worker.
    # (The count goes up just after the final status is written.)
    health = wait_for(lambda: (lambda r: r[0] == 200 and r[1]["completed"] == 3 and r[1])(
        local_api(agent.socket, "GET", "/v1/healthz")), 10, "three requests counted")
    assert health["watching"] and health["node"] == NODE and health["status"] == "ok"
    status, res = local_api(agent.socket, "POST", "/v1/checkpoint",
                            {"pod": f"{NS}/web", "container": "main", "leaveRunning": True,
                             "name": "web-local"})
    assert status == 200, res
    assert res["ref"] == f"file://{world.store}/web-local" and res["digest"].startswith("sha256:")
    assert world.verify(res["ref"]).returncode == 0
    status, res = local_api(agent.socket, "POST", "/v1/images/fetch", {"ref": res["ref"]})
    assert status == 200 and res["path"] == str(world.store / "web-local")
    status, res = local_api(agent.socket, "POST", "/v1/checkpoint",
                            {"pod": f"{NS}/web", "container": "main", "store": "file:///etc"})
    assert status == 403 and "not one of this node's stores" in res["error"]["message"]
    assert world.task_status(cid) == "RUNNING"
    assert agent.stop() == 0


def test_missing_and_replaced_pod_fail(world):
    uid, cid = world.pod("web")
    world.agent("agent-a")
    world.create(request("ghost-1", "ghost", "0000"))
    world.create(request("web-old", "web", "not-" + uid))
    world.create(request("web-elsewhere", "web", uid, storage="file:///tmp/not-a-node-store"))
    expect = {"ghost-1": ("PodNotFound", f"pod {NS}/ghost does not exist"),
              "web-old": ("PodReplaced", "recreated under the same name"),
              "web-elsewhere": ("StoreNotConfigured", "is not one of this node's stores")}
    for name, (reason, text) in expect.items():
        d = world.wait_final(name)
        c = condition(d)
        assert d["status"]["phase"] == "Failed", d["status"]
        assert (c["status"], c["reason"]) == ("False", reason), c
        assert text in c["message"], c
        assert "images" not in d["status"] and d["status"]["timings"]["total"] >= 0
    # Nothing was dumped, nothing is in the store, the pod runs on.
    assert not [x for x in world.ctl_log() if x.startswith("checkpoint")]
    assert store_entries(world.store) == []
    assert world.task_status(cid) == "RUNNING"


def test_restore_outcome_recorded_on_the_pod(world):
    uid, _ = world.pod("web")
    a = world.agent("agent-a")
    ann = "kybernate.io/restore-outcome"

    def post(body, raw=None):
        conn = UnixHTTPConnection(str(a.socket), 30)
        try:
            conn.request("POST", "/v1/restore-outcome",
                         body=raw if raw is not None else json.dumps(body),
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            return r.status, json.loads(r.read() or b"{}")
        finally:
            conn.close()

    def outcome():
        v = (world.kc.get("v1", "pods", "web", NS)["metadata"].get("annotations") or {}).get(ann)
        return json.loads(v) if v is not None else None

    good = {"podNamespace": NS, "podName": "web", "podUID": uid, "container": "main",
            "outcome": "cold", "reason": "file criu/pages-1.img has sha256 ab, the manifest says cd",
            "imageRef": "file:///mnt/shared/web-1"}
    bad = [(None, "{not json", "not a JSON object"),
           ({k: v for k, v in good.items() if k != "outcome"}, None, '"outcome" must be'),
           ({k: v for k, v in good.items() if k != "reason"}, None, '"reason" is required'),
           ({**good, "podUID": 7}, None, '"podUID" must be a string'),
           ({**good, "container": "Main_1"}, None, "not a container name"),
           ({**good, "extra": True}, None, 'unknown field "extra"')]
    for body, raw, text in bad:
        st, ans = post(body, raw)
        assert st == 400 and text in ans["error"]["message"], (body, raw, st, ans)
    assert outcome() is None

    st, ans = post(good)
    assert st == 200 and ans == {"annotation": ann, "outcome": "cold"}, ans
    got = outcome()
    assert got["main"]["outcome"] == "cold" and got["main"]["reason"] == good["reason"], got
    assert got["main"]["imageRef"] == good["imageRef"] and got["main"]["at"], got
    evs = [e for e in world.kc.list("v1", "events", NS)["items"]
           if e["involvedObject"]["name"] == "web" and e["reason"] == "ColdStarted"]
    assert len(evs) == 1 and evs[0]["type"] == "Warning", evs
    assert evs[0]["involvedObject"]["uid"] == uid and "container main started afresh" in \
        evs[0]["message"] and "criu/pages-1.img" in evs[0]["message"], evs
    # Another container's outcome goes next to it.
    st, _ = post({**good, "container": "side", "outcome": "restored", "reason": None})
    assert st == 200
    assert set(outcome()) == {"main", "side"} and outcome()["side"]["outcome"] == "restored"
    before = outcome()

    # Never onto a replaced pod, a missing one, or one of another node.
    st, ans = post({**good, "podUID": "not-" + uid})
    assert st == 409 and "the outcome of a replaced pod" in ans["error"]["message"], ans
    st, ans = post({**good, "podName": "ghost"})
    assert st == 404, ans
    other = counter_pod("elsewhere")
    other["spec"]["nodeName"] = "node-other"
    o = world.kc.create("v1", "pods", other, NS)
    st, ans = post({**good, "podName": "elsewhere", "podUID": o["metadata"]["uid"]})
    assert st == 403 and "not on this agent's node" in ans["error"]["message"], ans
    assert ann not in (world.kc.get("v1", "pods", "elsewhere", NS)["metadata"].get(
        "annotations") or {})
    assert outcome() == before
    world.kc.delete("v1", "pods", "elsewhere", NS, grace_period=0)


def test_agent_killed_mid_dump_is_failed_by_next_agent(world):
    uid, cid = world.pod("web")
    (world.ctl / "block-checkpoint").touch()
    first = world.agent("agent-a")
    world.create(request("web-2", "web", uid))
    wait_for(lambda: any(x.startswith("blocked checkpoint") for x in world.ctl_log()), 60,
             "the dump to start")
    world.wait_status("web-2", lambda s: s.get("step") == "dump", "step dump")
    assert world.frozen(cid)
    (worker,) = first.worker_pids()
    first.kill()
    # The worker dies with its agent (PR_SET_PDEATHSIG): nothing dumps on.
    assert procs.wait_gone([worker], 10) == []
    st = world.get("web-2")["status"]
    assert st["phase"] == "Running" and st["attempts"] == 1
    # Let the held `runc checkpoint` go (the shim may already have ended it).
    (world.ctl / "release-checkpoint").touch()
    time.sleep(0.5)

    second = world.agent("agent-b")
    done = world.wait_final("web-2")
    st = done["status"]
    c = condition(done)
    assert (st["phase"], c["reason"]) == ("Failed", "AgentRestarted"), st
    assert st["attempts"] == 2 and st["agent"]["podName"] == "agent-b"
    assert "step dump" in c["message"] and "not redone" in c["message"], c["message"]
    # The container is running again (thawed) and counts on.
    assert not world.frozen(cid)
    wait_for(lambda: world.task_status(cid) == "RUNNING", 30, "the container to run")
    world.counter_goes_on(cid)
    # Never twice: one `runc checkpoint` in all; the second agent started
    # no worker, it took over.
    assert len([x for x in world.ctl_log() if x.startswith("checkpoint ")]) == 1
    assert second.worker_pids() == []
    assert any(m.startswith("took over shop/web-2") for m in second.messages())
    assert len(first.worker_pids()) == 1
    # No image, no staging leftover.
    assert store_entries(world.store) == []
    reasons = {e["reason"] for e in world.kc.list("v1", "events", NS)["items"]
               if e["involvedObject"]["name"] == "web-2"}
    assert {"Claimed", "TakenOver", "Failed"} <= reasons, reasons


def test_agent_killed_after_publish_is_completed_by_next_agent(world):
    """leaveRunning false: the image is published, then the container is
    stopped (kill, then a resume that thaws a frozen cgroup).  The agent dies
    while that resume hangs; the next agent finds the image published and
    completes the request, the container stopped.  (With leaveRunning the
    workload resumes before packaging, so nothing runc does comes after the
    publish to hold it at.)"""
    uid, cid = world.pod("web")
    (world.ctl / "block-resume").touch()
    first = world.agent("agent-a")
    world.create(request("web-3", "web", uid, leaveRunning=False))
    wait_for(lambda: any(x.startswith("blocked resume") for x in world.ctl_log()), 60,
             "the resume after the stop")
    images = store_entries(world.store)
    assert len(images) == 1 and images[0].startswith("web-main-"), images
    first.kill()
    assert world.get("web-3")["status"]["phase"] == "Running"
    (world.ctl / "block-resume").unlink()
    (world.ctl / "release-resume").touch()

    world.agent("agent-b")
    done = world.wait_final("web-3")
    st = done["status"]
    assert st["phase"] == "Completed", st
    assert st["attempts"] == 2
    assert "published before the agent restarted" in condition(done)["message"]
    assert st["imageRef"] == f"file://{world.store}/{images[0]}"
    assert st["imageDigest"] == manifest_digest(world.store, images[0])
    assert world.verify(st["imageRef"]).returncode == 0
    wait_for(lambda: world.task_status(cid) != "RUNNING", 30, "the container to be stopped")
    assert len([x for x in world.ctl_log() if x.startswith("checkpoint ")]) == 1
    assert store_entries(world.store) == images


def test_deadline_exceeded_resumes_the_container(world):
    """The dump outlives the deadline: the agent kills its worker, but the
    dump goes on in containerd's shim (a stuck-but-finishing CRIU); the
    agent's Resume waits for it in the shim and thaws the container."""
    uid, cid = world.pod("web")
    (world.ctl / "block-checkpoint").touch()
    agent = world.agent("agent-a")
    world.create(request("web-4", "web", uid, deadlineSeconds=10))
    wait_for(lambda: any(m.startswith("killing checkpoint worker") for m in agent.messages()), 60,
             "the deadline to stop the worker")
    assert world.get("web-4")["status"]["phase"] == "Running"
    (world.ctl / "release-checkpoint").touch()
    done = world.wait_final("web-4", timeout=150)
    c = condition(done)
    assert (done["status"]["phase"], c["reason"]) == ("Failed", "DeadlineExceeded"), c
    assert "stopped during criu_dump" in c["message"], c["message"]
    assert "was paused, resumed" in c["message"], c["message"]
    assert not world.frozen(cid)
    wait_for(lambda: world.task_status(cid) == "RUNNING", 30, "the container to run")
    world.counter_goes_on(cid)
    assert store_entries(world.store) == []
    assert len(agent.worker_pids()) == 1


def test_sigterm_lets_the_checkpoint_in_progress_finish(world):
    uid, cid = world.pod("web")
    (world.ctl / "block-checkpoint").touch()
    agent = world.agent("agent-a")
    world.create(request("web-6", "web", uid))
    wait_for(lambda: any(x.startswith("blocked checkpoint") for x in world.ctl_log()), 60,
             "the dump to start")
    agent.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: local_api(agent.socket, "GET", "/v1/healthz")[0] == 503, 10,
             "the agent to say it is stopping")
    assert agent.proc.poll() is None
    # No new work is claimed while stopping.
    world.create(request("web-7", "web", uid))
    (world.ctl / "release-checkpoint").touch()
    assert agent.proc.wait(60) == 0
    assert world.get("web-6")["status"]["phase"] == "Completed"
    assert (world.get("web-7").get("status") or {}).get("phase", "Pending") == "Pending"
    assert not world.frozen(cid) and world.task_status(cid) == "RUNNING"


def test_sigterm_grace_over_fails_and_resumes(world):
    uid, cid = world.pod("web")
    (world.ctl / "block-checkpoint").touch()
    agent = world.agent("agent-a", args=("--shutdown-grace", "2"))
    world.create(request("web-8", "web", uid))
    wait_for(lambda: any(x.startswith("blocked checkpoint") for x in world.ctl_log()), 60,
             "the dump to start")
    agent.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: any(m.startswith("killing checkpoint worker") for m in agent.messages()), 30,
             "the grace period to run out")
    (world.ctl / "release-checkpoint").touch()
    assert agent.proc.wait(150) == 0
    done = world.get("web-8")
    c = condition(done)
    assert (done["status"]["phase"], c["reason"]) == ("Failed", "AgentRestarted"), c
    assert "grace period ran out" in c["message"] and "resumed" in c["message"], c["message"]
    assert not world.frozen(cid)
    world.counter_goes_on(cid)
    assert store_entries(world.store) == []


def test_remote_store_through_the_uploader(world, build_dir):
    """An oci:// store: the agent stages the checkpoint in the node's local
    store and kybernate-uploader pushes it to a real registry (the agent
    holds no credentials); DeleteImage of the remote image goes through the
    uploader too."""
    from tests.harness.registry import Registry
    from tests.harness.uploader import Uploader
    uid, cid = world.pod("web")
    cache = world.base / "cache"
    conf = world.base / "uploader-config.json"
    conf.write_text(json.dumps({"defaultStore": f"file://{world.store}", "stores": []}))
    up_env = {"KYBERNATE_CONFIG": str(conf), "KYBERNATE_IMAGE_CACHE": str(cache)}
    with Registry() as reg, Uploader(build_dir, world.base / "up", env=up_env) as up:
        store = reg.store_uri("kyb/agent")
        agent = world.agent("agent-a", args=("--uploader", up.socket),
                            extra_env={"KYBERNATE_IMAGE_CACHE": str(cache)})
        world.create(request("web-9", "web", uid, storage=store))
        done = world.wait_final("web-9")
        st = done["status"]
        assert st["phase"] == "Completed", st
        name = st["imageRef"].rsplit(":", 1)[1]
        assert st["imageRef"] == f"{store}:{name}" and name.startswith("web-main-")
        assert reg.tags("kyb/agent") == [name]
        assert "upload" in st["timings"] and st["sizeBytes"] > 0
        # The local copy went once the request was done.
        assert store_entries(world.store) == []
        assert world.task_status(cid) == "RUNNING"
        # kybernate-runc's way in: the agent has the uploader fetch it.
        status, res = local_api(agent.socket, "POST", "/v1/images/fetch", {"ref": st["imageRef"]})
        assert status == 200, res
        assert res["digest"] == st["imageDigest"]
        assert Path(res["path"], "manifest.json").is_file()
        world.create(request("web-9-del", "web", uid, action="DeleteImage",
                             imageRefs=[st["imageRef"]]))
        d = world.wait_final("web-9-del")
        assert d["status"]["phase"] == "Completed", d["status"]
        assert reg.tags("kyb/agent") == []
        assert agent.stop() == 0


def test_uploader_restarted_mid_upload_is_resubmitted(world, build_dir):
    """kybernate-uploader dies while it pushes the agent's image (its jobs
    live in memory) and comes back on the same socket: the agent submits the
    upload again (a refused socket or a 404 for the job it followed) and the
    request completes, one image in the registry, no agent restart."""
    from tests.harness.registry import Registry
    from tests.harness.uploader import Uploader
    from tests.integration.test_store_oci import Proxy
    uid, cid = world.pod("web")
    cache = world.base / "cache"
    conf = world.base / "uploader-config.json"
    conf.write_text(json.dumps({"defaultStore": f"file://{world.store}", "stores": []}))
    up_env = {"KYBERNATE_CONFIG": str(conf), "KYBERNATE_IMAGE_CACHE": str(cache)}
    with Registry() as reg:
        proxy = Proxy(reg.port, 4096, "stall")
        try:
            store = f"oci://{proxy.host}/kyb/agent"
            up = Uploader(build_dir, world.base / "up", env=up_env).start()
            agent = world.agent("agent-a", args=("--uploader", up.socket),
                                extra_env={"KYBERNATE_IMAGE_CACHE": str(cache)})
            world.create(request("web-10", "web", uid, storage=store))
            wait_for(lambda: proxy.tripped.is_set()
                     or world.get("web-10").get("status", {}).get("phase") in ("Completed",
                                                                             "Failed"),
                     120, "the upload to stall at the proxy")
            assert proxy.tripped.is_set(), (world.get("web-10").get("status"),
                                            agent.messages(), up.log_tail())
            up.kill()  # mid-push: the registry holds an unfinished upload, no tag
            assert reg.tags("kyb/agent") == []
            proxy.heal()
            up = Uploader(build_dir, world.base / "up", env=up_env).start()
            try:
                done = world.wait_final("web-10")
                st = done["status"]
                assert st["phase"] == "Completed", st
                assert st["attempts"] == 1, st  # the same agent, the same claim
                name = st["imageRef"].rsplit(":", 1)[1]
                assert reg.tags("kyb/agent") == [name]
                assert any("the uploader restarted or is restarting: submitting it again" in m
                           for m in agent.messages()), agent.messages()
                assert world.task_status(cid) == "RUNNING"
                assert agent.stop() == 0
            finally:
                up.kill()
        finally:
            proxy.close()


def test_takeover_restores_gpu_state_left_checkpointed(world, build_dir, tmp_path):
    """The libcuda TEST DOUBLE stands in for the driver: the container's
    process is a CUDA process the dead agent left CHECKPOINTED."""
    lib = build_dir / "tests" / "doubles" / "libcuda-double.so"
    assert lib.is_file(), f"{lib} not built"
    uid, cid = world.pod("web")
    pid = world.node.tasks("k8s.io")[cid][0]
    state = tmp_path / "cuda-state"
    calls = tmp_path / "cuda-calls"
    state.write_text("version 13000\n"
                     "gpu GPU-f45a5189-6446-eea1-0596-804e908f0f9a 150109880320 NVIDIA H200\n"
                     f"proc {pid} CHECKPOINTED\n")
    # A request a previous agent had claimed and was running at step dump.
    world.create(request("web-5", "web", uid))
    world.kc.patch_status(KYB, "checkpointrequests", "web-5", {"status": {
        "phase": "Running", "step": "gpu_checkpoint", "attempts": 1,
        "startedAt": "2026-12-01T13:40:00Z",
        "agent": {"podName": "agent-old", "podUID": "uid-old",
                  "claimedAt": "2026-12-01T13:40:00Z", "renewTime": "2026-12-01T13:40:00Z"}}}, NS)
    world.agent("agent-b", extra_env={"KYBERNATE_LIBCUDA": str(lib),
                                      "KYB_CUDA_DOUBLE_STATE": str(state),
                                      "KYB_CUDA_DOUBLE_LOG": str(calls)})
    done = world.wait_final("web-5")
    c = condition(done)
    assert (done["status"]["phase"], c["reason"]) == ("Failed", "AgentRestarted"), c
    assert "1 CUDA process(es), 1 restored and unlocked" in c["message"], c["message"]
    ops = [line.split()[0] for line in calls.read_text().splitlines()
           if line.split()[0] in ("restore", "unlock", "lock", "checkpoint")]
    assert ops == ["restore", "unlock"], calls.read_text()
    assert f"proc {pid} RUNNING" in state.read_text()
    assert world.task_status(cid) == "RUNNING"


def test_second_agent_for_a_node_refuses(kube_api, build_dir, tmp_path):
    base = tmp_path
    kubeconfig = kube_api.kubeconfig(str(base / "kubeconfig"))
    for f in sorted((REPO_ROOT / "deploy" / "crds").glob("kybernate.io_*.yaml")):
        kube_api.load(f)
    state = base / "state"
    first = Agent(build_dir, kubeconfig, base, "one", state_dir=state, store=base / "s").start()
    second = Agent(build_dir, kubeconfig, base, "two", state_dir=state, store=base / "s")
    second.start(wait=False)
    assert second.proc.wait(30) == 3
    text = second.log_path.read_text()
    assert "another kybernate-agent holds" in text and str(first.proc.pid) in text, text
    assert first.watching()
    assert first.stop() == 0
    # Once the first is gone, an agent starts on that state dir.
    third = Agent(build_dir, kubeconfig, base, "three", state_dir=state, store=base / "s").start()
    assert third.stop() == 0

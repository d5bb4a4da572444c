# SPDX-License-Identifier: Apache-2.0
"""A kubelet stand-in for tests: it registers a Node in the Kubernetes API
(the double, tests/doubles/kube_apiserver.py), watches the pods bound to it
(spec.nodeName == its node name) and turns them into CRI calls against a
harness node's containerd (tests/harness/cri.py), the way the real kubelet
does, then writes the pods' status back.  Also a tiny scheduler
(MiniScheduler) for pods created without spec.nodeName.

    from tests.harness.kubelet import NodeKubelet
    with NodeKubelet(client, node, "node-a") as kubelet:   # node: tests.harness.node.Node
        client.create("v1", "pods", pod, "default")         # spec.nodeName: node-a
        kubelet.wait_phase("default", pod_name, "Running")

What it does like the real kubelet:
- RunPodSandbox with the pod's metadata (name, namespace, uid), its labels
  plus io.kubernetes.pod.{name,namespace,uid}, its annotations (so
  kybernate.io/* reach the OCI specs through the handler's pod_annotations),
  host network, and runtime handler = the pod's RuntimeClass's `handler`
  (node.k8s.io/v1, looked up in the API; "" without runtimeClassName).
- CreateContainer per container with image, command, args, env (plain
  values), workingDir, hostPath volume mounts, the labels
  io.kubernetes.container.name + io.kubernetes.pod.* and the annotations
  io.kubernetes.container.{hash,restartCount,terminationMessagePath,
  terminationMessagePolicy} and io.kubernetes.pod.terminationGracePeriod;
  then StartContainer.  (Real kubelet passes pod annotations only to the
  sandbox; containerd copies those matching pod_annotations into each
  container's spec.)
- Pod status through the /status subresource: phase Pending -> Running,
  conditions PodReadyToStartContainers, Initialized, ContainersReady,
  Ready, PodScheduled; containerStatuses with containerID
  "containerd://<id>", image, imageID, state waiting/running/terminated,
  lastState, restartCount, ready, started; startTime.  CRI failures show as
  the real kubelet shows them: CreateContainerError (waiting),
  StartError (terminated, exit code 128, the runtime's message),
  ErrImagePull, Events (Created, Started, Failed, Killing,
  FailedCreatePodSandBox, BackOff).  Exited containers are restarted per
  restartPolicy with a doubling back-off (state waiting CrashLoopBackOff);
  with Never, failed starts and exits make the pod Failed (or Succeeded).
- Deletion: a pod with deletionTimestamp gets its containers stopped (the
  grace period, capped by max_grace), its sandbox stopped and removed, a
  terminal status, then the final DELETE with gracePeriodSeconds 0 and
  the pod's uid as precondition.  A pod deleted outright (force) is torn
  down.  On start, sandboxes of pods it does not know (by
  io.kubernetes.pod.uid) are adopted, as kubelet does after a restart.
- Admission: a pod whose nodeSelector / required node affinity the node's
  labels do not match is rejected: phase Failed, reason NodeAffinity (the
  API double merges a RuntimeClass's scheduling.nodeSelector into the pod).
- API failures (5xx, 409, dropped connections, 410 on watch) are retried:
  relist and watch again; they are kept in api_errors, not in errors.

What it does not: no image pulls (images must be in the node's k8s.io
namespace), no probes, no init containers, no CNI (host network only), no
resource limits, no node Lease, no volumes other than hostPath, no
eviction; one thread serves all pods of the node (a slow start delays
the others).
"""

import hashlib
import http.client
import json
import threading
import time
import traceback
import uuid

from .cri import CriError, Kubelet
from .kubeapi import KubeApiError

POD_LABELS = ("io.kubernetes.pod.name", "io.kubernetes.pod.namespace", "io.kubernetes.pod.uid")
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
MAX_BACKOFF = 300.0


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _rfc3339_ns(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9)) if ns else \
        "1970-01-01T00:00:00Z"


class _ContainerState:
    def __init__(self, spec):
        self.spec = spec
        self.name = spec["name"]
        self.id = ""
        self.attempt = 0
        self.restarts = 0
        self.state = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state = {}
        self.image_ref = ""
        self.next_try = 0.0  # monotonic time of the next (re)start attempt
        self.backoff = 0.0
        self.done = False    # terminated for good (restartPolicy)


class _PodState:
    def __init__(self, pod):
        self.pod = pod
        m = pod["metadata"]
        self.uid, self.name, self.ns = m["uid"], m["name"], m["namespace"]
        self.sandbox = ""
        self.sandbox_config = None
        self.start_time = ""
        self.containers = [_ContainerState(c) for c in pod["spec"].get("containers") or []]
        self.next_sandbox_try = 0.0
        self.sandbox_backoff = 0.0
        self.sandbox_error = ""
        self.last_status = None
        self.terminating = False
        self.rejected = False


def _phase(containers, policy, terminating) -> str:
    """kubelet's getPhase for pods without init containers."""
    waiting = running = stopped = succeeded = 0
    for cs in containers:
        if "running" in cs.state:
            running += 1
        elif "terminated" in cs.state:
            stopped += 1
            succeeded += cs.state["terminated"].get("exitCode") == 0
        elif cs.last_state.get("terminated"):
            stopped += 1  # waiting to restart
        else:
            waiting += 1
    if terminating and not running and not waiting:
        return "Succeeded" if stopped and stopped == succeeded else "Failed"
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


class NodeKubelet:
    """The kubelet of one harness node (tests.harness.node.Node) against an
    API server (a tests.harness.kubeapi.KubeClient)."""

    def __init__(self, client, node, node_name=None, *, labels=None, handlers=None,
                 backoff=10.0, max_grace=2, sync_interval=0.3, register=True):
        """handlers: a fixed {runtimeClassName: handler} map instead of
        looking RuntimeClass objects up; backoff: the first restart back-off
        in seconds (doubling, up to 300 s; real kubelet: 10 s); max_grace:
        cap on the stop grace period in seconds."""
        self.client = client
        self.node = node
        self.name = node_name or node.name
        self.labels = dict(labels or {})
        self.handlers = handlers
        self.backoff = backoff
        self.max_grace = max_grace
        self.sync_interval = sync_interval
        self.register = register
        self.cri = None
        self.pods = {}  # uid -> _PodState
        self.errors = []  # unexpected exceptions of the sync loop (tests assert none)
        self.api_errors = []  # API failures it retried (the last 100)
        self._stop = threading.Event()
        self._thread = None
        self._watch = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "NodeKubelet":
        self.cri = Kubelet.for_node(self.node)
        if self.register:
            self.register_node()
        self._thread = threading.Thread(target=self._run, name=f"kubelet-{self.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, teardown=True) -> None:
        """Stop the sync loop; teardown=True also removes every pod sandbox
        it runs (a kubelet that dies leaves them: teardown=False)."""
        self._stop.set()
        w = self._watch
        if w is not None:
            w.close()
        if self._thread is not None:
            self._thread.join(30)
        if self.cri is not None:
            if teardown:
                for ps in list(self.pods.values()):
                    if ps.sandbox:
                        try:
                            self.cri.stop_pod_and_remove(ps.sandbox)
                        except CriError as e:
                            self.errors.append(e)
                self.pods.clear()
            self.cri.close()
            self.cri = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # ------------------------------------------------------------ node
    def register_node(self) -> dict:
        v = self.cri.version()
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": self.node_labels()},
            "spec": {},
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "kubelet is posting ready status",
                                "lastHeartbeatTime": _now(), "lastTransitionTime": _now()}],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                              {"type": "Hostname", "address": self.name}],
                "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "nodeInfo": {"containerRuntimeVersion":
                             f"{v.runtime_name}://{v.runtime_version}",
                             "kubeletVersion": "v1.31.0-kybernate-stand-in",
                             "kubeProxyVersion": "", "operatingSystem": "linux",
                             "architecture": "amd64", "osImage": "kybernate test node",
                             "kernelVersion": "", "machineID": "", "systemUUID": "",
                             "bootID": ""}}}
        try:
            return self.client.create("v1", "nodes", node)
        except KubeApiError as e:
            if e.code != 409:
                raise
        cur = self.client.get("v1", "nodes", self.name)
        cur["status"] = node["status"]
        return self.client.update_status("v1", "nodes", cur)

    # ------------------------------------------------------------ loop
    def _run(self) -> None:
        rv = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self._relist()
                if self._watch is None:
                    self._watch = self.client.watch(
                        "v1", "pods", resource_version=rv,
                        field_selector=f"spec.nodeName={self.name}", bookmarks=True,
                        timeout_seconds=300)
                ev = self._watch.next(timeout=self.sync_interval)
                if ev is not None:
                    rv = self._on_event(ev, rv)
                elif self._watch.ended.is_set():
                    self._watch.close()
                    self._watch = None
                self._sync_all()
            except Exception as e:  # keep going like kubelet
                if self._stop.is_set():
                    return
                if isinstance(e, (KubeApiError, OSError, http.client.HTTPException)):
                    # the API failed (tests inject such failures): retry
                    self.api_errors = (self.api_errors + [e])[-100:]
                else:  # a bug of the stand-in or a CRI failure: tests check .errors
                    self.errors.append(e)
                    traceback.print_exc()
                if self._watch is not None:
                    self._watch.close()
                    self._watch = None
                rv = None
                self._stop.wait(0.5)
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def _relist(self) -> str:
        lst = self.client.list("v1", "pods", field_selector=f"spec.nodeName={self.name}")
        seen = set()
        for pod in lst["items"]:
            seen.add(pod["metadata"]["uid"])
            self._observe(pod)
        for uid in [u for u in self.pods if u not in seen]:
            self._teardown(self.pods[uid], delete_api=False)
        return lst["metadata"]["resourceVersion"]

    def _on_event(self, ev, rv):
        t, obj = ev["type"], ev["object"]
        if t == "ERROR":
            if obj.get("code") == 410:
                self._watch.close()
                self._watch = None
                return None  # relist
            self._watch.close()
            self._watch = None
            raise KubeApiError(obj.get("code", 500), obj, "WATCH", "pods")
        rv = obj.get("metadata", {}).get("resourceVersion", rv)
        if t == "BOOKMARK":
            return rv
        if t == "DELETED":
            ps = self.pods.get(obj["metadata"]["uid"])
            if ps is not None:
                self._teardown(ps, delete_api=False)
            return rv
        self._observe(obj)
        return rv

    def _observe(self, pod) -> None:
        uid = pod["metadata"]["uid"]
        ps = self.pods.get(uid)
        if ps is None:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and \
                    not pod["metadata"].get("deletionTimestamp"):
                return  # finished before this kubelet started: nothing to run
            ps = self.pods[uid] = _PodState(pod)
            self._adopt(ps)
        ps.pod = pod

    # ------------------------------------------------------------ sync
    def _sync_all(self) -> None:
        for ps in list(self.pods.values()):
            if self._stop.is_set():
                return
            if ps.rejected and ps.pod["metadata"].get("deletionTimestamp"):
                self.pods.pop(ps.uid, None)  # terminal: the API deletes it at once
                continue
            if ps.pod["metadata"].get("deletionTimestamp"):
                self._teardown(ps, delete_api=True)
                continue
            self._sync_pod(ps)

    def _handler(self, ps) -> str:
        rc = ps.pod["spec"].get("runtimeClassName")
        if not rc:
            return ""
        if self.handlers is not None:
            return self.handlers[rc]
        return self.client.get("node.k8s.io/v1", "runtimeclasses", rc)["handler"]

    def _admit(self, ps) -> bool:
        """kubelet's admission: a pod whose node selector or required node
        affinity the node does not match is rejected (phase Failed, reason
        NodeAffinity) and never started."""
        if ps.rejected:
            return False
        node = {"metadata": {"name": self.name, "labels": self.node_labels()},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        if MiniScheduler._fits(ps.pod, node):
            return True
        ps.rejected = True
        status = {"phase": "Failed", "reason": "NodeAffinity",
                  "message": "Pod was rejected: Predicate NodeAffinity failed: node(s) didn't "
                             "match Pod's node affinity/selector", "startTime": _now()}
        self._event(ps, "Warning", "NodeAffinity", status["message"])
        try:
            ps.pod = self.client.patch_status("v1", "pods", ps.name,
                                              {"metadata": {"uid": ps.uid}, "status": status},
                                              ps.ns)
        except KubeApiError as e:
            if e.code not in (404, 409, 422):
                raise
        return False

    def node_labels(self) -> dict:
        return {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64", **self.labels}

    def _sync_pod(self, ps) -> None:
        now = time.monotonic()
        if not ps.sandbox and not self._admit(ps):
            return
        if not ps.start_time:
            ps.start_time = _now()
        if not ps.sandbox:
            if now < ps.next_sandbox_try:
                return self._write_status(ps)
            try:
                self._run_sandbox(ps)
                ps.sandbox_error = ""
            except (CriError, KubeApiError, KeyError) as e:
                ps.sandbox_error = str(e).splitlines()[0]
                ps.sandbox_backoff = min(max(ps.sandbox_backoff * 2, self.backoff), MAX_BACKOFF)
                ps.next_sandbox_try = now + ps.sandbox_backoff
                self._event(ps, "Warning", "FailedCreatePodSandBox",
                            f"Failed to create pod sandbox: {ps.sandbox_error}")
                return self._write_status(ps)
        policy = ps.pod["spec"].get("restartPolicy", "Always")
        for cs in ps.containers:
            if cs.id and "running" in cs.state:
                self._poll(ps, cs, policy)
            elif not cs.done and now >= cs.next_try:
                self._start_container(ps, cs, policy)
        self._write_status(ps)

    def _run_sandbox(self, ps) -> None:
        pod = ps.pod
        m = pod["metadata"]
        labels = dict(m.get("labels") or {})
        labels.update({"io.kubernetes.pod.name": ps.name, "io.kubernetes.pod.namespace": ps.ns,
                       "io.kubernetes.pod.uid": ps.uid})
        handler = self._handler(ps)
        ps.sandbox = self.cri.run_pod(ps.name, ps.ns, ps.uid,
                                      annotations=dict(m.get("annotations") or {}),
                                      labels=labels, handler=handler)
        ps.sandbox_config = self.cri.sandbox_config(ps.sandbox)

    def _container_config(self, ps, cs):
        pb = self.cri.pb
        spec = cs.spec
        mounts = []
        vols = {v["name"]: v for v in ps.pod["spec"].get("volumes") or [] if "name" in v}
        for vm in spec.get("volumeMounts") or []:
            hp = (vols.get(vm.get("name")) or {}).get("hostPath")
            if hp:
                mounts.append(pb.Mount(container_path=vm["mountPath"], host_path=hp["path"],
                                       readonly=bool(vm.get("readOnly"))))
        labels = {CONTAINER_NAME_LABEL: cs.name, "io.kubernetes.pod.name": ps.name,
                  "io.kubernetes.pod.namespace": ps.ns, "io.kubernetes.pod.uid": ps.uid}
        chash = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
        annotations = {
            "io.kubernetes.container.hash": chash,
            "io.kubernetes.container.restartCount": str(cs.restarts),
            "io.kubernetes.container.terminationMessagePath":
                spec.get("terminationMessagePath", "/dev/termination-log"),
            "io.kubernetes.container.terminationMessagePolicy":
                spec.get("terminationMessagePolicy", "File"),
            "io.kubernetes.pod.terminationGracePeriod":
                str(ps.pod["spec"].get("terminationGracePeriodSeconds", 30)),
        }
        ns_opts = pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD)
        log_path = f"{cs.name}/{cs.attempt}.log"
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=cs.name, attempt=cs.attempt),
            image=pb.ImageSpec(image=spec.get("image", "")),
            command=[str(a) for a in spec.get("command") or []],
            args=[str(a) for a in spec.get("args") or []],
            working_dir=spec.get("workingDir", ""),
            envs=[pb.KeyValue(key=e["name"], value=str(e.get("value", "")))
                  for e in spec.get("env") or [] if "valueFrom" not in e],
            mounts=mounts, labels=labels, annotations=annotations, log_path=log_path,
            linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
                namespace_options=ns_opts)))

    def _start_container(self, ps, cs, policy) -> None:
        field_path = f"spec.containers{{{cs.name}}}"
        image = cs.spec.get("image", "")
        if cs.id:  # a restart: the dead container goes, a new attempt comes
            try:
                self.cri.remove_container(cs.id)
            except CriError:
                pass
            cs.attempt += 1
            cs.restarts += 1
            cs.id = ""
        try:
            img = self.cri.image_status(image)
        except CriError as e:
            img, err = None, str(e)
        else:
            err = f'image "{image}" is not present on the node (the kubelet stand-in does ' \
                  f'not pull)'
        if img is None:
            cs.state = {"waiting": {"reason": "ErrImagePull", "message": err}}
            self._event(ps, "Warning", "Failed", f"Failed to pull image \"{image}\": {err}",
                        field_path)
            return self._back_off(cs)
        cs.image_ref = img.id
        try:
            from pathlib import Path
            (Path(ps.sandbox_config.log_directory) / cs.name).mkdir(parents=True, exist_ok=True)
            r = self.cri.rpc("CreateContainer", self.cri.pb.CreateContainerRequest(
                pod_sandbox_id=ps.sandbox, config=self._container_config(ps, cs),
                sandbox_config=ps.sandbox_config))
        except CriError as e:
            cs.state = {"waiting": {"reason": "CreateContainerError", "message": e.details}}
            self._event(ps, "Warning", "Failed", f"Error: {e.details}", field_path)
            return self._back_off(cs)
        cs.id = r.container_id
        self.cri.containers[cs.id] = ps.sandbox
        self._event(ps, "Normal", "Created", f"Created container {cs.name}", field_path)
        try:
            self.cri.start_container(cs.id)
        except CriError as e:
            st = self._cri_status(cs)
            msg = (st.message if st and st.message else e.details)
            cs.state = {"terminated": {"exitCode": st.exit_code if st else 128,
                                       "reason": "StartError", "message": msg,
                                       "startedAt": "1970-01-01T00:00:00Z",
                                       "finishedAt": _rfc3339_ns(st.raw.finished_at) if st
                                       else _now(), "containerID": f"containerd://{cs.id}"}}
            self._event(ps, "Warning", "Failed", f"Error: {e.details}", field_path)
            return self._exited(ps, cs, policy, failed=True)
        st = self._cri_status(cs)
        cs.state = {"running": {"startedAt": _rfc3339_ns(st.raw.started_at) if st else _now()}}
        cs.backoff = 0.0
        self._event(ps, "Normal", "Started", f"Started container {cs.name}", field_path)

    def _cri_status(self, cs):
        try:
            return self.cri.container_status(cs.id)
        except CriError:
            return None

    def _poll(self, ps, cs, policy) -> None:
        st = self._cri_status(cs)
        if st is None or st.state == "CONTAINER_RUNNING":
            return
        reason = "Completed" if st.exit_code == 0 else (st.reason or "Error")
        if reason == "Completed" and st.exit_code != 0:
            reason = "Error"
        cs.state = {"terminated": {"exitCode": st.exit_code, "reason": reason,
                                   "startedAt": _rfc3339_ns(st.raw.started_at),
                                   "finishedAt": _rfc3339_ns(st.raw.finished_at),
                                   "containerID": f"containerd://{cs.id}"}}
        if st.message:
            cs.state["terminated"]["message"] = st.message
        self._exited(ps, cs, policy, failed=st.exit_code != 0)

    def _exited(self, ps, cs, policy, failed: bool) -> None:
        if policy == "Never" or (policy == "OnFailure" and not failed):
            cs.done = True
            return
        cs.last_state = cs.state
        self._back_off(cs)
        msg = f"back-off {int(cs.backoff)}s restarting failed container={cs.name} " \
              f"pod={ps.name}_{ps.ns}({ps.uid})"
        cs.state = {"waiting": {"reason": "CrashLoopBackOff", "message": msg}}
        self._event(ps, "Warning", "BackOff", "Back-off restarting failed container "
                    f"{cs.name} in pod {ps.name}_{ps.ns}({ps.uid})",
                    f"spec.containers{{{cs.name}}}")

    def _back_off(self, cs) -> None:
        cs.backoff = min(max(cs.backoff * 2, self.backoff), MAX_BACKOFF)
        cs.next_try = time.monotonic() + cs.backoff

    # ------------------------------------------------------------ status
    def _status(self, ps) -> dict:
        spec = ps.pod["spec"]
        statuses = []
        for cs in ps.containers:
            running = "running" in cs.state
            s = {"name": cs.name, "state": cs.state, "lastState": cs.last_state,
                 "ready": running, "restartCount": cs.restarts,
                 "image": cs.spec.get("image", ""), "imageID": cs.image_ref,
                 "started": running}
            if cs.id:
                s["containerID"] = f"containerd://{cs.id}"
            statuses.append(s)
        all_running = bool(statuses) and all("running" in cs.state for cs in ps.containers)
        phase = _phase(ps.containers, spec.get("restartPolicy", "Always"), ps.terminating)
        ready = "True" if all_running else "False"
        conds = [
            {"type": "PodReadyToStartContainers", "status": "True" if ps.sandbox else "False"},
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": ready},
            {"type": "ContainersReady", "status": ready},
            {"type": "PodScheduled", "status": "True"},
        ]
        if ready == "False":
            waiting = [cs.name for cs in ps.containers if "running" not in cs.state]
            for c in conds[2:4]:
                c["reason"] = "ContainersNotReady" if phase != "Succeeded" else "PodCompleted"
                c["message"] = f"containers with unready status: [{' '.join(waiting)}]"
        status = {"phase": phase, "conditions": conds, "hostIP": "127.0.0.1",
                  "hostIPs": [{"ip": "127.0.0.1"}], "startTime": ps.start_time,
                  "containerStatuses": statuses,
                  "qosClass": (ps.pod.get("status") or {}).get("qosClass", "BestEffort")}
        if spec.get("hostNetwork"):
            status["podIP"] = "127.0.0.1"
            status["podIPs"] = [{"ip": "127.0.0.1"}]
        if ps.sandbox_error and not ps.sandbox:
            status["conditions"][0]["reason"] = "FailedCreatePodSandBox"
            status["conditions"][0]["message"] = ps.sandbox_error
        return status

    def _write_status(self, ps) -> None:
        status = self._status(ps)
        key = json.dumps(status, sort_keys=True)
        if key == ps.last_status:
            return
        prev = ps.pod.get("status") or {}
        for c in status["conditions"]:  # keep transition times of unchanged conditions
            old = next((o for o in prev.get("conditions") or [] if o.get("type") == c["type"]),
                       None)
            c["lastProbeTime"] = None
            c["lastTransitionTime"] = old.get("lastTransitionTime") if old and \
                old.get("status") == c["status"] else _now()
        try:
            ps.pod = self.client.patch_status(
                "v1", "pods", ps.name, {"metadata": {"uid": ps.uid}, "status": status}, ps.ns)
            ps.last_status = key
        except KubeApiError as e:
            if e.code not in (404, 409, 422):
                raise

    # ------------------------------------------------------------ teardown
    def _teardown(self, ps, delete_api: bool) -> None:
        if ps.terminating:
            return
        ps.terminating = True
        grace = min(int(ps.pod["metadata"].get("deletionGracePeriodSeconds") or 0),
                    self.max_grace)
        for cs in ps.containers:
            if cs.id:
                self._event(ps, "Normal", "Killing", f"Stopping container {cs.name}",
                            f"spec.containers{{{cs.name}}}")
                try:
                    self.cri.stop_container(cs.id, grace)
                except CriError:
                    pass
                st = self._cri_status(cs)
                if st is not None and "running" in cs.state:
                    cs.state = {"terminated": {
                        "exitCode": st.exit_code, "reason": "Completed" if st.exit_code == 0
                        else "Error", "startedAt": _rfc3339_ns(st.raw.started_at),
                        "finishedAt": _rfc3339_ns(st.raw.finished_at),
                        "containerID": f"containerd://{cs.id}"}}
            if "terminated" not in cs.state:
                cs.state = {"terminated": {
                    "exitCode": 137, "reason": "ContainerStatusUnknown",
                    "message": "The container could not be located when the pod was terminated"}}
            cs.done = True
        if ps.sandbox:
            self.cri.stop_pod_and_remove(ps.sandbox)
            ps.sandbox = ""
        if delete_api:
            self._write_status(ps)
            try:
                self.client.delete("v1", "pods", ps.name, ps.ns, grace_period=0,
                                   preconditions={"uid": ps.uid})
            except KubeApiError as e:
                if e.code not in (404, 409):
                    raise
        self.pods.pop(ps.uid, None)

    def _adopt(self, ps) -> None:
        """A sandbox of this pod from an earlier kubelet: take it over."""
        try:
            found = self.cri.list_pods(labels={"io.kubernetes.pod.uid": ps.uid},
                                       state="SANDBOX_READY")
        except CriError:
            return
        if not found:
            return
        ps.sandbox = found[0].id
        ps.sandbox_config = self.cri.pod_config(ps.name, ps.ns, ps.uid,
                                                annotations=ps.pod["metadata"].get("annotations"))
        self.cri.pods[ps.sandbox] = ps.sandbox_config
        by_name = {}
        for c in self.cri.list_containers(sandbox_id=ps.sandbox):
            by_name.setdefault(c.metadata.name, []).append(c)
        for cs in ps.containers:
            cands = sorted(by_name.get(cs.name, []), key=lambda c: c.metadata.attempt)
            if not cands:
                continue
            c = cands[-1]
            cs.id, cs.attempt, cs.restarts = c.id, c.metadata.attempt, c.metadata.attempt
            self.cri.containers[c.id] = ps.sandbox
            st = self._cri_status(cs)
            cs.image_ref = c.image_ref
            if st is not None and st.state == "CONTAINER_RUNNING":
                cs.state = {"running": {"startedAt": _rfc3339_ns(st.raw.started_at)}}
            else:
                cs.state = {"waiting": {"reason": "ContainerCreating"}}
                cs.id = ""

    # ------------------------------------------------------------ events
    def _event(self, ps, etype, reason, message, field_path=None) -> None:
        ref = {"kind": "Pod", "namespace": ps.ns, "name": ps.name, "uid": ps.uid,
               "apiVersion": "v1"}
        if field_path:
            ref["fieldPath"] = field_path
        now = _now()
        ev = {"apiVersion": "v1", "kind": "Event",
              "metadata": {"name": f"{ps.name}.{uuid.uuid4().hex[:16]}", "namespace": ps.ns},
              "involvedObject": ref, "reason": reason, "message": message,
              "source": {"component": "kubelet", "host": self.name},
              "firstTimestamp": now, "lastTimestamp": now, "count": 1, "type": etype,
              "reportingComponent": "kubelet", "reportingInstance": self.name}
        try:
            self.client.create("v1", "events", ev, ps.ns)
        except KubeApiError:
            pass  # events are best effort, as in kubelet

    # ------------------------------------------------------------ test helpers
    def container_id(self, namespace, pod_name, container="main") -> str:
        pod = self.client.get("v1", "pods", pod_name, namespace)
        for s in (pod.get("status") or {}).get("containerStatuses") or []:
            if s["name"] == container and s.get("containerID"):
                return s["containerID"].split("://", 1)[1]
        raise LookupError(f"pod {namespace}/{pod_name} has no container {container} yet")

    def wait_phase(self, namespace, pod_name, phase, timeout=60.0) -> dict:
        """Poll the pod until status.phase is phase; fails early when the
        sync loop raised."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                pod = self.client.get("v1", "pods", pod_name, namespace)
            except KubeApiError as e:
                if e.code != 404:
                    raise
                pod = None
            if pod and (pod.get("status") or {}).get("phase") == phase:
                return pod
            if self.errors:
                raise AssertionError(f"kubelet {self.name} failed: {self.errors!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"pod {namespace}/{pod_name} not {phase} after {timeout}s: "
                                   f"{json.dumps((pod or {}).get('status'))}")
            time.sleep(0.1)


class MiniScheduler:
    """Binds pods without spec.nodeName (schedulerName default-scheduler)
    to a Ready, schedulable node matching the pod's nodeSelector and its
    required node affinity (matchExpressions In, NotIn, Exists,
    DoesNotExist, Gt, Lt), through the pods/binding subresource, like
    kube-scheduler; the node with the fewest pods wins (ties: by name).  No
    resources, taints, pod affinity or preemption.  A pod no node fits
    gets PodScheduled False, reason Unschedulable, and is retried."""

    def __init__(self, client, interval=0.3):
        self.client = client
        self.interval = interval
        self.errors = []
        self._stop = threading.Event()
        self._thread = None

    def start(self) -> "MiniScheduler":
        self._thread = threading.Thread(target=self._run, name="mini-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.schedule_pending()
            except Exception as e:
                self.errors.append(e)

    @staticmethod
    def _fits(pod, node) -> bool:
        labels = node["metadata"].get("labels") or {}
        spec = pod.get("spec") or {}
        for k, v in (spec.get("nodeSelector") or {}).items():
            if labels.get(k) != v:
                return False
        req = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
               .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
        terms = req.get("nodeSelectorTerms") or []
        if terms and not any(all(_expr_ok(e, labels) for e in t.get("matchExpressions") or [])
                             and all(_field_ok(e, node) for e in t.get("matchFields") or [])
                             for t in terms):
            return False
        conds = {c["type"]: c["status"] for c in
                 (node.get("status") or {}).get("conditions") or []}
        return conds.get("Ready") == "True" and not (node.get("spec") or {}).get("unschedulable")

    def schedule_pending(self) -> None:
        pods = self.client.list("v1", "pods", field_selector="spec.nodeName=")["items"]
        pending = [p for p in pods if not p["metadata"].get("deletionTimestamp") and
                   (p.get("spec") or {}).get("schedulerName", "default-scheduler") ==
                   "default-scheduler" and
                   (p.get("status") or {}).get("phase", "Pending") == "Pending"]
        if not pending:
            return
        nodes = self.client.list("v1", "nodes")["items"]
        load = {}
        for p in self.client.list("v1", "pods")["items"]:
            n = (p.get("spec") or {}).get("nodeName")
            if n:
                load[n] = load.get(n, 0) + 1
        for pod in pending:
            m = pod["metadata"]
            fit = sorted((n for n in nodes if self._fits(pod, n)),
                         key=lambda n: (load.get(n["metadata"]["name"], 0), n["metadata"]["name"]))
            if not fit:
                msg = f"0/{len(nodes)} nodes are available: {len(nodes)} node(s) didn't match " \
                      f"Pod's node affinity/selector."
                conds = [c for c in (pod.get("status") or {}).get("conditions") or []
                         if c.get("type") == "PodScheduled"]
                if not conds or conds[0].get("message") != msg:
                    try:
                        self.client.patch_status("v1", "pods", m["name"], {"status": {
                            "conditions": [{"type": "PodScheduled", "status": "False",
                                            "reason": "Unschedulable", "message": msg,
                                            "lastProbeTime": None,
                                            "lastTransitionTime": _now()}]}}, m["namespace"])
                    except KubeApiError:
                        pass
                continue
            target = fit[0]["metadata"]["name"]
            try:
                self.client.create("v1", f"pods/{m['name']}/binding", {
                    "apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": m["name"], "namespace": m["namespace"]},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": target}},
                    m["namespace"])
                load[target] = load.get(target, 0) + 1
            except KubeApiError as e:
                if e.code not in (404, 409):
                    raise


def _expr_ok(e, labels) -> bool:
    k, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
    has, v = k in labels, labels.get(k)
    if op == "In":
        return has and v in vals
    if op == "NotIn":
        return not has or v not in vals
    if op == "Exists":
        return has
    if op == "DoesNotExist":
        return not has
    if op in ("Gt", "Lt"):
        try:
            n, ref = int(v), int(vals[0])
        except (TypeError, ValueError, IndexError):
            return False
        return n > ref if op == "Gt" else n < ref
    return False


def _field_ok(e, node) -> bool:
    if e.get("key") != "metadata.name":
        return False
    return _expr_ok({"key": "n", "operator": e.get("operator"), "values": e.get("values")},
                    {"n": node["metadata"]["name"]})

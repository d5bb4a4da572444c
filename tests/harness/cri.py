# SPDX-License-Identifier: Apache-2.0
"""A kubelet stand-in for tests: a CRI v1 client (runtime.v1 RuntimeService
and ImageService over gRPC) bound to a test node's containerd socket.

No Kubernetes runs here, so tests play kubelet themselves:

    from tests.harness.cri import Kubelet
    with Kubelet.for_node(node) as kubelet:
        pod = kubelet.run_pod("web", "default", handler="kybernate",
                              annotations={"kybernate.io/restore-from": "x"})
        cid = kubelet.create_container(pod, "main", command=["/usr/bin/counter"])
        kubelet.start_container(cid)
        kubelet.wait_state(cid, "RUNNING")
        kubelet.read_log(cid)                 # ["count 1", "count 2", ...]
        kubelet.stop_pod_and_remove(pod)

Pods are host-network (NamespaceOption network = NODE, no hostname: no CNI
needed), get a kubelet-like log directory `<log_base>/<ns>_<name>_<uid>` and
the node's cgroup parent, so two nodes never share cgroups.

The protocol comes from the project's own minimal proto
(tests/harness/proto/cri_min.proto), compiled on first use with
grpc_tools.protoc into the test cache (tests/harness/.cache/cri-<hash>/, or
$KYBERNATE_TEST_CACHE).  Needs Debian's python3-grpcio and python3-grpc-tools
(run with /usr/bin/python3).
"""

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

try:
    import grpc
except ImportError as e:  # reported when a client is made, not at import
    grpc = None
    _GRPC_IMPORT_ERROR = e
else:
    _GRPC_IMPORT_ERROR = None

from . import REPO_ROOT
from .image import BUSYBOX_REF

PROTO = Path(__file__).resolve().parent / "proto" / "cri_min.proto"
K8S_NAMESPACE = "k8s.io"  # the containerd namespace of the CRI plugin
# Every pod a Kubelet makes carries this label (value: the Kubelet's token),
# so teardown finds pods whose RunPodSandbox answer never arrived.
OWNER_LABEL = "kybernate.test/kubelet"

CONTAINER_STATES = ("CONTAINER_CREATED", "CONTAINER_RUNNING", "CONTAINER_EXITED",
                    "CONTAINER_UNKNOWN")
SANDBOX_STATES = ("SANDBOX_READY", "SANDBOX_NOTREADY")


class CriError(Exception):
    """A CRI call failed: method, gRPC status code name and details."""

    def __init__(self, method: str, code: str, details: str, context: str = ""):
        self.method, self.code, self.details = method, code, details
        msg = f"CRI {method} failed: {code}: {details}"
        if context:
            msg += "\n" + context
        super().__init__(msg)


class CriSetupError(Exception):
    """The machine lacks what the CRI client needs (grpcio, grpc_tools)."""


# ---------------------------------------------------------------- protocol

_load_lock = threading.Lock()
_modules = None


def _cache_dir() -> Path:
    env = os.environ.get("KYBERNATE_TEST_CACHE")
    return Path(env) if env else REPO_ROOT / "tests" / "harness" / ".cache"


def load_protocol(cache_dir=None):
    """(pb2, pb2_grpc) modules of cri_min.proto, compiled once per proto
    content into <cache>/cri-<hash>/ (atomic: concurrent runs are safe)."""
    global _modules
    with _load_lock:
        if _modules is not None:
            return _modules
        if grpc is None:
            raise CriSetupError(f"python grpc missing ({_GRPC_IMPORT_ERROR}): apt-get install "
                                f"python3-grpcio python3-grpc-tools, and run /usr/bin/python3")
        try:
            from grpc_tools import protoc
        except ImportError as e:
            raise CriSetupError(f"grpc_tools missing ({e}): apt-get install python3-grpc-tools"
                                ) from e
        text = PROTO.read_bytes()
        key = hashlib.sha256(text + protoc.__file__.encode()).hexdigest()[:16]
        cache = Path(cache_dir) if cache_dir else _cache_dir()
        out = cache / f"cri-{key}"
        if not (out / "cri_min_pb2_grpc.py").is_file():
            cache.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-cri-", dir=cache))
            try:
                shutil.copy(PROTO, tmp / PROTO.name)
                rc = protoc.main(["grpc_tools.protoc", f"-I{tmp}", f"--python_out={tmp}",
                                  f"--grpc_python_out={tmp}", str(tmp / PROTO.name)])
                if rc != 0:
                    raise CriSetupError(f"grpc_tools.protoc failed (rc {rc}) on {PROTO}")
                (tmp / PROTO.name).unlink()
                try:
                    os.rename(tmp, out)
                except OSError:
                    if not (out / "cri_min_pb2_grpc.py").is_file():
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        # The generated _grpc module imports `cri_min_pb2` by its bare name.
        if str(out) not in sys.path:
            sys.path.insert(0, str(out))
        import cri_min_pb2
        import cri_min_pb2_grpc
        _modules = (cri_min_pb2, cri_min_pb2_grpc)
        return _modules


# ---------------------------------------------------------------- logs

# CRI log line: <RFC3339Nano time> <stdout|stderr> <F|P>[:more tags] <content>
_LOG_RE = re.compile(r"^(\S+) (stdout|stderr) ([A-Z])(?::\S*)? ?(.*)$")


def parse_cri_log(text: str, stream=None) -> list:
    """The plain lines of a CRI-format container log.  Partial lines (tag P)
    are joined with what follows; stream picks "stdout" or "stderr" (default
    both).  A half-written last line (no newline yet) is left out."""
    out = []
    pending = {"stdout": "", "stderr": ""}
    lines = text.split("\n")
    for raw in lines[:-1]:  # the last element is "" or a half-written line
        m = _LOG_RE.match(raw)
        if not m:
            continue
        _, st, tag, content = m.groups()
        if tag == "P":
            pending[st] += content
            continue
        line, pending[st] = pending[st] + content, ""
        if stream is None or st == stream:
            out.append(line)
    return out


def read_cri_log(path, stream=None) -> list:
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return []
    return parse_cri_log(text, stream)


# ---------------------------------------------------------------- results

@dataclass
class Status:
    """ContainerStatus, simplified.  state: "CONTAINER_RUNNING" etc."""
    id: str
    name: str
    state: str
    exit_code: int
    reason: str
    message: str
    log_path: str
    annotations: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # verbose: parsed JSON values
    raw: object = None

    @property
    def running(self) -> bool:
        return self.state == "CONTAINER_RUNNING"


def _state_name(state: str) -> str:
    s = state.upper()
    return s if s.startswith("CONTAINER_") else "CONTAINER_" + s


def _json_info(info) -> dict:
    out = {}
    for k, v in info.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


# ---------------------------------------------------------------- the client

class Kubelet:
    """A kubelet stand-in on one CRI socket.  Everything it creates is
    remembered; teardown_all() removes it (also pods whose creation failed
    halfway)."""

    def __init__(self, socket, *, cgroup_parent: str = "", log_base=None,
                 timeout: float = 60.0, context=None):
        """socket: path or unix:// address; cgroup_parent: the pods'
        linux.cgroup_parent; log_base: parent of the pods' log dirs (default
        a fresh temp dir); timeout: deadline of each call in seconds;
        context: a callable whose text is appended to every CriError (e.g.
        the containerd log tail)."""
        self.pb, pb_grpc = load_protocol()
        addr = str(socket)
        self.address = addr if addr.startswith("unix:") else "unix://" + addr
        self.cgroup_parent = cgroup_parent
        self._own_log_base = log_base is None
        self.log_base = Path(log_base) if log_base else Path(tempfile.mkdtemp(prefix="kyb-pods-"))
        self.timeout = timeout
        self.context = context
        self.token = uuid.uuid4().hex[:12]
        self.channel = grpc.insecure_channel(self.address)
        self.runtime = pb_grpc.RuntimeServiceStub(self.channel)
        self.images = pb_grpc.ImageServiceStub(self.channel)
        self.pods = {}        # sandbox id -> PodSandboxConfig
        self.containers = {}  # container id -> sandbox id

    @classmethod
    def for_node(cls, node, **kw) -> "Kubelet":
        """A Kubelet on a tests.harness.node.Node: its socket, its cgroup
        parent, logs under <node dir>/pods (removed with the node), errors
        quoting the containerd log tail."""
        kw.setdefault("cgroup_parent", node.cgroup_parent)
        kw.setdefault("log_base", node.dir / "pods")
        kw.setdefault("context", lambda: node_log_problems(node))
        return cls(node.socket, **kw)

    def close(self) -> None:
        self.channel.close()
        if self._own_log_base:
            shutil.rmtree(self.log_base, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.teardown_all()
        finally:
            self.close()
        return False

    # ------------------------------------------------------------ calls
    def _call(self, stub, method: str, request, timeout=None):
        try:
            return getattr(stub, method)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            code = e.code().name if e.code() else "UNKNOWN"
            ctx = ""
            if self.context is not None:
                try:
                    ctx = self.context()
                except Exception as ce:  # the context must not hide the error
                    ctx = f"(context unavailable: {ce})"
            raise CriError(method, code, e.details() or "", ctx) from None

    def rpc(self, method: str, request, timeout=None):
        """Any RuntimeService method by name with a request message."""
        return self._call(self.runtime, method, request, timeout)

    def version(self):
        """VersionResponse (runtime_name, runtime_version, runtime_api_version)."""
        return self.rpc("Version", self.pb.VersionRequest(version="v1"))

    def image_status(self, image: str):
        """The Image message of a local image of namespace k8s.io, or None."""
        r = self._call(self.images, "ImageStatus",
                       self.pb.ImageStatusRequest(image=self.pb.ImageSpec(image=image)))
        return r.image if r.HasField("image") else None

    # ------------------------------------------------------------ pods
    def pod_config(self, name: str, namespace: str = "default", uid=None, *,
                   annotations=None, labels=None, log_directory=None):
        """A host-network PodSandboxConfig as kubelet would build it; creates
        its log directory."""
        pb = self.pb
        uid = uid or str(uuid.uuid4())
        log_dir = Path(log_directory) if log_directory else \
            self.log_base / f"{namespace}_{name}_{uid}"
        log_dir.mkdir(parents=True, exist_ok=True)
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=0),
            hostname="",  # host network: runc refuses a hostname without a UTS namespace
            log_directory=str(log_dir),
            labels=dict(labels or {}, **{OWNER_LABEL: self.token}),
            annotations=dict(annotations or {}),
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=self.cgroup_parent,
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER,
                                                         ipc=pb.POD))))

    def run_pod(self, name: str, namespace: str = "default", uid=None, annotations=None,
                labels=None, handler: str = "", log_directory=None) -> str:
        """RunPodSandbox of a host-network pod; returns the sandbox id.
        handler: "" (the default runtime) or e.g. "kybernate"."""
        config = self.pod_config(name, namespace, uid, annotations=annotations, labels=labels,
                                 log_directory=log_directory)
        r = self.rpc("RunPodSandbox",
                     self.pb.RunPodSandboxRequest(config=config, runtime_handler=handler))
        self.pods[r.pod_sandbox_id] = config
        return r.pod_sandbox_id

    def sandbox_config(self, sandbox_id: str):
        return self.pods[sandbox_id]

    def pod_status(self, sandbox_id: str, verbose: bool = False):
        """PodSandboxStatusResponse (.status, .info when verbose)."""
        return self.rpc("PodSandboxStatus", self.pb.PodSandboxStatusRequest(
            pod_sandbox_id=sandbox_id, verbose=verbose))

    def list_pods(self, labels=None, state=None) -> list:
        """PodSandbox items; state: "SANDBOX_READY" / "SANDBOX_NOTREADY"."""
        f = self.pb.PodSandboxFilter(label_selector=dict(labels or {}))
        if state:
            f.state.state = self.pb.PodSandboxState.Value(state)
        return list(self.rpc("ListPodSandbox", self.pb.ListPodSandboxRequest(filter=f)).items)

    # ------------------------------------------------------------ containers
    def create_container(self, sandbox_id: str, name: str, image: str = BUSYBOX_REF, *,
                         command=None, args=None, annotations=None, labels=None, envs=None,
                         log_path=None, sandbox_config=None, attempt: int = 0) -> str:
        """CreateContainer in a pod of this Kubelet (or give sandbox_config);
        log_path (relative to the pod's log dir) defaults to kubelet's
        "<name>/<attempt>.log".  Returns the container id."""
        pb = self.pb
        sandbox_config = sandbox_config or self.pods[sandbox_id]
        log_path = log_path or f"{name}/{attempt}.log"
        (Path(sandbox_config.log_directory) / log_path).parent.mkdir(parents=True, exist_ok=True)
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name, attempt=attempt),
            image=pb.ImageSpec(image=image),
            command=[str(a) for a in (command or [])],
            args=[str(a) for a in (args or [])],
            envs=[pb.KeyValue(key=k, value=v) for k, v in (envs or {}).items()],
            labels=dict(labels or {}),
            annotations=dict(annotations or {}),
            log_path=log_path,
            linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER,
                                                     ipc=pb.POD))))
        r = self.rpc("CreateContainer", pb.CreateContainerRequest(
            pod_sandbox_id=sandbox_id, config=config, sandbox_config=sandbox_config))
        self.containers[r.container_id] = sandbox_id
        return r.container_id

    def start_container(self, container_id: str) -> None:
        self.rpc("StartContainer", self.pb.StartContainerRequest(container_id=container_id))

    def run_container(self, sandbox_id: str, name: str, image: str = BUSYBOX_REF, *,
                      wait: float = 30.0, **kw) -> str:
        """create_container + start_container + wait_state RUNNING."""
        cid = self.create_container(sandbox_id, name, image, **kw)
        self.start_container(cid)
        self.wait_state(cid, "RUNNING", wait)
        return cid

    def stop_container(self, container_id: str, timeout: int = 0) -> None:
        """StopContainer; timeout in seconds (0: SIGKILL at once)."""
        self.rpc("StopContainer", self.pb.StopContainerRequest(container_id=container_id,
                                                               timeout=timeout))

    def remove_container(self, container_id: str) -> None:
        self.rpc("RemoveContainer", self.pb.RemoveContainerRequest(container_id=container_id))
        self.containers.pop(container_id, None)

    def container_status(self, container_id: str, verbose: bool = False) -> Status:
        r = self.rpc("ContainerStatus", self.pb.ContainerStatusRequest(
            container_id=container_id, verbose=verbose))
        s = r.status
        return Status(id=s.id, name=s.metadata.name,
                      state=self.pb.ContainerState.Name(s.state), exit_code=s.exit_code,
                      reason=s.reason, message=s.message, log_path=s.log_path,
                      annotations=dict(s.annotations), labels=dict(s.labels),
                      info=_json_info(r.info), raw=s)

    def container_pid(self, container_id: str):
        """The container's init pid on the host (verbose status info), or None."""
        return self.container_status(container_id, verbose=True).info.get("info", {}).get("pid")

    def list_containers(self, sandbox_id=None, state=None, labels=None) -> list:
        """Container items; state: "RUNNING", "CONTAINER_EXITED", ..."""
        f = self.pb.ContainerFilter(pod_sandbox_id=sandbox_id or "",
                                    label_selector=dict(labels or {}))
        if state:
            f.state.state = self.pb.ContainerState.Value(_state_name(state))
        return list(self.rpc("ListContainers",
                             self.pb.ListContainersRequest(filter=f)).containers)

    def wait_state(self, container_id: str, state: str = "RUNNING",
                   timeout: float = 30.0) -> Status:
        """Poll ContainerStatus until it is in state ("RUNNING" or
        "CONTAINER_RUNNING" ...).  Fails at once, with reason, message and
        log tail, when the container exited while another state was awaited."""
        want = _state_name(state)
        deadline = time.monotonic() + timeout
        while True:
            st = self.container_status(container_id)
            if st.state == want:
                return st
            if st.state == "CONTAINER_EXITED":
                raise CriError("wait_state", "EXITED",
                               f"container {container_id} ({st.name}) exited (code "
                               f"{st.exit_code}, reason {st.reason!r}, message {st.message!r}) "
                               f"while waiting for {want}; log tail: "
                               f"{self.read_log(container_id)[-10:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"container {container_id} ({st.name}) still {st.state} "
                                   f"after {timeout:.0f}s waiting for {want}")
            time.sleep(0.05)

    # ------------------------------------------------------------ logs
    def log_file(self, container_id: str) -> Path:
        """The container's log file (ContainerStatus.log_path: absolute)."""
        return Path(self.container_status(container_id).log_path)

    def read_log(self, container_or_path, stream=None) -> list:
        """Plain lines of a container's CRI log (by container id or path)."""
        p = str(container_or_path)
        path = Path(p) if "/" in p else self.log_file(p)
        return read_cri_log(path, stream)

    def wait_log(self, container_or_path, predicate, timeout: float = 30.0, what=None) -> list:
        """Poll the log until predicate(lines) is true; returns the lines."""
        p = str(container_or_path)
        path = Path(p) if "/" in p else self.log_file(p)
        deadline = time.monotonic() + timeout
        while True:
            lines = read_cri_log(path)
            if predicate(lines):
                return lines
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for "
                                   f"{what or 'the log'} in {path}; last lines: {lines[-5:]}")
            time.sleep(0.05)

    # ------------------------------------------------------------ teardown
    def stop_pod_and_remove(self, sandbox_id: str, timeout: int = 0) -> None:
        """kubelet's teardown of one pod: stop and remove its containers, then
        stop and remove the sandbox.  Missing objects are no error (a pod may
        be half-created); every other failure is collected and raised at the
        end as one CriError, after everything was tried."""
        errors = []

        def attempt(what, fn, *a):
            try:
                fn(*a)
            except CriError as e:
                if e.code != "NOT_FOUND":
                    errors.append(f"{what}: {e.code}: {e.details}")

        ids = {c for c, s in self.containers.items() if s == sandbox_id}
        try:
            ids |= {c.id for c in self.list_containers(sandbox_id=sandbox_id)}
        except CriError as e:
            errors.append(f"ListContainers: {e.code}: {e.details}")
        for cid in sorted(ids):
            attempt(f"StopContainer {cid}", self.stop_container, cid, timeout)
            attempt(f"RemoveContainer {cid}", self.remove_container, cid)
            self.containers.pop(cid, None)
        attempt(f"StopPodSandbox {sandbox_id}", self.rpc, "StopPodSandbox",
                self.pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))
        attempt(f"RemovePodSandbox {sandbox_id}", self.rpc, "RemovePodSandbox",
                self.pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))
        self.pods.pop(sandbox_id, None)
        if errors:
            raise CriError("stop_pod_and_remove", "FAILED", "; ".join(errors))

    def teardown_all(self) -> None:
        """stop_pod_and_remove of every pod this Kubelet made (also those
        whose RunPodSandbox failed on our side: found by OWNER_LABEL)."""
        ids = set(self.pods)
        try:
            ids |= {p.id for p in self.list_pods(labels={OWNER_LABEL: self.token})}
        except CriError:
            pass  # containerd gone: the node's stop() cleans up
        errors = []
        for sid in sorted(ids):
            try:
                self.stop_pod_and_remove(sid)
            except CriError as e:
                errors.append(str(e))
        if errors:
            raise CriError("teardown_all", "FAILED", "; ".join(errors))


# ---------------------------------------------------------------- node helpers

def node_log_problems(node, lines: int = 8) -> str:
    """The last error/warning lines of a node's containerd log (the context
    for_node() appends to CriErrors)."""
    tail = node.log_tail(300).splitlines()
    bad = [line for line in tail if "level=error" in line or "level=warning" in line]
    head = f"containerd log {node.log_path}"
    if not bad:
        return f"{head}: no recent errors or warnings"
    return f"{head}, last errors/warnings:\n  " + "\n  ".join(bad[-lines:])


def bundle_spec(node, container_id: str, ns: str = K8S_NAMESPACE) -> dict:
    """The OCI spec (config.json) containerd wrote into the task bundle of a
    container of a tests.harness.node.Node: what the runtime (runc or
    kybernate-runc) is given.  Exists while the task exists."""
    return json.loads((node.bundles_dir / ns / container_id / "config.json").read_text())

# SPDX-License-Identifier: Apache-2.0
"""A private containerd "node" for tests and demos.

A node is one directory that holds everything of one containerd instance:
its config, root, state, sockets, runc root, CNI dirs, temp dir and logs.
Two nodes side by side share nothing that collides: distinct sockets (so
distinct shim socket hashes), runc roots, bundles and cgroup parents.

    with Node("a", base_dir, build_dir) as node:
        node.run_container("c1", ["/usr/bin/counter"])
        ...

start() writes the config, starts containerd in its own session, waits
until it answers and imports the test images into `default` and `k8s.io`.
stop() ends only what this node started and removes the node dir; it is
idempotent and works on a half-started node and on a node started by
another process (Node.attach(dir), the `stop` CLI command).

CLI (used by scripts/demo; also tests/harness/kybnode):
    python3 -m tests.harness.node start [--name N] [--base-dir B] [--build-dir D]
    python3 -m tests.harness.node stop|status|env NODE_DIR
`start` prints `export KEY='value'` lines (eval "$(... start)"), see Node.env();
--format env drops the `export`, --format json prints an object.
"""

import argparse
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import default_build_dir, procs, tool_path
from .image import BUSYBOX_REF, PAUSE_REF, build_test_images

NAMESPACES = ("default", "k8s.io")
DEFAULT_BASE_DIR = Path(os.environ.get("KYBERNATE_NODE_BASE", "/tmp/kybernate-nodes"))
SHIM_SOCKET_DIR = Path("/run/containerd/s")
# sun_path is 108 bytes; keep the longest socket path well inside it.
MAX_SOCKET_PATH = 100


class NodeError(Exception):
    pass


class NodeStartError(NodeError):
    pass


class NodeStopError(NodeError):
    pass


def _toml_str(s) -> str:
    return json.dumps(str(s))  # a JSON string is a valid TOML basic string


def _toml_list(items) -> str:
    return "[" + ", ".join(_toml_str(i) for i in items) + "]"


def shim_socket_path(grpc_address, namespace: str, container_id: str) -> Path:
    """Where containerd 1.7 puts the shim socket of a task (runtime/v2/shim
    SocketAddress: sha256 of address/namespace/id under /run/containerd/s)."""
    key = os.path.join(str(grpc_address), namespace, container_id)
    return SHIM_SOCKET_DIR / hashlib.sha256(key.encode()).hexdigest()


class Node:
    def __init__(self, name: str, base_dir=None, build_dir=None, *, import_images: bool = True,
                 extra_config: str = "", start_timeout: float = 30.0, env=None):
        self.name = name
        self.base_dir = Path(base_dir) if base_dir else DEFAULT_BASE_DIR
        self.dir = (self.base_dir / name).absolute()
        self.build_dir = Path(build_dir).absolute() if build_dir else default_build_dir()
        self.import_images = import_images
        self.extra_config = extra_config
        self.start_timeout = start_timeout
        self.extra_env = dict(env or {})
        self._proc = None  # Popen of containerd when this process started it
        self.images = None

    # ------------------------------------------------------------ paths
    @property
    def socket(self) -> Path:
        return self.dir / "containerd.sock"

    @property
    def ttrpc_socket(self) -> Path:
        return self.dir / "containerd.sock.ttrpc"

    @property
    def config_path(self) -> Path:
        return self.dir / "config.toml"

    @property
    def log_path(self) -> Path:
        return self.dir / "containerd.log"

    @property
    def pid_path(self) -> Path:
        return self.dir / "containerd.pid"

    @property
    def info_path(self) -> Path:
        return self.dir / "node.json"

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def state(self) -> Path:
        return self.dir / "state"

    @property
    def runc_root(self) -> Path:
        """runc --root of the shims (they append /<namespace>)."""
        return self.dir / "runc"

    @property
    def logs_dir(self) -> Path:
        """A place for container logs (removed with the node)."""
        return self.dir / "logs"

    @property
    def tmp_dir(self) -> Path:
        return self.dir / "tmp"

    @property
    def fifo_dir(self) -> Path:
        return self.dir / "fifo"

    @property
    def kybernate_runc(self) -> Path:
        return self.build_dir / "cmd" / "kybernate-runc"

    @property
    def cgroup_parent(self) -> str:
        """A top-level cgroup of this node alone: containers run by
        run_container() live below it (ctr's default, /<ns>/<id>, would put
        two nodes' containers of the same id into one cgroup).  CRI clients
        may use it as PodSandboxConfig.linux.cgroup_parent."""
        return "/kybtest-" + hashlib.sha256(str(self.dir).encode()).hexdigest()[:12]

    @property
    def bundles_dir(self) -> Path:
        return self.state / "io.containerd.runtime.v2.task"

    def env(self) -> dict:
        """What a shell needs to use this node (plain `ctr` honours
        CONTAINERD_ADDRESS)."""
        return {
            "KYB_NODE_NAME": self.name,
            "KYB_NODE_DIR": str(self.dir),
            "KYB_NODE_SOCKET": str(self.socket),
            "CONTAINERD_ADDRESS": str(self.socket),
            "KYB_NODE_RUNC_ROOT": str(self.runc_root),
            "KYB_NODE_LOG": str(self.log_path),
            "KYB_NODE_CONFIG": str(self.config_path),
            "KYB_NODE_CGROUP_PARENT": self.cgroup_parent,
            "KYB_NODE_PID": str(self.containerd_pid() or ""),
            "KYB_NODE_BUSYBOX_IMAGE": BUSYBOX_REF,
            "KYB_NODE_PAUSE_IMAGE": PAUSE_REF,
        }

    # ------------------------------------------------------------ config
    def config_text(self) -> str:
        d = self.dir
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        rt = f"{cri}.containerd.runtimes"
        return f"""# containerd config of test node {self.name} (written by tests/harness/node.py)
version = 2
root = {_toml_str(self.root)}
state = {_toml_str(self.state)}
temp = {_toml_str(self.tmp_dir)}
plugin_dir = ""
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = {_toml_str(self.socket)}

[ttrpc]
  address = {_toml_str(self.ttrpc_socket)}

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = {_toml_str(d / "opt")}

[plugins."io.containerd.nri.v1.nri"]
  disable = true
  socket_path = {_toml_str(d / "nri.sock")}
  plugin_path = {_toml_str(d / "nri" / "plugins")}
  plugin_config_path = {_toml_str(d / "nri" / "conf")}

[{cri}]
  sandbox_image = {_toml_str(PAUSE_REF)}
  # No CAP_SYS_RESOURCE here: runc cannot lower the sandbox's oom_score_adj.
  restrict_oom_score_adj = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  enable_selinux = false
  netns_mounts_under_state_dir = true

  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [{rt}.runc]
      runtime_type = "io.containerd.runc.v2"
      [{rt}.runc.options]
        Root = {_toml_str(self.runc_root)}

    [{rt}.kybernate]
      runtime_type = "io.containerd.runc.v2"
      pod_annotations = {_toml_list(["kybernate.io/*"])}
      [{rt}.kybernate.options]
        BinaryName = {_toml_str(self.kybernate_runc)}
        Root = {_toml_str(self.runc_root)}

  [{cri}.cni]
    bin_dir = {_toml_str(d / "cni" / "bin")}
    conf_dir = {_toml_str(d / "cni" / "conf")}
{self.extra_config}
"""

    # ------------------------------------------------------------ start
    def __enter__(self):
        try:
            self.start()
        except BaseException:
            try:
                self.stop()
            except NodeError:
                pass  # the start error says more
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _child_env(self) -> dict:
        env = dict(os.environ)
        env["PATH"] = tool_path()
        env["TMPDIR"] = str(self.tmp_dir)
        # Keep a caller's CONTAINERD_* settings from leaking into containerd's children.
        for k in ("CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE", "NOTIFY_SOCKET"):
            env.pop(k, None)
        env.update(self.extra_env)
        return env

    def start(self) -> "Node":
        for tool in ("containerd", "ctr", "containerd-shim-runc-v2", "runc"):
            if not shutil.which(tool, path=tool_path()):
                raise NodeStartError(f"{tool} is not installed (scripts/setup installs it)")
        if len(str(self.ttrpc_socket)) > MAX_SOCKET_PATH:
            raise NodeStartError(f"node dir {self.dir} is too long for a unix socket path")
        if self.info_path.exists() and procs.alive(self.containerd_pid() or 0):
            raise NodeStartError(f"a node is already running in {self.dir}")
        if self.dir.exists():
            self.stop()  # what a dead node left behind
        if self.import_images:
            self.images = build_test_images(self.build_dir)
        for sub in (self.root, self.state, self.runc_root, self.logs_dir, self.tmp_dir,
                    self.fifo_dir, self.dir / "opt", self.dir / "cni" / "bin",
                    self.dir / "cni" / "conf"):
            sub.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text())
        self._write_info()
        with open(self.log_path, "ab") as log, open(os.devnull, "rb") as null:
            self._proc = subprocess.Popen(
                ["containerd", "--config", str(self.config_path)],
                stdin=null, stdout=log, stderr=log, cwd=self.dir, env=self._child_env(),
                start_new_session=True)
        self.pid_path.write_text(f"{self._proc.pid}\n")
        self._write_info()
        self._wait_ready()
        if self.import_images:
            for ns in NAMESPACES:
                try:
                    self.ctr("images", "import", str(self.images.path), ns=ns, timeout=120)
                except (NodeError, subprocess.TimeoutExpired) as e:
                    raise NodeStartError(f"importing the test images into {ns}: {e}; log "
                                         f"{self.log_path}:\n{self.log_tail()}") from e
            for ns in NAMESPACES:
                have = set(self.ctr("images", "ls", "-q", ns=ns).stdout.split())
                missing = {BUSYBOX_REF, PAUSE_REF} - have
                if missing:
                    raise NodeStartError(f"image import into {ns} did not create {sorted(missing)}"
                                         f" (have {sorted(have)})")
        return self

    def _write_info(self) -> None:
        info = dict(self.env(), build_dir=str(self.build_dir), base_dir=str(self.base_dir))
        tmp = self.info_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, self.info_path)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while True:
            pid = self.containerd_pid()
            if not procs.alive(pid or 0):
                rc = self._proc.poll() if self._proc else None
                raise NodeStartError(
                    f"containerd of node {self.name} exited (rc {rc}) before answering; "
                    f"log {self.log_path}:\n{self.log_tail()}")
            if self.socket.exists():
                try:
                    r = self.ctr("version", check=False, timeout=5, ns=None)
                    if r.returncode == 0:
                        return
                    last = (r.stderr or r.stdout).strip()
                except subprocess.TimeoutExpired:
                    last = "ctr version timed out"
            if time.monotonic() > deadline:
                raise NodeStartError(
                    f"containerd of node {self.name} did not answer on {self.socket} within "
                    f"{self.start_timeout:.0f}s (last: {last}); log {self.log_path}:\n"
                    f"{self.log_tail()}")
            time.sleep(0.1)

    # ------------------------------------------------------------ use
    def ctr(self, *args, ns="default", check=True, timeout=60, input=None):
        """Run ctr against this node; returns CompletedProcess (text)."""
        cmd = ["ctr", "--address", str(self.socket)]
        if ns:
            cmd += ["--namespace", ns]
        cmd += [str(a) for a in args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input,
                           env=self._child_env())
        if check and r.returncode != 0:
            raise NodeError(f"{shlex.join(cmd)} failed (rc {r.returncode}): "
                            f"{(r.stderr or r.stdout).strip()}")
        return r

    def run_container(self, container_id: str, args=None, *, ns="default", image=BUSYBOX_REF,
                      log_path=None, runtime_binary=None, extra=()) -> Path:
        """Start a detached container with ctr (stdout+stderr to a log file,
        runc root and cgroup of this node); returns the log path."""
        log = Path(log_path) if log_path else self.logs_dir / f"{ns}-{container_id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = ["run", "--detach", "--log-uri", f"file://{log}",
               "--runc-root", str(self.runc_root),
               "--cgroup", f"{self.cgroup_parent}/{ns}-{container_id}",
               "--fifo-dir", str(self.fifo_dir)]
        if runtime_binary:
            cmd += ["--runc-binary", str(runtime_binary)]
        cmd += list(extra) + [image, container_id] + [str(a) for a in (args or [])]
        self.ctr(*cmd, ns=ns)
        return log

    def namespaces(self) -> list:
        return self.ctr("namespaces", "ls", "-q", ns=None, timeout=10).stdout.split()

    def tasks(self, ns="default") -> dict:
        """{task id: (pid, status)} from `ctr tasks ls`."""
        out = {}
        for line in self.ctr("tasks", "ls", ns=ns, timeout=10).stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 3:
                out[parts[0]] = (int(parts[1]), parts[2])
        return out

    def runc_state(self, container_id: str, ns="default"):
        """runc's state.json of a container of this node, or None."""
        try:
            return json.loads((self.runc_root / ns / container_id / "state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def containerd_pid(self):
        if self._proc is not None:
            return self._proc.pid
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        # A recycled pid must not be taken for ours.
        cl = procs.cmdline(pid) or ""
        return pid if str(self.config_path) in cl else None

    def status(self) -> dict:
        pid = self.containerd_pid()
        st = {"name": self.name, "dir": str(self.dir), "exists": self.dir.exists(),
              "socket": str(self.socket), "containerd_pid": pid,
              "containerd_alive": procs.alive(pid or 0), "ready": False, "tasks": {}}
        if st["containerd_alive"] and self.socket.exists():
            try:
                st["ready"] = self.ctr("version", ns=None, check=False, timeout=5).returncode == 0
                if st["ready"]:
                    for ns in self.namespaces():
                        st["tasks"][ns] = {k: list(v) for k, v in self.tasks(ns).items()}
            except (subprocess.TimeoutExpired, NodeError):
                pass
        st["shims"] = self.shim_pids()
        return st

    def shim_pids(self) -> list:
        return procs.pids_mentioning(f"-address {self.socket}")

    def owned_pids(self) -> list:
        """Every live process this node started that can be found: containerd,
        shims, runc calls and container processes."""
        pids = set(procs.pids_mentioning(str(self.dir)))
        pid = self.containerd_pid()
        if procs.alive(pid or 0):
            pids.add(pid)
        for _, _, st in self._runc_states():
            init = st.get("init_process_pid")
            if init and procs.alive(init) and procs.start_time(init) == st.get("init_process_start"):
                pids.add(init)
        for d in procs.cgroup_dirs(self.cgroup_parent):
            pids |= {p for p in procs.cgroup_pids(d) if procs.alive(p)}
        return sorted(pids - procs.ancestors())

    def _runc_states(self):
        out = []
        if self.runc_root.is_dir():
            for f in self.runc_root.glob("*/*/state.json"):
                try:
                    out.append((f.parent.parent.name, f.parent.name, json.loads(f.read_text())))
                except (OSError, json.JSONDecodeError):
                    pass
        return out

    def known_containers(self) -> set:
        """(namespace, id) of every container this node has a trace of: task
        bundles, runc states and, while containerd answers, its container list
        (a task whose shim died has no bundle any more)."""
        out = set()
        if self.bundles_dir.is_dir():
            out |= {(b.parent.name, b.name) for b in self.bundles_dir.glob("*/*")}
        out |= {(ns, cid) for ns, cid, _ in self._runc_states()}
        if procs.alive(self.containerd_pid() or 0) and self.socket.exists():
            try:
                for ns in self.namespaces():
                    ids = self.ctr("containers", "ls", "-q", ns=ns, timeout=10).stdout.split()
                    out |= {(ns, cid) for cid in ids}
            except (NodeError, subprocess.TimeoutExpired):
                pass
        return out

    def shim_sockets(self, containers=None) -> set:
        """Shim sockets of this node's tasks: from the socket path formula
        and from the bundles' address files."""
        containers = self.known_containers() if containers is None else containers
        out = {shim_socket_path(self.socket, ns, cid) for ns, cid in containers}
        if self.bundles_dir.is_dir():
            for bundle in self.bundles_dir.glob("*/*"):
                try:
                    addr = (bundle / "address").read_text().strip()
                except OSError:
                    continue
                path = Path(addr.removeprefix("unix://"))
                if path.parent == SHIM_SOCKET_DIR:
                    out.add(path)
        return out

    # ------------------------------------------------------------ stop
    @classmethod
    def attach(cls, node_dir) -> "Node":
        """A Node object for a node dir started elsewhere (e.g. by the CLI)."""
        node_dir = Path(node_dir).absolute()
        build_dir = None
        try:
            build_dir = json.loads((node_dir / "node.json").read_text()).get("build_dir")
        except (OSError, json.JSONDecodeError):
            pass
        return cls(node_dir.name, node_dir.parent, build_dir)

    def stop(self, timeout: float = 10.0) -> None:
        """End everything this node started and remove its dir. Idempotent.
        Raises NodeStopError listing what could not be cleaned."""
        problems = []
        shim_sockets = self.shim_sockets()
        runc_states = self._runc_states()

        # 1. Through containerd while it answers: kill and delete every task.
        pid = self.containerd_pid()
        if procs.alive(pid or 0) and self.socket.exists():
            self._delete_all_tasks()

        # 2. containerd itself.
        if procs.alive(pid or 0):
            procs.kill(pid, signal.SIGTERM)
            if procs.wait_gone([pid], timeout):
                procs.kill(pid, signal.SIGKILL)
                if procs.wait_gone([pid], 5):
                    problems.append(f"containerd {pid} does not die")
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                problems.append(f"containerd {self._proc.pid} not reaped")

        # 3. Shims (re-parented, they outlive containerd) and runc calls.
        left = self.shim_pids() + procs.pids_mentioning(f"--root {self.runc_root}")
        for p in left:
            procs.kill(p)
        procs.wait_gone(left, 5)

        # 4. Containers whose shim is gone: runc delete --force, then by hand.
        for ns, cid, st in runc_states:
            if (self.runc_root / ns / cid).exists() and shutil.which("runc"):
                subprocess.run(["runc", "--root", str(self.runc_root / ns), "delete", "--force",
                                cid], capture_output=True, timeout=15)
            init = st.get("init_process_pid")
            if init and procs.start_time(init) == st.get("init_process_start"):
                procs.kill(init)
                if procs.wait_gone([init], 5):
                    problems.append(f"container {ns}/{cid} init {init} does not die")
            for path in (st.get("cgroup_paths") or {}).values():
                if path and Path(path).is_dir() and not procs.remove_cgroup_tree(Path(path)):
                    problems.append(f"cgroup {path} of {ns}/{cid} cannot be removed")
        for d in procs.cgroup_dirs(self.cgroup_parent):
            if not procs.remove_cgroup_tree(d):
                problems.append(f"cgroup {d} cannot be removed")

        # 5. Anything else of ours still running (a runc or ctr call, a process
        #    exec'd by a shim): it names our socket, config, state or runc root.
        left = procs.pids_mentioning(str(self.socket), str(self.config_path), str(self.state),
                                     str(self.runc_root))
        for p in left:
            procs.kill(p)
        for p in procs.wait_gone(left, 5):
            problems.append(f"process {p} ({procs.cmdline(p)}) does not die")

        # 6. Shim sockets the shims did not remove (killed shims cannot).
        for s in shim_sockets:
            if s.exists() or s.is_symlink():
                try:
                    s.unlink()
                except OSError as e:
                    problems.append(f"shim socket {s}: {e}")

        # 7. Mounts (rootfs overlays, sandbox shm) and the dir itself.
        if self.dir.exists():
            still = procs.unmount_all_under(self.dir)
            if still:
                problems.append(f"still mounted: {still}")
            else:
                try:
                    shutil.rmtree(self.dir)
                except OSError as e:
                    problems.append(f"cannot remove {self.dir}: {e}")
        self._proc = None
        if problems:
            raise NodeStopError(f"node {self.name} not fully cleaned: " + "; ".join(problems))

    def _delete_all_tasks(self) -> None:
        try:
            namespaces = self.namespaces()
        except (NodeError, subprocess.TimeoutExpired):
            return
        for ns in namespaces:
            try:
                ids = list(self.tasks(ns))
            except (NodeError, subprocess.TimeoutExpired):
                continue
            for cid in ids:
                try:
                    self.ctr("tasks", "delete", "--force", cid, ns=ns, check=False, timeout=20)
                except subprocess.TimeoutExpired:
                    pass


# ---------------------------------------------------------------- CLI

FORMATS = ("sh", "env", "json")


def _print_env(node: Node, fmt: str) -> None:
    """sh: `export K='v'` lines for eval; env: K='v' lines; json: an object."""
    env = node.env()
    if fmt == "json":
        print(json.dumps(env, indent=2))
        return
    prefix = "export " if fmt == "sh" else ""
    for k, v in env.items():
        print(f"{prefix}{k}={shlex.quote(v)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m tests.harness.node",
                                 description="Start and stop private containerd test nodes.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="start a node in the background, print its env lines")
    s.add_argument("--name", default="node0")
    s.add_argument("--base-dir", default=str(DEFAULT_BASE_DIR),
                   help="parent of the node dir (default $KYBERNATE_NODE_BASE or %(default)s)")
    s.add_argument("--build-dir", help="meson build dir (default $KYBERNATE_BUILD_DIR or <repo>/build)")
    s.add_argument("--no-images", action="store_true", help="do not import the test images")
    s.add_argument("--format", choices=FORMATS, default="sh")
    for name, help_ in (("stop", "stop a node and remove its dir"),
                        ("status", "show a node's state (JSON)"),
                        ("env", "print a node's env lines again")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("node_dir")
        if name == "env":
            p.add_argument("--format", choices=FORMATS, default="sh")
    args = ap.parse_args(argv)

    if args.cmd == "start":
        node = Node(args.name, args.base_dir, args.build_dir, import_images=not args.no_images)
        try:
            node.start()
        except BaseException as e:
            try:
                node.stop()
            except NodeError as e2:
                print(f"kybnode: {e2}", file=sys.stderr)
            print(f"kybnode: {e}", file=sys.stderr)
            return 1
        _print_env(node, args.format)
        return 0
    node = Node.attach(args.node_dir)
    if args.cmd == "stop":
        try:
            node.stop()
        except NodeError as e:
            print(f"kybnode: {e}", file=sys.stderr)
            return 1
        return 0
    if args.cmd == "status":
        st = node.status()
        print(json.dumps(st, indent=2))
        return 0 if st["ready"] else 3
    _print_env(node, args.format)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

# SPDX-License-Identifier: Apache-2.0
"""The oci:// store against a real registry (issue 5): Debian's
docker-registry, started per test by tests/harness/registry.py on a free
loopback port (plain http: loopback), with a harness node running the
counter.

Checked:
  - `kybernate checkpoint --to oci://...` pushes an OCI artifact (the
    documented media types, one part per file, manifest.json as config),
    prints oci://host/repo:tag, keeps no local copy; `images ls oci://...`
    lists it; `kybernate restore oci://host/repo:tag --name NEW` downloads it
    into the node cache and kybernate-runc restores from the cached copy: the
    counter goes on.  With the cached copy deleted, a second restore fetches
    it again; an existing name is refused; `images rm` removes the tag and
    the cached copy;
  - a flipped byte in a stored blob: the restore is refused naming the file,
    no container, task or snapshot is left, and the cache holds nothing;
  - the registry goes away mid-upload (a proxy cuts the connection after
    4 MiB): the checkpoint fails clearly, the container runs on, no tag is
    visible; once the registry is back, the same checkpoint completes;
  - the CLI killed mid-upload (the proxy stalls, then SIGKILL): no tag
    visible; the retry completes;
  - basic auth (htpasswd): no credentials and a wrong password fail with a
    clear 401 naming where credentials come from; the right ones push, list
    and pull;
  - token auth (a Bearer realm with an ES256 token issuer run by the
    harness): a wrong password is refused by the issuer; the right one gets
    tokens for the push and pull scopes;
  - TLS: a registry with a private CA's certificate is refused (certificate
    problem, no retries) until KYBERNATE_OCI_CA_FILE names the CA.
"""

import base64
import json
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tests.harness.checks import counts, wait_count, wait_for
from tests.harness.registry import Registry, free_port
from tests.integration.test_restore import assert_goes_on, checksum_of

REPO = "kyb/test"
PART = "application/vnd.kybernate.checkpoint.part.v1+zstd"


@pytest.fixture
def registry(root):
    with Registry() as r:
        yield r


@pytest.fixture
def cache(tmp_path):
    d = tmp_path / "cache"
    yield d
    subprocess.run(["rm", "-rf", "--one-file-system", str(d)], check=False)


def node_conf(tmp_path, *store_uris) -> Path:
    conf = tmp_path / "kybernate.json"
    conf.write_text(json.dumps({"defaultStore": f"file://{tmp_path}/local",
                                "stores": list(store_uris)}))
    return conf


@pytest.fixture
def onode(make_node, registry, cache, tmp_path):
    """A node whose kybernate-runc may restore from the registry's kyb/test,
    with the node cache in tmp."""
    conf = node_conf(tmp_path, registry.store_uri(REPO))
    return make_node("o", env={"KYBERNATE_CONFIG": str(conf),
                               "KYBERNATE_IMAGE_CACHE": str(cache)})


def kyb(build_dir, node, cache, *args, env=None, timeout=300, wait=True):
    cmd = [str(build_dir / "cmd" / "kybernate"), "--address", str(node.socket),
           "--namespace", "default", *map(str, args)]
    e = {k: v for k, v in os.environ.items() if not k.startswith("KYBERNATE_REGISTRY")}
    e["KYBERNATE_IMAGE_CACHE"] = str(cache)
    e.update(env or {})
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=e)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e)


def start_counter(node, cid, mem=64):
    log = node.run_container(cid, ["/usr/bin/counter", "--mem", str(mem), "--file", "/data/state",
                                   "--interval", "100", "--verify-every", "5"])
    wait_count(log, 8)
    return log


def cache_dir(cache, registry_or_host) -> Path:
    host = registry_or_host if isinstance(registry_or_host, str) else registry_or_host.host
    return cache / "oci" / host.replace(":", "_") / REPO


def cache_entries(cache, host) -> list:
    d = cache_dir(cache, host)
    return sorted(os.listdir(d)) if d.exists() else []


def containers(node):
    return node.ctr("containers", "ls", "-q", ns="default").stdout.split()


def snapshots(node):
    return [line.split()[0] for line in
            node.ctr("snapshots", "ls", ns="default").stdout.splitlines()[1:] if line.strip()]


def remove_container(node, cid):
    node.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False)
    wait_for(lambda: node.tasks().get(cid, (0, "STOPPED"))[1] == "STOPPED", 30, f"{cid} stopped")
    node.ctr("tasks", "delete", cid, check=False)
    node.ctr("containers", "delete", cid)


# ------------------------------------------------------------------ round trip

def test_push_ls_restore_goes_on(build_dir, onode, registry, cache):
    old_log = start_counter(onode, "counter")
    store = registry.store_uri(REPO)
    r = kyb(build_dir, onode, cache, "checkpoint", "counter", "--name", "img1", "--to", store)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{store}:img1"
    assert onode.tasks()["counter"][1] == "STOPPED"
    # The artifact, as docs/image-format.md lays it out.
    assert registry.tags(REPO) == ["img1"]
    m = registry.manifest(REPO, "img1")
    assert m["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert m["artifactType"] == "application/vnd.kybernate.checkpoint.v1"
    assert m["config"]["mediaType"] == "application/vnd.kybernate.checkpoint.manifest.v1+json"
    titles = {l["annotations"]["org.opencontainers.image.title"] for l in m["layers"]}
    assert "rootfs-diff.tar" in titles and any(t.startswith("criu/pages-") for t in titles)
    assert all(l["mediaType"] == PART for l in m["layers"])
    config = json.loads(registry.blob_path(m["config"]["digest"]).read_bytes())
    assert config["name"] == "img1"
    assert {f["path"] for f in config["files"]} == titles
    for l in m["layers"]:
        f = next(f for f in config["files"]
                 if f["path"] == l["annotations"]["org.opencontainers.image.title"])
        assert l["annotations"]["io.kybernate.part.sha256"] == "sha256:" + f["sha256"]
        assert l["annotations"]["io.kybernate.part.size"] == str(f["size"])
    # Nothing local: the staging copy went once the push was done.
    assert cache_entries(cache, registry) == []

    ls = kyb(build_dir, onode, cache, "images", "ls", store)
    assert ls.returncode == 0, ls.stderr
    assert "img1" in ls.stdout and "counter" in ls.stdout, ls.stdout
    lsj = kyb(build_dir, onode, cache, "--json", "images", "ls", store)
    assert [i["name"] for i in json.loads(lsj.stdout)] == ["img1"]

    new_log = onode.logs_dir / "restored.log"
    r = kyb(build_dir, onode, cache, "restore", f"{store}:img1", "--name", "restored",
            "--log", new_log, "--runc-root", onode.runc_root)
    assert r.returncode == 0, f"restore failed: {r.stderr}"
    cid, pid = r.stdout.split()
    assert cid == "restored"
    assert_goes_on(old_log, new_log, int(pid), "restored", checksum_of(old_log))
    assert cache_entries(cache, registry) == ["img1"]  # downloaded once, published

    # The local copy deleted: a second restore fetches the image again.
    subprocess.run(["rm", "-rf", str(cache_dir(cache, registry) / "img1")], check=True)
    remove_container(onode, "restored")
    log2 = onode.logs_dir / "restored2.log"
    r = kyb(build_dir, onode, cache, "restore", f"{store}:img1", "--name", "restored2",
            "--log", log2, "--runc-root", onode.runc_root)
    assert r.returncode == 0, f"second restore failed: {r.stderr}"
    assert_goes_on(old_log, log2, int(r.stdout.split()[1]), "restored2", checksum_of(old_log))

    # A name is never overwritten.
    start_counter(onode, "other", mem=8)
    r = kyb(build_dir, onode, cache, "checkpoint", "other", "--name", "img1", "--to", store,
            "--leave-running")
    assert r.returncode == 1 and "img1 already exists" in r.stderr, r.stderr
    assert registry.manifest(REPO, "img1") == m

    # images rm: the tag goes, and the node's cached copy with it.
    r = kyb(build_dir, onode, cache, "images", "rm", f"{store}:img1")
    assert r.returncode == 0 and r.stdout.strip() == "img1", r.stderr
    assert registry.tags(REPO) == []
    assert cache_entries(cache, registry) == []
    r = kyb(build_dir, onode, cache, "restore", f"{store}:img1", "--name", "gone")
    assert r.returncode == 1 and "no image img1 in store" in r.stderr, r.stderr


def test_flipped_byte_refused(build_dir, onode, registry, cache):
    start_counter(onode, "c", mem=8)
    store = registry.store_uri(REPO)
    r = kyb(build_dir, onode, cache, "checkpoint", "c", "--name", "img", "--to", store)
    assert r.returncode == 0, r.stderr
    m = registry.manifest(REPO, "img")
    layer = next(l for l in m["layers"]
                 if l["annotations"]["org.opencontainers.image.title"].startswith("criu/pages-"))
    blob = registry.blob_path(layer["digest"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(data)
    before = set(snapshots(onode))
    r = kyb(build_dir, onode, cache, "restore", f"{store}:img", "--name", "x",
            "--log", onode.logs_dir / "x.log", "--runc-root", onode.runc_root)
    assert r.returncode == 1, r.stdout + r.stderr
    title = layer["annotations"]["org.opencontainers.image.title"]
    assert title in r.stderr and layer["digest"] in r.stderr, r.stderr
    assert "x" not in containers(onode) and "x" not in onode.tasks()
    assert set(snapshots(onode)) == before
    assert cache_entries(cache, registry) == [], "a refused download left something"


# ------------------------------------------------------------------ interrupted pushes

class Proxy:
    """A TCP proxy in front of the registry.  After `limit` bytes from the
    clients it either cuts every connection and stops listening ("cut": the
    registry went away) or stops forwarding and holds the connections
    ("stall").  heal() makes it a plain proxy again, on the same port."""

    def __init__(self, upstream_port, limit, mode):
        self.upstream = upstream_port
        self.limit = limit
        self.mode = mode
        self.sent = 0
        self.tripped = threading.Event()
        self.healed = threading.Event()
        self.lock = threading.Lock()
        self.conns = []
        self.port = free_port()
        self._listen()

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def _listen(self):
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(16)
        threading.Thread(target=self._accept, args=(self.lsock,), daemon=True).start()

    def _accept(self, lsock):
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.upstream))
            with self.lock:
                self.conns += [c, u]
            threading.Thread(target=self._pump, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False), daemon=True).start()

    def _pump(self, src, dst, upstream):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if upstream and not self.healed.is_set():
                    with self.lock:
                        self.sent += len(data)
                        over = self.sent > self.limit
                    if over:
                        self._trip()
                        if self.mode == "cut":
                            return
                        self.healed.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _trip(self):
        if self.tripped.is_set():
            return
        self.tripped.set()
        if self.mode == "cut":
            self.lsock.close()
            with self.lock:
                for s in self.conns:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def heal(self):
        self.healed.set()
        if self.mode == "cut":
            self._listen()

    def close(self):
        self.healed.set()
        self.lsock.close()
        with self.lock:
            for s in self.conns:
                s.close()


@pytest.fixture
def proxied(make_node, registry, cache, tmp_path, request):
    """(node, proxy): the proxy in front of the registry in the mode the
    test's parameter names; the node allows both store URIs."""
    proxy = Proxy(registry.port, 4 << 20, request.param)
    conf = node_conf(tmp_path, registry.store_uri(REPO), f"oci://{proxy.host}/{REPO}")
    node = make_node("p", env={"KYBERNATE_CONFIG": str(conf),
                               "KYBERNATE_IMAGE_CACHE": str(cache)})
    yield node, proxy
    proxy.close()


@pytest.mark.parametrize("proxied", ["cut"], indirect=True)
def test_registry_gone_mid_upload(build_dir, proxied, registry, cache):
    node, proxy = proxied
    log = start_counter(node, "c", mem=64)
    pid = node.tasks()["c"][0]
    store = f"oci://{proxy.host}/{REPO}"
    r = kyb(build_dir, node, cache, "checkpoint", "c", "--name", "img", "--to", store)
    assert proxy.tripped.is_set()
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout == ""
    assert "checkpoint c" in r.stderr and "push criu/pages-" in r.stderr, r.stderr
    assert f"http://{proxy.host}/v2/{REPO}/blobs/uploads/" in r.stderr, r.stderr
    assert registry.tags(REPO) == [], "a half push became visible"
    # The container runs on, and the node cache holds no half image.
    assert node.tasks()["c"] == (pid, "RUNNING")
    last = counts(log)[-1]
    wait_count(log, last + 3)
    assert cache_entries(cache, proxy.host) == []

    proxy.heal()  # the registry is back: the same checkpoint completes
    r = kyb(build_dir, node, cache, "checkpoint", "c", "--name", "img", "--to", store,
            "--leave-running")
    assert r.returncode == 0, r.stderr
    assert registry.tags(REPO) == ["img"]
    v = kyb(build_dir, node, cache, "images", "verify", f"{store}:img")
    assert v.returncode == 0 and "img: ok" in v.stdout, v.stdout + v.stderr


@pytest.mark.parametrize("proxied", ["stall"], indirect=True)
def test_cli_killed_mid_upload(build_dir, proxied, registry, cache):
    node, proxy = proxied
    start_counter(node, "c", mem=64)
    store = f"oci://{proxy.host}/{REPO}"
    p = kyb(build_dir, node, cache, "checkpoint", "c", "--name", "img", "--to", store,
            "--leave-running", wait=False)
    try:
        wait_for(proxy.tripped.is_set, 120, "the push to pass 4 MiB")
        assert registry.upload_dirs(REPO), "no upload session in progress"
    finally:
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=30)
    assert registry.tags(REPO) == [], "a half push became visible"
    # The killed checkpoint left its container paused (it was killed between
    # dump and resume); a person or the agent resumes it.
    node.ctr("tasks", "resume", "c", check=False)
    wait_for(lambda: node.tasks()["c"][1] == "RUNNING", 30, "c running again")
    proxy.heal()
    r = kyb(build_dir, node, cache, "checkpoint", "c", "--name", "img", "--to", store,
            "--leave-running")
    assert r.returncode == 0, r.stderr
    assert registry.tags(REPO) == ["img"]
    # The killed checkpoint's staging dir in the spool is a leftover, never an
    # image; `images cleanup` removes it (no live process holds it).
    assert cache_entries(cache, proxy.host) == []
    left = sorted(os.listdir(cache / "spool"))
    assert len(left) == 1 and left[0].startswith(".staging-img-"), left
    r = kyb(build_dir, node, cache, "images", "cleanup", "--min-age", "0", store)
    assert r.returncode == 0, r.stderr
    assert os.listdir(cache / "spool") == []


# ------------------------------------------------------------------ auth

def auth_file(tmp_path, host, user, password) -> Path:
    f = tmp_path / f"auth-{user}-{password}.json"
    cred = base64.b64encode(f"{user}:{password}".encode()).decode()
    f.write_text(json.dumps({"auths": {f"https://{host}/v1/": {"auth": cred}}}))
    return f


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_auth(build_dir, make_node, cache, tmp_path, mode, root):
    with Registry(auth=mode, users={"alice": "s3cret"}) as reg:
        store = reg.store_uri(REPO)
        node = make_node("a", env={"KYBERNATE_CONFIG": str(node_conf(tmp_path, store)),
                                   "KYBERNATE_IMAGE_CACHE": str(cache)})
        start_counter(node, "c", mem=8)

        r = kyb(build_dir, node, cache, "images", "ls", store)
        assert r.returncode == 1, r.stdout + r.stderr
        if mode == "basic":
            assert "HTTP 401 Unauthorized" in r.stderr, r.stderr
            assert f"registry {reg.host} refused access (credentials: none configured" in r.stderr
        else:  # anonymous tokens pull nothing here: the registry refuses them
            assert "HTTP 401" in r.stderr or "HTTP 403" in r.stderr, r.stderr

        wrong = {"KYBERNATE_REGISTRY_AUTH": str(auth_file(tmp_path, reg.host, "alice", "nope"))}
        r = kyb(build_dir, node, cache, "checkpoint", "c", "--name", "img", "--to", store,
                "--leave-running", env=wrong)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "HTTP 401" in r.stderr and "$KYBERNATE_REGISTRY_AUTH" in r.stderr, r.stderr
        if mode == "token":
            assert "token refused" in r.stderr and "wrong user name or password" in r.stderr
        assert node.tasks()["c"][1] == "RUNNING"

        right = {"KYBERNATE_REGISTRY_AUTH": str(auth_file(tmp_path, reg.host, "alice", "s3cret"))}
        r = kyb(build_dir, node, cache, "checkpoint", "c", "--name", "img", "--to", store,
                "--leave-running", env=right)
        assert r.returncode == 0, r.stderr
        r = kyb(build_dir, node, cache, "images", "ls", store, env=right)
        assert r.returncode == 0 and "img" in r.stdout, r.stderr
        v = kyb(build_dir, node, cache, "images", "verify", f"{store}:img", env=right)
        assert v.returncode == 0, v.stderr
        # The same credentials from the environment instead of a file.
        env = {"KYBERNATE_REGISTRY_USERNAME": "alice", "KYBERNATE_REGISTRY_PASSWORD": "s3cret",
               "KYBERNATE_REGISTRY_AUTH": str(tmp_path / "none.json")}
        (tmp_path / "none.json").write_text("{}")
        r = kyb(build_dir, node, cache, "images", "ls", store, env=env)
        assert r.returncode == 0 and "img" in r.stdout, r.stderr
        if mode == "token":
            scopes = [s for user, ss in reg.issuer.requests if user == "alice" for s in ss]
            assert f"repository:{REPO}:pull,push" in scopes, reg.issuer.requests
            assert f"repository:{REPO}:pull" in scopes, reg.issuer.requests


# ------------------------------------------------------------------ TLS

def test_tls(build_dir, make_node, cache, tmp_path, root):
    """A registry on 127.0.0.2 (not a loopback name: https) with a
    certificate from a private CA: refused until the CA is given
    (KYBERNATE_OCI_CA_FILE), then push, list and pull work."""
    with Registry(tls=True) as reg:
        store = reg.store_uri(REPO)
        assert reg.host.startswith("127.0.0.2:")
        node = make_node("t", env={"KYBERNATE_CONFIG": str(node_conf(tmp_path, store)),
                                   "KYBERNATE_IMAGE_CACHE": str(cache)})
        start_counter(node, "c", mem=8)
        r = kyb(build_dir, node, cache, "images", "ls", store)
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"GET https://{reg.host}/v2/{REPO}/tags/list" in r.stderr, r.stderr
        assert "SSL certificate problem" in r.stderr, r.stderr
        assert "retry" not in r.stderr, "a certificate problem is not retried"

        ca = {"KYBERNATE_OCI_CA_FILE": str(reg.ca_path)}
        r = kyb(build_dir, node, cache, "checkpoint", "c", "--name", "img", "--to", store,
                "--leave-running", env=ca)
        assert r.returncode == 0, r.stderr
        assert reg.tags(REPO) == ["img"]
        r = kyb(build_dir, node, cache, "images", "ls", store, env=ca)
        assert r.returncode == 0 and "img" in r.stdout, r.stderr
        v = kyb(build_dir, node, cache, "images", "verify", f"{store}:img", env=ca)
        assert v.returncode == 0, v.stderr

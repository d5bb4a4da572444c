# SPDX-License-Identifier: Apache-2.0
"""The Kubernetes API client of libkybernate (lib/kube, docs/kube-client.md)
against the API server double (tests/doubles/kube_apiserver.py), driven
through the test-only CLI tests/programs/kube_probe.c: configuration
sources (kubeconfig with token, CA file or data, client certificate;
in-cluster with a rotating token; unix socket), CRUD on a custom resource
with the errors as the server words them, conflict retry, watch with
bookmarks and 410, the informer's relist and resume, Events, and leader
election between probes.

No root, no containerd: these run anywhere the build dir has kube_probe."""

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.doubles.kube_apiserver import KubeApiServer
from tests.harness import default_build_dir
from tests.harness.checks import wait_for
from tests.harness.kubeapi import KubeClient

GROUP = "kybernate.io"
AV = f"{GROUP}/v1alpha1"
RES = f"{AV}/probes"

PROBE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": f"probes.{GROUP}"},
    "spec": {"group": GROUP, "scope": "Namespaced",
             "names": {"kind": "Probe", "plural": "probes", "singular": "probe",
                       "listKind": "ProbeList"},
             "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                           "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {
                               "type": "object",
                               "properties": {
                                   "spec": {"type": "object",
                                            "x-kubernetes-preserve-unknown-fields": True},
                                   "status": {"type": "object",
                                              "x-kubernetes-preserve-unknown-fields": True}}}}}]}}


def probe_obj(name, **labels):
    return {"apiVersion": AV, "kind": "Probe",
            "metadata": {"name": name, "labels": labels}, "spec": {"size": 1}}


@pytest.fixture(scope="module")
def probe_bin() -> Path:
    p = default_build_dir() / "tests" / "programs" / "kube_probe"
    if not p.is_file():
        pytest.fail(f"{p} is missing: build first (meson setup <dir> && ninja -C <dir>) or set "
                    f"KYBERNATE_BUILD_DIR", pytrace=False)
    return p


@pytest.fixture
def api():
    """The double with a token and a unix socket, bookmarks every 0.3 s,
    the probe CRD registered."""
    sock = f"/tmp/kyb-kube-{os.getpid()}-{time.monotonic_ns()}.sock"
    with KubeApiServer(token="t0", tokens={"t-other": "someone"}, unix_socket=sock,
                       bookmark_interval=0.3, too_large_wait=0.3) as a:
        a.create_crd(PROBE_CRD)
        yield a


@pytest.fixture
def kc(api):
    c = KubeClient.for_server(api)
    yield c
    c.close()


class Probe:
    """kube_probe with a connection; run() for one command, start() for a
    streaming one (watch, informer, elect)."""

    def __init__(self, binary, conn, env=None):
        self.binary, self.conn = str(binary), list(conn)
        self.env = dict(os.environ, **(env or {}))

    def run(self, *args, check=True, timeout=30):
        p = subprocess.run([self.binary, *self.conn, *map(str, args)], capture_output=True,
                           text=True, timeout=timeout, env=self.env)
        if check and p.returncode != 0:
            raise AssertionError(f"kube_probe {' '.join(map(str, args))}: exit {p.returncode}\n"
                                 f"{p.stdout}{p.stderr}")
        return p

    def json(self, *args, **kw):
        return json.loads(self.run(*args, **kw).stdout.splitlines()[-1])

    def fail(self, *args):
        """Runs a command that must fail: (status, reason, errno, stderr)."""
        p = self.run(*args, check=False)
        assert p.returncode == 1, p.stdout + p.stderr
        m = re.search(r"^ERROR status=(\d+) reason=(\w*) errno=(\d+)$", p.stdout, re.M)
        assert m, p.stdout
        return int(m.group(1)), m.group(2), int(m.group(3)), p.stderr.strip()

    def start(self, *args):
        return Stream([self.binary, *self.conn, *map(str, args)], self.env)


class Stream:
    def __init__(self, argv, env):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.lines, self.all = queue.Queue(), []
        self.err = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True
                         ).start()
        threading.Thread(target=self._drain, daemon=True).start()

    def _pump(self, f, q):
        for line in f:
            self.all.append(line.rstrip("\n"))
            q.put(line.rstrip("\n"))
        q.put(None)

    def _drain(self):
        for line in self.proc.stderr:
            self.err.append(line)

    def expect(self, pattern, timeout=10.0):
        """The next line matching pattern (earlier lines are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line matching {pattern!r}; saw {self.all}; "
                                   f"stderr {''.join(self.err)[-2000:]}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"probe ended without {pattern!r}; saw {self.all}; "
                                     f"stderr {''.join(self.err)[-2000:]}")
            m = re.search(pattern, line)
            if m:
                return m

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.fixture
def streams():
    made = []
    yield made
    for s in made:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def recorded(api, pred, n=1, timeout=10.0):
    """The double's request log entries matching pred, once there are at
    least n (a request is logged when its answer is done: a watch when it
    ends)."""
    def match():
        m = [r for r in list(api.requests) if pred(r)]
        return m if len(m) >= n else None
    return wait_for(match, timeout, f"{n} matching requests in the double's log")


def fresh_watch(api, timeout=10.0):
    """Waits until exactly one watch is open and it is not one a test
    dropped (a dropped one stays registered until its handler is done)."""
    def ok():
        with api._lock:
            ws = list(api._watches)
        return len(ws) == 1 and ws[0].drop is None
    wait_for(ok, timeout, "one fresh watch open in the double")


def http_probe(probe_bin, api, token="t0"):
    return Probe(probe_bin, ["--server", api.url, "--token", token, "--res", RES])


# ---------------------------------------------------------------- configuration

def test_kubeconfig_tls_token_cert_and_errors(probe_bin, tmp_path):
    with KubeApiServer(token="t0", tls=True) as api:
        api.create_crd(PROBE_CRD)
        api.create(probe_obj("p1"), "default")
        cases = {
            "file": api.kubeconfig(tmp_path / "kc-file", namespace="default"),
            "inline": api.kubeconfig(tmp_path / "kc-inline", inline=True),
            "cert": api.kubeconfig(tmp_path / "kc-cert", client_cert=True),
            "cert-inline": api.kubeconfig(tmp_path / "kc-cert-inline", client_cert=True,
                                          inline=True),
        }
        for name, path in cases.items():
            p = Probe(probe_bin, ["--kubeconfig", path, "--res", RES])
            cfg = p.json("config")
            assert cfg["server"] == api.url and cfg["ca"], (name, cfg)
            assert cfg["client_cert"] == name.startswith("cert"), (name, cfg)
            assert cfg["source"] == f"kubeconfig {path} (context double)"
            obj = p.json("get", "_", "p1")
            assert obj["metadata"]["name"] == "p1", name
        # $KUBECONFIG, as kubectl reads it.
        p = Probe(probe_bin, ["--res", RES], env={"KUBECONFIG": cases["inline"]})
        assert p.json("get", "default", "p1")["metadata"]["name"] == "p1"

        # Verification is on: without the CA the server is not trusted.
        p = Probe(probe_bin, ["--server", api.url, "--token", "t0", "--res", RES])
        status, _, errno_, err = p.fail("get", "default", "p1")
        assert status == 0 and "TLS with" in err and "failed" in err, err
        # A wrong token: the server's 401 Status.
        p = Probe(probe_bin, ["--server", api.url, "--token", "nope", "--ca", api.ca_file,
                              "--res", RES])
        assert p.fail("get", "default", "p1")[:2] == (401, "Unauthorized")
        # What the kubeconfig subset leaves out is refused by name.
        text = Path(cases["file"]).read_text().replace(
            "    token: t0", "    exec:\n      command: aws-iam-authenticator")
        bad = tmp_path / "kc-exec"
        bad.write_text(text)
        p = Probe(probe_bin, ["--kubeconfig", bad])
        _, _, _, err = p.fail("config")
        assert f"kubeconfig {bad}: user 'test': field 'exec' (exec credential plugin) is not " \
               "supported" in err, err


def test_in_cluster_with_rotating_token(probe_bin, tmp_path, streams):
    with KubeApiServer(tokens={"sa-1": "system:serviceaccount:kyb:op",
                               "sa-2": "system:serviceaccount:kyb:op"}, tls=True,
                       bookmark_interval=0.3) as api:
        api.create_crd(PROBE_CRD)
        api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kyb"}})
        sa = Path(api.service_account_dir(tmp_path / "sa", namespace="kyb", token="sa-1"))
        env = dict(api.in_cluster_env(), KUBECONFIG="")
        p = Probe(probe_bin, ["--in-cluster", sa, "--res", RES], env=env)
        cfg = p.json("config")
        assert cfg["server"] == f"https://127.0.0.1:{api.port}"
        assert cfg["namespace"] == "kyb" and cfg["token_file"] and cfg["ca"]

        inf = p.start("informer", "_")
        streams.append(inf)
        inf.expect(r"^SYNC 0 ")
        api.create(probe_obj("a"), "kyb")
        inf.expect(r"^EVENT ADDED a ")
        # kubelet rotates the projected token (a new file swapped in by rename);
        # the old one stops working.
        new = sa / "token.new"
        new.write_text("sa-2")
        os.rename(new, sa / "token")
        del api.tokens["sa-1"]
        api.drop_watches(mode="abort")
        fresh_watch(api)  # the resumed watch got in
        api.create(probe_obj("b"), "kyb")
        inf.expect(r"^EVENT ADDED b ")
        assert inf.stop() == 1
        inf.expect(r"^END rc=-1")
        watches = recorded(api, lambda r: r["watch"], 2)
        assert not [r for r in api.requests if r["code"] == 401], "the new token was used at once"
        assert {w["user"] for w in watches} == {"system:serviceaccount:kyb:op"}


def test_unix_socket(probe_bin, api):
    api.create(probe_obj("u1"), "default")
    p = Probe(probe_bin, ["--server", "http://localhost", "--unix-socket", api.unix_socket,
                          "--token", "t0", "--res", RES])
    assert p.json("get", "default", "u1")["metadata"]["name"] == "u1"


# ---------------------------------------------------------------- calls

def test_crud_selectors_paging_and_errors(probe_bin, api, kc, tmp_path):
    p = http_probe(probe_bin, api)
    made = p.json("create", "default", json.dumps(probe_obj("c1", app="web", tier="a")))
    assert made["metadata"]["uid"] and made["metadata"]["resourceVersion"]
    for i, tier in ((2, "a"), (3, "b"), (4, "c")):
        p.json("create", "default", json.dumps(probe_obj(f"c{i}", app="web", tier=tier)))
    kc.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": "other"}})
    p.json("create", "other", json.dumps(probe_obj("x1", app="web")))

    # Exact Status from the server, mapped.
    status, reason, errno_, err = p.fail("create", "default", json.dumps(probe_obj("c1")))
    assert (status, reason, errno_) == (409, "AlreadyExists", 17)
    assert err == ('kube_probe: error: kube: create kybernate.io/v1alpha1 probes default/c1: 409 '
                   'AlreadyExists: probes.kybernate.io "c1" already exists (File exists)')
    status, reason, _, err = p.fail("get", "default", "nope")
    assert (status, reason) == (404, "NotFound")
    assert err.endswith('404 NotFound: probes.kybernate.io "nope" not found '
                        '(No such file or directory)')

    names = lambda lst: sorted(o["metadata"]["name"] for o in lst["items"])  # noqa: E731
    assert names(p.json("list", "default", "--selector", "tier in (a,b)")) == ["c1", "c2", "c3"]
    assert names(p.json("list", "default", "--selector", "app=web,tier!=a")) == ["c3", "c4"]
    assert names(p.json("list", "default", "--field", "metadata.name=c4")) == ["c4"]
    assert len(p.json("list", "", "--selector", "app=web")["items"]) == 5  # all namespaces
    # Paging: one object per page, joined; the list's rv to watch from.
    paged = p.json("list", "default", "--limit", "1", "--all")
    assert names(paged) == ["c1", "c2", "c3", "c4"]
    pages = recorded(api, lambda r: r["path"].endswith("/namespaces/default/probes")
                     and r["query"].get("limit") == "1", 4)
    assert len(pages) == 4 and pages[-1]["query"].get("continue")
    assert int(paged["resourceVersion"]) >= int(made["metadata"]["resourceVersion"])

    # Merge patch, then the status subresource with a stale resourceVersion.
    patched = p.json("patch", "default", "c1", '{"spec":{"size":2},"metadata":{"labels":'
                     '{"tier":null}}}')
    assert patched["spec"]["size"] == 2 and "tier" not in patched["metadata"]["labels"]
    stale = dict(made, status={"phase": "Running"})
    f = tmp_path / "stale.json"
    f.write_text(json.dumps(stale))
    status, reason, errno_, err = p.fail("update", f, "--status")
    assert (status, reason, errno_) == (409, "Conflict", 16)
    assert "kube: update status kybernate.io/v1alpha1 probes default/c1: 409 Conflict: " \
           "Operation cannot be fulfilled on probes.kybernate.io \"c1\": the object has been " \
           "modified; please apply your changes to the latest version and try again" in err
    fresh = dict(patched, status={"phase": "Running"})
    f.write_text(json.dumps(fresh))
    written = p.json("update", f, "--status")
    assert written["status"] == {"phase": "Running"} and written["spec"]["size"] == 2
    # Status patch leaves the spec alone.
    p.json("patch", "default", "c1", '{"status":{"phase":"Done"},"spec":{"size":9}}', "--status")
    assert kc.get(AV, "probes", "c1", "default")["spec"]["size"] == 2

    # Delete with a uid precondition: the wrong uid is refused, the right one deletes.
    assert p.fail("delete", "default", "c2", "--uid", "not-the-uid")[:2] == (409, "Conflict")
    uid = kc.get(AV, "probes", "c2", "default")["metadata"]["uid"]
    p.json("delete", "default", "c2", "--uid", uid, "--propagation", "Foreground")
    assert p.fail("get", "default", "c2")[0] == 404
    assert len(recorded(api, lambda r: r["method"] == "DELETE", 2)) == 2


def test_status_modify_retries_conflicts(probe_bin, api, kc):
    p = http_probe(probe_bin, api)
    kc.create(AV, "probes", probe_obj("m1"), "default")
    # Two injected conflicts: the third write lands.
    api.inject(r"/probes/m1/status$", code=409, count=2, method="PUT", reason="Conflict")
    out = p.json("increment", "default", "m1", "count", "--status")
    assert out["attempts"] == 3 and out["object"]["status"]["count"] == 1
    gets = recorded(api, lambda r: r["method"] == "GET" and r["path"].endswith("/m1"), 3)
    assert len(gets) == 3, "every retry reads the object again"
    # Bounded: conflicts beyond the attempts fail with the 409.
    api.inject(r"/probes/m1/status$", code=409, count=3, method="PUT", reason="Conflict")
    p2 = p.run("increment", "default", "m1", "count", "--status", "--count", "2", check=False)
    assert p2.returncode == 1 and "ATTEMPTS 2" in p2.stdout
    assert "still conflicting after 2 attempts" in p2.stderr
    api.clear_injections()
    # Real contention: eight writers at once, every increment lands once.
    procs = [subprocess.Popen([str(probe_bin), "--server", api.url, "--token", "t0", "--res",
                               RES, "increment", "default", "m1", "count", "--status",
                               "--count", "50"], stdout=subprocess.PIPE, text=True)
             for _ in range(8)]
    attempts = []
    for pr in procs:
        out, _ = pr.communicate(timeout=60)
        assert pr.returncode == 0, out
        attempts.append(json.loads(out.splitlines()[-1])["attempts"])
    assert kc.get(AV, "probes", "m1", "default")["status"]["count"] == 1 + 8
    assert sum(attempts) >= 8


# ---------------------------------------------------------------- watch

def test_watch_bookmarks_timeout_and_410(probe_bin, api, kc, streams):
    p = http_probe(probe_bin, api)
    rv0 = kc.list(AV, "probes", "default")["metadata"]["resourceVersion"]
    w = p.start("watch", "default", "--rv", rv0, "--count", "2")
    streams.append(w)
    api.wait_for_watches(1)
    kc.create(AV, "probes", probe_obj("w1"), "default")
    kc.patch(AV, "probes", "w1", {"spec": {"size": 5}}, "default")
    w.expect(r"^EVENT ADDED w1 \d+$")
    last = w.expect(r"^EVENT MODIFIED w1 (\d+)$").group(1)
    assert w.expect(r"^END rc=1 rv=(\d+)$").group(1) == last
    req = recorded(api, lambda r: r["watch"])[-1]["query"]
    assert req["resourceVersion"] == rv0 and req["allowWatchBookmarks"] == "true"

    # A quiet watch ends when the server's timeoutSeconds is up, and the
    # bookmarks it got moved the resourceVersion past other types' writes.
    kc.create("v1", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "bump"}}, "default")
    bumped = int(kc.list("v1", "configmaps", "default")["metadata"]["resourceVersion"])
    q = p.start("watch", "default", "--rv", last, "--timeout", "1")
    streams.append(q)
    end = q.expect(r"^END rc=0 rv=(\d+)$", timeout=15)
    assert int(end.group(1)) >= bumped > int(last)

    # Too old: 410 Expired as an ERROR event, mapped to the Status.
    for i in range(3):
        kc.create(AV, "probes", probe_obj(f"old{i}"), "default")
    api.compact()
    r = p.run("watch", "default", "--rv", rv0, check=False)
    assert r.returncode == 1
    assert re.search(r"^END rc=-1 rv=" + rv0 + "$", r.stdout, re.M), r.stdout
    assert "ERROR status=410 reason=Expired" in r.stdout
    assert "kube: watch kybernate.io/v1alpha1 probes default: 410 Expired: too old resource " \
           f"version: {rv0}" in r.stderr


def test_informer_relists_on_410_and_resumes_after_drops(probe_bin, api, kc, streams):
    p = http_probe(probe_bin, api)
    kc.create(AV, "probes", probe_obj("i1"), "default")
    inf = p.start("informer", "default", "--limit", "1")
    streams.append(inf)
    inf.expect(r"^SYNC 1 \d+ i1$")
    api.wait_for_watches(1)

    kc.create(AV, "probes", probe_obj("i2"), "default")
    rv_i2 = inf.expect(r"^EVENT ADDED i2 (\d+)$").group(1)
    # A dropped connection: resume the watch from the last rv, no relist.
    api.drop_watches(mode="abort")
    fresh_watch(api)  # the resumed one is open
    kc.create(AV, "probes", probe_obj("i3"), "default")
    inf.expect(r"^EVENT ADDED i3 ")
    assert len([line for line in inf.all if line.startswith("SYNC")]) == 1
    # A server-side end (timeout): watch again, quietly.  That ends the
    # resumed watch, so the double logs it: it started at i2's rv or later.
    api.drop_watches(mode="close")
    recorded(api, lambda r: r["watch"] and int(r["query"]["resourceVersion"]) >= int(rv_i2))
    fresh_watch(api)
    # 410: list again (all of it) and go on from the new list.
    kc.delete(AV, "probes", "i1", "default")
    inf.expect(r"^EVENT DELETED i1 ")
    api.compact()
    api.drop_watches(mode="expire")
    inf.expect(r"^SYNC 2 \d+ i2 i3$")
    fresh_watch(api)
    # Failures on the way back (500 on the list, then the watch) are backed off and retried.
    api.compact()
    api.inject(r"/probes$", code=500, count=1, watch=False)
    api.inject(r"/probes$", code=503, count=1, watch=True)
    api.drop_watches(mode="expire")
    inf.expect(r"^SYNC 2 \d+ i2 i3$", timeout=15)
    kc.create(AV, "probes", probe_obj("i4"), "default")
    inf.expect(r"^EVENT ADDED i4 ")
    assert "informer: probes failed" in "".join(inf.err)
    # Cancelled by a signal: the loop ends at once, ECANCELED.
    assert inf.stop() == 1
    inf.expect(r"^END rc=-1$")
    assert "cancelled" in "".join(inf.err)


# ---------------------------------------------------------------- events and leases

def test_events_fold_repeats(probe_bin, api, kc):
    p = http_probe(probe_bin, api)
    obj = kc.create(AV, "probes", probe_obj("e1"), "default")
    p.run("event", "default", "e1", "Warning", "PodNotFound", "pod web-0 does not exist",
          "--repeat", "3")
    evs = kc.list("v1", "events", "default")["items"]
    assert len(evs) == 1
    ev = evs[0]
    assert ev["count"] == 3 and ev["type"] == "Warning" and ev["reason"] == "PodNotFound"
    assert ev["message"] == "pod web-0 does not exist"
    assert ev["involvedObject"] == {"apiVersion": AV, "kind": "Probe", "name": "e1",
                                    "namespace": "default", "uid": obj["metadata"]["uid"],
                                    "resourceVersion": obj["metadata"]["resourceVersion"]}
    assert ev["source"] == {"component": "kube-probe", "host": "probe-host"}
    assert ev["firstTimestamp"] <= ev["lastTimestamp"]
    assert ev["metadata"]["name"].startswith("e1.")
    assert len(recorded(api, lambda r: r["method"] == "PATCH" and "/events/" in r["path"],
                        2)) == 2


def test_lease_election_between_probes(probe_bin, api, kc, streams):
    p = Probe(probe_bin, ["--server", api.url, "--token", "t0"])
    opts = ["--duration", "2", "--deadline-ms", "1500", "--retry-ms", "200", "--release"]
    a = p.start("elect", "default", "op-lock", "A", *opts)
    streams.append(a)
    a.expect(r"^LEADER A transitions=0$")
    b = p.start("elect", "default", "op-lock", "B", *opts)
    streams.append(b)
    b.expect(r"^FOLLOWER B holder=A$")

    # A dies without releasing: B takes over only after it has seen the lease
    # unchanged for the lease duration on its own clock.
    killed_at = time.monotonic()
    a.stop(signal.SIGKILL)
    b.expect(r"^LEADER B transitions=1$", timeout=15)
    assert time.monotonic() - killed_at >= 1.0, "B waited for the lease to expire"
    lease = kc.get("coordination.k8s.io/v1", "leases", "op-lock", "default")
    assert lease["spec"]["holderIdentity"] == "B" and lease["spec"]["leaseTransitions"] == 1
    assert lease["spec"]["leaseDurationSeconds"] == 2
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", lease["spec"]["renewTime"])

    # C waits; B leaves cleanly (release): C takes over on its next try.
    c = p.start("elect", "default", "op-lock", "C", *opts)
    streams.append(c)
    c.expect(r"^FOLLOWER C holder=B$")
    assert b.stop(signal.SIGTERM) == 0
    b.expect(r"^RELEASED B$")
    c.expect(r"^LEADER C transitions=2$", timeout=10)
    lease = kc.get("coordination.k8s.io/v1", "leases", "op-lock", "default")
    assert lease["spec"]["holderIdentity"] == "C"
    # Renewals and takeovers are PUTs carrying the resourceVersion read.
    recorded(api, lambda r: r["method"] == "PUT" and r["path"].endswith("/op-lock")
             and r["code"] == 200)
    assert c.stop() == 0
    wait_for(lambda: kc.get("coordination.k8s.io/v1", "leases", "op-lock", "default")
             ["spec"]["holderIdentity"] == "", 5, "C's release")

# SPDX-License-Identifier: Apache-2.0
"""kybernate-uploader (issue 5, item 3): the daemon on a socket in a temp
dir, real checkpoint images of the counter (root, a harness node), Debian's
docker-registry (tests/harness/registry.py) and moto's S3 server
(tests/harness/s3.py, a stand-in for S3 that checks SigV4).

Checked:
  - the must-show end to end THROUGH the uploader: `kybernate --uploader
    SOCK checkpoint --to oci://…` checkpoints into the local store and the
    uploader pushes it (the job is in the daemon's list, its progress at the
    image size); the local copy is gone; `images ls` lists it through the
    uploader; `kybernate --uploader SOCK restore oci://…:img1` has the
    uploader fetch it into the node cache and restores from there: the
    counter goes on;
  - credentials only in the uploader: a registry with basic auth; without a
    credentials file the upload job fails at once with the registry's 401
    and where credentials come from, nothing is pushed; with
    KYBERNATE_REGISTRY_AUTH the job completes; the CLI without credentials
    fails in-process and lists and verifies through the uploader;
  - a push stalled by a proxy midway: the job runs with 0 < bytesDone <
    bytesTotal on a named part; SIGKILL of the daemon leaves no tag; a new
    daemon on the same (stale) socket takes the resubmitted job to the end;
    a second daemon with a fresh cache fetches it back, verified;
  - a cancel (DELETE) of a job whose request is stalled at the proxy ends
    it (ECANCELED); SIGTERM while a job runs: /healthz answers 503
    "stopping", new jobs 503 with Retry-After, the job is stopped after
    --grace, the daemon exits 0 and removes its socket, nothing is pushed,
    every log line is JSON;
  - s3:// the same way: upload through the uploader, fetch into a fresh
    cache, every file verified; the CLI has no S3 credentials;
  - bad requests (no node needed): malformed JSON, unknown op and field, a
    local store outside the node's (403), a body over 64 KiB (413), unknown
    job and endpoint (404), wrong method (405 with Allow), a cancel of a
    finished job (409); each a JSON error naming the problem.
"""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.harness.checks import wait_count, wait_for
from tests.harness.registry import Registry
from tests.harness.uploader import Uploader
from tests.integration.test_restore import assert_goes_on, checksum_of
from tests.integration.test_store_oci import Proxy, auth_file

REPO = "kyb/test"
MIB = 1024 * 1024


@pytest.fixture
def registry(root):
    with Registry() as r:
        yield r


def node_conf(tmp_path, local, *stores) -> Path:
    conf = tmp_path / "kybernate.json"
    conf.write_text(json.dumps({"defaultStore": f"file://{local}", "stores": list(stores)}))
    return conf


def kyb(build_dir, node, local, cache, *args, timeout=300):
    """The CLI as a user runs it: no storage credentials in its environment."""
    cmd = [str(build_dir / "cmd" / "kybernate"), "--store", f"file://{local}"]
    if node is not None:
        cmd += ["--address", str(node.socket), "--namespace", "default"]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KYBERNATE_") and not k.startswith("AWS_")}
    env["KYBERNATE_IMAGE_CACHE"] = str(cache)
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def start_counter(node, cid, mem=64):
    log = node.run_container(cid, ["/usr/bin/counter", "--mem", str(mem), "--file", "/data/state",
                                   "--interval", "100", "--verify-every", "5"])
    wait_count(log, 8)
    return log


def local_image(build_dir, node, local, cache, name, mem=64):
    """A real checkpoint image of a running counter in the local store."""
    start_counter(node, f"c-{name}", mem)
    r = kyb(build_dir, node, local, cache, "checkpoint", f"c-{name}", "--name", name,
            "--leave-running")
    assert r.returncode == 0, r.stderr
    assert (local / name / "manifest.json").is_file()


def cached(cache, host, name=None) -> list:
    d = cache / "oci" / host.replace(":", "_") / REPO
    entries = sorted(e for e in os.listdir(d) if not e.startswith(".")) if d.exists() else []
    return entries if name is None else [e for e in entries if e == name]


def env_for(conf, cache, **more) -> dict:
    e = {"KYBERNATE_CONFIG": str(conf), "KYBERNATE_IMAGE_CACHE": str(cache)}
    e.update({k: str(v) for k, v in more.items()})
    return e


# ------------------------------------------------------------------ the must-show

def test_checkpoint_push_restore_through_uploader(build_dir, make_node, registry, tmp_path):
    local, cache = tmp_path / "local", tmp_path / "cache"
    store = registry.store_uri(REPO)
    conf = node_conf(tmp_path, local, store)
    node = make_node("u", env=env_for(conf, cache))
    with Uploader(build_dir, tmp_path / "up", env=env_for(conf, cache)) as up:
        old_log = start_counter(node, "counter")
        r = kyb(build_dir, node, local, cache, "--uploader", up.socket, "--json", "checkpoint",
                "counter", "--name", "img1", "--to", store)
        assert r.returncode == 0, r.stderr + up.log_tail()
        out = json.loads(r.stdout)
        assert out["ref"] == f"{store}:img1"
        job = up.job(out["uploadJob"])
        assert job["op"] == "upload" and job["state"] == "done", job
        assert job["source"] == f"file://{local}/img1"
        assert job["result"]["ref"] == f"{store}:img1"
        assert job["result"]["digest"] == out["digest"]
        p = job["progress"]
        assert p["bytesDone"] == p["bytesTotal"] == job["result"]["size"] > 64 * MIB
        assert registry.tags(REPO) == ["img1"]
        # The local copy is gone once pushed; the node cache holds nothing.
        assert not (local / "img1").exists()
        assert cached(cache, registry.host) == []

        ls = kyb(build_dir, node, local, cache, "--uploader", up.socket, "--json", "images", "ls",
                 store)
        assert ls.returncode == 0, ls.stderr
        assert [i["name"] for i in json.loads(ls.stdout)] == ["img1"]

        new_log = node.logs_dir / "restored.log"
        r = kyb(build_dir, node, local, cache, "--uploader", up.socket, "restore",
                f"{store}:img1", "--name", "restored", "--log", new_log, "--runc-root",
                node.runc_root)
        assert r.returncode == 0, r.stderr + up.log_tail()
        cid, pid = r.stdout.split()
        assert cid == "restored"
        assert_goes_on(old_log, new_log, int(pid), "restored", checksum_of(old_log))
        fetches = [j for j in up.request("GET", "/v1/jobs")[1]["jobs"] if j["op"] == "fetch"]
        assert len(fetches) == 1 and fetches[0]["state"] == "done", fetches
        assert fetches[0]["result"]["path"] == str(
            cache / "oci" / registry.host.replace(":", "_") / REPO / "img1")
        assert cached(cache, registry.host) == ["img1"]
        assert up.stop() == 0


# ------------------------------------------------------------------ credentials

def test_credentials_only_in_the_uploader(build_dir, make_node, tmp_path, root):
    local, cache = tmp_path / "local", tmp_path / "cache"
    with Registry(auth="basic", users={"alice": "s3cret"}) as reg:
        store = reg.store_uri(REPO)
        conf = node_conf(tmp_path, local, store)
        node = make_node("a", env=env_for(conf, cache))
        local_image(build_dir, node, local, cache, "img", mem=8)
        nocreds = tmp_path / "none.json"
        nocreds.write_text("{}")

        with Uploader(build_dir, tmp_path / "up0",
                      env=env_for(conf, cache, KYBERNATE_REGISTRY_AUTH=nocreds)) as up:
            st, job, hdrs = up.post_job({"op": "upload", "image": "img", "to": store})
            assert st == 202, job
            assert hdrs["Location"] == f"/v1/jobs/{job['id']}"
            j = up.wait_job(job["id"])
            assert j["state"] == "failed", j
            msg = j["error"]["message"]
            assert "HTTP 401 Unauthorized" in msg, msg
            assert f"registry {reg.host} refused access" in msg, msg
            assert j["error"]["errnoName"] == "EACCES"
            assert j["attempt"] == 1, "a refusal is not retried"
            assert reg.tags(REPO) == []

        creds = auth_file(tmp_path, reg.host, "alice", "s3cret")
        with Uploader(build_dir, tmp_path / "up1",
                      env=env_for(conf, cache, KYBERNATE_REGISTRY_AUTH=creds)) as up:
            st, job, _ = up.post_job({"op": "upload", "image": f"file://{local}/img",
                                      "to": store + "/"})
            assert st == 202, job
            j = up.wait_job(job["id"])
            assert j["state"] == "done", j
            assert reg.tags(REPO) == ["img"]
            # The CLI holds no credentials: on its own the registry refuses it ...
            r = kyb(build_dir, node, local, cache, "images", "ls", store)
            assert r.returncode == 1 and "HTTP 401" in r.stderr, r.stdout + r.stderr
            # ... through the uploader it lists, fetches and verifies.
            r = kyb(build_dir, node, local, cache, "--uploader", up.socket, "images", "ls", store)
            assert r.returncode == 0, r.stderr
            assert "img" in r.stdout and "c-img" in r.stdout and "unusable" not in r.stdout, r.stdout
            r = kyb(build_dir, node, local, cache, "--uploader", up.socket, "images", "verify",
                    f"{store}:img")
            assert r.returncode == 0 and "img: ok" in r.stdout, r.stderr
            assert cached(cache, reg.host) == ["img"]


# ------------------------------------------------------------------ killed midway

def test_killed_mid_upload_then_resubmitted(build_dir, make_node, registry, tmp_path):
    local, cache = tmp_path / "local", tmp_path / "cache"
    proxy = Proxy(registry.port, 4 * MIB, "stall")
    try:
        store = f"oci://{proxy.host}/{REPO}"
        conf = node_conf(tmp_path, local, store, registry.store_uri(REPO))
        node = make_node("k", env=env_for(conf, cache))
        local_image(build_dir, node, local, cache, "img")
        up = Uploader(build_dir, tmp_path / "up", env=env_for(conf, cache)).start()
        st, job, _ = up.post_job({"op": "upload", "image": "img", "to": store})
        assert st == 202, job

        def stalled(j):
            return proxy.tripped.is_set() and j["progress"]["bytesDone"] > 0
        j = up.wait_job(job["id"], until=stalled)
        p = j["progress"]
        assert j["state"] == "running", j
        assert 0 < p["bytesDone"] < p["bytesTotal"], p
        assert p["part"], p
        assert registry.upload_dirs(REPO), "no upload session in progress"
        up.kill()
        assert registry.tags(REPO) == [], "a half push became visible"

        proxy.heal()
        up = Uploader(build_dir, tmp_path / "up", env=env_for(conf, cache)).start()
        st, job2, _ = up.post_job({"op": "upload", "image": "img", "to": store})
        assert st == 202 and job2["id"] != job["id"], job2
        j2 = up.wait_job(job2["id"])
        assert j2["state"] == "done", j2
        assert j2["progress"]["bytesDone"] == j2["progress"]["bytesTotal"] > 64 * MIB
        assert registry.tags(REPO) == ["img"]
        assert up.stop() == 0

        # Fetched back into a fresh cache by another daemon: every file verified.
        cache2 = tmp_path / "cache2"
        with Uploader(build_dir, tmp_path / "up2", env=env_for(conf, cache2)) as up2:
            st, f, _ = up2.post_job({"op": "fetch", "ref": f"{registry.store_uri(REPO)}:img"})
            assert st == 202, f
            f = up2.wait_job(f["id"])
            assert f["state"] == "done", f
            path = Path(f["result"]["path"])
            assert path == cache2 / "oci" / registry.host.replace(":", "_") / REPO / "img"
            assert f["result"]["size"] == j2["result"]["size"]
            assert f["result"]["digest"] == j2["result"]["digest"]
            r = kyb(build_dir, None, path.parent, cache2, "images", "verify", "img")
            assert r.returncode == 0 and "img: ok" in r.stdout, r.stderr
    finally:
        proxy.close()


def test_sigterm_stops_a_running_job(build_dir, make_node, registry, tmp_path):
    local, cache = tmp_path / "local", tmp_path / "cache"
    proxy = Proxy(registry.port, 4 * MIB, "stall")
    try:
        store = f"oci://{proxy.host}/{REPO}"
        conf = node_conf(tmp_path, local, store)
        node = make_node("t", env=env_for(conf, cache))
        local_image(build_dir, node, local, cache, "img", mem=16)
        up = Uploader(build_dir, tmp_path / "up", env=env_for(conf, cache),
                      args=["--grace", "3"]).start()
        st, job, _ = up.post_job({"op": "upload", "image": "img", "to": store})
        assert st == 202
        up.wait_job(job["id"], until=lambda j: proxy.tripped.is_set())
        # A cancel reaches the request stalled at the proxy.
        st, doc, _ = up.request("DELETE", f"/v1/jobs/{job['id']}")
        assert st == 202 and doc["cancelRequested"], doc
        c = up.wait_job(job["id"], timeout=60)
        assert c["state"] == "cancelled" and c["error"]["errnoName"] == "ECANCELED", c
        # Again, and this time the daemon is told to stop.
        st, job, _ = up.post_job({"op": "upload", "image": "img", "to": store})
        assert st == 202, job
        up.wait_job(job["id"], until=lambda j: j["state"] == "running")
        up.proc.send_signal(signal.SIGTERM)
        st, health, _ = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(
            up.request("GET", "/healthz")), 30, "/healthz to answer 503")
        assert health["status"] == "stopping"
        st, doc, hdrs = up.post_job({"op": "upload", "image": "img", "to": store + "x"})
        assert st == 503 and "stopping" in doc["error"]["message"], doc
        assert hdrs.get("Retry-After") == "30"
        assert up.proc.wait(timeout=120) == 0, up.log_tail()
        assert not os.path.exists(up.socket)
        proxy.heal()
        assert registry.tags(REPO) == []
        lines = up.log_lines()  # every line is JSON
        assert all({"time", "level", "program", "module", "msg"} <= set(l) for l in lines)
        assert any("still running after the grace period" in l["msg"] for l in lines), lines
        ended = [l for l in lines if job["id"] in l["msg"] and "cancelled:" in l["msg"]]
        assert ended and "grace period ended" in ended[-1]["msg"], lines[-6:]
        assert lines[-1]["msg"] == "stopped", lines[-3:]
    finally:
        proxy.close()


# ------------------------------------------------------------------ s3://

def test_s3_through_uploader(build_dir, make_node, tmp_path, root):
    from tests.harness.s3 import S3Server, S3ServerError
    local, cache = tmp_path / "local", tmp_path / "cache"
    try:
        s3 = S3Server().start()
    except S3ServerError as e:
        pytest.fail(f"S3 test server: {e}", pytrace=False)
    try:
        store = s3.store_uri("kyb/up")
        conf = node_conf(tmp_path, local, store)
        node = make_node("s", env=env_for(conf, cache))
        local_image(build_dir, node, local, cache, "img", mem=16)
        env = env_for(conf, cache, KYBERNATE_S3_PART_SIZE=5 * MIB, **s3.env())
        with Uploader(build_dir, tmp_path / "up", env=env) as up:
            st, job, _ = up.post_job({"op": "upload", "image": "img", "to": store})
            assert st == 202, job
            j = up.wait_job(job["id"])
            assert j["state"] == "done", j
            assert j["result"]["ref"] == f"{store}/img"
            assert "kyb/up/img/index.json" in s3.keys("kyb/up/")
            r = kyb(build_dir, node, local, cache, "images", "ls", store)
            assert r.returncode == 1 and "no S3 credentials" in r.stderr, r.stderr
        cache2 = tmp_path / "cache2"
        with Uploader(build_dir, tmp_path / "up2", env=dict(env, KYBERNATE_IMAGE_CACHE=str(cache2))
                      ) as up2:
            st, f, _ = up2.post_job({"op": "fetch", "ref": f"{store}/img"})
            f = up2.wait_job(f["id"])
            assert f["state"] == "done", f
            assert f["result"]["digest"] == j["result"]["digest"]
            path = Path(f["result"]["path"])
            assert str(path).startswith(str(cache2 / "s3"))
            r = kyb(build_dir, None, path.parent, cache2, "images", "verify", "img")
            assert r.returncode == 0 and "img: ok" in r.stdout, r.stderr
            r = kyb(build_dir, None, local, cache2, "--uploader", up2.socket, "images", "ls",
                    store)
            assert r.returncode == 0 and "img" in r.stdout, r.stderr
    finally:
        s3.stop()


# ------------------------------------------------------------------ bad requests

def test_bad_requests(build_dir, tmp_path):
    local = tmp_path / "local"
    conf = node_conf(tmp_path, local)
    with Uploader(build_dir, tmp_path / "up", env=env_for(conf, tmp_path / "cache")) as up:
        def error(st, doc, want_status, needle):
            assert st == want_status, (st, doc)
            assert doc["error"]["status"] == want_status
            assert needle in doc["error"]["message"], doc

        error(*up.request("POST", "/v1/jobs", raw=b"{\"op\": ")[:2], 400, "invalid JSON")
        error(*up.post_job({"op": "copy"})[:2], 400, 'unknown op "copy"')
        error(*up.post_job({"op": "fetch", "ref": "oci://h/r:t", "x": 1})[:2], 400,
              'unknown field "x"')
        error(*up.post_job({"op": "fetch", "ref": "img"})[:2], 400, "not a full reference")
        error(*up.post_job({"op": "upload", "image": "a", "to": "oci://h/r:t"})[:2], 400, '"to"')
        error(*up.post_job({"op": "upload", "image": "file:///etc/a", "to": "oci://h/r"})[:2],
              403, "is not one of this node's stores")
        error(*up.request("POST", "/v1/jobs", raw=b"{" + b" " * (64 * 1024) + b"}")[:2], 413,
              "larger than 65536 bytes")
        error(*up.request("GET", "/v1/jobs/0123456789abcdef0123456789abcdef")[:2], 404, "no job")
        error(*up.request("GET", "/v1/jobs/..%2f..%2fetc")[:2], 404, "no job")
        error(*up.request("GET", "/metrics")[:2], 404, "no such endpoint")
        st, doc, hdrs = up.request("PUT", "/v1/jobs")
        error(st, doc, 405, "PUT is not allowed")
        assert hdrs["Allow"] == "GET, POST"
        # a job that fails at once (no such local image), then a cancel of it: 409
        st, job, _ = up.post_job({"op": "upload", "image": "missing", "to": "oci://127.0.0.1:1/a"})
        assert st == 202
        assert up.wait_job(job["id"])["state"] == "failed"
        error(*up.request("DELETE", f"/v1/jobs/{job['id']}")[:2], 409, "has finished")
        st, doc, _ = up.request("GET", "/v1/jobs")
        assert st == 200 and [j["id"] for j in doc["jobs"]] == [job["id"]]
        assert up.stop() == 0

# SPDX-License-Identifier: Apache-2.0
"""The s3:// store against an S3 server the tests start (issue 5).

The server is moto's (tests/harness/s3.py), a stand-in for Amazon S3 with
IAM authentication on: it verifies every request's SigV4 signature (with
botocore) and refuses a bad one with 403.  It does not check payload hashes
against bodies, request times or TLS (the harness's docstring has the list).

Checked, with real checkpoint images of the counter (root, a harness node):
  - round trip: `kybernate checkpoint --to s3://…` uploads every file as a
    zstd blob named by its digest (a 16 MiB page file goes up as a multipart
    upload of 5 MiB parts and is copied to its digest key), index.json last,
    no temporary key or unfinished upload left; `images ls` shows it;
    `images verify s3://…/name` downloads it into the node cache and every
    file matches; the same name again is refused (EEXIST); `images rm`
    removes every object;
  - the image restored from s3:// into a new container on a node that is
    configured for that store: the counter goes on;
  - a flipped byte in a stored blob (the page file's, the manifest's) is
    detected while downloading, and nothing is published in the cache;
  - an upload killed midway (SIGKILL during the multipart upload) leaves no
    visible image; `images cleanup` removes what it left (S3 parts, the
    unfinished upload, the local staging directory); the retry under the
    same name completes;
  - a killed upload retried under the same name without cleanup resumes:
    every blob the killed attempt completed and the retry needs (its file
    unchanged; the blob memo in the node cache names it) is HEADed, not PUT
    again (the server's request log), every missing blob is PUT once, the
    log says how many were skipped,
    and the image verifies; cleanup then removes only the leftovers of the
    killed attempt (its unfinished multipart upload), not the image;
without a node:
  - a wrong secret or an unknown access key: 403 with S3's code and where the
    credentials came from; credentials from a file (KYBERNATE_S3_CREDENTIALS);
  - listing skips a name without index.json and reports a broken index.
"""

import hashlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.harness.checks import counts, wait_count, wait_for
from tests.harness.s3 import S3Server, S3ServerError

MIB = 1024 * 1024
PART = 5 * MIB


@pytest.fixture(scope="module")
def s3():
    try:
        srv = S3Server().start()
    except S3ServerError as e:
        pytest.fail(f"S3 test server: {e}", pytrace=False)
    yield srv
    srv.stop()


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


@pytest.fixture
def s3env(s3, cache):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and not k.startswith("KYBERNATE_")}
    env.update(s3.env())
    env.update(KYBERNATE_IMAGE_CACHE=str(cache), KYBERNATE_S3_PART_SIZE=str(PART))
    return env


@pytest.fixture
def kyb(build_dir, s3env):
    binary = str(build_dir / "cmd" / "kybernate")

    def run(*args, node=None, env=None, timeout=300):
        cmd = [binary]
        if node is not None:
            cmd += ["--address", str(node.socket), "--namespace", "default"]
        return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                              timeout=timeout, env=env or s3env)

    return run


def kill_midway(s3, s3env, node, build_dir, cid, uri, prefix, name):
    """Starts `kybernate checkpoint` of cid into uri/name and SIGKILLs it once
    a multipart upload (of the page file) has begun."""
    cmd = [str(build_dir / "cmd" / "kybernate"), "--address", str(node.socket), "--namespace",
           "default", "checkpoint", cid, "--to", uri, "--name", name, "--leave-running"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=s3env,
                         start_new_session=True)
    try:
        wait_for(lambda: s3.uploads(f"{prefix}/") or p.poll() is not None, 120,
                 "a multipart upload in progress")
        assert p.poll() is None, f"the upload finished before it could be killed: {p.stderr.read()}"
        os.killpg(p.pid, signal.SIGKILL)
    finally:
        p.wait(timeout=30)
        p.stdout.close()
        p.stderr.close()
    assert f"{prefix}/{name}/index.json" not in s3.keys(f"{prefix}/")
    # the killed checkpoint left the task paused: resume it for the retry
    if node.tasks().get(cid, (None, None))[1] == "PAUSED":
        node.ctr("tasks", "resume", cid)


def start_counter(node, cid, mem):
    log = node.run_container(cid, ["/usr/bin/counter", "--mem", str(mem), "--file",
                                   "/data/state", "--interval", "100", "--verify-every", "5"])
    wait_for(lambda: "memory filled" in Path(log).read_text(errors="replace"), 60,
             f"'memory filled' in {log}")
    wait_count(log, 3)
    return log


def checkpoint(kyb, node, cid, uri, name, *extra):
    r = kyb("checkpoint", cid, "--to", uri, "--name", name, *extra, node=node)
    assert r.returncode == 0, f"checkpoint failed: {r.stderr}"
    assert r.stdout.strip() == f"{uri}/{name}"
    return r


def index_of(s3, prefix, name) -> dict:
    return json.loads(s3.get(f"{prefix}/{name}/index.json"))


def assert_nothing_cached(cache: Path, name: str):
    """No image `name` and no staging directory anywhere in the node cache."""
    found = [str(p) for p in cache.rglob("*") if p.is_dir() and
             (p.name == name or p.name.startswith(".staging-"))] if cache.exists() else []
    assert found == [], f"left in the cache: {found}"


# ------------------------------------------------------------------ with a node

def test_round_trip(s3, kyb, node, cache):
    prefix, name = "rt/images", "ctr-1"
    uri = s3.store_uri(prefix)
    start_counter(node, "c1", 16)
    checkpoint(kyb, node, "c1", uri, name, "--leave-running")

    keys = s3.keys(f"{prefix}/{name}/")
    ix = index_of(s3, prefix, name)
    assert ix["kybernateIndex"] == 1 and ix["name"] == name and ix["compression"] == "zstd"
    assert ix["source"]["containerId"] == "c1"
    parts = ix["files"] + [ix["manifest"]]
    assert {f["path"] for f in ix["files"]} >= {"criu/inventory.img", "rootfs-diff.tar"}
    # exactly: index.json and one blob per distinct blob digest, nothing else
    want = {f"{prefix}/{name}/index.json"} | {
        f"{prefix}/{name}/blobs/sha256/{p['blob'][7:]}" for p in parts}
    assert set(keys) == want, set(keys) ^ want
    assert s3.uploads(f"{prefix}/") == [], "an unfinished multipart upload was left"
    # each blob is named by the sha256 of its bytes and has the recorded size
    pages = max(ix["files"], key=lambda f: f["size"])
    assert pages["size"] >= 16 * MIB and pages["blobSize"] > PART, "no multipart upload tested"
    for p in parts:
        data = s3.get(f"{prefix}/{name}/blobs/sha256/{p['blob'][7:]}")
        assert len(data) == p["blobSize"]
        assert "sha256:" + hashlib.sha256(data).hexdigest() == p["blob"]

    r = kyb("images", "ls", uri)
    assert r.returncode == 0, r.stderr
    assert name in r.stdout and "c1" in r.stdout
    r = kyb("--json", "images", "ls", uri)
    assert [i["name"] for i in json.loads(r.stdout)] == [name]

    # download into the node cache, every file checked
    r = kyb("images", "verify", f"{uri}/{name}")
    assert r.returncode == 0, r.stderr
    local = next(cache.rglob(f"{name}/manifest.json")).parent
    m = json.loads((local / "manifest.json").read_text())
    assert [(f["path"], f["size"], "sha256:" + f["sha256"]) for f in m["files"]] == \
        [(f["path"], f["size"], f["digest"]) for f in ix["files"]]
    for f in m["files"]:
        assert hashlib.sha256((local / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    assert oct(local.stat().st_mode & 0o777) == "0o700"
    assert not list(cache.rglob(".staging-*"))

    # no overwrite
    r = kyb("checkpoint", "c1", "--to", uri, "--name", name, "--leave-running", node=node)
    assert r.returncode == 1 and "already exists" in r.stderr, r.stderr
    assert set(s3.keys(f"{prefix}/{name}/")) == want

    r = kyb("images", "rm", f"{uri}/{name}")
    assert r.returncode == 0, r.stderr
    assert s3.keys(f"{prefix}/") == {}
    r = kyb("images", "verify", f"{uri}/{name}")
    assert r.returncode == 1 and f"no image {name} in {uri}" in r.stderr, r.stderr


def test_restore_from_s3(s3, s3env, kyb, make_node, cache, tmp_path):
    """Checkpoint into s3://, restore from s3:// into a new container: the
    counter goes on (kybernate-runc downloads through the node's cache)."""
    prefix, name = "restore", "ctr-r"
    uri = s3.store_uri(prefix)
    conf = tmp_path / "kybernate.json"
    conf.write_text(json.dumps({"defaultStore": f"file://{tmp_path / 'store'}",
                                "stores": [uri]}))
    env = {k: v for k, v in s3env.items() if k.startswith(("AWS_", "KYBERNATE_"))}
    env["KYBERNATE_CONFIG"] = str(conf)
    rnode = make_node("s3r", env=env)
    old = start_counter(rnode, "old", 16)
    checkpoint(kyb, rnode, "old", uri, name)
    last = counts(old)[-1]
    new_log = tmp_path / "new.log"
    r = kyb("restore", f"{uri}/{name}", "--name", "new", "--log", new_log, "--runc-root",
            rnode.runc_root, node=rnode, env=dict(s3env, KYBERNATE_CONFIG=str(conf)))
    assert r.returncode == 0, f"restore failed: {r.stderr}"
    after = wait_count(new_log, last + 5)
    assert after[0] == last + 1, f"restored counter started at {after[0]}, stopped at {last}"
    assert "memory filled" not in new_log.read_text(), "started fresh, not restored"


def test_flipped_byte_detected(s3, kyb, node, cache):
    prefix = "flip"
    uri = s3.store_uri(prefix)
    start_counter(node, "c2", 8)
    checkpoint(kyb, node, "c2", uri, "pages", "--leave-running")
    checkpoint(kyb, node, "c2", uri, "manifest", "--leave-running")

    def flip(name, part):
        key = f"{prefix}/{name}/blobs/sha256/{part['blob'][7:]}"
        data = bytearray(s3.get(key))
        data[len(data) // 2] ^= 0x01
        s3.put(key, bytes(data))

    ix = index_of(s3, prefix, "pages")
    big = max(ix["files"], key=lambda f: f["size"])
    flip("pages", big)
    r = kyb("images", "verify", f"{uri}/pages")
    assert r.returncode == 1
    # zstd's frame checksum or the blob digest catches it, naming the file
    assert big["path"] in r.stderr and "(Bad message)" in r.stderr, r.stderr
    assert "corrupt blob" in r.stderr or "digest mismatch" in r.stderr, r.stderr
    assert_nothing_cached(cache, "pages")

    flip("manifest", index_of(s3, prefix, "manifest")["manifest"])
    r = kyb("images", "verify", f"{uri}/manifest")
    assert r.returncode == 1 and "manifest.json" in r.stderr, r.stderr
    assert "(Bad message)" in r.stderr, r.stderr
    assert_nothing_cached(cache, "manifest")


def test_killed_upload_then_retry(s3, s3env, kyb, node, build_dir, cache):
    prefix, name = "killed", "ctr-k"
    uri = s3.store_uri(prefix)
    start_counter(node, "c3", 64)
    cmd = [str(build_dir / "cmd" / "kybernate"), "--address", str(node.socket), "--namespace",
           "default", "checkpoint", "c3", "--to", uri, "--name", name, "--leave-running"]
    kill_midway(s3, s3env, node, build_dir, "c3", uri, prefix, name)
    r = kyb("images", "ls", uri)
    assert r.returncode == 0 and name not in r.stdout, r.stdout + r.stderr
    r = kyb("images", "verify", f"{uri}/{name}")
    assert r.returncode == 1 and f"no image {name}" in r.stderr, r.stderr

    # what it left: parts in S3 (an unfinished multipart upload, blobs) and
    # its staging directory in the spool; cleanup removes them all
    assert s3.uploads(f"{prefix}/") or s3.keys(f"{prefix}/")
    assert list((cache / "spool").glob(".staging-*")), "no staging dir left to clean up"
    r = kyb("images", "cleanup", "--min-age", "0", uri)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[1]) >= 2, r.stdout  # the S3 leftovers and the staging dir
    assert s3.uploads(f"{prefix}/") == [] and s3.keys(f"{prefix}/") == {}
    assert not list((cache / "spool").glob(".staging-*"))

    # the retry: the blob memo names blobs that cleanup removed; they are
    # uploaded again
    checkpoint(kyb, node, "c3", uri, name, "--leave-running")
    r = kyb("images", "verify", f"{uri}/{name}")
    assert r.returncode == 0, r.stderr


def test_killed_upload_resumed(s3, s3env, kyb, node, build_dir, cache):
    prefix, name = "resumed", "ctr-r"
    uri = s3.store_uri(prefix)
    blobs = f"{prefix}/{name}/blobs/sha256/"
    start_counter(node, "c5", 64)
    kill_midway(s3, s3env, node, build_dir, "c5", uri, prefix, name)
    done = set(s3.keys(blobs))
    assert done, "no blob was complete when the upload was killed"
    assert list((cache / "oci" / "blobs").iterdir()), "no blob memo written"
    seen = len(s3.requests())

    # the retry, no cleanup in between: a new checkpoint of the same counter
    r = kyb("checkpoint", "c5", "--to", uri, "--name", name, "--leave-running", node=node,
            env=dict(s3env, KYBERNATE_LOG_LEVEL="info"))
    assert r.returncode == 0, f"checkpoint failed: {r.stderr}"
    sent = s3.requests()[seen:]
    idx = index_of(s3, prefix, name)
    needed = {blobs + e["blob"][7:] for e in idx["files"] + [idx["manifest"]]}
    reused = done & needed
    # files that did not change between the two checkpoints (most small
    # CRIU files) have the same blob
    assert reused, f"the retry needs none of the killed attempt's blobs: {sorted(done)}"
    puts = {k for m, k, _ in sent if m == "PUT"}
    heads = {k for m, k, _ in sent if m == "HEAD"}
    assert not reused & puts, f"sent again: {sorted(reused & puts)}"
    assert reused <= heads, f"not checked: {sorted(reused - heads)}"
    # every missing blob went up exactly once (a large one by a copy: also a PUT)
    blob_puts = Counter(k for m, k, q in sent if m == "PUT" and k.startswith(blobs) and not q)
    assert blob_puts == Counter(needed - done), blob_puts
    # skipped, per file in upload order: the killed attempt's blobs, and a
    # file identical to one uploaded before it in this attempt
    skipped, have = [], set(done)
    for e in idx["files"]:
        k = blobs + e["blob"][7:]
        if k in have:
            skipped.append(e)
        have.add(k)
    nbytes = sum(e["blobSize"] for e in skipped)
    assert f"resumed: {len(skipped)} of {len(idx['files'])} blobs ({nbytes} bytes)" in r.stderr, \
        r.stderr
    assert needed <= set(s3.keys(blobs))

    r = kyb("images", "verify", f"{uri}/{name}")
    assert r.returncode == 0, r.stderr
    # what the killed attempt left beside the image: its unfinished multipart
    # upload; cleanup removes it and keeps the image (and its blobs)
    r = kyb("images", "cleanup", "--min-age", "0", uri)
    assert r.returncode == 0, r.stderr
    assert s3.uploads(f"{prefix}/") == []
    assert needed <= set(s3.keys(blobs))
    r = kyb("images", "verify", f"{uri}/{name}")
    assert r.returncode == 0, r.stderr
    r = kyb("images", "rm", f"{uri}/{name}")
    assert r.returncode == 0, r.stderr
    assert s3.keys(f"{prefix}/") == {}


# ------------------------------------------------------------------ without a node

def test_wrong_credentials_refused(s3, s3env, kyb, tmp_path):
    uri = s3.store_uri("creds")
    r = kyb("images", "ls", uri, env=dict(s3env, AWS_SECRET_ACCESS_KEY="wrong-secret"))
    assert r.returncode == 1
    assert "HTTP 403 SignatureDoesNotMatch" in r.stderr, r.stderr
    assert "credentials: environment" in r.stderr, r.stderr
    assert "wrong-secret" not in r.stderr
    r = kyb("images", "ls", uri, env=dict(s3env, AWS_ACCESS_KEY_ID="AKIAUNKNOWN0000000000"))
    assert r.returncode == 1 and "HTTP 403 InvalidAccessKeyId" in r.stderr, r.stderr

    # the same credentials from a file, as a Kubernetes secret mounts them
    creds = tmp_path / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = {s3.access_key}\n"
                     f"aws_secret_access_key = {s3.secret_key}\n")
    env = {k: v for k, v in s3env.items() if not k.startswith("AWS_")}
    r = kyb("images", "ls", uri, env=dict(env, KYBERNATE_S3_CREDENTIALS=str(creds)))
    assert r.returncode == 0, r.stderr
    creds.write_text(f"[default]\naws_access_key_id = {s3.access_key}\n"
                     "aws_secret_access_key = not-it\n")
    r = kyb("images", "ls", uri, env=dict(env, KYBERNATE_S3_CREDENTIALS=str(creds)))
    assert r.returncode == 1 and f"credentials: file {creds}" in r.stderr, r.stderr
    r = kyb("images", "ls", uri, env=env)
    assert r.returncode == 1 and "no S3 credentials" in r.stderr, r.stderr


def test_list_skips_unpublished(s3, kyb):
    prefix = "listing"
    uri = s3.store_uri(prefix)
    blob = "0" * 64
    s3.put(f"{prefix}/half-done/blobs/sha256/{blob}", b"x")  # no index.json: not an image
    s3.put(f"{prefix}/Not_A_Name/index.json", b"{}")  # not an image name: not ours
    s3.put(f"{prefix}/broken/index.json", b"{\"kybernateIndex\": 1}")
    r = kyb("--json", "images", "ls", uri)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert [i["name"] for i in got] == ["broken"]
    assert "index.json of broken" in got[0]["error"]

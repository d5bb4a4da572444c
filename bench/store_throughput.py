#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Upload and download throughput of kybernate's remote stores (oci://
against a registry, s3:// against an S3 stand-in) next to plain `curl`
moving the same bytes to the same server, in the same run.

On one private test node (tests/harness) each workload is checkpointed with
`kybernate checkpoint --to file://DIR` (a real CRIU image); the node is then
stopped.  A private registry (tests/harness/registry.py: Debian's
docker-registry) and a private S3 stand-in (tests/harness/s3.py: moto's S3
server, SigV4 checked) are started on loopback, and per round, per store:

  kybernate push   kyb-store-bench push IMAGE oci://…|s3://… (bench/store_bench.c:
                   kyb_store_stage + kyb_store_put of the existing image: layout
                   check, zstd + sha256 of every file while it is read, upload
                   (oci: POST + PATCH 16 MiB + PUT per blob, then the manifest;
                   s3: multipart 16 MiB parts + server-side copy per blob, then
                   index.json)); timed from the outside, minus the hard links
                   that put the files into the staging directory
  curl push        the same files, uncompressed, one request each, two curl
                   processes for oci (POST /v2/<repo>/blobs/uploads/ for every
                   file, then PUT <location>&digest=sha256:… -T FILE), one for s3
                   (PUT -T FILE, --aws-sigv4 with x-amz-content-sha256 = the
                   file's sha256, computed beforehand), transfers joined with
                   --next (one connection)
  kybernate pull   kyb-store-bench pull URI NAME: kyb_store_get_path into a
                   fresh node cache (KYBERNATE_IMAGE_CACHE): download, unzstd,
                   blob and file sha256 checked on the way, fsync, atomic publish
  kybernate verify `kybernate images verify REF` into a fresh cache: the same
                   download plus kyb_image_verify (every file hashed once more)
  curl pull        GET of every blob/object curl uploaded, -o into a fresh
                   directory (one curl process); the fsync of the files after it
                   is timed apart

`push` and `pull` alternate which method goes first every round.  MB/s are of
the image's bytes (its files uncompressed: what curl moves), 10^6 bytes/s.
For reference the run also times kyb-pack-bench (bench/pack_bench.c) packing
and unpacking the same files with the stores' settings (zstd level 3, one
worker per CPU): zstd + sha256 with no network.

Workloads: `counter --mem M` (xorshift64 memory: incompressible) and busybox
`awk` holding many strings (a compressible heap; --awk-entries 0 skips it).

Run as root from the repo (needs a build dir with bench/kyb-store-bench and
bench/kyb-pack-bench, docker-registry, moto and curl >= 7.75):
    sudo /usr/bin/python3 bench/store_throughput.py [--build-dir build-x] [--mem 512]
        [--awk-entries 1500000] [--rounds 3] [--results bench/results]
Prints the results and writes bench/results/store-throughput-<date>.md.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.benchlib import machine, make_images, publish, tool_version  # noqa: E402
from tests.harness import default_build_dir, tool_path  # noqa: E402
from tests.harness.node import Node  # noqa: E402
from tests.harness.registry import REGISTRY_BIN, Registry  # noqa: E402
from tests.harness.s3 import REGION, S3Server, find_moto_python  # noqa: E402

MIB = 1024 * 1024
MB = 1000 * 1000
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
METHODS = ("kybernate push", "kybernate push-1part", "curl push", "kybernate pull",
           "kybernate verify", "curl pull")
ONE_PART = 1 << 30  # KYBERNATE_S3_PART_SIZE for push-1part: one PUT per blob up to 1 GiB


def sh(*cmd, timeout=600) -> str:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    return (r.stdout or r.stderr).strip()


def run(cmd, env=None, timeout=1800):
    """(wall seconds, stdout) of one command that must succeed."""
    cmd = [str(c) for c in cmd]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit(f"failed (rc {r.returncode}): {shlex.join(cmd[:6])} ...\n"
                         f"{(r.stderr or r.stdout)[-3000:]}")
    return dt, r.stdout


def children_cpu() -> float:
    """User + system seconds of this process's waited-for children so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def proc_cpu(pid: int) -> float:
    """User + system seconds of a running process (the servers)."""
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while True:
            b = fh.read(MIB)
            if not b:
                return h.hexdigest()
            h.update(b)


def image_files(image: Path) -> list:
    man = json.loads((image / "manifest.json").read_text())
    return [image / f["path"] for f in man["files"]] + [image / "manifest.json"]


def codes(out: str, want: str, what: str) -> None:
    got = out.split()
    if not got or any(c != want for c in got):
        raise SystemExit(f"{what}: HTTP status {got}, wanted {want} for every request")


# ---------------------------------------------------------------- curl
def curl_oci_push(reg: Registry, repo: str, files: list, digests: list) -> float:
    t0 = time.monotonic()
    cmd = ["curl", "-sS"]
    for i, _ in enumerate(files):
        cmd += (["--next"] if i else []) + [
            "-X", "POST", "-o", "/dev/null", "-w", "%{http_code} %header{location}\n",
            f"{reg.url}/v2/{repo}/blobs/uploads/"]
    _, out = run(cmd)
    locs = []
    for line in out.splitlines():
        code, _, loc = line.partition(" ")
        if code != "202" or not loc:
            raise SystemExit(f"blob upload POST: {line!r}")
        locs.append(urllib.parse.urljoin(reg.url + "/", loc.strip()))
    cmd = ["curl", "-sS"]
    for i, (f, d, loc) in enumerate(zip(files, digests, locs)):
        sep = "&" if "?" in loc else "?"
        cmd += (["--next"] if i else []) + [
            "-T", f, "-H", "Content-Type: application/octet-stream", "-H", "Expect:",
            "-o", "/dev/null", "-w", "%{http_code}\n", f"{loc}{sep}digest=sha256:{d}"]
    _, out = run(cmd)
    dt = time.monotonic() - t0
    codes(out, "201", "blob upload PUT")
    return dt


def curl_oci_pull(reg: Registry, repo: str, digests: list, out_dir: Path) -> float:
    cmd = ["curl", "-sS"]
    for i, d in enumerate(digests):
        cmd += (["--next"] if i else []) + [
            "-L", "-o", out_dir / str(i), "-w", "%{http_code}\n",
            f"{reg.url}/v2/{repo}/blobs/sha256:{d}"]
    dt, out = run(cmd)
    codes(out, "200", "blob GET")
    return dt


def s3_args(s3: S3Server, sha: str) -> list:
    # No "-H Expect:" here (curl 7.88 signs the header it was told to drop,
    # and moto refuses the signature); moto answers the 100-continue at once.
    return ["--aws-sigv4", f"aws:amz:{REGION}:s3", "--user", f"{s3.access_key}:{s3.secret_key}",
            "-H", f"x-amz-content-sha256: {sha}"]


def curl_s3_push(s3: S3Server, prefix: str, files: list, digests: list) -> float:
    cmd = ["curl", "-sS"]
    for i, (f, d) in enumerate(zip(files, digests)):
        cmd += (["--next"] if i else []) + s3_args(s3, d) + [
            "-T", f, "-H", "Content-Type: application/octet-stream", "-o", "/dev/null",
            "-w", "%{http_code}\n", f"{s3.endpoint}/{s3.bucket}/{prefix}/{i}"]
    dt, out = run(cmd)
    codes(out, "200", "S3 PUT")
    return dt


def curl_s3_pull(s3: S3Server, prefix: str, n: int, out_dir: Path) -> float:
    cmd = ["curl", "-sS"]
    for i in range(n):
        cmd += (["--next"] if i else []) + s3_args(s3, EMPTY_SHA256) + [
            "-o", out_dir / str(i), "-w", "%{http_code}\n",
            f"{s3.endpoint}/{s3.bucket}/{prefix}/{i}"]
    dt, out = run(cmd)
    codes(out, "200", "S3 GET")
    return dt


def curl_s3_delete(s3: S3Server, prefix: str, n: int) -> None:
    cmd = ["curl", "-sS"]
    for i in range(n):
        cmd += (["--next"] if i else []) + s3_args(s3, EMPTY_SHA256) + [
            "-X", "DELETE", "-o", "/dev/null", "-w", "%{http_code}\n",
            f"{s3.endpoint}/{s3.bucket}/{prefix}/{i}"]
    _, out = run(cmd)
    codes(out, "204", "S3 DELETE")


def fsync_all(d: Path) -> float:
    t0 = time.monotonic()
    for p in sorted(d.iterdir()):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return time.monotonic() - t0


def check_download(out_dir: Path, files: list) -> None:
    for i, f in enumerate(files):
        if (out_dir / str(i)).stat().st_size != f.stat().st_size:
            raise SystemExit(f"curl download of {f.name}: wrong size")


# ---------------------------------------------------------------- kybernate
def kyb_env(extra: dict, cache: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KYBERNATE_", "AWS_"))}
    env.update(extra)
    env["KYBERNATE_IMAGE_CACHE"] = str(cache)
    return env


def kyb_push(tool: Path, image: Path, uri: str, env: dict):
    dt, out = run([tool, "push", image, uri], env=env)
    r = json.loads(out)
    return dt - r["place_s"], r


def kyb_pull(tool: Path, uri: str, name: str, env: dict):
    dt, out = run([tool, "pull", uri, name], env=env)
    return dt, json.loads(out)


def kyb_verify(kyb: Path, ref: str, env: dict) -> float:
    dt, _ = run([kyb, "images", "verify", ref], env=env)
    return dt


def pack_reference(tool: Path, files: list, blobs: Path) -> dict:
    """kyb-pack-bench with the stores' settings (level 0 = default, threads 0 =
    one per CPU): pack (blob written aside, its write time not counted) and
    unpack to /dev/null, summed over the image."""
    pack = unpack = cpu = 0.0
    blob_total = 0
    for k, f in enumerate(files):
        _, out = run([tool, "pack", f, 0, 0, blobs / f"{k}.zst"])
        r = json.loads(out)
        pack += r["wall_s"] - r["sink_s"]
        cpu += r["cpu_s"]
        blob_total += r["blob_size"]
        _, out = run([tool, "unpack", blobs / f"{k}.zst", r["blob_digest"], r["file_digest"],
                      r["file_size"]])
        unpack += json.loads(out)["wall_s"]
        (blobs / f"{k}.zst").unlink()
    return {"pack": pack, "unpack": unpack, "pack_cpu": cpu, "blob": blob_total}


# ---------------------------------------------------------------- the run
def methods(kind: str) -> tuple:
    """push-1part: s3:// only (oci:// has no part size)."""
    return tuple(m for m in METHODS if kind == "s3" or m != "kybernate push-1part")


def bench_image(name: str, image: Path, ctx: dict, rounds: int) -> dict:
    reg, s3, work = ctx["reg"], ctx["s3"], ctx["work"]
    files = image_files(image)
    digests = [sha256_file(f) for f in files]  # also warms the page cache
    total = sum(f.stat().st_size for f in files)
    img_name = json.loads((image / "manifest.json").read_text())["name"]
    res = {"files": len(files), "total": total, "loadavg": [],
           "t": {k: {m: [] for m in methods(k)} for k in ("oci", "s3")},
           "ccpu": {k: {m: [] for m in methods(k)} for k in ("oci", "s3")},
           "scpu": {k: {m: [] for m in methods(k)} for k in ("oci", "s3")},
           "fsync": {"oci": [], "s3": []},
           "wire": {}, "pack": []}
    for r in range(rounds):
        res["loadavg"].append(os.getloadavg()[0])
        for kind in ("oci", "s3"):
            t = res["t"][kind]
            server = reg.proc.pid if kind == "oci" else s3.proc.pid
            if kind == "oci":
                uri = reg.store_uri(f"bench/{name}-kyb-r{r}")
                ref = f"{uri}:{img_name}"
                curl_repo = f"bench/{name}-curl-r{r}"
                extra = {}
            else:
                uri = s3.store_uri(f"kyb-r{r}-{name}")
                ref = f"{uri}/{img_name}"
                uri1 = s3.store_uri(f"kyb1-r{r}-{name}")
                curl_prefix = f"curl-r{r}-{name}"
                extra = s3.env()
            caches = work / f"cache-{kind}-{name}-r{r}"
            dl = work / f"curl-{kind}-{name}-r{r}"

            def do_kyb_push():
                dt, _ = kyb_push(ctx["store_tool"], image, uri, kyb_env(extra, caches / "push"))
                t["kybernate push"].append(dt)

            def do_kyb_push1():
                dt, _ = kyb_push(ctx["store_tool"], image, uri1,
                                 kyb_env(dict(extra, KYBERNATE_S3_PART_SIZE=str(ONE_PART)),
                                         caches / "push1"))
                t["kybernate push-1part"].append(dt)

            def do_curl_push():
                if kind == "oci":
                    t["curl push"].append(curl_oci_push(reg, curl_repo, files, digests))
                else:
                    t["curl push"].append(curl_s3_push(s3, curl_prefix, files, digests))

            def do_kyb_pull():
                dt, _ = kyb_pull(ctx["store_tool"], uri, img_name,
                                 kyb_env(extra, caches / "pull"))
                t["kybernate pull"].append(dt)

            def do_kyb_verify():
                t["kybernate verify"].append(
                    kyb_verify(ctx["kyb"], ref, kyb_env(extra, caches / "verify")))

            def do_curl_pull():
                dl.mkdir()
                if kind == "oci":
                    dt = curl_oci_pull(reg, curl_repo, digests, dl)
                else:
                    dt = curl_s3_pull(s3, curl_prefix, len(files), dl)
                t["curl pull"].append(dt)
                res["fsync"][kind].append(fsync_all(dl))
                check_download(dl, files)

            pushes = [do_kyb_push, do_curl_push] + ([do_kyb_push1] if kind == "s3" else [])
            pulls = [do_kyb_pull, do_kyb_verify, do_curl_pull]
            if r % 2:
                pushes.reverse()
                pulls.reverse()
            for f in pushes + pulls:
                os.sync()  # the previous step's dirty pages are not written during this one
                c0, s0 = children_cpu(), proc_cpu(server)
                f()
                c1, s1 = children_cpu(), proc_cpu(server)
                method = {do_kyb_push: "kybernate push", do_curl_push: "curl push",
                          do_kyb_push1: "kybernate push-1part",
                          do_kyb_pull: "kybernate pull", do_kyb_verify: "kybernate verify",
                          do_curl_pull: "curl pull"}[f]
                res["ccpu"][kind][method].append(c1 - c0)
                res["scpu"][kind][method].append(s1 - s0)
            if kind == "oci" and "oci" not in res["wire"]:
                m = reg.manifest(f"bench/{name}-kyb-r{r}", img_name)
                res["wire"]["oci"] = sum(x["size"] for x in m["layers"]) + m["config"]["size"]
            # what the round left: caches, downloads, the S3 objects (moto keeps them in memory)
            shutil.rmtree(caches)
            shutil.rmtree(dl)
            run([ctx["kyb"], "images", "rm", ref], env=kyb_env(extra, work / "cache-rm"))
            if kind == "s3":
                run([ctx["kyb"], "images", "rm", f"{uri1}/{img_name}"],
                    env=kyb_env(extra, work / "cache-rm"))
                curl_s3_delete(s3, curl_prefix, len(files))
        blobs = work / "blobs"
        blobs.mkdir(exist_ok=True)
        res["pack"].append(pack_reference(ctx["pack_tool"], files, blobs))
        line = ", ".join(
            f"{k} {m.split()[0][:3]} {m.split()[1]} {mbs(total, res['t'][k][m][-1])}"
            for k in ("oci", "s3") for m in methods(k))
        print(f"  {name} round {r + 1}: MB/s {line}", flush=True)
    res["loadavg"].append(os.getloadavg()[0])
    return res


def mbs(nbytes: int, seconds: float) -> str:
    x = nbytes / seconds / MB
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


# ---------------------------------------------------------------- report
def versions(build_dir: Path) -> dict:
    v = tool_version
    moto_py = find_moto_python()
    return {
        "kybernate": v(str(build_dir / "cmd" / "kybernate"), "--version"),
        "curl": v("curl", "--version"),
        "libcurl (kybernate)": v("pkg-config", "--modversion", "libcurl"),
        "libzstd": v("pkg-config", "--modversion", "libzstd"),
        "libcrypto (OpenSSL)": v("pkg-config", "--modversion", "libcrypto"),
        "docker-registry": v("dpkg-query", "-W", "-f", "${Version}", "docker-registry"),
        "moto": (v(moto_py, "-c", "import moto, sys; print(moto.__version__, 'python', "
                   "sys.version.split()[0])") if moto_py else "?"),
        "containerd": v("containerd", "--version"),
        "runc": v("runc", "--version"),
        "criu": v("criu", "--version"),
        "python": platform.python_version(),
    }


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def paired(curl: list, kyb: list) -> str:
    """kyb/curl (MB/s) per round: median (min–max)."""
    x = [c / k for c, k in zip(curl, kyb)]
    return f"{med(x):.2f} ({min(x):.2f}–{max(x):.2f})"


def report(results: dict, meta: dict) -> str:
    out = ["# Store throughput: kybernate vs curl, oci:// (registry) and s3:// (moto)", "",
           f"Date: {meta['date']}  ", f"Command: `{meta['command']}`  ",
           f"Rounds: {meta['rounds']}, medians reported; order of the methods flips every "
           "round  ",
           f"Scratch file system (images, node caches, curl downloads, registry storage): "
           f"{meta['fs']}  ",
           f"Load average (1 min) at the start of each round: {meta['loadavg']}", "",
           "## Machine", "",
           f"- `uname -a`: {meta['machine']['uname']}",
           f"- CPU: {meta['machine']['cpu']}, nproc {meta['machine']['nproc']}",
           f"- memory: {meta['machine']['memory']}"]
    out += [f"- {k}: {v}" for k, v in meta["versions"].items()]
    out += ["", "## Servers", "",
            "- registry: Debian's `docker-registry` (distribution), plain http on 127.0.0.1, "
            "filesystem storage, no auth (tests/harness/registry.py)",
            "- S3: **a stand-in**, moto's S3 server (Python, werkzeug) on 127.0.0.1 with IAM "
            "auth on: every request's SigV4 re-computed (tests/harness/s3.py); objects held "
            "in memory. Its speed is moto's, not Amazon S3's.",
            "", "## Workloads", ""] + [f"- `{k}`: {v}" for k, v in meta["workloads"].items()]
    out += ["", "## Methods", "",
            "- `kybernate push`: `kyb-store-bench push` (bench/store_bench.c): kyb_store_open + "
            "stage + put of the existing image (zstd level 3, one worker per CPU; sha256 of "
            "file and blob; oci: POST/PATCH 16 MiB/PUT per blob + manifest; s3: 16 MiB "
            "multipart + server-side copy per blob + index.json); process wall time minus the "
            "hard links into the staging dir",
            f"- `kybernate push-1part` (s3:// only): the same with KYBERNATE_S3_PART_SIZE="
            f"{ONE_PART} (1 GiB): every blob packed into memory, then one PUT, no multipart "
            "upload and no server-side copy",
            "- `curl push`: the image's files uncompressed, one PUT each (`-T FILE`, streamed); "
            "oci: a curl process POSTing an upload for every file, then one PUTting "
            "`<location>&digest=sha256:…`; s3: one curl process, `--aws-sigv4` with "
            "`x-amz-content-sha256` = the file's sha256 (computed before, untimed); "
            "transfers of a process joined with `--next`",
            "- `kybernate pull`: `kyb-store-bench pull`: kyb_store_get_path into a fresh node "
            "cache: download, unzstd, blob + file sha256, fsync, atomic publish",
            "- `kybernate verify`: `kybernate images verify REF` into a fresh cache: the pull "
            "plus kyb_image_verify (every file hashed once more)",
            "- `curl pull`: one curl process GETting every blob/object `curl push` stored, "
            "`-o` into a fresh dir; `+fsync` = the fsync of those files after it (kybernate "
            "fsyncs what it downloads)",
            "- `pack`/`unpack` (reference, no network): kyb-pack-bench with the stores' "
            "settings on the same files (unpack output to /dev/null)",
            "", "## Results", "",
            "MB = 10^6 bytes of the image (its files uncompressed, what curl moves) per "
            "second, median over the rounds. `kyb/curl` = kybernate MB/s ÷ curl MB/s "
            "(below 1: kybernate slower), from the medians; `per round` = the same ratio "
            "taken within each round (kybernate and curl ran seconds apart, under the same "
            "load): median (min–max). CPU: user + system "
            "seconds of the client processes (kybernate with its zstd workers; curl) and of "
            "the server process during the method (registry: docker-registry; S3: moto's "
            "Python process), medians.", ""]
    for name, r in results.items():
        p = r["pack"]
        blob = r["wire"]["oci"]  # the pushed blobs, from the registry's manifest
        out += [f"### `{name}`: {r['files']} files, {r['total'] / MIB:.1f} MiB; zstd ratio "
                f"{r['total'] / blob:.3f} ({blob / MIB:.1f} MiB of blobs sent by kybernate, "
                f"{r['total'] / MIB:.1f} MiB by curl)", "",
                "| store | direction | kybernate | s | MB/s | CPU client / server s | "
                "curl s | curl MB/s | CPU client / server s | kyb/curl | per round |",
                "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for kind in ("oci", "s3"):
            t, cc, sc = r["t"][kind], r["ccpu"][kind], r["scpu"][kind]
            for direction, kms, cm in (("upload", methods(kind)[:-4], "curl push"),
                                       ("download", ("kybernate pull", "kybernate verify"),
                                        "curl pull")):
                c = med(t[cm])
                ccpu = f"{med(cc[cm]):.2f} / {med(sc[cm]):.2f}"
                for km in kms:
                    k = med(t[km])
                    out.append(f"| {kind}:// | {direction} | `{km.split()[1]}` | {k:.3f} | "
                               f"{mbs(r['total'], k)} | {med(cc[km]):.2f} / {med(sc[km]):.2f} | "
                               f"{c:.3f} | {mbs(r['total'], c)} | {ccpu} | "
                               f"{c / k:.2f} | {paired(t[cm], t[km])} |")
            cf = [x + y for x, y in zip(t["curl pull"], r["fsync"][kind])]
            c, k = med(cf), med(t["kybernate pull"])
            out.append(f"| {kind}:// | download | `pull` vs curl + fsync | {k:.3f} | "
                       f"{mbs(r['total'], k)} | | {c:.3f} | {mbs(r['total'], c)} | | "
                       f"{c / k:.2f} | {paired(cf, t['kybernate pull'])} |")
        pk, uk = med([x["pack"] for x in p]), med([x["unpack"] for x in p])
        out += ["",
                f"Reference, no network: pack (zstd + 2× sha256) {pk:.3f} s = "
                f"{mbs(r['total'], pk)} MB/s, CPU {med([x['pack_cpu'] for x in p]):.2f} s; "
                f"unpack (unzstd + 2× sha256) {uk:.3f} s = {mbs(r['total'], uk)} MB/s.", ""]
    out += ["Raw times (s), in round order:", ""]
    for name, r in results.items():
        for kind in ("oci", "s3"):
            for m in methods(kind):
                out.append(f"- {name} {kind} {m}: " +
                           ", ".join(f"{x:.3f}" for x in r["t"][kind][m]))
            for m in methods(kind):
                out.append(f"- {name} {kind} {m} CPU client / server: " +
                           ", ".join(f"{x:.2f} / {y:.2f}" for x, y in
                                     zip(r["ccpu"][kind][m], r["scpu"][kind][m])))
            out.append(f"- {name} {kind} curl download fsync: " +
                       ", ".join(f"{x:.3f}" for x in r["fsync"][kind]))
        out.append(f"- {name} pack / unpack: " +
                   ", ".join(f"{x['pack']:.3f} / {x['unpack']:.3f}" for x in r["pack"]))
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", type=Path, default=default_build_dir())
    ap.add_argument("--mem", type=int, default=512, help="counter memory, MiB (default 512)")
    ap.add_argument("--awk-entries", type=int, default=1500000,
                    help="strings the awk-heap workload holds (default 1500000, ~160 MiB; "
                         "0: no awk-heap image)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work-dir", type=Path, default=Path("/var/tmp"),
                    help="parent of the scratch dir (default /var/tmp)")
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "results",
                    help="where the .md goes ('-' for none)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (containerd, runc and CRIU)")
    build_dir = args.build_dir.resolve()
    kyb = build_dir / "cmd" / "kybernate"
    store_tool = build_dir / "bench" / "kyb-store-bench"
    pack_tool = build_dir / "bench" / "kyb-pack-bench"
    for p in (kyb, store_tool, pack_tool):
        if not p.is_file():
            raise SystemExit(f"{p} missing: meson setup {build_dir} && ninja -C {build_dir}")
    if not Path(REGISTRY_BIN).is_file() or find_moto_python() is None:
        raise SystemExit("needs docker-registry and moto (scripts/setup)")
    os.environ["PATH"] = tool_path()

    node_base = Path(tempfile.mkdtemp(prefix="kyb-bench-", dir="/tmp"))
    work = Path(tempfile.mkdtemp(prefix="kyb-bench-st-", dir=args.work_dir))
    fs = sh("findmnt", "-n", "-o", "FSTYPE,SOURCE,OPTIONS", "-T", work)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "command": "sudo /usr/bin/python3 " + shlex.join(
                [os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
            "rounds": args.rounds, "fs": f"`{fs}` ({args.work_dir})",
            "machine": machine(), "versions": versions(build_dir),
            "workloads": {
                "counter": f"`counter --mem {args.mem} --verify-every 0 --file /data/state "
                           "--interval 100`: its memory is filled from a xorshift64 generator, "
                           "i.e. **pseudo-random, incompressible** pages: zstd cannot shrink "
                           "them, so kybernate moves as many bytes as curl"}}
    if args.awk_entries > 0:
        meta["workloads"]["awk-heap"] = (
            f"busybox `awk` holding {args.awk_entries} strings in an associative array "
            "(as in bench/compression.py): a compressible heap, kybernate moves ~9× fewer "
            "bytes than curl")
    node = Node("storebench", node_base, build_dir)
    reg = s3 = None
    results = {}
    t0 = time.monotonic()
    try:
        node.start()
        images = make_images(node, kyb, work / "store", args.mem, args.awk_entries)
        node.stop()  # nothing runs while timing
        reg = Registry(base_dir=work).start()
        s3 = S3Server().start()
        ctx = {"reg": reg, "s3": s3, "work": work, "kyb": kyb, "store_tool": store_tool,
               "pack_tool": pack_tool}
        for name, image in images.items():
            results[name] = bench_image(name, image, ctx, args.rounds)
            print(f"{name}: {results[name]['files']} files, "
                  f"{results[name]['total'] / MIB:.1f} MiB", flush=True)
    finally:
        node.stop()
        if s3 is not None:
            s3.stop()
        if reg is not None:
            reg.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(node_base, ignore_errors=True)
    meta["loadavg"] = "; ".join(
        f"{n}: " + ", ".join(f"{x:.2f}" for x in r["loadavg"]) for n, r in results.items())
    text = report(results, meta)
    publish(text, args.results, "store-throughput", meta["date"], t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

# SPDX-License-Identifier: Apache-2.0
"""The test images, built without any registry or container tool.

One OCI image layout tarball holds two images that share one layer:

  kybernate.test/busybox:1  busybox-static with applet symlinks, the static
                            test programs in /usr/bin (counter, sleeper),
                            /etc/passwd, /etc/group, /tmp, /data.
                            Cmd: /usr/bin/counter
  kybernate.test/pause:1    the same layer, Entrypoint /usr/bin/sleeper:
                            the CRI sandbox ("pause") image.

The archive is reproducible (fixed mtimes and owners, sorted members,
uncompressed layer) and cached under a content hash of its inputs, so a
second test run imports the same file without rebuilding it.

Each manifest in index.json carries the annotation io.containerd.image.name
with the full reference, which `ctr images import` uses as the image name
(without it ctr would invent "import-<date>" names).

CLI:  python3 -m tests.harness.image [--build-dir DIR] [--cache-dir DIR]
prints the path of the archive.
"""

import argparse
import hashlib
import io
import json
import os
import platform
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import REPO_ROOT, default_build_dir

BUSYBOX_REF = "kybernate.test/busybox:1"
PAUSE_REF = "kybernate.test/pause:1"

# Bump when the image content or layout changes: it is part of the cache key.
FORMAT_VERSION = "3"

# A fixed time for every member and for "created": 2024-01-01T00:00:00Z.
EPOCH = 1704067200
CREATED = "2024-01-01T00:00:00Z"

# $KYB_TEST_BUSYBOX: another busybox-static binary, for hosts without the
# package (the GPU machine: tests/gpu/run-on-device.sh carries one).
BUSYBOX = Path(os.environ.get("KYB_TEST_BUSYBOX") or "/bin/busybox")

APPLETS = sorted("""
    [ ash awk basename cat chmod chown cp cut date dd df dirname du echo env
    expr false find free grep head hostname id kill killall ln ls md5sum mkdir
    mkfifo mktemp mount mv nproc od pidof printf ps pwd readlink realpath rm
    rmdir sed seq sh sha256sum sleep sort stat sync tail tee test timeout top
    touch tr true truncate umount uname uniq usleep wc which xargs yes
""".split())

PROGRAMS = ("counter", "sleeper")

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PASSWD = (b"root:x:0:0:root:/root:/bin/sh\n"
          b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = b"root:x:0:\nnogroup:x:65534:\n"

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True)
class TestImages:
    path: Path  # the OCI layout tarball (both images)
    busybox_ref: str = BUSYBOX_REF
    pause_ref: str = PAUSE_REF

    @property
    def refs(self) -> tuple:
        return (self.busybox_ref, self.pause_ref)


def oci_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _program_paths(build_dir: Path) -> dict:
    progs = {}
    for name in PROGRAMS:
        p = Path(build_dir) / "tests" / "programs" / name
        if not p.is_file():
            raise FileNotFoundError(
                f"test program {p} is missing: build the project first "
                f"(meson setup {build_dir} && ninja -C {build_dir})")
        progs[name] = p
    return progs


def _info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.size = size
    ti.linkname = link
    ti.mtime = EPOCH
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def _write_tar(members: list) -> bytes:
    """members: (TarInfo, bytes|None), written sorted by name."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for ti, data in sorted(members, key=lambda m: m[0].name):
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _layer(progs: dict) -> bytes:
    members = []

    def d(name, mode=0o755):
        members.append((_info(name, tarfile.DIRTYPE, mode), None))

    def f(name, data, mode=0o644):
        members.append((_info(name, tarfile.REGTYPE, mode, len(data)), data))

    for name in ("bin", "dev", "etc", "proc", "sys", "usr", "usr/bin", "var"):
        d(name)
    d("root", 0o700)
    d("tmp", 0o1777)
    d("var/tmp", 0o1777)
    d("data", 0o777)
    f("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    for applet in APPLETS:
        members.append((_info("bin/" + applet, tarfile.SYMTYPE, 0o777, link="busybox"), None))
    for name, path in progs.items():
        f("usr/bin/" + name, path.read_bytes(), 0o755)
    f("etc/passwd", PASSWD)
    f("etc/group", GROUP)
    return _write_tar(members)


def _blob(blobs: dict, data: bytes, media_type: str) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _image(blobs: dict, layer_desc: dict, diff_id: str, ref: str, config: dict) -> dict:
    arch = oci_arch()
    cfg = {
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": dict(config, Env=[PATH_ENV], WorkingDir="/"),
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": CREATED, "created_by": "kybernate tests/harness/image.py"}],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": _blob(blobs, _json(cfg), MT_CONFIG),
        "layers": [layer_desc],
    }
    desc = _blob(blobs, _json(manifest), MT_MANIFEST)
    desc["platform"] = {"architecture": arch, "os": "linux"}
    desc["annotations"] = {
        "io.containerd.image.name": ref,
        "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
    }
    return desc


def _layout(progs: dict) -> bytes:
    blobs = {}
    layer = _layer(progs)
    layer_desc = _blob(blobs, layer, MT_LAYER)
    diff_id = layer_desc["digest"]  # uncompressed: digest == diff_id
    manifests = [
        _image(blobs, layer_desc, diff_id, BUSYBOX_REF, {"Cmd": ["/usr/bin/counter"]}),
        _image(blobs, layer_desc, diff_id, PAUSE_REF, {"Entrypoint": ["/usr/bin/sleeper"]}),
    ]
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests}
    members = [
        (_info("blobs", tarfile.DIRTYPE, 0o755), None),
        (_info("blobs/sha256", tarfile.DIRTYPE, 0o755), None),
    ]
    files = {"oci-layout": _json({"imageLayoutVersion": "1.0.0"}), "index.json": _json(index)}
    for digest, data in blobs.items():
        files["blobs/sha256/" + digest.split(":", 1)[1]] = data
    for name, data in files.items():
        members.append((_info(name, tarfile.REGTYPE, 0o644, len(data)), data))
    return _write_tar(members)


def _cache_key(progs: dict) -> str:
    h = hashlib.sha256()
    h.update(f"format {FORMAT_VERSION} arch {oci_arch()} applets {' '.join(APPLETS)}\n".encode())
    for name, path in [("busybox", BUSYBOX)] + sorted(progs.items()):
        h.update(f"{name} ".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:20]


def default_cache_dir() -> Path:
    env = os.environ.get("KYBERNATE_TEST_CACHE")
    return Path(env) if env else REPO_ROOT / "tests" / "harness" / ".cache"


def build_test_images(build_dir=None, cache_dir=None) -> TestImages:
    """Return the test image archive, building it only if its inputs changed."""
    build_dir = Path(build_dir) if build_dir else default_build_dir()
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if not BUSYBOX.is_file():
        raise FileNotFoundError(f"{BUSYBOX} is missing (install busybox-static)")
    progs = _program_paths(build_dir)
    out = cache_dir / f"test-images-{_cache_key(progs)}.tar"
    if out.is_file():
        return TestImages(out)
    cache_dir.mkdir(parents=True, exist_ok=True)
    data = _layout(progs)
    # Write-then-rename: concurrent builders produce the same bytes, and a
    # reader never sees half a file.
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=cache_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return TestImages(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m tests.harness.image",
                                 description="Build (or find cached) the Kybernate test image archive.")
    ap.add_argument("--build-dir", help="meson build dir (default $KYBERNATE_BUILD_DIR or <repo>/build)")
    ap.add_argument("--cache-dir", help="cache dir (default $KYBERNATE_TEST_CACHE or tests/harness/.cache)")
    args = ap.parse_args(argv)
    print(build_test_images(args.build_dir, args.cache_dir).path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

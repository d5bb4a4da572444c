/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writes the generated part of the seed corpora (tests/fuzz/corpus/) with
 * the project's own writers, so the seeds are what Kybernate really
 * produces: an image built by kyb_image_builder from a small upper dir
 * (whiteout, opaque directory, symlink, hard link, xattr) gives
 * manifest.json and rootfs-diff.tar; kyb_pack_file packs its files;
 * kyb_oci_manifest_build and kyb_s3_index_* describe them as the oci:// and
 * s3:// stores do; the containerd answers are packed with protobuf-c.
 *
 *   build-fuzz/tests/fuzz/seedgen tests/fuzz/corpus     (as root: mknod)
 *
 * Not run by scripts/fuzz: the seeds are committed; run it again when a
 * format changes.  The hand-written seeds (kubeconfigs, watch streams, S3
 * XML, CRIU logs, headers) sit beside these in the same folders.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "containerd/codec.h"
#include "containerd/grpc.h"
#include "image/image.h"
#include "store/oci.h"
#include "store/pack.h"
#include "store/s3.h"
#include "util/fs.h"

static const char *out_dir;

static void die(const char *what, kyb_error *err) {
  fprintf(stderr, "seedgen: %s: %s\n", what, err ? kyb_error_message(err) : strerror(errno));
  exit(1);
}

/* corpus/<target>/<name>, with an optional prefix byte (the targets'
 * selector or chunk size). */
static void put(const char *target, const char *name, int prefix, const void *data, size_t len) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", out_dir, target);
  kyb_error *err = NULL;
  if (kyb_mkdir_p(path, 0755, &err) < 0)
    die(path, err);
  snprintf(path, sizeof(path), "%s/%s/%s", out_dir, target, name);
  FILE *f = fopen(path, "we");
  if (f == NULL)
    die(path, NULL);
  if (prefix >= 0)
    fputc(prefix, f);
  if (fwrite(data, 1, len, f) != len || fclose(f) != 0)
    die(path, NULL);
}

static void put_file(const char *target, const char *name, int prefix, const char *src) {
  char *data = NULL;
  size_t len = 0;
  kyb_error *err = NULL;
  if (kyb_read_file(src, 1u << 20, &data, &len, &err) < 0)
    die(src, err);
  put(target, name, prefix, data, len);
  free(data);
}

static void write_text(const char *dir, const char *rel, const char *text) {
  char *p = kyb_path_join(dir, rel);
  kyb_error *err = NULL;
  if (p == NULL || kyb_write_file_atomic(p, text, strlen(text), 0644, &err) < 0)
    die(rel, err);
  free(p);
}

/* An overlay upper dir with one of each thing the diff writer handles. */
static void make_upper(const char *upper) {
  char p[4096];
  kyb_error *err = NULL;
  snprintf(p, sizeof(p), "%s/etc/app", upper);
  if (kyb_mkdir_p(p, 0755, &err) < 0)
    die(p, err);
  write_text(upper, "etc/app/app.conf", "listen = 8080\n");
  snprintf(p, sizeof(p), "%s/etc/app/app.conf", upper);
  (void)setxattr(p, "user.origin", "seed", 4, 0);
  snprintf(p, sizeof(p), "%s/etc/app/current.conf", upper);
  if (symlink("app.conf", p) < 0)
    die(p, NULL);
  char q[4096];
  snprintf(q, sizeof(q), "%s/etc/app/app.conf", upper);
  snprintf(p, sizeof(p), "%s/etc/app/hard.conf", upper);
  if (link(q, p) < 0)
    die(p, NULL);
  snprintf(p, sizeof(p), "%s/etc/old.conf", upper);
  if (mknod(p, S_IFCHR | 0000, makedev(0, 0)) < 0)
    die(p, NULL);
  snprintf(p, sizeof(p), "%s/var/cache/app", upper);
  if (kyb_mkdir_p(p, 0755, &err) < 0)
    die(p, err);
  (void)setxattr(p, "trusted.overlay.opaque", "y", 1, 0);
  write_text(upper, "var/cache/app/index", "1 2 3\n");
}

static json_t *build_image(const char *dir, const char *upper, bool pod) {
  kyb_error *err = NULL;
  char p[4096];
  snprintf(p, sizeof(p), "%s/criu", dir);
  if (kyb_mkdir_p(p, 0700, &err) < 0)
    die(p, err);
  write_text(p, "core-1.img", "core of process 1");
  write_text(p, "pages-1.img", "0123456789abcdef0123456789abcdef");
  write_text(p, "dump.log", "(00.000000) Version: 4.1.1 (gitid 0)\n");
  kyb_image_builder *b =
      kyb_image_builder_new(dir, pod ? "web-1-20261128-134000" : "counter-20261128-134000", &err);
  if (b == NULL)
    die("builder", err);
  kyb_image_source src = {.container_id = "3f2a9c0d1e2f",
                          .namespace_ = pod ? "k8s.io" : "default",
                          .image_ref = "docker.io/library/python:3.12",
                          .snapshotter = "overlayfs",
                          .snapshot_parent = "sha256:9f86d081884c7d659a2feaa0c55ad015"};
  if (pod) {
    src.pod_name = "web-1";
    src.pod_namespace = "shop";
    src.pod_uid = "7c1e2a44-0000-4000-8000-000000000001";
    src.container_name = "app";
  }
  json_t *spec = json_pack("{s:s,s:{s:[s,s],s:s},s:{s:s}}", "ociVersion", "1.0.2", "process",
                           "args", "python3", "app.py", "cwd", "/srv", "root", "path", "rootfs");
  kyb_image_versions v = {.kybernate = "0.1.0",
                          .criu = "4.1.1",
                          .containerd = "1.7.24",
                          .runc = "1.1.5",
                          .kernel = "6.1.0"};
  kyb_image_options o = {.leave_running = pod, .tcp_established = !pod};
  json_t *gpus = json_pack(
      "[{s:s,s:s,s:I,s:i,s:[i]}]", "uuid", "GPU-12345678-1234-1234-1234-123456789abc", "model",
      "NVIDIA H200", "memoryBytes", (json_int_t)150000000000, "cudaVersion", 13000, "pids", 4242);
  if (kyb_image_builder_set_source(b, &src, &err) < 0 ||
      kyb_image_builder_set_runtime(b, spec, "io.containerd.runc.v2", "runc", &err) < 0 ||
      kyb_image_builder_set_versions(b, &v, &err) < 0 ||
      kyb_image_builder_set_options(b, &o, &err) < 0 ||
      (pod && kyb_image_builder_set_gpus(b, gpus, &err) < 0) ||
      kyb_image_builder_set_timing(b, "pause", 3, &err) < 0 ||
      kyb_image_builder_set_timing(b, "criu_dump", 1200, &err) < 0 ||
      (upper != NULL && kyb_image_builder_write_rootfs_diff(b, upper, &err) < 0) ||
      kyb_image_builder_finish(b, NULL, &err) < 0)
    die("build image", err);
  kyb_image_builder_free(b);
  json_decref(spec);
  json_decref(gpus);
  json_t *m = NULL;
  if (kyb_image_verify(dir, &m, &err) < 0)
    die("verify image", err);
  return m;
}

typedef struct {
  char *buf;
  size_t len;
} membuf;

static int sink(void *ud, const void *buf, size_t len, kyb_error **err) {
  membuf *m = ud;
  char *nb = realloc(m->buf, m->len + len);
  if (nb == NULL)
    return kyb_error_set(err, ENOMEM, "seed");
  memcpy(nb + m->len, buf, len);
  m->buf = nb;
  m->len += len;
  return 0;
}

static kyb_pack_result pack(const char *path, membuf *blob) {
  kyb_pack_opts o = {.level = 3, .threads = 1};
  kyb_pack_result r;
  kyb_error *err = NULL;
  blob->buf = NULL;
  blob->len = 0;
  if (kyb_pack_file(path, &o, sink, blob, &r, &err) < 0)
    die(path, err);
  return r;
}

/* The remote descriptions of an image: packed parts, OCI manifest, S3
 * index. */
static void remote(const char *dir, const json_t *m, const char *tag) {
  kyb_error *err = NULL;
  char p[4096], name[128];
  const char *iname = json_string_value(json_object_get(m, "name"));
  json_t *index = kyb_s3_index_new(iname, m);
  const json_t *files = json_object_get(m, "files");
  kyb_oci_manifest om = {.nlayers = json_array_size(files), .name = (char *)iname};
  om.layers = calloc(om.nlayers + 1, sizeof(*om.layers));
  for (size_t i = 0; i < om.nlayers; i++) {
    const char *rel = json_string_value(json_object_get(json_array_get(files, i), "path"));
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    membuf blob;
    kyb_pack_result r = pack(p, &blob);
    if (kyb_s3_index_add(index, rel, &r, &err) < 0)
      die("index", err);
    om.layers[i] =
        (kyb_oci_layer){.path = (char *)rel, .blob_size = r.blob_size, .file_size = r.file_size};
    memcpy(om.layers[i].blob_digest, r.blob_digest, sizeof(r.blob_digest));
    memcpy(om.layers[i].file_digest, r.file_digest, sizeof(r.file_digest));
    if (strcmp(rel, "criu/pages-1.img") == 0 || strcmp(rel, "rootfs-diff.tar") == 0) {
      snprintf(name, sizeof(name), "%s-%s.zst", tag, strrchr(rel, '/') ? "pages" : "rootfs");
      put("fuzz_unpack", name, 255, blob.buf, blob.len);
      snprintf(name, sizeof(name), "%s-%s-chunk7.zst", tag, strrchr(rel, '/') ? "pages" : "rootfs");
      put("fuzz_unpack", name, 6, blob.buf, blob.len);
    }
    free(blob.buf);
  }
  snprintf(p, sizeof(p), "%s/manifest.json", dir);
  membuf mblob;
  kyb_pack_result mr = pack(p, &mblob);
  snprintf(name, sizeof(name), "%s-manifest.zst", tag);
  put("fuzz_unpack", name, 63, mblob.buf, mblob.len);
  free(mblob.buf);
  if (kyb_s3_index_add(index, NULL, &mr, &err) < 0)
    die("index", err);
  memcpy(om.config_digest, mr.blob_digest, sizeof(mr.blob_digest));
  om.config_size = mr.blob_size;
  size_t len = 0;
  char *text = kyb_oci_manifest_build(&om, "2026-11-28T13:40:00Z", &len, &err);
  if (text == NULL)
    die("oci manifest", err);
  snprintf(name, sizeof(name), "%s.json", tag);
  put("fuzz_oci_manifest", name, -1, text, len);
  free(text);
  free(om.layers);
  /* the S3 target parses under one fixed name */
  json_object_set_new(index, "name", json_string("web-1-20261128-134000"));
  text = json_dumps(index, JSON_COMPACT | JSON_SORT_KEYS);
  put("fuzz_s3_index", name, -1, text, strlen(text));
  free(text);
  json_decref(index);
}

static void image_seeds(const char *tmp) {
  char dir[4096], upper[4096], p[4096];
  snprintf(upper, sizeof(upper), "%s/upper", tmp);
  make_upper(upper);
  snprintf(dir, sizeof(dir), "%s/pod", tmp);
  json_t *m = build_image(dir, upper, true);
  snprintf(p, sizeof(p), "%s/manifest.json", dir);
  put_file("fuzz_image_manifest", "pod-rootfs.json", -1, p);
  snprintf(p, sizeof(p), "%s/rootfs-diff.tar", dir);
  put_file("fuzz_rootfs_apply", "upper.tar", 0x48, p); /* deleted dir/file, opaque opq */
  remote(dir, m, "pod");
  json_decref(m);

  snprintf(dir, sizeof(dir), "%s/plain", tmp);
  m = build_image(dir, NULL, false);
  snprintf(p, sizeof(p), "%s/manifest.json", dir);
  put_file("fuzz_image_manifest", "plain.json", -1, p);
  remote(dir, m, "plain");
  json_decref(m);
}

/* selector: fuzz_containerd's first byte (reply & 3, framed 4). */
static void put_reply(const char *name, unsigned which, const ProtobufCMessage *msg) {
  kyb_error *err = NULL;
  uint8_t *buf = NULL, *framed = NULL;
  size_t len = 0, flen = 0;
  if (kyb_ctd_pack(msg, &buf, &len, &err) < 0 ||
      kyb_grpc_frame_encode(buf, len, KYB_GRPC_MAX_MESSAGE, &framed, &flen, &err) < 0)
    die(name, err);
  char n[128];
  snprintf(n, sizeof(n), "%s.pb", name);
  put("fuzz_containerd", n, (int)which, buf, len);
  snprintf(n, sizeof(n), "%s.grpc", name);
  put("fuzz_containerd", n, (int)(which | 4 | 0x30), framed, flen);
  free(buf);
  free(framed);
}

static void containerd_seeds(void) {
  Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  ts.seconds = 1795873200;
  ts.nanos = 5;
  Containerd__V1__Types__Process proc = CONTAINERD__V1__TYPES__PROCESS__INIT;
  proc.id = "counter";
  proc.pid = 4242;
  proc.status = CONTAINERD__V1__TYPES__STATUS__RUNNING;
  proc.stdout = "/run/node/counter.log";
  proc.exited_at = &ts;
  Containerd__Services__Tasks__V1__GetResponse get =
      CONTAINERD__SERVICES__TASKS__V1__GET_RESPONSE__INIT;
  get.process = &proc;
  put_reply("tasks-get", 0, &get.base);

  Containerd__Runc__V1__ProcessDetails det = CONTAINERD__RUNC__V1__PROCESS_DETAILS__INIT;
  det.exec_id = "exec-1";
  uint8_t detbuf[64];
  size_t detlen = containerd__runc__v1__process_details__pack(&det, detbuf);
  Google__Protobuf__Any info = GOOGLE__PROTOBUF__ANY__INIT;
  info.type_url = KYB_CTD_TYPE_RUNC_PROCESS_DETAILS;
  info.value.data = detbuf;
  info.value.len = detlen;
  Containerd__V1__Types__ProcessInfo p1 = CONTAINERD__V1__TYPES__PROCESS_INFO__INIT,
                                     p2 = CONTAINERD__V1__TYPES__PROCESS_INFO__INIT;
  p1.pid = 4242;
  p2.pid = 4250;
  p2.info = &info;
  Containerd__V1__Types__ProcessInfo *procs[] = {&p1, &p2};
  Containerd__Services__Tasks__V1__ListPidsResponse pids =
      CONTAINERD__SERVICES__TASKS__V1__LIST_PIDS_RESPONSE__INIT;
  pids.n_processes = 2;
  pids.processes = procs;
  put_reply("list-pids", 1, &pids.base);

  /* Containers.Get answers the Container message the create request sends. */
  kyb_error *err = NULL;
  kyb_ctd_runc_options ro = {.binary_name = "/usr/local/bin/kybernate-runc",
                             .root = "/run/containerd/runc/k8s.io",
                             .systemd_cgroup = true};
  kyb_ctd_kv labels[] = {{"io.kubernetes.pod.name", "web-1"},
                         {"io.kubernetes.container.name", "app"}};
  const char *spec = "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"python3\"]}}";
  kyb_ctd_container ct = {.id = "3f2a9c0d1e2f",
                          .image = "docker.io/library/python:3.12",
                          .runtime_name = "io.containerd.runc.v2",
                          .spec_json = (char *)spec,
                          .spec_len = strlen(spec),
                          .snapshotter = "overlayfs",
                          .snapshot_key = "3f2a9c0d1e2f",
                          .labels = labels,
                          .nlabels = 2,
                          .sandbox = ""};
  if (kyb_ctd_runc_options_to_any(&ro, &ct.runtime_options, &err) < 0)
    die("runc options", err);
  uint8_t *buf = NULL, *framed = NULL;
  size_t len = 0, flen = 0;
  if (kyb_ctd_encode_container_create_request(&ct, &buf, &len, &err) < 0 ||
      kyb_grpc_frame_encode(buf, len, KYB_GRPC_MAX_MESSAGE, &framed, &flen, &err) < 0)
    die("container", err);
  put("fuzz_containerd", "container-get.pb", 2, buf, len);
  put("fuzz_containerd", "container-get.grpc", 2 | 4 | 0x10, framed, flen);
  put("fuzz_containerd", "runc-options.pb", 3, ct.runtime_options.value, ct.runtime_options.len);
  free(buf);
  free(framed);
  kyb_ctd_any_clear(&ct.runtime_options);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: seedgen CORPUS_DIR\n");
    return 2;
  }
  out_dir = argv[1];
  char tmp[] = "/tmp/kyb-seedgen-XXXXXX";
  if (mkdtemp(tmp) == NULL)
    die("mkdtemp", NULL);
  image_seeds(tmp);
  containerd_seeds();
  kyb_error *err = NULL;
  if (kyb_remove_tree(tmp, &err) < 0)
    die(tmp, err);
  return 0;
}

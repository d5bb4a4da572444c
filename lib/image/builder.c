/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The image builder: collects the manifest while a checkpoint runs, then
 * pins the staging directory's files (size + sha256) and writes
 * manifest.json last.
 *
 * The manifest is checked with the same validator a reader uses before it is
 * written, so the builder can never produce an image that load or verify
 * would refuse.  Hashing also fsyncs each file: CRIU does not, and an image
 * must not become visible (renamed into its store) with data still only in
 * the page cache.
 */
#define KYB_LOG_MODULE "image"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "image/files.h"
#include "image/image.h"
#include "image/rootfs.h"
#include "image/safepath.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"

struct kyb_image_builder {
  char *dir;
  json_t *m; /* the manifest under construction */
  bool have_source;
  bool have_runtime;
  uint64_t chunk_size; /* files[].chunks for files larger than this */
};

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* json_string of a possibly-NULL C string: NULL is written as "". */
static json_t *jstr(const char *s) {
  return json_string(s ? s : "");
}

/* Sets obj[key] = v, taking v; false on ENOMEM (v NULL or set failure). */
static bool put(json_t *obj, const char *key, json_t *v) {
  return v != NULL && json_object_set_new(obj, key, v) == 0;
}

kyb_image_builder *kyb_image_builder_new(const char *dir, const char *name, kyb_error **err) {
  if (kyb_image_name_check(name, err) < 0)
    return NULL;
  struct stat st;
  if (stat(dir, &st) < 0) {
    kyb_error_errno(err, "image staging directory %s", dir);
    return NULL;
  }
  if (!S_ISDIR(st.st_mode)) {
    kyb_error_set(err, ENOTDIR, "image staging directory %s is not a directory", dir);
    return NULL;
  }
  kyb_image_builder *b = calloc(1, sizeof(*b));
  json_t *m = json_object();
  bool ok = b != NULL && m != NULL && (b->dir = strdup(dir)) != NULL &&
            put(m, "kybernateImage", json_integer(KYB_IMAGE_FORMAT_VERSION)) &&
            put(m, "name", json_string(name)) && put(m, "source", json_object()) &&
            put(m, "runtime", json_object()) && put(m, "versions", json_object()) &&
            put(m, "gpus", json_array()) && put(m, "timings", json_object()) &&
            put(m, "options", json_pack("{s:b}", "leaveRunning", 0));
  if (!ok) {
    json_decref(m);
    if (b != NULL)
      free(b->dir);
    free(b);
    kyb_error_set(err, ENOMEM, "image builder");
    return NULL;
  }
  b->m = m;
  b->chunk_size = KYB_IMAGE_CHUNK_SIZE;
  kyb_image_builder_set_created(b, time(NULL));
  kyb_image_versions none = {0};
  cleanup_error kyb_error *ignored = NULL; /* uname cannot fail; versions are best effort */
  kyb_image_builder_set_versions(b, &none, &ignored);
  return b;
}

void kyb_image_builder_free(kyb_image_builder *b) {
  if (b == NULL)
    return;
  json_decref(b->m);
  free(b->dir);
  free(b);
}

void kyb_image_builder_set_created(kyb_image_builder *b, time_t created) {
  char buf[21];
  kyb_image_format_time(created, buf);
  json_object_set_new(b->m, "created", json_string(buf));
}

int kyb_image_builder_set_source(kyb_image_builder *b, const kyb_image_source *src,
                                 kyb_error **err) {
  if (src->container_id == NULL || src->container_id[0] == '\0')
    return kyb_error_set(err, EINVAL, "image source: container id is required");
  bool k8s = src->pod_name != NULL || src->pod_namespace != NULL || src->pod_uid != NULL ||
             src->container_name != NULL;
  if (k8s && (src->pod_name == NULL || src->pod_name[0] == '\0' || src->pod_namespace == NULL ||
              src->pod_namespace[0] == '\0'))
    return kyb_error_set(err, EINVAL, "image source: a pod needs both its name and namespace");
  json_t *s = json_object();
  bool ok = s != NULL && put(s, "containerId", jstr(src->container_id)) &&
            put(s, "namespace", jstr(src->namespace_)) &&
            put(s, "imageRef", jstr(src->image_ref)) &&
            put(s, "snapshotter", jstr(src->snapshotter)) &&
            put(s, "snapshotParent", jstr(src->snapshot_parent));
  if (ok && k8s) {
    json_t *pod = json_object();
    bool pod_ok = pod != NULL && put(pod, "name", jstr(src->pod_name)) &&
                  put(pod, "namespace", jstr(src->pod_namespace)) &&
                  put(pod, "uid", jstr(src->pod_uid)) &&
                  put(pod, "container", jstr(src->container_name));
    if (!pod_ok)
      json_decref(pod);
    ok = pod_ok && put(s, "pod", pod);
  }
  if (!ok) {
    json_decref(s);
    return kyb_error_set(err, ENOMEM, "image source");
  }
  if (!put(b->m, "source", s))
    return kyb_error_set(err, ENOMEM, "image source");
  b->have_source = true;
  return 0;
}

int kyb_image_builder_set_runtime(kyb_image_builder *b, const json_t *spec, const char *name,
                                  const char *binary, kyb_error **err) {
  if (!json_is_object(spec))
    return kyb_error_set(err, EINVAL, "image runtime: the OCI spec must be a JSON object");
  json_t *rt = json_object();
  bool ok = rt != NULL && put(rt, "spec", json_deep_copy(spec)) && put(rt, "name", jstr(name)) &&
            put(rt, "binary", jstr(binary));
  if (!ok) {
    json_decref(rt);
    return kyb_error_set(err, ENOMEM, "image runtime");
  }
  if (!put(b->m, "runtime", rt))
    return kyb_error_set(err, ENOMEM, "image runtime");
  b->have_runtime = true;
  return 0;
}

int kyb_image_builder_set_versions(kyb_image_builder *b, const kyb_image_versions *v,
                                   kyb_error **err) {
  struct utsname u;
  const char *kernel = v->kernel;
  if (kernel == NULL && uname(&u) == 0)
    kernel = u.release;
  json_t *ver = json_object();
  bool ok = ver != NULL && put(ver, "kybernate", jstr(v->kybernate)) &&
            put(ver, "criu", jstr(v->criu)) && put(ver, "kernel", jstr(kernel)) &&
            put(ver, "containerd", jstr(v->containerd)) && put(ver, "runc", jstr(v->runc));
  if (!ok) {
    json_decref(ver);
    return kyb_error_set(err, ENOMEM, "image versions");
  }
  if (!put(b->m, "versions", ver))
    return kyb_error_set(err, ENOMEM, "image versions");
  return 0;
}

int kyb_image_builder_set_options(kyb_image_builder *b, const kyb_image_options *o,
                                  kyb_error **err) {
  if (!put(b->m, "options",
           json_pack("{s:b, s:b, s:b, s:b}", "leaveRunning", o->leave_running, "tcpEstablished",
                     o->tcp_established, "extUnixSk", o->ext_unix_sk, "fileLocks", o->file_locks)))
    return kyb_error_set(err, ENOMEM, "image options");
  return 0;
}

int kyb_image_builder_set_gpus(kyb_image_builder *b, const json_t *gpus, kyb_error **err) {
  if (!json_is_array(gpus))
    return kyb_error_set(err, EINVAL, "image gpus: must be a JSON array");
  if (!put(b->m, "gpus", json_deep_copy(gpus)))
    return kyb_error_set(err, ENOMEM, "image gpus");
  return 0;
}

int kyb_image_builder_set_timing(kyb_image_builder *b, const char *phase, uint64_t ms,
                                 kyb_error **err) {
  size_t n = strlen(phase);
  bool ok = n > 0 && n <= 64;
  for (const char *p = phase; ok && *p; p++)
    ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
  if (!ok)
    return kyb_error_set(err, EINVAL, "timing phase \"%s\" must match [a-z0-9_]{1,64}", phase);
  if (ms > (uint64_t)INT64_MAX)
    return kyb_error_set(err, ERANGE, "timing %s out of range", phase);
  if (!put(json_object_get(b->m, "timings"), phase, json_integer((json_int_t)ms)))
    return kyb_error_set(err, ENOMEM, "timing %s", phase);
  return 0;
}

int kyb_image_builder_write_rootfs_diff(kyb_image_builder *b, const char *upperdir,
                                        kyb_error **err) {
  uint64_t t0 = now_ms();
  cleanup_free char *tar = kyb_path_join(b->dir, KYB_IMAGE_ROOTFS_DIFF);
  if (tar == NULL)
    return kyb_error_set(err, ENOMEM, "rootfs diff");
  kyb_rootfs_changes ch = {0};
  if (kyb_rootfs_diff_write(upperdir, tar, &ch, err) < 0) {
    kyb_rootfs_changes_release(&ch);
    return -1;
  }
  json_t *j = kyb_rootfs_changes_to_json(&ch);
  kyb_rootfs_changes_release(&ch);
  if (!put(b->m, "rootfs", j))
    return kyb_error_set(err, ENOMEM, "rootfs diff");
  return kyb_image_builder_set_timing(b, "rootfs_diff", now_ms() - t0, err);
}

/* files[] for every file in the staging directory, hashed and fsynced. */
static int pin_files(kyb_image_builder *b, int dfd, kyb_error **err) {
  cleanup_strv char **paths = NULL;
  size_t n = 0;
  if (kyb_image_list_files(dfd, &paths, &n, err) < 0)
    return -1;
  if (n > KYB_IMAGE_MAX_FILES)
    return kyb_error_set(err, EFBIG, "%zu files, more than the %u an image may hold", n,
                         KYB_IMAGE_MAX_FILES);
  json_t *files = json_array();
  if (!put(b->m, "files", files))
    return kyb_error_set(err, ENOMEM, "image files");
  if (kyb_image_pin_files(dfd, paths, n, b->chunk_size, files, err) < 0)
    return -1;
  /* The directory entries too: the files just synced must be reachable
   * after a crash.  (manifest.json's own write syncs the top directory.) */
  cleanup_close int criu = openat(dfd, KYB_IMAGE_CRIU_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (criu < 0 || fsync(criu) < 0)
    return kyb_error_errno(err, "fsync %s", KYB_IMAGE_CRIU_DIR);
  return 0;
}

int kyb_image_builder_set_chunk_size(kyb_image_builder *b, uint64_t size, kyb_error **err) {
  if (size < KYB_IMAGE_CHUNK_MIN || size > KYB_IMAGE_CHUNK_MAX || (size & (size - 1)) != 0)
    return kyb_error_set(err, EINVAL, "chunk size %llu: must be a power of two from %u to %u",
                         (unsigned long long)size, KYB_IMAGE_CHUNK_MIN, KYB_IMAGE_CHUNK_MAX);
  b->chunk_size = size;
  return 0;
}

int kyb_image_builder_finish(kyb_image_builder *b, char **digest, kyb_error **err) {
  if (!b->have_source || !b->have_runtime)
    return kyb_error_set(err, EINVAL, "image %s: %s not set before finish",
                         json_string_value(json_object_get(b->m, "name")),
                         b->have_source ? "runtime" : "source");
  cleanup_close int dfd = open(b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return kyb_error_errno(err, "open image staging directory %s", b->dir);
  struct stat st;
  if (fstatat(dfd, KYB_IMAGE_CRIU_DIR, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
    return kyb_error_set(err, ENOENT, "image staging directory %s has no %s/ directory", b->dir,
                         KYB_IMAGE_CRIU_DIR);
  uint64_t t0 = now_ms();
  if (pin_files(b, dfd, err) < 0)
    return kyb_error_wrap(err, "image staging directory %s", b->dir);
  if (kyb_image_builder_set_timing(b, "package", now_ms() - t0, err) < 0)
    return -1;
  if (kyb_image_manifest_validate(b->m, err) < 0)
    return kyb_error_wrap(err, "image %s: refusing to write an invalid manifest", b->dir);
  cleanup_free char *text = json_dumps(b->m, JSON_INDENT(2) | JSON_SORT_KEYS);
  cleanup_free char *path = kyb_path_join(b->dir, KYB_IMAGE_MANIFEST);
  if (text == NULL || path == NULL)
    return kyb_error_set(err, ENOMEM, "image manifest");
  size_t len = strlen(text);
  if (len > KYB_IMAGE_MANIFEST_MAX_BYTES)
    return kyb_error_set(err, EFBIG, "image %s: manifest would be %zu bytes, more than %u", b->dir,
                         len, KYB_IMAGE_MANIFEST_MAX_BYTES);
  if (kyb_write_file_atomic(path, text, len, 0600, err) < 0)
    return kyb_error_wrap(err, "image %s", b->dir);
  if (digest != NULL) {
    char hex[KYB_SHA256_HEX_LEN + 1];
    kyb_sha256_buf(text, len, hex);
    if (asprintf(digest, "sha256:%s", hex) < 0)
      return kyb_error_set(err, ENOMEM, "image digest");
  }
  log_debug("image %s: manifest written (%zu files)", b->dir,
            json_array_size(json_object_get(b->m, "files")));
  return 0;
}

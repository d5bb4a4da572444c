/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading and validating manifest.json.
 *
 * A manifest comes back from storage, so it is untrusted: it is read with a
 * size cap, parsed with duplicate keys rejected, and every field the restore
 * path relies on is type-checked here, once, so later code can read it with
 * plain jansson calls.  Unknown fields are ignored (a newer writer of the
 * same major version may add some); an unknown major version is refused.
 * Every error names the field at fault.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/files.h"
#include "image/image.h"
#include "image/rootfs.h"
#include "image/safepath.h"
#include "util/cleanup.h"

#define STR_MAX 4096u  /* any free-form string (image ref, runtime binary, ...) */
#define GPUS_MAX 256u  /* GPUs of one container */
#define TIMINGS_MAX 64 /* phases */

static int field_error(kyb_error **err, const char *field, const char *want) {
  return kyb_error_set(err, EINVAL, "manifest: field \"%s\" %s", field, want);
}

/* The member `key` of object `obj`, which must have JSON type `type`.  A
 * missing optional member yields NULL and success. */
static int member(const json_t *obj, const char *key, const char *field, json_type type,
                  bool required, json_t **out, kyb_error **err) {
  json_t *v = json_object_get(obj, key);
  *out = NULL;
  if (v == NULL)
    return required ? field_error(err, field, "is missing") : 0;
  static const char *const names[] = {
      [JSON_OBJECT] = "an object",   [JSON_ARRAY] = "an array", [JSON_STRING] = "a string",
      [JSON_INTEGER] = "an integer", [JSON_REAL] = "a number",  [JSON_TRUE] = "a boolean",
      [JSON_FALSE] = "a boolean",    [JSON_NULL] = "null",
  };
  bool ok = json_typeof(v) == type || (type == JSON_TRUE && json_is_boolean(v));
  if (!ok)
    return kyb_error_set(err, EINVAL, "manifest: field \"%s\" must be %s", field, names[type]);
  *out = v;
  return 0;
}

static int string_member(const json_t *obj, const char *key, const char *field, bool required,
                         bool nonempty, const char **out, kyb_error **err) {
  json_t *v = NULL;
  if (member(obj, key, field, JSON_STRING, required, &v, err) < 0)
    return -1;
  *out = v ? json_string_value(v) : NULL;
  if (v == NULL)
    return 0;
  size_t len = json_string_length(v);
  if (len > STR_MAX)
    return field_error(err, field, "is too long");
  if (nonempty && len == 0)
    return field_error(err, field, "is empty");
  return 0;
}

static int check_version(const json_t *m, kyb_error **err) {
  json_t *v = json_object_get(m, "kybernateImage");
  if (v == NULL)
    return kyb_error_set(err, EINVAL,
                         "manifest: field \"kybernateImage\" is missing: not a Kybernate image");
  if (!json_is_integer(v))
    return field_error(err, "kybernateImage", "must be an integer");
  json_int_t ver = json_integer_value(v);
  if (ver != KYB_IMAGE_FORMAT_VERSION)
    return kyb_error_set(err, ENOTSUP,
                         "manifest: image format version %lld is not supported (this build reads "
                         "version %d)",
                         (long long)ver, KYB_IMAGE_FORMAT_VERSION);
  return 0;
}

static int check_source(const json_t *m, kyb_error **err) {
  json_t *src = NULL, *pod = NULL;
  const char *s = NULL;
  if (member(m, "source", "source", JSON_OBJECT, true, &src, err) < 0 ||
      string_member(src, "containerId", "source.containerId", true, true, &s, err) < 0 ||
      string_member(src, "namespace", "source.namespace", false, false, &s, err) < 0 ||
      string_member(src, "imageRef", "source.imageRef", false, false, &s, err) < 0 ||
      string_member(src, "snapshotter", "source.snapshotter", false, false, &s, err) < 0 ||
      string_member(src, "snapshotParent", "source.snapshotParent", false, false, &s, err) < 0 ||
      member(src, "pod", "source.pod", JSON_OBJECT, false, &pod, err) < 0)
    return -1;
  if (pod != NULL &&
      (string_member(pod, "name", "source.pod.name", true, true, &s, err) < 0 ||
       string_member(pod, "namespace", "source.pod.namespace", true, true, &s, err) < 0 ||
       string_member(pod, "uid", "source.pod.uid", false, false, &s, err) < 0 ||
       string_member(pod, "container", "source.pod.container", false, false, &s, err) < 0))
    return -1;
  return 0;
}

static int check_runtime_versions(const json_t *m, kyb_error **err) {
  json_t *rt = NULL, *spec = NULL, *ver = NULL;
  const char *s = NULL;
  if (member(m, "runtime", "runtime", JSON_OBJECT, true, &rt, err) < 0 ||
      member(rt, "spec", "runtime.spec", JSON_OBJECT, true, &spec, err) < 0 ||
      string_member(rt, "name", "runtime.name", false, false, &s, err) < 0 ||
      string_member(rt, "binary", "runtime.binary", false, false, &s, err) < 0 ||
      member(m, "versions", "versions", JSON_OBJECT, true, &ver, err) < 0)
    return -1;
  static const char *const keys[] = {"kybernate", "criu", "kernel", "containerd", "runc"};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    char field[32];
    snprintf(field, sizeof(field), "versions.%s", keys[i]);
    if (string_member(ver, keys[i], field, false, false, &s, err) < 0)
      return -1;
  }
  return 0;
}

static bool phase_valid(const char *k) {
  size_t n = strlen(k);
  if (n == 0 || n > 64)
    return false;
  for (; *k; k++)
    if (!((*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') || *k == '_'))
      return false;
  return true;
}

static int check_misc(const json_t *m, kyb_error **err) {
  json_t *gpus = NULL, *timings = NULL, *opts = NULL, *lr = NULL, *o2 = NULL;
  if (member(m, "gpus", "gpus", JSON_ARRAY, true, &gpus, err) < 0 ||
      member(m, "timings", "timings", JSON_OBJECT, true, &timings, err) < 0 ||
      member(m, "options", "options", JSON_OBJECT, true, &opts, err) < 0 ||
      member(opts, "leaveRunning", "options.leaveRunning", JSON_TRUE, false, &lr, err) < 0 ||
      member(opts, "tcpEstablished", "options.tcpEstablished", JSON_TRUE, false, &o2, err) < 0 ||
      member(opts, "extUnixSk", "options.extUnixSk", JSON_TRUE, false, &o2, err) < 0 ||
      member(opts, "fileLocks", "options.fileLocks", JSON_TRUE, false, &o2, err) < 0)
    return -1;
  if (json_array_size(gpus) > GPUS_MAX)
    return field_error(err, "gpus", "lists too many GPUs");
  size_t i;
  json_t *g;
  json_array_foreach(gpus, i, g) {
    if (!json_is_object(g))
      return kyb_error_set(err, EINVAL, "manifest: gpus[%zu] must be an object", i);
  }
  if (json_object_size(timings) > TIMINGS_MAX)
    return field_error(err, "timings", "has too many phases");
  const char *k;
  json_t *v;
  json_object_foreach(timings, k, v) {
    if (!phase_valid(k))
      return kyb_error_set(err, EINVAL, "manifest: timings: phase name \"%.64s\" is not valid", k);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
      return kyb_error_set(err, EINVAL,
                           "manifest: timings.%s must be a non-negative integer (milliseconds)", k);
  }
  return 0;
}

static bool hex64(const char *s) {
  if (strlen(s) != KYB_SHA256_HEX_LEN)
    return false;
  for (; *s; s++)
    if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
      return false;
  return true;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* files[i].chunks: {"size": power of two, "sha256": [one digest per chunk]},
 * the chunks covering exactly file_size bytes. */
static int check_chunks(const json_t *f, size_t i, json_int_t file_size, kyb_error **err) {
  json_t *chunks = NULL, *size = NULL, *list = NULL;
  char field[64];
  snprintf(field, sizeof(field), "files[%zu].chunks", i);
  if (member(f, "chunks", field, JSON_OBJECT, false, &chunks, err) < 0)
    return -1;
  if (chunks == NULL) /* optional: small files have none */
    return 0;
  snprintf(field, sizeof(field), "files[%zu].chunks.size", i);
  if (member(chunks, "size", field, JSON_INTEGER, true, &size, err) < 0)
    return -1;
  json_int_t cs = json_integer_value(size);
  if (cs < (json_int_t)KYB_IMAGE_CHUNK_MIN || cs > (json_int_t)KYB_IMAGE_CHUNK_MAX ||
      (cs & (cs - 1)) != 0)
    return kyb_error_set(err, EINVAL, "manifest: field \"%s\" must be a power of two from %u to %u",
                         field, KYB_IMAGE_CHUNK_MIN, KYB_IMAGE_CHUNK_MAX);
  snprintf(field, sizeof(field), "files[%zu].chunks.sha256", i);
  if (member(chunks, "sha256", field, JSON_ARRAY, true, &list, err) < 0)
    return -1;
  uint64_t want = (uint64_t)file_size / (uint64_t)cs + ((uint64_t)file_size % (uint64_t)cs != 0);
  if ((uint64_t)json_array_size(list) != want)
    return kyb_error_set(err, EINVAL,
                         "manifest: field \"%s\" has %zu digests, a file of %lld bytes in "
                         "chunks of %lld has %llu",
                         field, json_array_size(list), (long long)file_size, (long long)cs,
                         (unsigned long long)want);
  size_t k;
  json_t *d;
  json_array_foreach(list, k, d) {
    if (!json_is_string(d) || !hex64(json_string_value(d))) {
      snprintf(field, sizeof(field), "files[%zu].chunks.sha256[%zu]", i, k);
      return field_error(err, field, "must be 64 lower-case hex digits");
    }
  }
  return 0;
}

/* Whether sorted `paths` holds the first len bytes of s as one entry. */
static bool listed(const char **paths, size_t n, const char *s, size_t len) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strncmp(paths[mid], s, len);
    if (c == 0)
      c = paths[mid][len] != '\0'; /* longer: it sorts after */
    if (c == 0)
      return true;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return false;
}

/* files[]: clean relative paths, no duplicates, sizes and digests well formed.
 * *has_diff tells whether rootfs-diff.tar is among them. */
static int check_files(const json_t *m, bool *has_diff, kyb_error **err) {
  json_t *files = NULL;
  if (member(m, "files", "files", JSON_ARRAY, true, &files, err) < 0)
    return -1;
  size_t n = json_array_size(files);
  if (n > KYB_IMAGE_MAX_FILES)
    return kyb_error_set(err, EINVAL, "manifest: files lists %zu files, more than the %u allowed",
                         n, KYB_IMAGE_MAX_FILES);
  cleanup_free const char **paths = calloc(n + 1, sizeof(char *));
  if (paths == NULL)
    return kyb_error_set(err, ENOMEM, "manifest: files");
  *has_diff = false;
  for (size_t i = 0; i < n; i++) {
    json_t *f = json_array_get(files, i), *size = NULL, *sha = NULL;
    const char *path = NULL;
    char field[48];
    if (!json_is_object(f))
      return kyb_error_set(err, EINVAL, "manifest: files[%zu] must be an object", i);
    snprintf(field, sizeof(field), "files[%zu].path", i);
    if (string_member(f, "path", field, true, true, &path, err) < 0)
      return -1;
    if (kyb_relpath_check(path, err) < 0)
      return kyb_error_wrap(err, "manifest: files[%zu]", i);
    if (strcmp(path, KYB_IMAGE_MANIFEST) == 0)
      return kyb_error_set(err, EINVAL, "manifest: files[%zu] lists the manifest itself", i);
    snprintf(field, sizeof(field), "files[%zu].size", i);
    if (member(f, "size", field, JSON_INTEGER, true, &size, err) < 0)
      return -1;
    if (json_integer_value(size) < 0)
      return field_error(err, field, "must not be negative");
    snprintf(field, sizeof(field), "files[%zu].sha256", i);
    if (member(f, "sha256", field, JSON_STRING, true, &sha, err) < 0)
      return -1;
    if (!hex64(json_string_value(sha)))
      return field_error(err, field, "must be 64 lower-case hex digits");
    if (check_chunks(f, i, json_integer_value(size), err) < 0)
      return -1;
    if (strcmp(path, KYB_IMAGE_ROOTFS_DIFF) == 0)
      *has_diff = true;
    paths[i] = path;
  }
  qsort(paths, n, sizeof(char *), cmp_str);
  for (size_t i = 1; i < n; i++)
    if (strcmp(paths[i - 1], paths[i]) == 0)
      return kyb_error_set(err, EINVAL, "manifest: files lists \"%s\" twice", paths[i]);
  /* A file and a directory of the same name cannot both exist: no listed
   * path may be a directory on the way to another.  Neighbours in sorted
   * order are not enough to tell: "a" < "a-b" < "a/c". */
  for (size_t i = 0; i < n; i++)
    for (const char *s = strchr(paths[i], '/'); s != NULL; s = strchr(s + 1, '/'))
      if (listed(paths, n, paths[i], (size_t)(s - paths[i])))
        return kyb_error_set(err, EINVAL,
                             "manifest: files lists \"%.*s\" as a file and a directory",
                             (int)(s - paths[i]), paths[i]);
  return 0;
}

int kyb_image_manifest_validate(const json_t *m, kyb_error **err) {
  if (!json_is_object(m))
    return kyb_error_set(err, EINVAL, "manifest: not a JSON object");
  const char *s = NULL;
  json_t *rootfs = NULL;
  bool has_diff = false;
  if (check_version(m, err) < 0 || string_member(m, "name", "name", true, true, &s, err) < 0)
    return -1;
  if (kyb_image_name_check(s, err) < 0)
    return kyb_error_wrap(err, "manifest: field \"name\"");
  if (string_member(m, "created", "created", true, true, &s, err) < 0)
    return -1;
  if (!kyb_image_time_valid(s))
    return field_error(err, "created", "must be an RFC 3339 date-time");
  if (check_source(m, err) < 0 || check_runtime_versions(m, err) < 0 || check_misc(m, err) < 0 ||
      check_files(m, &has_diff, err) < 0 ||
      member(m, "rootfs", "rootfs", JSON_OBJECT, false, &rootfs, err) < 0)
    return -1;
  if (has_diff != (rootfs != NULL))
    return kyb_error_set(err, EINVAL,
                         has_diff ? "manifest: files lists %s but there is no \"rootfs\" object"
                                  : "manifest: \"rootfs\" is set but files does not list %s",
                         KYB_IMAGE_ROOTFS_DIFF);
  if (rootfs != NULL) {
    kyb_rootfs_changes ch = {0};
    int r = kyb_rootfs_changes_from_json(rootfs, &ch, err);
    kyb_rootfs_changes_release(&ch);
    if (r < 0)
      return kyb_error_wrap(err, "manifest: field \"rootfs\"");
  }
  return 0;
}

int kyb_image_manifest_parse(const char *data, size_t len, json_t **out, kyb_error **err) {
  if (len > KYB_IMAGE_MANIFEST_MAX_BYTES)
    return kyb_error_set(err, EFBIG, "manifest is %zu bytes, more than the %u allowed", len,
                         KYB_IMAGE_MANIFEST_MAX_BYTES);
  json_error_t jerr;
  cleanup_json json_t *m = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
  if (m == NULL)
    return kyb_error_set(err, EINVAL, "manifest: invalid JSON at line %d column %d: %s", jerr.line,
                         jerr.column, jerr.text);
  if (kyb_image_manifest_validate(m, err) < 0)
    return -1;
  *out = steal_ptr(m);
  return 0;
}

int kyb_image_load_manifest_at(int dirfd, json_t **out, kyb_error **err) {
  cleanup_close int fd = openat(dirfd, KYB_IMAGE_MANIFEST, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ELOOP)
      return kyb_error_set(err, ELOOP, "%s is a symlink", KYB_IMAGE_MANIFEST);
    return kyb_error_errno(err, "open %s", KYB_IMAGE_MANIFEST);
  }
  cleanup_free char *data = NULL;
  size_t len = 0;
  if (kyb_read_fd_bounded(fd, KYB_IMAGE_MANIFEST_MAX_BYTES, &data, &len, err) < 0)
    return kyb_error_wrap(err, "read %s", KYB_IMAGE_MANIFEST);
  return kyb_image_manifest_parse(data, len, out, err);
}

int kyb_image_load_manifest(const char *dir, json_t **out, kyb_error **err) {
  cleanup_close int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return kyb_error_errno(err, "open image %s", dir);
  if (kyb_image_load_manifest_at(dfd, out, err) < 0)
    return kyb_error_wrap(err, "image %s", dir);
  return 0;
}

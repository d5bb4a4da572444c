/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The deleted and opaque paths of a rootfs diff, and their place in the
 * manifest ("rootfs").  They live in the manifest rather than in the tar so
 * the tar holds nothing but the container's own files (no name is reserved
 * for bookkeeping, unlike OCI's ".wh." members) and so an inspect shows them
 * without reading the tar.  The lists are bounded (KYB_ROOTFS_MAX_CHANGES
 * each) and every entry must be a clean relative path.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "image/rootfs.h"
#include "image/safepath.h"
#include "util/cleanup.h"
#include "util/fs.h"

void kyb_rootfs_changes_release(kyb_rootfs_changes *c) {
  if (c == NULL)
    return;
  kyb_strvp(&c->deleted);
  kyb_strvp(&c->opaque);
  memset(c, 0, sizeof(*c));
}

static json_t *strv_to_json(char **v, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; a != NULL && i < n; i++)
    if (json_array_append_new(a, json_string(v[i])) < 0) {
      json_decref(a);
      return NULL;
    }
  return a;
}

json_t *kyb_rootfs_changes_to_json(const kyb_rootfs_changes *c) {
  json_t *del = strv_to_json(c->deleted, c->ndeleted);
  json_t *opq = strv_to_json(c->opaque, c->nopaque);
  if (del == NULL || opq == NULL) {
    json_decref(del);
    json_decref(opq);
    return NULL;
  }
  return json_pack("{s:o,s:o,s:I,s:I,s:I}", "deleted", del, "opaque", opq, "entries",
                   (json_int_t)c->entries, "bytes", (json_int_t)c->bytes, "skipped",
                   (json_int_t)c->skipped);
}

static int strv_from_json(const json_t *obj, const char *key, char ***out, size_t *nout,
                          kyb_error **err) {
  json_t *a = json_object_get(obj, key);
  if (!json_is_array(a))
    return kyb_error_set(err, EINVAL, "\"%s\" must be an array", key);
  size_t n = json_array_size(a);
  if (n > KYB_ROOTFS_MAX_CHANGES)
    return kyb_error_set(err, EINVAL, "\"%s\" lists %zu paths, more than the %u allowed", key, n,
                         KYB_ROOTFS_MAX_CHANGES);
  cleanup_strv char **v = calloc(n + 1, sizeof(char *));
  if (v == NULL)
    return kyb_error_set(err, ENOMEM, "%s", key);
  for (size_t i = 0; i < n; i++) {
    const char *s = json_string_value(json_array_get(a, i));
    if (s == NULL)
      return kyb_error_set(err, EINVAL, "%s[%zu] must be a string", key, i);
    if (kyb_relpath_check(s, err) < 0)
      return kyb_error_wrap(err, "%s[%zu]", key, i);
    if ((v[i] = strdup(s)) == NULL)
      return kyb_error_set(err, ENOMEM, "%s", key);
  }
  *out = steal_ptr(v);
  *nout = n;
  return 0;
}

static int count_from_json(const json_t *obj, const char *key, uint64_t *out, kyb_error **err) {
  json_t *v = json_object_get(obj, key);
  if (v == NULL) {
    *out = 0;
    return 0;
  }
  if (!json_is_integer(v) || json_integer_value(v) < 0)
    return kyb_error_set(err, EINVAL, "\"%s\" must be a non-negative integer", key);
  *out = (uint64_t)json_integer_value(v);
  return 0;
}

int kyb_rootfs_changes_from_json(const json_t *rootfs, kyb_rootfs_changes *out, kyb_error **err) {
  kyb_rootfs_changes c = {0};
  if (!json_is_object(rootfs))
    return kyb_error_set(err, EINVAL, "not an object");
  if (strv_from_json(rootfs, "deleted", &c.deleted, &c.ndeleted, err) < 0 ||
      strv_from_json(rootfs, "opaque", &c.opaque, &c.nopaque, err) < 0 ||
      count_from_json(rootfs, "entries", &c.entries, err) < 0 ||
      count_from_json(rootfs, "bytes", &c.bytes, err) < 0 ||
      count_from_json(rootfs, "skipped", &c.skipped, err) < 0) {
    kyb_rootfs_changes_release(&c);
    return -1;
  }
  *out = c;
  return 0;
}

int kyb_image_apply_rootfs(const char *image_dir, const json_t *manifest, const char *target,
                           const kyb_rootfs_limits *limits, kyb_error **err) {
  const json_t *rootfs = json_object_get(manifest, "rootfs");
  if (rootfs == NULL)
    return 0;
  kyb_rootfs_changes c = {0};
  if (kyb_rootfs_changes_from_json(rootfs, &c, err) < 0)
    return kyb_error_wrap(err, "image %s: rootfs", image_dir);
  cleanup_free char *tar = kyb_path_join(image_dir, KYB_IMAGE_ROOTFS_DIFF);
  int r = tar ? kyb_rootfs_diff_apply(tar, &c, target, limits, err)
              : kyb_error_set(err, ENOMEM, "rootfs diff");
  kyb_rootfs_changes_release(&c);
  return r;
}

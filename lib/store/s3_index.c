/* SPDX-License-Identifier: Apache-2.0 */
/*
 * index.json of the s3:// store: what an image consists of remotely.
 *
 *     {
 *       "kybernateIndex": 1,
 *       "name": "web-1",
 *       "created": "2026-11-28T13:40:00Z",        copied from the manifest
 *       "source": {...},                           copied from the manifest
 *       "compression": "zstd",
 *       "manifest": {"size": 2048, "digest": "sha256:…", "blob": "sha256:…", "blobSize": 700},
 *       "files": [{"path": "criu/core-1.img", "size": 1234, "digest": "sha256:…",
 *                  "blob": "sha256:…", "blobSize": 567}, …]
 *     }
 *
 * `digest`/`size` are the uncompressed file's (the manifest's sha256 and
 * size), `blob`/`blobSize` the stored zstd blob's, at
 * <prefix>/<name>/blobs/sha256/<hex of blob>.  `created` and `source` let a
 * listing show an image from one small object; everything a restore uses is
 * checked against manifest.json, whose digest the index pins.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "image/image.h"
#include "image/safepath.h"
#include "store/s3.h"
#include "util/cleanup.h"

json_t *kyb_s3_index_new(const char *name, const json_t *manifest) {
  json_t *src = json_deep_copy(json_object_get(manifest, "source"));
  const char *created = json_string_value(json_object_get(manifest, "created"));
  return json_pack("{s:i, s:s, s:s, s:o, s:s, s:[]}", "kybernateIndex", KYB_S3_INDEX_VERSION,
                   "name", name, "created", created ? created : "", "source",
                   src ? src : json_object(), "compression", "zstd", "files");
}

int kyb_s3_index_add(json_t *index, const char *path, const kyb_pack_result *r, kyb_error **err) {
  json_t *e =
      json_pack("{s:I, s:s, s:s, s:I}", "size", (json_int_t)r->file_size, "digest", r->file_digest,
                "blob", r->blob_digest, "blobSize", (json_int_t)r->blob_size);
  if (e == NULL)
    return kyb_error_set(err, ENOMEM, "index entry");
  if (path == NULL)
    return json_object_set_new(index, "manifest", e) == 0
               ? 0
               : kyb_error_set(err, ENOMEM, "index entry");
  if (json_object_set_new(e, "path", json_string(path)) < 0 ||
      json_array_append_new(json_object_get(index, "files"), e) < 0)
    return kyb_error_set(err, ENOMEM, "index entry");
  return 0;
}

static bool uint_field(const json_t *o, const char *k, uint64_t max, uint64_t *out) {
  const json_t *v = json_object_get(o, k);
  if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
    return false;
  if (out != NULL)
    *out = (uint64_t)json_integer_value(v);
  return true;
}

static bool digest_field(const json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s != NULL && kyb_digest_valid(s);
}

/* size, digest, blob, blobSize of one part. */
static int check_part(const json_t *e, uint64_t max_size, const char *what, kyb_error **err) {
  if (!json_is_object(e))
    return kyb_error_set(err, EINVAL, "%s is not an object", what);
  if (!uint_field(e, "size", max_size, NULL))
    return kyb_error_set(err, EINVAL, "%s: size missing, negative or too large", what);
  /* zstd's worst case is the input plus a small frame overhead */
  if (!uint_field(e, "blobSize", max_size + max_size / 64 + (1u << 20), NULL))
    return kyb_error_set(err, EINVAL, "%s: blobSize missing, negative or too large", what);
  if (!digest_field(e, "digest") || !digest_field(e, "blob"))
    return kyb_error_set(err, EINVAL, "%s: digest or blob is not \"sha256:<64 hex>\"", what);
  return 0;
}

static int validate(const json_t *ix, const char *name, kyb_error **err) {
  if (!json_is_object(ix))
    return kyb_error_set(err, EINVAL, "not a JSON object");
  const json_t *ver = json_object_get(ix, "kybernateIndex");
  if (!json_is_integer(ver))
    return kyb_error_set(err, EINVAL, "not a Kybernate index (no kybernateIndex)");
  if (json_integer_value(ver) != KYB_S3_INDEX_VERSION)
    return kyb_error_set(err, ENOTSUP, "index version %lld is not supported",
                         (long long)json_integer_value(ver));
  const char *n = json_string_value(json_object_get(ix, "name"));
  if (n == NULL || strcmp(n, name) != 0)
    return kyb_error_set(err, EINVAL, "the index names the image \"%.130s\", not \"%s\"",
                         n ? n : "(none)", name);
  const char *created = json_string_value(json_object_get(ix, "created"));
  if (created == NULL || !kyb_image_time_valid(created))
    return kyb_error_set(err, EINVAL, "created missing or not an RFC 3339 time");
  if (!json_is_object(json_object_get(ix, "source")))
    return kyb_error_set(err, EINVAL, "source is not an object");
  const char *comp = json_string_value(json_object_get(ix, "compression"));
  if (comp == NULL || strcmp(comp, "zstd") != 0)
    return kyb_error_set(err, ENOTSUP, "compression \"%.40s\" is not supported (zstd only)",
                         comp ? comp : "(none)");
  if (check_part(json_object_get(ix, "manifest"), KYB_IMAGE_MANIFEST_MAX_BYTES, "manifest", err) <
      0)
    return -1;
  const json_t *files = json_object_get(ix, "files");
  if (!json_is_array(files) || json_array_size(files) > KYB_IMAGE_MAX_FILES)
    return kyb_error_set(err, EINVAL, "files is not an array of at most %u entries",
                         KYB_IMAGE_MAX_FILES);
  const char *prev = NULL;
  size_t i;
  const json_t *e;
  json_array_foreach(files, i, e) {
    char what[48];
    snprintf(what, sizeof(what), "files[%zu]", i);
    if (check_part(e, UINT64_C(1) << 50, what, err) < 0)
      return -1;
    const char *p = json_string_value(json_object_get(e, "path"));
    if (p == NULL)
      return kyb_error_set(err, EINVAL, "%s: path missing", what);
    if (kyb_relpath_check(p, err) < 0)
      return kyb_error_wrap(err, "%s", what);
    if (strcmp(p, KYB_IMAGE_MANIFEST) == 0)
      return kyb_error_set(err, EINVAL, "%s: path is manifest.json", what);
    if (prev != NULL && strcmp(prev, p) >= 0)
      return kyb_error_set(err, EINVAL, "%s: paths not sorted or repeated (\"%.200s\")", what, p);
    prev = p;
  }
  return 0;
}

int kyb_s3_index_parse(const char *data, size_t len, const char *name, json_t **out,
                       kyb_error **err) {
  if (len > KYB_S3_INDEX_MAX_BYTES)
    return kyb_error_set(err, EFBIG, "index.json of %s: larger than %u bytes", name,
                         KYB_S3_INDEX_MAX_BYTES);
  json_error_t je;
  cleanup_json json_t *ix = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
  if (ix == NULL)
    return kyb_error_set(err, EINVAL, "index.json of %s: not JSON: %s (line %d)", name, je.text,
                         je.line);
  if (validate(ix, name, err) < 0)
    return kyb_error_wrap(err, "index.json of %s", name);
  *out = steal_ptr(ix);
  return 0;
}

int kyb_s3_index_match_manifest(const json_t *index, const json_t *manifest, kyb_error **err) {
  const json_t *xf = json_object_get(index, "files"), *mf = json_object_get(manifest, "files");
  if (json_array_size(xf) != json_array_size(mf))
    return kyb_error_set(err, EBADMSG, "the index lists %zu files, the manifest %zu",
                         json_array_size(xf), json_array_size(mf));
  for (size_t i = 0; i < json_array_size(xf); i++) {
    const json_t *x = json_array_get(xf, i), *m = json_array_get(mf, i);
    const char *xp = json_string_value(json_object_get(x, "path"));
    const char *mp = json_string_value(json_object_get(m, "path"));
    const char *xd = json_string_value(json_object_get(x, "digest"));
    const char *md = json_string_value(json_object_get(m, "sha256"));
    if (xp == NULL || mp == NULL || strcmp(xp, mp) != 0)
      return kyb_error_set(err, EBADMSG,
                           "file %zu: the index says \"%.200s\", the manifest "
                           "\"%.200s\"",
                           i, xp ? xp : "", mp ? mp : "");
    if (json_integer_value(json_object_get(x, "size")) !=
        json_integer_value(json_object_get(m, "size")))
      return kyb_error_set(err, EBADMSG, "file %s: the index and the manifest differ in size", xp);
    if (xd == NULL || md == NULL || strncmp(xd, "sha256:", 7) != 0 || strcmp(xd + 7, md) != 0)
      return kyb_error_set(err, EBADMSG, "file %s: the index says %s, the manifest sha256:%s", xp,
                           xd ? xd : "", md ? md : "");
  }
  return 0;
}

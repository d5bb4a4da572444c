/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The s3:// store's put: the staged image's files packed (zstd, both
 * digests on the way) and uploaded while they are read — one PUT when a
 * blob fits in one part, else a multipart upload to a temporary key, copied
 * server-side to its digest key; then manifest.json; then index.json with
 * If-None-Match: * (a name is never overwritten).  Blob-level resume through
 * the node's blob memo.  The whole contract is at the top of store_s3.c.
 */
#define KYB_LOG_MODULE "s3"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "image/image.h"
#include "image/safepath.h"
#include "store/backend.h"
#include "store/blob_memo.h"
#include "store/s3.h"
#include "store/s3_store.h"
#include "store/sigv4.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"

/* One blob on its way up: compressed bytes collected into a part buffer;
 * a full buffer goes out as a part of a multipart upload. */
typedef struct {
  struct s3_store *b;
  const char *tmp_key;
  unsigned char *buf;
  size_t len;
  char *upload_id;
  char **etags;
  int nparts;
} upload;

static int flush_part(upload *u, kyb_error **err) {
  if (u->upload_id == NULL && kyb_s3_mpu_create(u->b->s3, u->tmp_key, &u->upload_id, err) < 0)
    return -1;
  if (u->nparts >= KYB_S3_MAX_PARTS)
    return kyb_error_set(err, EFBIG, "blob needs more than %d parts of %zu bytes", KYB_S3_MAX_PARTS,
                         u->b->part_size);
  char **ne = realloc(u->etags, (size_t)(u->nparts + 1) * sizeof(*ne));
  if (ne == NULL)
    return kyb_error_set(err, ENOMEM, "upload part");
  u->etags = ne;
  u->etags[u->nparts] = NULL;
  if (kyb_s3_mpu_part(u->b->s3, u->tmp_key, u->upload_id, u->nparts + 1, u->buf, u->len,
                      &u->etags[u->nparts], err) < 0)
    return -1;
  u->nparts++;
  u->len = 0;
  return 0;
}

static int upload_sink(void *ud, const void *data, size_t len, kyb_error **err) {
  upload *u = ud;
  const unsigned char *p = data;
  while (len > 0) {
    size_t k = u->b->part_size - u->len < len ? u->b->part_size - u->len : len;
    memcpy(u->buf + u->len, p, k);
    u->len += k;
    p += k;
    len -= k;
    if (u->len == u->b->part_size && flush_part(u, err) < 0)
      return -1;
  }
  return 0;
}

static int random_hex(char out[33], kyb_error **err) {
  unsigned char r[16];
  if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
    return kyb_error_errno(err, "getrandom");
  for (size_t i = 0; i < sizeof(r); i++)
    snprintf(out + 2 * i, 3, "%02x", r[i]);
  return 0;
}

/* The end of a multipart blob: last part, complete, copy to the digest key,
 * temporary key removed. */
static int finish_multipart(upload *u, const char *name, const kyb_pack_result *res,
                            kyb_error **err) {
  struct s3_store *b = u->b;
  if (u->len > 0 && flush_part(u, err) < 0)
    return -1;
  if (kyb_s3_mpu_complete(b->s3, u->tmp_key, u->upload_id, u->etags, u->nparts, err) < 0)
    return -1;
  free(u->upload_id);
  u->upload_id = NULL; /* completed: nothing to abort; the object to delete */
  cleanup_free char *bk = kyb_s3store_blob_key(b, name, res->blob_digest);
  int r = bk ? kyb_s3_copy(b->s3, u->tmp_key, res->blob_size, bk, err)
             : kyb_error_set(err, ENOMEM, "blob key");
  cleanup_error kyb_error *e2 = NULL;
  if (kyb_s3_delete(b->s3, u->tmp_key, &e2) < 0)
    log_warn_chain(e2, "remove temporary upload s3://%s/%s (cleanup removes it)", b->bucket,
                   u->tmp_key);
  return r;
}

typedef struct {
  kyb_store *s;
  const char *part;
} progress_ctx;

static int pack_progress(void *ud, uint64_t bytes, kyb_error **err) {
  const progress_ctx *pc = ud;
  return kyb_store_progress_part(pc->s, pc->part, bytes, err);
}

/* Packs and uploads the file at `path` (`rel` in the image) as a blob of
 * image `name`. */
static int upload_file(struct s3_store *b, const char *name, const char *path, const char *rel,
                       kyb_pack_result *res, kyb_error **err) {
  char rnd[33];
  if (random_hex(rnd, err) < 0)
    return -1;
  char rest[64];
  snprintf(rest, sizeof(rest), "uploads/%s", rnd);
  cleanup_free char *tmp = kyb_s3store_key(b, name, rest);
  cleanup_free unsigned char *buf = malloc(b->part_size);
  if (tmp == NULL || buf == NULL)
    return kyb_error_set(err, ENOMEM, "upload buffer of %zu bytes", b->part_size);
  upload u = {.b = b, .tmp_key = tmp, .buf = buf};
  progress_ctx pc = {.s = b->self, .part = rel};
  kyb_pack_opts po = {.progress = pack_progress, .progress_ud = &pc};
  int r = kyb_pack_file(path, &po, upload_sink, &u, res, err);
  if (r == 0 && u.upload_id == NULL) { /* it all fit in one part: one PUT */
    cleanup_free char *bk = kyb_s3store_blob_key(b, name, res->blob_digest);
    r = bk ? kyb_s3_put(b->s3, bk, u.buf, u.len, false, err)
           : kyb_error_set(err, ENOMEM, "blob key");
  } else if (r == 0) {
    r = finish_multipart(&u, name, res, err);
  }
  if (r < 0 && u.upload_id != NULL) {
    cleanup_error kyb_error *e2 = NULL;
    if (kyb_s3_mpu_abort(b->s3, tmp, u.upload_id, &e2) < 0)
      log_warn_chain(e2, "abort multipart upload of s3://%s/%s (cleanup aborts it)", b->bucket,
                     tmp);
  }
  free(u.upload_id);
  for (int i = 0; i < u.nparts; i++)
    free(u.etags[i]);
  free(u.etags);
  if (r == 0) {
    kyb_blob_memo_put(b->memo_dir, res->file_digest, res->blob_digest, res->blob_size);
    r = kyb_store_progress_part_end(b->self, rel, res->file_size, err);
  }
  return r;
}

/* 1 when S3 has, under image `name`, the blob the memo names for the file
 * sha256:<sha> (`size` bytes) with the memo's blob size: a put retried after
 * a crash.  res is filled then, and nothing needs sending.  0: upload it. */
static int blob_present(struct s3_store *b, const char *name, const char *sha, uint64_t size,
                        kyb_pack_result *res, kyb_error **err) {
  char want[KYB_DIGEST_LEN + 1];
  char blob[KYB_DIGEST_LEN + 1];
  uint64_t blob_size = 0, have = 0;
  bool exists = false;
  snprintf(want, sizeof(want), "sha256:%s", sha);
  if (kyb_blob_memo_get(b->memo_dir, want, blob, &blob_size) != 1)
    return 0;
  cleanup_free char *bk = kyb_s3store_blob_key(b, name, blob);
  if (bk == NULL)
    return kyb_error_set(err, ENOMEM, "blob key");
  if (kyb_s3_head(b->s3, bk, &exists, &have, err) < 0)
    return -1;
  if (!exists || have != blob_size)
    return 0;
  memcpy(res->file_digest, want, sizeof(want));
  memcpy(res->blob_digest, blob, sizeof(blob));
  res->file_size = size;
  res->blob_size = blob_size;
  return 1;
}

typedef struct {
  size_t blobs;
  uint64_t bytes; /* compressed, not sent */
} skipped;

/* Every listed file, each digest as read equal to the manifest's. */
static int upload_files(struct s3_store *b, kyb_staging *st, const json_t *m, json_t *index,
                        skipped *sk, kyb_error **err) {
  size_t i;
  const json_t *f;
  json_array_foreach(json_object_get(m, "files"), i, f) {
    const char *rel = json_string_value(json_object_get(f, "path"));
    const char *sha = json_string_value(json_object_get(f, "sha256"));
    cleanup_free char *path = kyb_path_join(st->path, rel);
    kyb_pack_result res = {0};
    uint64_t size = (uint64_t)json_integer_value(json_object_get(f, "size"));
    if (path == NULL)
      return kyb_error_set(err, ENOMEM, "upload");
    int have = blob_present(b, st->name, sha, size, &res, err);
    if (have < 0)
      return kyb_error_wrap(err, "upload %s", rel);
    if (have > 0) {
      log_debug("%s: its blob %s is in S3 already", rel, res.blob_digest);
      sk->blobs++;
      sk->bytes += res.blob_size;
      if (kyb_s3_index_add(index, rel, &res, err) < 0 ||
          kyb_store_progress_part_end(b->self, rel, size, err) < 0)
        return -1;
      continue;
    }
    if (upload_file(b, st->name, path, rel, &res, err) < 0)
      return kyb_error_wrap(err, "upload %s", rel);
    if (strcmp(res.file_digest + 7, sha) != 0 || res.file_size != size)
      return kyb_error_set(err, EBADMSG,
                           "file %s changed after the manifest was written: it is now %s, the "
                           "manifest says sha256:%s",
                           rel, res.file_digest, sha);
    if (kyb_s3_index_add(index, rel, &res, err) < 0)
      return -1;
    log_debug("uploaded %s: %llu bytes as %llu", rel, (unsigned long long)res.file_size,
              (unsigned long long)res.blob_size);
  }
  return 0;
}

/* manifest.json and every file it lists, in bytes (for progress). */
static uint64_t image_bytes(const char *dir, const json_t *m) {
  uint64_t n = 0;
  size_t i;
  const json_t *f;
  json_array_foreach(json_object_get(m, "files"), i, f) {
    n += (uint64_t)json_integer_value(json_object_get(f, "size"));
  }
  struct stat sb;
  cleanup_free char *mp = kyb_path_join(dir, KYB_IMAGE_MANIFEST);
  if (mp != NULL && stat(mp, &sb) == 0)
    n += (uint64_t)sb.st_size;
  return n;
}

int kyb_s3store_put(kyb_store *s, kyb_staging *st, kyb_error **err) {
  struct s3_store *b = kyb_s3store_of(s);
  cleanup_json json_t *m = NULL;
  /* the builder hashed every file moments ago; the upload hashes each again
   * as it reads it and compares with the manifest below */
  if (kyb_staging_check(st, &m, err) < 0)
    return -1;
  cleanup_free char *ik = kyb_s3store_key(b, st->name, KYB_S3_INDEX);
  bool exists = false;
  if (ik == NULL)
    return kyb_error_set(err, ENOMEM, "publish");
  if (kyb_s3_head(b->s3, ik, &exists, NULL, err) < 0)
    return -1;
  if (exists)
    return kyb_error_set(err, EEXIST, "image %s already exists in %s", st->name, s->uri);
  cleanup_json json_t *index = kyb_s3_index_new(st->name, m);
  if (index == NULL)
    return kyb_error_set(err, ENOMEM, "index");
  kyb_store_progress_begin(s, st->name, image_bytes(st->path, m));
  skipped sk = {0};
  if (upload_files(b, st, m, index, &sk, err) < 0)
    return -1;
  if (sk.blobs > 0)
    log_info("%s: resumed: %zu of %zu blobs (%llu bytes) were in S3 already, not sent again",
             st->name, sk.blobs, json_array_size(json_object_get(m, "files")),
             (unsigned long long)sk.bytes);
  cleanup_free char *mpath = kyb_path_join(st->path, KYB_IMAGE_MANIFEST);
  kyb_pack_result mres = {0};
  if (mpath == NULL)
    return kyb_error_set(err, ENOMEM, "publish");
  if (upload_file(b, st->name, mpath, KYB_IMAGE_MANIFEST, &mres, err) < 0)
    return kyb_error_wrap(err, "upload manifest.json");
  if (kyb_s3_index_add(index, NULL, &mres, err) < 0)
    return -1;
  cleanup_free char *text = json_dumps(index, JSON_SORT_KEYS | JSON_INDENT(1));
  if (text == NULL)
    return kyb_error_set(err, ENOMEM, "index");
  if (kyb_s3_put(b->s3, ik, text, strlen(text), true, err) < 0) {
    if (kyb_error_code(*err) == EEXIST) {
      kyb_error_clear(err);
      return kyb_error_set(err, EEXIST, "image %s already exists in %s", st->name, s->uri);
    }
    return kyb_error_wrap(err, "write index.json");
  }
  st->published = true;
  log_info("image %s published in %s (%zu files)", st->name, s->uri,
           json_array_size(json_object_get(m, "files")));
  return 0;
}

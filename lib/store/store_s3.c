/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The s3:// store: s3://bucket/prefix (docs/image-format.md, "Remote stores").
 *
 *     <prefix>/<name>/blobs/sha256/<hex>   one zstd blob per image file and for
 *                                          manifest.json (pack.h)
 *     <prefix>/<name>/index.json           written last: the image exists
 *                                          exactly when it does
 *     <prefix>/<name>/uploads/<random>     a large blob while it uploads
 *
 * stage: a local staging directory, after checking the name is free: in
 * the spool (<cache root>/spool, a file:// store never published into), not
 * in the cache, so a cached download of a name that was deleted remotely
 * does not block a new image of that name.  put: layout check of the
 * staged image, then every file packed and uploaded while it is read — one
 * PUT when the blob fits in one part, else a multipart upload to a temporary
 * key (the blob digest is known only at the end), copied server-side to its
 * digest key and the temporary key deleted; each file's digest, computed on
 * the way, must equal the manifest's; then manifest.json; then index.json
 * with If-None-Match: * (a name is never overwritten: EEXIST).  A put that
 * dies leaves blobs and at most an unfinished multipart upload, never an
 * index.json: nothing visible; cleanup removes the rest.  A put retried
 * under the same name resumes at blob granularity: a file whose blob the
 * node's blob memo (blob_memo.h) names and that S3 has under this name
 * with the memo's size (HEAD) is not sent again; the pull checks both
 * digests, so a wrong memo or a damaged blob is caught there.
 *
 * get_path: the image downloaded into the node cache (a file:// store at
 * <cache root>/s3/<bucket>/@<prefix>, kyb_store_cache_root), each blob checked against
 * its blob digest while it arrives and the file against its digest after
 * decompression, manifest.json first and matched against the index; the
 * cache store publishes it atomically only when every part is complete.  A
 * cached copy whose manifest digest differs from the index's (the name was
 * deleted and used again) is replaced.
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

#define DOWNLOAD_ATTEMPTS 3

struct s3_store *kyb_s3store_of(kyb_store *s) {
  return s->priv;
}

char *kyb_s3store_key(const struct s3_store *b, const char *name, const char *rest) {
  char *k = NULL;
  if (asprintf(&k, "%s%s%s%s%s", b->prefix, *b->prefix ? "/" : "", name, rest ? "/" : "",
               rest ? rest : "") < 0)
    return NULL;
  return k;
}

char *kyb_s3store_blob_key(const struct s3_store *b, const char *name, const char *digest) {
  char rest[96];
  snprintf(rest, sizeof(rest), "blobs/sha256/%s", digest + 7);
  return kyb_s3store_key(b, name, rest);
}

static int open_local(const char *dir, kyb_store **out, kyb_error **err) {
  if (*out != NULL)
    return 0;
  cleanup_free char *uri = NULL;
  if (asprintf(&uri, "file://%s", dir) < 0)
    return kyb_error_set(err, ENOMEM, "node cache");
  if (kyb_store_open(uri, KYB_STORE_CREATE, out, err) < 0)
    return kyb_error_wrap(err, "node image cache (KYBERNATE_IMAGE_CACHE)");
  return 0;
}

/* ---- put ---------------------------------------------------------------------- */

static int s3_stage(kyb_store *s, kyb_staging *st, kyb_error **err) {
  struct s3_store *b = kyb_s3store_of(s);
  cleanup_free char *ik = kyb_s3store_key(b, st->name, KYB_S3_INDEX);
  bool exists = false;
  if (ik == NULL)
    return kyb_error_set(err, ENOMEM, "stage");
  if (kyb_s3_head(b->s3, ik, &exists, NULL, err) < 0)
    return -1;
  if (exists)
    return kyb_error_set(err, EEXIST, "image %s already exists in %s", st->name, s->uri);
  if (open_local(b->spool_dir, &b->spool, err) < 0)
    return -1;
  /* the spool's own stage: a locked .staging-<name>-XXXXXX directory that
   * its cleanup removes once no process holds it */
  return b->spool->ops->stage(b->spool, st, err);
}

static void s3_discard(kyb_store *s, kyb_staging *st) {
  struct s3_store *b = kyb_s3store_of(s);
  if (b->spool == NULL || st->path == NULL)
    return;
  st->published = false; /* the local copy goes whether or not the upload did */
  b->spool->ops->discard(b->spool, st);
}

/* ---- get ---------------------------------------------------------------------- */

static int fetch_index(struct s3_store *b, kyb_store *s, const char *name, json_t **out,
                       size_t *len, kyb_error **err) {
  cleanup_free char *ik = kyb_s3store_key(b, name, KYB_S3_INDEX);
  cleanup_free char *text = NULL;
  size_t l = 0;
  if (ik == NULL)
    return kyb_error_set(err, ENOMEM, "index");
  if (kyb_s3_get_small(b->s3, ik, KYB_S3_INDEX_MAX_BYTES, &text, &l, err) < 0) {
    if (kyb_error_code(*err) != ENOENT)
      return -1;
    kyb_error_clear(err);
    return kyb_error_set(err, ENOENT, "no image %s in %s", name, s->uri);
  }
  if (len != NULL)
    *len = l;
  return kyb_s3_index_parse(text, l, name, out, err);
}

typedef struct {
  kyb_unpack *u;
  bool failed; /* the unpacker refused: the blob is bad, not the transfer */
  kyb_store *s;
  const char *part;
} dl;

static int download_sink(void *ud, const void *data, size_t len, kyb_error **err) {
  dl *d = ud;
  if (kyb_unpack_feed(d->u, data, len, err) < 0) {
    d->failed = true;
    return -1;
  }
  return kyb_store_progress_part(d->s, d->part, kyb_unpack_file_bytes(d->u), err);
}

/* Blob `entry` of image `name` into the new file fd, both digests checked;
 * a transfer that breaks off is tried again from the start. */
static int download_blob(struct s3_store *b, const char *name, const json_t *entry, int fd,
                         const char *what, kyb_error **err) {
  const char *blob = json_string_value(json_object_get(entry, "blob"));
  const char *digest = json_string_value(json_object_get(entry, "digest"));
  uint64_t size = (uint64_t)json_integer_value(json_object_get(entry, "size"));
  cleanup_free char *bk = kyb_s3store_blob_key(b, name, blob);
  if (bk == NULL)
    return kyb_error_set(err, ENOMEM, "download");
  for (int attempt = 1;; attempt++) {
    dl d = {.s = b->self, .part = what};
    if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
      return kyb_error_errno(err, "%s: reset", what);
    if (kyb_unpack_new(fd, blob, digest, size, &d.u, err) < 0)
      return kyb_error_wrap(err, "%s", what);
    int r = kyb_s3_get(b->s3, bk, download_sink, &d, err);
    if (r == 0)
      r = kyb_unpack_finish(d.u, err);
    kyb_unpack_free(d.u);
    if (r == 0 && fsync(fd) < 0)
      return kyb_error_errno(err, "%s: fsync", what);
    if (r == 0) {
      kyb_blob_memo_put(b->memo_dir, digest, blob,
                        (uint64_t)json_integer_value(json_object_get(entry, "blobSize")));
      return kyb_store_progress_part_end(b->self, what, size, err);
    }
    int e = kyb_error_code(*err);
    bool transient = !d.failed && (e == EIO || e == ETIMEDOUT || e == ECONNREFUSED ||
                                   e == ECONNRESET || e == EHOSTUNREACH);
    if (!transient || attempt >= DOWNLOAD_ATTEMPTS)
      return kyb_error_wrap(err, "%s", what);
    log_warn_chain(*err, "%s: attempt %d of %d failed; starting over", what, attempt,
                   DOWNLOAD_ATTEMPTS);
    kyb_error_clear(err);
  }
}

/* A new file at rel beneath the staging directory, for one part. */
static int create_part(int rootfd, const char *rel, kyb_error **err) {
  const char *leaf = NULL;
  cleanup_close int dfd = kyb_open_parent_beneath(rootfd, rel, true, &leaf, err);
  if (dfd < 0)
    return -1;
  int fd = openat(dfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return kyb_error_errno(err, "create %s", rel);
  return fd;
}

/* Every part of the image into the staging directory `dir`. */
static int download_parts(struct s3_store *b, const char *name, const json_t *index,
                          const char *dir, kyb_error **err) {
  cleanup_close int root = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (root < 0)
    return kyb_error_errno(err, "open %s", dir);
  cleanup_close int mfd = create_part(root, KYB_IMAGE_MANIFEST, err);
  if (mfd < 0 ||
      download_blob(b, name, json_object_get(index, "manifest"), mfd, "manifest.json", err) < 0)
    return -1;
  cleanup_json json_t *m = NULL;
  if (kyb_image_load_manifest(dir, &m, err) < 0)
    return kyb_error_wrap(err, "downloaded manifest of %s", name);
  const char *mname = json_string_value(json_object_get(m, "name"));
  if (strcmp(mname, name) != 0)
    return kyb_error_set(err, EBADMSG, "the manifest names the image \"%s\", not \"%s\"", mname,
                         name);
  if (kyb_s3_index_match_manifest(index, m, err) < 0)
    return kyb_error_wrap(err, "index.json of %s does not match its manifest", name);
  size_t i;
  const json_t *f;
  json_array_foreach(json_object_get(index, "files"), i, f) {
    const char *rel = json_string_value(json_object_get(f, "path"));
    cleanup_close int fd = create_part(root, rel, err);
    if (fd < 0 || download_blob(b, name, f, fd, rel, err) < 0)
      return -1;
  }
  return 0;
}

/* The cached copy of `name` when its manifest digest is `want`; else it is
 * removed (a stale copy of an earlier image of that name).  1: usable. */
static int cached_copy(kyb_store *cache, const char *name, const char *want, char **path,
                       kyb_error **err) {
  cleanup_free char *p = NULL;
  cleanup_error kyb_error *miss = NULL;
  if (kyb_store_get_path(cache, name, &p, &miss) < 0)
    return 0;
  cleanup_free char *have = NULL;
  cleanup_error kyb_error *derr = NULL;
  if (kyb_image_digest(p, &have, &derr) == 0 && strcmp(have, want) == 0) {
    *path = steal_ptr(p);
    return 1;
  }
  log_info("cached copy of %s is not the image the store holds now: replacing it", name);
  if (kyb_store_delete(cache, name, err) < 0)
    return kyb_error_wrap(err, "remove stale cached copy");
  return 0;
}

static int s3_get_path(kyb_store *s, const char *name, char **path, kyb_error **err) {
  struct s3_store *b = kyb_s3store_of(s);
  cleanup_json json_t *index = NULL;
  if (fetch_index(b, s, name, &index, NULL, err) < 0)
    return -1;
  if (open_local(b->cache_dir, &b->cache, err) < 0)
    return -1;
  const char *want =
      json_string_value(json_object_get(json_object_get(index, "manifest"), "digest"));
  int c = cached_copy(b->cache, name, want, path, err);
  if (c != 0)
    return c < 0 ? -1 : 0;
  kyb_staging *stg = NULL;
  if (kyb_store_stage(b->cache, name, &stg, err) < 0)
    return kyb_error_wrap(err, "download %s", name);
  log_info("downloading %s from %s (%zu files)", name, s->uri,
           json_array_size(json_object_get(index, "files")));
  uint64_t total =
      (uint64_t)json_integer_value(json_object_get(json_object_get(index, "manifest"), "size"));
  size_t i;
  const json_t *f;
  json_array_foreach(json_object_get(index, "files"), i, f) {
    total += (uint64_t)json_integer_value(json_object_get(f, "size"));
  }
  kyb_store_progress_begin(s, name, total);
  int r = download_parts(b, name, index, kyb_staging_path(stg), err);
  if (r == 0)
    r = kyb_store_put(b->cache, stg, err);
  kyb_staging_free(stg);                         /* removes everything unless published */
  if (r < 0 && kyb_error_code(*err) == EEXIST) { /* another download won the race */
    kyb_error_clear(err);
    c = cached_copy(b->cache, name, want, path, err);
    return c > 0 ? 0 : c < 0 ? -1 : kyb_error_set(err, EAGAIN, "download %s: raced", name);
  }
  if (r < 0)
    return kyb_error_wrap(err, "download %s from %s", name, s->uri);
  return kyb_store_get_path(b->cache, name, path, err);
}

/* ---- stat, list, delete, cleanup ------------------------------------------------- */

static int s3_stat(kyb_store *s, const char *name, kyb_image_summary *out, kyb_error **err) {
  struct s3_store *b = kyb_s3store_of(s);
  cleanup_json json_t *index = NULL;
  if (fetch_index(b, s, name, &index, NULL, err) < 0)
    return -1;
  uint64_t msize =
      (uint64_t)json_integer_value(json_object_get(json_object_get(index, "manifest"), "size"));
  /* the index carries created, source and files[].size as the manifest does */
  if (kyb_image_summary_from_manifest(name, index, msize, out) < 0)
    return kyb_error_set(err, ENOMEM, "image %s", name);
  return 0;
}

/* "<prefix>/" or "" */
static char *list_prefix(const struct s3_store *b) {
  char *p = NULL;
  if (asprintf(&p, "%s%s", b->prefix, *b->prefix ? "/" : "") < 0)
    return NULL;
  return p;
}

static int s3_list(kyb_store *s, kyb_image_summary **out, size_t *n, kyb_error **err) {
  struct s3_store *b = kyb_s3store_of(s);
  cleanup_free char *lp = list_prefix(b);
  kyb_s3_object *objs = NULL;
  char **pre = NULL;
  size_t nobj = 0, npre = 0;
  if (lp == NULL)
    return kyb_error_set(err, ENOMEM, "list");
  if (kyb_s3_list(b->s3, lp, "/", &objs, &nobj, &pre, &npre, err) < 0)
    return -1;
  kyb_s3_objects_free(objs, nobj);
  kyb_image_summary *v = calloc(npre ? npre : 1, sizeof(*v));
  size_t cnt = 0;
  int r = 0;
  if (v == NULL)
    r = kyb_error_set(err, ENOMEM, "list");
  for (size_t i = 0; v != NULL && r == 0 && i < npre; i++) {
    size_t pl = strlen(lp), l = strlen(pre[i]);
    if (l <= pl + 1 || strncmp(pre[i], lp, pl) != 0)
      continue;
    cleanup_free char *name = strndup(pre[i] + pl, l - pl - 1);
    if (name == NULL || !kyb_image_name_valid(name))
      continue; /* not one of ours */
    cleanup_error kyb_error *why = NULL;
    int st = s3_stat(s, name, &v[cnt], &why);
    if (st < 0 && kyb_error_code(why) == ENOENT)
      continue; /* no index.json: an upload in progress or abandoned, not an image */
    if (st < 0 && (kyb_error_code(why) == ENOMEM || kyb_error_code(why) == EACCES)) {
      kyb_error_clear(err); /* the store as a whole is unusable: that error, not a listing */
      *err = steal_ptr(why);
      r = -1;
      break;
    }
    if (st < 0 && kyb_image_summary_broken(name, why, &v[cnt]) < 0) {
      r = kyb_error_set(err, ENOMEM, "list");
      break;
    }
    cnt++;
  }
  for (size_t i = 0; i < npre; i++)
    free(pre[i]);
  free(pre);
  if (r < 0) {
    kyb_image_summaries_free(v, cnt);
    return kyb_error_wrap(err, "list %s", s->uri);
  }
  if (cnt > 1)
    qsort(v, cnt, sizeof(*v), kyb_image_summary_cmp);
  *out = v;
  *n = cnt;
  return 0;
}

/* Deletes every object under <prefix>/<name>/ older than `before` (0: all)
 * and aborts its multipart uploads; *count gets how many went. */
static int remove_under(struct s3_store *b, const char *name, time_t before, bool keep_published,
                        size_t *count, kyb_error **err) {
  cleanup_free char *dir = kyb_s3store_key(b, name, "");
  kyb_s3_object *objs = NULL;
  size_t n = 0;
  *count = 0;
  if (dir == NULL)
    return kyb_error_set(err, ENOMEM, "remove");
  if (kyb_s3_list(b->s3, dir, NULL, &objs, &n, NULL, NULL, err) < 0)
    return -1;
  int r = 0;
  for (size_t i = 0; r == 0 && i < n; i++) {
    const char *rest = objs[i].key + strlen(dir);
    if (keep_published && strncmp(rest, "uploads/", 8) != 0)
      continue;
    if (before != 0 && (objs[i].mtime < 0 || objs[i].mtime > before))
      continue;
    r = kyb_s3_delete(b->s3, objs[i].key, err);
    (*count) += r == 0;
  }
  kyb_s3_objects_free(objs, n);
  kyb_s3_upload *up = NULL;
  size_t nu = 0;
  if (r == 0 && kyb_s3_list_uploads(b->s3, dir, &up, &nu, err) < 0)
    r = -1;
  for (size_t i = 0; r == 0 && i < nu; i++) {
    if (before != 0 && (up[i].initiated < 0 || up[i].initiated > before))
      continue;
    r = kyb_s3_mpu_abort(b->s3, up[i].key, up[i].upload_id, err);
    (*count) += r == 0;
  }
  kyb_s3_uploads_free(up, nu);
  return r;
}

static int s3_remove(kyb_store *s, const char *name, kyb_error **err) {
  struct s3_store *b = kyb_s3store_of(s);
  cleanup_free char *ik = kyb_s3store_key(b, name, KYB_S3_INDEX);
  bool exists = false;
  if (ik == NULL)
    return kyb_error_set(err, ENOMEM, "delete");
  if (kyb_s3_head(b->s3, ik, &exists, NULL, err) < 0)
    return -1;
  if (!exists)
    return kyb_error_set(err, ENOENT, "no image %s in %s", name, s->uri);
  /* index.json first: the image is gone in one step, the blobs follow */
  if (kyb_s3_delete(b->s3, ik, err) < 0)
    return -1;
  size_t count = 0;
  if (remove_under(b, name, 0, false, &count, err) < 0)
    return kyb_error_wrap(err, "image %s is hidden but not fully removed; cleanup removes the rest",
                          name);
  log_info("image %s deleted from %s (%zu objects)", name, s->uri, count + 1);
  return 0;
}

static int local_cleanup(const char *dir, kyb_store **st, uint64_t min_age_s, size_t *removed,
                         kyb_error **err) {
  struct stat sb;
  if (*st == NULL && stat(dir, &sb) < 0)
    return 0; /* never used on this node */
  size_t k = 0;
  if (open_local(dir, st, err) < 0 || kyb_store_cleanup(*st, min_age_s, &k, err) < 0)
    return -1;
  *removed += k;
  return 0;
}

static int s3_cleanup(kyb_store *s, uint64_t min_age_s, size_t *removed, kyb_error **err) {
  struct s3_store *b = kyb_s3store_of(s);
  *removed = 0;
  if (local_cleanup(b->spool_dir, &b->spool, min_age_s, removed, err) < 0 ||
      local_cleanup(b->cache_dir, &b->cache, min_age_s, removed, err) < 0)
    return -1;
  cleanup_free char *lp = list_prefix(b);
  kyb_s3_object *objs = NULL;
  char **pre = NULL;
  size_t nobj = 0, npre = 0;
  if (lp == NULL)
    return kyb_error_set(err, ENOMEM, "cleanup");
  if (kyb_s3_list(b->s3, lp, "/", &objs, &nobj, &pre, &npre, err) < 0)
    return -1;
  kyb_s3_objects_free(objs, nobj);
  time_t before = time(NULL) - (time_t)min_age_s;
  int r = 0;
  for (size_t i = 0; r == 0 && i < npre; i++) {
    size_t pl = strlen(lp), l = strlen(pre[i]);
    cleanup_free char *name = l > pl + 1 ? strndup(pre[i] + pl, l - pl - 1) : NULL;
    if (name == NULL || !kyb_image_name_valid(name))
      continue;
    cleanup_free char *ik = kyb_s3store_key(b, name, KYB_S3_INDEX);
    bool published = false;
    size_t k = 0;
    r = ik ? kyb_s3_head(b->s3, ik, &published, NULL, err) : kyb_error_set(err, ENOMEM, "cleanup");
    /* an image keeps its blobs; only its stray temporary uploads go.  Parts
     * of an image without index.json go once they are older than min_age:
     * an upload still running longer than that loses them (choose min_age
     * above the longest upload). */
    if (r == 0)
      r = remove_under(b, name, before == 0 ? 1 : before, published, &k, err);
    if (r == 0 && k > 0) {
      log_info("%s: removed %zu leftover objects of %s%s", s->uri, k, name,
               published ? "" : " (never published)");
      (*removed)++;
    }
  }
  for (size_t i = 0; i < npre; i++)
    free(pre[i]);
  free(pre);
  return r < 0 ? kyb_error_wrap(err, "clean up %s", s->uri) : 0;
}

static void s3_close(kyb_store *s) {
  struct s3_store *b = kyb_s3store_of(s);
  if (b == NULL)
    return;
  kyb_store_close(b->cache);
  kyb_store_close(b->spool);
  kyb_s3_free(b->s3);
  free(b->bucket);
  free(b->prefix);
  free(b->cache_dir);
  free(b->spool_dir);
  free(b->memo_dir);
  free(b);
  s->priv = NULL;
}

static const kyb_store_ops s3_ops = {
    .stage = s3_stage,
    .put = kyb_s3store_put,
    .discard = s3_discard,
    .get_path = s3_get_path,
    .stat = s3_stat,
    .list = s3_list,
    .remove = s3_remove,
    .cleanup = s3_cleanup,
    .close = s3_close,
};

/* <cache>/s3/<bucket>/@<prefix, '/' as '+'>: one flat directory per store,
 * so the cache of s3://b/a never holds that of s3://b/a/x. */
static int local_dirs(kyb_store *s, struct s3_store *b, kyb_error **err) {
  const char *root = NULL;
  if (kyb_store_cache_root(&root, err) < 0)
    return -1;
  cleanup_free char *flat = strdup(b->prefix);
  if (flat == NULL)
    return kyb_error_set(err, ENOMEM, "cache");
  for (char *p = flat; *p; p++)
    if (*p == '/')
      *p = '+';
  if (strlen(flat) > 200) { /* too long for one directory name: its digest */
    char hex[65];
    kyb_sigv4_sha256_hex(b->prefix, strlen(b->prefix), hex);
    snprintf(flat, strlen(flat) + 1, "%s", hex);
  }
  if (asprintf(&b->cache_dir, "%s/s3/%s/@%s", root, b->bucket, flat) < 0)
    b->cache_dir = NULL;
  if (asprintf(&b->spool_dir, "%s/spool", root) < 0)
    b->spool_dir = NULL;
  if (kyb_blob_memo_dir(&b->memo_dir, err) < 0)
    return -1;
  if (b->cache_dir == NULL || b->spool_dir == NULL || (s->local_dir = strdup(b->cache_dir)) == NULL)
    return kyb_error_set(err, ENOMEM, "cache");
  return 0;
}

static int open_s3(kyb_store *s, struct s3_store *b, const char *rest, kyb_error **err) {
  kyb_s3_config cfg = {0};
  if (kyb_s3_uri_parse(rest, &b->bucket, &b->prefix, err) < 0)
    return -1;
  if (asprintf(&s->uri, "s3://%s%s%s", b->bucket, *b->prefix ? "/" : "", b->prefix) < 0) {
    s->uri = NULL;
    return kyb_error_set(err, ENOMEM, "open s3 store");
  }
  if (local_dirs(s, b, err) < 0)
    return kyb_error_wrap(err, "open store %s", s->uri);
  if (s->flags & KYB_STORE_LOCAL_ONLY)
    return 0; /* the node cache only: no client, no credentials (store.c serves it) */
  if (kyb_s3_config_load(&cfg, err) < 0)
    return kyb_error_wrap(err, "open store %s", s->uri);
  b->part_size = cfg.part_size;
  int r = kyb_s3_new(&cfg, b->bucket, &b->s3, err);
  if (r == 0) /* a cancel reaches a stalled request */
    kyb_s3_set_abort(b->s3, kyb_store_stop_requested, s);
  kyb_s3_config_clear(&cfg);
  return r;
}

int kyb_store_s3_open(kyb_store *s, const char *rest, kyb_error **err) {
  struct s3_store *b = calloc(1, sizeof(*b));
  if (b == NULL)
    return kyb_error_set(err, ENOMEM, "open s3 store");
  s->ops = &s3_ops;
  s->priv = b;
  b->self = s;
  if (open_s3(s, b, rest, err) < 0) {
    s3_close(s); /* the caller frees s and its uri, not what we hold */
    s->ops = NULL;
    return -1;
  }
  return 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Upload and fetch jobs over the stores (transfer.h).
 */
#define KYB_LOG_MODULE "transfer"

#include "uploader/transfer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/image.h"
#include "image/safepath.h"
#include "store/store.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"

#define COPY_CHUNK (8u << 20)

static int on_progress(void *ud, const kyb_store_progress *p) {
  cleanup_error kyb_error *err = NULL;
  return kyb_job_ctx_progress(ud, p->part, p->done, p->total, &err) < 0 ? -1 : 0;
}

static int on_stop(void *ud) {
  return kyb_job_ctx_cancelled(ud) ? 1 : 0;
}

static int check_cancel(kyb_job_ctx *ctx, kyb_error **err) {
  if (kyb_job_ctx_cancelled(ctx))
    return kyb_error_set(err, ECANCELED, "job %s cancelled", kyb_job_ctx_id(ctx));
  return 0;
}

/* manifest.json plus every listed file, in bytes. */
static uint64_t image_bytes(int dirfd, const json_t *m) {
  uint64_t n = 0;
  size_t i;
  const json_t *f;
  json_array_foreach(json_object_get(m, "files"), i, f) {
    n += (uint64_t)json_integer_value(json_object_get(f, "size"));
  }
  struct stat sb;
  if (fstatat(dirfd, KYB_IMAGE_MANIFEST, &sb, AT_SYMLINK_NOFOLLOW) == 0)
    n += (uint64_t)sb.st_size;
  return n;
}

/* ---- linking an image into a staging directory ----------------------------------- */

typedef struct {
  kyb_job_ctx *ctx;
  uint64_t done, total;
} copy_state;

/* n more bytes copied: progress (and the cancel check). */
static int copied(copy_state *cs, const char *rel, size_t n, kyb_error **err) {
  cs->done += n;
  return kyb_job_ctx_progress(cs->ctx, rel, cs->done, cs->total, err);
}

/* read/write, where copy_file_range cannot go (across some file systems). */
static int copy_rw(int in, int out, const char *rel, copy_state *cs, kyb_error **err) {
  cleanup_free char *buf = malloc(COPY_CHUNK);
  if (buf == NULL)
    return kyb_error_set(err, ENOMEM, "copy buffer");
  for (;;) {
    ssize_t n = read(in, buf, COPY_CHUNK);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return kyb_error_errno(err, "read %s", rel);
    if (n == 0)
      return 0;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(out, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0)
        return kyb_error_errno(err, "write %s", rel);
      off += w;
    }
    if (copied(cs, rel, (size_t)n, err) < 0)
      return -1;
  }
}

static int copy_fd(int in, int out, const char *rel, copy_state *cs, kyb_error **err) {
  for (bool first = true;; first = false) {
    ssize_t n = copy_file_range(in, NULL, out, NULL, COPY_CHUNK, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && first &&
        (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
      if (copy_rw(in, out, rel, cs, err) < 0)
        return -1;
      break;
    }
    if (n < 0)
      return kyb_error_errno(err, "copy %s", rel);
    if (n == 0)
      break;
    if (copied(cs, rel, (size_t)n, err) < 0)
      return -1;
  }
  if (fsync(out) < 0)
    return kyb_error_errno(err, "fsync %s", rel);
  return 0;
}

/* rel from the image at srcfd into the staging directory at dstfd: a hard
 * link, or a copy where the two are on different file systems. */
static int link_part(int srcfd, int dstfd, const char *rel, copy_state *cs, kyb_error **err) {
  const char *sleaf = NULL, *dleaf = NULL;
  cleanup_close int sp = kyb_open_parent_beneath(srcfd, rel, false, &sleaf, err);
  if (sp < 0)
    return kyb_error_wrap(err, "image file %s", rel);
  cleanup_close int dp = kyb_open_parent_beneath(dstfd, rel, true, &dleaf, err);
  if (dp < 0)
    return kyb_error_wrap(err, "staging %s", rel);
  if (linkat(sp, sleaf, dp, dleaf, 0) == 0)
    return 0;
  if (errno != EXDEV && errno != EPERM && errno != EMLINK)
    return kyb_error_errno(err, "link %s into the staging directory", rel);
  cleanup_close int in = openat(sp, sleaf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (in < 0)
    return kyb_error_errno(err, "open %s", rel);
  cleanup_close int out =
      openat(dp, dleaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (out < 0)
    return kyb_error_errno(err, "create %s in the staging directory", rel);
  return copy_fd(in, out, rel, cs, err);
}

static int link_image(kyb_job_ctx *ctx, const char *src, const char *dst, const json_t *m,
                      uint64_t total, kyb_error **err) {
  cleanup_close int sfd = open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (sfd < 0)
    return kyb_error_errno(err, "open image %s", src);
  cleanup_close int dfd = open(dst, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0)
    return kyb_error_errno(err, "open staging directory %s", dst);
  copy_state cs = {.ctx = ctx, .total = total};
  size_t i;
  const json_t *f;
  json_array_foreach(json_object_get(m, "files"), i, f) {
    if (link_part(sfd, dfd, json_string_value(json_object_get(f, "path")), &cs, err) < 0)
      return -1;
  }
  /* manifest.json last, as the builder writes it */
  return link_part(sfd, dfd, KYB_IMAGE_MANIFEST, &cs, err);
}

/* ---- upload ----------------------------------------------------------------------- */

/* Stages and publishes the local image at dir in dst. */
static int publish(kyb_job_ctx *ctx, const kyb_job_request *req, kyb_store *dst, const char *dir,
                   const json_t *m, uint64_t total, kyb_error **err) {
  kyb_staging *st = NULL;
  if (kyb_store_stage(dst, req->name, &st, err) < 0)
    return -1;
  int r = link_image(ctx, dir, kyb_staging_path(st), m, total, err);
  if (r < 0)
    kyb_error_wrap(err, "stage %s", req->source);
  if (r == 0)
    r = check_cancel(ctx, err);
  if (r == 0 && (r = kyb_store_put(dst, st, err)) < 0 && kyb_job_ctx_cancelled(ctx)) {
    kyb_error_clear(err);
    kyb_error_set(err, ECANCELED, "job %s cancelled: nothing published", kyb_job_ctx_id(ctx));
  }
  kyb_staging_free(st); /* the staging directory goes unless published */
  return r;
}

/* The source image's directory in its (local) store. */
static int local_image(const kyb_job_request *req, char **dir, kyb_error **err) {
  kyb_store *src = NULL;
  if (kyb_store_open(req->source_store, 0, &src, err) < 0)
    return kyb_error_wrap(err, "local image %s", req->source);
  int r = kyb_store_get_path(src, req->name, dir, err);
  kyb_store_close(src);
  return r < 0 ? kyb_error_wrap(err, "local image %s", req->source) : 0;
}

static int upload(kyb_job_ctx *ctx, const kyb_job_request *req, kyb_job_result *res,
                  kyb_error **err) {
  cleanup_free char *dir = NULL;
  cleanup_json json_t *m = NULL;
  if (local_image(req, &dir, err) < 0)
    return -1;
  /* The layout and the manifest's name here; every file's digest is
   * checked again while the store packs it (remote) or was by the builder. */
  if (kyb_image_verify_layout(dir, &m, err) < 0)
    return kyb_error_wrap(err, "local image %s", req->source);
  const char *mname = json_string_value(json_object_get(m, "name"));
  if (mname == NULL || strcmp(mname, req->name) != 0)
    return kyb_error_set(err, EINVAL, "local image %s: its manifest names it \"%s\"", req->source,
                         mname ? mname : "");
  cleanup_close int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
  if (dfd < 0)
    return kyb_error_errno(err, "open %s", dir ? dir : "(none)");
  uint64_t total = image_bytes(dfd, m);
  if (kyb_job_ctx_progress(ctx, NULL, 0, total, err) < 0)
    return -1;
  kyb_store *dst = NULL;
  if (kyb_store_open(req->dest_store, KYB_STORE_CREATE, &dst, err) < 0)
    return -1;
  kyb_store_set_progress(dst, on_progress, ctx);
  kyb_store_set_stop(dst, on_stop, ctx);
  int r = publish(ctx, req, dst, dir, m, total, err);
  if (r == 0)
    res->ref = kyb_image_ref_format(kyb_store_uri(dst), req->name);
  kyb_store_close(dst);
  if (r < 0)
    return -1;
  res->size = total;
  if (res->ref == NULL)
    return kyb_error_set(err, ENOMEM, "result");
  return kyb_image_digest(dir, &res->digest, err);
}

/* ---- fetch ------------------------------------------------------------------------ */

static int fetch(kyb_job_ctx *ctx, const kyb_job_request *req, kyb_job_result *res,
                 kyb_error **err) {
  kyb_store *s = NULL;
  cleanup_free char *path = NULL;
  cleanup_json json_t *m = NULL;
  if (kyb_store_open(req->source_store, 0, &s, err) < 0)
    return -1;
  kyb_store_set_progress(s, on_progress, ctx);
  kyb_store_set_stop(s, on_stop, ctx);
  int r = kyb_store_get_path(s, req->name, &path, err);
  kyb_store_close(s);
  if (r < 0 && kyb_job_ctx_cancelled(ctx)) {
    kyb_error_clear(err);
    return kyb_error_set(err, ECANCELED, "job %s cancelled: nothing cached", kyb_job_ctx_id(ctx));
  }
  if (r < 0)
    return -1;
  if (kyb_image_load_manifest(path, &m, err) < 0)
    return kyb_error_wrap(err, "fetched image %s", req->source);
  cleanup_close int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0)
    return kyb_error_errno(err, "open %s", path);
  res->size = image_bytes(dfd, m);
  res->ref = strdup(req->source);
  if (res->ref == NULL)
    return kyb_error_set(err, ENOMEM, "result");
  if (kyb_image_digest(path, &res->digest, err) < 0)
    return -1;
  res->path = steal_ptr(path);
  return 0;
}

int kyb_transfer_run(void *ud, kyb_job_ctx *ctx, const kyb_job_request *req, kyb_job_result *res,
                     kyb_error **err) {
  (void)ud;
  switch (req->op) {
  case KYB_JOB_UPLOAD:
    return upload(ctx, req, res, err);
  case KYB_JOB_FETCH:
    return fetch(ctx, req, res, err);
  }
  return kyb_error_set(err, EINVAL, "unknown job op %d", (int)req->op);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * oci:// push and pull.
 *
 * Push (put): the staged image's layout is checked, then every file is
 * compressed while it is read (kyb_pack_file) straight into a blob upload:
 * POST /blobs/uploads/, PATCH in chunks of CHUNK bytes, PUT ?digest= with
 * the rest (one PUT when the blob is small).  The file's digest and size
 * from the compression must be the manifest's, else the push stops: what is
 * pushed is what the checkpoint hashed.  A part whose blob the node has
 * pushed or pulled before (the blob memo, below) and the registry has is not
 * sent again.  Then manifest.json as the config
 * blob (skipped when the registry has it), and the registry manifest LAST:
 * until that PUT no tag exists, so a push that dies half-way leaves only
 * unreferenced blobs and upload sessions, which the registry collects.  A
 * blob whose upload fails on a connection error or a 5xx/429/416 is started
 * over (distribution cannot resume an upload after a broken PATCH), up to
 * BLOB_ATTEMPTS times.  A tag that exists is never overwritten (EEXIST),
 * checked at stage, before the first blob and again before the manifest;
 * distribution has no conditional PUT, so two pushes of one name in the same
 * instant can still race.
 *
 * Pull (get_path): registry manifest -> config blob (manifest.json, checked
 * against its digest and validated) -> the layers must be exactly its files
 * -> each blob streams through kyb_unpack into its file in a staging
 * directory of the node cache, which checks the blob digest, the size and
 * the file digest -> the cache store publishes the directory atomically.  A
 * damaged byte anywhere fails the pull and the staging directory goes: the
 * cache never holds a half or unverified image.  A cached copy whose
 * manifest digest is the registry's is used as it is (the restore path
 * verifies every file before use); a stale one is replaced.
 */
#define KYB_LOG_MODULE "oci"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "image/image.h"
#include "image/safepath.h"
#include "store/blob_memo.h"
#include "store/oci_store.h"
#include "store/pack.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"

#define CHUNK (16u << 20)
#define BLOB_ATTEMPTS 3
#define LOCATION_MAX 8192u
#define OCTET "Content-Type: application/octet-stream"

static void pause_ms(long ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Parts of 16 MiB and more get a line each: long transfers show progress. */
static void report(const char *path, const char *verb, uint64_t file, uint64_t blob, uint64_t ms) {
  double mib = (double)file / (1 << 20);
  if (file >= (16u << 20))
    log_info("%s %s: %.1f MiB as %.1f MiB in %.1f s (%.0f MiB/s)", verb, path, mib,
             (double)blob / (1 << 20), (double)ms / 1000, ms ? mib * 1000 / (double)ms : 0.0);
  else
    log_debug("%s %s: %llu bytes as %llu", verb, path, (unsigned long long)file,
              (unsigned long long)blob);
}

static bool transient_status(long st) {
  return st >= 500 || st == 429 || st == 408 || st == 416;
}

static bool transient_errno(int e) {
  return e == ECONNREFUSED || e == ETIMEDOUT || e == EIO || e == EHOSTUNREACH || e == ECONNRESET ||
         e == EAGAIN;
}

/* ---- push ----------------------------------------------------------------- */

typedef struct {
  struct oci_store *o;
  char *location; /* the upload session's URL, as the registry last gave it */
  const char *buf;
  char *own; /* CHUNK bytes: compressed data not yet sent */
  size_t len;
  uint64_t sent;
  bool transient; /* the last failure may pass on a new attempt */
} upload;

static void upload_release(upload *u) {
  free(u->location);
  free(u->own);
  u->location = u->own = NULL;
}

/* Marks a failed registry call: r < 0 (transport) or an unexpected status. */
static int upload_failed(upload *u, int r, const kyb_http_req *rq, const kyb_http_resp *rs,
                         kyb_error **err) {
  if (r < 0) {
    u->transient = transient_errno(kyb_error_code(*err));
    return -1;
  }
  u->transient = transient_status(rs->status);
  return kyb_oci_status_error(u->o, rq, rs, err);
}

static int set_location(upload *u, const kyb_http_resp *rs, kyb_error **err) {
  const char *loc = kyb_http_resp_header(rs, "Location");
  const char *base = u->o->base;
  char *n = NULL;
  if (loc == NULL || strlen(loc) > LOCATION_MAX)
    return kyb_error_set(err, EBADMSG, "registry %s gave no usable upload location", u->o->host);
  if (loc[0] == '/') {
    if (asprintf(&n, "%s%s", base, loc) < 0)
      n = NULL;
  } else if (strncmp(loc, "https://", 8) == 0 ||
             (strncmp(loc, "http://", 7) == 0 && strncmp(base, "http://", 7) == 0)) {
    n = strdup(loc);
  } else {
    return kyb_error_set(err, EBADMSG, "registry %s: upload location \"%.200s\" refused",
                         u->o->host, loc);
  }
  if (n == NULL)
    return kyb_error_set(err, ENOMEM, "upload location");
  free(u->location);
  u->location = n;
  return 0;
}

static int upload_start(upload *u, kyb_error **err) {
  cleanup_free char *url = kyb_oci_url(u->o, "/blobs/uploads/");
  if (url == NULL)
    return kyb_error_set(err, ENOMEM, "upload URL");
  kyb_http_req rq = {.method = "POST", .url = url, .what = "start blob upload"};
  kyb_http_resp rs = {0};
  int r = kyb_oci_do(u->o, &rq, &rs, err);
  if (r < 0 || rs.status != 202)
    r = upload_failed(u, r, &rq, &rs, err);
  else
    r = set_location(u, &rs, err);
  kyb_http_resp_clear(&rs);
  return r;
}

static int upload_patch(upload *u, kyb_error **err) {
  if (u->len == 0)
    return 0;
  char range[64];
  snprintf(range, sizeof(range), "Content-Range: %llu-%llu", (unsigned long long)u->sent,
           (unsigned long long)(u->sent + u->len - 1));
  const char *hdrs[] = {OCTET, range, NULL};
  kyb_http_req rq = {.method = "PATCH",
                     .url = u->location,
                     .headers = hdrs,
                     .body = u->own,
                     .body_len = u->len,
                     .what = "upload blob chunk"};
  kyb_http_resp rs = {0};
  int r = kyb_oci_do(u->o, &rq, &rs, err);
  if (r < 0 || rs.status != 202)
    r = upload_failed(u, r, &rq, &rs, err);
  else
    r = set_location(u, &rs, err);
  kyb_http_resp_clear(&rs);
  if (r == 0) {
    u->sent += u->len;
    u->len = 0;
  }
  return r;
}

static int upload_sink(void *ud, const void *buf, size_t len, kyb_error **err) {
  upload *u = ud;
  const char *p = buf;
  while (len > 0) {
    size_t k = CHUNK - u->len < len ? CHUNK - u->len : len;
    memcpy(u->own + u->len, p, k);
    u->len += k;
    p += k;
    len -= k;
    if (u->len == CHUNK && upload_patch(u, err) < 0)
      return -1;
  }
  return 0;
}

/* PUT <location>&digest=: the rest of the data (u->buf, or what is left in
 * u->own), and the registry checks the digest of the whole blob. */
static int upload_finish(upload *u, const char *digest, kyb_error **err) {
  if (u->location == NULL)
    return kyb_error_set(err, EINVAL, "no upload session");
  cleanup_free char *esc = kyb_http_escape(digest);
  cleanup_free char *url = NULL;
  if (esc == NULL ||
      asprintf(&url, "%s%cdigest=%s", u->location, strchr(u->location, '?') ? '&' : '?', esc) < 0)
    return kyb_error_set(err, ENOMEM, "upload URL");
  const char *hdrs[] = {OCTET, NULL};
  kyb_http_req rq = {.method = "PUT",
                     .url = url,
                     .headers = hdrs,
                     .body = u->own ? u->own : u->buf,
                     .body_len = u->len,
                     .what = "finish blob upload"};
  kyb_http_resp rs = {0};
  int r = kyb_oci_do(u->o, &rq, &rs, err);
  if (r < 0 || rs.status != 201)
    r = upload_failed(u, r, &rq, &rs, err);
  const char *dcd = r == 0 ? kyb_http_resp_header(&rs, "Docker-Content-Digest") : NULL;
  if (dcd != NULL && strcmp(dcd, digest) != 0)
    r = kyb_error_set(err, EBADMSG, "registry %s stored blob %s as %.80s", u->o->host, digest, dcd);
  kyb_http_resp_clear(&rs);
  return r;
}

/* Best effort: the registry drops the session (else its purge does). */
static void upload_abort(upload *u) {
  if (u->location == NULL)
    return;
  kyb_http_req rq = {.method = "DELETE", .url = u->location, .no_retry = true};
  kyb_http_resp rs = {0};
  cleanup_error kyb_error *err = NULL;
  kyb_oci_do(u->o, &rq, &rs, &err);
  kyb_http_resp_clear(&rs);
}

static int blob_exists(struct oci_store *o, const char *digest, uint64_t size, kyb_error **err) {
  cleanup_free char *suffix = NULL;
  if (asprintf(&suffix, "/blobs/%s", digest) < 0)
    return kyb_error_set(err, ENOMEM, "blob URL");
  cleanup_free char *url = kyb_oci_url(o, suffix);
  if (url == NULL)
    return kyb_error_set(err, ENOMEM, "blob URL");
  kyb_http_req rq = {.method = "HEAD", .url = url, .what = "look for blob"};
  kyb_http_resp rs = {0};
  int r = kyb_oci_do(o, &rq, &rs, err);
  if (r == 0) {
    const char *cl = kyb_http_resp_header(&rs, "Content-Length");
    if (rs.status == 200)
      r = cl != NULL && strtoull(cl, NULL, 10) == size;
    else
      r = rs.status == 404 ? 0 : kyb_oci_status_error(o, &rq, &rs, err);
  }
  kyb_http_resp_clear(&rs);
  return r;
}

/* ---- the blob memo (blob_memo.h) --------------------------------------------
 * A push asks the registry (HEAD) for the blob the memo names and skips the
 * upload when it has it: parts that did not change since the last
 * checkpoint (the rootfs diff, most small CRIU files) and retried pushes
 * cost one request.  A wrong memo cannot slip through: every pull checks
 * both digests. */

static int memo_get(const struct oci_store *o, const char *file_digest,
                    char blob[KYB_DIGEST_LEN + 1], uint64_t *size) {
  return kyb_blob_memo_get(o->memo_dir, file_digest, blob, size);
}

static void memo_put(const struct oci_store *o, const kyb_oci_layer *l) {
  kyb_blob_memo_put(o->memo_dir, l->file_digest, l->blob_digest, l->blob_size);
}

typedef struct {
  kyb_store *s;
  const char *part;
} part_progress;

static int pack_progress(void *ud, uint64_t bytes, kyb_error **err) {
  const part_progress *pp = ud;
  return kyb_store_progress_part(pp->s, pp->part, bytes, err);
}

/* One file of the image as one blob; fills the layer. */
static int push_part(struct oci_store *o, const char *dir, const json_t *file, kyb_oci_layer *l,
                     kyb_error **err) {
  const char *path = json_string_value(json_object_get(file, "path"));
  const char *hex = json_string_value(json_object_get(file, "sha256"));
  uint64_t size = (uint64_t)json_integer_value(json_object_get(file, "size"));
  cleanup_free char *full = kyb_path_join(dir, path);
  if (full == NULL || (l->path = strdup(path)) == NULL)
    return kyb_error_set(err, ENOMEM, "push");
  part_progress pp = {.s = o->self, .part = l->path};
  kyb_pack_opts po = {.progress = pack_progress, .progress_ud = &pp};
  char want[KYB_DIGEST_LEN + 1];
  snprintf(want, sizeof(want), "sha256:%s", hex);
  if (memo_get(o, want, l->blob_digest, &l->blob_size) == 1) {
    int ex = blob_exists(o, l->blob_digest, l->blob_size, err);
    if (ex < 0)
      return kyb_error_wrap(err, "push %s", path);
    if (ex > 0) { /* the registry has it: nothing to send */
      memcpy(l->file_digest, want, sizeof(want));
      l->file_size = size;
      log_debug("%s: the registry has its blob %s already", path, l->blob_digest);
      return 0;
    }
  }
  uint64_t t0 = now_ms();
  for (int attempt = 1;; attempt++) {
    upload u = {.o = o, .own = malloc(CHUNK)};
    if (u.own == NULL)
      return kyb_error_set(err, ENOMEM, "upload buffer");
    kyb_pack_result res = {0};
    int r = upload_start(&u, err);
    if (r == 0)
      r = kyb_pack_file(full, &po, upload_sink, &u, &res, err);
    if (r == 0 && (res.file_size != size || strcmp(res.file_digest + 7, hex) != 0)) {
      u.transient = false;
      r = kyb_error_set(
          err, EBADMSG, "%s is %llu bytes %s now, the manifest says %llu bytes sha256:%s", path,
          (unsigned long long)res.file_size, res.file_digest, (unsigned long long)size, hex);
    }
    if (r == 0)
      r = upload_finish(&u, res.blob_digest, err);
    if (r == 0) {
      memcpy(l->blob_digest, res.blob_digest, sizeof(l->blob_digest));
      memcpy(l->file_digest, res.file_digest, sizeof(l->file_digest));
      l->blob_size = res.blob_size;
      l->file_size = res.file_size;
      upload_release(&u);
      memo_put(o, l);
      report(path, "pushed", l->file_size, l->blob_size, now_ms() - t0);
      return 0;
    }
    upload_abort(&u);
    upload_release(&u);
    if (!u.transient || attempt == BLOB_ATTEMPTS)
      return kyb_error_wrap(err, "push %s", path);
    log_warn_chain(*err, "push of %s failed; starting it over (attempt %d of %d)", path,
                   attempt + 1, BLOB_ATTEMPTS);
    kyb_error_clear(err);
    pause_ms(1000L * attempt);
  }
}

static int push_config(struct oci_store *o, const char *data, size_t len, const char *digest,
                       kyb_error **err) {
  int ex = blob_exists(o, digest, len, err);
  if (ex != 0)
    return ex < 0 ? -1 : 0;
  for (int attempt = 1;; attempt++) {
    upload u = {.o = o, .buf = data, .len = len};
    int r = upload_start(&u, err);
    if (r == 0)
      r = upload_finish(&u, digest, err);
    upload_release(&u);
    if (r == 0)
      return 0;
    if (!u.transient || attempt == BLOB_ATTEMPTS)
      return kyb_error_wrap(err, "push manifest.json");
    kyb_error_clear(err);
    pause_ms(1000L * attempt);
  }
}

static int put_manifest(struct oci_store *o, const char *tag, const char *body, size_t len,
                        kyb_error **err) {
  cleanup_free char *suffix = NULL;
  if (asprintf(&suffix, "/manifests/%s", tag) < 0)
    return kyb_error_set(err, ENOMEM, "manifest URL");
  cleanup_free char *url = kyb_oci_url(o, suffix);
  if (url == NULL)
    return kyb_error_set(err, ENOMEM, "manifest URL");
  const char *hdrs[] = {"Content-Type: " KYB_OCI_MEDIA_MANIFEST, NULL};
  kyb_http_req rq = {.method = "PUT",
                     .url = url,
                     .headers = hdrs,
                     .body = body,
                     .body_len = len,
                     .what = "push image manifest"};
  kyb_http_resp rs = {0};
  int r = kyb_oci_do(o, &rq, &rs, err);
  if (r == 0 && rs.status != 201)
    r = kyb_oci_status_error(o, &rq, &rs, err);
  char want[KYB_DIGEST_LEN + 1];
  kyb_oci_sha256(body, len, want);
  const char *dcd = r == 0 ? kyb_http_resp_header(&rs, "Docker-Content-Digest") : NULL;
  if (dcd != NULL && strcmp(dcd, want) != 0)
    r = kyb_error_set(err, EBADMSG, "registry %s stored the manifest as %.80s, not %s", o->host,
                      dcd, want);
  kyb_http_resp_clear(&rs);
  return r;
}

static int refuse_existing(struct oci_store *o, kyb_store *s, const char *name, kyb_error **err) {
  int ex = kyb_oci_tag_exists(o, name, err);
  if (ex < 0)
    return -1;
  if (ex > 0)
    return kyb_error_set(err, EEXIST, "image %s already exists in store %s", name, s->uri);
  return 0;
}

int kyb_oci_put(kyb_store *s, kyb_staging *st, kyb_error **err) {
  struct oci_store *o = oci_of(s);
  o->actions = "pull,push";
  cleanup_json json_t *m = NULL;
  if (kyb_staging_check(st, &m, err) < 0)
    return -1;
  cleanup_free char *mpath = kyb_path_join(st->path, KYB_IMAGE_MANIFEST);
  cleanup_free char *raw = NULL;
  size_t rawlen = 0;
  if (mpath == NULL)
    return kyb_error_set(err, ENOMEM, "push");
  if (kyb_read_file(mpath, KYB_IMAGE_MANIFEST_MAX_BYTES, &raw, &rawlen, err) < 0)
    return -1;
  if (refuse_existing(o, s, st->name, err) < 0)
    return -1;
  const json_t *files = json_object_get(m, "files");
  kyb_oci_manifest om = {.nlayers = json_array_size(files), .name = st->name};
  om.layers = om.nlayers ? calloc(om.nlayers, sizeof(*om.layers)) : NULL;
  if (om.nlayers && om.layers == NULL)
    return kyb_error_set(err, ENOMEM, "push");
  om.config_size = rawlen;
  kyb_oci_sha256(raw, rawlen, om.config_digest);
  int r = 0;
  uint64_t in = rawlen, out = rawlen, total = rawlen;
  for (size_t i = 0; i < om.nlayers; i++)
    total += (uint64_t)json_integer_value(json_object_get(json_array_get(files, i), "size"));
  kyb_store_progress_begin(s, st->name, total);
  for (size_t i = 0; r == 0 && i < om.nlayers; i++) {
    r = push_part(o, st->path, json_array_get(files, i), &om.layers[i], err);
    if (r == 0)
      r = kyb_store_progress_part_end(s, om.layers[i].path, om.layers[i].file_size, err);
    in += om.layers[i].file_size;
    out += om.layers[i].blob_size;
  }
  if (r == 0)
    r = push_config(o, raw, rawlen, om.config_digest, err);
  if (r == 0)
    r = kyb_store_progress_part_end(s, KYB_IMAGE_MANIFEST, rawlen, err);
  size_t blen = 0;
  cleanup_free char *body =
      r == 0 ? kyb_oci_manifest_build(&om, json_string_value(json_object_get(m, "created")), &blen,
                                      err)
             : NULL;
  if (r == 0 && body == NULL)
    r = -1;
  if (r == 0 && blen > KYB_OCI_MANIFEST_MAX)
    r = kyb_error_set(err, EFBIG, "registry manifest of %zu bytes: more than %u (too many files)",
                      blen, KYB_OCI_MANIFEST_MAX);
  /* Last: the tag appears only now, pointing at blobs that are all there. */
  if (r == 0)
    r = refuse_existing(o, s, st->name, err);
  if (r == 0)
    r = put_manifest(o, st->name, body, blen, err);
  om.name = NULL; /* not ours */
  kyb_oci_manifest_clear(&om);
  if (r < 0)
    return -1;
  st->published = true;
  log_info("image %s pushed to %s: %zu files, %llu bytes sent as %llu", st->name, s->uri,
           json_array_size(files), (unsigned long long)in, (unsigned long long)out);
  return 0;
}

/* ---- pull ----------------------------------------------------------------- */

typedef struct {
  kyb_unpack *u;
  uint64_t fed, limit;
  const char *digest;
  bool failed; /* the sink failed: the data, not the connection */
  kyb_store *s;
  const char *part;
} download;

static int download_sink(void *ud, const void *buf, size_t len, kyb_error **err) {
  download *d = ud;
  if (d->fed + len > d->limit) {
    d->failed = true;
    return kyb_error_set(err, EBADMSG, "blob %s: the registry sends more than its %llu bytes",
                         d->digest, (unsigned long long)d->limit);
  }
  d->fed += len;
  if (kyb_unpack_feed(d->u, buf, len, err) < 0) {
    d->failed = true;
    return -1;
  }
  return kyb_store_progress_part(d->s, d->part, kyb_unpack_file_bytes(d->u), err);
}

static int pull_attempt(struct oci_store *o, int fd, const kyb_oci_layer *l, const char *url,
                        bool *transient, kyb_error **err) {
  download d = {.limit = l->blob_size, .digest = l->blob_digest, .s = o->self, .part = l->path};
  *transient = false;
  if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
    return kyb_error_errno(err, "truncate %s", l->path);
  if (kyb_unpack_new(fd, l->blob_digest, l->file_digest, l->file_size, &d.u, err) < 0)
    return -1;
  kyb_http_req rq = {.method = "GET",
                     .url = url,
                     .write = download_sink,
                     .write_ud = &d,
                     .follow_redirects = true,
                     .what = "fetch blob"};
  kyb_http_resp rs = {0};
  int r = kyb_oci_do(o, &rq, &rs, err);
  if (r < 0)
    *transient = !d.failed && transient_errno(kyb_error_code(*err));
  else if (rs.status != 200)
    r = (*transient = transient_status(rs.status), kyb_oci_status_error(o, &rq, &rs, err));
  if (r == 0)
    r = kyb_unpack_finish(d.u, err);
  kyb_http_resp_clear(&rs);
  kyb_unpack_free(d.u);
  return r;
}

static int pull_part(struct oci_store *o, int rootfd, const kyb_oci_layer *l, kyb_error **err) {
  const char *leaf = NULL;
  cleanup_close int parent = kyb_open_parent_beneath(rootfd, l->path, true, &leaf, err);
  if (parent < 0)
    return kyb_error_wrap(err, "pull %s", l->path);
  cleanup_close int fd =
      openat(parent, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return kyb_error_errno(err, "create %s", l->path);
  cleanup_free char *suffix = NULL;
  if (asprintf(&suffix, "/blobs/%s", l->blob_digest) < 0)
    return kyb_error_set(err, ENOMEM, "blob URL");
  cleanup_free char *url = kyb_oci_url(o, suffix);
  if (url == NULL)
    return kyb_error_set(err, ENOMEM, "blob URL");
  uint64_t t0 = now_ms();
  for (int attempt = 1;; attempt++) {
    bool transient = false;
    if (pull_attempt(o, fd, l, url, &transient, err) == 0)
      break;
    if (!transient || attempt == BLOB_ATTEMPTS)
      return kyb_error_wrap(err, "pull %s", l->path);
    log_warn_chain(*err, "pull of %s failed; starting it over (attempt %d of %d)", l->path,
                   attempt + 1, BLOB_ATTEMPTS);
    kyb_error_clear(err);
    pause_ms(1000L * attempt);
  }
  if (fsync(fd) < 0)
    return kyb_error_errno(err, "fsync %s", l->path);
  memo_put(o, l);
  report(l->path, "pulled", l->file_size, l->blob_size, now_ms() - t0);
  return 0;
}

static int write_manifest(int rootfd, const char *raw, size_t len, kyb_error **err) {
  cleanup_close int fd = openat(rootfd, KYB_IMAGE_MANIFEST,
                                O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return kyb_error_errno(err, "create manifest.json");
  for (size_t off = 0; off < len;) {
    ssize_t n = write(fd, raw + off, len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return kyb_error_errno(err, "write manifest.json");
    off += (size_t)n;
  }
  if (fsync(fd) < 0)
    return kyb_error_errno(err, "fsync manifest.json");
  return 0;
}

/* Downloads image `name` into a staging directory of the cache and
 * publishes it there.  EEXIST when another process published it first. */
static int pull_into(struct oci_store *o, kyb_store *cache, const char *name,
                     const kyb_oci_manifest *m, kyb_error **err) {
  cleanup_free char *raw = NULL;
  size_t rawlen = 0;
  cleanup_json json_t *im = NULL;
  if (kyb_oci_get_config(o, m, &im, &raw, &rawlen, err) < 0)
    return -1;
  const char *mname = json_string_value(json_object_get(im, "name"));
  if (mname == NULL || strcmp(mname, name) != 0)
    return kyb_error_set(err, EBADMSG, "image %s: its manifest names it \"%s\"", name,
                         mname ? mname : "");
  if (kyb_oci_manifest_match(m, im, err) < 0)
    return kyb_error_wrap(err, "image %s", name);
  kyb_staging *st = NULL;
  if (kyb_store_stage(cache, name, &st, err) < 0)
    return -1;
  int r = 0;
  cleanup_close int rootfd =
      open(kyb_staging_path(st), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (rootfd < 0)
    r = kyb_error_errno(err, "open %s", kyb_staging_path(st));
  uint64_t total = rawlen;
  for (size_t i = 0; i < m->nlayers; i++)
    total += m->layers[i].file_size;
  kyb_store_progress_begin(o->self, name, total);
  if (r == 0)
    r = write_manifest(rootfd, raw, rawlen, err);
  if (r == 0)
    r = kyb_store_progress_part_end(o->self, KYB_IMAGE_MANIFEST, rawlen, err);
  uint64_t in = rawlen, out = rawlen;
  for (size_t i = 0; r == 0 && i < m->nlayers; i++) {
    r = pull_part(o, rootfd, &m->layers[i], err);
    if (r == 0)
      r = kyb_store_progress_part_end(o->self, m->layers[i].path, m->layers[i].file_size, err);
    in += m->layers[i].blob_size;
    out += m->layers[i].file_size;
  }
  if (r == 0)
    r = kyb_store_put(cache, st, err);
  kyb_staging_free(st); /* removes the staging directory unless published */
  if (r == 0)
    log_info("image %s pulled from oci://%s/%s: %zu files, %llu bytes received as %llu", name,
             o->host, o->repo, m->nlayers, (unsigned long long)in, (unsigned long long)out);
  return r;
}

/* 1 when the cached copy at path is the image the registry describes. */
static int cached_current(const char *path, const kyb_oci_manifest *m, kyb_error **err) {
  struct stat sb;
  if (path == NULL)
    return kyb_error_set(err, EINVAL, "no path");
  if (lstat(path, &sb) < 0)
    return errno == ENOENT ? 0 : kyb_error_errno(err, "cached image %s", path);
  cleanup_free char *digest = NULL;
  cleanup_error kyb_error *why = NULL;
  if (!S_ISDIR(sb.st_mode) || kyb_image_digest(path, &digest, &why) < 0 ||
      strcmp(digest, m->config_digest) != 0) {
    log_info("cached copy %s is not the registry's image %s: fetching it again", path,
             m->config_digest);
    return 0;
  }
  return 1;
}

int kyb_oci_get_path(kyb_store *s, const char *name, char **path, kyb_error **err) {
  struct oci_store *o = oci_of(s);
  o->actions = "pull";
  kyb_oci_manifest m = {0};
  kyb_store *cache = NULL;
  if (kyb_oci_get_manifest(o, name, &m, NULL, err) < 0)
    return -1;
  cleanup_free char *cached = kyb_path_join(o->cache_dir, name);
  int r = -1;
  if (cached == NULL)
    kyb_error_set(err, ENOMEM, "path");
  else if ((cache = kyb_oci_cache(o, err)) != NULL)
    r = 0;
  for (int round = 0; r == 0 && round < 2; round++) {
    int cur = cached_current(cached, &m, err);
    if (cur != 0) {
      r = cur < 0 ? -1 : 0;
      break;
    }
    struct stat sb;
    if (lstat(cached, &sb) == 0 && kyb_store_delete(cache, name, err) < 0 &&
        kyb_error_code(*err) != ENOENT) {
      r = kyb_error_wrap(err, "replace the stale cached copy of %s", name);
      break;
    }
    kyb_error_clear(err);
    r = pull_into(o, cache, name, &m, err);
    if (r < 0 && kyb_error_code(*err) == EEXIST && round == 0) {
      kyb_error_clear(err); /* another process published it meanwhile: check that one */
      r = 0;
      continue;
    }
    break;
  }
  kyb_oci_manifest_clear(&m);
  if (r < 0)
    return kyb_error_wrap(err, "fetch image %s from %s", name, s->uri);
  *path = steal_ptr(cached);
  return 0;
}

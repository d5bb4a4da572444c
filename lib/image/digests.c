/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The digests of files[]: computed by the builder (pin), checked by verify.
 *
 * Both hash on kyb_hash_threads() threads (hashpool.c).  A file larger than
 * a chunk gets, besides its whole-file sha256 (which the stores use as the
 * file's identity), one sha256 per chunk: verify checks those chunks in
 * parallel, so a restore of a 16 GiB GPU image is no longer bound by one
 * core hashing 16 GiB.  The builder still reads big files twice (whole and
 * chunked, in parallel threads, from the page cache CRIU just filled); its
 * time is bounded by the whole-file pass, as it was before.
 *
 * Files are handled in batches of at most BATCH open descriptors: an image
 * may list up to KYB_IMAGE_MAX_FILES files, far above an fd limit.
 */
#define KYB_LOG_MODULE "image"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/files.h"
#include "image/hashpool.h"
#include "image/image.h"
#include "image/safepath.h"
#include "util/cleanup.h"
#include "util/log.h"

#define BATCH 256u

static uint64_t nchunks(uint64_t size, uint64_t chunk) {
  return size / chunk + (size % chunk != 0);
}

/* One batch: open files, their jobs (and the labels the jobs point to). */
typedef struct {
  int fds[BATCH];
  size_t nfiles;
  kyb_hash_job *jobs;
  char **what;
  size_t njobs, cap;
} batch;

static void batch_reset(batch *bt) {
  for (size_t i = 0; i < bt->nfiles; i++)
    if (bt->fds[i] >= 0)
      close(bt->fds[i]);
  kyb_hash_jobs_release(bt->jobs, bt->njobs);
  for (size_t i = 0; i < bt->njobs; i++)
    free(bt->what[i]);
  bt->nfiles = 0;
  bt->njobs = 0;
}

static void batch_free(batch *bt) {
  batch_reset(bt);
  free(bt->jobs);
  free(bt->what);
}

/* Appends a job over [off, off+len) of fd; label "file P" or "file P chunk K (bytes A-B)". */
static int add_job(batch *bt, int fd, const char *path, long long chunk, uint64_t off, uint64_t len,
                   bool do_fsync, const char *want, kyb_error **err) {
  if (bt->njobs == bt->cap) {
    size_t cap = bt->cap ? bt->cap * 2 : 64;
    kyb_hash_job *nj = realloc(bt->jobs, cap * sizeof(*nj));
    if (nj == NULL)
      return kyb_error_set(err, ENOMEM, "hash jobs");
    bt->jobs = nj;
    char **nw = realloc(bt->what, cap * sizeof(*nw));
    if (nw == NULL)
      return kyb_error_set(err, ENOMEM, "hash jobs");
    bt->what = nw;
    bt->cap = cap;
  }
  char *what = NULL;
  int r = chunk < 0 ? asprintf(&what, "file %s", path)
                    : asprintf(&what, "file %s chunk %lld (bytes %llu-%llu)", path, chunk,
                               (unsigned long long)off, (unsigned long long)(off + len - 1));
  if (r < 0)
    return kyb_error_set(err, ENOMEM, "hash jobs");
  bt->what[bt->njobs] = what;
  bt->jobs[bt->njobs++] = (kyb_hash_job){
      .fd = fd, .off = off, .len = len, .fsync = do_fsync, .want = want, .what = what};
  return 0;
}

/* Opens path beneath dfd into the batch; returns its index or -1. */
static int open_file(batch *bt, int dfd, const char *path, kyb_error **err) {
  int fd = kyb_open_beneath(dfd, path, O_RDONLY, err);
  if (fd < 0)
    return kyb_error_wrap(err, "file %s", path);
  bt->fds[bt->nfiles] = fd;
  return (int)bt->nfiles++;
}

/* ---- the builder ---------------------------------------------------------- */

/* Hashes paths[0..n) of one batch and appends their files[] entries. */
static int pin_batch(batch *bt, int dfd, char *const *paths, size_t n, uint64_t chunk,
                     json_t *files, kyb_error **err) {
  uint64_t sizes[BATCH];
  size_t whole[BATCH]; /* index of each file's whole-file job */
  for (size_t i = 0; i < n; i++) {
    int k = open_file(bt, dfd, paths[i], err);
    if (k < 0)
      return -1;
    struct stat st;
    if (fstat(bt->fds[k], &st) < 0)
      return kyb_error_errno(err, "stat %s", paths[i]);
    sizes[i] = (uint64_t)st.st_size;
    whole[i] = bt->njobs;
    if (add_job(bt, bt->fds[k], paths[i], -1, 0, KYB_HASH_TO_EOF, true, NULL, err) < 0)
      return -1;
    if (sizes[i] <= chunk)
      continue;
    for (uint64_t c = 0, off = 0; off < sizes[i]; c++, off += chunk) {
      uint64_t len = sizes[i] - off < chunk ? sizes[i] - off : chunk;
      if (add_job(bt, bt->fds[k], paths[i], (long long)c, off, len, false, NULL, err) < 0)
        return -1;
    }
  }
  if (kyb_hash_jobs_run(bt->jobs, bt->njobs, kyb_hash_threads(), err) < 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    const kyb_hash_job *w = &bt->jobs[whole[i]];
    /* CRIU has finished writing; a file that still changes is not ours to pin. */
    if (w->got != sizes[i])
      return kyb_error_set(err, EBADMSG, "file %s changed size while it was hashed", paths[i]);
    if (w->got > (uint64_t)INT64_MAX)
      return kyb_error_set(err, EFBIG, "file %s is too large", paths[i]);
    json_t *f =
        json_pack("{s:s,s:I,s:s}", "path", paths[i], "size", (json_int_t)w->got, "sha256", w->hex);
    if (f == NULL || json_array_append_new(files, f) < 0)
      return kyb_error_set(err, ENOMEM, "image files");
    if (sizes[i] <= chunk)
      continue;
    json_t *list = json_array();
    if (list == NULL ||
        json_object_set_new(f, "chunks",
                            json_pack("{s:I,s:o}", "size", (json_int_t)chunk, "sha256", list)) < 0)
      return kyb_error_set(err, ENOMEM, "image files");
    for (uint64_t c = 0; c < nchunks(sizes[i], chunk); c++)
      if (json_array_append_new(list, json_string(bt->jobs[whole[i] + 1 + c].hex)) < 0)
        return kyb_error_set(err, ENOMEM, "image files");
  }
  return 0;
}

int kyb_image_pin_files(int dfd, char *const *paths, size_t n, uint64_t chunk, json_t *files,
                        kyb_error **err) {
  batch bt = {0};
  int r = 0;
  for (size_t i = 0; i < n && r == 0; i += BATCH) {
    size_t m = n - i < BATCH ? n - i : BATCH;
    r = pin_batch(&bt, dfd, paths + i, m, chunk, files, err);
    batch_reset(&bt);
  }
  batch_free(&bt);
  return r;
}

/* ---- verification --------------------------------------------------------- */

static int check_batch(batch *bt, int dfd, const json_t *files, size_t first, size_t n,
                       kyb_error **err) {
  for (size_t i = first; i < first + n; i++) {
    const json_t *f = json_array_get(files, i);
    const char *path = json_string_value(json_object_get(f, "path"));
    uint64_t size = (uint64_t)json_integer_value(json_object_get(f, "size"));
    const json_t *chunks = json_object_get(f, "chunks");
    int k = open_file(bt, dfd, path, err);
    if (k < 0)
      return -1;
    if (chunks == NULL) {
      if (add_job(bt, bt->fds[k], path, -1, 0, size, false,
                  json_string_value(json_object_get(f, "sha256")), err) < 0)
        return -1;
      continue;
    }
    /* The manifest's validation pinned the count: one digest per chunk. */
    uint64_t cs = (uint64_t)json_integer_value(json_object_get(chunks, "size"));
    const json_t *list = json_object_get(chunks, "sha256");
    for (uint64_t c = 0, off = 0; off < size; c++, off += cs) {
      uint64_t len = size - off < cs ? size - off : cs;
      if (add_job(bt, bt->fds[k], path, (long long)c, off, len, false,
                  json_string_value(json_array_get(list, c)), err) < 0)
        return -1;
    }
  }
  if (kyb_hash_jobs_run(bt->jobs, bt->njobs, kyb_hash_threads(), err) < 0)
    return -1;
  /* Every range matched; a file that grew meanwhile still is not the one pinned. */
  for (size_t i = 0; i < n; i++) {
    const json_t *f = json_array_get(files, first + i);
    struct stat st;
    if (fstat(bt->fds[i], &st) < 0)
      return kyb_error_errno(err, "stat %s", json_string_value(json_object_get(f, "path")));
    if ((long long)st.st_size != (long long)json_integer_value(json_object_get(f, "size")))
      return kyb_error_set(err, EBADMSG, "file %s changed size while it was verified",
                           json_string_value(json_object_get(f, "path")));
  }
  return 0;
}

int kyb_image_check_digests(int dfd, const json_t *files, kyb_error **err) {
  size_t n = json_array_size(files);
  batch bt = {0};
  int r = 0;
  for (size_t i = 0; i < n && r == 0; i += BATCH) {
    size_t m = n - i < BATCH ? n - i : BATCH;
    r = check_batch(&bt, dfd, files, i, m, err);
    batch_reset(&bt);
  }
  batch_free(&bt);
  return r;
}

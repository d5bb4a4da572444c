/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hashing many byte ranges of image files on several threads.  Internal to
 * lib/image.
 *
 * One core's SHA-256 (about 1 GB/s) made hashing the largest part of
 * Kybernate's own time: ~15 s to verify a 16 GiB GPU image before a restore.
 * Big files are therefore also pinned chunk by chunk (docs/image-format.md,
 * "Chunk digests"), and the chunks of every file are hashed in parallel here.
 */
#ifndef KYB_IMAGE_HASHPOOL_H
#define KYB_IMAGE_HASHPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image/files.h"
#include "util/error.h"

/* Length of a job that runs to the end of the file. */
#define KYB_HASH_TO_EOF UINT64_MAX

/* Most threads kyb_hash_threads() picks.  Verify scaled linearly to 16
 * threads on the H200 host (bench/results/hash-h200-2026-12-01.md); a node
 * with more cores keeps the rest for its workloads. */
#define KYB_HASH_THREADS_MAX 16u

typedef struct {
  /* in */
  int fd;           /* borrowed, read with pread */
  uint64_t off;     /* first byte */
  uint64_t len;     /* bytes, or KYB_HASH_TO_EOF */
  bool fsync;       /* fsync fd after hashing (the builder's durability) */
  const char *want; /* when set: the expected hex digest; a mismatch fails the job (EBADMSG) */
  const char *what; /* for messages: "file criu/pages-1.img" or "file ... chunk 3" */
  /* out */
  char hex[KYB_SHA256_HEX_LEN + 1];
  uint64_t got; /* bytes hashed */
  kyb_error *err;
} kyb_hash_job;

/* Threads to hash with: $KYBERNATE_HASH_THREADS when set (1..KYB_HASH_THREADS_MAX),
 * else the CPUs this process may run on, at most KYB_HASH_THREADS_MAX. */
unsigned kyb_hash_threads(void);

/* Runs every job, largest first, on up to `threads` threads.  A job whose
 * range ends early (the file shrank) fails with EBADMSG; a job with `want`
 * fails with EBADMSG on a different digest.  The first failure stops the
 * jobs not yet started.  Returns 0 when every job succeeded; else -1 with
 * *err set to the failure of the lowest-indexed failed job (so callers that
 * order jobs as the manifest does report the manifest's first bad file among
 * those that were hashed). */
int kyb_hash_jobs_run(kyb_hash_job *jobs, size_t n, unsigned threads, kyb_error **err);

/* Frees the per-job errors. */
void kyb_hash_jobs_release(kyb_hash_job *jobs, size_t n);

#endif

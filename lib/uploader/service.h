/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The uploader's job service: a table of jobs, a FIFO of queued ones and a
 * bounded pool of worker threads that run them (docs/uploader.md).
 *
 * - Submit: a job for a destination that an active (queued or running) job
 *   already writes is joined when it is the same request (the caller gets
 *   that job) and refused (EEXIST) when it is another.  At most max_active
 *   jobs are active at once (EAGAIN beyond).
 * - A worker runs a job's attempts through the runner.  An attempt that
 *   fails transiently (kyb_uploader_transient: connection refused or reset,
 *   timeouts, EIO from a 5xx, EAGAIN from a 429) is tried again after a
 *   backoff that doubles from backoff_ms up to backoff_max_ms, at most
 *   `retries` times.  These retries sit above lib/store/http's own (each
 *   request there is tried up to 5 times within about 4 s, and the oci://
 *   backend starts a broken blob over 3 times): they ride out an outage of
 *   minutes, not a dropped connection, and every attempt starts the
 *   transfer over -- a store publishes an image only at its end, so an
 *   attempt that dies leaves nothing visible.
 * - Cancel: a queued job ends at once; a running one stops at its next
 *   progress report (the runner's kyb_job_ctx_progress answers ECANCELED).
 * - Finished jobs stay queryable; the oldest beyond max_kept are dropped.
 *
 * Thread safety: every public call may come from any thread (the HTTP
 * server's); one mutex guards the table.  A runner gets a read-only request
 * and reports through its kyb_job_ctx.
 */
#ifndef KYB_UPLOADER_SERVICE_H
#define KYB_UPLOADER_SERVICE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uploader/job.h"
#include "util/error.h"

typedef struct kyb_job_ctx kyb_job_ctx;

/* One attempt of a job: 0 with *res filled, or -1 with err.  It must call
 * kyb_job_ctx_progress as bytes move and stop when it fails. */
typedef int (*kyb_job_runner)(void *ud, kyb_job_ctx *ctx, const kyb_job_request *req,
                              kyb_job_result *res, kyb_error **err);

/* Reports progress: `part` the file being moved (NULL: none), bytes done of
 * total.  -1 with ECANCELED once the job is asked to stop. */
int kyb_job_ctx_progress(kyb_job_ctx *c, const char *part, uint64_t done, uint64_t total,
                         kyb_error **err);
bool kyb_job_ctx_cancelled(kyb_job_ctx *c);
const char *kyb_job_ctx_id(const kyb_job_ctx *c);

typedef struct {
  int workers;         /* 0: 2; at most 16 */
  int retries;         /* further attempts on transient errors; 0: 3; negative: none */
  long backoff_ms;     /* first wait; 0: 2000 */
  long backoff_max_ms; /* 0: 60000 */
  size_t max_active;   /* queued + running; 0: 64 */
  size_t max_kept;     /* finished jobs kept for queries; 0: 256 */
  kyb_job_runner run;
  void *run_ud;
} kyb_uploader_opts;

typedef struct kyb_uploader kyb_uploader;

/* Starts the workers. */
int kyb_uploader_new(const kyb_uploader_opts *opts, kyb_uploader **out, kyb_error **err);

/* Takes a request (*req is moved into the job when one is made).  *job gets
 * the job's JSON, *joined whether it is an earlier identical job.  EEXIST:
 * another active job writes that destination; EAGAIN: too many active
 * jobs; ESHUTDOWN: the service is stopping. */
int kyb_uploader_submit(kyb_uploader *u, kyb_job_request *req, json_t **job, bool *joined,
                        kyb_error **err);

/* The job's JSON; NULL when there is no such job. */
json_t *kyb_uploader_get(kyb_uploader *u, const char *id);
/* {"jobs": [...]} in submission order. */
json_t *kyb_uploader_list(kyb_uploader *u);
/* Cancels a job; *job gets its JSON after.  ENOENT: no such job; EALREADY:
 * it has finished. */
int kyb_uploader_cancel(kyb_uploader *u, const char *id, json_t **job, kyb_error **err);
/* {"status": "ok"|"stopping", "workers", "queued", "running", "finished"} */
json_t *kyb_uploader_health(kyb_uploader *u);
bool kyb_uploader_stopping(kyb_uploader *u);

/* Stops: no new jobs, queued ones cancelled; running ones get grace_ms to
 * finish, then are asked to stop and get stop_ms more.  True when every
 * worker has ended (kyb_uploader_free may then be called); false when some
 * are still inside a transfer (the process should just exit: nothing
 * half-done is ever visible in a store). */
bool kyb_uploader_shutdown(kyb_uploader *u, long grace_ms, long stop_ms);
void kyb_uploader_free(kyb_uploader *u);

/* Whether a failed attempt may pass when tried again. */
bool kyb_uploader_transient(const kyb_error *err);

#endif

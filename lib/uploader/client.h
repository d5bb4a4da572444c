/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The client side of kybernate-uploader's API (api.h, docs/uploader.md),
 * over its unix socket with libcurl: submit jobs, follow them with a
 * progress callback, cancel them.  What the agent, the CLI and the runtime
 * use instead of opening a remote store themselves: they hold no storage
 * credentials.
 *
 *     kyb_uploader_client *c = NULL;
 *     kyb_uploader_client_new(getenv("KYBERNATE_UPLOADER_SOCKET"), &c, err);
 *     kyb_upload_job job = {0};
 *     kyb_uploader_client_fetch(c, "oci://reg/team/ckpt:web-1", &job, err);
 *     kyb_uploader_client_wait(c, job.id, 0, on_progress, ud, &job, err);  // -1 unless done
 *     ... job.path ...
 *     kyb_upload_job_clear(&job);
 *
 * Not thread-safe: one client per thread.  Answers are untrusted input
 * too: bounded (1 MiB), parsed and type-checked.
 */
#ifndef KYB_UPLOADER_CLIENT_H
#define KYB_UPLOADER_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

typedef struct kyb_uploader_client kyb_uploader_client;

/* A job as the client sees it. */
typedef struct {
  char *id;
  char *op;          /* "upload" or "fetch" */
  char *state;       /* "queued" "running" "done" "failed" "cancelled" */
  char *source;      /* the source reference */
  char *destination; /* the destination reference */
  int attempt;
  uint64_t done, total; /* bytes */
  char *part;           /* the file being moved, or NULL */
  char *error;          /* the failure, or NULL */
  int errnum;           /* its errno, 0 when none */
  bool joined;          /* submit found an identical job running */
  char *ref;            /* result: where the image is now */
  char *path;           /* result of a fetch: the local image directory */
  char *digest;         /* result: sha256 of manifest.json */
  uint64_t size;        /* result: image bytes */
} kyb_upload_job;

void kyb_upload_job_clear(kyb_upload_job *j);
bool kyb_upload_job_final(const kyb_upload_job *j);

/* socket NULL: $KYBERNATE_UPLOADER_SOCKET, else the default (server.h). */
int kyb_uploader_client_new(const char *socket, kyb_uploader_client **out, kyb_error **err);
void kyb_uploader_client_free(kyb_uploader_client *c);
const char *kyb_uploader_client_socket(const kyb_uploader_client *c);

/* The calls that answer a job replace *out (zeroed, or a job filled
 * before: it is cleared) only when they succeed.
 *
 * POST /v1/jobs.  image: a local reference (file:///dir/NAME or a bare
 * name); to: a store URI.  An error answer becomes err with the daemon's
 * message and an errno for its status (400 EINVAL, 403 EPERM, 404 ENOENT,
 * 409 EEXIST, 413 EMSGSIZE, 503 EAGAIN). */
int kyb_uploader_client_upload(kyb_uploader_client *c, const char *image, const char *to,
                               kyb_upload_job *out, kyb_error **err);
int kyb_uploader_client_fetch(kyb_uploader_client *c, const char *ref, kyb_upload_job *out,
                              kyb_error **err);
int kyb_uploader_client_get(kyb_uploader_client *c, const char *id, kyb_upload_job *out,
                            kyb_error **err);
int kyb_uploader_client_cancel(kyb_uploader_client *c, const char *id, kyb_upload_job *out,
                               kyb_error **err);
/* GET /healthz: 0 when the daemon answers "ok". */
int kyb_uploader_client_health(kyb_uploader_client *c, kyb_error **err);

/* GET /v1/images?store=: the images of a store as the daemon lists them,
 * {"store": uri, "images": [{"name", "created", "size", ...}]}. */
int kyb_uploader_client_list(kyb_uploader_client *c, const char *store, json_t **out,
                             kyb_error **err);
/* DELETE /v1/images?ref=: removes an image; *deleted (may be NULL) gets its
 * full reference. */
int kyb_uploader_client_delete(kyb_uploader_client *c, const char *ref, char **deleted,
                               kyb_error **err);

/* Called while waiting, each time the job was polled: 0 waits on, anything
 * else stops waiting (ECANCELED; the job itself goes on: cancel it). */
typedef int (*kyb_upload_progress_fn)(void *ud, const kyb_upload_job *j);

/* Polls the job (every poll_ms; 0: 200 ms) until it is final.  0 when it is
 * done; -1 when it failed or was cancelled (err: the job's error, with its
 * errno), or when the daemon cannot be reached.  *out holds the last state
 * either way. */
int kyb_uploader_client_wait(kyb_uploader_client *c, const char *id, unsigned poll_ms,
                             kyb_upload_progress_fn fn, void *ud, kyb_upload_job *out,
                             kyb_error **err);

/* Parses a job object (exposed for tests). */
int kyb_upload_job_parse(const char *text, size_t len, kyb_upload_job *out, kyb_error **err);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The uploader's HTTP API, as a function from a request to a response, so
 * it is tested without a socket (server.c carries it over HTTP):
 *
 *     GET    /healthz            200 {"status": "ok", ...}; 503 while stopping
 *     POST   /v1/jobs            202 the new job (Location: /v1/jobs/<id>);
 *                                200 an identical active job, "joined": true
 *     GET    /v1/jobs            200 {"jobs": [...]}
 *     GET    /v1/jobs/<id>       200 the job
 *     DELETE /v1/jobs/<id>       202 the job, cancelling (200 when it ended at once)
 *     GET    /v1/images?store=U  200 {"store", "images": [...]} (images.h)
 *     DELETE /v1/images?ref=R    200 {"deleted": ref}
 *
 * Errors are JSON too: {"error": {"status": 409, "message": "..."}} with
 * 400 (malformed request, unknown field or op, bad reference), 403 (a local
 * store outside the node's), 404, 405 (with Allow), 409 (the destination is
 * being written by another job; cancel of a finished job), 413 (body over
 * KYB_JOB_REQUEST_MAX), 503 (stopping, or too many jobs: Retry-After).
 * docs/uploader.md has the job object.
 */
#ifndef KYB_UPLOADER_API_H
#define KYB_UPLOADER_API_H

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>

#include "uploader/request.h"
#include "uploader/service.h"

typedef struct {
  int status;
  json_t *body;      /* owned */
  char location[64]; /* Location header value, "" when none */
  const char *allow; /* Allow header value (405), NULL when none */
  int retry_after_s; /* Retry-After (503), 0 when none */
} kyb_api_response;

typedef struct {
  const char *method;
  const char *path; /* without the query */
  const char *body; /* NUL-terminated; NULL when none */
  size_t len;
  const char *store; /* query parameter store=, NULL when absent */
  const char *ref;   /* query parameter ref=, NULL when absent */
} kyb_api_request;

void kyb_uploader_api(kyb_uploader *u, const kyb_job_policy *pol, const kyb_api_request *rq,
                      kyb_api_response *out);

/* An error response. */
void kyb_api_error(kyb_api_response *out, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void kyb_api_errorv(kyb_api_response *out, int status, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

void kyb_api_response_clear(kyb_api_response *r);

#endif

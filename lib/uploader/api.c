/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Routing of the uploader's API (api.h).
 */
#include "uploader/api.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uploader/images.h"
#include "util/cleanup.h"

#define JOBS "/v1/jobs"
#define IMAGES "/v1/images"

void kyb_api_response_clear(kyb_api_response *r) {
  json_decref(r->body);
  memset(r, 0, sizeof(*r));
}

void kyb_api_errorv(kyb_api_response *out, int status, const char *fmt, va_list ap) {
  char *msg = NULL;
  if (vasprintf(&msg, fmt, ap) < 0)
    msg = NULL;
  json_decref(out->body);
  out->status = status;
  out->body = json_pack("{s:{s:i, s:s}}", "error", "status", status, "message",
                        msg ? msg : "out of memory");
  free(msg);
}

void kyb_api_error(kyb_api_response *out, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kyb_api_errorv(out, status, fmt, ap);
  va_end(ap);
}

static void reply(kyb_api_response *out, int status, json_t *body) {
  if (body == NULL) {
    kyb_api_error(out, 500, "out of memory");
    return;
  }
  json_decref(out->body);
  out->status = status;
  out->body = body;
}

/* The status for a failure of the service or the parser. */
static int status_of(const kyb_error *err) {
  switch (kyb_error_code(err)) {
  case EINVAL:
  case ENOTSUP:
    return 400;
  case EPERM:
    return 403;
  case ENOENT:
    return 404;
  case EEXIST:
  case EALREADY:
    return 409;
  case EMSGSIZE:
    return 413;
  case EAGAIN:
  case ESHUTDOWN:
    return 503;
  default:
    return 500;
  }
}

static void fail(kyb_api_response *out, kyb_error *err) {
  int st = status_of(err);
  kyb_api_error(out, st, "%s", kyb_error_message(err));
  if (st == 503)
    out->retry_after_s = kyb_error_code(err) == EAGAIN ? 5 : 30;
}

static void submit(kyb_uploader *u, const kyb_job_policy *pol, const char *body, size_t len,
                   kyb_api_response *out) {
  kyb_job_request req = {0};
  cleanup_error kyb_error *err = NULL;
  if (kyb_job_request_parse(body, len, pol, &req, &err) < 0) {
    fail(out, err);
    return;
  }
  json_t *job = NULL;
  bool joined = false;
  if (kyb_uploader_submit(u, &req, &job, &joined, &err) < 0) {
    kyb_job_request_clear(&req);
    fail(out, err);
    return;
  }
  kyb_job_request_clear(&req); /* empty when it moved into a new job */
  if (json_object_set_new(job, "joined", json_boolean(joined)) < 0) {
    json_decref(job);
    job = NULL;
  }
  snprintf(out->location, sizeof(out->location), JOBS "/%s",
           json_string_value(json_object_get(job, "id")));
  reply(out, joined ? 200 : 202, job);
}

static void one_job(kyb_uploader *u, const char *method, const char *id, kyb_api_response *out) {
  if (!kyb_job_id_valid(id)) {
    kyb_api_error(out, 404, "no job \"%.80s\" (a job id is %d hex digits)", id, KYB_JOB_ID_LEN);
    return;
  }
  if (strcmp(method, "GET") == 0) {
    json_t *j = kyb_uploader_get(u, id);
    if (j == NULL)
      kyb_api_error(out, 404, "no job %s", id);
    else
      reply(out, 200, j);
    return;
  }
  if (strcmp(method, "DELETE") == 0) {
    json_t *j = NULL;
    cleanup_error kyb_error *err = NULL;
    if (kyb_uploader_cancel(u, id, &j, &err) < 0) {
      fail(out, err);
      return;
    }
    const char *state = json_string_value(json_object_get(j, "state"));
    reply(out, state && strcmp(state, "cancelled") == 0 ? 200 : 202, j);
    return;
  }
  out->allow = "GET, DELETE";
  kyb_api_error(out, 405, "%s is not allowed on %s/%s", method, JOBS, id);
}

static void images(const kyb_job_policy *pol, const kyb_api_request *rq, kyb_api_response *out) {
  json_t *j = NULL;
  cleanup_error kyb_error *err = NULL;
  int r = 0;
  if (strcmp(rq->method, "GET") == 0) {
    r = kyb_images_list(pol, rq->store, &j, &err);
  } else if (strcmp(rq->method, "DELETE") == 0) {
    r = kyb_images_delete(pol, rq->ref, &j, &err);
  } else {
    out->allow = "GET, DELETE";
    kyb_api_error(out, 405, "%s is not allowed on %s", rq->method, IMAGES);
    return;
  }
  if (r < 0) {
    /* The store's own failures are the storage's answer, not the caller's
     * mistake: 502 with storage's message (e.g. its HTTP 401). */
    int e = kyb_error_code(err);
    int st = e == EINVAL || e == ENOTSUP ? 400 : e == EPERM ? 403 : e == ENOENT ? 404 : 502;
    kyb_api_error(out, st, "%s", kyb_error_message(err));
  } else {
    reply(out, 200, j);
  }
}

void kyb_uploader_api(kyb_uploader *u, const kyb_job_policy *pol, const kyb_api_request *rq,
                      kyb_api_response *out) {
  memset(out, 0, sizeof(*out));
  const char *method = rq->method, *path = rq->path;
  if (strcmp(path, "/healthz") == 0) {
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
      out->allow = "GET, HEAD";
      kyb_api_error(out, 405, "%s is not allowed on /healthz", method);
      return;
    }
    reply(out, kyb_uploader_stopping(u) ? 503 : 200, kyb_uploader_health(u));
    return;
  }
  if (strcmp(path, JOBS) == 0 || strcmp(path, JOBS "/") == 0) {
    if (strcmp(method, "POST") == 0)
      submit(u, pol, rq->body, rq->len, out);
    else if (strcmp(method, "GET") == 0)
      reply(out, 200, kyb_uploader_list(u));
    else {
      out->allow = "GET, POST";
      kyb_api_error(out, 405, "%s is not allowed on %s", method, JOBS);
    }
    return;
  }
  if (strncmp(path, JOBS "/", sizeof(JOBS)) == 0) {
    one_job(u, method, path + sizeof(JOBS), out);
    return;
  }
  if (strcmp(path, IMAGES) == 0) {
    images(pol, rq, out);
    return;
  }
  kyb_api_error(out, 404, "no such endpoint: %.200s (the API: /v1/jobs, /v1/images, /healthz)",
                path);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kybernate-uploader's API client over its unix socket (client.h).
 */
#include "uploader/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "uploader/job.h"
#include "uploader/server.h"
#include "util/cleanup.h"
#include "util/unix_http.h"

#define POLL_DEFAULT_MS 200
#define REQUEST_TIMEOUT_MS 30000L
#define LIST_TIMEOUT_MS 600000L

struct kyb_uploader_client {
  CURL *curl;
  char *socket;
  char errbuf[CURL_ERROR_SIZE];
};

typedef kyb_unix_http_answer answer;

void kyb_upload_job_clear(kyb_upload_job *j) {
  if (j == NULL)
    return;
  free(j->id);
  free(j->op);
  free(j->state);
  free(j->source);
  free(j->destination);
  free(j->part);
  free(j->error);
  free(j->ref);
  free(j->path);
  free(j->digest);
  memset(j, 0, sizeof(*j));
}

bool kyb_upload_job_final(const kyb_upload_job *j) {
  return j->state != NULL && (strcmp(j->state, "done") == 0 || strcmp(j->state, "failed") == 0 ||
                              strcmp(j->state, "cancelled") == 0);
}

int kyb_uploader_client_new(const char *socket, kyb_uploader_client **out, kyb_error **err) {
  if (socket == NULL || *socket == '\0')
    socket = getenv(KYB_UPLOADER_SOCKET_ENV);
  if (socket == NULL || *socket == '\0')
    socket = KYB_UPLOADER_SOCKET_DEFAULT;
  kyb_uploader_client *c = calloc(1, sizeof(*c));
  if (c == NULL || (c->socket = strdup(socket)) == NULL || (c->curl = curl_easy_init()) == NULL) {
    kyb_uploader_client_free(c);
    return kyb_error_set(err, ENOMEM, "uploader client");
  }
  *out = c;
  return 0;
}

void kyb_uploader_client_free(kyb_uploader_client *c) {
  if (c == NULL)
    return;
  if (c->curl != NULL)
    curl_easy_cleanup(c->curl);
  free(c->socket);
  free(c);
}

const char *kyb_uploader_client_socket(const kyb_uploader_client *c) {
  return c->socket;
}

/* The daemon's error message of an error answer, or its start. */
static int answer_error(const char *method, const char *path, long st, const answer *a,
                        kyb_error **err) {
  json_error_t je;
  cleanup_json json_t *j = a->buf ? json_loadb(a->buf, a->len, 0, &je) : NULL;
  const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
  if (msg != NULL)
    return kyb_error_set(err, kyb_unix_http_errno(st), "kybernate-uploader: %s", msg);
  return kyb_error_set(err, kyb_unix_http_errno(st), "kybernate-uploader: %s %s: HTTP %ld: %.200s",
                       method, path, st, a->buf ? a->buf : "");
}

/* One request; *a gets the body of a 2xx answer.  A listing of a remote
 * store may take minutes; everything else answers at once. */
static int call(kyb_uploader_client *c, const char *method, const char *path, const char *body,
                long *status, answer *a, kyb_error **err) {
  kyb_unix_http_request r = {
      .socket = c->socket,
      .method = method,
      .path = path,
      .body = body,
      .timeout_ms = strncmp(path, "/v1/images", 10) == 0 ? LIST_TIMEOUT_MS : REQUEST_TIMEOUT_MS};
  CURLcode rc = kyb_unix_http_call(c->curl, &r, a, c->errbuf, status);
  if (rc == CURLE_OUT_OF_MEMORY && !a->over)
    return kyb_error_set(err, ENOMEM, "uploader request");
  if (rc != CURLE_OK) {
    int e = rc == CURLE_COULDNT_CONNECT ? ECONNREFUSED : a->over ? EFBIG : EIO;
    return kyb_error_set(err, e, "kybernate-uploader at %s: %s %s: %s%s", c->socket, method, path,
                         c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc),
                         a->over ? " (answer too large)" : "");
  }
  if (*status < 200 || *status > 299)
    return answer_error(method, path, *status, a, err);
  return 0;
}

static char *dup_field(const json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s ? strdup(s) : NULL;
}

static uint64_t uint_field(const json_t *o, const char *k) {
  json_int_t v = json_integer_value(json_object_get(o, k));
  return v > 0 ? (uint64_t)v : 0;
}

int kyb_upload_job_parse(const char *text, size_t len, kyb_upload_job *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  json_error_t je;
  cleanup_json json_t *j = json_loadb(text, len, 0, &je);
  const char *id = json_string_value(json_object_get(j, "id"));
  const char *state = json_string_value(json_object_get(j, "state"));
  if (!json_is_object(j) || id == NULL || !kyb_job_id_valid(id) || state == NULL)
    return kyb_error_set(err, EBADMSG, "kybernate-uploader: not a job in its answer: %.200s", text);
  const json_t *p = json_object_get(j, "progress");
  const json_t *e = json_object_get(j, "error");
  const json_t *r = json_object_get(j, "result");
  out->id = strdup(id);
  out->state = strdup(state);
  out->op = dup_field(j, "op");
  out->source = dup_field(j, "source");
  out->destination = dup_field(j, "destination");
  out->attempt = (int)json_integer_value(json_object_get(j, "attempt"));
  out->joined = json_is_true(json_object_get(j, "joined"));
  out->done = uint_field(p, "bytesDone");
  out->total = uint_field(p, "bytesTotal");
  out->part = dup_field(p, "part");
  out->error = dup_field(e, "message");
  out->errnum = (int)json_integer_value(json_object_get(e, "errno"));
  out->ref = dup_field(r, "ref");
  out->path = dup_field(r, "path");
  out->digest = dup_field(r, "digest");
  out->size = uint_field(r, "size");
  if (out->id == NULL || out->state == NULL) {
    kyb_upload_job_clear(out);
    return kyb_error_set(err, ENOMEM, "job");
  }
  return 0;
}

/* A call whose answer is a job. */
static int job_call(kyb_uploader_client *c, const char *method, const char *path, const char *body,
                    kyb_upload_job *out, kyb_error **err) {
  answer a = {0};
  long st = 0;
  kyb_upload_job j = {0};
  int r = call(c, method, path, body, &st, &a, err);
  if (r == 0)
    r = kyb_upload_job_parse(a.buf ? a.buf : "", a.len, &j, err);
  free(a.buf);
  if (r == 0) {
    kyb_upload_job_clear(out);
    *out = j;
  }
  return r;
}

static int submit(kyb_uploader_client *c, json_t *req, kyb_upload_job *out, kyb_error **err) {
  cleanup_json json_t *j = req;
  cleanup_free char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
  if (body == NULL)
    return kyb_error_set(err, ENOMEM, "job request");
  return job_call(c, "POST", "/v1/jobs", body, out, err);
}

int kyb_uploader_client_upload(kyb_uploader_client *c, const char *image, const char *to,
                               kyb_upload_job *out, kyb_error **err) {
  return submit(c, json_pack("{s:s, s:s, s:s}", "op", "upload", "image", image, "to", to), out,
                err);
}

int kyb_uploader_client_fetch(kyb_uploader_client *c, const char *ref, kyb_upload_job *out,
                              kyb_error **err) {
  return submit(c, json_pack("{s:s, s:s}", "op", "fetch", "ref", ref), out, err);
}

static int job_path(const char *id, char path[64], kyb_error **err) {
  if (id == NULL || !kyb_job_id_valid(id))
    return kyb_error_set(err, EINVAL, "\"%.80s\" is not a job id", id ? id : "");
  snprintf(path, 64, "/v1/jobs/%s", id);
  return 0;
}

int kyb_uploader_client_get(kyb_uploader_client *c, const char *id, kyb_upload_job *out,
                            kyb_error **err) {
  char path[64];
  if (job_path(id, path, err) < 0)
    return -1;
  return job_call(c, "GET", path, NULL, out, err);
}

int kyb_uploader_client_cancel(kyb_uploader_client *c, const char *id, kyb_upload_job *out,
                               kyb_error **err) {
  char path[64];
  if (job_path(id, path, err) < 0)
    return -1;
  return job_call(c, "DELETE", path, NULL, out, err);
}

int kyb_uploader_client_health(kyb_uploader_client *c, kyb_error **err) {
  answer a = {0};
  long st = 0;
  int r = call(c, "GET", "/healthz", NULL, &st, &a, err);
  free(a.buf);
  return r;
}

/* "/v1/images?<key>=<escaped value>", malloc'd. */
static char *images_path(kyb_uploader_client *c, const char *key, const char *value) {
  char *esc = curl_easy_escape(c->curl, value, 0);
  char *p = NULL;
  if (esc == NULL || asprintf(&p, "/v1/images?%s=%s", key, esc) < 0)
    p = NULL;
  curl_free(esc);
  return p;
}

int kyb_uploader_client_list(kyb_uploader_client *c, const char *store, json_t **out,
                             kyb_error **err) {
  cleanup_free char *path = images_path(c, "store", store);
  if (path == NULL)
    return kyb_error_set(err, ENOMEM, "uploader request");
  answer a = {0};
  long st = 0;
  int r = call(c, "GET", path, NULL, &st, &a, err);
  json_error_t je;
  json_t *j = r == 0 ? json_loadb(a.buf ? a.buf : "", a.len, 0, &je) : NULL;
  free(a.buf);
  if (r < 0)
    return -1;
  if (!json_is_array(json_object_get(j, "images"))) {
    json_decref(j);
    return kyb_error_set(err, EBADMSG, "kybernate-uploader: no image list in its answer");
  }
  *out = j;
  return 0;
}

int kyb_uploader_client_delete(kyb_uploader_client *c, const char *ref, char **deleted,
                               kyb_error **err) {
  cleanup_free char *path = images_path(c, "ref", ref);
  if (path == NULL)
    return kyb_error_set(err, ENOMEM, "uploader request");
  answer a = {0};
  long st = 0;
  int r = call(c, "DELETE", path, NULL, &st, &a, err);
  json_error_t je;
  cleanup_json json_t *j = r == 0 ? json_loadb(a.buf ? a.buf : "", a.len, 0, &je) : NULL;
  free(a.buf);
  if (r < 0)
    return -1;
  const char *d = json_string_value(json_object_get(j, "deleted"));
  if (d == NULL)
    return kyb_error_set(err, EBADMSG, "kybernate-uploader: no \"deleted\" in its answer");
  if (deleted != NULL && (*deleted = strdup(d)) == NULL)
    return kyb_error_set(err, ENOMEM, "answer");
  return 0;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

int kyb_uploader_client_wait(kyb_uploader_client *c, const char *id, unsigned poll_ms,
                             kyb_upload_progress_fn fn, void *ud, kyb_upload_job *out,
                             kyb_error **err) {
  cleanup_free char *own = id ? strdup(id) : NULL; /* id may point into *out */
  if (own == NULL)
    return kyb_error_set(err, EINVAL, "no job id");
  for (bool first = true;; first = false) {
    if (!first)
      sleep_ms(poll_ms ? poll_ms : POLL_DEFAULT_MS);
    kyb_upload_job j = {0};
    if (kyb_uploader_client_get(c, own, &j, err) < 0)
      return kyb_error_wrap(err, "follow job %s", own);
    kyb_upload_job_clear(out);
    *out = j;
    if (fn != NULL && fn(ud, out) != 0)
      return kyb_error_set(err, ECANCELED, "stopped waiting for job %s (%s)", own, out->state);
    if (!kyb_upload_job_final(out))
      continue;
    if (strcmp(out->state, "done") == 0)
      return 0;
    return kyb_error_set(err, out->errnum ? out->errnum : EIO, "%s job %s %s: %s",
                         out->op ? out->op : "", own, out->state,
                         out->error ? out->error : "no reason given");
  }
}

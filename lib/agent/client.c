/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kybernate-agent's local API client over its unix socket (client.h).
 */
#include "agent/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/cleanup.h"
#include "util/unix_http.h"

struct kyb_agent_client {
  CURL *curl;
  char *socket;
  long timeout_ms; /* 0: the per-call defaults */
  char errbuf[CURL_ERROR_SIZE];
};

typedef kyb_unix_http_answer answer;

void kyb_agent_fetched_clear(kyb_agent_fetched *f) {
  if (f == NULL)
    return;
  free(f->ref);
  free(f->path);
  free(f->digest);
  memset(f, 0, sizeof(*f));
}

int kyb_agent_client_new(const char *socket, kyb_agent_client **out, kyb_error **err) {
  if (socket == NULL || *socket == '\0')
    return kyb_error_set(err, EINVAL, "no kybernate-agent socket given");
  kyb_agent_client *c = calloc(1, sizeof(*c));
  if (c == NULL || (c->socket = strdup(socket)) == NULL || (c->curl = curl_easy_init()) == NULL) {
    kyb_agent_client_free(c);
    return kyb_error_set(err, ENOMEM, "agent client");
  }
  *out = c;
  return 0;
}

void kyb_agent_client_free(kyb_agent_client *c) {
  if (c == NULL)
    return;
  if (c->curl != NULL)
    curl_easy_cleanup(c->curl);
  free(c->socket);
  free(c);
}

const char *kyb_agent_client_socket(const kyb_agent_client *c) {
  return c->socket;
}

void kyb_agent_client_set_timeout(kyb_agent_client *c, long ms) {
  c->timeout_ms = ms > 0 ? ms : 0;
}

/* The agent's message of an error answer, or the start of the answer. */
static int answer_error(const kyb_agent_client *c, const char *method, const char *path, long st,
                        const answer *a, kyb_error **err) {
  json_error_t je;
  cleanup_json json_t *j = a->buf ? json_loadb(a->buf, a->len, 0, &je) : NULL;
  const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
  if (msg != NULL)
    return kyb_error_set(err, kyb_unix_http_errno(st), "kybernate-agent at %s: %s", c->socket, msg);
  return kyb_error_set(err, kyb_unix_http_errno(st),
                       "kybernate-agent at %s: %s %s: HTTP %ld: %.200s", c->socket, method, path,
                       st, a->buf ? a->buf : "");
}

/* Why nothing answered: the socket is missing, or nobody listens on it. */
static int connect_error(const kyb_agent_client *c, kyb_error **err) {
  struct stat st;
  if (stat(c->socket, &st) < 0)
    return kyb_error_set(err, ECONNREFUSED,
                         "kybernate-agent at %s: no socket there (%s): is the agent running?",
                         c->socket, strerror(errno));
  return kyb_error_set(err, ECONNREFUSED,
                       "kybernate-agent at %s: nobody answers on the socket: is the agent running?",
                       c->socket);
}

static int perform_error(const kyb_agent_client *c, const char *method, const char *path,
                         CURLcode rc, long timeout_ms, const answer *a, kyb_error **err) {
  if (rc == CURLE_COULDNT_CONNECT)
    return connect_error(c, err);
  if (rc == CURLE_OPERATION_TIMEDOUT)
    return kyb_error_set(err, ETIMEDOUT, "kybernate-agent at %s: %s %s: no answer within %.1f s",
                         c->socket, method, path, (double)timeout_ms / 1000);
  return kyb_error_set(err, a->over ? EFBIG : EIO, "kybernate-agent at %s: %s %s: %s%s", c->socket,
                       method, path, c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc),
                       a->over ? " (answer too large)" : "");
}

/* One request; *a gets the body of a 2xx answer. */
static int call(kyb_agent_client *c, const char *method, const char *path, const char *body,
                long default_timeout_s, answer *a, kyb_error **err) {
  long timeout = c->timeout_ms ? c->timeout_ms : default_timeout_s * 1000;
  long connect = timeout < KYB_AGENT_CLIENT_CONNECT_TIMEOUT_S * 1000L
                     ? timeout
                     : KYB_AGENT_CLIENT_CONNECT_TIMEOUT_S * 1000L;
  kyb_unix_http_request r = {.socket = c->socket,
                             .method = method,
                             .path = path,
                             .body = body,
                             .timeout_ms = timeout,
                             .connect_timeout_ms = connect};
  long status = 0;
  CURLcode rc = kyb_unix_http_call(c->curl, &r, a, c->errbuf, &status);
  if (rc == CURLE_OUT_OF_MEMORY && !a->over)
    return kyb_error_set(err, ENOMEM, "agent request");
  if (rc != CURLE_OK)
    return perform_error(c, method, path, rc, timeout, a, err);
  if (status < 200 || status > 299)
    return answer_error(c, method, path, status, a, err);
  return 0;
}

/* A 2xx answer's JSON object. */
static json_t *answer_object(const kyb_agent_client *c, const char *path, const answer *a,
                             kyb_error **err) {
  json_error_t je;
  json_t *j = json_loadb(a->buf ? a->buf : "", a->len, 0, &je);
  if (!json_is_object(j)) {
    json_decref(j);
    kyb_error_set(err, EBADMSG, "kybernate-agent at %s: %s: not a JSON object: %.200s", c->socket,
                  path, a->buf ? a->buf : "");
    return NULL;
  }
  return j;
}

int kyb_agent_client_health(kyb_agent_client *c, json_t **out, kyb_error **err) {
  answer a = {0};
  int r = call(c, "GET", "/v1/healthz", NULL, KYB_AGENT_CLIENT_HEALTH_TIMEOUT_S, &a, err);
  cleanup_json json_t *j = r == 0 ? answer_object(c, "/v1/healthz", &a, err) : NULL;
  free(a.buf);
  if (j == NULL)
    return -1;
  const char *st = json_string_value(json_object_get(j, "status"));
  if (st == NULL || strcmp(st, "ok") != 0)
    return kyb_error_set(err, EAGAIN, "kybernate-agent at %s: status %s", c->socket,
                         st ? st : "missing");
  if (out != NULL)
    *out = json_incref(j);
  return 0;
}

int kyb_agent_fetched_parse(const char *text, size_t len, kyb_agent_fetched *out, kyb_error **err) {
  json_error_t je;
  cleanup_json json_t *j = json_loadb(text, len, 0, &je);
  const char *ref = json_string_value(json_object_get(j, "ref"));
  const char *path = json_string_value(json_object_get(j, "path"));
  const json_t *digest = json_object_get(j, "digest");
  if (!json_is_object(j) || ref == NULL || path == NULL || path[0] != '/' ||
      (digest != NULL && !json_is_string(digest) && !json_is_null(digest)))
    return kyb_error_set(err, EBADMSG,
                         "not a fetch answer ({\"ref\", \"path\": absolute, \"digest\"}): %.200s",
                         text);
  kyb_agent_fetched f = {.ref = strdup(ref), .path = strdup(path)};
  if (json_is_string(digest))
    f.digest = strdup(json_string_value(digest));
  if (f.ref == NULL || f.path == NULL || (json_is_string(digest) && f.digest == NULL)) {
    kyb_agent_fetched_clear(&f);
    return kyb_error_set(err, ENOMEM, "fetch answer");
  }
  kyb_agent_fetched_clear(out);
  *out = f;
  return 0;
}

int kyb_agent_client_fetch(kyb_agent_client *c, const char *ref, kyb_agent_fetched *out,
                           kyb_error **err) {
  cleanup_json json_t *b = json_pack("{s:s}", "ref", ref ? ref : "");
  cleanup_free char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
  if (body == NULL)
    return kyb_error_set(err, ENOMEM, "agent request");
  answer a = {0};
  int r = call(c, "POST", "/v1/images/fetch", body, KYB_AGENT_CLIENT_FETCH_TIMEOUT_S, &a, err);
  if (r == 0 && kyb_agent_fetched_parse(a.buf ? a.buf : "", a.len, out, err) < 0)
    r = kyb_error_wrap(err, "kybernate-agent at %s", c->socket);
  free(a.buf);
  return r;
}

int kyb_agent_client_checkpoint(kyb_agent_client *c, const json_t *body, json_t **out,
                                kyb_error **err) {
  cleanup_free char *text = json_dumps(body, JSON_COMPACT);
  if (text == NULL)
    return kyb_error_set(err, ENOMEM, "agent request");
  answer a = {0};
  int r = call(c, "POST", "/v1/checkpoint", text, KYB_AGENT_CLIENT_CHECKPOINT_TIMEOUT_S, &a, err);
  cleanup_json json_t *j = r == 0 ? answer_object(c, "/v1/checkpoint", &a, err) : NULL;
  free(a.buf);
  if (j == NULL)
    return -1;
  static const char *const strings[] = {"container", "name", "ref", "digest"};
  for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
    if (!json_is_string(json_object_get(j, strings[i])))
      return kyb_error_set(err, EBADMSG, "kybernate-agent at %s: checkpoint answer without \"%s\"",
                           c->socket, strings[i]);
  if (!json_is_integer(json_object_get(j, "size")) ||
      !json_is_integer(json_object_get(j, "totalMs")))
    return kyb_error_set(err, EBADMSG,
                         "kybernate-agent at %s: checkpoint answer without \"size\"/\"totalMs\"",
                         c->socket);
  *out = json_incref(j);
  return 0;
}

int kyb_agent_client_report_outcome(kyb_agent_client *c, const json_t *body, kyb_error **err) {
  cleanup_free char *text = json_dumps(body, JSON_COMPACT);
  if (text == NULL)
    return kyb_error_set(err, ENOMEM, "agent request");
  answer a = {0};
  int r = call(c, "POST", "/v1/restore-outcome", text, KYB_AGENT_CLIENT_REPORT_TIMEOUT_S, &a, err);
  free(a.buf);
  return r;
}

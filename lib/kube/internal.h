/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the files of lib/kube share and nobody else sees: the client struct,
 * the one request path (transport.c) and small helpers.
 */
#ifndef KYB_KUBE_INTERNAL_H
#define KYB_KUBE_INTERNAL_H

#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "kube/client.h"
#include "kube/config.h"
#include "util/error.h"

/* How much of a non-2xx body is kept for the error message. */
#define KUBE_ERROR_BODY_MAX (256u << 10)
/* A projected token is re-read at least this often even when its file
 * looks unchanged (client-go's cached token source uses one minute too). */
#define KUBE_TOKEN_MAX_AGE_MS 60000
/* How long a cancellation may go unnoticed when only a flag is given. */
#define KUBE_CANCEL_POLL_MS 100

struct kyb_kube_client {
  kyb_kube_config cfg;
  long timeout_ms;
  size_t max_body;
  size_t max_line;
  char *user_agent;
  CURL *curl;
  CURLM *multi;
  char errbuf[CURL_ERROR_SIZE];
  /* The bearer token as last read from cfg.token_file, and what its file
   * looked like then. */
  char *token;
  dev_t tok_dev;
  ino_t tok_ino;
  off_t tok_size;
  struct timespec tok_mtime;
  int64_t tok_read_ms;
  int cancel_fd;
  const volatile sig_atomic_t *cancel_flag;
  unsigned int rand_state; /* backoff jitter */
};

/* Receives a 2xx body as it streams: 0 go on, 1 stop (the call then
 * returns 1), -1 with err to fail. */
typedef int (*kube_data_fn)(void *ud, const char *buf, size_t len, kyb_error **err);

typedef struct {
  const char *method;       /* GET POST PUT PATCH DELETE */
  const char *path;         /* path and query, from kyb_kube_path */
  const char *what;         /* "<verb> <resource> <ns>/<name>", for messages */
  const char *content_type; /* of body; NULL: no body */
  const char *body;
  size_t body_len;
  kube_data_fn on_data; /* NULL: collect the body (bounded) */
  void *ud;
  long timeout_ms; /* 0: the client's; < 0: none */
} kube_req;

typedef struct {
  long status;
  char *body; /* NUL-terminated */
  size_t len;
} kube_resp;

/* One request.  0 on a 2xx answer (resp filled when collecting), 1 when
 * on_data asked to stop, -1 with err otherwise (a status error for a non-2xx
 * answer, see kyb_kube_status_error). */
int kube_do(kyb_kube_client *c, const kube_req *req, kube_resp *resp, kyb_error **err);
void kube_resp_clear(kube_resp *r);

/* kube_do + the body parsed as a JSON object (*out, may be NULL to drop it). */
int kube_do_json(kyb_kube_client *c, const kube_req *req, json_t **out, kyb_error **err);

/* A server body as a JSON object, or err ("kube: <what>: malformed answer: …"). */
json_t *kube_parse_object(const char *what, const char *body, size_t len, kyb_error **err);

/* "create kybernate.io/v1alpha1 checkpoints default/x" into buf. */
void kube_what(char *buf, size_t size, const char *verb, const kyb_kube_resource *res,
               const char *ns, const char *name);

/* The namespace a call uses: ns, or the configuration's default when NULL;
 * "" for cluster-scoped resources. */
const char *kube_ns(const kyb_kube_client *c, const kyb_kube_resource *res, const char *ns);

/* A name or namespace: non-empty, at most 253 bytes, printable ASCII without
 * '/', '%' or blanks, not "." or "..". */
int kube_check_name(const char *s, const char *what, kyb_error **err);

/* Trims trailing blanks and newlines from a token read from a file; returns
 * the new length. */
size_t kube_token_trim(char *tok, size_t *len);

int kube_config_set_server(kyb_kube_config *cfg, const char *server, kyb_error **err);

/* Appends "&key=value" (or "?key=value" for the first) to *url, escaped. */
int kube_query_add(char **url, const char *key, const char *value, kyb_error **err);

/* A Status object (a watch ERROR event's) into err; its code when valid,
 * else http_code.  Returns -1. */
int kube_status_error_obj(const char *what, long http_code, const json_t *status, kyb_error **err);

/* Copies at most size-1 bytes of src into dst, control characters turned
 * into spaces, cut at a UTF-8 character boundary: server text in messages. */
void kube_sanitize(char *dst, size_t size, const char *src, size_t len);

/* Backoff with jitter: base * 2^attempt, at most cap, plus up to 10%. */
long kube_backoff_ms(kyb_kube_client *c, long base, long cap, int attempt);

int64_t kube_mono_ms(void);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One JSON request to a local daemon's HTTP API on its unix socket: what the
 * clients of kybernate-agent and kybernate-uploader share (libcurl with
 * CURLOPT_UNIX_SOCKET_PATH).  Each client keeps its own handle, timeouts and
 * error wording; this is only the transport and the size-bounded answer.
 */
#ifndef KYB_UTIL_UNIX_HTTP_H
#define KYB_UTIL_UNIX_HTTP_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

/* The most of an answer kept; a longer one fails the transfer with `over`. */
#define KYB_UNIX_HTTP_ANSWER_MAX (1u << 20)

typedef struct {
  char *buf; /* heap, NUL-terminated; NULL while empty */
  size_t len;
  bool over; /* the answer was longer than KYB_UNIX_HTTP_ANSWER_MAX */
} kyb_unix_http_answer;

void kyb_unix_http_answer_clear(kyb_unix_http_answer *a);

typedef struct {
  const char *socket;
  const char *method;
  const char *path; /* "/v1/..." */
  const char *body; /* JSON, or NULL */
  long timeout_ms;
  long connect_timeout_ms; /* 0: libcurl's default */
} kyb_unix_http_request;

/* Performs the request on `h` (reset first).  Returns libcurl's result;
 * with CURLE_OK, *status is the HTTP status and *a holds the answer.
 * `errbuf` receives libcurl's message on failure (may stay empty). */
CURLcode kyb_unix_http_call(CURL *h, const kyb_unix_http_request *r, kyb_unix_http_answer *a,
                            char errbuf[CURL_ERROR_SIZE], long *status);

/* The errno an error status of these APIs stands for (400 EINVAL, 403 EPERM,
 * 404 ENOENT, 405 ENOTSUP, 409 EEXIST, 413 EMSGSIZE, 503 EAGAIN, else EIO). */
int kyb_unix_http_errno(long status);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small HTTP(S) client over libcurl for the remote stores (oci://, s3://).
 *
 *     kyb_http *h = NULL;
 *     kyb_http_new(NULL, &h, err);
 *     kyb_http_req rq = {.method = "GET", .url = url, .write = sink, .write_ud = ud};
 *     kyb_http_resp rs = {0};
 *     if (kyb_http_do(h, &rq, &rs, err) < 0)            // transport failure
 *       ...;
 *     if (rs.status != 200)
 *       kyb_http_status_error(&rq, &rs, err);          // "GET <url>: HTTP 404 ...: <body>"
 *     kyb_http_resp_clear(&rs);
 *
 * One handle holds one curl easy handle, so connections are reused between
 * requests; it is not thread-safe (one per thread).
 *
 * Bodies stream: a request body comes from a buffer or a read callback, a
 * 2xx response body goes to a write callback (or is collected, bounded, into
 * resp->body).  A non-2xx body never reaches the write callback: its start
 * (at most KYB_HTTP_ERROR_BODY_MAX bytes) is kept in resp->body for the
 * error message.
 *
 * Retries: connection errors, timeouts, 5xx and 429 are retried with
 * exponential backoff (and Retry-After, capped) when the request can be sent
 * again: its body is a buffer or has a rewind callback, and no response byte
 * has reached the caller's write callback yet.  Each retry is logged at warn
 * level.  After the last attempt, a transport error fails kyb_http_do; a
 * 5xx/429 is returned as the response for the caller to judge.
 *
 * TLS: https is verified by libcurl (system CA store, or opts->ca_file).
 * Redirects are followed only when the request asks (follow_redirects) and
 * never from https to http; libcurl does not send an Authorization header
 * to another host.  Only http and https URLs are accepted.
 */
#ifndef KYB_STORE_HTTP_H
#define KYB_STORE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

#define KYB_HTTP_COLLECT_MAX_DEFAULT (1u << 20) /* collected 2xx bodies: 1 MiB unless asked */
#define KYB_HTTP_ERROR_BODY_MAX (64u << 10)     /* the kept start of a non-2xx body */

typedef struct kyb_http kyb_http;

typedef struct {
  long connect_timeout_ms; /* 0: 10 s */
  long low_speed_time_s;   /* abort a transfer slower than 1 KiB/s for this long; 0: 60 s */
  long timeout_ms;         /* whole request; 0: no limit (large blobs take long) */
  int retries;             /* further attempts after the first; 0: 4; negative: none */
  long backoff_ms;         /* first wait, doubled per retry, at most 10 s; 0: 250 ms */
  const char *ca_file;     /* extra CA bundle (PEM) instead of the system's; NULL: system */
} kyb_http_opts;

/* Streamed request body: fills buf with up to len bytes and returns how many;
 * 0 is the end; -1 with err set stops the request. */
typedef ssize_t (*kyb_http_read_fn)(void *ud, void *buf, size_t len, kyb_error **err);
/* Starts a streamed body over (for a retry, or curl re-sending after a 401). */
typedef int (*kyb_http_rewind_fn)(void *ud, kyb_error **err);
/* Receives 2xx response body bytes in order; 0, or -1 with err set to stop.
 * Same shape as kyb_pack_sink_fn (pack.h). */
typedef int (*kyb_http_write_fn)(void *ud, const void *buf, size_t len, kyb_error **err);

typedef struct {
  const char *method;         /* GET HEAD PUT POST PATCH DELETE */
  const char *url;            /* http:// or https:// */
  const char *const *headers; /* "Name: value" lines, NULL-terminated; NULL: none */
  const void *body;           /* buffer body (body_len bytes); NULL with read: streamed */
  size_t body_len;            /* PUT/POST/PATCH with neither body nor read send 0 bytes */
  kyb_http_read_fn read;      /* streamed body */
  void *read_ud;              /* */
  int64_t read_len;           /* streamed body's length; -1: unknown (chunked encoding) */
  kyb_http_rewind_fn rewind;  /* NULL: a streamed body is sent once (no retry) */
  kyb_http_write_fn write;    /* 2xx body sink; NULL: collect into resp->body */
  void *write_ud;             /* */
  size_t max_body;            /* collect limit; 0: KYB_HTTP_COLLECT_MAX_DEFAULT; over it: EFBIG */
  bool follow_redirects;      /* GET/HEAD to a blob store that redirects */
  bool no_retry;              /* one attempt only (the caller retries itself) */
  const char *what;           /* for messages: what the request is for (may be NULL) */
} kyb_http_req;

typedef struct {
  long status;      /* the final response's HTTP status */
  char *body;       /* collected body (2xx without write, or a non-2xx start), NUL-terminated */
  size_t body_len;  /* */
  char **headers;   /* the final response's header lines, "Name: value", CRLF stripped */
  size_t nheaders;  /* */
  uint64_t written; /* body bytes handed to req->write */
} kyb_http_resp;

int kyb_http_new(const kyb_http_opts *opts, kyb_http **out, kyb_error **err);
void kyb_http_free(kyb_http *h);

/* Asked while a request runs (about once a second even when nothing moves)
 * and before each retry: nonzero stops the request at once, and
 * kyb_http_do fails with ECANCELED without retrying.  A cancel reaches a
 * transfer stalled in the network this way.  NULL: none. */
typedef int (*kyb_http_abort_fn)(void *ud);
void kyb_http_set_abort(kyb_http *h, kyb_http_abort_fn fn, void *ud);

/* Performs the request (with the retries above).  0 when a response arrived,
 * whatever its status; -1 on a transport failure or when a callback failed
 * (its error, with method and URL added).  resp is cleared first. */
int kyb_http_do(kyb_http *h, const kyb_http_req *req, kyb_http_resp *resp, kyb_error **err);

/* The value of the response's first header `name` (case-insensitive), with
 * surrounding blanks trimmed; NULL when absent.  Owned by resp. */
const char *kyb_http_resp_header(const kyb_http_resp *resp, const char *name);

void kyb_http_resp_clear(kyb_http_resp *resp);

/* Sets err for a response the caller did not expect and returns -1:
 * "<what>: <METHOD> <url>: HTTP 404 Not Found: <first line of the body>".
 * errno: 401/403 EACCES, 404 ENOENT, 409 EEXIST, 413 EFBIG, 416 ERANGE,
 * 429 EAGAIN, other 4xx EINVAL, 5xx and anything else EIO. */
int kyb_http_status_error(const kyb_http_req *req, const kyb_http_resp *resp, kyb_error **err);

/* The errno kyb_http_status_error uses for an HTTP status. */
int kyb_http_status_errno(long status);

/* Percent-encodes s for a URL query value or path segment (RFC 3986
 * unreserved characters stay).  NULL when out of memory. */
char *kyb_http_escape(const char *s);

#endif

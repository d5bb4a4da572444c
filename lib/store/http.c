/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP(S) over libcurl for the remote stores: streaming bodies both ways,
 * bounded collection, retries with backoff, errors that name the request.
 * The contract is in http.h.
 */
#define KYB_LOG_MODULE "http"

#include "store/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util/cleanup.h"
#include "util/log.h"
#include "version.h"

#define MAX_HEADERS 256
#define MAX_HEADER_BYTES (256u << 10)
#define BACKOFF_CAP_MS 10000L
#define RETRY_AFTER_CAP_MS 30000L

struct kyb_http {
  CURL *curl;
  kyb_http_opts opts;
  char errbuf[CURL_ERROR_SIZE];
  kyb_http_abort_fn abort;
  void *abort_ud;
};

/* One attempt's state, shared with the curl callbacks. */
typedef struct {
  const kyb_http_req *req;
  kyb_http_resp *resp;
  CURL *curl;
  kyb_error *cb_err; /* a callback's own error: never retried */
  size_t body_off;   /* buffer body: bytes sent */
  size_t header_bytes;
  size_t cap; /* of resp->body */
  size_t limit;
} xfer;

int kyb_http_new(const kyb_http_opts *opts, kyb_http **out, kyb_error **err) {
  kyb_http *h = calloc(1, sizeof(*h));
  if (h == NULL)
    return kyb_error_set(err, ENOMEM, "HTTP client");
  if (opts != NULL)
    h->opts = *opts;
  if (h->opts.connect_timeout_ms <= 0)
    h->opts.connect_timeout_ms = 10000;
  if (h->opts.low_speed_time_s <= 0)
    h->opts.low_speed_time_s = 60;
  if (h->opts.retries == 0)
    h->opts.retries = 4;
  if (h->opts.retries < 0)
    h->opts.retries = 0;
  if (h->opts.backoff_ms <= 0)
    h->opts.backoff_ms = 250;
  h->curl = curl_easy_init();
  if (h->curl == NULL) {
    free(h);
    return kyb_error_set(err, ENOMEM, "HTTP client: curl_easy_init failed");
  }
  *out = h;
  return 0;
}

void kyb_http_set_abort(kyb_http *h, kyb_http_abort_fn fn, void *ud) {
  h->abort = fn;
  h->abort_ud = fn ? ud : NULL;
}

static bool aborted(const kyb_http *h) {
  return h->abort != NULL && h->abort(h->abort_ud) != 0;
}

static int on_xferinfo(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
  (void)dltotal;
  (void)dlnow;
  (void)ultotal;
  (void)ulnow;
  return aborted(ud) ? 1 : 0;
}

void kyb_http_free(kyb_http *h) {
  if (h == NULL)
    return;
  curl_easy_cleanup(h->curl);
  free(h);
}

void kyb_http_resp_clear(kyb_http_resp *resp) {
  if (resp == NULL)
    return;
  free(resp->body);
  for (size_t i = 0; i < resp->nheaders; i++)
    free(resp->headers[i]);
  free(resp->headers);
  memset(resp, 0, sizeof(*resp));
}

static void drop_headers(kyb_http_resp *resp) {
  for (size_t i = 0; i < resp->nheaders; i++)
    free(resp->headers[i]);
  resp->nheaders = 0;
}

const char *kyb_http_resp_header(const kyb_http_resp *resp, const char *name) {
  size_t nl = strlen(name);
  for (size_t i = 0; i < resp->nheaders; i++) {
    const char *h = resp->headers[i];
    if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
      const char *v = h + nl + 1;
      while (*v == ' ' || *v == '\t')
        v++;
      return v;
    }
  }
  return NULL;
}

/* The URL without its query: queries can carry signatures and upload state. */
static int url_shown_len(const char *url) {
  size_t n = strcspn(url, "?#");
  return n > 2048 ? 2048 : (int)n;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud) {
  xfer *x = ud;
  size_t len = size * n;
  kyb_http_resp *r = x->resp;
  if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) { /* a new response (redirect, 100) */
    drop_headers(r);
    x->header_bytes = 0;
    return len;
  }
  size_t l = len;
  while (l > 0 && (data[l - 1] == '\r' || data[l - 1] == '\n'))
    l--;
  if (l == 0)
    return len;
  x->header_bytes += l;
  if (r->nheaders >= MAX_HEADERS || x->header_bytes > MAX_HEADER_BYTES) {
    kyb_error_set(&x->cb_err, EPROTO, "response headers exceed %d lines or %u bytes", MAX_HEADERS,
                  MAX_HEADER_BYTES);
    return 0;
  }
  if (r->nheaders % 16 == 0) {
    char **nv = realloc(r->headers, (r->nheaders + 16) * sizeof(*nv));
    if (nv == NULL)
      goto oom;
    r->headers = nv;
  }
  char *line = strndup(data, l);
  if (line == NULL)
    goto oom;
  r->headers[r->nheaders++] = line;
  return len;
oom:
  kyb_error_set(&x->cb_err, ENOMEM, "response headers");
  return 0;
}

static long current_status(CURL *c) {
  long st = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
  return st;
}

static bool is_2xx(long st) {
  return st >= 200 && st < 300;
}

/* Appends to resp->body up to x->limit bytes; returns false past it. */
static bool collect(xfer *x, const char *data, size_t len) {
  kyb_http_resp *r = x->resp;
  if (r->body_len + len > x->limit)
    return false;
  if (r->body_len + len + 1 > x->cap) {
    size_t nc = x->cap ? x->cap : 4096;
    while (nc < r->body_len + len + 1)
      nc *= 2;
    char *nb = realloc(r->body, nc);
    if (nb == NULL) {
      kyb_error_set(&x->cb_err, ENOMEM, "response body");
      return false;
    }
    r->body = nb;
    x->cap = nc;
  }
  memcpy(r->body + r->body_len, data, len);
  r->body_len += len;
  r->body[r->body_len] = '\0';
  return true;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud) {
  xfer *x = ud;
  size_t len = size * n;
  long st = current_status(x->curl);
  if (!is_2xx(st)) { /* an error body: keep its start for the message */
    size_t room = x->resp->body_len < KYB_HTTP_ERROR_BODY_MAX
                      ? KYB_HTTP_ERROR_BODY_MAX - x->resp->body_len
                      : 0;
    x->limit = KYB_HTTP_ERROR_BODY_MAX;
    if (room > 0 && !collect(x, data, len < room ? len : room) && x->cb_err != NULL)
      return 0;
    return len;
  }
  if (x->req->write != NULL) {
    if (x->req->write(x->req->write_ud, data, len, &x->cb_err) < 0) {
      if (x->cb_err == NULL)
        kyb_error_set(&x->cb_err, EIO, "response body sink failed");
      return 0;
    }
    x->resp->written += len;
    return len;
  }
  if (!collect(x, data, len)) {
    if (x->cb_err == NULL)
      kyb_error_set(&x->cb_err, EFBIG, "response body larger than %zu bytes", x->limit);
    return 0;
  }
  return len;
}

static size_t on_read(char *buf, size_t size, size_t n, void *ud) {
  xfer *x = ud;
  size_t len = size * n;
  const kyb_http_req *rq = x->req;
  if (rq->read == NULL) {
    size_t left = rq->body_len - x->body_off;
    size_t k = left < len ? left : len;
    if (k > 0)
      memcpy(buf, (const char *)rq->body + x->body_off, k);
    x->body_off += k;
    return k;
  }
  ssize_t got = rq->read(rq->read_ud, buf, len, &x->cb_err);
  if (got < 0) {
    if (x->cb_err == NULL)
      kyb_error_set(&x->cb_err, EIO, "request body source failed");
    return CURL_READFUNC_ABORT;
  }
  return (size_t)got;
}

static int on_seek(void *ud, curl_off_t off, int origin) {
  xfer *x = ud;
  if (off != 0 || origin != SEEK_SET)
    return CURL_SEEKFUNC_CANTSEEK;
  if (x->req->read == NULL) {
    x->body_off = 0;
    return CURL_SEEKFUNC_OK;
  }
  if (x->req->rewind == NULL)
    return CURL_SEEKFUNC_CANTSEEK;
  return x->req->rewind(x->req->read_ud, &x->cb_err) == 0 ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_FAIL;
}

static bool has_body(const kyb_http_req *rq) {
  return rq->body != NULL || rq->read != NULL || strcmp(rq->method, "PUT") == 0 ||
         strcmp(rq->method, "POST") == 0 || strcmp(rq->method, "PATCH") == 0;
}

static int setup(kyb_http *h, xfer *x, struct curl_slist *hdrs) {
  const kyb_http_req *rq = x->req;
  CURL *c = h->curl;
  bool plain = strncasecmp(rq->url, "http://", 7) == 0;
  int bad = 0;
  curl_easy_reset(c); /* keeps the connection cache */
  h->errbuf[0] = '\0';
  bad |= curl_easy_setopt(c, CURLOPT_URL, rq->url) != CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500
  bad |= curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
  bad |=
      curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, plain ? "http,https" : "https") != CURLE_OK;
#else
  bad |=
      curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS)) != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS,
                          (long)(plain ? CURLPROTO_HTTP | CURLPROTO_HTTPS : CURLPROTO_HTTPS)) !=
         CURLE_OK;
#endif
  bad |= curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_VERBOSE, getenv("KYB_CURL_VERBOSE") ? 1L : 0L) != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->errbuf) != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_USERAGENT, "kybernate/" KYB_VERSION) != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, h->opts.connect_timeout_ms) != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L) != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, h->opts.low_speed_time_s) != CURLE_OK;
  if (h->opts.timeout_ms > 0)
    bad |= curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, h->opts.timeout_ms) != CURLE_OK;
  if (h->opts.ca_file != NULL)
    bad |= curl_easy_setopt(c, CURLOPT_CAINFO, h->opts.ca_file) != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs) != CURLE_OK;
  if (h->abort != NULL) {
    bad |= curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xferinfo) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_XFERINFODATA, h) != CURLE_OK;
  }
  bad |= curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_HEADERDATA, x) != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_WRITEDATA, x) != CURLE_OK;
  if (rq->follow_redirects) {
    bad |= curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L) != CURLE_OK;
  }
  if (strcmp(rq->method, "HEAD") == 0) {
    bad |= curl_easy_setopt(c, CURLOPT_NOBODY, 1L) != CURLE_OK;
  } else if (has_body(rq)) {
    curl_off_t len = rq->read != NULL ? (curl_off_t)rq->read_len : (curl_off_t)rq->body_len;
    bad |= curl_easy_setopt(c, CURLOPT_UPLOAD, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, rq->method) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, len) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_READDATA, x) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_SEEKDATA, x) != CURLE_OK;
  } else if (strcmp(rq->method, "GET") != 0) {
    bad |= curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, rq->method) != CURLE_OK;
  }
  return bad ? -1 : 0;
}

static bool transport_retryable(CURLcode rc) {
  switch (rc) {
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_CONNECT:
  case CURLE_OPERATION_TIMEDOUT:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_SSL_CONNECT_ERROR:
    return true;
  default:
    return false;
  }
}

static int transport_errno(CURLcode rc) {
  switch (rc) {
  case CURLE_COULDNT_RESOLVE_HOST:
    return EHOSTUNREACH;
  case CURLE_COULDNT_CONNECT:
    return ECONNREFUSED;
  case CURLE_OPERATION_TIMEDOUT:
    return ETIMEDOUT;
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CACERT_BADFILE:
    return EACCES;
  case CURLE_OUT_OF_MEMORY:
    return ENOMEM;
  default:
    return EIO;
  }
}

static void sleep_ms(long ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

/* Sleeps ms before a retry, in slices so that an abort is seen; false
 * when the abort callback said stop. */
static bool wait_retry(const kyb_http *h, long ms) {
  for (long left = ms; left > 0; left -= 100) {
    if (aborted(h))
      return false;
    sleep_ms(left < 100 ? left : 100);
  }
  return !aborted(h);
}

/* The wait before retry number `attempt` (1-based): doubled each time,
 * capped; a Retry-After of whole seconds raises it, up to its own cap. */
static long backoff(const kyb_http *h, int attempt, const kyb_http_resp *resp) {
  long ms = h->opts.backoff_ms;
  for (int i = 1; i < attempt && ms < BACKOFF_CAP_MS; i++)
    ms *= 2;
  if (ms > BACKOFF_CAP_MS)
    ms = BACKOFF_CAP_MS;
  const char *ra = resp ? kyb_http_resp_header(resp, "Retry-After") : NULL;
  if (ra != NULL) {
    char *end = NULL;
    long s = strtol(ra, &end, 10);
    if (end != ra && s >= 0) {
      long r = s > RETRY_AFTER_CAP_MS / 1000 ? RETRY_AFTER_CAP_MS : s * 1000;
      if (r > ms)
        ms = r;
    }
  }
  return ms;
}

static struct curl_slist *build_headers(const kyb_http_req *rq) {
  struct curl_slist *l = curl_slist_append(NULL, "Expect:"); /* no 100-continue round trip */
  for (size_t i = 0; l != NULL && rq->headers != NULL && rq->headers[i] != NULL; i++) {
    struct curl_slist *n = curl_slist_append(l, rq->headers[i]);
    if (n == NULL) {
      curl_slist_free_all(l);
      return NULL;
    }
    l = n;
  }
  return l;
}

static const char *what_of(const kyb_http_req *rq) {
  return rq->what != NULL ? rq->what : "HTTP request";
}

int kyb_http_do(kyb_http *h, const kyb_http_req *rq, kyb_http_resp *resp, kyb_error **err) {
  kyb_http_resp_clear(resp);
  if (strncasecmp(rq->url, "http://", 7) != 0 && strncasecmp(rq->url, "https://", 8) != 0)
    return kyb_error_set(err, EINVAL, "%s: %.*s is not an http(s) URL", what_of(rq),
                         url_shown_len(rq->url), rq->url);
  struct curl_slist *hdrs = build_headers(rq);
  if (hdrs == NULL)
    return kyb_error_set(err, ENOMEM, "%s: headers", what_of(rq));
  bool streamed = rq->read != NULL;
  int max_attempts = rq->no_retry ? 1 : h->opts.retries + 1;
  int r = -1;
  for (int attempt = 1;; attempt++) {
    kyb_http_resp_clear(resp);
    xfer x = {.req = rq, .resp = resp, .curl = h->curl, .limit = rq->max_body};
    if (x.limit == 0)
      x.limit = KYB_HTTP_COLLECT_MAX_DEFAULT;
    if (attempt > 1 && streamed && rq->rewind(rq->read_ud, err) < 0) {
      kyb_error_wrap(err, "%s: rewind the request body for a retry", what_of(rq));
      break;
    }
    if (setup(h, &x, hdrs) < 0) {
      kyb_error_set(err, EINVAL, "%s: curl options refused", what_of(rq));
      break;
    }
    CURLcode rc = curl_easy_perform(h->curl);
    if (x.cb_err == NULL && rc == CURLE_ABORTED_BY_CALLBACK) {
      kyb_error_set(err, ECANCELED, "%s: %s %.*s: stopped", what_of(rq), rq->method,
                    url_shown_len(rq->url), rq->url);
      break;
    }
    if (x.cb_err != NULL) { /* the caller's callback failed: its error, no retry */
      kyb_error_clear(err);
      *err = x.cb_err;
      kyb_error_wrap(err, "%s: %s %.*s", what_of(rq), rq->method, url_shown_len(rq->url), rq->url);
      break;
    }
    bool can_retry = attempt < max_attempts && resp->written == 0 && (!streamed || rq->rewind);
    if (rc != CURLE_OK) {
      const char *detail = h->errbuf[0] ? h->errbuf : curl_easy_strerror(rc);
      if (can_retry && transport_retryable(rc)) {
        long ms = backoff(h, attempt, NULL);
        log_warn("%s: %s %.*s: %s; retry %d of %d in %ld ms", what_of(rq), rq->method,
                 url_shown_len(rq->url), rq->url, detail, attempt, max_attempts - 1, ms);
        if (wait_retry(h, ms))
          continue;
        kyb_error_set(err, ECANCELED, "%s: %s %.*s: %s; stopped before a retry", what_of(rq),
                      rq->method, url_shown_len(rq->url), rq->url, detail);
        break;
      }
      kyb_error_set(err, transport_errno(rc), "%s: %s %.*s: %s%s", what_of(rq), rq->method,
                    url_shown_len(rq->url), rq->url, detail, attempt > 1 ? " (after retries)" : "");
      break;
    }
    resp->status = current_status(h->curl);
    if (can_retry && (resp->status >= 500 || resp->status == 429)) {
      long ms = backoff(h, attempt, resp);
      log_warn("%s: %s %.*s: HTTP %ld; retry %d of %d in %ld ms", what_of(rq), rq->method,
               url_shown_len(rq->url), rq->url, resp->status, attempt, max_attempts - 1, ms);
      if (wait_retry(h, ms))
        continue;
      kyb_error_set(err, ECANCELED, "%s: %s %.*s: HTTP %ld; stopped before a retry", what_of(rq),
                    rq->method, url_shown_len(rq->url), rq->url, resp->status);
      break;
    }
    r = 0;
    break;
  }
  curl_slist_free_all(hdrs);
  /* Callbacks must not point into a dead xfer on the next reset. */
  curl_easy_setopt(h->curl, CURLOPT_HEADERDATA, NULL);
  curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, NULL);
  curl_easy_setopt(h->curl, CURLOPT_READDATA, NULL);
  curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, NULL);
  return r;
}

int kyb_http_status_errno(long status) {
  switch (status) {
  case 401:
  case 403:
    return EACCES;
  case 404:
    return ENOENT;
  case 409:
    return EEXIST;
  case 413:
    return EFBIG;
  case 416:
    return ERANGE;
  case 429:
    return EAGAIN;
  default:
    return status >= 400 && status < 500 ? EINVAL : EIO;
  }
}

static const char *reason(long st) {
  switch (st) {
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 409:
    return "Conflict";
  case 413:
    return "Payload Too Large";
  case 416:
    return "Range Not Satisfiable";
  case 429:
    return "Too Many Requests";
  case 500:
    return "Internal Server Error";
  case 502:
    return "Bad Gateway";
  case 503:
    return "Service Unavailable";
  case 504:
    return "Gateway Timeout";
  default:
    return "";
  }
}

int kyb_http_status_error(const kyb_http_req *rq, const kyb_http_resp *resp, kyb_error **err) {
  /* The body's first non-empty line, printable ASCII only, at most 300 bytes. */
  char line[301];
  size_t k = 0;
  const char *b = resp->body ? resp->body : "";
  size_t n = resp->body_len;
  size_t i = 0;
  while (i < n && (b[i] == '\n' || b[i] == '\r' || b[i] == ' '))
    i++;
  for (; i < n && b[i] != '\n' && b[i] != '\r' && k < sizeof(line) - 1; i++)
    line[k++] = (b[i] >= 0x20 && b[i] < 0x7f) ? b[i] : '?';
  line[k] = '\0';
  const char *rs = reason(resp->status);
  return kyb_error_set(err, kyb_http_status_errno(resp->status), "%s: %s %.*s: HTTP %ld%s%s%s%s",
                       what_of(rq), rq->method, url_shown_len(rq->url), rq->url, resp->status,
                       *rs ? " " : "", rs, k ? ": " : "", line);
}

char *kyb_http_escape(const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(s);
  char *out = malloc(n * 3 + 1);
  if (out == NULL)
    return NULL;
  char *o = out;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
        *p == '-' || *p == '.' || *p == '_' || *p == '~') {
      *o++ = (char)*p;
    } else {
      *o++ = '%';
      *o++ = hex[*p >> 4];
      *o++ = hex[*p & 15];
    }
  }
  *o = '\0';
  return out;
}

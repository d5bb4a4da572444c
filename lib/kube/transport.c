/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one request path of the Kubernetes client: libcurl, driven through a
 * multi handle so that a caller's cancel fd wakes the wait at once (the
 * curl_multi_poll extra fd) and a cancel flag is noticed within
 * KUBE_CANCEL_POLL_MS, with no thread and no signal handler of ours.
 *
 * HTTP/1.1 on purpose: one connection per client is all a client needs (a
 * watch holds its own client), and it keeps us clear of the HTTP/2
 * connection-reuse bugs of libcurl < 8 that grpc.c works around.
 */
#define KYB_LOG_MODULE "kube"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kube/internal.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "version.h"

const kyb_kube_resource kyb_kube_res_pods = {"", "v1", "pods", true};
const kyb_kube_resource kyb_kube_res_nodes = {"", "v1", "nodes", false};
const kyb_kube_resource kyb_kube_res_namespaces = {"", "v1", "namespaces", false};
const kyb_kube_resource kyb_kube_res_events = {"", "v1", "events", true};
const kyb_kube_resource kyb_kube_res_leases = {"coordination.k8s.io", "v1", "leases", true};

static void slist_freep(struct curl_slist **l) {
  curl_slist_free_all(*l);
  *l = NULL;
}
#define cleanup_slist __attribute__((cleanup(slist_freep)))

int64_t kube_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int set_tls(kyb_kube_client *c) {
  const kyb_kube_config *k = &c->cfg;
  CURL *h = c->curl;
  int bad = 0;
  if (k->insecure) {
    bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L) != CURLE_OK;
  }
  if (k->ca_file != NULL)
    bad |= curl_easy_setopt(h, CURLOPT_CAINFO, k->ca_file) != CURLE_OK;
  if (k->cert_file != NULL) {
    bad |= curl_easy_setopt(h, CURLOPT_SSLCERT, k->cert_file) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM") != CURLE_OK;
  }
  if (k->key_file != NULL) {
    bad |= curl_easy_setopt(h, CURLOPT_SSLKEY, k->key_file) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM") != CURLE_OK;
  }
#if LIBCURL_VERSION_NUM >= 0x074d00 /* 7.77: CA blobs; cert/key blobs since 7.71 */
  struct curl_blob b = {.flags = CURL_BLOB_COPY};
  if (k->ca_data != NULL) {
    b.data = k->ca_data;
    b.len = k->ca_data_len;
    bad |= curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &b) != CURLE_OK;
  }
  if (k->cert_data != NULL) {
    b.data = k->cert_data;
    b.len = k->cert_data_len;
    bad |= curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &b) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM") != CURLE_OK;
  }
  if (k->key_data != NULL) {
    b.data = k->key_data;
    b.len = k->key_data_len;
    bad |= curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &b) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM") != CURLE_OK;
  }
#else
  if (k->ca_data != NULL || k->cert_data != NULL || k->key_data != NULL)
    return -2;
#endif
  return bad ? -1 : 0;
}

static int set_fixed_options(kyb_kube_client *c) {
  CURL *h = c->curl;
  int bad = 0;
  bad |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_VERBOSE, getenv("KYB_CURL_VERBOSE") ? 1L : 0L) != CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85 */
  bad |= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
#else
  bad |=
      curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS)) != CURLE_OK;
#endif
  if (c->cfg.unix_socket != NULL)
    bad |= curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->cfg.unix_socket) != CURLE_OK;
  return bad ? -1 : 0;
}

int kyb_kube_client_new(const kyb_kube_config *cfg, const kyb_kube_client_opts *opts,
                        kyb_kube_client **out, kyb_error **err) {
  if (kyb_kube_config_validate(cfg, err) < 0)
    return kyb_error_wrap(err, "Kubernetes client");
  kyb_kube_client *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return kyb_error_set(err, ENOMEM, "Kubernetes client");
  c->cancel_fd = -1;
  if (kyb_kube_config_copy(&c->cfg, cfg, err) < 0) {
    free(c);
    return kyb_error_wrap(err, "Kubernetes client");
  }
  kyb_kube_client_opts o = opts != NULL ? *opts : (kyb_kube_client_opts){0};
  c->timeout_ms = o.timeout_ms > 0 ? o.timeout_ms : KYB_KUBE_DEFAULT_TIMEOUT_MS;
  c->max_body = o.max_body > 0 ? o.max_body : KYB_KUBE_DEFAULT_MAX_BODY;
  c->max_line = o.max_line > 0 ? o.max_line : KYB_KUBE_DEFAULT_MAX_LINE;
  c->user_agent = strdup(o.user_agent != NULL ? o.user_agent : "kybernate/" KYB_VERSION);
  c->rand_state = (unsigned int)(kube_mono_ms() ^ (int64_t)getpid());
  c->curl = curl_easy_init();
  c->multi = curl_multi_init();
  if (c->user_agent == NULL || c->curl == NULL || c->multi == NULL) {
    kyb_kube_client_free(c);
    return kyb_error_set(err, ENOMEM, "Kubernetes client");
  }
  int tls = set_tls(c);
  if (set_fixed_options(c) < 0 || tls < 0) {
    kyb_kube_client_free(c);
    if (tls == -2)
      return kyb_error_set(err, ENOTSUP,
                           "Kubernetes client: certificate or key data inline needs libcurl >= "
                           "7.77; give files instead");
    return kyb_error_set(err, EINVAL, "Kubernetes client: libcurl refused an option");
  }
  log_debug("client for %s from %s", c->cfg.server, c->cfg.source ? c->cfg.source : "?");
  *out = c;
  return 0;
}

void kyb_kube_client_free(kyb_kube_client *c) {
  if (c == NULL)
    return;
  if (c->multi != NULL)
    curl_multi_cleanup(c->multi);
  if (c->curl != NULL)
    curl_easy_cleanup(c->curl);
  kyb_kube_config_clear(&c->cfg);
  free(c->user_agent);
  free(c->token);
  free(c);
}

const kyb_kube_config *kyb_kube_client_config(const kyb_kube_client *c) {
  return &c->cfg;
}

void kyb_kube_client_set_cancel(kyb_kube_client *c, int fd, const volatile sig_atomic_t *flag) {
  c->cancel_fd = fd;
  c->cancel_flag = flag;
}

bool kyb_kube_client_cancelled(const kyb_kube_client *c) {
  if (c->cancel_flag != NULL && *c->cancel_flag != 0)
    return true;
  if (c->cancel_fd < 0)
    return false;
  struct pollfd p = {.fd = c->cancel_fd, .events = POLLIN};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
}

int kyb_kube_sleep(kyb_kube_client *c, long ms, kyb_error **err) {
  int64_t end = kube_mono_ms() + (ms > 0 ? ms : 0);
  for (;;) {
    if (kyb_kube_client_cancelled(c))
      return kyb_error_set(err, ECANCELED, "kube: cancelled");
    int64_t left = end - kube_mono_ms();
    if (left <= 0)
      return 0;
    if (c->cancel_flag != NULL && left > KUBE_CANCEL_POLL_MS)
      left = KUBE_CANCEL_POLL_MS;
    struct pollfd p = {.fd = c->cancel_fd, .events = POLLIN};
    poll(&p, c->cancel_fd >= 0 ? 1 : 0, (int)left);
  }
}

long kube_backoff_ms(kyb_kube_client *c, long base, long cap, int attempt) {
  long d = base;
  for (int i = 0; i < attempt && d < cap; i++)
    d *= 2;
  if (d > cap)
    d = cap;
  long jitter = d / 10 > 0 ? rand_r(&c->rand_state) % (d / 10 + 1) : 0;
  return d + jitter;
}

size_t kube_token_trim(char *tok, size_t *len) {
  while (*len > 0 && (tok[*len - 1] == '\n' || tok[*len - 1] == '\r' || tok[*len - 1] == ' ' ||
                      tok[*len - 1] == '\t'))
    tok[--*len] = '\0';
  return *len;
}

/* The bearer token for the next request.  A token file is re-read when its
 * identity, size or mtime changed (kubelet swaps projected tokens in with a
 * symlink rename, so stat() sees a new inode) or after
 * KUBE_TOKEN_MAX_AGE_MS; a failed re-read keeps the last good token, as
 * client-go does. */
static int current_token(kyb_kube_client *c, const char **tok, kyb_error **err) {
  *tok = c->cfg.token;
  if (c->cfg.token_file == NULL)
    return 0;
  struct stat sb;
  int64_t now = kube_mono_ms();
  bool stat_ok = stat(c->cfg.token_file, &sb) == 0;
  bool changed = true;
  if (c->token != NULL && !stat_ok) /* gone for now: try again once a minute, not per call */
    changed = now - c->tok_read_ms > KUBE_TOKEN_MAX_AGE_MS;
  else if (c->token != NULL)
    changed = sb.st_dev != c->tok_dev || sb.st_ino != c->tok_ino || sb.st_size != c->tok_size ||
              sb.st_mtim.tv_sec != c->tok_mtime.tv_sec ||
              sb.st_mtim.tv_nsec != c->tok_mtime.tv_nsec ||
              now - c->tok_read_ms > KUBE_TOKEN_MAX_AGE_MS;
  if (changed) {
    cleanup_error kyb_error *rerr = NULL;
    cleanup_free char *buf = NULL;
    size_t len = 0;
    if (kyb_read_file(c->cfg.token_file, KYB_KUBE_MAX_TOKEN, &buf, &len, &rerr) == 0 &&
        kube_token_trim(buf, &len) > 0) {
      if (c->token == NULL || strcmp(c->token, buf) != 0)
        log_debug("bearer token read from %s", c->cfg.token_file);
      free(c->token);
      c->token = steal_ptr(buf);
      if (!stat_ok)
        memset(&sb, 0, sizeof(sb));
      c->tok_dev = sb.st_dev;
      c->tok_ino = sb.st_ino;
      c->tok_size = sb.st_size;
      c->tok_mtime = sb.st_mtim;
      c->tok_read_ms = now;
    } else if (c->token == NULL) {
      if (rerr == NULL)
        return kyb_error_set(err, EINVAL, "bearer token file %s is empty", c->cfg.token_file);
      *err = steal_ptr(rerr);
      return kyb_error_wrap(err, "bearer token");
    } else {
      log_warn("cannot re-read bearer token %s, keeping the last one: %s", c->cfg.token_file,
               rerr ? kyb_error_message(rerr) : "file is empty");
      c->tok_read_ms = now;
    }
  }
  *tok = c->token;
  return 0;
}

static struct curl_slist *add_header(struct curl_slist *l, const char *line, bool *oom) {
  struct curl_slist *n = curl_slist_append(l, line);
  if (n == NULL)
    *oom = true;
  return n != NULL ? n : l;
}

static int build_headers(kyb_kube_client *c, const kube_req *req, struct curl_slist **out,
                         kyb_error **err) {
  const char *tok = NULL;
  if (current_token(c, &tok, err) < 0)
    return -1;
  bool oom = false;
  struct curl_slist *l = NULL;
  l = add_header(l, "Accept: application/json", &oom);
  l = add_header(l, "Expect:", &oom); /* no 100-continue round trip for big bodies */
  if (req->content_type != NULL) {
    char line[128];
    snprintf(line, sizeof(line), "Content-Type: %s", req->content_type);
    l = add_header(l, line, &oom);
  }
  if (tok != NULL && tok[0] != '\0') {
    for (const char *p = tok; *p != '\0'; p++)
      if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f) {
        curl_slist_free_all(l);
        return kyb_error_set(err, EINVAL, "bearer token contains control characters");
      }
    cleanup_free char *line = NULL;
    if (asprintf(&line, "Authorization: Bearer %s", tok) < 0)
      oom = true;
    else
      l = add_header(l, line, &oom);
  }
  if (oom) {
    curl_slist_free_all(l);
    return kyb_error_set(err, ENOMEM, "request headers");
  }
  *out = l;
  return 0;
}

/* One transfer's state, shared with the write callback. */
typedef struct {
  kyb_kube_client *c;
  const kube_req *req;
  kube_resp *resp;
  size_t cap;
  long status;
  bool stopped;
  kyb_error *cb_err;
} xfer;

static bool is_2xx(long s) {
  return s >= 200 && s < 300;
}

static int collect(xfer *x, const char *p, size_t n, size_t limit) {
  kube_resp *r = x->resp;
  if (r->len + n > limit) {
    if (!is_2xx(x->status)) { /* an error body: its start is enough */
      n = limit > r->len ? limit - r->len : 0;
      if (n == 0)
        return 0;
    } else {
      return kyb_error_set(&x->cb_err, EMSGSIZE, "kube: %s: answer is over %zu bytes", x->req->what,
                           limit);
    }
  }
  if (r->len + n + 1 > x->cap) {
    size_t cap = x->cap ? x->cap : 4096;
    while (cap < r->len + n + 1)
      cap *= 2;
    char *nb = realloc(r->body, cap);
    if (nb == NULL)
      return kyb_error_set(&x->cb_err, ENOMEM, "kube: %s: answer body", x->req->what);
    r->body = nb;
    x->cap = cap;
  }
  memcpy(r->body + r->len, p, n);
  r->len += n;
  r->body[r->len] = '\0';
  return 0;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
  xfer *x = ud;
  size_t n = size * nmemb;
  if (x->status == 0)
    curl_easy_getinfo(x->c->curl, CURLINFO_RESPONSE_CODE, &x->status);
  if (x->req->on_data != NULL && is_2xx(x->status)) {
    int r = x->req->on_data(x->req->ud, p, n, &x->cb_err);
    if (r < 0)
      return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
    if (r > 0) {
      x->stopped = true;
      return 0;
    }
    return n;
  }
  size_t limit = is_2xx(x->status) ? x->c->max_body : KUBE_ERROR_BODY_MAX;
  return collect(x, p, n, limit) < 0 ? 0 : n;
}

static int set_request(kyb_kube_client *c, const kube_req *req, const char *url,
                       struct curl_slist *headers, xfer *x) {
  CURL *h = c->curl;
  int bad = 0;
  c->errbuf[0] = '\0';
  bad |= curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK;
  bool body = req->content_type != NULL;
  if (body) {
    bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len) != CURLE_OK;
  } else {
    bad |= curl_easy_setopt(h, CURLOPT_HTTPGET, 1L) != CURLE_OK;
  }
  bool custom = strcmp(req->method, "GET") != 0 && strcmp(req->method, "POST") != 0;
  bad |= curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, custom ? req->method : NULL) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_WRITEDATA, x) != CURLE_OK;
  long t = req->timeout_ms == 0 ? c->timeout_ms : req->timeout_ms < 0 ? 0L : req->timeout_ms;
  bad |= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, t) != CURLE_OK;
  return bad ? -1 : 0;
}

/* Runs the transfer on the multi handle, watching the cancel fd and flag. */
static int perform(kyb_kube_client *c, CURLcode *rc, bool *cancelled, kyb_error **err) {
  *rc = CURLE_OK;
  *cancelled = false;
  if (curl_multi_add_handle(c->multi, c->curl) != CURLM_OK)
    return kyb_error_set(err, ENOMEM, "libcurl refused the transfer");
  int running = 1;
  CURLMcode mc = CURLM_OK;
  while (running) {
    mc = curl_multi_perform(c->multi, &running);
    if (mc != CURLM_OK || !running)
      break;
    if (kyb_kube_client_cancelled(c)) {
      *cancelled = true;
      break;
    }
    struct curl_waitfd extra = {.fd = c->cancel_fd, .events = CURL_WAIT_POLLIN};
    int wait_ms = c->cancel_flag != NULL ? KUBE_CANCEL_POLL_MS : 1000;
    mc = curl_multi_poll(c->multi, c->cancel_fd >= 0 ? &extra : NULL, c->cancel_fd >= 0 ? 1 : 0,
                         wait_ms, NULL);
    if (mc != CURLM_OK)
      break;
  }
  int left = 0;
  CURLMsg *m;
  while ((m = curl_multi_info_read(c->multi, &left)) != NULL)
    if (m->msg == CURLMSG_DONE)
      *rc = m->data.result;
  curl_multi_remove_handle(c->multi, c->curl);
  if (mc != CURLM_OK && !*cancelled)
    return kyb_error_set(err, EIO, "libcurl: %s", curl_multi_strerror(mc));
  return 0;
}

static int transport_error(kyb_kube_client *c, const char *what, CURLcode rc, long timeout_ms,
                           kyb_error **err) {
  long os = 0;
  curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os);
  const char *detail = c->errbuf[0] != '\0' ? c->errbuf : curl_easy_strerror(rc);
  const char *target = c->cfg.unix_socket != NULL ? c->cfg.unix_socket : c->cfg.server;
  switch (rc) {
  case CURLE_COULDNT_CONNECT:
  case CURLE_COULDNT_RESOLVE_HOST:
    return kyb_error_set(err, os != 0 ? (int)os : ECONNREFUSED,
                         "kube: %s: cannot connect to the API server at %s: %s", what, target,
                         detail);
  case CURLE_OPERATION_TIMEDOUT:
    return kyb_error_set(err, ETIMEDOUT, "kube: %s: no answer within %ld ms from %s", what,
                         timeout_ms, target);
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_CIPHER:
    return kyb_error_set(err, EPROTO, "kube: %s: TLS with %s failed: %s", what, target, detail);
  case CURLE_PARTIAL_FILE:
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_GOT_NOTHING:
    return kyb_error_set(err, ECONNRESET, "kube: %s: connection to %s dropped: %s", what, target,
                         detail);
  case CURLE_OUT_OF_MEMORY:
    return kyb_error_set(err, ENOMEM, "kube: %s", what);
  default:
    return kyb_error_set(err, os != 0 ? (int)os : EIO, "kube: %s: %s (server %s)", what, detail,
                         target);
  }
}

void kube_resp_clear(kube_resp *r) {
  free(r->body);
  memset(r, 0, sizeof(*r));
}

int kube_do(kyb_kube_client *c, const kube_req *req, kube_resp *resp, kyb_error **err) {
  kube_resp dummy = {0};
  if (resp == NULL)
    resp = &dummy;
  memset(resp, 0, sizeof(*resp));
  if (kyb_kube_client_cancelled(c))
    return kyb_error_set(err, ECANCELED, "kube: %s: cancelled", req->what);
  cleanup_free char *url = NULL;
  if (asprintf(&url, "%s%s", c->cfg.server, req->path) < 0)
    return kyb_error_set(err, ENOMEM, "kube: %s", req->what);
  cleanup_slist struct curl_slist *headers = NULL;
  if (build_headers(c, req, &headers, err) < 0)
    return kyb_error_wrap(err, "kube: %s", req->what);
  xfer x = {.c = c, .req = req, .resp = resp};
  if (set_request(c, req, url, headers, &x) < 0)
    return kyb_error_set(err, EINVAL, "kube: %s: libcurl refused an option", req->what);

  int64_t t0 = kube_mono_ms();
  CURLcode rc = CURLE_OK;
  bool cancelled = false;
  int r = perform(c, &rc, &cancelled, err);
  /* The handle points at our stack: drop that before returning. */
  curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
  curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, NULL);
  curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, NULL);
  if (x.status == 0)
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &x.status);
  resp->status = x.status;
  log_debug("%s %s -> %ld in %" PRId64 " ms", req->method, req->path, x.status,
            kube_mono_ms() - t0);

  if (r < 0) {
    r = kyb_error_wrap(err, "kube: %s", req->what);
  } else if (cancelled) {
    r = kyb_error_set(err, ECANCELED, "kube: %s: cancelled", req->what);
  } else if (x.cb_err != NULL) {
    kyb_error_clear(err);
    if (err != NULL)
      *err = steal_ptr(x.cb_err);
    r = -1;
  } else if (x.stopped) {
    r = 1;
  } else if (rc != CURLE_OK) {
    long t = req->timeout_ms == 0 ? c->timeout_ms : req->timeout_ms;
    r = transport_error(c, req->what, rc, t, err);
  } else if (!is_2xx(x.status)) {
    r = kyb_kube_status_error(req->what, x.status, resp->body, resp->len, err);
  }
  kyb_error_clear(&x.cb_err);
  if (r < 0 || resp == &dummy)
    kube_resp_clear(resp);
  return r;
}

json_t *kube_parse_object(const char *what, const char *body, size_t len, kyb_error **err) {
  json_error_t jerr;
  json_t *j = body != NULL ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
  if (j == NULL) {
    char snip[81], why[sizeof(jerr.text)];
    kube_sanitize(snip, sizeof(snip), body != NULL ? body : "", len);
    /* jansson quotes the offending bytes: server bytes, so sanitised too. */
    kube_sanitize(why, sizeof(why), body != NULL ? jerr.text : "empty body", sizeof(why));
    kyb_error_set(err, EPROTO, "kube: %s: malformed answer: %s (starts '%s')", what, why, snip);
    return NULL;
  }
  if (!json_is_object(j)) {
    json_decref(j);
    kyb_error_set(err, EPROTO, "kube: %s: malformed answer: not a JSON object", what);
    return NULL;
  }
  return j;
}

int kube_do_json(kyb_kube_client *c, const kube_req *req, json_t **out, kyb_error **err) {
  kube_resp resp = {0};
  if (kube_do(c, req, &resp, err) < 0)
    return -1;
  json_t *j = kube_parse_object(req->what, resp.body, resp.len, err);
  kube_resp_clear(&resp);
  if (j == NULL)
    return -1;
  if (out != NULL)
    *out = j;
  else
    json_decref(j);
  return 0;
}

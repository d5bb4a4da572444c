/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The I/O half of the gRPC transport: one unary call = one HTTP/2 POST through
 * libcurl on the daemon's unix socket (h2c with prior knowledge: containerd
 * offers no TLS and no HTTP/1.1 upgrade).  Framing and status parsing live in
 * grpc_wire.c; this file wires them to curl's callbacks and turns the outcome
 * into a kyb_error.  See grpc.h for the contract.
 *
 * Things libcurl does for us that gRPC needs: HPACK, HTTP/2 flow control
 * (window updates for big replies), PING acks, and trailers, which it hands
 * to the header callback after the body, just like the first HEADERS block.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "containerd/grpc.h"
#include "util/cleanup.h"

#define KYB_LOG_MODULE "containerd"
#include "util/log.h"

/* Extra time curl waits past the gRPC deadline, so that the server's own
 * DEADLINE_EXCEEDED (with its message) normally arrives first. */
#define CURL_TIMEOUT_MARGIN_MS 2000

struct kyb_grpc_conn {
  char *socket_path;
  char *ns;
  int64_t deadline_ms;
  CURL *curl;
  bool reuse; /* keep the HTTP/2 connection between calls (see h2_reuse_works) */
  char errbuf[CURL_ERROR_SIZE];
};

/* Everything one call collects from curl's callbacks. */
typedef struct {
  kyb_grpc_decoder dec;
  uint8_t *msg;
  size_t msg_len;
  bool have_msg;
  kyb_error *body_err; /* why the body callback stopped the transfer */
  kyb_grpc_meta meta;
  bool meta_oom;
} call_state;

static void call_state_clear(call_state *st) {
  kyb_grpc_decoder_clear(&st->dec);
  free(st->msg);
  st->msg = NULL;
  kyb_error_clear(&st->body_err);
  kyb_grpc_meta_clear(&st->meta);
}

static void kyb_curl_slist_freep(struct curl_slist **l) {
  curl_slist_free_all(*l);
  *l = NULL;
}
#define cleanup_slist __attribute__((cleanup(kyb_curl_slist_freep)))

/* libcurl before 8.0.0 breaks every call after the first on a reused HTTP/2
 * prior-knowledge connection ("Error in the HTTP2 framing layer", curl issue
 * #10634, fixed in 8.0.0; seen here with Debian 12's 7.88.1).  There we open a
 * fresh connection per call: a whole Version call, connection included, took
 * 0.8-1 ms on the 2-core CI machine. */
static bool h2_reuse_works(void) {
  const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
  return v != NULL && v->version_num >= 0x080000;
}

int kyb_grpc_conn_new(const char *socket_path, const char *ns, int64_t deadline_ms,
                      kyb_grpc_conn **out, kyb_error **err) {
  if (socket_path == NULL || socket_path[0] == '\0')
    return kyb_error_set(err, EINVAL, "gRPC connection needs a socket path");
  kyb_grpc_conn *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return kyb_error_set(err, ENOMEM, "gRPC connection");
  c->socket_path = strdup(socket_path);
  c->ns = strdup(ns != NULL ? ns : "");
  c->deadline_ms = deadline_ms > 0 ? deadline_ms : KYB_GRPC_DEFAULT_DEADLINE_MS;
  c->curl = curl_easy_init();
  c->reuse = h2_reuse_works();
  if (c->socket_path == NULL || c->ns == NULL || c->curl == NULL) {
    kyb_grpc_conn_free(c);
    return kyb_error_set(err, ENOMEM, "gRPC connection to %s", socket_path);
  }
  *out = c;
  return 0;
}

void kyb_grpc_conn_free(kyb_grpc_conn *conn) {
  if (conn == NULL)
    return;
  if (conn->curl != NULL)
    curl_easy_cleanup(conn->curl);
  free(conn->socket_path);
  free(conn->ns);
  free(conn);
}

int kyb_grpc_conn_set_namespace(kyb_grpc_conn *conn, const char *ns, kyb_error **err) {
  char *copy = strdup(ns != NULL ? ns : "");
  if (copy == NULL)
    return kyb_error_set(err, ENOMEM, "set namespace");
  free(conn->ns);
  conn->ns = copy;
  return 0;
}

const char *kyb_grpc_conn_namespace(const kyb_grpc_conn *conn) {
  return conn->ns;
}

const char *kyb_grpc_conn_socket(const kyb_grpc_conn *conn) {
  return conn->socket_path;
}

static int keep_first(void *ud, const uint8_t *msg, size_t len, kyb_error **err) {
  call_state *st = ud;
  if (st->have_msg)
    return kyb_error_set(err, EPROTO, "unary reply carries more than one message");
  st->msg = malloc(len > 0 ? len : 1);
  if (st->msg == NULL)
    return kyb_error_set(err, ENOMEM, "reply message of %zu bytes", len);
  if (len > 0)
    memcpy(st->msg, msg, len);
  st->msg_len = len;
  st->have_msg = true;
  return 0;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud) {
  call_state *st = ud;
  size_t n = size * nmemb;
  if (kyb_grpc_decoder_feed(&st->dec, (const uint8_t *)ptr, n, keep_first, st, &st->body_err) < 0)
    return 0; /* curl stops the transfer with CURLE_WRITE_ERROR */
  return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud) {
  call_state *st = ud;
  size_t n = size * nmemb;
  if (kyb_grpc_meta_header(&st->meta, ptr, n) < 0)
    st->meta_oom = true;
  return n;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* curl could not reach the socket: say which path and why, in words an
 * operator can act on.  The caller adds the method as context. */
static int unreachable(kyb_grpc_conn *c, long os_errno, kyb_error **err) {
  struct stat sb;
  int e = (int)os_errno;
  if (e == 0)
    e = stat(c->socket_path, &sb) < 0 ? errno : ECONNREFUSED;
  const char *hint = "";
  if (e == ENOENT || e == ECONNREFUSED)
    hint = ", is containerd running?";
  else if (e == EACCES || e == EPERM)
    hint = ", no permission on the socket (run as root or as its owner)";
  return kyb_error_set(err, e, "containerd unreachable at %s%s", c->socket_path, hint);
}

static int transport_error(kyb_grpc_conn *c, const char *method, CURLcode rc, int64_t timeout_ms,
                           kyb_error **err) {
  long os_errno = 0;
  curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno);
  switch (rc) {
  case CURLE_COULDNT_CONNECT:
  case CURLE_COULDNT_RESOLVE_HOST:
    unreachable(c, os_errno, err);
    return kyb_error_wrap(err, "containerd %s", method);
  case CURLE_OPERATION_TIMEDOUT:
    /* Our own deadline ran out: report it as gRPC clients do. */
    return kyb_error_set(err, ETIMEDOUT,
                         "containerd %s: no reply within %" PRId64 " ms (grpc status %s)", method,
                         timeout_ms, kyb_grpc_code_name(KYB_GRPC_DEADLINE_EXCEEDED));
  case CURLE_OUT_OF_MEMORY:
    return kyb_error_set(err, ENOMEM, "containerd %s", method);
  default:
    return kyb_error_set(err, os_errno != 0 ? (int)os_errno : EIO,
                         "containerd %s: transport failure on %s: %s", method, c->socket_path,
                         c->errbuf[0] != '\0' ? c->errbuf : curl_easy_strerror(rc));
  }
}

/* The server answered: turn HTTP status + grpc-status into success or a
 * kyb_error carrying the status name (read back by kyb_grpc_status_of). */
static int status_error(const char *method, const call_state *st, bool deadline_passed,
                        kyb_error **err) {
  int code = st->meta.grpc_status;
  const char *msg = st->meta.grpc_message;
  char fallback[96];
  if (code == KYB_GRPC_NO_STATUS) {
    if (st->meta.http_status != 200) {
      code = kyb_grpc_http_to_status(st->meta.http_status);
      snprintf(fallback, sizeof(fallback), "HTTP status %ld without grpc-status",
               st->meta.http_status);
    } else {
      code = KYB_GRPC_INTERNAL;
      snprintf(fallback, sizeof(fallback), "reply without grpc-status");
    }
    msg = fallback;
  }
  if (code == KYB_GRPC_OK && !st->meta.content_type_grpc) {
    /* Something that is not a gRPC server answered on the socket. */
    code = KYB_GRPC_INTERNAL;
    msg = "reply is not application/grpc";
  }
  if (code == KYB_GRPC_OK)
    return 0;
  /* containerd often loses the type of a context error on its way back from
   * the shim and answers UNKNOWN "context deadline exceeded".  Like grpc-go's
   * own client, a call that failed after its deadline passed reports
   * DEADLINE_EXCEEDED, keeping the server's words. */
  if (deadline_passed)
    code = KYB_GRPC_DEADLINE_EXCEEDED;
  if (msg == NULL || msg[0] == '\0')
    msg = "(no message)";
  return kyb_error_set(err, kyb_grpc_status_errno(code), "containerd %s: %s (grpc status %s)",
                       method, msg, kyb_grpc_code_name(code));
}

static int set_call_options(kyb_grpc_conn *c, const char *path, const uint8_t *frame,
                            size_t frame_len, struct curl_slist *headers, int64_t deadline_ms,
                            call_state *st) {
  char url[512];
  if (snprintf(url, sizeof(url), "http://localhost%s", path) >= (int)sizeof(url))
    return -1;
  CURL *h = c->curl;
  c->errbuf[0] = '\0';
  int bad = 0;
  /* Options are set on every call: cheap, and a call never inherits a
   * half-set state from an earlier failed one. */
  bad |= curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->socket_path) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE) !=
         CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_VERBOSE, getenv("KYB_CURL_VERBOSE") ? 1L : 0L) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_FORBID_REUSE, c->reuse ? 0L : 1L) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_POST, 1L) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDS, (const char *)frame) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)frame_len) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_WRITEDATA, st) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_HEADERDATA, st) != CURLE_OK;
  long timeout = deadline_ms > 0 ? (long)(deadline_ms + CURL_TIMEOUT_MARGIN_MS) : 0L;
  bad |= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout) != CURLE_OK;
  return bad ? -1 : 0;
}

static struct curl_slist *build_headers(const char *ns, int64_t deadline_ms) {
  char line[320];
  const char *fixed[] = {
      "content-type: application/grpc",
      "te: trailers",
      "user-agent: kybernate",
      /* curl defaults that make no sense for gRPC: drop them. */
      "Accept:",
      "Expect:",
  };
  struct curl_slist *l = NULL;
  for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
    struct curl_slist *n = curl_slist_append(l, fixed[i]);
    if (n == NULL)
      goto oom;
    l = n;
  }
  if (ns != NULL && ns[0] != '\0') {
    snprintf(line, sizeof(line), "containerd-namespace: %s", ns);
    struct curl_slist *n = curl_slist_append(l, line);
    if (n == NULL)
      goto oom;
    l = n;
  }
  if (deadline_ms > 0) {
    char v[32];
    kyb_grpc_timeout_value(deadline_ms, v, sizeof(v));
    snprintf(line, sizeof(line), "grpc-timeout: %s", v);
    struct curl_slist *n = curl_slist_append(l, line);
    if (n == NULL)
      goto oom;
    l = n;
  }
  return l;
oom:
  curl_slist_free_all(l);
  return NULL;
}

/* A namespace becomes a header value: refuse anything that could break the
 * header line (containerd's own rule is stricter still). */
static bool header_safe(const char *s) {
  size_t n = 0;
  for (; s[n] != '\0'; n++) {
    unsigned char ch = (unsigned char)s[n];
    if (ch < 0x21 || ch > 0x7e)
      return false;
  }
  return n <= 256;
}

int kyb_grpc_unary(kyb_grpc_conn *conn, const char *path, const uint8_t *req, size_t req_len,
                   const kyb_grpc_call_opts *opts, uint8_t **resp, size_t *resp_len,
                   kyb_error **err) {
  char method[128];
  kyb_grpc_method_name(path, method, sizeof(method));
  const char *ns = opts != NULL && opts->ns != NULL ? opts->ns : conn->ns;
  int64_t deadline = opts != NULL && opts->deadline_ms != 0 ? opts->deadline_ms : conn->deadline_ms;
  if (path[0] != '/' || strlen(path) > 400)
    return kyb_error_set(err, EINVAL, "gRPC method path '%s' is malformed", path);
  if (!header_safe(ns))
    return kyb_error_set(err, EINVAL, "containerd namespace '%s' is not a valid header value", ns);

  cleanup_free uint8_t *frame = NULL;
  size_t frame_len = 0;
  if (kyb_grpc_frame_encode(req, req_len, KYB_GRPC_MAX_MESSAGE, &frame, &frame_len, err) < 0)
    return kyb_error_wrap(err, "containerd %s: request", method);
  cleanup_slist struct curl_slist *headers = build_headers(ns, deadline);
  if (headers == NULL)
    return kyb_error_set(err, ENOMEM, "containerd %s: request headers", method);

  call_state st = {0};
  kyb_grpc_decoder_init(&st.dec, KYB_GRPC_MAX_MESSAGE);
  kyb_grpc_meta_init(&st.meta);
  if (set_call_options(conn, path, frame, frame_len, headers, deadline, &st) < 0) {
    call_state_clear(&st);
    return kyb_error_set(err, EINVAL, "containerd %s: libcurl refused an option", method);
  }

  int64_t t0 = now_ms();
  CURLcode rc = curl_easy_perform(conn->curl);
  int64_t took = now_ms() - t0;
  /* The handle keeps pointers to our stack: drop them before returning. */
  curl_easy_setopt(conn->curl, CURLOPT_HTTPHEADER, NULL);
  curl_easy_setopt(conn->curl, CURLOPT_WRITEDATA, NULL);
  curl_easy_setopt(conn->curl, CURLOPT_HEADERDATA, NULL);

  int r = 0;
  if (st.body_err != NULL) {
    /* The reply broke the framing rules: that outranks anything else. */
    if (err != NULL) {
      kyb_error_clear(err);
      *err = steal_ptr(st.body_err);
    }
    r = kyb_error_wrap(err, "containerd %s: malformed reply", method);
  } else if (st.meta_oom) {
    r = kyb_error_set(err, ENOMEM, "containerd %s: reply headers", method);
  } else if (rc != CURLE_OK && st.meta.grpc_status == KYB_GRPC_NO_STATUS) {
    r = transport_error(conn, method, rc, deadline > 0 ? deadline + CURL_TIMEOUT_MARGIN_MS : 0,
                        err);
  } else if (status_error(method, &st, deadline > 0 && took >= deadline, err) < 0) {
    r = -1;
  } else if (kyb_grpc_decoder_finish(&st.dec, err) < 0) {
    r = kyb_error_wrap(err, "containerd %s: malformed reply", method);
  } else if (!st.have_msg) {
    r = kyb_error_set(err, EPROTO, "containerd %s: reply with status OK carries no message",
                      method);
  }
  log_debug("%s ns=%s -> %s in %" PRId64 " ms (%zu bytes out, %zu in)", method, ns,
            r == 0                                      ? "OK"
            : st.meta.grpc_status != KYB_GRPC_NO_STATUS ? kyb_grpc_code_name(st.meta.grpc_status)
                                                        : "no status",
            took, req_len, st.msg_len);
  if (r == 0) {
    *resp = steal_ptr(st.msg);
    *resp_len = st.msg_len;
  }
  call_state_clear(&st);
  return r;
}

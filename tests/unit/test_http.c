/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of lib/store/http.c against an in-process libmicrohttpd server
 * on 127.0.0.1: collected and streamed bodies both ways (known length and
 * chunked), retries on 503/429 and on dropped connections, no retry of a
 * stream that cannot be rewound or that already reached the sink, bounded
 * collection, redirects, and the error message (method, URL without query,
 * status, first line of the body). */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store/http.h"
#include "util/cleanup.h"

static struct MHD_Daemon *daemon_;
static unsigned port;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int flaky_left;      /* /flaky: 503 answers left */
static int calls;           /* requests seen by counting paths */
static size_t upload_bytes; /* /echo: bytes of the last upload */
static unsigned upload_sum; /* /echo: byte sum of the last upload */
static char upload_te[64];  /* /echo: Transfer-Encoding of the last upload */
static char big[3u << 20];  /* /big */
static int no_upload;       /* con_cls of requests without upload state */

typedef struct {
  size_t n;
  unsigned sum;
} upload_ctx;

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *body,
                             const char *hname, const char *hval) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
  if (hname != NULL)
    MHD_add_response_header(r, hname, hval);
  enum MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *data,
                               size_t *data_size, void **con_cls) {
  (void)cls;
  (void)version;
  if (strcmp(url, "/echo") == 0) {
    upload_ctx *u = *con_cls;
    if (u == NULL) {
      *con_cls = calloc(1, sizeof(upload_ctx));
      return MHD_YES;
    }
    if (*data_size > 0) {
      for (size_t i = 0; i < *data_size; i++)
        u->sum += (unsigned char)data[i];
      u->n += *data_size;
      *data_size = 0;
      return MHD_YES;
    }
    pthread_mutex_lock(&mu);
    upload_bytes = u->n;
    upload_sum = u->sum;
    const char *te = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Transfer-Encoding");
    snprintf(upload_te, sizeof(upload_te), "%s", te ? te : "");
    calls++;
    bool fail = flaky_left > 0;
    if (fail)
      flaky_left--;
    pthread_mutex_unlock(&mu);
    free(u);
    *con_cls = NULL;
    char body[64];
    snprintf(body, sizeof(body), "%s %zu", method, upload_bytes);
    return fail ? reply(c, 503, "try later", NULL, NULL) : reply(c, 201, body, "Location", "/x");
  }
  if (*con_cls == NULL) { /* first call of a request without body */
    *con_cls = &no_upload;
    return MHD_YES;
  }
  if (strcmp(url, "/ok") == 0)
    return reply(c, 200, "hello", "X-Thing", "  value  ");
  if (strcmp(url, "/flaky") == 0 || strcmp(url, "/busy") == 0) {
    pthread_mutex_lock(&mu);
    calls++;
    bool fail = flaky_left > 0;
    if (fail)
      flaky_left--;
    pthread_mutex_unlock(&mu);
    if (!fail)
      return reply(c, 200, "finally", NULL, NULL);
    return strcmp(url, "/busy") == 0 ? reply(c, 429, "slow down", "Retry-After", "0")
                                     : reply(c, 503, "down", NULL, NULL);
  }
  if (strcmp(url, "/err404") == 0)
    return reply(
        c, 404,
        "\n{\"errors\":[{\"code\":\"BLOB_UNKNOWN\",\"message\":\"blob \x01 unknown\"}]}\nmore",
        "Content-Type", "application/json");
  if (strcmp(url, "/big") == 0) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof(big), big, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
  }
  if (strcmp(url, "/redirect") == 0)
    return reply(c, 307, "", "Location", "/ok");
  if (strcmp(url, "/drop") == 0) {
    pthread_mutex_lock(&mu);
    calls++;
    pthread_mutex_unlock(&mu);
    return MHD_NO; /* closes the connection without an answer */
  }
  return reply(c, 404, "no such path", NULL, NULL);
}

/* Frees an upload's state when its request ends early (the client gave up). */
static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)c;
  (void)toe;
  if (*con_cls != &no_upload)
    free(*con_cls);
  *con_cls = NULL;
}

static int setup(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(big); i++)
    big[i] = (char)(i * 7);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  daemon_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                             handler, NULL, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED,
                             completed, NULL, MHD_OPTION_END);
  if (daemon_ == NULL)
    return -1;
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
  port = info ? info->port : 0;
  return port ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  MHD_stop_daemon(daemon_);
  return 0;
}

static char *url_of(const char *path) {
  char *u = NULL;
  assert_true(asprintf(&u, "http://127.0.0.1:%u%s", port, path) > 0);
  return u;
}

static kyb_http *client(int retries) {
  kyb_http_opts o = {.retries = retries, .backoff_ms = 1};
  kyb_http *h = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_http_new(&o, &h, &err), 0);
  return h;
}

static void set_flaky(int n) {
  pthread_mutex_lock(&mu);
  flaky_left = n;
  calls = 0;
  pthread_mutex_unlock(&mu);
}

static void test_get_collect_and_headers(void **state) {
  (void)state;
  kyb_http *h = client(0);
  cleanup_free char *u = url_of("/ok");
  kyb_http_req rq = {.method = "GET", .url = u};
  kyb_http_resp rs = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_http_do(h, &rq, &rs, &err), 0);
  assert_int_equal(rs.status, 200);
  assert_int_equal(rs.body_len, 5);
  assert_string_equal(rs.body, "hello");
  assert_string_equal(kyb_http_resp_header(&rs, "x-thing"), "value  ");
  assert_null(kyb_http_resp_header(&rs, "X-Missing"));
  /* HEAD: headers, no body */
  kyb_http_req hq = {.method = "HEAD", .url = u};
  assert_int_equal(kyb_http_do(h, &hq, &rs, &err), 0);
  assert_int_equal(rs.status, 200);
  assert_int_equal(rs.body_len, 0);
  assert_non_null(kyb_http_resp_header(&rs, "Content-Length"));
  kyb_http_resp_clear(&rs);
  kyb_http_free(h);
}

static void test_retry_5xx_then_ok(void **state) {
  (void)state;
  kyb_http *h = client(3);
  cleanup_free char *u = url_of("/flaky");
  kyb_http_req rq = {.method = "GET", .url = u};
  kyb_http_resp rs = {0};
  cleanup_error kyb_error *err = NULL;
  set_flaky(2);
  assert_int_equal(kyb_http_do(h, &rq, &rs, &err), 0);
  assert_int_equal(rs.status, 200);
  assert_string_equal(rs.body, "finally");
  assert_int_equal(calls, 3);
  /* more failures than retries: the last 503 comes back */
  set_flaky(10);
  assert_int_equal(kyb_http_do(h, &rq, &rs, &err), 0);
  assert_int_equal(rs.status, 503);
  assert_int_equal(calls, 4);
  /* no_retry: one attempt */
  set_flaky(1);
  rq.no_retry = true;
  assert_int_equal(kyb_http_do(h, &rq, &rs, &err), 0);
  assert_int_equal(rs.status, 503);
  assert_int_equal(calls, 1);
  /* 429 with Retry-After: 0 */
  cleanup_free char *b = url_of("/busy");
  kyb_http_req bq = {.method = "GET", .url = b};
  set_flaky(1);
  assert_int_equal(kyb_http_do(h, &bq, &rs, &err), 0);
  assert_int_equal(rs.status, 200);
  assert_int_equal(calls, 2);
  kyb_http_resp_clear(&rs);
  kyb_http_free(h);
}

static void test_status_error_message(void **state) {
  (void)state;
  kyb_http *h = client(0);
  cleanup_free char *u = url_of("/err404?_state=secret&x=1");
  kyb_http_req rq = {.method = "GET", .url = u, .what = "fetch blob"};
  kyb_http_resp rs = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_http_do(h, &rq, &rs, &err), 0);
  assert_int_equal(rs.status, 404);
  assert_int_equal(kyb_http_status_error(&rq, &rs, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
  cleanup_free char *want = NULL;
  assert_true(asprintf(&want,
                       "fetch blob: GET http://127.0.0.1:%u/err404: HTTP 404 Not Found: "
                       "{\"errors\":[{\"code\":\"BLOB_UNKNOWN\",\"message\":\"blob ? unknown\"}]}",
                       port) > 0);
  assert_string_equal(kyb_error_root(err), want);
  assert_null(strstr(kyb_error_message(err), "secret"));
  assert_int_equal(kyb_http_status_errno(401), EACCES);
  assert_int_equal(kyb_http_status_errno(409), EEXIST);
  assert_int_equal(kyb_http_status_errno(502), EIO);
  kyb_http_resp_clear(&rs);
  kyb_http_free(h);
}

typedef struct {
  size_t total, off;
  int rewinds;
  bool fail_at_half;
} src;

static ssize_t src_read(void *ud, void *buf, size_t len, kyb_error **err) {
  src *s = ud;
  if (s->fail_at_half && s->off >= s->total / 2)
    return kyb_error_set(err, EIO, "source broke at %zu", s->off);
  size_t k = s->total - s->off < len ? s->total - s->off : len;
  for (size_t i = 0; i < k; i++)
    ((unsigned char *)buf)[i] = (unsigned char)((s->off + i) % 251);
  s->off += k;
  return (ssize_t)k;
}

static int src_rewind(void *ud, kyb_error **err) {
  (void)err;
  src *s = ud;
  s->off = 0;
  s->rewinds++;
  return 0;
}

static unsigned src_sum(size_t total) {
  unsigned sum = 0;
  for (size_t i = 0; i < total; i++)
    sum += (unsigned)(i % 251);
  return sum;
}

static void test_streamed_upload(void **state) {
  (void)state;
  kyb_http *h = client(2);
  cleanup_free char *u = url_of("/echo");
  cleanup_error kyb_error *err = NULL;
  kyb_http_resp rs = {0};
  /* known length */
  src s = {.total = 5u << 20};
  kyb_http_req rq = {.method = "PUT",
                     .url = u,
                     .read = src_read,
                     .read_ud = &s,
                     .read_len = (int64_t)s.total,
                     .rewind = src_rewind};
  set_flaky(0);
  assert_int_equal(kyb_http_do(h, &rq, &rs, &err), 0);
  assert_int_equal(rs.status, 201);
  assert_int_equal(upload_bytes, s.total);
  assert_int_equal(upload_sum, src_sum(s.total));
  assert_string_equal(rs.body, "PUT 5242880");
  assert_string_equal(kyb_http_resp_header(&rs, "Location"), "/x");
  /* unknown length: chunked */
  src c = {.total = 300000};
  kyb_http_req cq = {.method = "PATCH",
                     .url = u,
                     .read = src_read,
                     .read_ud = &c,
                     .read_len = -1,
                     .rewind = src_rewind};
  assert_int_equal(kyb_http_do(h, &cq, &rs, &err), 0);
  assert_int_equal(rs.status, 201);
  assert_int_equal(upload_bytes, c.total);
  assert_string_equal(upload_te, "chunked");
  /* a 503 after the body: rewound and sent again */
  src r = {.total = 100000};
  kyb_http_req rr = {.method = "POST",
                     .url = u,
                     .read = src_read,
                     .read_ud = &r,
                     .read_len = 100000,
                     .rewind = src_rewind};
  set_flaky(1);
  assert_int_equal(kyb_http_do(h, &rr, &rs, &err), 0);
  assert_int_equal(rs.status, 201);
  assert_int_equal(r.rewinds, 1);
  assert_int_equal(calls, 2);
  assert_int_equal(upload_sum, src_sum(100000));
  /* no rewind: sent once, the 503 comes back */
  src o = {.total = 1000};
  kyb_http_req oq = {.method = "PUT", .url = u, .read = src_read, .read_ud = &o, .read_len = 1000};
  set_flaky(1);
  assert_int_equal(kyb_http_do(h, &oq, &rs, &err), 0);
  assert_int_equal(rs.status, 503);
  assert_int_equal(calls, 1);
  /* a buffer body, and an empty PUT */
  kyb_http_req bq = {.method = "PUT", .url = u, .body = "abc", .body_len = 3};
  set_flaky(1);
  assert_int_equal(kyb_http_do(h, &bq, &rs, &err), 0);
  assert_int_equal(rs.status, 201);
  assert_int_equal(upload_bytes, 3);
  kyb_http_req eq = {.method = "PUT", .url = u};
  assert_int_equal(kyb_http_do(h, &eq, &rs, &err), 0);
  assert_string_equal(rs.body, "PUT 0");
  /* the source fails: its error, no retry */
  src f = {.total = 200000, .fail_at_half = true};
  kyb_http_req fq = {.method = "PUT",
                     .url = u,
                     .read = src_read,
                     .read_ud = &f,
                     .read_len = 200000,
                     .rewind = src_rewind,
                     .what = "upload part"};
  assert_int_equal(kyb_http_do(h, &fq, &rs, &err), -1);
  assert_int_equal(kyb_error_code(err), EIO);
  assert_non_null(strstr(kyb_error_message(err), "upload part: PUT http://127.0.0.1:"));
  assert_non_null(strstr(kyb_error_message(err), "source broke at"));
  assert_int_equal(f.rewinds, 0);
  kyb_http_resp_clear(&rs);
  kyb_http_free(h);
}

typedef struct {
  size_t n;
  unsigned sum;
  size_t fail_after;
} sink;

static int sink_write(void *ud, const void *buf, size_t len, kyb_error **err) {
  sink *s = ud;
  if (s->fail_after && s->n + len > s->fail_after)
    return kyb_error_set(err, ENOSPC, "sink full");
  for (size_t i = 0; i < len; i++)
    s->sum += ((const unsigned char *)buf)[i];
  s->n += len;
  return 0;
}

static void test_streamed_download_and_limits(void **state) {
  (void)state;
  kyb_http *h = client(2);
  cleanup_free char *u = url_of("/big");
  cleanup_error kyb_error *err = NULL;
  kyb_http_resp rs = {0};
  sink s = {0};
  kyb_http_req rq = {.method = "GET", .url = u, .write = sink_write, .write_ud = &s};
  assert_int_equal(kyb_http_do(h, &rq, &rs, &err), 0);
  assert_int_equal(rs.status, 200);
  assert_int_equal(s.n, sizeof(big));
  assert_int_equal(rs.written, sizeof(big));
  assert_null(rs.body);
  unsigned sum = 0;
  for (size_t i = 0; i < sizeof(big); i++)
    sum += (unsigned char)big[i];
  assert_int_equal(s.sum, sum);
  /* collected beyond the limit: EFBIG */
  kyb_http_req cq = {.method = "GET", .url = u};
  assert_int_equal(kyb_http_do(h, &cq, &rs, &err), -1);
  assert_int_equal(kyb_error_code(err), EFBIG);
  kyb_error_clear(&err);
  cq.max_body = sizeof(big);
  assert_int_equal(kyb_http_do(h, &cq, &rs, &err), 0);
  assert_int_equal(rs.body_len, sizeof(big));
  /* the sink fails: its error */
  sink f = {.fail_after = 100000};
  kyb_http_req fq = {.method = "GET", .url = u, .write = sink_write, .write_ud = &f};
  assert_int_equal(kyb_http_do(h, &fq, &rs, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOSPC);
  kyb_error_clear(&err);
  /* an error body never reaches the sink */
  cleanup_free char *e = url_of("/err404");
  sink z = {0};
  kyb_http_req zq = {.method = "GET", .url = e, .write = sink_write, .write_ud = &z};
  assert_int_equal(kyb_http_do(h, &zq, &rs, &err), 0);
  assert_int_equal(rs.status, 404);
  assert_int_equal(z.n, 0);
  assert_non_null(strstr(rs.body, "BLOB_UNKNOWN"));
  kyb_http_resp_clear(&rs);
  kyb_http_free(h);
}

static void test_redirect_and_transport_errors(void **state) {
  (void)state;
  kyb_http *h = client(2);
  cleanup_error kyb_error *err = NULL;
  kyb_http_resp rs = {0};
  cleanup_free char *r = url_of("/redirect");
  kyb_http_req rq = {.method = "GET", .url = r};
  assert_int_equal(kyb_http_do(h, &rq, &rs, &err), 0);
  assert_int_equal(rs.status, 307);
  rq.follow_redirects = true;
  assert_int_equal(kyb_http_do(h, &rq, &rs, &err), 0);
  assert_int_equal(rs.status, 200);
  assert_string_equal(rs.body, "hello");
  assert_string_equal(kyb_http_resp_header(&rs, "X-Thing"), "value  ");
  /* the server hangs up: retried, then a transport error naming the request */
  cleanup_free char *d = url_of("/drop");
  kyb_http_req dq = {.method = "GET", .url = d, .what = "probe"};
  set_flaky(0);
  assert_int_equal(kyb_http_do(h, &dq, &rs, &err), -1);
  /* 3 attempts; libcurl itself repeats a request once when a reused
   * connection turns out dead, so up to 6 arrive */
  assert_true(calls >= 3 && calls <= 6);
  assert_non_null(strstr(kyb_error_message(err), "probe: GET http://127.0.0.1:"));
  assert_non_null(strstr(kyb_error_message(err), "after retries"));
  kyb_error_clear(&err);
  /* nobody listening */
  kyb_http_req nq = {.method = "GET", .url = "http://127.0.0.1:1/v2/"};
  assert_int_equal(kyb_http_do(h, &nq, &rs, &err), -1);
  assert_int_equal(kyb_error_code(err), ECONNREFUSED);
  kyb_error_clear(&err);
  /* not http */
  kyb_http_req fq = {.method = "GET", .url = "file:///etc/passwd"};
  assert_int_equal(kyb_http_do(h, &fq, &rs, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
  kyb_http_resp_clear(&rs);
  kyb_http_free(h);
}

static void test_escape(void **state) {
  (void)state;
  cleanup_free char *e = kyb_http_escape("repo:pull,push a/b~_.-");
  assert_string_equal(e, "repo%3Apull%2Cpush%20a%2Fb~_.-");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get_collect_and_headers),
      cmocka_unit_test(test_retry_5xx_then_ok),
      cmocka_unit_test(test_status_error_message),
      cmocka_unit_test(test_streamed_upload),
      cmocka_unit_test(test_streamed_download_and_limits),
      cmocka_unit_test(test_redirect_and_transport_errors),
      cmocka_unit_test(test_escape),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the operator's metrics: the text exposition (HELP/TYPE
 * lines, counters, gauges by phase from the controller, a cumulative
 * histogram), bind addresses, and the HTTP port itself (/metrics, /healthz,
 * /readyz ready and not, 404, 405) through libcurl. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "operator/metrics.h"
#include "util/cleanup.h"

static void fake_phases(void *ud, kyb_op_kind kind, long counts[KYB_OP_NPHASES]) {
  (void)ud;
  counts[0] = kind == KYB_OP_KIND_CHECKPOINT ? 2 : 0;
  counts[3] = kind == KYB_OP_KIND_CHECKPOINT ? 1 : 4;
}

static bool ready_flag;
static bool fake_ready(void *ud, char *why, size_t size) {
  (void)ud;
  snprintf(why, size, "caches not synced yet");
  return ready_flag;
}

static void expect_line(const char *text, const char *line) {
  char want[512];
  snprintf(want, sizeof(want), "\n%s\n", line);
  if (strstr(text, want) == NULL)
    fail_msg("no line \"%s\" in:\n%s", line, text);
}

static void test_render(void **state) {
  (void)state;
  kyb_op_metrics m;
  kyb_op_metrics_init(&m);
  m.phases = fake_phases;
  kyb_op_metrics_reconciled(&m, KYB_OP_KIND_CHECKPOINT, 0.003, false);
  kyb_op_metrics_reconciled(&m, KYB_OP_KIND_CHECKPOINT, 0.2, true);
  kyb_op_metrics_reconciled(&m, KYB_OP_KIND_RESTORE, 99, false);
  kyb_op_metrics_count(&m, &m.requests_created);
  kyb_op_metrics_set_leader(&m, true);
  cleanup_free char *t = kyb_op_metrics_render(&m);
  assert_non_null(t);
  expect_line(t, "# TYPE kybernate_operator_reconciles_total counter");
  expect_line(t, "kybernate_operator_reconciles_total{kind=\"checkpoint\"} 2");
  expect_line(t, "kybernate_operator_reconcile_errors_total{kind=\"checkpoint\"} 1");
  expect_line(t, "kybernate_operator_reconcile_errors_total{kind=\"restore\"} 0");
  expect_line(t, "# TYPE kybernate_operator_checkpoints gauge");
  expect_line(t, "kybernate_operator_checkpoints{phase=\"Pending\"} 2");
  expect_line(t, "kybernate_operator_checkpoints{phase=\"Failed\"} 1");
  expect_line(t, "kybernate_operator_restores{phase=\"Failed\"} 4");
  expect_line(t, "kybernate_operator_restores{phase=\"Restoring\"} 0");
  expect_line(t, "# TYPE kybernate_operator_reconcile_duration_seconds histogram");
  expect_line(
      t,
      "kybernate_operator_reconcile_duration_seconds_bucket{kind=\"checkpoint\",le=\"0.005\"} 1");
  expect_line(
      t, "kybernate_operator_reconcile_duration_seconds_bucket{kind=\"checkpoint\",le=\"0.1\"} 1");
  expect_line(
      t, "kybernate_operator_reconcile_duration_seconds_bucket{kind=\"checkpoint\",le=\"0.25\"} 2");
  expect_line(
      t, "kybernate_operator_reconcile_duration_seconds_bucket{kind=\"checkpoint\",le=\"+Inf\"} 2");
  /* Beyond the last bound: only in +Inf. */
  expect_line(t,
              "kybernate_operator_reconcile_duration_seconds_bucket{kind=\"restore\",le=\"10\"} 0");
  expect_line(
      t, "kybernate_operator_reconcile_duration_seconds_bucket{kind=\"restore\",le=\"+Inf\"} 1");
  expect_line(t, "kybernate_operator_reconcile_duration_seconds_count{kind=\"restore\"} 1");
  expect_line(t, "kybernate_operator_checkpoint_requests_created_total 1");
  expect_line(t, "kybernate_operator_leader 1");
  assert_non_null(strstr(t, "kybernate_operator_build_info{version=\""));
  /* Every line is a comment or "name[{labels}] value". */
  for (char *line = t; *line != '\0';) {
    char *nl = strchr(line, '\n');
    assert_non_null(nl);
    if (line[0] != '#') {
      char *sp = memchr(line, ' ', (size_t)(nl - line));
      assert_non_null(sp);
      assert_true(strncmp(line, "kybernate_operator_", 19) == 0);
    }
    line = nl + 1;
  }
  kyb_op_metrics_destroy(&m);
}

static void test_parse_bind(void **state) {
  (void)state;
  struct sockaddr_storage ss;
  unsigned len = 0;
  uint16_t port = 0;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_op_parse_bind(":8080", &ss, &len, &port, &err), 0);
  struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
  assert_int_equal(s4->sin_family, AF_INET);
  assert_int_equal(ntohs(s4->sin_port), 8080);
  assert_int_equal(port, 8080);
  assert_int_equal(s4->sin_addr.s_addr, htonl(INADDR_ANY));
  assert_int_equal(kyb_op_parse_bind("127.0.0.1:0", &ss, &len, &port, &err), 0);
  assert_int_equal(s4->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
  assert_int_equal(kyb_op_parse_bind("[::1]:9000", &ss, &len, &port, &err), 0);
  assert_int_equal(((struct sockaddr_in6 *)&ss)->sin6_family, AF_INET6);
  const char *bad[] = {"8080", ":", ":99999", "host:80", "[::1:80", "1.2.3.4:x"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(kyb_op_parse_bind(bad[i], &ss, &len, &port, &err), -1);
    kyb_error_clear(&err);
  }
}

static size_t collect(char *p, size_t sz, size_t n, void *ud) {
  strncat(ud, p, sz * n < 8000 ? sz * n : 8000);
  return sz * n;
}

static long get(int port, const char *path, const char *method, char *body) {
  char url[128];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
  CURL *c = curl_easy_init();
  body[0] = '\0';
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
  long code = 0;
  assert_int_equal(curl_easy_perform(c), CURLE_OK);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(c);
  return code;
}

static void test_http(void **state) {
  (void)state;
  kyb_op_metrics m;
  kyb_op_metrics_init(&m);
  m.ready = fake_ready;
  kyb_op_http *h = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_op_http_start("127.0.0.1:0", &m, &h, &err), 0);
  int port = kyb_op_http_port(h);
  assert_true(port > 0);
  static char body[16384];
  assert_int_equal(get(port, "/metrics", "GET", body), 200);
  assert_non_null(strstr(body, "kybernate_operator_leader 0"));
  assert_int_equal(get(port, "/healthz", "GET", body), 200);
  assert_string_equal(body, "ok\n");
  ready_flag = false;
  assert_int_equal(get(port, "/readyz", "GET", body), 503);
  assert_string_equal(body, "not ready: caches not synced yet\n");
  ready_flag = true;
  assert_int_equal(get(port, "/readyz", "GET", body), 200);
  assert_int_equal(get(port, "/nope", "GET", body), 404);
  assert_int_equal(get(port, "/metrics", "POST", body), 405);
  /* The port is taken now: a second server says so. */
  char addr[32];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
  kyb_op_http *h2 = NULL;
  assert_int_equal(kyb_op_http_start(addr, &m, &h2, &err), -1);
  kyb_op_http_stop(h);
  kyb_op_metrics_destroy(&m);
}

int main(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_render),
      cmocka_unit_test(test_parse_bind),
      cmocka_unit_test(test_http),
  };
  int r = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return r;
}

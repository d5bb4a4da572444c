/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of URL building (core, group, cluster-scoped, subresources),
 * the checks on names, query escaping, label and field selectors, the
 * "what" of messages, and RFC 3339 times. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kube/client.h"
#include "kube/internal.h"
#include "util/cleanup.h"

static const kyb_kube_resource checkpoints = {"kybernate.io", "v1alpha1", "checkpoints", true};

static void assert_path(const kyb_kube_resource *res, const char *ns, const char *name,
                        const char *sub, const char *want) {
  cleanup_free char *p = NULL;
  cleanup_error kyb_error *err = NULL;
  if (kyb_kube_path(res, ns, name, sub, &p, &err) < 0)
    fail_msg("%s", kyb_error_message(err));
  assert_string_equal(p, want);
}

static void assert_path_refused(const kyb_kube_resource *res, const char *ns, const char *name,
                                const char *sub, const char *part) {
  cleanup_free char *p = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_kube_path(res, ns, name, sub, &p, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
  if (strstr(kyb_error_message(err), part) == NULL)
    fail_msg("'%s' lacks '%s'", kyb_error_message(err), part);
}

static void test_paths(void **state) {
  (void)state;
  assert_path(&kyb_kube_res_pods, "default", "web-0", NULL,
              "/api/v1/namespaces/default/pods/web-0");
  assert_path(&kyb_kube_res_pods, "", NULL, NULL, "/api/v1/pods");
  assert_path(&kyb_kube_res_pods, NULL, NULL, NULL, "/api/v1/pods");
  assert_path(&kyb_kube_res_nodes, "ignored", "n1", NULL, "/api/v1/nodes/n1");
  assert_path(&checkpoints, "team-a", "x", "status",
              "/apis/kybernate.io/v1alpha1/namespaces/team-a/checkpoints/x/status");
  assert_path(&kyb_kube_res_leases, "kube-system", NULL, NULL,
              "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases");
  /* Characters outside the unreserved set are escaped, never interpreted. */
  assert_path(&kyb_kube_res_nodes, NULL, "system:node:a?b#c", NULL,
              "/api/v1/nodes/system%3Anode%3Aa%3Fb%23c");
}

static void test_path_refusals(void **state) {
  (void)state;
  assert_path_refused(&kyb_kube_res_pods, "default", "..", NULL, "is not a name");
  assert_path_refused(&kyb_kube_res_pods, "default", ".", NULL, "is not a name");
  assert_path_refused(&kyb_kube_res_pods, "default", "a/b", NULL, "contains '/'");
  assert_path_refused(&kyb_kube_res_pods, "../x", "a", NULL, "namespace '../x' contains '/'");
  assert_path_refused(&kyb_kube_res_pods, "default", "", NULL, "empty name");
  assert_path_refused(&kyb_kube_res_pods, "default", "a b", NULL, "blank");
  assert_path_refused(&kyb_kube_res_pods, "default", "a%2Fb", NULL, "contains '%'");
  assert_path_refused(&kyb_kube_res_pods, "default", "caf\xc3\xa9", NULL, "non-ASCII");
  assert_path_refused(&kyb_kube_res_pods, "default", "a", "Status", "malformed subresource");
  assert_path_refused(&kyb_kube_res_pods, "default", NULL, "status", "malformed subresource");
  char longname[300];
  memset(longname, 'a', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  assert_path_refused(&kyb_kube_res_pods, "default", longname, NULL, "longer than 253");
  kyb_kube_resource bad = {"Kybernate.io", "v1", "things", true};
  assert_path_refused(&bad, "default", NULL, NULL, "malformed resource descriptor");
  kyb_kube_resource bad2 = {"", "v1", "pods/x", true};
  assert_path_refused(&bad2, "default", NULL, NULL, "malformed resource descriptor");
}

static void test_escape_and_query(void **state) {
  (void)state;
  cleanup_free char *e = kyb_kube_escape("a b&c=d/é~._-");
  assert_string_equal(e, "a%20b%26c%3Dd%2F%C3%A9~._-");
  cleanup_free char *url = strdup("/api/v1/pods");
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kube_query_add(&url, "labelSelector", "app=web,tier in (a,b)", &err), 0);
  assert_int_equal(kube_query_add(&url, "limit", "5", &err), 0);
  assert_string_equal(url, "/api/v1/pods?labelSelector=app%3Dweb%2Ctier%20in%20%28a%2Cb%29"
                           "&limit=5");
}

static void test_label_selector(void **state) {
  (void)state;
  cleanup_free char *s = NULL;
  cleanup_error kyb_error *err = NULL;
  const char *ok[] = {"kybernate.io/node", "node-1", "app", "", "a_b.c-d", "X9", NULL};
  assert_int_equal(kyb_kube_label_selector(ok, &s, &err), 0);
  assert_string_equal(s, "kybernate.io/node=node-1,app=,a_b.c-d=X9");

  const char *const bad[][3] = {
      {"app", "web,evil=1", NULL},      /* a second requirement smuggled in a value */
      {"app", "a b", NULL},             /* blank */
      {"app in (x)", "y", NULL},        /* operator in a key */
      {"Kybernate.io/node", "x", NULL}, /* prefix must be lowercase DNS */
      {"-app", "x", NULL},              /* must start alphanumeric */
      {"app", "x-", NULL},              /* must end alphanumeric */
      {"a/b/c", "x", NULL},
      {"", "x", NULL},
  };
  for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
    cleanup_free char *t = NULL;
    assert_int_equal(kyb_kube_label_selector(bad[k], &t, &err), -1);
    assert_int_equal(kyb_error_code(err), EINVAL);
    assert_null(t);
  }
  char longv[70];
  memset(longv, 'v', sizeof(longv) - 1);
  longv[sizeof(longv) - 1] = '\0';
  const char *toolong[] = {"app", longv, NULL};
  cleanup_free char *t = NULL;
  assert_int_equal(kyb_kube_label_selector(toolong, &t, &err), -1);
  const char *odd[] = {"app", NULL};
  assert_int_equal(kyb_kube_label_selector(odd, &t, &err), -1);
}

static void test_field_selector(void **state) {
  (void)state;
  cleanup_free char *s = NULL;
  cleanup_error kyb_error *err = NULL;
  const char *p[] = {"spec.nodeName", "n1", "metadata.name", "a,b=c\\d", NULL};
  assert_int_equal(kyb_kube_field_selector(p, &s, &err), 0);
  assert_string_equal(s, "spec.nodeName=n1,metadata.name=a\\,b\\=c\\\\d");
  const char *bad[] = {"spec.node Name", "x", NULL};
  cleanup_free char *t = NULL;
  assert_int_equal(kyb_kube_field_selector(bad, &t, &err), -1);
  const char *empty[] = {NULL};
  cleanup_free char *u = NULL;
  assert_int_equal(kyb_kube_field_selector(empty, &u, &err), 0);
  assert_string_equal(u, "");
}

static void test_what(void **state) {
  (void)state;
  char w[256];
  kube_what(w, sizeof(w), "create", &checkpoints, "default", "x");
  assert_string_equal(w, "create kybernate.io/v1alpha1 checkpoints default/x");
  kube_what(w, sizeof(w), "get", &kyb_kube_res_pods, "ns", "p");
  assert_string_equal(w, "get v1 pods ns/p");
  kube_what(w, sizeof(w), "list", &kyb_kube_res_pods, "", NULL);
  assert_string_equal(w, "list v1 pods (all namespaces)");
  kube_what(w, sizeof(w), "watch", &kyb_kube_res_pods, "ns", NULL);
  assert_string_equal(w, "watch v1 pods ns");
  kube_what(w, sizeof(w), "get", &kyb_kube_res_nodes, "", "n1");
  assert_string_equal(w, "get v1 nodes n1");
  kube_what(w, sizeof(w), "list", &kyb_kube_res_nodes, "", NULL);
  assert_string_equal(w, "list v1 nodes");
}

static void test_times(void **state) {
  (void)state;
  char buf[40];
  kyb_kube_time_format(1700000000123456LL, true, buf, sizeof(buf));
  assert_string_equal(buf, "2023-11-14T22:13:20.123456Z");
  kyb_kube_time_format(1700000000123456LL, false, buf, sizeof(buf));
  assert_string_equal(buf, "2023-11-14T22:13:20Z");
  kyb_kube_time_format(5, true, buf, sizeof(buf));
  assert_string_equal(buf, "1970-01-01T00:00:00.000005Z");
  kyb_kube_time_format(-1, true, buf, sizeof(buf));
  assert_string_equal(buf, "1969-12-31T23:59:59.999999Z");

  int64_t us = 0;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_kube_time_parse("2023-11-14T22:13:20.123456Z", &us, &err), 0);
  assert_int_equal(us, 1700000000123456LL);
  assert_int_equal(kyb_kube_time_parse("2023-11-14T22:13:20Z", &us, &err), 0);
  assert_int_equal(us, 1700000000000000LL);
  assert_int_equal(kyb_kube_time_parse("2023-11-14T23:13:20.5+01:00", &us, &err), 0);
  assert_int_equal(us, 1700000000500000LL);
  assert_int_equal(kyb_kube_time_parse("2023-11-14t22:13:20.1234567891z", &us, &err), 0);
  assert_int_equal(us, 1700000000123456LL);
  const char *bad[] = {"2023-11-14 22:13:20Z",  "2023-11-14T22:13:20",     "2023-13-01T00:00:00Z",
                       "2023-11-14T22:13:20.Z", "2023-11-14T22:13:20Zx",   "",
                       "2023-11-14T25:00:00Z",  "2023-11-14T22:13:20+0100"};
  for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
    assert_int_equal(kyb_kube_time_parse(bad[k], &us, &err), -1);
    assert_int_equal(kyb_error_code(err), EINVAL);
  }
  int64_t now = kyb_kube_now_us();
  kyb_kube_time_format(now, true, buf, sizeof(buf));
  assert_int_equal(kyb_kube_time_parse(buf, &us, &err), 0);
  assert_int_equal(us, now);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_paths),
      cmocka_unit_test(test_path_refusals),
      cmocka_unit_test(test_escape_and_query),
      cmocka_unit_test(test_label_selector),
      cmocka_unit_test(test_field_selector),
      cmocka_unit_test(test_what),
      cmocka_unit_test(test_times),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

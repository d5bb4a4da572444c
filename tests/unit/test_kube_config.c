/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the configuration sources: in-cluster files in a temp dir,
 * the kubeconfig subset (kubectl's output, JSON, merging of a list,
 * relative paths, contexts) and its refusals, explicit config, the auto
 * order, and the base64 decoder. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kube/config.h"
#include "util/cleanup.h"
#include "util/fs.h"

static char tmp[64];

static int setup(void **state) {
  (void)state;
  snprintf(tmp, sizeof(tmp), "/tmp/kyb-kcfg.XXXXXX");
  if (mkdtemp(tmp) == NULL)
    return -1;
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");
  unsetenv("KUBECONFIG");
  setenv("HOME", tmp, 1);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  kyb_remove_tree(tmp, &err);
  return 0;
}

static void put(const char *name, const char *text) {
  cleanup_free char *p = kyb_path_join(tmp, name);
  cleanup_error kyb_error *err = NULL;
  char *slash = strrchr(p, '/');
  *slash = '\0';
  assert_int_equal(kyb_mkdir_p(p, 0700, &err), 0);
  *slash = '/';
  assert_int_equal(kyb_write_file_atomic(p, text, strlen(text), 0600, &err), 0);
}

static void assert_contains(const char *s, const char *part) {
  if (s == NULL || strstr(s, part) == NULL)
    fail_msg("'%s' does not contain '%s'", s ? s : "(null)", part);
}

static void sa_files(const char *ns) {
  put("sa/token", "eyJ.token.sig\n");
  put("sa/ca.crt", "-----BEGIN CERTIFICATE-----\n");
  if (ns != NULL)
    put("sa/namespace", ns);
}

static void test_in_cluster(void **state) {
  (void)state;
  sa_files("kyb-system\n");
  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  cleanup_free char *dir = kyb_path_join(tmp, "sa");
  kyb_kube_config cfg;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_kube_config_in_cluster(dir, &cfg, &err), 0);
  assert_string_equal(cfg.server, "https://10.96.0.1:443");
  assert_string_equal(cfg.ns, "kyb-system");
  assert_null(cfg.token);
  assert_contains(cfg.token_file, "/sa/token");
  assert_contains(cfg.ca_file, "/sa/ca.crt");
  assert_contains(cfg.source, "in-cluster");
  kyb_kube_config_clear(&cfg);

  setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
  char nsfile[256];
  snprintf(nsfile, sizeof(nsfile), "%s/namespace", dir);
  unlink(nsfile);
  assert_int_equal(kyb_kube_config_in_cluster(dir, &cfg, &err), 0);
  assert_string_equal(cfg.server, "https://[fd00:10:96::1]:443");
  assert_string_equal(cfg.ns, "default"); /* no namespace file */
  kyb_kube_config_clear(&cfg);
}

static void test_in_cluster_failures(void **state) {
  (void)state;
  cleanup_free char *dir = kyb_path_join(tmp, "sa");
  kyb_kube_config cfg;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_kube_config_in_cluster(dir, &cfg, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
  assert_contains(kyb_error_message(err), "not running in a cluster");
  assert_null(cfg.server); /* nothing left behind */

  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "https", 1);
  assert_int_equal(kyb_kube_config_in_cluster(dir, &cfg, &err), -1);
  assert_contains(kyb_error_message(err), "KUBERNETES_SERVICE_PORT 'https' is not a port");

  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  assert_int_equal(kyb_kube_config_in_cluster(dir, &cfg, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
  assert_contains(kyb_error_message(err), "service account token: open");

  put("sa/token", "\n");
  assert_int_equal(kyb_kube_config_in_cluster(dir, &cfg, &err), -1);
  assert_contains(kyb_error_message(err), "is empty");

  put("sa/token", "t");
  assert_int_equal(kyb_kube_config_in_cluster(dir, &cfg, &err), -1);
  assert_contains(kyb_error_message(err), "service account CA");

  put("sa/ca.crt", "x");
  put("sa/namespace", "Bad/NS");
  assert_int_equal(kyb_kube_config_in_cluster(dir, &cfg, &err), -1);
  assert_contains(kyb_error_message(err), "contains '/'");
}

static const char kubectl_yaml[] = "apiVersion: v1\n"
                                   "clusters:\n"
                                   "- cluster:\n"
                                   "    certificate-authority-data: TFMwdA==\n"
                                   "    server: https://127.0.0.1:6443/\n"
                                   "  name: kind-kind\n"
                                   "- cluster:\n"
                                   "    insecure-skip-tls-verify: true\n"
                                   "    server: http://10.0.0.9:8080\n"
                                   "  name: other\n"
                                   "contexts:\n"
                                   "- context:\n"
                                   "    cluster: kind-kind\n"
                                   "    user: kind-kind\n"
                                   "  name: kind-kind\n"
                                   "- context:\n"
                                   "    cluster: other\n"
                                   "    user: certs\n"
                                   "    namespace: team-a\n"
                                   "  name: other\n"
                                   "current-context: kind-kind\n"
                                   "kind: Config\n"
                                   "preferences: {}\n"
                                   "users:\n"
                                   "- name: kind-kind\n"
                                   "  user:\n"
                                   "    token: abc.def\n"
                                   "- name: certs\n"
                                   "  user:\n"
                                   "    client-certificate-data: Q0VSVA==\n"
                                   "    client-key-data: S0VZ\n";

static void test_kubeconfig_kubectl_output(void **state) {
  (void)state;
  kyb_kube_config cfg;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_kube_config_kubeconfig_text(kubectl_yaml, strlen(kubectl_yaml), "kc", NULL,
                                                   NULL, &cfg, &err),
                   0);
  assert_string_equal(cfg.server, "https://127.0.0.1:6443"); /* trailing '/' dropped */
  assert_string_equal(cfg.token, "abc.def");
  assert_int_equal(cfg.ca_data_len, 4);
  assert_memory_equal(cfg.ca_data, "LS0t", 4);
  assert_string_equal(cfg.ns, "default");
  assert_false(cfg.insecure);
  assert_string_equal(cfg.source, "kubeconfig kc (context kind-kind)");
  kyb_kube_config_clear(&cfg);

  assert_int_equal(kyb_kube_config_kubeconfig_text(kubectl_yaml, strlen(kubectl_yaml), "kc", NULL,
                                                   "other", &cfg, &err),
                   0);
  assert_string_equal(cfg.server, "http://10.0.0.9:8080");
  assert_true(cfg.insecure);
  assert_string_equal(cfg.ns, "team-a");
  assert_null(cfg.token);
  assert_string_equal(cfg.cert_data, "CERT");
  assert_string_equal(cfg.key_data, "KEY");
  kyb_kube_config_clear(&cfg);

  assert_int_equal(kyb_kube_config_kubeconfig_text(kubectl_yaml, strlen(kubectl_yaml), "kc", NULL,
                                                   "nope", &cfg, &err),
                   -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
  assert_contains(kyb_error_message(err), "kubeconfig kc has no context 'nope'");
}

static void test_kubeconfig_json_and_relative_paths(void **state) {
  (void)state;
  put("conf/kc.json", "{\"apiVersion\":\"v1\",\"kind\":\"Config\",\"current-context\":\"c\","
                      "\"clusters\":[{\"name\":\"k\",\"cluster\":{\"server\":\"https://h:1\","
                      "\"certificate-authority\":\"pki/ca.pem\"}}],"
                      "\"users\":[{\"name\":\"u\",\"user\":{\"tokenFile\":\"tok\","
                      "\"client-certificate\":\"/abs/c.pem\",\"client-key\":\"k.pem\"}}],"
                      "\"contexts\":[{\"name\":\"c\",\"context\":{\"cluster\":\"k\","
                      "\"user\":\"u\"}}]}");
  cleanup_free char *path = kyb_path_join(tmp, "conf/kc.json");
  kyb_kube_config cfg;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_kube_config_kubeconfig(path, NULL, &cfg, &err), 0);
  char want[256];
  snprintf(want, sizeof(want), "%s/conf/pki/ca.pem", tmp);
  assert_string_equal(cfg.ca_file, want);
  snprintf(want, sizeof(want), "%s/conf/tok", tmp);
  assert_string_equal(cfg.token_file, want);
  assert_string_equal(cfg.cert_file, "/abs/c.pem");
  snprintf(want, sizeof(want), "%s/conf/k.pem", tmp);
  assert_string_equal(cfg.key_file, want);
  kyb_kube_config_clear(&cfg);
}

static void test_kubeconfig_list_merges_first_wins(void **state) {
  (void)state;
  put("a.yaml", "clusters:\n- name: k\n  cluster:\n    server: https://first\n"
                "contexts:\n- name: c1\n  context:\n    cluster: k\n");
  put("b.yaml", "current-context: c2\n"
                "clusters:\n- name: k\n  cluster:\n    server: https://second\n"
                "- name: k2\n  cluster:\n    server: https://only-b\n"
                "contexts:\n- name: c2\n  context:\n    cluster: k2\n"
                "- name: c1\n  context:\n    cluster: k2\n");
  char list[512];
  snprintf(list, sizeof(list), "%s/a.yaml:%s/missing.yaml:%s/b.yaml", tmp, tmp, tmp);
  setenv("KUBECONFIG", list, 1);
  kyb_kube_config cfg;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_kube_config_kubeconfig(NULL, NULL, &cfg, &err), 0);
  assert_string_equal(cfg.server, "https://only-b"); /* current-context c2 from b */
  kyb_kube_config_clear(&cfg);
  assert_int_equal(kyb_kube_config_kubeconfig(NULL, "c1", &cfg, &err), 0);
  assert_string_equal(cfg.server, "https://first"); /* a's c1 and a's k win */
  kyb_kube_config_clear(&cfg);

  /* One named file must exist. */
  snprintf(list, sizeof(list), "%s/missing.yaml", tmp);
  assert_int_equal(kyb_kube_config_kubeconfig(list, NULL, &cfg, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
  unsetenv("KUBECONFIG");
}

static void assert_kc_refused(const char *yaml, int errnum, const char *part) {
  kyb_kube_config cfg;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(
      kyb_kube_config_kubeconfig_text(yaml, strlen(yaml), "kc", NULL, NULL, &cfg, &err), -1);
  if (kyb_error_code(err) != errnum)
    fail_msg("errno %d for '%s'", kyb_error_code(err), kyb_error_message(err));
  assert_contains(kyb_error_message(err), part);
  assert_null(cfg.server);
}

#define CTX "current-context: c\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n"
#define CLUSTER "clusters:\n- name: k\n  cluster:\n    server: https://h\n"

static void test_kubeconfig_refusals(void **state) {
  (void)state;
  assert_kc_refused(CTX CLUSTER "users:\n- name: u\n  user:\n    exec:\n      command: aws\n",
                    ENOTSUP, "user 'u': field 'exec' (exec credential plugin) is not supported");
  assert_kc_refused(CTX CLUSTER "users:\n- name: u\n  user:\n    auth-provider:\n      name: gcp\n",
                    ENOTSUP, "field 'auth-provider'");
  assert_kc_refused(CTX CLUSTER "users:\n- name: u\n  user:\n    username: a\n    password: b\n",
                    ENOTSUP, "(basic authentication)");
  assert_kc_refused(CTX CLUSTER "users:\n- name: u\n  user:\n    as: admin\n", ENOTSUP,
                    "(impersonation)");
  assert_kc_refused(CTX "clusters:\n- name: k\n  cluster:\n    server: https://h\n"
                        "    proxy-url: http://p\nusers:\n- name: u\n  user: {}\n",
                    ENOTSUP, "cluster 'k': field 'proxy-url' is not supported");
  assert_kc_refused(CTX "clusters:\n- name: k\n  cluster:\n    server: https://h\n"
                        "    insecure-skip-tls-verify: true\n    certificate-authority: /ca\n"
                        "users:\n- name: u\n  user: {}\n",
                    EINVAL, "make no sense");
  assert_kc_refused(CTX CLUSTER "users:\n- name: u\n  user:\n    token: x\nbogus: 1\n", EINVAL,
                    "unknown top-level field 'bogus'");
  assert_kc_refused(CTX "clusters:\n- name: k\n  cluster:\n    certificate-authority-data: "
                        "'%%%'\n    server: https://h\nusers: []\n",
                    EINVAL, "certificate-authority-data: invalid base64");
  assert_kc_refused(CTX "clusters:\n- name: k\n  cluster:\n    server: ftp://h\n"
                        "users:\n- name: u\n  user: {}\n",
                    EINVAL, "neither http:// nor https://");
  assert_kc_refused(CTX CLUSTER, ENOENT, "context 'c': no user 'u'");
  assert_kc_refused(CLUSTER, EINVAL, "sets no current-context");
  assert_kc_refused(CTX CLUSTER CLUSTER, EINVAL, "duplicate key 'clusters'");
  assert_kc_refused(CTX "clusters:\n- name: k\n  cluster:\n    server: https://h\n"
                        "- name: k\n  cluster:\n    server: https://h2\n",
                    EINVAL, "clusters 'k' is named twice");
  assert_kc_refused("kind: Pod\n", EINVAL, "kind is not 'Config'");
  assert_kc_refused("- a\n", EINVAL, "a mapping at the top");
  assert_kc_refused(CTX "clusters:\n- name: k\n  cluster:\n    server: https://h\n"
                        "    insecure-skip-tls-verify: \"yes\"\n",
                    EINVAL, "not true or false");
}

static void test_explicit_and_validate(void **state) {
  (void)state;
  kyb_kube_config cfg;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_kube_config_explicit("http://localhost//", "t", NULL, &cfg, &err), 0);
  assert_string_equal(cfg.server, "http://localhost");
  assert_string_equal(cfg.token, "t");
  assert_string_equal(cfg.ns, "default");
  kyb_kube_config copy;
  assert_int_equal(kyb_kube_config_copy(&copy, &cfg, &err), 0);
  assert_string_equal(copy.server, cfg.server);
  kyb_kube_config_clear(&copy);
  kyb_kube_config_clear(&cfg);

  assert_int_equal(kyb_kube_config_explicit("https://h/?x=1", NULL, NULL, &cfg, &err), -1);
  assert_contains(kyb_error_message(err), "may not carry a query");
  assert_int_equal(kyb_kube_config_explicit("https:///x", NULL, NULL, &cfg, &err), -1);
  assert_contains(kyb_error_message(err), "has no host");
  assert_int_equal(kyb_kube_config_explicit(NULL, NULL, NULL, &cfg, &err), -1);

  kyb_kube_config half = {.server = "https://h", .ns = "default", .cert_file = "/c"};
  assert_int_equal(kyb_kube_config_validate(&half, &err), -1);
  assert_contains(kyb_error_message(err), "needs its key");
}

static void test_auto_order(void **state) {
  (void)state;
  kyb_kube_config cfg;
  cleanup_error kyb_error *err = NULL;
  /* Nothing at all. */
  assert_int_equal(kyb_kube_config_load(NULL, NULL, &cfg, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
  assert_contains(kyb_error_message(err), "no Kubernetes configuration");

  /* ~/.kube/config. */
  put(".kube/config", CTX CLUSTER "users:\n- name: u\n  user:\n    token: home\n");
  assert_int_equal(kyb_kube_config_load(NULL, NULL, &cfg, &err), 0);
  assert_string_equal(cfg.token, "home");
  kyb_kube_config_clear(&cfg);

  /* In-cluster beats ~/.kube/config. */
  sa_files(NULL);
  setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
  assert_int_equal(kyb_kube_config_load(NULL, NULL, &cfg, &err), -1); /* real SA dir absent */
  assert_contains(kyb_error_message(err), "in-cluster");
  assert_int_equal(kyb_kube_config_load(NULL, "c", &cfg, &err), -1);
  assert_contains(kyb_error_message(err), "but the configuration is in-cluster");

  /* $KUBECONFIG beats in-cluster. */
  put("env.yaml", CTX CLUSTER "users:\n- name: u\n  user:\n    token: env\n");
  char p[256];
  snprintf(p, sizeof(p), "%s/env.yaml", tmp);
  setenv("KUBECONFIG", p, 1);
  assert_int_equal(kyb_kube_config_load(NULL, NULL, &cfg, &err), 0);
  assert_string_equal(cfg.token, "env");
  kyb_kube_config_clear(&cfg);

  /* An explicit path beats everything. */
  snprintf(p, sizeof(p), "%s/.kube/config", tmp);
  assert_int_equal(kyb_kube_config_load(p, NULL, &cfg, &err), 0);
  assert_string_equal(cfg.token, "home");
  kyb_kube_config_clear(&cfg);
  unsetenv("KUBECONFIG");
}

static void assert_b64(const char *in, const char *want) {
  cleanup_free char *out = NULL;
  size_t n = 0;
  cleanup_error kyb_error *err = NULL;
  if (kyb_kube_base64_decode(in, strlen(in), &out, &n, &err) < 0)
    fail_msg("%s: %s", in, kyb_error_message(err));
  assert_int_equal(n, strlen(want));
  assert_memory_equal(out, want, n);
}

static void assert_b64_bad(const char *in) {
  cleanup_free char *out = NULL;
  size_t n = 0;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_kube_base64_decode(in, strlen(in), &out, &n, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
}

static void test_base64(void **state) {
  (void)state;
  assert_b64("", "");
  assert_b64("TQ==", "M");
  assert_b64("TWE=", "Ma");
  assert_b64("TWFu", "Man");
  assert_b64("TWFu\nTWFu\r\n", "ManMan");
  assert_b64("Pz8/", "???");
  assert_b64_bad("TWF");
  assert_b64_bad("TW=u");
  assert_b64_bad("TQ==TQ==");
  assert_b64_bad("T Q==");
  assert_b64_bad("T===");
  assert_b64_bad("-_8=");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_in_cluster, setup, teardown),
      cmocka_unit_test_setup_teardown(test_in_cluster_failures, setup, teardown),
      cmocka_unit_test_setup_teardown(test_kubeconfig_kubectl_output, setup, teardown),
      cmocka_unit_test_setup_teardown(test_kubeconfig_json_and_relative_paths, setup, teardown),
      cmocka_unit_test_setup_teardown(test_kubeconfig_list_merges_first_wins, setup, teardown),
      cmocka_unit_test_setup_teardown(test_kubeconfig_refusals, setup, teardown),
      cmocka_unit_test_setup_teardown(test_explicit_and_validate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_auto_order, setup, teardown),
      cmocka_unit_test(test_base64),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

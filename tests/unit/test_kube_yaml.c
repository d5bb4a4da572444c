/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the YAML-subset reader: what kubectl and friends write is
 * read into the same tree a YAML parser would give, and everything outside
 * the subset is refused by name with its line number. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "kube/config.h"
#include "kube/yaml.h"
#include "util/cleanup.h"

static json_t *load(const char *text, kyb_error **err) {
  return kyb_yaml_load(text, strlen(text), "cfg", err);
}

/* The tree as compact, sorted JSON, for one-line comparisons. */
static void assert_yaml(const char *text, const char *json) {
  cleanup_error kyb_error *err = NULL;
  cleanup_json json_t *j = load(text, &err);
  if (j == NULL)
    fail_msg("%s", kyb_error_message(err));
  cleanup_free char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
  assert_string_equal(s, json);
}

static void assert_refused(const char *text, int errnum, const char *msg) {
  cleanup_error kyb_error *err = NULL;
  cleanup_json json_t *j = load(text, &err);
  assert_null(j);
  assert_non_null(err);
  assert_int_equal(kyb_error_code(err), errnum);
  if (strstr(kyb_error_message(err), msg) == NULL)
    fail_msg("'%s' does not contain '%s'", kyb_error_message(err), msg);
}

static const char kubectl_config[] = "apiVersion: v1\n"
                                     "clusters:\n"
                                     "- cluster:\n"
                                     "    certificate-authority-data: TFMwdA==\n"
                                     "    server: https://127.0.0.1:6443\n"
                                     "  name: kind-kind\n"
                                     "contexts:\n"
                                     "- context:\n"
                                     "    cluster: kind-kind\n"
                                     "    user: kind-kind\n"
                                     "  name: kind-kind\n"
                                     "current-context: kind-kind\n"
                                     "kind: Config\n"
                                     "preferences: {}\n"
                                     "users:\n"
                                     "- name: kind-kind\n"
                                     "  user:\n"
                                     "    token: abc.def\n";

static void test_kubectl_style(void **state) {
  (void)state;
  assert_yaml(kubectl_config,
              "{\"apiVersion\":\"v1\",\"clusters\":[{\"cluster\":{\"certificate-authority-data\":"
              "\"TFMwdA==\",\"server\":\"https://127.0.0.1:6443\"},\"name\":\"kind-kind\"}],"
              "\"contexts\":[{\"context\":{\"cluster\":\"kind-kind\",\"user\":\"kind-kind\"},"
              "\"name\":\"kind-kind\"}],\"current-context\":\"kind-kind\",\"kind\":\"Config\","
              "\"preferences\":{},\"users\":[{\"name\":\"kind-kind\",\"user\":{\"token\":"
              "\"abc.def\"}}]}");
}

static void test_indented_sequences_and_nesting(void **state) {
  (void)state;
  assert_yaml("a:\n  - x\n  - y: 1\n    z: [] # empty\n  -\n    - deep\n",
              "{\"a\":[\"x\",{\"y\":\"1\",\"z\":[]},[\"deep\"]]}");
  assert_yaml("- a\n- - b\n  - c\n", "[\"a\",[\"b\",\"c\"]]");
  assert_yaml("k:\n", "{\"k\":null}");
  assert_yaml("a:\nb: 2\n", "{\"a\":null,\"b\":\"2\"}");
  assert_yaml("- \n- x\n", "[null,\"x\"]");
}

static void test_scalars(void **state) {
  (void)state;
  assert_yaml("a: true\nb: False\nc: NULL\nd: ~\ne: 8080\nf: yes\ng: -1\nh: -x\n",
              "{\"a\":true,\"b\":false,\"c\":null,\"d\":null,\"e\":\"8080\",\"f\":\"yes\","
              "\"g\":\"-1\",\"h\":\"-x\"}");
  assert_yaml("url: https://h:6443/p?q=1#frag\n", "{\"url\":\"https://h:6443/p?q=1#frag\"}");
  assert_yaml("a: x # comment\nb: x#not-a-comment\n", "{\"a\":\"x\",\"b\":\"x#not-a-comment\"}");
  assert_yaml("'quoted key': 'it''s'\n\"k2\": \"a\\tb\\u00e9\\x41\\\"\"\n",
              "{\"k2\":\"a\\tbéA\\\"\",\"quoted key\":\"it's\"}");
  assert_yaml("a: \"true\"\nb: ''\n", "{\"a\":\"true\",\"b\":\"\"}");
  assert_yaml("a: \"x\"  # c\n", "{\"a\":\"x\"}");
}

static void test_document_markers_comments_crlf(void **state) {
  (void)state;
  assert_yaml("# head\n---\na: 1\r\n\n   # indented comment\nb: 2\n...\n# tail\n",
              "{\"a\":\"1\",\"b\":\"2\"}");
  assert_yaml("", "null");
  assert_yaml("# only a comment\n", "null");
}

static void test_json_goes_to_jansson(void **state) {
  (void)state;
  assert_yaml("\n {\"a\": [1, true]}", "{\"a\":[1,true]}");
  assert_refused("{\"a\": 1, \"a\": 2}", EINVAL, "cfg:1:");
  assert_refused("{\"a\": ", EINVAL, "cfg:1:");
}

static void test_refused_features(void **state) {
  (void)state;
  assert_refused("a: &x 1\n", ENOTSUP, "cfg:1: anchors and aliases are not supported");
  assert_refused("a: *x\n", ENOTSUP, "anchors and aliases");
  assert_refused("a: !!str 1\n", ENOTSUP, "tags are not supported");
  assert_refused("a: |\n  text\n", ENOTSUP, "block scalars");
  assert_refused("a: >-\n  text\n", ENOTSUP, "block scalars");
  assert_refused("a: [1, 2]\n", ENOTSUP, "flow collections other than {} and []");
  assert_refused("a: {b: 1}\n", ENOTSUP, "flow collections");
  assert_refused("a: 1\n---\nb: 2\n", ENOTSUP, "cfg:2: several YAML documents");
  assert_refused("%YAML 1.2\na: 1\n", ENOTSUP, "directives");
  assert_refused("? complex\n", ENOTSUP, "complex keys");
  assert_refused("a: \"open\n  quote\"\n", ENOTSUP, "multi-line scalars are not supported");
}

static void test_syntax_errors(void **state) {
  (void)state;
  assert_refused("a: 1\n\tb: 2\n", EINVAL, "cfg:2: tab in indentation");
  assert_refused("a: 1\na: 2\n", EINVAL, "cfg:2: duplicate key 'a'");
  assert_refused("a: one\n  two\n", EINVAL, "cfg:2: unexpected indentation");
  assert_refused("a:\n    b: 1\n  c: 2\n", EINVAL, "cfg:3: unexpected indentation");
  assert_refused("a: 1\n- x\n", EINVAL, "cfg:2: sequence entry where a mapping key");
  assert_refused("- x\nb: 1\n", EINVAL, "cfg:2: unexpected content");
  assert_refused("a: b: c\n", EINVAL, "cfg:1: mapping value where a scalar");
  assert_refused("a: \"\\q\"\n", EINVAL, "unknown escape");
  assert_refused("a: \"\\ud800\"\n", EINVAL, "names no Unicode character");
  assert_refused("a: \"x\" y\n", EINVAL, "unexpected text after a quoted scalar");
  assert_refused("a: \xff\xfe\n", EINVAL, "not valid UTF-8");
  assert_refused("\"k\\0x\": 1\n", EINVAL, "NUL");
  /* a NUL in a value would cut the C string made from it (found by fuzz_kubeconfig) */
  assert_refused("a: \"x\\0y\"\n", EINVAL, "NUL");
  assert_refused("a: \"x\\x00y\"\n", EINVAL, "NUL");
  assert_refused("a: \"x\\u0000\"\n", EINVAL, "NUL");
  assert_refused("- \"\\U00000000\"\n", EINVAL, "NUL");
  assert_refused("a: @x\n", EINVAL, "cannot start with '@'");
}

static void test_nul_byte_and_depth(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_json json_t *j = kyb_yaml_load("a: 1\0b", 6, "cfg", &err);
  assert_null(j);
  assert_non_null(strstr(kyb_error_message(err), "NUL byte"));

  char deep[4096] = "";
  size_t o = 0;
  for (int i = 0; i < KYB_YAML_MAX_DEPTH + 2; i++)
    o += (size_t)snprintf(deep + o, sizeof(deep) - o, "%*sk:\n", i, "");
  assert_refused(deep, EINVAL, "nested deeper than 64");
}

/* Fuzz-style: seeded random damage to real configs (bytes flipped, YAML
 * indicators and blanks inserted, cuts).  Whatever comes out, the reader and
 * the kubeconfig layer on top answer with a tree or an error, never both,
 * never neither, and never crash (this runs under ASan+UBSan too). */
static void test_mutations_never_crash(void **state) {
  (void)state;
  static const char special[] = " \t\n:-#'\"{}[]&*!|>%@`?\\,.~\xc3\xff\0";
  const char *seeds[] = {
      kubectl_config, "a:\n  - x\n  - y: \"q\\u00e9\"\n    z: []\n",
      "{\"clusters\":[{\"name\":\"k\",\"cluster\":{\"server\":\"https://h\"}}]}"};
  unsigned int seed = 12345;
  char buf[1024];
  for (int iter = 0; iter < 6000; iter++) {
    const char *src = seeds[iter % 3];
    size_t n = strlen(src);
    memcpy(buf, src, n);
    int edits = 1 + rand_r(&seed) % 4;
    for (int e = 0; e < edits && n > 0; e++) {
      size_t at = (size_t)rand_r(&seed) % n;
      switch (rand_r(&seed) % 4) {
      case 0: /* flip a byte */
        buf[at] = (char)(buf[at] ^ (1 << (rand_r(&seed) % 8)));
        break;
      case 1: /* insert an indicator */
        if (n + 1 < sizeof(buf)) {
          memmove(buf + at + 1, buf + at, n - at);
          buf[at] = special[(size_t)rand_r(&seed) % (sizeof(special) - 1)];
          n++;
        }
        break;
      case 2: /* delete a byte */
        memmove(buf + at, buf + at + 1, n - at - 1);
        n--;
        break;
      default: /* cut */
        n = at;
        break;
      }
    }
    cleanup_error kyb_error *err = NULL;
    json_t *j = kyb_yaml_load(buf, n, "fuzz", &err);
    assert_true((j == NULL) != (err == NULL));
    json_decref(j);
    kyb_error_clear(&err);
    kyb_kube_config cfg;
    int r = kyb_kube_config_kubeconfig_text(buf, n, "fuzz", "/d", NULL, &cfg, &err);
    assert_true((r == 0) == (err == NULL));
    if (r == 0)
      kyb_kube_config_clear(&cfg);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kubectl_style),
      cmocka_unit_test(test_indented_sequences_and_nesting),
      cmocka_unit_test(test_scalars),
      cmocka_unit_test(test_document_markers_comments_crlf),
      cmocka_unit_test(test_json_goes_to_jansson),
      cmocka_unit_test(test_refused_features),
      cmocka_unit_test(test_syntax_errors),
      cmocka_unit_test(test_nul_byte_and_depth),
      cmocka_unit_test(test_mutations_never_crash),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

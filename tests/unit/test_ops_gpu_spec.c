/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of lib/ops/gpu_spec.c -- the OCI spec rewrite behind
 * `kybernate restore --gpus` -- on a FAKE NVIDIA proc directory with two
 * GPUs (G0 minor 0, G1 minor 1; nvidia_proc_test.h):
 *   - linux.devices form: the old GPU nodes and their allow rules go, the
 *     new ones come with allow rules; other devices and rules (deny all,
 *     nvidiactl, uvm) stay; the env is rewritten when it is there;
 *   - env-only form: the value becomes the UUIDs, no device is added;
 *   - neither: NVIDIA_VISIBLE_DEVICES is added;
 *   - no GPU ("none"); the result read back by cuda/visible.c is the set
 *     given; errors: "all", a UUID the driver does not list (device form
 *     only), malformed specs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cuda/visible.h"
#include "nvidia_proc_test.h"
#include "ops/gpu_spec.h"
#include "util/cleanup.h"

#define G0 "GPU-00000000-0000-0000-0000-0000000000b0"
#define G1 "GPU-00000000-0000-0000-0000-0000000000b1"
#define G9 "GPU-00000000-0000-0000-0000-0000000000b9" /* not on this node */

static char base[64];
static char *proc;

static int setup(void **state) {
  (void)state;
  snprintf(base, sizeof(base), "/tmp/kyb-test-gpuspec-XXXXXX");
  if (mkdtemp(base) == NULL)
    return -1;
  proc = fake_nvidia_proc(base, "proc");
  if (proc == NULL || fake_nvidia_gpu(proc, "0000:18:00.0", 0, G0) < 0 ||
      fake_nvidia_gpu(proc, "0000:9a:00.0", 1, G1) < 0)
    return -1;
  unsetenv(KYB_NVIDIA_PROC_ENV);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  kyb_error *err = NULL;
  kyb_remove_tree(base, &err);
  kyb_error_free(err);
  free(proc);
  return 0;
}

#define DEV(n)                                                                                     \
  "{\"path\": \"/dev/nvidia" #n "\", \"type\": \"c\", \"major\": 195, \"minor\": " #n              \
  ", \"fileMode\": 438, \"uid\": 0, \"gid\": 0}"
#define CTL "{\"path\": \"/dev/nvidiactl\", \"type\": \"c\", \"major\": 195, \"minor\": 255}"
#define UVM "{\"path\": \"/dev/nvidia-uvm\", \"type\": \"c\", \"major\": 510, \"minor\": 0}"
#define DENY_ALL "{\"allow\": false, \"access\": \"rwm\"}"
#define ALLOW(major, n)                                                                            \
  "{\"allow\": true, \"type\": \"c\", \"major\": " #major ", \"minor\": " #n                       \
  ", \"access\": \"rwm\"}"

/* Rewrites `in` with the GPUs of `list` and compares with `want` (JSON,
 * compared as values). */
static void rewrite_ok(const char *in, const char *list, const char *want) {
  json_error_t jerr;
  cleanup_json json_t *spec = json_loads(in, 0, &jerr);
  cleanup_json json_t *expect = json_loads(want, 0, &jerr);
  if (spec == NULL || expect == NULL)
    fail_msg("bad test JSON: %s", jerr.text);
  kyb_cuda_visible v = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_visible_parse(list, "--gpus", proc, &v, &err), 0);
  if (kyb_ops_spec_set_gpus(spec, &v, proc, &err) < 0)
    fail_msg("rewrite with %s: %s", list, kyb_error_message(err));
  kyb_cuda_visible_clear(&v);
  if (!json_equal(spec, expect)) {
    cleanup_free char *got = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
    cleanup_free char *exp = json_dumps(expect, JSON_COMPACT | JSON_SORT_KEYS);
    fail_msg("rewrite with %s:\n got %s\nwant %s", list, got, exp);
  }
  /* Read back, the spec gives exactly the GPUs of the list (no GPU left in
   * a spec without the env reads as "no GPU setting": not compared). */
  kyb_cuda_visible back = {0}, given = {0};
  assert_int_equal(kyb_cuda_visible_from_spec(spec, proc, &back, &err), 0);
  assert_int_equal(kyb_cuda_visible_parse(list, "--gpus", proc, &given, &err), 0);
  assert_true(given.count == 0 || !back.all);
  assert_int_equal(back.all ? 0 : back.count, given.count);
  for (size_t i = 0; i < given.count; i++)
    assert_true(kyb_cuda_visible_has(&back, &given.uuids[i]));
  kyb_cuda_visible_clear(&back);
  kyb_cuda_visible_clear(&given);
}

static void rewrite_fails(const char *in, const char *list, const char *want) {
  json_error_t jerr;
  cleanup_json json_t *spec = json_loads(in, 0, &jerr);
  assert_non_null(spec);
  kyb_cuda_visible v = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_visible_parse(list, "--gpus", proc, &v, &err), 0);
  assert_int_equal(kyb_ops_spec_set_gpus(spec, &v, proc, &err), -1);
  kyb_cuda_visible_clear(&v);
  if (strstr(kyb_error_message(err), want) == NULL)
    fail_msg("want \"%s\" in: %s", want, kyb_error_message(err));
}

static void test_devices_form(void **state) {
  (void)state;
  /* ctr run --device /dev/nvidia0 (and nvidiactl, nvidia-uvm): GPU 0 -> GPU 1. */
  rewrite_ok("{\"process\": {\"env\": [\"PATH=/bin\"]},"
             " \"linux\": {\"devices\": [" CTL
             ", " DEV(0) ", " UVM "],"
                         " \"resources\": {\"memory\": {}, \"devices\": [" DENY_ALL
                         ", " ALLOW(195, 255) ", " ALLOW(195, 0) ", " ALLOW(510, 0) "]}}}",
             "1",
             "{\"process\": {\"env\": [\"PATH=/bin\"]},"
             " \"linux\": {\"devices\": [" CTL ", " UVM
             ", " DEV(1) "],"
                         " \"resources\": {\"memory\": {}, \"devices\": [" DENY_ALL
                         ", " ALLOW(195, 255) ", " ALLOW(510, 0) ", " ALLOW(195, 1) "]}}}");
  /* With the env too: both rewritten; by UUID (its minor from the proc
   * files); a deny rule for a GPU stays; an allow rule already there for
   * the new GPU is not doubled. */
  rewrite_ok("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=0\", \"A=1\"]},"
             " \"linux\": {\"devices\": [" DEV(
                 0) "], \"resources\": {\"devices\": ["
                    "{\"allow\": false, \"type\": \"c\", \"major\": 195, \"minor\": 0}, " ALLOW(
                        195, 1) "]}}}",
             G1,
             "{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=" G1 "\", \"A=1\"]},"
             " \"linux\": {\"devices\": [" DEV(
                 1) "], \"resources\": {\"devices\": ["
                    "{\"allow\": false, \"type\": \"c\", \"major\": 195, \"minor\": 0}, " ALLOW(
                        195, 1) "]}}}");
  /* Two GPUs onto two (swapped); no resources section yet: made. */
  rewrite_ok(
      "{\"linux\": {\"devices\": [" DEV(0) ", " DEV(1) "]}}", "1,0",
      "{\"linux\": {\"devices\": [" DEV(1) ", " DEV(0) "], \"resources\": {\"devices\": "
                                                       "[" ALLOW(195, 1) ", " ALLOW(195, 0) "]}}}");
  /* No GPU: the nodes and their rules go; no env is added. */
  rewrite_ok("{\"linux\": {\"devices\": [" CTL ", " DEV(0) "], \"resources\": {\"devices\": "
                                                           "[" DENY_ALL ", " ALLOW(195, 0) "]}}}",
             "none",
             "{\"linux\": {\"devices\": [" CTL "], \"resources\": {\"devices\": [" DENY_ALL "]}}}");
}

static void test_env_form(void **state) {
  (void)state;
  /* Only the env: rewritten (every occurrence), nothing added elsewhere. */
  rewrite_ok("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=" G0 "\", \"B=2\"]},"
             " \"linux\": {\"devices\": [" CTL "]}}",
             "1",
             "{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=" G1 "\", \"B=2\"]},"
             " \"linux\": {\"devices\": [" CTL "]}}");
  rewrite_ok("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=all\", "
             "\"NVIDIA_VISIBLE_DEVICES=0\"]}}",
             G1 "," G0,
             "{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=" G1 "," G0 "\", "
             "\"NVIDIA_VISIBLE_DEVICES=" G1 "," G0 "\"]}}");
  rewrite_ok("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=0\"]}}", "none",
             "{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=none\"]}}");
  /* A UUID the proc files do not list: fine here (no minor needed);
   * kybernate-runc checks it against the driver. */
  rewrite_ok("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=0\"]}}", G9,
             "{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=" G9 "\"]}}");
}

static void test_neither_form(void **state) {
  (void)state;
  rewrite_ok("{\"process\": {\"env\": [\"PATH=/bin\"]}}", "1",
             "{\"process\": {\"env\": [\"PATH=/bin\", \"NVIDIA_VISIBLE_DEVICES=" G1 "\"]}}");
  rewrite_ok("{}", "0", "{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=" G0 "\"]}}");
  rewrite_ok("{\"process\": {\"args\": [\"x\"]}}", "none",
             "{\"process\": {\"args\": [\"x\"], \"env\": [\"NVIDIA_VISIBLE_DEVICES=none\"]}}");
}

static void test_errors(void **state) {
  (void)state;
  rewrite_fails("{}", "all", "give the new container a list of GPUs, not all");
  rewrite_fails("[]", "0", "the OCI spec is not an object");
  rewrite_fails("{\"linux\": 1}", "0", "spec linux is not an object");
  rewrite_fails("{\"linux\": {\"devices\": {}}}", "0", "spec linux.devices is not an array");
  rewrite_fails("{\"linux\": {\"devices\": [{\"path\": \"/dev/nvidia0\", \"major\": 1}]}}", "0",
                "spec linux.devices[0] (/dev/nvidia0): major is not 195");
  rewrite_fails("{\"linux\": {\"devices\": [3]}}", "0", "spec linux.devices[0]: want an object");
  rewrite_fails("{\"linux\": {\"devices\": [" DEV(0) "], \"resources\": []}}", "1",
                "spec resources is not an object");
  rewrite_fails("{\"linux\": {\"devices\": [" DEV(0) "], \"resources\": {\"devices\": {}}}}", "1",
                "spec devices is not an array");
  rewrite_fails("{\"process\": {\"env\": \"x\"}}", "0", "spec env is not an array");
  rewrite_fails("{\"process\": {\"env\": [1]}}", "0", "spec process.env[0] is not a string");
  /* Device nodes need the minor: a UUID the driver does not list fails. */
  rewrite_fails("{\"linux\": {\"devices\": [" DEV(0) "]}}", G9,
                "--gpus names " G9 ", and the NVIDIA driver here lists no such GPU");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_devices_form),
      cmocka_unit_test(test_env_form),
      cmocka_unit_test(test_neither_form),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

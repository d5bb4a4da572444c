/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of lib/runtime/gpu_restore.c -- the GPU restore kybernate-runc
 * runs after `runc restore` -- against the CUDA driver TEST DOUBLE, with real
 * child processes standing in for the restored container's processes:
 *   - the double's `restored <comm>` rule (a process CRIU brought back under
 *     a new pid is adopted CHECKPOINTED and written back);
 *   - kyb_rt_gpu_prepare: no GPU state, malformed manifest gpus, no driver,
 *     GPUs that do not fit, the same GPUs, a remap, a remap on CUDA 12.8;
 *     the map onto exactly the GPUs the new container's spec gives it
 *     (NVIDIA_VISIBLE_DEVICES by UUID or index, /dev/nvidiaN devices, on a
 *     FAKE nvidia proc dir) and every way those GPUs may not fit;
 *   - kyb_rt_gpu_restore on a fake cgroup directory: restore all, then
 *     unlock all; no CUDA process; an injected restore fault;
 *   - kyb_rt_pid_cgroup_dir on a fake /proc and cgroup mount (v2, v1);
 *   - kyb_rt_read_pid_file. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "../doubles/cuda_double_test.h"
#include "cuda/driver.h"
#include "nvidia_proc_test.h"
#include "runtime/gpu_restore.h"
#include "util/cleanup.h"

#define G0 "GPU-00000000-0000-0000-0000-0000000000b0"
#define G1 "GPU-00000000-0000-0000-0000-0000000000b1"
#define G9 "GPU-00000000-0000-0000-0000-0000000000b9" /* a GPU of another node */
#define H200 "NVIDIA H200"
#define H200_MEM 150109880320ll
#define GPU_LINE(u) "gpu " u " 150109880320 " H200 "\n"
#define COMM "kybtest-cuda"   /* the restored CUDA processes' name */
#define OTHER "kybtest-other" /* a process of the container that is not CUDA */

static cuda_world world;
static char *double_lib;
static char *nockpt_lib;
static pid_t kids[4];

static int setup(void **state) {
  (void)state;
  if (cuda_world_open(&world) < 0)
    return -1;
  double_lib = cuda_double_path(CUDA_DOUBLE_LIB);
  nockpt_lib = cuda_double_path(CUDA_DOUBLE_NOCKPT_LIB);
  return double_lib != NULL && nockpt_lib != NULL ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  cuda_world_close(&world);
  free(double_lib);
  free(nockpt_lib);
  return 0;
}

static int each_setup(void **state) {
  (void)state;
  memset(kids, 0, sizeof(kids));
  unsetenv("KYB_CUDA_DOUBLE_FAIL");
  unsetenv("KYB_CUDA_DOUBLE_VERSION");
  unsetenv("KYBERNATE_LIBCUDA");
  return 0;
}

static int each_teardown(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++)
    kyb_killpidp(&kids[i]);
  unsetenv("KYB_CUDA_DOUBLE_FAIL");
  unsetenv("KYB_CUDA_DOUBLE_VERSION");
  unsetenv("KYBERNATE_LIBCUDA");
  return 0;
}

/* ---- helpers ---- */

static void set_world(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_world(const char *fmt, ...) {
  char text[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  assert_int_equal(cuda_world_set(&world, text), 0);
}

static void write_text(const char *path, const char *text) {
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *dir = strdup(path);
  assert_non_null(dir);
  *strrchr(dir, '/') = '\0';
  assert_int_equal(kyb_mkdir_p(dir, 0755, &err), 0);
  assert_int_equal(kyb_write_file_atomic(path, text, strlen(text), 0644, &err), 0);
}

/* A manifest whose gpus is the JSON text `gpus` (NULL: no gpus member). */
static json_t *manifest(const char *gpus) {
  char text[16384];
  if (gpus == NULL)
    snprintf(text, sizeof(text), "{\"format\": 1}");
  else
    snprintf(text, sizeof(text), "{\"format\": 1, \"gpus\": %s}", gpus);
  json_error_t jerr;
  json_t *m = json_loads(text, 0, &jerr);
  assert_non_null(m);
  return m;
}

/* The manifest entry of one recorded GPU. */
static char *recorded(const char *uuid, const char *model) {
  char *s = NULL;
  assert_true(asprintf(&s,
                       "{\"uuid\": \"%s\", \"model\": \"%s\", \"memoryBytes\": %lld, "
                       "\"cudaVersion\": 13000, \"pids\": [7]}",
                       uuid, model, H200_MEM) > 0);
  return s;
}

/* prepare() must fail; its message must hold every one of the NULL-ended
 * `want` strings. */
static void prepare_fails(const char *gpus, const char *driver, ...) {
  cleanup_json json_t *m = manifest(gpus);
  cleanup_error kyb_error *err = NULL;
  kyb_rt_gpu *g = (kyb_rt_gpu *)1;
  assert_int_equal(kyb_rt_gpu_prepare(m, NULL, driver, NULL, &g, &err), -1);
  assert_null(g);
  assert_non_null(err);
  const char *msg = kyb_error_message(err);
  va_list ap;
  va_start(ap, driver);
  for (const char *want; (want = va_arg(ap, const char *)) != NULL;)
    if (strstr(msg, want) == NULL) {
      va_end(ap);
      fail_msg("want \"%s\" in: %s", want, msg);
    }
  va_end(ap);
  /* Refused before anything that would need undoing. */
}

/* The double's call log without state queries and cuInit. */
static char *calls(void) {
  char *c = cuda_world_calls(&world, "getstate", "init");
  assert_non_null(c);
  return c;
}

/* The state the double's state file holds for pid ("" if none). */
static const char *state_of(pid_t pid, char *buf, size_t cap) {
  cleanup_free char *text = cuda_world_state(&world);
  assert_non_null(text);
  char key[32];
  snprintf(key, sizeof(key), "\nproc %d ", (int)pid);
  const char *p = strstr(text, key);
  buf[0] = '\0';
  if (p != NULL)
    sscanf(p + strlen(key), "%31s", buf);
  (void)cap;
  return buf;
}

#define assert_state(pid, want)                                                                    \
  do {                                                                                             \
    char b_[32];                                                                                   \
    assert_string_equal(state_of((pid), b_, sizeof(b_)), (want));                                  \
  } while (0)

/* A fake container cgroup under the world dir listing `procs` ("1\n2\n"),
 * with an empty sub-cgroup; returns its path. */
static char *fake_cgroup(const char *name, const char *procs, const char *sub_procs) {
  char *dir = kyb_path_join(world.dir, name);
  assert_non_null(dir);
  cleanup_free char *top = kyb_path_join(dir, "cgroup.procs");
  cleanup_free char *sub = kyb_path_join(dir, "sub/cgroup.procs");
  write_text(top, procs);
  write_text(sub, sub_procs);
  return dir;
}

/* ---- the double's `restored` rule ---- */

static void test_double_adopts_restored_process(void **state) {
  (void)state;
  kids[0] = spawn_named_sleeper(COMM);
  kids[1] = spawn_named_sleeper(OTHER);
  kids[2] = spawn_named_sleeper(COMM);
  assert_true(kids[0] > 0 && kids[1] > 0 && kids[2] > 0);
  set_world("version 13000\n" GPU_LINE(G0) GPU_LINE(G1) "restored " COMM " " G9 "\n"
                                                        "proc %d RUNNING\n",
            (int)kids[2]);
  kyb_cuda_driver *drv = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_driver_open(double_lib, &drv, &err), 0);

  /* First sight: adopted CHECKPOINTED, seeing the listed GPU, written back. */
  kyb_cu_process_state st = KYB_CU_PROCESS_STATE_RUNNING;
  assert_int_equal(kyb_cuda_get_state(drv, kids[0], &st, NULL, &err), 0);
  assert_int_equal(st, KYB_CU_PROCESS_STATE_CHECKPOINTED);
  cleanup_free char *text = cuda_world_state(&world);
  char line[128];
  snprintf(line, sizeof(line), "proc %d CHECKPOINTED " G9 "\n", (int)kids[0]);
  assert_non_null(strstr(text, line));
  assert_non_null(strstr(text, "restored " COMM " " G9 "\n")); /* the rule stays */
  /* Another name is not adopted; a `proc` line wins over the rule. */
  assert_int_equal(kyb_cuda_get_state(drv, kids[1], &st, NULL, &err), KYB_CUDA_NOT_CUDA);
  assert_int_equal(kyb_cuda_get_state(drv, kids[2], &st, NULL, &err), 0);
  assert_int_equal(st, KYB_CU_PROCESS_STATE_RUNNING);
  /* A dead pid is still "no such process". */
  kyb_killpidp(&kids[0]);
  assert_int_equal(kyb_cuda_get_state(drv, unused_pid(), &st, NULL, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "CUDA_ERROR_OPERATING_SYSTEM"));
  kyb_error_clear(&err);

  /* Adopted on a failing call too (the failure changes no state), and
   * without a list it sees every gpu line. */
  kids[3] = spawn_named_sleeper(COMM);
  set_world("version 13000\n" GPU_LINE(G0) GPU_LINE(G1) "restored " COMM "\n");
  char fault[64];
  snprintf(fault, sizeof(fault), "restore:pid=%d:CUDA_ERROR_UNKNOWN", (int)kids[3]);
  setenv("KYB_CUDA_DOUBLE_FAIL", fault, 1);
  assert_int_equal(kyb_cuda_restore(drv, kids[3], NULL, 0, NULL, &err), -1);
  kyb_error_clear(&err);
  unsetenv("KYB_CUDA_DOUBLE_FAIL");
  free(text);
  text = cuda_world_state(&world);
  snprintf(line, sizeof(line), "proc %d CHECKPOINTED " G0 "," G1 "\n", (int)kids[3]);
  assert_non_null(strstr(text, line));
  assert_non_null(strstr(text, "restored " COMM "\n"));
  /* ... and goes on as a CUDA process: restore, unlock. */
  assert_int_equal(kyb_cuda_restore(drv, kids[3], NULL, 0, NULL, &err), 0);
  assert_int_equal(kyb_cuda_unlock(drv, kids[3], NULL, &err), 0);
  assert_state(kids[3], "RUNNING");
  kyb_cuda_driver_close(drv);

  /* A malformed rule is refused loudly. */
  set_world(GPU_LINE(G0) "restored name-longer-than-15\n");
  assert_int_equal(kyb_cuda_driver_open(double_lib, &drv, &err), KYB_CUDA_NO_DRIVER);
  kyb_error_clear(&err);
}

/* ---- prepare ---- */

static void test_prepare_without_gpu_state(void **state) {
  (void)state;
  /* No driver at all: an image without GPU state never looks for one. */
  cleanup_free char *missing = kyb_path_join(world.dir, "no-such-libcuda.so.1");
  setenv("KYBERNATE_LIBCUDA", missing, 1);
  const char *cases[] = {NULL, "[]"};
  for (size_t i = 0; i < 2; i++) {
    cleanup_json json_t *m = manifest(cases[i]);
    cleanup_error kyb_error *err = NULL;
    kyb_rt_gpu *g = (kyb_rt_gpu *)1;
    assert_int_equal(kyb_rt_gpu_prepare(m, NULL, NULL, NULL, &g, &err), 0);
    assert_null(g);
    assert_null(err);
  }
  kyb_rt_gpu_free(NULL);
}

static void test_prepare_malformed_gpus(void **state) {
  (void)state;
  set_world("version 13000\n" GPU_LINE(G0));
  cleanup_free char *good = recorded(G0, H200);
  char text[16384];
  prepare_fails("{}", double_lib, "manifest gpus is not an array", NULL);
  prepare_fails("\"" G0 "\"", double_lib, "manifest gpus is not an array", NULL);
  prepare_fails("[1]", double_lib, "manifest gpus[0] is not an object", NULL);
  snprintf(text, sizeof(text),
           "[%s, {\"uuid\": \"GPU-123\", \"model\": \"" H200 "\", "
           "\"memoryBytes\": 1}]",
           good);
  prepare_fails(text, double_lib, "manifest gpus[1].uuid", "GPU-123", NULL);
  prepare_fails("[{\"model\": \"" H200 "\", \"memoryBytes\": 1}]", double_lib,
                "manifest gpus[0].uuid: want a GPU UUID string", NULL);
  prepare_fails("[{\"uuid\": 5, \"model\": \"" H200 "\", \"memoryBytes\": 1}]", double_lib,
                "manifest gpus[0].uuid: want a GPU UUID string", NULL);
  prepare_fails("[{\"uuid\": \"" G0 "\", \"memoryBytes\": 1}]", double_lib,
                "manifest gpus[0].model: want a string of 1..95 bytes", NULL);
  prepare_fails("[{\"uuid\": \"" G0 "\", \"model\": \"\", \"memoryBytes\": 1}]", double_lib,
                "manifest gpus[0].model", NULL);
  prepare_fails("[{\"uuid\": \"" G0 "\", \"model\": \"" H200 "\", \"memoryBytes\": -1}]",
                double_lib, "manifest gpus[0].memoryBytes: want an integer >= 0", NULL);
  prepare_fails("[{\"uuid\": \"" G0 "\", \"model\": \"" H200 "\"}]", double_lib,
                "manifest gpus[0].memoryBytes", NULL);
  prepare_fails("[{\"uuid\": \"" G0 "\", \"model\": \"" H200 "\", \"memoryBytes\": \"1\"}]",
                double_lib, "manifest gpus[0].memoryBytes", NULL);
  /* One GPU twice (the UUID's case does not make it another). */
  snprintf(text, sizeof(text),
           "[%s, {\"uuid\": \"GPU-00000000-0000-0000-0000-0000000000B0\", "
           "\"model\": \"" H200 "\", \"memoryBytes\": 1}]",
           good);
  prepare_fails(text, double_lib, "manifest gpus[1].uuid: " G0 " is gpus[0] already", NULL);
  /* 65 GPUs: more than a manifest may list. */
  size_t used = (size_t)snprintf(text, sizeof(text), "[");
  for (int i = 0; i < 65; i++)
    used += (size_t)snprintf(text + used, sizeof(text) - used, "%s{}", i ? "," : "");
  snprintf(text + used, sizeof(text) - used, "]");
  prepare_fails(text, double_lib, "manifest gpus lists 65 GPUs, more than 64", NULL);
  /* None of it reached the driver. */
  cleanup_free char *log = cuda_world_calls(&world, NULL, NULL);
  assert_string_equal(log, "");
}

static void test_prepare_without_driver(void **state) {
  (void)state;
  set_world("version 13000\n" GPU_LINE(G0));
  cleanup_free char *one = recorded(G0, H200);
  char gpus[1024];
  snprintf(gpus, sizeof(gpus), "[%s]", one);
  /* KYBERNATE_LIBCUDA names a missing file (driver_path NULL: the env). */
  cleanup_free char *missing = kyb_path_join(world.dir, "no-such-libcuda.so.1");
  setenv("KYBERNATE_LIBCUDA", missing, 1);
  prepare_fails(gpus, NULL,
                "the image holds GPU state of 1 GPU(s), and this node cannot restore it "
                "(no usable CUDA driver)",
                "no-such-libcuda.so.1", NULL);
  unsetenv("KYBERNATE_LIBCUDA");
  /* A driver that sees no GPU. */
  set_world("version 13000\n");
  prepare_fails(gpus, double_lib, "this node cannot restore it (no usable CUDA driver)",
                "no GPU visible", NULL);
  /* A driver without the checkpoint API: there, but unusable. */
  set_world("version 13000\n" GPU_LINE(G0));
  prepare_fails(gpus, nockpt_lib,
                "the image holds GPU state of 1 GPU(s), and this node cannot "
                "restore it: ",
                "12.8", NULL);
}

static void test_prepare_gpus_that_do_not_fit(void **state) {
  (void)state;
  cleanup_free char *h200_0 = recorded(G0, H200);
  cleanup_free char *h200_1 = recorded(G1, H200);
  cleanup_free char *h100 = recorded(G0, "NVIDIA H100 80GB HBM3");
  char gpus[2048];
  /* Another model. */
  set_world("version 13000\n" GPU_LINE(G0) GPU_LINE(G1));
  snprintf(gpus, sizeof(gpus), "[%s]", h100);
  prepare_fails(gpus, double_lib, "the image's GPUs do not fit this node", "GPU model mismatch",
                "NVIDIA H100 80GB HBM3", NULL);
  /* Too few GPUs. */
  set_world("version 13000\n" GPU_LINE(G0));
  snprintf(gpus, sizeof(gpus), "[%s, %s]", h200_0, h200_1);
  prepare_fails(gpus, double_lib, "the image's GPUs do not fit this node", NULL);
  /* Same model, less memory. */
  set_world("version 13000\ngpu " G1 " 1073741824 " H200 "\n");
  snprintf(gpus, sizeof(gpus), "[%s]", h200_0);
  prepare_fails(gpus, double_lib, "the image's GPUs do not fit this node", "less memory", NULL);
  /* Only the driver's GPU facts were read: no process was touched. */
  cleanup_free char *c = calls();
  assert_string_equal(c, "");
}

/* Prepare with `gpus` on the double, restore on a cgroup listing kids[0]
 * (adopted by the `restored` rule); returns the times. */
static kyb_rt_gpu_times prepare_and_restore(const char *gpus, size_t want_remapped) {
  cleanup_json json_t *m = manifest(gpus);
  cleanup_error kyb_error *err = NULL;
  kyb_rt_gpu *g = NULL;
  if (kyb_rt_gpu_prepare(m, NULL, double_lib, NULL, &g, &err) < 0)
    fail_msg("prepare: %s", kyb_error_message(err));
  assert_non_null(g);
  char procs[32];
  snprintf(procs, sizeof(procs), "%d\n", (int)kids[0]);
  cleanup_free char *cg = fake_cgroup("cg-one", procs, "");
  kyb_rt_gpu_times t;
  int r = kyb_rt_gpu_restore(g, cg, &t, &err);
  kyb_rt_gpu_free(g);
  if (r < 0)
    fail_msg("restore: %s", kyb_error_message(err));
  assert_int_equal(t.procs, 1);
  assert_int_equal(t.remapped, want_remapped);
  assert_true(t.total_ms >= t.restore_ms + t.unlock_ms - 0.001);
  return t;
}

static void test_same_gpus_restore_in_place(void **state) {
  (void)state;
  kids[0] = spawn_named_sleeper(COMM);
  assert_true(kids[0] > 0);
  set_world("version 13000\n" GPU_LINE(G0) GPU_LINE(G1) "restored " COMM " " G0 "," G1 "\n");
  cleanup_free char *r0 = recorded(G0, H200);
  cleanup_free char *r1 = recorded(G1, H200);
  char gpus[2048];
  snprintf(gpus, sizeof(gpus), "[%s, %s]", r0, r1);
  prepare_and_restore(gpus, 0);
  /* The identity map goes to the driver as no map: an in-place restore. */
  char want[128];
  snprintf(want, sizeof(want), "restore %d CUDA_SUCCESS pairs=0\nunlock %d CUDA_SUCCESS",
           (int)kids[0], (int)kids[0]);
  cleanup_free char *c = calls();
  assert_string_equal(c, want);
  assert_state(kids[0], "RUNNING");

  /* The same on a CUDA 12.8 driver: no remap needed, so it works there. */
  kyb_killpidp(&kids[0]);
  kids[0] = spawn_named_sleeper(COMM);
  set_world("version 12080\n" GPU_LINE(G0) GPU_LINE(G1) "restored " COMM " " G0 "," G1 "\n");
  prepare_and_restore(gpus, 0);
  assert_state(kids[0], "RUNNING");
}

static void test_other_gpu_of_same_model_is_remapped(void **state) {
  (void)state;
  kids[0] = spawn_named_sleeper(COMM);
  assert_true(kids[0] > 0);
  /* The process saw G9 at checkpoint; this node has G0 and G1. */
  set_world("version 13000\n" GPU_LINE(G0) GPU_LINE(G1) "restored " COMM " " G9 "\n");
  cleanup_free char *r9 = recorded(G9, H200);
  char gpus[1024];
  snprintf(gpus, sizeof(gpus), "[%s]", r9);
  prepare_and_restore(gpus, 1);
  char want[128];
  snprintf(want, sizeof(want), "restore %d CUDA_SUCCESS pairs=1\nunlock %d CUDA_SUCCESS",
           (int)kids[0], (int)kids[0]);
  cleanup_free char *c = calls();
  assert_string_equal(c, want);
  /* It runs on a GPU of this node now. */
  cleanup_free char *text = cuda_world_state(&world);
  char line[128];
  snprintf(line, sizeof(line), "proc %d RUNNING " G0 "\n", (int)kids[0]);
  assert_non_null(strstr(text, line));
}

static void test_remap_needs_cuda_13(void **state) {
  (void)state;
  set_world("version 12080\n" GPU_LINE(G0) GPU_LINE(G1));
  cleanup_free char *r9 = recorded(G9, H200);
  char gpus[1024];
  snprintf(gpus, sizeof(gpus), "[%s]", r9);
  prepare_fails(gpus, double_lib, "the image's GPUs do not fit this node",
                "1 GPU(s) would move but the driver (CUDA version 12080) cannot remap",
                "GPU remapping needs CUDA 13.0 (driver r580) or newer", NULL);
  /* The env override of the version says the same. */
  set_world("version 13000\n" GPU_LINE(G0) GPU_LINE(G1));
  setenv("KYB_CUDA_DOUBLE_VERSION", "12090", 1);
  prepare_fails(gpus, double_lib, "CUDA version 12090) cannot remap", NULL);
  cleanup_free char *c = calls();
  assert_string_equal(c, "");
}

/* ---- the new container's GPUs (its spec) ---- */

/* A fake nvidia proc dir for the double's G0 (minor 0) and G1 (minor 1). */
static char *fake_proc_dir(void) {
  char *proc = fake_nvidia_proc(world.dir, "nvidia");
  assert_non_null(proc);
  assert_int_equal(fake_nvidia_gpu(proc, "0000:18:00.0", 0, G0), 0);
  assert_int_equal(fake_nvidia_gpu(proc, "0000:9a:00.0", 1, G1), 0);
  return proc;
}

static json_t *spec_of(const char *text) {
  json_error_t jerr;
  json_t *s = json_loads(text, 0, &jerr);
  if (s == NULL)
    fail_msg("bad test spec: %s", jerr.text);
  return s;
}

/* Prepare for a container with spec `spec_text`, restore kids[0]; the
 * double must show `want_pairs` and the process on `want_gpus` after. */
static void restore_into(const char *gpus, const char *spec_text, int want_pairs,
                         const char *want_gpus) {
  cleanup_free char *proc = fake_proc_dir();
  cleanup_json json_t *m = manifest(gpus);
  cleanup_json json_t *spec = spec_of(spec_text);
  cleanup_error kyb_error *err = NULL;
  kyb_rt_gpu *g = NULL;
  if (kyb_rt_gpu_prepare(m, spec, double_lib, proc, &g, &err) < 0)
    fail_msg("prepare for %s: %s", spec_text, kyb_error_message(err));
  char procs[32];
  snprintf(procs, sizeof(procs), "%d\n", (int)kids[0]);
  cleanup_free char *cg = fake_cgroup("cg-spec", procs, "");
  kyb_rt_gpu_times t;
  int r = kyb_rt_gpu_restore(g, cg, &t, &err);
  kyb_rt_gpu_free(g);
  if (r < 0)
    fail_msg("restore: %s", kyb_error_message(err));
  char want[256];
  snprintf(want, sizeof(want), "restore %d CUDA_SUCCESS pairs=%d\nunlock %d CUDA_SUCCESS",
           (int)kids[0], want_pairs, (int)kids[0]);
  cleanup_free char *c = calls();
  assert_string_equal(c, want);
  cleanup_free char *text = cuda_world_state(&world);
  snprintf(want, sizeof(want), "proc %d RUNNING %s\n", (int)kids[0], want_gpus);
  if (strstr(text, want) == NULL)
    fail_msg("want \"%s\" in the double's state:\n%s", want, text);
}

static void test_map_onto_the_containers_gpus(void **state) {
  (void)state;
  cleanup_free char *r0 = recorded(G0, H200);
  char gpus[1024];
  snprintf(gpus, sizeof(gpus), "[%s]", r0);
  /* The process saw only G0; the node has G0 and G1; the new container is
   * given G1 -- by UUID, by index, by its device node.  Without the spec
   * G0 would map onto itself. */
  const char *specs[] = {
      "{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=" G1 "\"]}}",
      "{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=1\"]}}",
      "{\"linux\": {\"devices\": [{\"path\": \"/dev/nvidia1\", \"type\": \"c\", "
      "\"major\": 195, \"minor\": 1}]}}",
  };
  for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
    kyb_killpidp(&kids[0]);
    kids[0] = spawn_named_sleeper(COMM);
    assert_true(kids[0] > 0);
    set_world("version 13000\n" GPU_LINE(G0) GPU_LINE(G1) "restored " COMM " " G0 "\n");
    restore_into(gpus, specs[i], 1, G1);
  }
  /* Given both, G0 stays where it is: an in-place restore. */
  kyb_killpidp(&kids[0]);
  kids[0] = spawn_named_sleeper(COMM);
  set_world("version 13000\n" GPU_LINE(G0) GPU_LINE(G1) "restored " COMM " " G0 "\n");
  restore_into(gpus, "{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=1,0\"]}}", 0, G0);
  /* Two recorded onto two given, swapped: each onto itself. */
  kyb_killpidp(&kids[0]);
  kids[0] = spawn_named_sleeper(COMM);
  set_world("version 13000\n" GPU_LINE(G0) GPU_LINE(G1) "restored " COMM " " G0 "," G1 "\n");
  cleanup_free char *r1 = recorded(G1, H200);
  snprintf(gpus, sizeof(gpus), "[%s, %s]", r0, r1);
  restore_into(gpus, "{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=all\"]}}", 0, G0 "," G1);
}

/* prepare() for a container with spec `spec_text` must fail with every
 * NULL-ended `want`, before any process call. */
static void spec_refused(const char *gpus, const char *spec_text, ...) {
  cleanup_free char *proc = fake_proc_dir();
  cleanup_json json_t *m = manifest(gpus);
  cleanup_json json_t *spec = spec_of(spec_text);
  cleanup_error kyb_error *err = NULL;
  kyb_rt_gpu *g = (kyb_rt_gpu *)1;
  assert_int_equal(kyb_rt_gpu_prepare(m, spec, double_lib, proc, &g, &err), -1);
  assert_null(g);
  const char *msg = kyb_error_message(err);
  va_list ap;
  va_start(ap, spec_text);
  for (const char *want; (want = va_arg(ap, const char *)) != NULL;)
    if (strstr(msg, want) == NULL) {
      va_end(ap);
      fail_msg("want \"%s\" in: %s", want, msg);
    }
  va_end(ap);
  cleanup_free char *c = calls();
  assert_string_equal(c, "");
}

#define ENV_SPEC(v) "{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=" v "\"]}}"

static void test_containers_gpus_that_do_not_fit(void **state) {
  (void)state;
  cleanup_free char *r0 = recorded(G0, H200);
  cleanup_free char *r1 = recorded(G1, H200);
  char one[1024], two[2048];
  snprintf(one, sizeof(one), "[%s]", r0);
  snprintf(two, sizeof(two), "[%s, %s]", r0, r1);
  set_world("version 13000\n" GPU_LINE(G0) GPU_LINE(G1));
  /* Fewer GPUs given than recorded: both sides named. */
  spec_refused(two, ENV_SPEC(G1), "the image's GPUs do not fit this node",
               "the checkpoint's GPUs: " G0 " (" H200 "), " G1 " (" H200 "); the new container's "
               "(from NVIDIA_VISIBLE_DEVICES): " G1 " (" H200 ")",
               "the checkpoint was taken with 2 GPU(s) (2 x " H200 ") and only 1 are here", NULL);
  /* No GPU given. */
  spec_refused(one, ENV_SPEC("none"),
               "the new container's (from NVIDIA_VISIBLE_DEVICES): none: the checkpoint was "
               "taken with 1 GPU(s)",
               NULL);
  spec_refused(one, "{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=void\"]}}",
               "only 0 are here", NULL);
  /* The GPU given is another model. */
  set_world("version 13000\n" GPU_LINE(G0) "gpu " G1 " 150109880320 NVIDIA A100\n");
  spec_refused(one, ENV_SPEC("1"),
               "the new container's (from NVIDIA_VISIBLE_DEVICES): " G1 " (NVIDIA A100)",
               "GPU model mismatch: the checkpoint ran on " G0 " (" H200 ")", NULL);
  /* Every GPU here: said so. */
  spec_refused(two, "{}", "the new container's (every GPU here, from no GPU setting in the spec)",
               NULL);
  /* A GPU the driver does not list; a MIG device; a minor not on the node. */
  set_world("version 13000\n" GPU_LINE(G0) GPU_LINE(G1));
  spec_refused(one, ENV_SPEC(G9), "the image's GPUs do not fit this node",
               "the container's GPU " G9 " (from NVIDIA_VISIBLE_DEVICES) is not among the GPUs "
               "the CUDA driver lists (" G0 ", " G1 ")",
               NULL);
  spec_refused(one, ENV_SPEC("MIG-4a2e5d4f-3c5b-5b1e-9b3a-6f0c1d2e3f40"),
               "the new container's GPUs: NVIDIA_VISIBLE_DEVICES names the MIG device",
               "not supported", NULL);
  spec_refused(one, "{\"linux\": {\"devices\": [{\"path\": \"/dev/nvidia7\"}]}}",
               "spec linux.devices gives the GPU device minor 7", NULL);
}

/* ---- restore ---- */

static void test_restore_all_then_unlock_all(void **state) {
  (void)state;
  kids[0] = spawn_named_sleeper(COMM);
  kids[1] = spawn_named_sleeper(OTHER); /* in the container, not a CUDA process */
  kids[2] = spawn_named_sleeper(COMM);
  kids[3] = spawn_named_sleeper(COMM);
  for (int i = 0; i < 4; i++)
    assert_true(kids[i] > 0);
  set_world("version 13000\n" GPU_LINE(G0) "restored " COMM "\n");
  cleanup_free char *r0 = recorded(G0, H200);
  char gpus[1024];
  snprintf(gpus, sizeof(gpus), "[%s]", r0);
  cleanup_json json_t *m = manifest(gpus);
  cleanup_error kyb_error *err = NULL;
  kyb_rt_gpu *g = NULL;
  assert_int_equal(kyb_rt_gpu_prepare(m, NULL, double_lib, NULL, &g, &err), 0);
  /* kids[3] sits in a sub-cgroup: the walk finds it too. */
  char procs[64], sub[32];
  snprintf(procs, sizeof(procs), "%d\n%d\n%d\n", (int)kids[0], (int)kids[1], (int)kids[2]);
  snprintf(sub, sizeof(sub), "%d\n", (int)kids[3]);
  cleanup_free char *cg = fake_cgroup("cg-many", procs, sub);
  kyb_rt_gpu_times t;
  int r = kyb_rt_gpu_restore(g, cg, &t, &err);
  kyb_rt_gpu_free(g);
  if (r < 0)
    fail_msg("restore: %s", kyb_error_message(err));
  assert_int_equal(t.procs, 3);
  assert_int_equal(t.remapped, 0);
  /* Every restore first, then every unlock (pids in ascending order). */
  pid_t cuda[3] = {kids[0], kids[2], kids[3]};
  for (int i = 0; i < 3; i++)
    for (int j = i + 1; j < 3; j++)
      if (cuda[j] < cuda[i]) {
        pid_t x = cuda[i];
        cuda[i] = cuda[j];
        cuda[j] = x;
      }
  char want[512];
  snprintf(want, sizeof(want),
           "restore %d CUDA_SUCCESS pairs=0\nrestore %d CUDA_SUCCESS pairs=0\n"
           "restore %d CUDA_SUCCESS pairs=0\nunlock %d CUDA_SUCCESS\nunlock %d CUDA_SUCCESS\n"
           "unlock %d CUDA_SUCCESS",
           (int)cuda[0], (int)cuda[1], (int)cuda[2], (int)cuda[0], (int)cuda[1], (int)cuda[2]);
  cleanup_free char *c = calls();
  assert_string_equal(c, want);
  for (int i = 0; i < 3; i++)
    assert_state(cuda[i], "RUNNING");
  assert_state(kids[1], "");
}

static void test_restore_without_cuda_process(void **state) {
  (void)state;
  kids[0] = spawn_named_sleeper(OTHER);
  assert_true(kids[0] > 0);
  set_world("version 13000\n" GPU_LINE(G0) "restored " COMM "\n");
  cleanup_free char *r0 = recorded(G0, H200);
  char gpus[1024];
  snprintf(gpus, sizeof(gpus), "[%s]", r0);
  cleanup_json json_t *m = manifest(gpus);
  cleanup_error kyb_error *err = NULL;
  kyb_rt_gpu *g = NULL;
  assert_int_equal(kyb_rt_gpu_prepare(m, NULL, double_lib, NULL, &g, &err), 0);
  char procs[32];
  snprintf(procs, sizeof(procs), "%d\n", (int)kids[0]);
  cleanup_free char *cg = fake_cgroup("cg-cpu", procs, "");
  kyb_rt_gpu_times t;
  assert_int_equal(kyb_rt_gpu_restore(g, cg, &t, &err), -1);
  char want[512];
  snprintf(want, sizeof(want),
           "none of the 1 process(es) in %s is a CUDA process, yet the image holds GPU state", cg);
  assert_non_null(strstr(kyb_error_message(err), want));
  assert_int_equal(t.procs, 0);
  kyb_error_clear(&err);
  /* An empty cgroup: the same. */
  cleanup_free char *empty = fake_cgroup("cg-empty", "", "");
  assert_int_equal(kyb_rt_gpu_restore(g, empty, &t, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "none of the 0 process(es)"));
  kyb_error_clear(&err);
  /* A cgroup directory that is not there. */
  cleanup_free char *gone = kyb_path_join(world.dir, "cg-gone");
  assert_int_equal(kyb_rt_gpu_restore(g, gone, &t, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "the restored container's processes"));
  kyb_rt_gpu_free(g);
  cleanup_free char *c = calls();
  assert_string_equal(c, "");
}

static void test_restore_fault(void **state) {
  (void)state;
  kids[0] = spawn_named_sleeper(COMM);
  kids[1] = spawn_named_sleeper(COMM);
  assert_true(kids[0] > 0 && kids[1] > 0);
  set_world("version 13000\n" GPU_LINE(G0) "restored " COMM "\n");
  cleanup_free char *r0 = recorded(G0, H200);
  char gpus[1024], fault[64], procs[64];
  snprintf(gpus, sizeof(gpus), "[%s]", r0);
  snprintf(fault, sizeof(fault), "restore:pid=%d:CUDA_ERROR_UNKNOWN", (int)kids[1]);
  setenv("KYB_CUDA_DOUBLE_FAIL", fault, 1);
  cleanup_json json_t *m = manifest(gpus);
  cleanup_error kyb_error *err = NULL;
  kyb_rt_gpu *g = NULL;
  assert_int_equal(kyb_rt_gpu_prepare(m, NULL, double_lib, NULL, &g, &err), 0);
  snprintf(procs, sizeof(procs), "%d\n%d\n", (int)kids[0], (int)kids[1]);
  cleanup_free char *cg = fake_cgroup("cg-fault", procs, "");
  kyb_rt_gpu_times t;
  assert_int_equal(kyb_rt_gpu_restore(g, cg, &t, &err), -1);
  kyb_rt_gpu_free(g);
  const char *msg = kyb_error_message(err);
  char want[256];
  snprintf(want, sizeof(want),
           "cuCheckpointProcessRestore(pid %d, 0 GPU pairs): CUDA_ERROR_UNKNOWN", (int)kids[1]);
  assert_non_null(strstr(msg, want));
  snprintf(want, sizeof(want), "pid %d CHECKPOINTED", (int)kids[1]);
  assert_non_null(strstr(msg, want));
  /* The error reads once as a GPU restore, not "GPU restore: GPU restore". */
  assert_null(strstr(msg, "GPU restore: GPU restore"));
  assert_int_equal(t.procs, 2);
  /* The other process was restored and unlocked all the same. */
  assert_state(kids[0], "RUNNING");
  assert_state(kids[1], "CHECKPOINTED");
}

/* ---- the container's cgroup from /proc/<pid>/cgroup ---- */

/* <world>/<proc>/4242/cgroup := text; the mount <world>/<mnt> is made v2
 * (cgroup.controllers) or not. */
static void fake_proc(const char *text, bool v2, char **proc, char **mnt) {
  *proc = kyb_path_join(world.dir, "proc");
  *mnt = kyb_path_join(world.dir, v2 ? "mnt-v2" : "mnt-v1");
  cleanup_free char *cg = kyb_path_join(*proc, "4242/cgroup");
  write_text(cg, text);
  cleanup_free char *marker = kyb_path_join(*mnt, "cgroup.controllers");
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_mkdir_p(*mnt, 0755, &err), 0);
  if (v2)
    write_text(marker, "cpu memory pids\n");
}

static void expect_dir(const char *text, bool v2, const char *want_rel) {
  cleanup_free char *proc = NULL, *mnt = NULL, *out = NULL;
  fake_proc(text, v2, &proc, &mnt);
  cleanup_error kyb_error *err = NULL;
  if (kyb_rt_pid_cgroup_dir(proc, mnt, 4242, &out, &err) < 0)
    fail_msg("%s: %s", text, kyb_error_message(err));
  char want[PATH_MAX];
  snprintf(want, sizeof(want), "%s%s", mnt, want_rel);
  assert_string_equal(out, want);
}

static void expect_no_dir(const char *text, bool v2, const char *want) {
  cleanup_free char *proc = NULL, *mnt = NULL, *out = NULL;
  fake_proc(text, v2, &proc, &mnt);
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_rt_pid_cgroup_dir(proc, mnt, 4242, &out, &err), -1);
  assert_null(out);
  if (strstr(kyb_error_message(err), want) == NULL)
    fail_msg("want \"%s\" in: %s", want, kyb_error_message(err));
}

static void test_pid_cgroup_dir_v2(void **state) {
  (void)state;
  expect_dir("0::/a/b\n", true, "/a/b");
  expect_dir("0::/\n", true, "");
  /* A hybrid host's v1 lines around it do not matter under v2. */
  expect_dir("5:pids:/x\n1:name=systemd:/y\n0::/kybtest-1/default-c1\n", true,
             "/kybtest-1/default-c1");
  expect_no_dir("5:pids:/a/b\n", true, "names no cgroup v2 (\"0::\") cgroup of pid 4242");
  expect_no_dir("0::/../../escape\n", true, "names no cgroup v2");
  expect_no_dir("", true, "names no cgroup v2");
}

static void test_pid_cgroup_dir_v1(void **state) {
  (void)state;
  expect_dir("5:pids:/a/b\n", false, "/pids/a/b");
  /* pids before memory, wherever the lines are. */
  expect_dir("4:memory:/m\n0::/\n5:pids:/a/b\n", false, "/pids/a/b");
  expect_dir("4:memory:/m\n1:name=systemd:/s\n", false, "/memory/m");
  /* A controller in a combined hierarchy. */
  expect_dir("3:cpu,cpuacct:/x\n", false, "/cpu/x");
  expect_dir("3:cpuacct,cpu:/x\n", false, "/cpu/x");
  expect_dir("2:net_cls,net_prio:/n\n6:devices:/d\n", false, "/devices/d");
  expect_dir("5:pids:/\n", false, "/pids");
  /* No hierarchy it looks at: only the v2 line, a named one, net_cls. */
  expect_no_dir("0::/a\n1:name=systemd:/s\n2:net_cls:/n\n", false,
                "names no v1 pids/memory/freezer/cpu/devices cgroup of pid 4242");
  expect_no_dir("5:pids\n", false, "names no v1");
  expect_no_dir("5:pids:relative\n", false, "names no v1");
  /* No such process. */
  cleanup_free char *proc = kyb_path_join(world.dir, "proc");
  cleanup_free char *out = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_rt_pid_cgroup_dir(proc, NULL, 4243, &out, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "the cgroup of pid 4243"));
  assert_int_equal(kyb_error_code(err), ENOENT);
}

static void test_pid_cgroup_dir_of_this_process(void **state) {
  (void)state;
  /* The real /proc and mount: a directory that lists this process. */
  cleanup_free char *out = NULL;
  cleanup_error kyb_error *err = NULL;
  if (kyb_rt_pid_cgroup_dir(NULL, NULL, getpid(), &out, &err) < 0)
    fail_msg("%s", kyb_error_message(err));
  assert_true(strncmp(out, KYB_RT_CGROUP_MOUNT, strlen(KYB_RT_CGROUP_MOUNT)) == 0);
  struct stat st;
  if (stat(out, &st) == 0) { /* a container may not see its own cgroup dir */
    cleanup_free char *procs = kyb_path_join(out, "cgroup.procs");
    cleanup_free char *text = NULL;
    assert_int_equal(kyb_read_file(procs, 1u << 22, &text, NULL, &err), 0);
    char me[32];
    snprintf(me, sizeof(me), "%d\n", (int)getpid());
    bool found = strncmp(text, me, strlen(me)) == 0;
    char nme[34];
    snprintf(nme, sizeof(nme), "\n%d\n", (int)getpid());
    found = found || strstr(text, nme) != NULL;
    assert_true(found);
  }
}

/* ---- runc's pid file ---- */

static void test_read_pid_file(void **state) {
  (void)state;
  cleanup_free char *path = kyb_path_join(world.dir, "init.pid");
  const struct {
    const char *text;
    pid_t want; /* 0: refused */
  } cases[] = {
      {"1234", 1234},
      {"1234\n", 1234},
      {"7 \n", 7},
      {"", 0},
      {"\n", 0},
      {"abc", 0},
      {"12x", 0},
      {"-5", 0},
      {"0", 0},
      {"4294967297", 0},
      {"1 2", 0},
      {"0x10", 0},
      {"2147483647", 2147483647},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    write_text(path, cases[i].text);
    pid_t pid = -1;
    cleanup_error kyb_error *err = NULL;
    int r = kyb_rt_read_pid_file(path, &pid, &err);
    if (cases[i].want > 0) {
      if (r < 0)
        fail_msg("\"%s\": %s", cases[i].text, kyb_error_message(err));
      assert_int_equal(pid, cases[i].want);
    } else {
      if (r == 0)
        fail_msg("\"%s\" read as pid %d", cases[i].text, (int)pid);
      assert_non_null(strstr(kyb_error_message(err), "does not hold a pid"));
    }
  }
  /* Too long for a pid file, and missing. */
  char big[200];
  memset(big, '1', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  write_text(path, big);
  pid_t pid = 0;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_rt_read_pid_file(path, &pid, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "runc's pid file"));
  kyb_error_clear(&err);
  cleanup_free char *missing = kyb_path_join(world.dir, "no.pid");
  assert_int_equal(kyb_rt_read_pid_file(missing, &pid, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
}

#define T(f) cmocka_unit_test_setup_teardown(f, each_setup, each_teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_double_adopts_restored_process),
      T(test_prepare_without_gpu_state),
      T(test_prepare_malformed_gpus),
      T(test_prepare_without_driver),
      T(test_prepare_gpus_that_do_not_fit),
      T(test_same_gpus_restore_in_place),
      T(test_other_gpu_of_same_model_is_remapped),
      T(test_remap_needs_cuda_13),
      T(test_map_onto_the_containers_gpus),
      T(test_containers_gpus_that_do_not_fit),
      T(test_restore_all_then_unlock_all),
      T(test_restore_without_cuda_process),
      T(test_restore_fault),
      T(test_pid_cgroup_dir_v2),
      T(test_pid_cgroup_dir_v1),
      T(test_pid_cgroup_dir_of_this_process),
      T(test_read_pid_file),
  };
  return cmocka_run_group_tests_name("runtime_gpu", tests, setup, teardown);
}

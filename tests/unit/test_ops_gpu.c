/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of lib/ops/gpu.c, the GPU steps of the checkpoint operation,
 * against the CUDA driver TEST DOUBLE with real child processes standing in
 * for a container's processes: no driver -> skipped; no CUDA process ->
 * nothing done; lock all -> checkpoint all with the manifest's gpus and
 * timings (the manifest validated); restore + unlock after; the rollback
 * (after a later failure, refused while the task is frozen, its own failure
 * reported); a lock timeout names the timeout and leaves every process
 * RUNNING; a killed task's GPU state is forgotten; an unusable driver is an
 * error; only the container's GPUs are recorded (its spec's
 * NVIDIA_VISIBLE_DEVICES or /dev/nvidiaN devices, on a FAKE nvidia proc
 * dir), and a spec whose GPUs cannot be told is refused before any lock. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../doubles/cuda_double_test.h"
#include "image/image.h"
#include "nvidia_proc_test.h"
#include "ops/gpu.h"
#include "util/cleanup.h"

#define G0 "GPU-00000000-0000-0000-0000-0000000000a0"
#define G1 "GPU-00000000-0000-0000-0000-0000000000a1"
#define GPUS                                                                                       \
  "version 13000\n"                                                                                \
  "gpu " G0 " 150109880320 NVIDIA H200\n"                                                          \
  "gpu " G1 " 150109880320 NVIDIA H200\n"

static cuda_world world;
static char *double_lib;
static char *image_dir;
static kyb_image_builder *builder;
static kyb_ops_gpu *gpu;
static pid_t a, b;       /* a: a CUDA process; b: a process that never initialised CUDA */
static char phases[512]; /* progress calls, "gpu_checkpoint+ gpu_checkpoint- ..." */

static void on_progress(void *ud, const char *phase, bool done, uint64_t ms) {
  (void)ud;
  (void)ms;
  size_t n = strlen(phases);
  snprintf(phases + n, sizeof(phases) - n, "%s%s%s", n ? " " : "", phase, done ? "-" : "+");
}

static int setup(void **state) {
  (void)state;
  if (cuda_world_open(&world) < 0)
    return -1;
  double_lib = cuda_double_path(CUDA_DOUBLE_LIB);
  image_dir = kyb_path_join(world.dir, "image");
  return double_lib != NULL && image_dir != NULL ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  cuda_world_close(&world);
  free(double_lib);
  free(image_dir);
  return 0;
}

static int each_setup(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  kyb_remove_tree(image_dir, &err);
  kyb_error_clear(&err);
  cleanup_free char *criu = kyb_path_join(image_dir, KYB_IMAGE_CRIU_DIR);
  if (criu == NULL || kyb_mkdir_p(criu, 0700, &err) < 0)
    return -1;
  builder = kyb_image_builder_new(image_dir, "img", &err);
  gpu = NULL;
  a = b = 0;
  phases[0] = '\0';
  return builder != NULL ? 0 : -1;
}

static int each_teardown(void **state) {
  (void)state;
  kyb_ops_gpu_free(gpu);
  gpu = NULL;
  kyb_image_builder_free(builder);
  builder = NULL;
  kyb_killpidp(&a);
  kyb_killpidp(&b);
  unsetenv("KYB_CUDA_DOUBLE_FAIL");
  return 0;
}

/* Two live processes; the double's state is GPUS + "proc <a> <state>". */
static void start(const char *a_state) {
  a = spawn_sleeper();
  b = spawn_sleeper();
  char text[512];
  snprintf(text, sizeof(text), "%sproc %d %s\n", GPUS, (int)a, a_state);
  assert_int_equal(cuda_world_set(&world, text), 0);
}

static int checkpoint(unsigned int timeout_ms, const char *lib, kyb_error **err) {
  kyb_ops_gpu_opts o = {.driver_path = lib, .lock_timeout_ms = timeout_ms, .progress = on_progress};
  pid_t pids[2] = {b, a};
  return kyb_ops_gpu_checkpoint(&o, pids, 2, builder, &gpu, err);
}

/* "proc <pid> <STATE> ..." as the double holds it now. */
static void expect_state(pid_t pid, const char *want) {
  cleanup_free char *text = cuda_world_state(&world);
  assert_non_null(text);
  char line[64];
  snprintf(line, sizeof(line), "proc %d %s", (int)pid, want);
  if (strstr(text, line) == NULL)
    fail_msg("want '%s' in the double's state:\n%s", line, text);
}

/* The double's call log without state queries and cuInit; "{a}" is a's pid;
 * lock timeouts are cut off at " timeout=" (the clock decides them). */
static void expect_calls(const char *want) {
  char expanded[1024];
  size_t used = 0;
  for (const char *p = want; *p != '\0' && used + 16 < sizeof(expanded);) {
    if (strncmp(p, "{a}", 3) == 0) {
      used += (size_t)snprintf(expanded + used, sizeof(expanded) - used, "%d", (int)a);
      p += 3;
    } else {
      expanded[used++] = *p++;
    }
  }
  expanded[used] = '\0';
  cleanup_free char *calls = cuda_world_calls(&world, "getstate", "init");
  for (char *t; (t = strstr(calls, " timeout=")) != NULL;) {
    const char *rest = t + 9 + strspn(t + 9, "0123456789");
    memmove(t, rest, strlen(rest) + 1);
  }
  assert_string_equal(calls, expanded);
}

/* Finishes the image and returns its validated manifest. */
static json_t *finish_manifest(void) {
  cleanup_error kyb_error *err = NULL;
  kyb_image_source src = {.container_id = "c1"};
  cleanup_json json_t *spec = json_pack("{s:s}", "ociVersion", "1.0.2");
  assert_int_equal(kyb_image_builder_set_source(builder, &src, &err), 0);
  assert_int_equal(
      kyb_image_builder_set_runtime(builder, spec, "io.containerd.runc.v2", "runc", &err), 0);
  if (kyb_image_builder_finish(builder, NULL, &err) < 0)
    fail_msg("finish: %s", kyb_error_message(err));
  json_t *m = NULL;
  if (kyb_image_load_manifest(image_dir, &m, &err) < 0)
    fail_msg("manifest: %s", kyb_error_message(err));
  return m;
}

static void test_no_driver_skips(void **state) {
  (void)state;
  start("RUNNING");
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(checkpoint(0, "/nonexistent/libcuda.so.1", &err), 0);
  assert_null(err);
  assert_null(gpu);
  expect_state(a, "RUNNING");
  expect_calls("");
  /* A double that sees no GPU answers cuInit like a GPU-less node. */
  char text[64];
  snprintf(text, sizeof(text), "proc %d RUNNING\n", (int)a);
  assert_int_equal(cuda_world_set(&world, text), 0);
  assert_int_equal(checkpoint(0, double_lib, &err), 0);
  assert_null(gpu);
  cleanup_json json_t *m = finish_manifest();
  assert_int_equal(json_array_size(json_object_get(m, "gpus")), 0);
  assert_null(json_object_get(json_object_get(m, "timings"), "gpu_lock"));
  assert_string_equal(phases, "");
}

static void test_no_cuda_process(void **state) {
  (void)state;
  start("RUNNING");
  char text[256];
  snprintf(text, sizeof(text), "%s", GPUS); /* nobody is a CUDA process */
  assert_int_equal(cuda_world_set(&world, text), 0);
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(checkpoint(0, double_lib, &err), 0);
  assert_null(gpu);
  expect_calls("");
  cleanup_json json_t *m = finish_manifest();
  assert_int_equal(json_array_size(json_object_get(m, "gpus")), 0);
}

static void test_checkpoint_then_restore(void **state) {
  (void)state;
  start("RUNNING");
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(checkpoint(0, double_lib, &err), 0);
  assert_non_null(gpu);
  assert_int_equal(kyb_ops_gpu_count(gpu), 1); /* b is not a CUDA process */
  expect_calls("lock {a} CUDA_SUCCESS\ncheckpoint {a} CUDA_SUCCESS");
  expect_state(a, "CHECKPOINTED");
  /* The default lock budget (10 s) went to the driver. */
  cleanup_free char *calls = cuda_world_calls(&world, "getstate", "init");
  const char *tv = strstr(calls, "timeout=");
  assert_non_null(tv);
  long t = strtol(tv + 8, NULL, 10);
  assert_true(t > 9000 && t <= 10000);

  assert_int_equal(kyb_ops_gpu_restore(gpu, &err), 0);
  expect_calls("lock {a} CUDA_SUCCESS\ncheckpoint {a} CUDA_SUCCESS\n"
               "restore {a} CUDA_SUCCESS pairs=0\nunlock {a} CUDA_SUCCESS");
  expect_state(a, "RUNNING");
  assert_string_equal(phases, "gpu_checkpoint+ gpu_checkpoint- gpu_restore+ gpu_restore-");
  /* Done: neither a second restore nor a rollback calls the driver. */
  assert_int_equal(kyb_ops_gpu_restore(gpu, &err), 0);
  kyb_ops_gpu_rollback(gpu, true, &err);
  assert_null(err);
  expect_calls("lock {a} CUDA_SUCCESS\ncheckpoint {a} CUDA_SUCCESS\n"
               "restore {a} CUDA_SUCCESS pairs=0\nunlock {a} CUDA_SUCCESS");

  /* The manifest: every GPU with its facts and the CUDA pids; both timings. */
  cleanup_json json_t *m = finish_manifest();
  json_t *gpus = json_object_get(m, "gpus");
  assert_int_equal(json_array_size(gpus), 2);
  const char *uuids[] = {G0, G1};
  for (size_t i = 0; i < 2; i++) {
    json_t *g = json_array_get(gpus, i);
    assert_string_equal(json_string_value(json_object_get(g, "uuid")), uuids[i]);
    assert_string_equal(json_string_value(json_object_get(g, "model")), "NVIDIA H200");
    assert_int_equal(json_integer_value(json_object_get(g, "memoryBytes")), 150109880320LL);
    assert_int_equal(json_integer_value(json_object_get(g, "cudaVersion")), 13000);
    json_t *pids = json_object_get(g, "pids");
    assert_int_equal(json_array_size(pids), 1);
    assert_int_equal(json_integer_value(json_array_get(pids, 0)), a);
  }
  json_t *timings = json_object_get(m, "timings");
  assert_true(json_is_integer(json_object_get(timings, "gpu_lock")));
  assert_true(json_is_integer(json_object_get(timings, "gpu_checkpoint")));
}

/* A checkpoint with the container's spec `spec_text`, the fake proc dir
 * of GPUS (G0 minor 0, G1 minor 1) for its minors and indices. */
static int checkpoint_spec(const char *spec_text, kyb_error **err) {
  cleanup_free char *proc = fake_nvidia_proc(world.dir, "nvidia");
  assert_non_null(proc);
  assert_int_equal(fake_nvidia_gpu(proc, "0000:18:00.0", 0, G0), 0);
  assert_int_equal(fake_nvidia_gpu(proc, "0000:9a:00.0", 1, G1), 0);
  json_error_t jerr;
  cleanup_json json_t *spec = json_loads(spec_text, 0, &jerr);
  assert_non_null(spec);
  kyb_ops_gpu_opts o = {.driver_path = double_lib, .spec = spec, .nvidia_proc = proc};
  pid_t pids[2] = {b, a};
  return kyb_ops_gpu_checkpoint(&o, pids, 2, builder, &gpu, err);
}

/* The manifest's gpus as "uuid,uuid". */
static void expect_recorded(const char *want) {
  cleanup_json json_t *m = finish_manifest();
  json_t *gpus = json_object_get(m, "gpus");
  char got[256] = "";
  for (size_t i = 0; i < json_array_size(gpus); i++)
    snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i ? "," : "",
             json_string_value(json_object_get(json_array_get(gpus, i), "uuid")));
  assert_string_equal(got, want);
}

static void test_records_only_the_containers_gpus(void **state) {
  (void)state;
  /* NVIDIA_VISIBLE_DEVICES by index (through the proc files). */
  start("RUNNING");
  cleanup_error kyb_error *err = NULL;
  if (checkpoint_spec("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=1\"]}}", &err) < 0)
    fail_msg("checkpoint: %s", kyb_error_message(err));
  expect_calls("lock {a} CUDA_SUCCESS\ncheckpoint {a} CUDA_SUCCESS");
  assert_int_equal(kyb_ops_gpu_restore(gpu, &err), 0);
  expect_recorded(G1);
}

static void test_records_gpus_of_linux_devices(void **state) {
  (void)state;
  start("RUNNING");
  cleanup_error kyb_error *err = NULL;
  /* /dev/nvidia0 (minor 0) wins over the env's "all". */
  if (checkpoint_spec("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=all\"]}, \"linux\": "
                      "{\"devices\": [{\"path\": \"/dev/nvidiactl\", \"type\": \"c\", \"major\": "
                      "195, \"minor\": 255}, {\"path\": \"/dev/nvidia0\", \"type\": \"c\", "
                      "\"major\": 195, \"minor\": 0}]}}",
                      &err) < 0)
    fail_msg("checkpoint: %s", kyb_error_message(err));
  assert_int_equal(kyb_ops_gpu_restore(gpu, &err), 0);
  expect_recorded(G0);
}

static void test_records_every_gpu_without_a_setting(void **state) {
  (void)state;
  start("RUNNING");
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(checkpoint_spec("{\"process\": {\"env\": [\"PATH=/bin\"]}}", &err), 0);
  assert_int_equal(kyb_ops_gpu_restore(gpu, &err), 0);
  expect_recorded(G0 "," G1);
}

/* The container's GPUs cannot be told: refused before any lock. */
static void container_gpus_refused(const char *spec_text, const char *want) {
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(checkpoint_spec(spec_text, &err), -1);
  if (strstr(kyb_error_message(err), want) == NULL)
    fail_msg("want \"%s\" in: %s", want, kyb_error_message(err));
  assert_null(gpu);
  expect_calls("");
  expect_state(a, "RUNNING");
}

static void test_containers_gpus_refused(void **state) {
  (void)state;
  start("RUNNING");
  container_gpus_refused("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=GPU-00000000-0000-"
                         "0000-0000-0000000000a9\"]}}",
                         "the container's GPU GPU-00000000-0000-0000-0000-0000000000a9 (from "
                         "NVIDIA_VISIBLE_DEVICES) is not among the GPUs the CUDA driver lists (" G0
                         ", " G1 ")");
  container_gpus_refused("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=none\"]}}",
                         "the container has CUDA processes, yet its spec gives it no GPU (from "
                         "NVIDIA_VISIBLE_DEVICES): cannot tell which GPUs to record");
  container_gpus_refused("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=0:0\"]}}",
                         "the container's GPUs: NVIDIA_VISIBLE_DEVICES names the MIG device");
  container_gpus_refused("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=7\"]}}",
                         "GPU index 7, and the node has 2 GPU(s)");
  container_gpus_refused("{\"linux\": {\"devices\": [{\"path\": \"/dev/nvidia5\"}]}}",
                         "spec linux.devices gives the GPU device minor 5");
}

static void test_rollback_after_later_failure(void **state) {
  (void)state;
  start("RUNNING");
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(checkpoint(3000, double_lib, &err), 0);
  expect_state(a, "CHECKPOINTED");
  kyb_error_set(&err, ENOSPC, "CRIU dump failed"); /* what a later step reports */
  kyb_ops_gpu_rollback(gpu, true, &err);
  assert_string_equal(kyb_error_message(err), "CRIU dump failed (No space left on device)");
  expect_calls("lock {a} CUDA_SUCCESS\ncheckpoint {a} CUDA_SUCCESS\n"
               "restore {a} CUDA_SUCCESS pairs=0\nunlock {a} CUDA_SUCCESS");
  expect_state(a, "RUNNING");
}

static void test_rollback_waits_for_a_running_task(void **state) {
  (void)state;
  start("RUNNING");
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(checkpoint(0, double_lib, &err), 0);
  kyb_error_set(&err, 0, "pause failed");
  kyb_ops_gpu_rollback(gpu, false, &err);
  char want[160];
  snprintf(want, sizeof(want),
           "rollback failed too (the container is frozen, so the GPU state of pid %d "
           "CHECKPOINTED could not be restored) after: pause failed",
           (int)a);
  assert_string_equal(kyb_error_message(err), want);
  expect_calls("lock {a} CUDA_SUCCESS\ncheckpoint {a} CUDA_SUCCESS");
  expect_state(a, "CHECKPOINTED");
  /* Once it runs, the rollback still owes it its GPU state. */
  kyb_error_clear(&err);
  kyb_ops_gpu_rollback(gpu, true, &err);
  assert_null(err);
  expect_state(a, "RUNNING");
}

static void test_rollback_failure_reported(void **state) {
  (void)state;
  start("RUNNING");
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(checkpoint(0, double_lib, &err), 0);
  setenv("KYB_CUDA_DOUBLE_FAIL", "restore:CUDA_ERROR_UNKNOWN", 1);
  kyb_error_set(&err, 0, "publish failed");
  kyb_ops_gpu_rollback(gpu, true, &err);
  const char *msg = kyb_error_message(err);
  assert_non_null(strstr(msg, "GPU rollback failed too (GPU restore: 1 failure(s), not running: "));
  assert_non_null(strstr(msg, "CHECKPOINTED"));
  assert_non_null(strstr(msg, "CUDA_ERROR_UNKNOWN"));
  assert_non_null(strstr(msg, ") after: publish failed"));
  expect_state(a, "CHECKPOINTED");
}

static void test_restore_failure_reported(void **state) {
  (void)state;
  start("RUNNING");
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(checkpoint(0, double_lib, &err), 0);
  setenv("KYB_CUDA_DOUBLE_FAIL", "unlock:CUDA_ERROR_UNKNOWN", 1);
  assert_int_equal(kyb_ops_gpu_restore(gpu, &err), -1);
  char want[64];
  snprintf(want, sizeof(want), "not running: pid %d LOCKED", (int)a);
  assert_non_null(strstr(kyb_error_message(err), want));
  expect_state(a, "LOCKED");
}

static void test_lock_timeout(void **state) {
  (void)state;
  start("RUNNING");
  char fault[64];
  snprintf(fault, sizeof(fault), "lock:pid=%d:timeout", (int)a);
  setenv("KYB_CUDA_DOUBLE_FAIL", fault, 1);
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(checkpoint(2500, double_lib, &err), -1);
  const char *msg = kyb_error_message(err);
  assert_non_null(strstr(msg, "GPU lock timeout of 2500 ms ran out: GPU lock (rolled back: all 1 "
                              "CUDA process(es) running again): cuCheckpointProcessLock(pid"));
  assert_non_null(strstr(msg, "CUDA_ERROR_NOT_READY"));
  expect_calls("lock {a} CUDA_ERROR_NOT_READY");
  expect_state(a, "RUNNING");
  /* Nothing left to undo for the caller's rollback. */
  unsetenv("KYB_CUDA_DOUBLE_FAIL");
  kyb_ops_gpu_rollback(gpu, true, &err);
  expect_calls("lock {a} CUDA_ERROR_NOT_READY");
}

static void test_killed_task_is_forgotten(void **state) {
  (void)state;
  start("RUNNING");
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(checkpoint(0, double_lib, &err), 0);
  kyb_ops_gpu_forget(gpu);
  kyb_ops_gpu_rollback(gpu, true, &err);
  assert_int_equal(kyb_ops_gpu_restore(gpu, &err), 0);
  assert_null(err);
  expect_calls("lock {a} CUDA_SUCCESS\ncheckpoint {a} CUDA_SUCCESS");
}

static void test_process_not_running_refused(void **state) {
  (void)state;
  start("LOCKED"); /* someone else's operation holds it */
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(checkpoint(0, double_lib, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "is LOCKED, not RUNNING"));
  expect_calls("");
  kyb_ops_gpu_rollback(gpu, true, &err); /* not ours: untouched */
  expect_calls("");
  expect_state(a, "LOCKED");
}

static void test_unusable_driver_is_an_error(void **state) {
  (void)state;
  start("RUNNING");
  cleanup_free char *old = cuda_double_path(CUDA_DOUBLE_NOCKPT_LIB);
  assert_non_null(old);
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(checkpoint(0, old, &err), -1);
  assert_null(gpu);
  const char *msg = kyb_error_message(err);
  assert_non_null(strstr(msg, "cannot tell whether the container holds GPU state: "));
  assert_non_null(strstr(msg, "CUDA 12.8"));
}

static void test_null_handle(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_ops_gpu_restore(NULL, &err), 0);
  kyb_ops_gpu_rollback(NULL, true, &err);
  kyb_ops_gpu_forget(NULL);
  assert_int_equal(kyb_ops_gpu_count(NULL), 0);
  kyb_ops_gpu_free(NULL);
  assert_null(err);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_no_driver_skips, each_setup, each_teardown),
      cmocka_unit_test_setup_teardown(test_no_cuda_process, each_setup, each_teardown),
      cmocka_unit_test_setup_teardown(test_checkpoint_then_restore, each_setup, each_teardown),
      cmocka_unit_test_setup_teardown(test_records_only_the_containers_gpus, each_setup,
                                      each_teardown),
      cmocka_unit_test_setup_teardown(test_records_gpus_of_linux_devices, each_setup,
                                      each_teardown),
      cmocka_unit_test_setup_teardown(test_records_every_gpu_without_a_setting, each_setup,
                                      each_teardown),
      cmocka_unit_test_setup_teardown(test_containers_gpus_refused, each_setup, each_teardown),
      cmocka_unit_test_setup_teardown(test_rollback_after_later_failure, each_setup, each_teardown),
      cmocka_unit_test_setup_teardown(test_rollback_waits_for_a_running_task, each_setup,
                                      each_teardown),
      cmocka_unit_test_setup_teardown(test_rollback_failure_reported, each_setup, each_teardown),
      cmocka_unit_test_setup_teardown(test_restore_failure_reported, each_setup, each_teardown),
      cmocka_unit_test_setup_teardown(test_lock_timeout, each_setup, each_teardown),
      cmocka_unit_test_setup_teardown(test_killed_task_is_forgotten, each_setup, each_teardown),
      cmocka_unit_test_setup_teardown(test_process_not_running_refused, each_setup, each_teardown),
      cmocka_unit_test_setup_teardown(test_unusable_driver_is_an_error, each_setup, each_teardown),
      cmocka_unit_test(test_null_handle),
  };
  return cmocka_run_group_tests_name("ops_gpu", tests, setup, teardown);
}

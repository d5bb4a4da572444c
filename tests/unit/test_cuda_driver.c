/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of lib/cuda/driver.c through its real dlopen path, loading the
 * CUDA driver TEST DOUBLE (tests/doubles): absent, broken, too old and
 * symbol-less drivers; GPU facts; one process through every state; error
 * names in messages; the CUDA 13.0 requirement for GPU remapping. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../doubles/cuda_double_test.h"
#include "cuda/driver.h"
#include "cuda/gpumap.h"
#include "util/cleanup.h"

#define G0 "GPU-f45a5189-6446-eea1-0596-804e908f0f9a"
#define G1 "GPU-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"

static cuda_world world;
static char *double_lib;

static int setup(void **state) {
  (void)state;
  if (cuda_world_open(&world) < 0)
    return -1;
  double_lib = cuda_double_path(CUDA_DOUBLE_LIB);
  return double_lib != NULL ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  cuda_world_close(&world);
  free(double_lib);
  return 0;
}

static const char two_gpus[] = "version 13000\n"
                               "gpu " G0 " 150109880320 NVIDIA H200\n"
                               "gpu " G1 " 150109880320 NVIDIA H200\n";

static kyb_cuda_driver *open_double(void) {
  kyb_cuda_driver *drv = NULL;
  cleanup_error kyb_error *err = NULL;
  int rc = kyb_cuda_driver_open(double_lib, &drv, &err);
  if (rc != 0)
    fail_msg("open %s: %d %s", double_lib, rc, err ? kyb_error_message(err) : "");
  return drv;
}

static void test_absent_library_is_no_driver(void **state) {
  (void)state;
  kyb_cuda_driver *drv = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_driver_open("/nonexistent/libcuda.so.1", &drv, &err),
                   KYB_CUDA_NO_DRIVER);
  assert_null(drv);
  assert_non_null(strstr(kyb_error_message(err), "no CUDA driver"));
  kyb_error_clear(&err);
  /* A bare soname goes through the loader's search, like libcuda.so.1. */
  assert_int_equal(kyb_cuda_driver_open("libkyb-no-such-driver.so.1", &drv, &err),
                   KYB_CUDA_NO_DRIVER);
  assert_non_null(strstr(kyb_error_message(err), "No such file"));
}

static void test_broken_library_is_an_error(void **state) {
  (void)state;
  cleanup_free char *path = kyb_path_join(world.dir, "libcuda.so.1");
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_write_file_atomic(path, "not an ELF file", 15, 0644, &err), 0);
  kyb_cuda_driver *drv = NULL;
  assert_int_equal(kyb_cuda_driver_open(path, &drv, &err), -1);
  assert_null(drv);
  assert_non_null(strstr(kyb_error_message(err), "load CUDA driver"));
}

static void test_env_names_the_library(void **state) {
  (void)state;
  assert_int_equal(cuda_world_set(&world, two_gpus), 0);
  setenv(KYB_CUDA_LIBRARY_ENV, double_lib, 1);
  kyb_cuda_driver *drv = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_driver_open(NULL, &drv, &err), 0);
  unsetenv(KYB_CUDA_LIBRARY_ENV);
  assert_string_equal(kyb_cuda_driver_path(drv), double_lib);
  assert_int_equal(kyb_cuda_driver_version(drv), 13000);
  assert_true(kyb_cuda_driver_can_remap(drv));
  kyb_cuda_driver_close(drv);
}

static void test_too_old_names_the_version_needed(void **state) {
  (void)state;
  assert_int_equal(cuda_world_set(&world, two_gpus), 0);
  setenv("KYB_CUDA_DOUBLE_VERSION", "12060", 1);
  kyb_cuda_driver *drv = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_driver_open(double_lib, &drv, &err), -1);
  unsetenv("KYB_CUDA_DOUBLE_VERSION");
  assert_null(drv);
  assert_non_null(strstr(kyb_error_message(err), "supports CUDA 12.6"));
  assert_non_null(strstr(kyb_error_message(err), "needs CUDA 12.8 (driver r570) or newer"));
}

static void test_missing_checkpoint_symbols(void **state) {
  (void)state;
  /* No version line: the old double answers its own 12.4. */
  assert_int_equal(cuda_world_set(&world, strchr(two_gpus, '\n') + 1), 0);
  cleanup_free char *old = cuda_double_path(CUDA_DOUBLE_NOCKPT_LIB);
  assert_non_null(old);
  kyb_cuda_driver *drv = NULL;
  cleanup_error kyb_error *err = NULL;
  /* As it is: an old driver, refused by its version. */
  assert_int_equal(kyb_cuda_driver_open(old, &drv, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "supports CUDA 12.4"));
  kyb_error_clear(&err);
  /* Claiming 12.8 without the symbols: refused by the first missing one. */
  setenv("KYB_CUDA_DOUBLE_VERSION", "12080", 1);
  assert_int_equal(kyb_cuda_driver_open(old, &drv, &err), -1);
  unsetenv("KYB_CUDA_DOUBLE_VERSION");
  assert_non_null(strstr(kyb_error_message(err), "lacks cuCheckpointProcessGetState"));
  assert_non_null(strstr(kyb_error_message(err), "CUDA 12.8"));
}

static void test_no_gpu_is_no_driver(void **state) {
  (void)state;
  assert_int_equal(cuda_world_set(&world, "version 13000\n"), 0);
  kyb_cuda_driver *drv = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_driver_open(double_lib, &drv, &err), KYB_CUDA_NO_DRIVER);
  assert_null(drv);
  assert_non_null(strstr(kyb_error_message(err), "cuInit"));
  assert_non_null(strstr(kyb_error_message(err), "CUDA_ERROR_NO_DEVICE"));
}

static void test_lists_gpus(void **state) {
  (void)state;
  assert_int_equal(cuda_world_set(&world, two_gpus), 0);
  kyb_cuda_driver *drv = open_double();
  cleanup_free kyb_cuda_gpu *gpus = NULL;
  size_t n = 0;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_list_gpus(drv, &gpus, &n, &err), 0);
  assert_int_equal(n, 2);
  char u[KYB_CUDA_UUID_STRLEN + 1];
  kyb_cuda_uuid_format(&gpus[0].uuid, u);
  assert_string_equal(u, G0);
  kyb_cuda_uuid_format(&gpus[1].uuid, u);
  assert_string_equal(u, G1);
  assert_string_equal(gpus[1].model, "NVIDIA H200");
  assert_int_equal(gpus[0].memory_bytes, 150109880320ull);
  assert_int_equal(gpus[1].ordinal, 1);
  kyb_cuda_driver_close(drv);
}

static void test_state_tells_cuda_from_other_processes(void **state) {
  (void)state;
  cleanup_pid pid_t cuda = spawn_sleeper();
  cleanup_pid pid_t plain = spawn_sleeper();
  char text[512];
  snprintf(text, sizeof(text), "%sproc %d RUNNING\n", two_gpus, (int)cuda);
  assert_int_equal(cuda_world_set(&world, text), 0);
  kyb_cuda_driver *drv = open_double();
  cleanup_error kyb_error *err = NULL;
  kyb_cu_process_state s = KYB_CU_PROCESS_STATE_FAILED;
  kyb_curesult r = -1;
  assert_int_equal(kyb_cuda_get_state(drv, cuda, &s, &r, &err), 0);
  assert_int_equal(s, KYB_CU_PROCESS_STATE_RUNNING);
  assert_int_equal(r, KYB_CUDA_SUCCESS);
  assert_int_equal(kyb_cuda_get_state(drv, plain, &s, &r, &err), KYB_CUDA_NOT_CUDA);
  assert_null(err);
  assert_int_equal(r, KYB_CUDA_ERROR_NOT_INITIALIZED);
  pid_t gone = unused_pid();
  assert_int_equal(kyb_cuda_get_state(drv, gone, &s, &r, &err), -1);
  assert_int_equal(r, KYB_CUDA_ERROR_OPERATING_SYSTEM);
  char want[160];
  snprintf(want, sizeof(want),
           "cuCheckpointProcessGetState(pid %d): CUDA_ERROR_OPERATING_SYSTEM (OS call failed",
           (int)gone);
  assert_non_null(strstr(kyb_error_message(err), want));
  kyb_cuda_driver_close(drv);
}

static void expect_state(kyb_cuda_driver *drv, pid_t pid, kyb_cu_process_state want) {
  cleanup_error kyb_error *err = NULL;
  kyb_cu_process_state s = KYB_CU_PROCESS_STATE_FAILED;
  assert_int_equal(kyb_cuda_get_state(drv, pid, &s, NULL, &err), 0);
  assert_string_equal(kyb_cuda_state_name(s), kyb_cuda_state_name(want));
}

static void test_one_process_through_every_state(void **state) {
  (void)state;
  cleanup_pid pid_t pid = spawn_sleeper();
  char text[512];
  snprintf(text, sizeof(text), "%sproc %d RUNNING\n", two_gpus, (int)pid);
  assert_int_equal(cuda_world_set(&world, text), 0);
  kyb_cuda_driver *drv = open_double();
  cleanup_error kyb_error *err = NULL;
  kyb_curesult r = 0;
  assert_int_equal(kyb_cuda_lock(drv, pid, 1000, &r, &err), 0);
  expect_state(drv, pid, KYB_CU_PROCESS_STATE_LOCKED);
  assert_int_equal(kyb_cuda_checkpoint(drv, pid, &r, &err), 0);
  expect_state(drv, pid, KYB_CU_PROCESS_STATE_CHECKPOINTED);
  /* Unlock of a checkpointed process: refused, nothing changes (as on the H200). */
  assert_int_equal(kyb_cuda_unlock(drv, pid, &r, &err), -1);
  assert_int_equal(r, KYB_CUDA_ERROR_ILLEGAL_STATE);
  char want[160];
  snprintf(want, sizeof(want),
           "cuCheckpointProcessUnlock(pid %d): CUDA_ERROR_ILLEGAL_STATE (the operation cannot "
           "be performed in the present state)",
           (int)pid);
  assert_string_equal(kyb_error_message(err), want);
  kyb_error_clear(&err);
  expect_state(drv, pid, KYB_CU_PROCESS_STATE_CHECKPOINTED);
  pid_t tid = 0;
  assert_int_equal(kyb_cuda_restore_tid(drv, pid, &tid, &r, &err), 0);
  assert_true(tid > 0);
  assert_int_equal(kyb_cuda_restore(drv, pid, NULL, 0, &r, &err), 0);
  expect_state(drv, pid, KYB_CU_PROCESS_STATE_LOCKED);
  assert_int_equal(kyb_cuda_unlock(drv, pid, &r, &err), 0);
  expect_state(drv, pid, KYB_CU_PROCESS_STATE_RUNNING);
  cleanup_free char *calls = cuda_world_calls(&world, "getstate", "init");
  char order[512];
  snprintf(order, sizeof(order),
           "lock %d CUDA_SUCCESS timeout=1000\ncheckpoint %d CUDA_SUCCESS\n"
           "unlock %d CUDA_ERROR_ILLEGAL_STATE\nrestoretid %d CUDA_SUCCESS\n"
           "restore %d CUDA_SUCCESS pairs=0\nunlock %d CUDA_SUCCESS",
           (int)pid, (int)pid, (int)pid, (int)pid, (int)pid, (int)pid);
  assert_string_equal(calls, order);
  kyb_cuda_driver_close(drv);
}

static void test_error_names_in_messages(void **state) {
  (void)state;
  cleanup_pid pid_t pid = spawn_sleeper();
  char text[512];
  snprintf(text, sizeof(text), "%sproc %d RUNNING\n", two_gpus, (int)pid);
  assert_int_equal(cuda_world_set(&world, text), 0);
  kyb_cuda_driver *drv = open_double();
  assert_string_equal(kyb_cuda_result_name(drv, KYB_CUDA_ERROR_TIMEOUT), "CUDA_ERROR_TIMEOUT");
  assert_string_equal(kyb_cuda_result_name(NULL, KYB_CUDA_ERROR_NOT_READY), "CUDA_ERROR_NOT_READY");
  assert_string_equal(kyb_cuda_result_name(drv, 12345), "CUDA_ERROR_UNRECOGNIZED");
  setenv("KYB_CUDA_DOUBLE_FAIL", "lock:CUDA_ERROR_TIMEOUT", 1);
  cleanup_error kyb_error *err = NULL;
  kyb_curesult r = 0;
  assert_int_equal(kyb_cuda_lock(drv, pid, 250, &r, &err), -1);
  char want[160];
  snprintf(want, sizeof(want),
           "cuCheckpointProcessLock(pid %d, timeout 250 ms): CUDA_ERROR_TIMEOUT (the operation "
           "timed out)",
           (int)pid);
  assert_string_equal(kyb_error_message(err), want);
  kyb_error_clear(&err);
  /* A code no table knows still says what it was. */
  setenv("KYB_CUDA_DOUBLE_FAIL", "checkpoint:4242", 1);
  assert_int_equal(kyb_cuda_checkpoint(drv, pid, &r, &err), -1);
  unsetenv("KYB_CUDA_DOUBLE_FAIL");
  assert_int_equal(r, 4242);
  assert_non_null(strstr(kyb_error_message(err), "CUDA_ERROR_UNRECOGNIZED 4242"));
  expect_state(drv, pid, KYB_CU_PROCESS_STATE_RUNNING);
  kyb_cuda_driver_close(drv);
}

static void test_remapping_needs_cuda_13(void **state) {
  (void)state;
  cleanup_pid pid_t pid = spawn_sleeper();
  char text[512];
  snprintf(text, sizeof(text), "%sproc %d CHECKPOINTED\n", two_gpus, (int)pid);
  assert_int_equal(cuda_world_set(&world, text), 0);
  setenv("KYB_CUDA_DOUBLE_VERSION", "12080", 1);
  kyb_cuda_driver *drv = open_double();
  assert_false(kyb_cuda_driver_can_remap(drv));
  cleanup_error kyb_error *err = NULL;
  kyb_cu_gpu_pair swap[2];
  assert_int_equal(kyb_cuda_uuid_parse(G0, &swap[0].old_uuid, &err), 0);
  assert_int_equal(kyb_cuda_uuid_parse(G1, &swap[0].new_uuid, &err), 0);
  swap[1].old_uuid = swap[0].new_uuid;
  swap[1].new_uuid = swap[0].old_uuid;
  kyb_curesult r = 0;
  assert_int_equal(kyb_cuda_restore(drv, pid, swap, 2, &r, &err), -1);
  assert_int_equal(r, KYB_CUDA_ERROR_NOT_SUPPORTED);
  assert_non_null(strstr(kyb_error_message(err), "needs CUDA 13.0 (driver r580) or newer"));
  kyb_error_clear(&err);
  /* An identity map is an in-place restore: sent as no map, so a 12.8
   * driver (which would refuse gpuPairs as non-zero reserved bytes) takes it. */
  kyb_cu_gpu_pair same[2] = {{swap[0].old_uuid, swap[0].old_uuid},
                             {swap[1].old_uuid, swap[1].old_uuid}};
  assert_int_equal(kyb_cuda_restore(drv, pid, same, 2, &r, &err), 0);
  unsetenv("KYB_CUDA_DOUBLE_VERSION");
  expect_state(drv, pid, KYB_CU_PROCESS_STATE_LOCKED);
  kyb_cuda_driver_close(drv);
}

static void test_uuid_text(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  kyb_cu_uuid u;
  char back[KYB_CUDA_UUID_STRLEN + 1];
  assert_int_equal(kyb_cuda_uuid_parse(G0, &u, &err), 0);
  kyb_cuda_uuid_format(&u, back);
  assert_string_equal(back, G0);
  assert_int_equal(kyb_cuda_uuid_parse("F45A5189-6446-EEA1-0596-804E908F0F9A", &u, &err), 0);
  kyb_cuda_uuid_format(&u, back);
  assert_string_equal(back, G0);
  const char *bad[] = {"",
                       "GPU-",
                       "GPU-f45a5189-6446-eea1-0596-804e908f0f9",
                       "GPU-f45a5189-6446-eea1-0596-804e908f0f9a0",
                       "GPU-f45a51896446-eea1-0596-804e908f0f9a",
                       "MIG-f45a5189-6446-eea1-0596-804e908f0f9a",
                       "GPU-g45a5189-6446-eea1-0596-804e908f0f9a"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(kyb_cuda_uuid_parse(bad[i], &u, &err), -1);
    assert_int_equal(kyb_error_code(err), EINVAL);
    kyb_error_clear(&err);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_absent_library_is_no_driver),
      cmocka_unit_test(test_broken_library_is_an_error),
      cmocka_unit_test(test_env_names_the_library),
      cmocka_unit_test(test_too_old_names_the_version_needed),
      cmocka_unit_test(test_missing_checkpoint_symbols),
      cmocka_unit_test(test_no_gpu_is_no_driver),
      cmocka_unit_test(test_lists_gpus),
      cmocka_unit_test(test_state_tells_cuda_from_other_processes),
      cmocka_unit_test(test_one_process_through_every_state),
      cmocka_unit_test(test_error_names_in_messages),
      cmocka_unit_test(test_remapping_needs_cuda_13),
      cmocka_unit_test(test_uuid_text),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

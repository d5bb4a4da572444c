/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of lib/cuda/group.c, gpumap.c and cgroup.c against the CUDA
 * driver TEST DOUBLE, with real child processes standing in for a
 * container's processes: lock-all-then-checkpoint-all order, rollback after
 * a lock timeout or a checkpoint failure (every process ends RUNNING),
 * rollback failures reported, restore with a full and a partial GPU map,
 * GPU model checks, and a container's pids from a cgroup tree. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "../doubles/cuda_double_test.h"
#include "cuda/cgroup.h"
#include "cuda/driver.h"
#include "cuda/gpumap.h"
#include "cuda/group.h"
#include "util/cleanup.h"

#define G0 "GPU-00000000-0000-0000-0000-0000000000a0"
#define G1 "GPU-00000000-0000-0000-0000-0000000000a1"
#define G2 "GPU-00000000-0000-0000-0000-0000000000a2"
#define G3 "GPU-00000000-0000-0000-0000-0000000000a3"
#define GPUS                                                                                       \
  "version 13000\n"                                                                                \
  "gpu " G0 " 150109880320 NVIDIA H200\n"                                                          \
  "gpu " G1 " 150109880320 NVIDIA H200\n"                                                          \
  "gpu " G2 " 150109880320 NVIDIA H200\n"                                                          \
  "gpu " G3 " 150109880320 NVIDIA H200\n"

static cuda_world world;
static char *double_lib;
static kyb_cuda_driver *drv;
static pid_t a, b, c; /* CUDA processes a and c, and b (not CUDA, or CUDA: per test) */

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

static int each_setup(void **state) {
  (void)state;
  drv = NULL;
  a = b = c = 0;
  return 0;
}

static int each_teardown(void **state) {
  (void)state;
  kyb_cuda_driver_close(drv);
  drv = NULL;
  kyb_killpidp(&a);
  kyb_killpidp(&b);
  kyb_killpidp(&c);
  unsetenv("KYB_CUDA_DOUBLE_FAIL");
  return 0;
}

/* Copies `in` to `out`, writing the pids of a, b, c for {a} {b} {c}. */
static void expand_pids(const char *in, char *out, size_t cap) {
  size_t used = 0;
  out[0] = '\0';
  for (const char *p = in; *p != '\0' && used + 1 < cap;) {
    if (p[0] == '{' && p[1] >= 'a' && p[1] <= 'c' && p[2] == '}') {
      pid_t v = p[1] == 'a' ? a : p[1] == 'b' ? b : c;
      int n = snprintf(out + used, cap - used, "%d", (int)v);
      used += n > 0 ? (size_t)n : 0;
      p += 3;
    } else {
      out[used++] = *p++;
      out[used] = '\0';
    }
  }
}

/* The double's call log, without state queries, cuInit and lock timeouts
 * (they depend on the clock), must read exactly `want` ({a} {b} {c}: pids). */
static void expect_calls(const char *want) {
  char expanded[2048];
  expand_pids(want, expanded, sizeof(expanded));
  cleanup_free char *calls = cuda_world_calls(&world, "getstate", "init");
  for (char *t; (t = strstr(calls, " timeout=")) != NULL;) {
    const char *rest = t + 9 + strspn(t + 9, "0123456789");
    memmove(t, rest, strlen(rest) + 1);
  }
  assert_string_equal(calls, expanded);
}

/* Three live processes and a double whose state file is GPUS + `procs`,
 * where {a} {b} {c} stand for the three pids. */
static int start(const char *procs) {
  a = spawn_sleeper();
  b = spawn_sleeper();
  c = spawn_sleeper();
  char text[1024] = GPUS;
  expand_pids(procs, text + strlen(text), sizeof(text) - strlen(text));
  unsetenv("KYB_CUDA_DOUBLE_FAIL");
  if (cuda_world_set(&world, text) < 0)
    return -1;
  cleanup_error kyb_error *err = NULL;
  return kyb_cuda_driver_open(double_lib, &drv, &err);
}

/* What the double itself holds for pid (not what the group believes). */
static kyb_cu_process_state driver_state(pid_t pid) {
  cleanup_error kyb_error *err = NULL;
  kyb_cu_process_state s = KYB_CU_PROCESS_STATE_FAILED;
  assert_int_equal(kyb_cuda_get_state(drv, pid, &s, NULL, &err), 0);
  return s;
}

static void assert_all_running(const kyb_cuda_group *g) {
  for (size_t i = 0; i < g->count; i++) {
    assert_int_equal(g->procs[i].state, KYB_CU_PROCESS_STATE_RUNNING);
    assert_int_equal(driver_state(g->procs[i].pid), KYB_CU_PROCESS_STATE_RUNNING);
  }
}

static void discover(kyb_cuda_group *g, size_t want) {
  pid_t pids[3] = {a, b, c};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_group_discover(drv, pids, 3, g, &err), 0);
  assert_int_equal(g->count, want);
}

static void test_lock_all_then_checkpoint_all(void **state) {
  (void)state;
  assert_int_equal(start("proc {a} RUNNING\nproc {c} RUNNING\n"), 0);
  setenv("KYB_CUDA_DOUBLE_FAIL", "checkpoint:delay=20", 1); /* slow enough to time */
  kyb_cuda_group g = {0};
  discover(&g, 2); /* b never initialised CUDA: skipped */
  assert_int_equal(g.procs[0].pid, a);
  assert_int_equal(g.procs[1].pid, c);
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_group_checkpoint(drv, &g, 5000, &err), 0);
  expect_calls("lock {a} CUDA_SUCCESS\nlock {c} CUDA_SUCCESS\n"
               "checkpoint {a} CUDA_SUCCESS\ncheckpoint {c} CUDA_SUCCESS");
  assert_int_equal(driver_state(a), KYB_CU_PROCESS_STATE_CHECKPOINTED);
  assert_int_equal(driver_state(c), KYB_CU_PROCESS_STATE_CHECKPOINTED);
  assert_true(g.procs[0].checkpoint_ms >= 20 && g.procs[1].checkpoint_ms >= 20);
  assert_true(g.times.checkpoint_ms >= 40);
  assert_true(g.times.lock_ms >= 0 && g.times.lock_ms < 5000);
  unsetenv("KYB_CUDA_DOUBLE_FAIL");
  assert_int_equal(kyb_cuda_group_restore(drv, &g, NULL, 0, &err), 0);
  assert_all_running(&g);
  assert_true(g.procs[1].restore_ms > 0 && g.procs[1].unlock_ms > 0);
  kyb_cuda_group_release(&g);
}

static void test_lock_timeout_unlocks_the_others(void **state) {
  (void)state;
  assert_int_equal(start("proc {a} RUNNING\nproc {b} RUNNING\nproc {c} RUNNING\n"), 0);
  char fault[64];
  snprintf(fault, sizeof(fault), "lock:pid=%d:timeout", (int)c);
  setenv("KYB_CUDA_DOUBLE_FAIL", fault, 1);
  kyb_cuda_group g = {0};
  discover(&g, 3);
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_group_checkpoint(drv, &g, 0, &err), -1);
  const char *msg = kyb_error_message(err);
  assert_non_null(strstr(msg, "GPU lock (rolled back: all 3 CUDA process(es) running again)"));
  assert_non_null(strstr(msg, "CUDA_ERROR_NOT_READY"));
  expect_calls("lock {a} CUDA_SUCCESS\nlock {b} CUDA_SUCCESS\nlock {c} CUDA_ERROR_NOT_READY\n"
               "unlock {a} CUDA_SUCCESS\nunlock {b} CUDA_SUCCESS");
  assert_int_equal(g.procs[2].last_result, KYB_CUDA_ERROR_NOT_READY);
  assert_all_running(&g);
  kyb_cuda_group_release(&g);
}

static void test_lock_budget_is_shared(void **state) {
  (void)state;
  assert_int_equal(start("proc {a} RUNNING\nproc {b} RUNNING\n"), 0);
  char fault[64];
  snprintf(fault, sizeof(fault), "lock:pid=%d:delay=200", (int)a);
  setenv("KYB_CUDA_DOUBLE_FAIL", fault, 1);
  kyb_cuda_group g = {0};
  discover(&g, 2);
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_group_checkpoint(drv, &g, 1000, &err), 0);
  /* The second lock gets what the first left of the 1000 ms (bounds only:
   * the clock decides the exact value). */
  cleanup_free char *calls = cuda_world_calls(&world, "getstate", "init");
  char prefix[64];
  snprintf(prefix, sizeof(prefix), "lock %d CUDA_SUCCESS timeout=", (int)b);
  const char *second = strstr(calls, prefix);
  assert_non_null(second);
  int budget = atoi(second + strlen(prefix));
  assert_true(budget > 0 && budget <= 800);
  assert_true(g.procs[0].lock_ms >= 200);
  unsetenv("KYB_CUDA_DOUBLE_FAIL");
  assert_int_equal(kyb_cuda_group_restore(drv, &g, NULL, 0, &err), 0);
  kyb_cuda_group_release(&g);
}

static void test_lock_budget_runs_out(void **state) {
  (void)state;
  assert_int_equal(start("proc {a} RUNNING\nproc {b} RUNNING\n"), 0);
  char fault[64];
  snprintf(fault, sizeof(fault), "lock:pid=%d:delay=300", (int)a);
  setenv("KYB_CUDA_DOUBLE_FAIL", fault, 1);
  kyb_cuda_group g = {0};
  discover(&g, 2);
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_group_checkpoint(drv, &g, 200, &err), -1);
  char want[96];
  snprintf(want, sizeof(want), "lock phase used its 200 ms before pid %d", (int)b);
  assert_non_null(strstr(kyb_error_message(err), want));
  expect_calls("lock {a} CUDA_SUCCESS\nunlock {a} CUDA_SUCCESS"); /* b never touched */
  assert_all_running(&g);
  kyb_cuda_group_release(&g);
}

static void test_discover_skips_gone_and_fails_on_doubt(void **state) {
  (void)state;
  assert_int_equal(start("proc {a} RUNNING\nproc {b} RUNNING\n"), 0);
  pid_t pids[3] = {a, unused_pid(), b};
  kyb_cuda_group g = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_group_discover(drv, pids, 3, &g, &err), 0);
  assert_int_equal(g.count, 2); /* the pid that does not exist is skipped */
  /* Any answer but "not a CUDA process" for a live process: we cannot tell,
   * and checkpointing it without its GPU state would lose that state. */
  char fault[64];
  snprintf(fault, sizeof(fault), "getstate:pid=%d:CUDA_ERROR_UNKNOWN", (int)b);
  setenv("KYB_CUDA_DOUBLE_FAIL", fault, 1);
  assert_int_equal(kyb_cuda_group_discover(drv, pids, 3, &g, &err), -1);
  char want[128];
  snprintf(want, sizeof(want),
           "find CUDA processes: cuCheckpointProcessGetState(pid %d): "
           "CUDA_ERROR_UNKNOWN",
           (int)b);
  assert_non_null(strstr(kyb_error_message(err), want));
  assert_int_equal(g.count, 0);
  kyb_cuda_group_release(&g);
}

static void test_checkpoint_failure_restores_the_first(void **state) {
  (void)state;
  assert_int_equal(start("proc {a} RUNNING\nproc {b} RUNNING\nproc {c} RUNNING\n"), 0);
  char fault[64];
  snprintf(fault, sizeof(fault), "checkpoint:pid=%d:CUDA_ERROR_OUT_OF_MEMORY", (int)b);
  setenv("KYB_CUDA_DOUBLE_FAIL", fault, 1);
  kyb_cuda_group g = {0};
  discover(&g, 3);
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_group_checkpoint(drv, &g, 1000, &err), -1);
  char want[256];
  snprintf(want, sizeof(want),
           "GPU checkpoint (rolled back: all 3 CUDA process(es) running again): "
           "cuCheckpointProcessCheckpoint(pid %d): CUDA_ERROR_OUT_OF_MEMORY (out of memory)",
           (int)b);
  assert_string_equal(kyb_error_message(err), want);
  /* a was checkpointed: restored, then every locked process unlocked. */
  expect_calls("lock {a} CUDA_SUCCESS\nlock {b} CUDA_SUCCESS\nlock {c} CUDA_SUCCESS\n"
               "checkpoint {a} CUDA_SUCCESS\ncheckpoint {b} CUDA_ERROR_OUT_OF_MEMORY\n"
               "restore {a} CUDA_SUCCESS pairs=0\n"
               "unlock {a} CUDA_SUCCESS\nunlock {b} CUDA_SUCCESS\nunlock {c} CUDA_SUCCESS");
  assert_all_running(&g);
  assert_true(g.times.rollback_ms > 0);
  kyb_cuda_group_release(&g);
}

static void test_rollback_failure_is_reported(void **state) {
  (void)state;
  assert_int_equal(start("proc {a} RUNNING\nproc {b} RUNNING\n"), 0);
  char fault[128];
  snprintf(fault, sizeof(fault), "checkpoint:pid=%d:CUDA_ERROR_OUT_OF_MEMORY,restore:pid=%d:999",
           (int)b, (int)a);
  setenv("KYB_CUDA_DOUBLE_FAIL", fault, 1);
  kyb_cuda_group g = {0};
  discover(&g, 2);
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_group_checkpoint(drv, &g, 0, &err), -1);
  const char *msg = kyb_error_message(err);
  char left[64];
  snprintf(left, sizeof(left), "not running: pid %d CHECKPOINTED", (int)a);
  assert_non_null(strstr(msg, "GPU checkpoint, and the rollback failed too"));
  assert_non_null(strstr(msg, "CUDA_ERROR_UNKNOWN"));       /* the rollback's failure */
  assert_non_null(strstr(msg, "CUDA_ERROR_OUT_OF_MEMORY")); /* the original one */
  assert_non_null(strstr(msg, left));
  assert_int_equal(g.procs[1].state, KYB_CU_PROCESS_STATE_RUNNING); /* b unlocked anyway */
  /* Once the fault is gone the same call finishes the rollback. */
  unsetenv("KYB_CUDA_DOUBLE_FAIL");
  kyb_error_clear(&err);
  assert_int_equal(kyb_cuda_group_restore(drv, &g, NULL, 0, &err), 0);
  assert_all_running(&g);
  kyb_cuda_group_release(&g);
}

static void test_refuses_a_process_not_running(void **state) {
  (void)state;
  assert_int_equal(start("proc {a} RUNNING\nproc {b} LOCKED\n"), 0);
  kyb_cuda_group g = {0};
  discover(&g, 2);
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_group_checkpoint(drv, &g, 0, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "is LOCKED, not RUNNING"));
  expect_calls(""); /* nothing touched: b is someone else's */
  kyb_cuda_group_release(&g);
}

/* Checkpoint a (which sees G0 and G1), then restore it with `pairs`. */
static int checkpoint_then_restore(kyb_cuda_group *g, const kyb_cu_gpu_pair *pairs, size_t n,
                                   kyb_error **err) {
  assert_int_equal(start("proc {a} RUNNING " G0 "," G1 "\n"), 0);
  discover(g, 1);
  assert_int_equal(kyb_cuda_group_checkpoint(drv, g, 0, err), 0);
  return kyb_cuda_group_restore(drv, g, pairs, n, err);
}

/* The recorded GPUs G0, G1 and the present G2, G3 of the same model. */
static void gpus(kyb_cuda_gpu rec[2], kyb_cuda_gpu now[2]) {
  const char *ids[4] = {G0, G1, G2, G3};
  kyb_cuda_gpu *all[4] = {&rec[0], &rec[1], &now[0], &now[1]};
  cleanup_error kyb_error *err = NULL;
  for (int i = 0; i < 4; i++) {
    memset(all[i], 0, sizeof(*all[i]));
    assert_int_equal(kyb_cuda_uuid_parse(ids[i], &all[i]->uuid, &err), 0);
    snprintf(all[i]->model, sizeof(all[i]->model), "NVIDIA H200");
    all[i]->memory_bytes = 150109880320ull;
  }
}

static void test_restore_with_full_map(void **state) {
  (void)state;
  kyb_cuda_gpu rec[2], now[2];
  gpus(rec, now);
  cleanup_error kyb_error *err = NULL;
  cleanup_free kyb_cu_gpu_pair *pairs = NULL;
  assert_int_equal(kyb_cuda_gpu_map(rec, 2, now, 2, &pairs, &err), 0);
  kyb_cuda_group g = {0};
  assert_int_equal(checkpoint_then_restore(&g, pairs, 2, &err), 0);
  assert_all_running(&g);
  cleanup_free char *st = cuda_world_state(&world);
  char want[128];
  snprintf(want, sizeof(want), "proc %d RUNNING " G2 "," G3 "\n", (int)a);
  assert_non_null(strstr(st, want)); /* the double moved it to G2, G3 */
  kyb_cuda_group_release(&g);
}

static void test_restore_with_partial_map_fails(void **state) {
  (void)state;
  kyb_cuda_gpu rec[2], now[2];
  gpus(rec, now);
  cleanup_error kyb_error *err = NULL;
  cleanup_free kyb_cu_gpu_pair *pairs = NULL;
  assert_int_equal(kyb_cuda_gpu_map(rec, 2, now, 2, &pairs, &err), 0);
  kyb_cuda_group g = {0};
  /* Only the first pair: what the H200 answered with INVALID_VALUE. */
  assert_int_equal(checkpoint_then_restore(&g, pairs, 1, &err), -1);
  const char *msg = kyb_error_message(err);
  char want[64];
  snprintf(want, sizeof(want), "not running: pid %d CHECKPOINTED", (int)a);
  assert_non_null(strstr(msg, "CUDA_ERROR_INVALID_VALUE"));
  assert_non_null(strstr(msg, "1 GPU pairs"));
  assert_non_null(strstr(msg, want));
  assert_int_equal(g.procs[0].last_result, KYB_CUDA_ERROR_INVALID_VALUE);
  assert_int_equal(driver_state(a), KYB_CU_PROCESS_STATE_CHECKPOINTED);
  /* The full map then brings it back. */
  kyb_error_clear(&err);
  assert_int_equal(kyb_cuda_group_restore(drv, &g, pairs, 2, &err), 0);
  assert_all_running(&g);
  kyb_cuda_group_release(&g);
}

static void test_gpu_map_rules(void **state) {
  (void)state;
  kyb_cuda_gpu rec[2], now[2];
  gpus(rec, now);
  cleanup_error kyb_error *err = NULL;
  kyb_cu_gpu_pair *pairs = NULL;
  /* A GPU still present maps onto itself, the other onto a free one. */
  kyb_cuda_gpu here[3] = {now[0], rec[1], now[1]};
  assert_int_equal(kyb_cuda_gpu_map(rec, 2, here, 3, &pairs, &err), 0);
  assert_memory_equal(&pairs[0].new_uuid, &now[0].uuid, 16);
  assert_memory_equal(&pairs[1].new_uuid, &rec[1].uuid, 16);
  free(pairs);
  /* Too few GPUs. */
  assert_int_equal(kyb_cuda_gpu_map(rec, 2, now, 1, &pairs, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "taken with 2 GPU(s) (2 x NVIDIA H200) and "
                                                 "only 1 are here (1 x NVIDIA H200)"));
  kyb_error_clear(&err);
  /* Another model. */
  snprintf(now[0].model, sizeof(now[0].model), "NVIDIA H100 80GB HBM3");
  snprintf(now[1].model, sizeof(now[1].model), "NVIDIA H100 80GB HBM3");
  assert_int_equal(kyb_cuda_gpu_map(rec, 1, now, 2, &pairs, &err), -1);
  assert_null(pairs);
  assert_non_null(strstr(kyb_error_message(err),
                         "GPU model mismatch: the checkpoint ran on " G0 " (NVIDIA H200)"));
  assert_non_null(strstr(kyb_error_message(err), "present: 2 x NVIDIA H100 80GB HBM3"));
  kyb_error_clear(&err);
  /* Same model, less memory. */
  gpus(rec, now);
  now[0].memory_bytes = now[1].memory_bytes = 1ull << 30;
  assert_int_equal(kyb_cuda_gpu_map(rec, 1, now, 2, &pairs, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "taken or has less memory"));
  kyb_error_clear(&err);
  /* Nothing recorded: nothing to map. */
  assert_int_equal(kyb_cuda_gpu_map(rec, 0, now, 2, &pairs, &err), 0);
  assert_null(pairs);
}

static void write_text(const char *dir, const char *name, const char *text) {
  cleanup_free char *path = kyb_path_join(dir, name);
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_write_file_atomic(path, text, strlen(text), 0644, &err), 0);
}

static void test_cgroup_pids(void **state) {
  (void)state;
  cleanup_free char *top = kyb_path_join(world.dir, "cg");
  cleanup_free char *sub = kyb_path_join(top, "child/grandchild");
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_mkdir_p(sub, 0755, &err), 0);
  write_text(top, "cgroup.procs", "30\n10\n");
  write_text(top, "child/cgroup.procs", "");
  write_text(top, "child/grandchild/cgroup.procs", "20\n10\n");
  cleanup_free pid_t *pids = NULL;
  size_t n = 0;
  assert_int_equal(kyb_cgroup_pids(top, &pids, &n, &err), 0);
  assert_int_equal(n, 3);
  assert_int_equal(pids[0], 10);
  assert_int_equal(pids[1], 20);
  assert_int_equal(pids[2], 30);
  write_text(top, "child/cgroup.procs", "12x\n");
  free(pids);
  pids = NULL;
  assert_int_equal(kyb_cgroup_pids(top, &pids, &n, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "unexpected content"));
  kyb_error_clear(&err);
  cleanup_free char *missing = kyb_path_join(world.dir, "no-such-cgroup");
  assert_int_equal(kyb_cgroup_pids(missing, &pids, &n, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_lock_all_then_checkpoint_all, each_setup, each_teardown),
      cmocka_unit_test_setup_teardown(test_lock_timeout_unlocks_the_others, each_setup,
                                      each_teardown),
      cmocka_unit_test_setup_teardown(test_lock_budget_is_shared, each_setup, each_teardown),
      cmocka_unit_test_setup_teardown(test_lock_budget_runs_out, each_setup, each_teardown),
      cmocka_unit_test_setup_teardown(test_discover_skips_gone_and_fails_on_doubt, each_setup,
                                      each_teardown),
      cmocka_unit_test_setup_teardown(test_checkpoint_failure_restores_the_first, each_setup,
                                      each_teardown),
      cmocka_unit_test_setup_teardown(test_rollback_failure_is_reported, each_setup, each_teardown),
      cmocka_unit_test_setup_teardown(test_refuses_a_process_not_running, each_setup,
                                      each_teardown),
      cmocka_unit_test_setup_teardown(test_restore_with_full_map, each_setup, each_teardown),
      cmocka_unit_test_setup_teardown(test_restore_with_partial_map_fails, each_setup,
                                      each_teardown),
      cmocka_unit_test(test_gpu_map_rules),
      cmocka_unit_test(test_cgroup_pids),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

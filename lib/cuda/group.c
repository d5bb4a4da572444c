/* SPDX-License-Identifier: Apache-2.0 */
/*
 * All CUDA processes of a container, locked, checkpointed, restored and
 * unlocked together, with rollback.  See group.h for the order and the
 * rollback rule.
 */
#define KYB_LOG_MODULE "cuda"

#include "cuda/group.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/cleanup.h"
#include "util/log.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* After a failed call the driver knows the state better than our guess
 * (a timed-out lock leaves RUNNING, a failed checkpoint may leave LOCKED or
 * FAILED); ask, and keep the guess if even that fails. */
static void refresh_state(kyb_cuda_driver *drv, kyb_cuda_proc *p) {
  cleanup_error kyb_error *ignored = NULL;
  kyb_cu_process_state s = p->state;
  if (kyb_cuda_get_state(drv, p->pid, &s, NULL, &ignored) == 0)
    p->state = s;
}

void kyb_cuda_group_release(kyb_cuda_group *group) {
  free(group->procs);
  memset(group, 0, sizeof(*group));
}

int kyb_cuda_group_discover(kyb_cuda_driver *drv, const pid_t *pids, size_t npids,
                            kyb_cuda_group *group, kyb_error **err) {
  kyb_cuda_group_release(group);
  if (npids == 0)
    return 0;
  cleanup_free kyb_cuda_proc *procs = calloc(npids, sizeof(*procs));
  if (procs == NULL)
    return kyb_error_set(err, ENOMEM, "find CUDA processes among %zu", npids);
  size_t n = 0;
  for (size_t i = 0; i < npids; i++) {
    kyb_cu_process_state state = KYB_CU_PROCESS_STATE_RUNNING;
    kyb_curesult r = KYB_CUDA_SUCCESS;
    int rc = kyb_cuda_get_state(drv, pids[i], &state, &r, err);
    if (rc == KYB_CUDA_NOT_CUDA)
      continue;
    if (rc < 0) {
      if (kill(pids[i], 0) < 0 && errno == ESRCH) {
        /* Exited between listing and asking: nothing left to checkpoint. */
        kyb_error_clear(err);
        continue;
      }
      return kyb_error_wrap(err, "find CUDA processes");
    }
    procs[n].pid = pids[i];
    procs[n].state = state;
    procs[n].last_result = r;
    n++;
  }
  log_debug("%zu of %zu processes are CUDA processes", n, npids);
  if (n > 0)
    group->procs = steal_ptr(procs);
  group->count = n;
  return 0;
}

/* Restores every CHECKPOINTED process, then unlocks every LOCKED one; goes
 * on past failures.  Returns the number of processes that failed, with the
 * first failure in *err. */
static size_t restore_and_unlock(kyb_cuda_driver *drv, kyb_cuda_group *g,
                                 const kyb_cu_gpu_pair *pairs, size_t npairs, double *restore_ms,
                                 double *unlock_ms, kyb_error **err) {
  size_t failed = 0;
  double t0 = now_ms();
  for (size_t i = 0; i < g->count; i++) {
    kyb_cuda_proc *p = &g->procs[i];
    if (p->state != KYB_CU_PROCESS_STATE_CHECKPOINTED)
      continue;
    cleanup_error kyb_error *e = NULL;
    double t = now_ms();
    int rc = kyb_cuda_restore(drv, p->pid, pairs, npairs, &p->last_result, &e);
    p->restore_ms = now_ms() - t;
    if (rc == 0) {
      p->state = KYB_CU_PROCESS_STATE_LOCKED;
      continue;
    }
    refresh_state(drv, p);
    if (failed++ == 0)
      *err = steal_ptr(e);
  }
  double t1 = now_ms();
  *restore_ms = t1 - t0;
  for (size_t i = 0; i < g->count; i++) {
    kyb_cuda_proc *p = &g->procs[i];
    if (p->state != KYB_CU_PROCESS_STATE_LOCKED)
      continue;
    cleanup_error kyb_error *e = NULL;
    double t = now_ms();
    int rc = kyb_cuda_unlock(drv, p->pid, &p->last_result, &e);
    p->unlock_ms = now_ms() - t;
    if (rc == 0) {
      p->state = KYB_CU_PROCESS_STATE_RUNNING;
      continue;
    }
    refresh_state(drv, p);
    if (failed++ == 0)
      *err = steal_ptr(e);
  }
  *unlock_ms = now_ms() - t1;
  return failed;
}

/* "not running: pid 101 CHECKPOINTED, pid 102 LOCKED", or "all running". */
static char *not_running(const kyb_cuda_group *g) {
  char *list = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&list, &len);
  if (f == NULL)
    return NULL;
  size_t n = 0;
  for (size_t i = 0; i < g->count; i++)
    if (g->procs[i].state != KYB_CU_PROCESS_STATE_RUNNING)
      fprintf(f, "%spid %d %s", n++ > 0 ? ", " : "not running: ", (int)g->procs[i].pid,
              kyb_cuda_state_name(g->procs[i].state));
  if (n == 0)
    fputs("all running", f);
  fclose(f);
  return list;
}

/* Undoes a failed checkpoint and puts the outcome around the original
 * error in *err.  Always returns -1. */
static int roll_back(kyb_cuda_driver *drv, kyb_cuda_group *g, const char *phase, kyb_error **err) {
  log_warn("GPU %s failed; rolling back %zu CUDA process(es)", phase, g->count);
  double t0 = now_ms();
  double restore_ms = 0, unlock_ms = 0;
  cleanup_error kyb_error *rb_err = NULL;
  size_t failed = restore_and_unlock(drv, g, NULL, 0, &restore_ms, &unlock_ms, &rb_err);
  g->times.rollback_ms = now_ms() - t0;
  if (failed == 0)
    return kyb_error_wrap(err, "GPU %s (rolled back: all %zu CUDA process(es) running again)",
                          phase, g->count);
  cleanup_free char *left = not_running(g);
  log_error_chain(rb_err, "GPU rollback failed (%s)", left ? left : "?");
  return kyb_error_wrap(err, "GPU %s, and the rollback failed too (%s; %s)", phase,
                        kyb_error_message(rb_err), left ? left : "?");
}

static int lock_all(kyb_cuda_driver *drv, kyb_cuda_group *g, unsigned int timeout_ms,
                    kyb_error **err) {
  double t0 = now_ms();
  for (size_t i = 0; i < g->count; i++) {
    kyb_cuda_proc *p = &g->procs[i];
    unsigned int budget = 0;
    if (timeout_ms > 0) {
      /* One budget for the whole phase: three processes must not get three
       * times the pause the caller allowed. */
      double left = (double)timeout_ms - (now_ms() - t0);
      if (left < 1) {
        g->times.lock_ms = now_ms() - t0;
        kyb_error_set(err, 0, "lock phase used its %u ms before pid %d", timeout_ms, (int)p->pid);
        return roll_back(drv, g, "lock", err);
      }
      budget = (unsigned int)left;
    }
    double t = now_ms();
    int rc = kyb_cuda_lock(drv, p->pid, budget, &p->last_result, err);
    p->lock_ms = now_ms() - t;
    if (rc < 0) {
      refresh_state(drv, p);
      g->times.lock_ms = now_ms() - t0;
      return roll_back(drv, g, "lock", err);
    }
    p->state = KYB_CU_PROCESS_STATE_LOCKED;
  }
  g->times.lock_ms = now_ms() - t0;
  return 0;
}

static int checkpoint_all(kyb_cuda_driver *drv, kyb_cuda_group *g, kyb_error **err) {
  double t0 = now_ms();
  for (size_t i = 0; i < g->count; i++) {
    kyb_cuda_proc *p = &g->procs[i];
    double t = now_ms();
    int rc = kyb_cuda_checkpoint(drv, p->pid, &p->last_result, err);
    p->checkpoint_ms = now_ms() - t;
    if (rc < 0) {
      refresh_state(drv, p);
      g->times.checkpoint_ms = now_ms() - t0;
      return roll_back(drv, g, "checkpoint", err);
    }
    p->state = KYB_CU_PROCESS_STATE_CHECKPOINTED;
  }
  g->times.checkpoint_ms = now_ms() - t0;
  return 0;
}

int kyb_cuda_group_checkpoint(kyb_cuda_driver *drv, kyb_cuda_group *group,
                              unsigned int lock_timeout_ms, kyb_error **err) {
  /* Refuse before touching anything: a process someone else locked or
   * checkpointed is not ours to roll back. */
  for (size_t i = 0; i < group->count; i++)
    if (group->procs[i].state != KYB_CU_PROCESS_STATE_RUNNING)
      return kyb_error_set(err, EBUSY,
                           "GPU checkpoint: pid %d is %s, not RUNNING (another checkpoint in "
                           "progress, or an earlier one not rolled back)",
                           (int)group->procs[i].pid, kyb_cuda_state_name(group->procs[i].state));
  memset(&group->times, 0, sizeof(group->times));
  if (lock_all(drv, group, lock_timeout_ms, err) < 0)
    return -1;
  if (checkpoint_all(drv, group, err) < 0)
    return -1;
  log_debug("GPU checkpoint of %zu CUDA process(es): lock %.1f ms, checkpoint %.1f ms",
            group->count, group->times.lock_ms, group->times.checkpoint_ms);
  return 0;
}

int kyb_cuda_group_restore(kyb_cuda_driver *drv, kyb_cuda_group *group,
                           const kyb_cu_gpu_pair *pairs, size_t npairs, kyb_error **err) {
  size_t failed = restore_and_unlock(drv, group, pairs, npairs, &group->times.restore_ms,
                                     &group->times.unlock_ms, err);
  if (failed == 0) {
    log_debug("GPU restore of %zu CUDA process(es): restore %.1f ms, unlock %.1f ms", group->count,
              group->times.restore_ms, group->times.unlock_ms);
    return 0;
  }
  cleanup_free char *left = not_running(group);
  return kyb_error_wrap(err, "GPU restore: %zu failure(s), %s", failed, left ? left : "?");
}

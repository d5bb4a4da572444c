/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The GPU steps of the checkpoint operation.  See gpu.h for where they sit
 * in the operation and what the caller owes after each.
 */
#define KYB_LOG_MODULE "checkpoint"

#include "ops/gpu.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda/driver.h"
#include "cuda/gpumap.h"
#include "cuda/group.h"
#include "cuda/visible.h"
#include "util/cleanup.h"
#include "util/log.h"

struct kyb_ops_gpu {
  kyb_cuda_driver *drv;
  kyb_cuda_group group; /* the container's CUDA processes */
  kyb_progress_fn progress;
  void *progress_ud;
  /* Processes this checkpoint locked or checkpointed may still need a
   * restore + unlock; false once one was tried, or the task was killed. */
  bool owed;
};

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static uint64_t whole_ms(double ms) {
  return ms > 0 ? (uint64_t)(ms + 0.5) : 0;
}

static void progress(const kyb_ops_gpu *g, const char *phase, bool done, double ms) {
  if (g->progress != NULL)
    g->progress(g->progress_ud, phase, done, whole_ms(ms));
}

void kyb_ops_gpu_free(kyb_ops_gpu *g) {
  if (g == NULL)
    return;
  kyb_cuda_group_release(&g->group);
  kyb_cuda_driver_close(g->drv);
  free(g);
}

size_t kyb_ops_gpu_count(const kyb_ops_gpu *g) {
  return g != NULL ? g->group.count : 0;
}

void kyb_ops_gpu_forget(kyb_ops_gpu *g) {
  if (g != NULL)
    g->owed = false;
}

int kyb_ops_gpu_task_pids(kyb_ctd_client *ctd, const char *container_id, pid_t **pids,
                          size_t *count, kyb_error **err) {
  *pids = NULL;
  *count = 0;
  kyb_ctd_pid_list l = {0};
  if (kyb_ctd_task_list_pids(ctd, container_id, &l, err) < 0)
    return kyb_error_wrap(err, "list the processes of container %s", container_id);
  pid_t *out = l.n > 0 ? calloc(l.n, sizeof(*out)) : NULL;
  if (l.n > 0 && out == NULL) {
    kyb_ctd_pid_list_clear(&l);
    return kyb_error_set(err, ENOMEM, "processes of container %s", container_id);
  }
  size_t n = 0;
  for (size_t i = 0; i < l.n; i++)
    if (l.items[i].pid > 0 && l.items[i].pid <= INT_MAX)
      out[n++] = (pid_t)l.items[i].pid;
  kyb_ctd_pid_list_clear(&l);
  *pids = out;
  *count = n;
  return 0;
}

/* "12, 345" (every process), or "12 CHECKPOINTED, 345 LOCKED" (only those
 * not RUNNING, with their state).  Heap string, NULL on ENOMEM. */
static char *pid_list(const kyb_cuda_group *grp, bool not_running_only) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (f == NULL)
    return NULL;
  size_t n = 0;
  for (size_t i = 0; i < grp->count; i++) {
    const kyb_cuda_proc *p = &grp->procs[i];
    if (not_running_only && p->state == KYB_CU_PROCESS_STATE_RUNNING)
      continue;
    fprintf(f, "%s%d", n++ > 0 ? ", " : "", (int)p->pid);
    if (not_running_only)
      fprintf(f, " %s", kyb_cuda_state_name(p->state));
  }
  fclose(f);
  return text;
}

static size_t count_not_running(const kyb_cuda_group *grp) {
  size_t n = 0;
  for (size_t i = 0; i < grp->count; i++)
    n += grp->procs[i].state != KYB_CU_PROCESS_STATE_RUNNING;
  return n;
}

/* The container's GPUs among those the driver lists: what its spec gives
 * it (cuda/visible.h), read now that the driver is initialised. */
static int container_gpus(kyb_ops_gpu *g, const kyb_ops_gpu_opts *opts, kyb_cuda_gpu **out,
                          size_t *n, kyb_error **err) {
  cleanup_free kyb_cuda_gpu *all = NULL;
  size_t nall = 0;
  if (kyb_cuda_list_gpus(g->drv, &all, &nall, err) < 0)
    return kyb_error_wrap(err, "list GPUs");
  kyb_cuda_visible v = {0};
  if (kyb_cuda_visible_from_spec(opts->spec, opts->nvidia_proc, &v, err) < 0)
    return kyb_error_wrap(err, "the container's GPUs");
  int r = kyb_cuda_visible_filter(&v, all, nall, out, n, err);
  cleanup_free char *which = kyb_cuda_visible_describe(&v);
  if (r == 0 && *n == 0)
    r = kyb_error_set(err, ENODEV,
                      "the container has CUDA processes, yet its spec gives it %s: cannot tell "
                      "which GPUs to record",
                      which ? which : "no GPU");
  else if (r == 0)
    log_info("recording %zu of the driver's %zu GPU(s): the container has %s", *n, nall,
             which ? which : "?");
  kyb_cuda_visible_clear(&v);
  return r;
}

/* The manifest's "gpus": the container's GPUs, each with the container's
 * CUDA processes (docs/image-format.md).  The driver does not say which GPU
 * a process uses, so every entry names all of them. */
static int record_gpus(kyb_ops_gpu *g, const kyb_ops_gpu_opts *opts, kyb_image_builder *b,
                       kyb_error **err) {
  cleanup_free kyb_cuda_gpu *gpus = NULL;
  size_t n = 0;
  if (container_gpus(g, opts, &gpus, &n, err) < 0)
    return -1;
  cleanup_json json_t *pids = json_array();
  cleanup_json json_t *arr = json_array();
  if (pids == NULL || arr == NULL)
    return kyb_error_set(err, ENOMEM, "manifest gpus");
  for (size_t i = 0; i < g->group.count; i++)
    if (json_array_append_new(pids, json_integer(g->group.procs[i].pid)) < 0)
      return kyb_error_set(err, ENOMEM, "manifest gpus");
  for (size_t i = 0; i < n; i++) {
    char uuid[KYB_CUDA_UUID_STRLEN + 1];
    kyb_cuda_uuid_format(&gpus[i].uuid, uuid);
    json_t *o = json_pack("{s:s, s:s, s:I, s:i, s:O}", "uuid", uuid, "model", gpus[i].model,
                          "memoryBytes", (json_int_t)gpus[i].memory_bytes, "cudaVersion",
                          kyb_cuda_driver_version(g->drv), "pids", pids);
    if (o == NULL || json_array_append_new(arr, o) < 0)
      return kyb_error_set(err, ENOMEM, "manifest gpus");
  }
  return kyb_image_builder_set_gpus(b, arr, err);
}

/* A lock that ran out of time leaves the process RUNNING with
 * CUDA_ERROR_NOT_READY (docs/gpu.md); say which knob that was. */
static bool lock_timed_out(const kyb_cuda_group *grp) {
  for (size_t i = 0; i < grp->count; i++)
    if (grp->procs[i].last_result == KYB_CUDA_ERROR_NOT_READY &&
        grp->procs[i].state == KYB_CU_PROCESS_STATE_RUNNING)
      return true;
  return false;
}

/* Lock all, checkpoint all; the group rolls its own failure back. */
static int lock_and_checkpoint(kyb_ops_gpu *g, unsigned int timeout_ms, kyb_image_builder *b,
                               kyb_error **err) {
  progress(g, "gpu_checkpoint", false, 0);
  double t0 = now_ms();
  /* The group refuses, untouched, a process someone else locked or
   * checkpointed: not ours to bring back either. */
  g->owed = count_not_running(&g->group) == 0;
  if (kyb_cuda_group_checkpoint(g->drv, &g->group, timeout_ms, err) < 0) {
    if (lock_timed_out(&g->group))
      kyb_error_wrap(err, "GPU lock timeout of %u ms ran out", timeout_ms);
    return -1;
  }
  const kyb_cuda_phase_times *t = &g->group.times;
  progress(g, "gpu_checkpoint", true, now_ms() - t0);
  log_info("GPU checkpoint of %zu CUDA process(es): lock %.1f ms, checkpoint %.1f ms",
           g->group.count, t->lock_ms, t->checkpoint_ms);
  if (kyb_image_builder_set_timing(b, "gpu_lock", whole_ms(t->lock_ms), err) < 0 ||
      kyb_image_builder_set_timing(b, "gpu_checkpoint", whole_ms(t->checkpoint_ms), err) < 0)
    return -1;
  return 0;
}

int kyb_ops_gpu_checkpoint(const kyb_ops_gpu_opts *opts, const pid_t *pids, size_t npids,
                           kyb_image_builder *builder, kyb_ops_gpu **out, kyb_error **err) {
  *out = NULL;
  kyb_cuda_driver *drv = NULL;
  cleanup_error kyb_error *derr = NULL;
  int rc = kyb_cuda_driver_open(opts->driver_path, &drv, &derr);
  if (rc == KYB_CUDA_NO_DRIVER) {
    const char *why = kyb_error_message(derr);
    if (strncmp(why, "no CUDA driver: ", 16) == 0)
      why += 16; /* said once is enough */
    log_info("no CUDA driver: GPU steps skipped (%s)", why);
    return 0;
  }
  if (rc < 0) {
    *err = steal_ptr(derr);
    return kyb_error_wrap(err, "cannot tell whether the container holds GPU state");
  }
  kyb_ops_gpu *g = calloc(1, sizeof(*g));
  if (g == NULL) {
    kyb_cuda_driver_close(drv);
    return kyb_error_set(err, ENOMEM, "GPU steps");
  }
  g->drv = drv;
  g->progress = opts->progress;
  g->progress_ud = opts->progress_ud;
  if (kyb_cuda_group_discover(drv, pids, npids, &g->group, err) < 0) {
    kyb_ops_gpu_free(g);
    return -1;
  }
  if (g->group.count == 0) {
    log_debug("no CUDA process among the container's %zu process(es)", npids);
    kyb_ops_gpu_free(g);
    return 0;
  }
  cleanup_free char *list = pid_list(&g->group, false);
  log_info("%zu CUDA process(es) in the container: pid %s", g->group.count, list ? list : "?");
  if (record_gpus(g, opts, builder, err) < 0) {
    kyb_ops_gpu_free(g);
    return -1;
  }
  *out = g; /* from here on the caller's rollback covers these processes */
  unsigned int timeout =
      opts->lock_timeout_ms > 0 ? opts->lock_timeout_ms : KYB_OPS_GPU_DEFAULT_LOCK_TIMEOUT_MS;
  return lock_and_checkpoint(g, timeout, builder, err);
}

int kyb_ops_gpu_restore(kyb_ops_gpu *g, kyb_error **err) {
  if (g == NULL || !g->owed)
    return 0;
  g->owed = false; /* one attempt; what it leaves behind is in the error */
  progress(g, "gpu_restore", false, 0);
  double t0 = now_ms();
  if (kyb_cuda_group_restore(g->drv, &g->group, NULL, 0, err) < 0)
    return -1; /* the caller reports it: the image is published, the workload is not back */
  double ms = now_ms() - t0;
  progress(g, "gpu_restore", true, ms);
  log_info("GPU restore of %zu CUDA process(es) in %.1f ms: restore %.1f ms, unlock %.1f ms",
           g->group.count, ms, g->group.times.restore_ms, g->group.times.unlock_ms);
  return 0;
}

int kyb_ops_gpu_rollback(kyb_ops_gpu *g, bool task_running, kyb_error **err) {
  if (g == NULL || !g->owed)
    return 0;
  size_t left = count_not_running(&g->group);
  if (left == 0) {
    g->owed = false; /* the group's own rollback brought everything back */
    return 0;
  }
  cleanup_free char *which = pid_list(&g->group, true);
  if (!task_running) {
    log_error("rollback: the container is still frozen; GPU state left behind: pid %s",
              which ? which : "?");
    return kyb_error_wrap(err,
                          "rollback failed too (the container is frozen, so the GPU state of pid "
                          "%s could not be restored) after",
                          which ? which : "?");
  }
  cleanup_error kyb_error *rerr = NULL;
  g->owed = false;
  if (kyb_cuda_group_restore(g->drv, &g->group, NULL, 0, &rerr) < 0) {
    log_error_chain(rerr, "rollback: GPU restore failed");
    return kyb_error_wrap(err, "GPU rollback failed too (%s) after", kyb_error_message(rerr));
  }
  log_info("rollback: GPU state of pid %s restored, %zu CUDA process(es) running again",
           which ? which : "?", left);
  return 0;
}

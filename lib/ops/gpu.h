/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The GPU steps of the checkpoint operation (DESIGN.md, checkpoint flow
 * steps 4 and 6), on top of lib/cuda's process group:
 *
 *   before the pause:  driver -> the container's CUDA processes -> lock all
 *                      -> checkpoint all (VRAM into host memory), so CRIU
 *                      can dump them; GPU facts and the timings "gpu_lock"
 *                      and "gpu_checkpoint" go into the manifest;
 *   after the publish: with the task running again, restore all -> unlock
 *                      all (kyb_ops_gpu_restore);
 *   on any failure:    once the task runs again, the same restore + unlock
 *                      (kyb_ops_gpu_rollback) -- a workload is never left
 *                      locked or checkpointed on the GPU;
 *   task killed:       its GPU state ends with it (kyb_ops_gpu_forget).
 *
 * No driver on the node (libcuda.so.1 absent, or it sees no GPU) is not an
 * error: one info line, and the checkpoint goes on without GPU steps.  A
 * driver that is there but unusable (too old, broken) is an error: without
 * it nobody can tell whether a process holds GPU state that a CPU-only
 * checkpoint would lose.
 *
 * The driver calls on a process run through the process's own threads, so
 * a restore or an unlock is only tried while the task is not frozen.
 */
#ifndef KYB_OPS_GPU_H
#define KYB_OPS_GPU_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "containerd/client.h"
#include "image/image.h"
#include "ops/checkpoint.h"
#include "util/error.h"

/* The lock phase's budget when the caller gives none. */
#define KYB_OPS_GPU_DEFAULT_LOCK_TIMEOUT_MS 10000u

typedef struct {
  const char *driver_path; /* NULL: $KYBERNATE_LIBCUDA, else libcuda.so.1 */
  /* The container's OCI spec: only the GPUs it gives the container are
   * recorded (cuda/visible.h); NULL: every GPU the driver lists. */
  const json_t *spec;
  const char *nvidia_proc;      /* NULL: $KYBERNATE_NVIDIA_PROC, else /proc/driver/nvidia */
  unsigned int lock_timeout_ms; /* the whole lock phase; 0 = the default */
  kyb_progress_fn progress;     /* phases "gpu_checkpoint" and "gpu_restore"; may be NULL */
  void *progress_ud;
} kyb_ops_gpu_opts;

/* What one checkpoint did on the GPU: the driver and the CUDA processes. */
typedef struct kyb_ops_gpu kyb_ops_gpu;

/* The host pids of a container's task (containerd ListPids).  *pids is a
 * heap array (NULL when *count is 0). */
int kyb_ops_gpu_task_pids(kyb_ctd_client *ctd, const char *container_id, pid_t **pids,
                          size_t *count, kyb_error **err);

/* Before the pause: opens the driver, finds the CUDA processes among
 * `pids`, records the container's GPUs in the manifest (`builder`): those
 * opts->spec gives it, every GPU the driver lists when it names none; a GPU
 * it names that the driver does not list, or no GPU at all, is an error.
 * Then locks all and checkpoints all, with the timings "gpu_lock" and
 * "gpu_checkpoint".
 *
 * Returns 0 with *out NULL when there is nothing to do on the GPU (no
 * driver, or no CUDA process); 0 with *out set when processes were
 * checkpointed: the caller then owes them kyb_ops_gpu_restore(),
 * kyb_ops_gpu_rollback() or kyb_ops_gpu_forget().  On -1, *out may be set
 * too (a process the group's own rollback could not bring back): the
 * caller's rollback tries again.  *out is released with kyb_ops_gpu_free(). */
int kyb_ops_gpu_checkpoint(const kyb_ops_gpu_opts *opts, const pid_t *pids, size_t npids,
                           kyb_image_builder *builder, kyb_ops_gpu **out, kyb_error **err);

/* After the publish, with the task running again: restores every
 * checkpointed process in place and unlocks it, and logs the time ("gpu_restore";
 * not a manifest timing: the manifest is already written).  On failure the
 * error names the processes left behind.  NULL does nothing. */
int kyb_ops_gpu_restore(kyb_ops_gpu *g, kyb_error **err);

/* Rollback of a failed checkpoint: the same restore + unlock, for every
 * process this checkpoint moved and that is not RUNNING again yet.  Only
 * when `task_running` (a frozen process cannot be restored): otherwise the
 * processes are left as they are and that is added to *err.  A failure is
 * added to *err, the original failure, too.  NULL, or nothing to undo,
 * does nothing.  Returns 0 when nothing is left behind, -1 when something
 * is (and *err says what). */
int kyb_ops_gpu_rollback(kyb_ops_gpu *g, bool task_running, kyb_error **err);

/* The task was killed: its processes' GPU state ends with them; nothing is
 * left to restore.  NULL does nothing. */
void kyb_ops_gpu_forget(kyb_ops_gpu *g);

/* How many CUDA processes were found (0 for NULL). */
size_t kyb_ops_gpu_count(const kyb_ops_gpu *g);

/* Closes the driver.  NULL is ignored. */
void kyb_ops_gpu_free(kyb_ops_gpu *g);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GPU checkpoint and restore of all CUDA processes of one container, the
 * part the agent and the runtime call.
 *
 * Order (DESIGN.md, checkpoint flow step 4): lock EVERY CUDA process first,
 * then checkpoint each -- no process may run CUDA work against a peer whose
 * memory is already gone.  Restore is the mirror: restore every process,
 * then unlock them.
 *
 * Rollback rule: a workload is never left locked or checkpointed on the
 * GPU.  When a lock or checkpoint fails, exactly the processes this call
 * moved are brought back (restore in place, then unlock) before the call
 * returns; the error names the original failure, and the rollback's own
 * failure too if it had one.  The same rollback is kyb_cuda_group_restore()
 * with no GPU map, for a caller whose later step (CRIU) failed.
 *
 * Each kyb_cuda_proc records the state this module last saw, the last
 * CUresult, and how long its lock/checkpoint/restore/unlock calls took;
 * the group records each phase's wall time.
 */
#ifndef KYB_CUDA_GROUP_H
#define KYB_CUDA_GROUP_H

#include <stddef.h>
#include <sys/types.h>

#include "cuda/abi.h"
#include "cuda/driver.h"
#include "util/error.h"

typedef struct {
  pid_t pid;
  kyb_cu_process_state state; /* as last seen by this module */
  kyb_curesult last_result;   /* of its last driver call */
  double lock_ms;             /* duration of its last call of each kind; 0 if none */
  double checkpoint_ms;
  double restore_ms;
  double unlock_ms;
} kyb_cuda_proc;

typedef struct {
  double lock_ms; /* wall time of each phase over all processes; 0 if not run */
  double checkpoint_ms;
  double restore_ms;
  double unlock_ms;
  double rollback_ms; /* time spent undoing a failed checkpoint */
} kyb_cuda_phase_times;

typedef struct {
  kyb_cuda_proc *procs; /* the CUDA processes only, in the order given */
  size_t count;
  kyb_cuda_phase_times times;
} kyb_cuda_group;

/* Keeps the CUDA processes among `pids` (a container's processes): those
 * the driver reports a state for.  A process that answers
 * CUDA_ERROR_NOT_INITIALIZED is not a CUDA process and one that is gone is
 * skipped; any other answer fails the call, because checkpointing a CUDA
 * process without its GPU state would lose it.  *group must be zeroed or
 * released; it holds no CUDA process when none is found. */
int kyb_cuda_group_discover(kyb_cuda_driver *drv, const pid_t *pids, size_t npids,
                            kyb_cuda_group *group, kyb_error **err);

/* Locks every process (the whole phase within lock_timeout_ms; 0 = no
 * limit), then checkpoints every process.  All must be RUNNING.  On failure
 * the processes moved are rolled back before returning -1. */
int kyb_cuda_group_checkpoint(kyb_cuda_driver *drv, kyb_cuda_group *group,
                              unsigned int lock_timeout_ms, kyb_error **err);

/* Restores every CHECKPOINTED process (remapping GPUs with the map when
 * npairs > 0, see gpumap.h), then unlocks every LOCKED one.  It goes on past
 * a failing process so that as many as possible end RUNNING, and returns -1
 * naming the first failure and every process left behind; calling it again
 * (e.g. with another map) retries only those. */
int kyb_cuda_group_restore(kyb_cuda_driver *drv, kyb_cuda_group *group,
                           const kyb_cu_gpu_pair *pairs, size_t npairs, kyb_error **err);

/* Frees the process list and zeroes the group. */
void kyb_cuda_group_release(kyb_cuda_group *group);

#endif

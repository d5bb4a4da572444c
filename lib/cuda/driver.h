/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CUDA driver, loaded at run time: one handle object holding the
 * dlopen()ed library and its entry points, and thin calls on one process
 * each (state, lock, checkpoint, restore, unlock, restore thread) plus the
 * GPU facts a manifest records (UUID, model, memory).
 *
 * Contract:
 *   - No link-time dependency on libcuda: kyb_cuda_driver_open() finds it
 *     with dlopen.  No driver library (or one that sees no GPU) is a
 *     distinct, non-error answer, KYB_CUDA_NO_DRIVER, so callers skip the GPU
 *     steps with one log line.  A driver without the checkpoint API is an
 *     error that names the version needed.
 *   - Every failing driver call becomes a kyb_error that names the call, the
 *     pid and the driver's error name and text:
 *         cuCheckpointProcessLock(pid 1234): CUDA_ERROR_NOT_READY (device not ready)
 *     and, for callers that must act on it, the raw CUresult through
 *     `*result` where a function offers it.
 *   - The handle holds no process-wide state beyond what dlopen keeps; it is
 *     not thread-safe for concurrent open/close, and calls through one handle
 *     are as thread-safe as the driver itself.
 */
#ifndef KYB_CUDA_DRIVER_H
#define KYB_CUDA_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cuda/abi.h"
#include "util/error.h"

/* The library dlopen() loads when no path is given and KYBERNATE_LIBCUDA is
 * not set in the environment. */
#define KYB_CUDA_DEFAULT_LIBRARY "libcuda.so.1"
#define KYB_CUDA_LIBRARY_ENV "KYBERNATE_LIBCUDA"

/* kyb_cuda_driver_open() answer when no usable driver is there. */
#define KYB_CUDA_NO_DRIVER 1

/* kyb_cuda_get_state() answer for a process that is not a CUDA process. */
#define KYB_CUDA_NOT_CUDA 1

typedef struct kyb_cuda_driver kyb_cuda_driver;

/* Loads the driver: `path`, else $KYBERNATE_LIBCUDA, else libcuda.so.1.
 * Checks cuDriverGetVersion >= 12.8 and that every checkpoint entry point is
 * exported, then calls cuInit(0) (restore needs an initialised driver in the
 * caller unless persistence mode is on).
 * Returns 0 with *out set; KYB_CUDA_NO_DRIVER when the library is not there
 * or cuInit answers CUDA_ERROR_NO_DEVICE -- *out is NULL and err holds the
 * reason, for the caller's one log line (release it); -1 with err on any
 * other failure (present but unusable: wrong file, too old, symbols
 * missing, cuInit failed). */
int kyb_cuda_driver_open(const char *path, kyb_cuda_driver **out, kyb_error **err);

/* Unloads the driver; NULL is ignored. */
void kyb_cuda_driver_close(kyb_cuda_driver *drv);

/* cuDriverGetVersion's answer, e.g. 13000 for CUDA 13.0. */
int kyb_cuda_driver_version(const kyb_cuda_driver *drv);

/* The path or name the driver was loaded from. */
const char *kyb_cuda_driver_path(const kyb_cuda_driver *drv);

/* True when this driver takes gpuPairs on restore (CUDA >= 13.0). */
bool kyb_cuda_driver_can_remap(const kyb_cuda_driver *drv);

/* "CUDA_ERROR_TIMEOUT": the driver's name for a result, or our own for the
 * codes abi.h lists, or "CUDA_ERROR_<n>" for others.  Never NULL; the text
 * is static or owned by the driver. */
const char *kyb_cuda_result_name(const kyb_cuda_driver *drv, kyb_curesult r);

/* "the launch timed out ...": the driver's description, or "" if it has none. */
const char *kyb_cuda_result_text(const kyb_cuda_driver *drv, kyb_curesult r);

/* "RUNNING", "LOCKED", "CHECKPOINTED", "FAILED" or "UNKNOWN". */
const char *kyb_cuda_state_name(kyb_cu_process_state state);

/* One GPU as the manifest records it and remapping compares it. */
typedef struct {
  int ordinal;           /* the driver's device ordinal in this process */
  kyb_cu_uuid uuid;      /* cuDeviceGetUuid_v2 */
  char model[96];        /* cuDeviceGetName, e.g. "NVIDIA H200" */
  uint64_t memory_bytes; /* cuDeviceTotalMem_v2 */
} kyb_cuda_gpu;

/* Lists the GPUs this process sees (all of them, in driver order).
 * *out is a heap array of *count entries (NULL when there are none). */
int kyb_cuda_list_gpus(kyb_cuda_driver *drv, kyb_cuda_gpu **out, size_t *count, kyb_error **err);

/* Single-process calls.  Each returns 0 on success and -1 with err filled
 * otherwise; when `result` is not NULL it receives the driver's CUresult
 * (KYB_CUDA_SUCCESS on success) so a caller can tell e.g. ILLEGAL_STATE from
 * a timeout without parsing the message. */

/* 0 with *state set for a CUDA process; KYB_CUDA_NOT_CUDA (no error) when
 * the driver answers CUDA_ERROR_NOT_INITIALIZED, i.e. the process never
 * initialised CUDA; -1 with err on anything else. */
int kyb_cuda_get_state(kyb_cuda_driver *drv, pid_t pid, kyb_cu_process_state *state,
                       kyb_curesult *result, kyb_error **err);

/* RUNNING -> LOCKED.  timeout_ms 0 waits without limit; on timeout the
 * process stays RUNNING. */
int kyb_cuda_lock(kyb_cuda_driver *drv, pid_t pid, unsigned int timeout_ms, kyb_curesult *result,
                  kyb_error **err);

/* LOCKED -> CHECKPOINTED: device memory moves into the process's host memory. */
int kyb_cuda_checkpoint(kyb_cuda_driver *drv, pid_t pid, kyb_curesult *result, kyb_error **err);

/* CHECKPOINTED -> LOCKED.  With npairs > 0 the GPUs are remapped; the map
 * must pair every GPU the process could see (see gpumap.h), and needs a CUDA
 * 13.0 driver.  A map that pairs every GPU with itself is sent as no map, so
 * an in-place restore works on 12.8 too. */
int kyb_cuda_restore(kyb_cuda_driver *drv, pid_t pid, const kyb_cu_gpu_pair *pairs, size_t npairs,
                     kyb_curesult *result, kyb_error **err);

/* LOCKED -> RUNNING. */
int kyb_cuda_unlock(kyb_cuda_driver *drv, pid_t pid, kyb_curesult *result, kyb_error **err);

/* The thread the driver restores through (CRIU must leave it running). */
int kyb_cuda_restore_tid(kyb_cuda_driver *drv, pid_t pid, pid_t *tid, kyb_curesult *result,
                         kyb_error **err);

#endif

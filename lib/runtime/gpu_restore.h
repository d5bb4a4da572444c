/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GPU restore of a restored container: DESIGN.md restore flow step 3, the
 * part after `runc restore --detach` (docs/runtime.md "GPU state").
 *
 * An image holds GPU state exactly when its manifest's `gpus` is not empty
 * (docs/gpu.md).  For such an image, in two steps:
 *
 *   1. kyb_rt_gpu_prepare(), BEFORE runc restore (cheap, nothing to undo):
 *      read the recorded GPUs (untrusted input), open the driver (none
 *      there is an error: GPU state cannot be restored without one), take
 *      the GPUs the NEW container has (its spec, cuda/visible.h: its
 *      /dev/nvidiaN devices, else NVIDIA_VISIBLE_DEVICES, else every GPU
 *      the driver lists) and build the GPU map onto exactly those
 *      (kyb_cuda_gpu_map: the same GPUs when they are among them, else the
 *      same model with at least as much memory).  Too few GPUs, another
 *      model, or a remap on a driver older than CUDA 13.0 fail here with
 *      the reason, naming the checkpoint's GPUs and the container's.
 *   2. kyb_rt_gpu_restore(), AFTER runc restore: the container's processes
 *      from its cgroup (kyb_cgroup_pids), the CUDA ones among them
 *      (kyb_cuda_group_discover: CRIU brought them back CHECKPOINTED), then
 *      restore all with the map, then unlock all (kyb_cuda_group_restore).
 *      A container without any CUDA process although the image has GPU
 *      state is an error.  The caller removes the container on failure.
 *
 * The container's cgroup is read from /proc/<init pid>/cgroup of the restored
 * init (runc's pid file): where CRIU actually put the processes, which is
 * what finding them needs -- under cgroup v2 the "0::" line, under v1 the
 * pids (else memory, freezer, cpu, cpuacct, devices) hierarchy.
 */
#ifndef KYB_RUNTIME_GPU_RESTORE_H
#define KYB_RUNTIME_GPU_RESTORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util/error.h"

/* Where cgroup file systems are mounted. */
#define KYB_RT_CGROUP_MOUNT "/sys/fs/cgroup"

/* The most GPUs a manifest may list (outside input). */
#define KYB_RT_GPU_MAX 64

typedef struct kyb_rt_gpu kyb_rt_gpu;

typedef struct {
  size_t procs;      /* CUDA processes restored */
  size_t remapped;   /* GPUs that moved (0: an in-place restore) */
  double restore_ms; /* wall time of the restore phase over all processes */
  double unlock_ms;  /* ... and of the unlock phase */
  double total_ms;   /* cgroup listing, discovery, restore and unlock */
} kyb_rt_gpu_times;

/* Step 1.  No GPU state (`gpus` missing or empty): 0 with *out NULL.
 * spec: the new container's OCI spec (NULL: every GPU the driver lists).
 * driver_path NULL: $KYBERNATE_LIBCUDA, else libcuda.so.1; nvidia_proc
 * NULL: $KYBERNATE_NVIDIA_PROC, else /proc/driver/nvidia. */
int kyb_rt_gpu_prepare(const json_t *manifest, const json_t *spec, const char *driver_path,
                       const char *nvidia_proc, kyb_rt_gpu **out, kyb_error **err);

/* Step 2, on the directory whose cgroup.procs (and those below it) list the
 * container's processes.  The times are filled as far as it got. */
int kyb_rt_gpu_restore(kyb_rt_gpu *g, const char *cgroup_dir, kyb_rt_gpu_times *times,
                       kyb_error **err);

/* Closes the driver; NULL is ignored. */
void kyb_rt_gpu_free(kyb_rt_gpu *g);

/* The cgroup directory of process `pid` under the cgroup mount `mount`
 * (NULL: KYB_RT_CGROUP_MOUNT), from /proc/<pid>/cgroup as above; heap
 * string in *out.  `proc` NULL means "/proc" (tests pass their own). */
int kyb_rt_pid_cgroup_dir(const char *proc, const char *mount, pid_t pid, char **out,
                          kyb_error **err);

/* Reads runc's pid file (a decimal pid, outside input). */
int kyb_rt_read_pid_file(const char *path, pid_t *out, kyb_error **err);

#endif

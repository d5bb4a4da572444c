/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lib/cuda/abi.h against NVIDIA's own cuda.h: the project declares the
 * driver ABI itself (no toolkit needed to build), so where a toolkit header
 * is installed this file proves, at compile time, that every structure the
 * driver reads through our pointers has the same size and field offsets and
 * every constant the same value.  A mismatch fails the build.  Running it
 * prints one TAP line.
 */
#include <cuda.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cuda/abi.h"

#define SAME_SIZE(ours, theirs) _Static_assert(sizeof(ours) == sizeof(theirs), #ours " size")
#define SAME_OFFSET(ours, f, theirs, g)                                                            \
  _Static_assert(offsetof(ours, f) == offsetof(theirs, g), #ours "." #f " offset")
#define SAME_VALUE(ours, theirs) _Static_assert((int)(ours) == (int)(theirs), #ours " value")

#if CUDA_VERSION < 12080
#error "cuda.h older than CUDA 12.8 has no checkpoint API to compare against"
#endif

SAME_SIZE(kyb_curesult, CUresult);
SAME_SIZE(kyb_cu_process_state, CUprocessState);
SAME_SIZE(kyb_cu_device, CUdevice);
SAME_SIZE(kyb_cu_uuid, CUuuid);

SAME_SIZE(kyb_cu_lock_args, CUcheckpointLockArgs);
SAME_OFFSET(kyb_cu_lock_args, timeout_ms, CUcheckpointLockArgs, timeoutMs);
SAME_OFFSET(kyb_cu_lock_args, reserved0, CUcheckpointLockArgs, reserved0);
SAME_OFFSET(kyb_cu_lock_args, reserved1, CUcheckpointLockArgs, reserved1);
SAME_SIZE(kyb_cu_checkpoint_args, CUcheckpointCheckpointArgs);
SAME_SIZE(kyb_cu_restore_args, CUcheckpointRestoreArgs);
SAME_SIZE(kyb_cu_unlock_args, CUcheckpointUnlockArgs);
#if CUDA_VERSION >= 13000
SAME_SIZE(kyb_cu_gpu_pair, CUcheckpointGpuPair);
SAME_OFFSET(kyb_cu_gpu_pair, old_uuid, CUcheckpointGpuPair, oldUuid);
SAME_OFFSET(kyb_cu_gpu_pair, new_uuid, CUcheckpointGpuPair, newUuid);
SAME_OFFSET(kyb_cu_restore_args, gpu_pairs, CUcheckpointRestoreArgs, gpuPairs);
SAME_OFFSET(kyb_cu_restore_args, gpu_pairs_count, CUcheckpointRestoreArgs, gpuPairsCount);
#endif

SAME_VALUE(KYB_CU_PROCESS_STATE_RUNNING, CU_PROCESS_STATE_RUNNING);
SAME_VALUE(KYB_CU_PROCESS_STATE_LOCKED, CU_PROCESS_STATE_LOCKED);
SAME_VALUE(KYB_CU_PROCESS_STATE_CHECKPOINTED, CU_PROCESS_STATE_CHECKPOINTED);
SAME_VALUE(KYB_CU_PROCESS_STATE_FAILED, CU_PROCESS_STATE_FAILED);

SAME_VALUE(KYB_CUDA_SUCCESS, CUDA_SUCCESS);
SAME_VALUE(KYB_CUDA_ERROR_INVALID_VALUE, CUDA_ERROR_INVALID_VALUE);
SAME_VALUE(KYB_CUDA_ERROR_OUT_OF_MEMORY, CUDA_ERROR_OUT_OF_MEMORY);
SAME_VALUE(KYB_CUDA_ERROR_NOT_INITIALIZED, CUDA_ERROR_NOT_INITIALIZED);
SAME_VALUE(KYB_CUDA_ERROR_DEINITIALIZED, CUDA_ERROR_DEINITIALIZED);
SAME_VALUE(KYB_CUDA_ERROR_NO_DEVICE, CUDA_ERROR_NO_DEVICE);
SAME_VALUE(KYB_CUDA_ERROR_INVALID_DEVICE, CUDA_ERROR_INVALID_DEVICE);
SAME_VALUE(KYB_CUDA_ERROR_OPERATING_SYSTEM, CUDA_ERROR_OPERATING_SYSTEM);
SAME_VALUE(KYB_CUDA_ERROR_ILLEGAL_STATE, CUDA_ERROR_ILLEGAL_STATE);
SAME_VALUE(KYB_CUDA_ERROR_NOT_READY, CUDA_ERROR_NOT_READY);
SAME_VALUE(KYB_CUDA_ERROR_NOT_SUPPORTED, CUDA_ERROR_NOT_SUPPORTED);
SAME_VALUE(KYB_CUDA_ERROR_TIMEOUT, CUDA_ERROR_TIMEOUT);
SAME_VALUE(KYB_CUDA_ERROR_UNKNOWN, CUDA_ERROR_UNKNOWN);

/* The entry points we bind by their _v2 names are the ones cuda.h's macros
 * select; compare the symbol names the preprocessor produces. */
#define STR2(x) #x
#define STR(x) STR2(x)

int main(void) {
  const char *uuid_sym = STR(cuDeviceGetUuid);
  const char *mem_sym = STR(cuDeviceTotalMem);
  int ok = strcmp(uuid_sym, KYB_CU_SYM_DEVICE_GET_UUID) == 0 &&
           strcmp(mem_sym, KYB_CU_SYM_DEVICE_TOTAL_MEM) == 0;
  printf("1..1\n%s 1 - lib/cuda/abi.h matches cuda.h %d.%d (%s, %s)\n", ok ? "ok" : "not ok",
         CUDA_VERSION / 1000, CUDA_VERSION % 1000 / 10, uuid_sym, mem_sym);
  return ok ? 0 : 1;
}

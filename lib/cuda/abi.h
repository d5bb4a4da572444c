/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The slice of the CUDA driver ABI Kybernate calls, declared with the
 * project's own names so nothing here needs NVIDIA's cuda.h at build time
 * (the library runs on nodes without a GPU and loads libcuda.so.1 with
 * dlopen).
 *
 * Contract: every type below must match the real driver's layout byte for
 * byte, because the driver reads these structures through the pointers we
 * hand it.  The static assertions pin the sizes and offsets; the test double
 * build (tests/doubles/meson.build) also compiles abi_check.c against the
 * real cuda.h when one is installed and compares every size, offset and
 * constant.  Where NVIDIA's headers differ between releases only in how they
 * name reserved bytes, the layout here is the common one (see docs/gpu.md).
 *
 * Versions: the checkpoint functions appeared in CUDA 12.8 (driver r570);
 * gpuPairs/gpuPairsCount in the restore arguments appeared in CUDA 13.0
 * (driver r580) -- in 12.8/12.9 those bytes are reserved and must be zero.
 */
#ifndef KYB_CUDA_ABI_H
#define KYB_CUDA_ABI_H

#include <stddef.h>
#include <stdint.h>

/* CUresult: an enum in cuda.h, passed and returned as a C int. */
typedef int kyb_curesult;

/* The CUresult values Kybernate names (cuda.h values, CUDA 12.8 .. 13.x). */
enum {
  KYB_CUDA_SUCCESS = 0,
  KYB_CUDA_ERROR_INVALID_VALUE = 1,
  KYB_CUDA_ERROR_OUT_OF_MEMORY = 2,
  KYB_CUDA_ERROR_NOT_INITIALIZED = 3,
  KYB_CUDA_ERROR_DEINITIALIZED = 4,
  KYB_CUDA_ERROR_NO_DEVICE = 100,
  KYB_CUDA_ERROR_INVALID_DEVICE = 101,
  KYB_CUDA_ERROR_OPERATING_SYSTEM = 304,
  KYB_CUDA_ERROR_ILLEGAL_STATE = 401,
  KYB_CUDA_ERROR_NOT_READY = 600,
  KYB_CUDA_ERROR_NOT_SUPPORTED = 801,
  KYB_CUDA_ERROR_TIMEOUT = 909,
  KYB_CUDA_ERROR_UNKNOWN = 999,
};

/* cuDriverGetVersion() values: 1000 * major + 10 * minor. */
enum {
  KYB_CUDA_VERSION_CHECKPOINT = 12080, /* cuCheckpointProcess* exist */
  KYB_CUDA_VERSION_GPU_PAIRS = 13000,  /* restore can remap GPUs */
};

/* CUprocessState (an enum, so an int in the ABI). */
typedef enum {
  KYB_CU_PROCESS_STATE_RUNNING = 0,
  KYB_CU_PROCESS_STATE_LOCKED = 1,
  KYB_CU_PROCESS_STATE_CHECKPOINTED = 2,
  KYB_CU_PROCESS_STATE_FAILED = 3,
} kyb_cu_process_state;

typedef int kyb_cu_device; /* CUdevice: an ordinal */

typedef struct {
  unsigned char bytes[16]; /* CUuuid: char bytes[16] in cuda.h */
} kyb_cu_uuid;

/* CUcheckpointLockArgs */
typedef struct {
  unsigned int timeout_ms; /* timeoutMs; 0 = wait without limit */
  unsigned int reserved0;
  uint64_t reserved1[7];
} kyb_cu_lock_args;

/* CUcheckpointCheckpointArgs */
typedef struct {
  uint64_t reserved[8];
} kyb_cu_checkpoint_args;

/* CUcheckpointGpuPair */
typedef struct {
  kyb_cu_uuid old_uuid; /* the GPU the process was checkpointed on */
  kyb_cu_uuid new_uuid; /* the GPU to restore it onto */
} kyb_cu_gpu_pair;

/* CUcheckpointRestoreArgs.  CUDA 13.0-13.2 spell the tail as
 * `char reserved[44]; cuuint64_t reserved1;`, 13.3 as `char reserved[52]`,
 * later releases put a padding word and a custom-storage pointer there: all
 * of them keep gpuPairs at 0, gpuPairsCount at 8, 64 bytes in all, and the
 * rest zero.  12.8/12.9 declare the whole structure as reserved. */
typedef struct {
  kyb_cu_gpu_pair *gpu_pairs;
  unsigned int gpu_pairs_count;
  unsigned int reserved0;
  uint64_t reserved1[6];
} kyb_cu_restore_args;

/* CUcheckpointUnlockArgs */
typedef struct {
  uint64_t reserved[8];
} kyb_cu_unlock_args;

_Static_assert(sizeof(kyb_curesult) == 4, "CUresult is a 4-byte enum");
_Static_assert(sizeof(kyb_cu_process_state) == 4, "CUprocessState is a 4-byte enum");
_Static_assert(sizeof(kyb_cu_uuid) == 16, "CUuuid is 16 bytes");
_Static_assert(sizeof(kyb_cu_lock_args) == 64, "CUcheckpointLockArgs is 64 bytes");
_Static_assert(offsetof(kyb_cu_lock_args, timeout_ms) == 0, "timeoutMs at 0");
_Static_assert(sizeof(kyb_cu_checkpoint_args) == 64, "CUcheckpointCheckpointArgs is 64 bytes");
_Static_assert(sizeof(kyb_cu_gpu_pair) == 32, "CUcheckpointGpuPair is 32 bytes");
_Static_assert(offsetof(kyb_cu_gpu_pair, new_uuid) == 16, "newUuid at 16");
_Static_assert(sizeof(kyb_cu_restore_args) == 64, "CUcheckpointRestoreArgs is 64 bytes");
_Static_assert(offsetof(kyb_cu_restore_args, gpu_pairs) == 0, "gpuPairs at 0");
_Static_assert(offsetof(kyb_cu_restore_args, gpu_pairs_count) == 8, "gpuPairsCount at 8");
_Static_assert(sizeof(kyb_cu_unlock_args) == 64, "CUcheckpointUnlockArgs is 64 bytes");

/* Function types of the driver entry points, by their exported symbol. */
typedef kyb_curesult (*kyb_cu_init_fn)(unsigned int flags);
typedef kyb_curesult (*kyb_cu_driver_get_version_fn)(int *version);
typedef kyb_curesult (*kyb_cu_get_error_name_fn)(kyb_curesult error, const char **name);
typedef kyb_curesult (*kyb_cu_get_error_string_fn)(kyb_curesult error, const char **text);
typedef kyb_curesult (*kyb_cu_device_get_count_fn)(int *count);
typedef kyb_curesult (*kyb_cu_device_get_fn)(kyb_cu_device *dev, int ordinal);
typedef kyb_curesult (*kyb_cu_device_get_uuid_fn)(kyb_cu_uuid *uuid, kyb_cu_device dev);
typedef kyb_curesult (*kyb_cu_device_get_name_fn)(char *name, int len, kyb_cu_device dev);
typedef kyb_curesult (*kyb_cu_device_total_mem_fn)(size_t *bytes, kyb_cu_device dev);
typedef kyb_curesult (*kyb_cu_process_get_state_fn)(int pid, kyb_cu_process_state *state);
typedef kyb_curesult (*kyb_cu_process_get_restore_tid_fn)(int pid, int *tid);
typedef kyb_curesult (*kyb_cu_process_lock_fn)(int pid, kyb_cu_lock_args *args);
typedef kyb_curesult (*kyb_cu_process_checkpoint_fn)(int pid, kyb_cu_checkpoint_args *args);
typedef kyb_curesult (*kyb_cu_process_restore_fn)(int pid, kyb_cu_restore_args *args);
typedef kyb_curesult (*kyb_cu_process_unlock_fn)(int pid, kyb_cu_unlock_args *args);

/* Exported symbol names.  cuda.h maps cuDeviceGetUuid and cuDeviceTotalMem
 * to their _v2 entry points by macro; the unversioned symbols are older
 * ABIs (cuDeviceTotalMem took an unsigned int *), so we bind the _v2 ones. */
#define KYB_CU_SYM_DEVICE_GET_UUID "cuDeviceGetUuid_v2"
#define KYB_CU_SYM_DEVICE_TOTAL_MEM "cuDeviceTotalMem_v2"

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loading the CUDA driver with dlopen and calling it on one process at a
 * time.  See driver.h for the contract.
 *
 * Why dlopen rather than linking: the same binaries run on nodes without a
 * GPU, and tests load a test double through exactly this code path
 * ($KYBERNATE_LIBCUDA or the path argument).
 */
#define KYB_LOG_MODULE "cuda"

#include "cuda/driver.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/log.h"

struct kyb_cuda_driver {
  void *dl;
  char *path;
  int version;
  kyb_cu_init_fn init;
  kyb_cu_driver_get_version_fn driver_get_version;
  kyb_cu_get_error_name_fn get_error_name;
  kyb_cu_get_error_string_fn get_error_string;
  kyb_cu_device_get_count_fn device_get_count;
  kyb_cu_device_get_fn device_get;
  kyb_cu_device_get_uuid_fn device_get_uuid;
  kyb_cu_device_get_name_fn device_get_name;
  kyb_cu_device_total_mem_fn device_total_mem;
  kyb_cu_process_get_state_fn get_state;
  kyb_cu_process_get_restore_tid_fn get_restore_tid;
  kyb_cu_process_lock_fn lock;
  kyb_cu_process_checkpoint_fn checkpoint;
  kyb_cu_process_restore_fn restore;
  kyb_cu_process_unlock_fn unlock;
};

/* Our own names for the codes we expect, for drivers whose cuGetErrorName
 * fails and for messages built before the driver is bound. */
static const struct {
  kyb_curesult code;
  const char *name;
} known_results[] = {
    {KYB_CUDA_SUCCESS, "CUDA_SUCCESS"},
    {KYB_CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE"},
    {KYB_CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY"},
    {KYB_CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED"},
    {KYB_CUDA_ERROR_DEINITIALIZED, "CUDA_ERROR_DEINITIALIZED"},
    {KYB_CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE"},
    {KYB_CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE"},
    {KYB_CUDA_ERROR_OPERATING_SYSTEM, "CUDA_ERROR_OPERATING_SYSTEM"},
    {KYB_CUDA_ERROR_ILLEGAL_STATE, "CUDA_ERROR_ILLEGAL_STATE"},
    {KYB_CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY"},
    {KYB_CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED"},
    {KYB_CUDA_ERROR_TIMEOUT, "CUDA_ERROR_TIMEOUT"},
    {KYB_CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN"},
};

const char *kyb_cuda_result_name(const kyb_cuda_driver *drv, kyb_curesult r) {
  if (drv != NULL && drv->get_error_name != NULL) {
    const char *name = NULL;
    if (drv->get_error_name(r, &name) == KYB_CUDA_SUCCESS && name != NULL)
      return name;
  }
  for (size_t i = 0; i < sizeof(known_results) / sizeof(known_results[0]); i++)
    if (known_results[i].code == r)
      return known_results[i].name;
  return "CUDA_ERROR_UNRECOGNIZED";
}

const char *kyb_cuda_result_text(const kyb_cuda_driver *drv, kyb_curesult r) {
  if (drv != NULL && drv->get_error_string != NULL) {
    const char *text = NULL;
    if (drv->get_error_string(r, &text) == KYB_CUDA_SUCCESS && text != NULL)
      return text;
  }
  return "";
}

const char *kyb_cuda_state_name(kyb_cu_process_state state) {
  switch (state) {
  case KYB_CU_PROCESS_STATE_RUNNING:
    return "RUNNING";
  case KYB_CU_PROCESS_STATE_LOCKED:
    return "LOCKED";
  case KYB_CU_PROCESS_STATE_CHECKPOINTED:
    return "CHECKPOINTED";
  case KYB_CU_PROCESS_STATE_FAILED:
    return "FAILED";
  }
  return "UNKNOWN";
}

/* Fills err with "<what>: CUDA_ERROR_X (text)" (plus the code when the name
 * is not one the driver knows) and hands the result to the caller. */
__attribute__((format(printf, 5, 6))) static int cuda_fail(const kyb_cuda_driver *drv,
                                                           kyb_curesult r, kyb_curesult *result,
                                                           kyb_error **err, const char *fmt, ...) {
  if (result != NULL)
    *result = r;
  cleanup_free char *what = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&what, fmt, ap);
  va_end(ap);
  if (n < 0)
    return kyb_error_set(err, ENOMEM, "CUDA error %d", r);
  const char *name = kyb_cuda_result_name(drv, r);
  const char *text = kyb_cuda_result_text(drv, r);
  char code[32] = "";
  if (strcmp(name, "CUDA_ERROR_UNRECOGNIZED") == 0)
    snprintf(code, sizeof(code), " %d", r);
  if (text[0] == '\0')
    return kyb_error_set(err, 0, "%s: %s%s", what, name, code);
  return kyb_error_set(err, 0, "%s: %s%s (%s)", what, name, code, text);
}

static void set_ok(kyb_curesult *result) {
  if (result != NULL)
    *result = KYB_CUDA_SUCCESS;
}

/* dlopen's message is the only account of why loading failed; tell "not
 * installed" (skip the GPU steps) from "installed but broken" (an error). */
static bool library_absent(const char *name, const char *dl_message) {
  if (strchr(name, '/') != NULL)
    return access(name, F_OK) != 0 && errno == ENOENT;
  return dl_message != NULL && strstr(dl_message, "No such file or directory") != NULL;
}

static void *bind_symbol(void *dl, const char *name) {
  dlerror();
  return dlsym(dl, name);
}

/* POSIX guarantees object and function pointers share a representation;
 * storing through a void ** is how dlsym's own manual page does it. */
#define BIND(drv, field, name, err)                                                                \
  do {                                                                                             \
    void *sym_ = bind_symbol((drv)->dl, (name));                                                   \
    if (sym_ == NULL) {                                                                            \
      missing_symbol((drv), (name), (err));                                                        \
      return -1;                                                                                   \
    }                                                                                              \
    *(void **)&(drv)->field = sym_;                                                                \
  } while (0)

static void missing_symbol(const kyb_cuda_driver *drv, const char *name, kyb_error **err) {
  kyb_error_set(err, 0,
                "CUDA driver %s (CUDA %d.%d) lacks %s: Kybernate needs a driver with the "
                "checkpoint API, CUDA 12.8 (driver r570) or newer",
                drv->path, drv->version / 1000, drv->version % 1000 / 10, name);
}

/* Binds every entry point after cuDriverGetVersion; fails naming the first
 * one missing.  cuDeviceGetUuid and cuDeviceTotalMem by their _v2 names:
 * see abi.h. */
static int bind_all(kyb_cuda_driver *drv, kyb_error **err) {
  BIND(drv, init, "cuInit", err);
  BIND(drv, get_error_name, "cuGetErrorName", err);
  BIND(drv, get_error_string, "cuGetErrorString", err);
  BIND(drv, device_get_count, "cuDeviceGetCount", err);
  BIND(drv, device_get, "cuDeviceGet", err);
  BIND(drv, device_get_uuid, KYB_CU_SYM_DEVICE_GET_UUID, err);
  BIND(drv, device_get_name, "cuDeviceGetName", err);
  BIND(drv, device_total_mem, KYB_CU_SYM_DEVICE_TOTAL_MEM, err);
  BIND(drv, get_state, "cuCheckpointProcessGetState", err);
  BIND(drv, get_restore_tid, "cuCheckpointProcessGetRestoreThreadId", err);
  BIND(drv, lock, "cuCheckpointProcessLock", err);
  BIND(drv, checkpoint, "cuCheckpointProcessCheckpoint", err);
  BIND(drv, restore, "cuCheckpointProcessRestore", err);
  BIND(drv, unlock, "cuCheckpointProcessUnlock", err);
  return 0;
}

static int check_version(kyb_cuda_driver *drv, kyb_error **err) {
  void *sym = bind_symbol(drv->dl, "cuDriverGetVersion");
  if (sym == NULL)
    return kyb_error_set(err, 0, "%s is not a CUDA driver library (no cuDriverGetVersion)",
                         drv->path);
  *(void **)&drv->driver_get_version = sym;
  kyb_curesult r = drv->driver_get_version(&drv->version);
  if (r != KYB_CUDA_SUCCESS)
    return cuda_fail(NULL, r, NULL, err, "cuDriverGetVersion (%s)", drv->path);
  if (drv->version < KYB_CUDA_VERSION_CHECKPOINT)
    return kyb_error_set(err, 0,
                         "CUDA driver %s supports CUDA %d.%d: the checkpoint API needs CUDA 12.8 "
                         "(driver r570) or newer",
                         drv->path, drv->version / 1000, drv->version % 1000 / 10);
  return 0;
}

int kyb_cuda_driver_open(const char *path, kyb_cuda_driver **out, kyb_error **err) {
  *out = NULL;
  const char *name = path;
  if (name == NULL || name[0] == '\0')
    name = getenv(KYB_CUDA_LIBRARY_ENV);
  if (name == NULL || name[0] == '\0')
    name = KYB_CUDA_DEFAULT_LIBRARY;

  kyb_cuda_driver *drv = calloc(1, sizeof(*drv));
  if (drv == NULL || (drv->path = strdup(name)) == NULL) {
    free(drv);
    return kyb_error_set(err, ENOMEM, "load CUDA driver %s", name);
  }
  dlerror();
  drv->dl = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (drv->dl == NULL) {
    const char *why = dlerror();
    bool absent = library_absent(name, why);
    kyb_error_set(err, 0, "%s: %s", absent ? "no CUDA driver" : "load CUDA driver",
                  why != NULL ? why : name);
    kyb_cuda_driver_close(drv);
    return absent ? KYB_CUDA_NO_DRIVER : -1;
  }
  if (check_version(drv, err) < 0 || bind_all(drv, err) < 0) {
    kyb_cuda_driver_close(drv);
    return -1;
  }
  kyb_curesult r = drv->init(0);
  if (r != KYB_CUDA_SUCCESS) {
    cuda_fail(drv, r, NULL, err, "cuInit (%s)", drv->path);
    kyb_cuda_driver_close(drv);
    if (r == KYB_CUDA_ERROR_NO_DEVICE) {
      kyb_error_wrap(err, "no GPU visible to the CUDA driver");
      return KYB_CUDA_NO_DRIVER;
    }
    return -1;
  }
  log_debug("loaded CUDA driver %s (CUDA %d.%d)", drv->path, drv->version / 1000,
            drv->version % 1000 / 10);
  *out = drv;
  return 0;
}

void kyb_cuda_driver_close(kyb_cuda_driver *drv) {
  if (drv == NULL)
    return;
  if (drv->dl != NULL)
    dlclose(drv->dl);
  free(drv->path);
  free(drv);
}

int kyb_cuda_driver_version(const kyb_cuda_driver *drv) {
  return drv->version;
}

const char *kyb_cuda_driver_path(const kyb_cuda_driver *drv) {
  return drv->path;
}

bool kyb_cuda_driver_can_remap(const kyb_cuda_driver *drv) {
  return drv->version >= KYB_CUDA_VERSION_GPU_PAIRS;
}

int kyb_cuda_list_gpus(kyb_cuda_driver *drv, kyb_cuda_gpu **out, size_t *count, kyb_error **err) {
  *out = NULL;
  *count = 0;
  int n = 0;
  kyb_curesult r = drv->device_get_count(&n);
  if (r != KYB_CUDA_SUCCESS)
    return cuda_fail(drv, r, NULL, err, "cuDeviceGetCount");
  if (n <= 0)
    return 0;
  cleanup_free kyb_cuda_gpu *gpus = calloc((size_t)n, sizeof(*gpus));
  if (gpus == NULL)
    return kyb_error_set(err, ENOMEM, "list %d GPUs", n);
  for (int i = 0; i < n; i++) {
    kyb_cu_device dev = 0;
    kyb_cuda_gpu *g = &gpus[i];
    size_t mem = 0;
    g->ordinal = i;
    if ((r = drv->device_get(&dev, i)) != KYB_CUDA_SUCCESS)
      return cuda_fail(drv, r, NULL, err, "cuDeviceGet(%d)", i);
    if ((r = drv->device_get_uuid(&g->uuid, dev)) != KYB_CUDA_SUCCESS)
      return cuda_fail(drv, r, NULL, err, "cuDeviceGetUuid(%d)", i);
    if ((r = drv->device_get_name(g->model, (int)sizeof(g->model), dev)) != KYB_CUDA_SUCCESS)
      return cuda_fail(drv, r, NULL, err, "cuDeviceGetName(%d)", i);
    g->model[sizeof(g->model) - 1] = '\0';
    if ((r = drv->device_total_mem(&mem, dev)) != KYB_CUDA_SUCCESS)
      return cuda_fail(drv, r, NULL, err, "cuDeviceTotalMem(%d)", i);
    g->memory_bytes = mem;
  }
  *out = steal_ptr(gpus);
  *count = (size_t)n;
  return 0;
}

int kyb_cuda_get_state(kyb_cuda_driver *drv, pid_t pid, kyb_cu_process_state *state,
                       kyb_curesult *result, kyb_error **err) {
  kyb_cu_process_state s = KYB_CU_PROCESS_STATE_RUNNING;
  kyb_curesult r = drv->get_state(pid, &s);
  if (r == KYB_CUDA_ERROR_NOT_INITIALIZED) {
    /* The driver has no CUDA state for this pid: it never called cuInit.
     * Seen on the H200 for a container's non-CUDA init (ENVIRONMENT.md). */
    if (result != NULL)
      *result = r;
    return KYB_CUDA_NOT_CUDA;
  }
  if (r != KYB_CUDA_SUCCESS)
    return cuda_fail(drv, r, result, err, "cuCheckpointProcessGetState(pid %d)", (int)pid);
  *state = s;
  set_ok(result);
  return 0;
}

int kyb_cuda_lock(kyb_cuda_driver *drv, pid_t pid, unsigned int timeout_ms, kyb_curesult *result,
                  kyb_error **err) {
  kyb_cu_lock_args args;
  memset(&args, 0, sizeof(args)); /* reserved fields must be zero */
  args.timeout_ms = timeout_ms;
  kyb_curesult r = drv->lock(pid, &args);
  if (r != KYB_CUDA_SUCCESS)
    return cuda_fail(drv, r, result, err, "cuCheckpointProcessLock(pid %d, timeout %u ms)",
                     (int)pid, timeout_ms);
  set_ok(result);
  return 0;
}

int kyb_cuda_checkpoint(kyb_cuda_driver *drv, pid_t pid, kyb_curesult *result, kyb_error **err) {
  kyb_cu_checkpoint_args args;
  memset(&args, 0, sizeof(args));
  kyb_curesult r = drv->checkpoint(pid, &args);
  if (r != KYB_CUDA_SUCCESS)
    return cuda_fail(drv, r, result, err, "cuCheckpointProcessCheckpoint(pid %d)", (int)pid);
  set_ok(result);
  return 0;
}

static bool pairs_are_identity(const kyb_cu_gpu_pair *pairs, size_t npairs) {
  for (size_t i = 0; i < npairs; i++)
    if (memcmp(&pairs[i].old_uuid, &pairs[i].new_uuid, sizeof(kyb_cu_uuid)) != 0)
      return false;
  return true;
}

int kyb_cuda_restore(kyb_cuda_driver *drv, pid_t pid, const kyb_cu_gpu_pair *pairs, size_t npairs,
                     kyb_curesult *result, kyb_error **err) {
  kyb_cu_restore_args args;
  memset(&args, 0, sizeof(args));
  cleanup_free kyb_cu_gpu_pair *copy = NULL;
  /* An identity map restores in place: send none, so a driver without
   * gpuPairs (12.8/12.9) can do it too. */
  if (npairs > 0 && !pairs_are_identity(pairs, npairs)) {
    if (!kyb_cuda_driver_can_remap(drv)) {
      if (result != NULL)
        *result = KYB_CUDA_ERROR_NOT_SUPPORTED;
      return kyb_error_set(err, 0,
                           "restore pid %d onto other GPUs: the CUDA driver supports CUDA %d.%d, "
                           "GPU remapping needs CUDA 13.0 (driver r580) or newer",
                           (int)pid, drv->version / 1000, drv->version % 1000 / 10);
    }
    if (npairs > UINT32_MAX)
      return kyb_error_set(err, EINVAL, "restore pid %d: %zu GPU pairs", (int)pid, npairs);
    /* The ABI takes a non-const pointer; hand the driver our own copy. */
    copy = malloc(npairs * sizeof(*copy));
    if (copy == NULL)
      return kyb_error_set(err, ENOMEM, "restore pid %d", (int)pid);
    memcpy(copy, pairs, npairs * sizeof(*copy));
    args.gpu_pairs = copy;
    args.gpu_pairs_count = (unsigned int)npairs;
  }
  kyb_curesult r = drv->restore(pid, &args);
  if (r != KYB_CUDA_SUCCESS)
    return cuda_fail(drv, r, result, err, "cuCheckpointProcessRestore(pid %d, %u GPU pairs)",
                     (int)pid, args.gpu_pairs_count);
  set_ok(result);
  return 0;
}

int kyb_cuda_unlock(kyb_cuda_driver *drv, pid_t pid, kyb_curesult *result, kyb_error **err) {
  kyb_cu_unlock_args args;
  memset(&args, 0, sizeof(args));
  kyb_curesult r = drv->unlock(pid, &args);
  if (r != KYB_CUDA_SUCCESS)
    return cuda_fail(drv, r, result, err, "cuCheckpointProcessUnlock(pid %d)", (int)pid);
  set_ok(result);
  return 0;
}

int kyb_cuda_restore_tid(kyb_cuda_driver *drv, pid_t pid, pid_t *tid, kyb_curesult *result,
                         kyb_error **err) {
  int t = 0;
  kyb_curesult r = drv->get_restore_tid(pid, &t);
  if (r != KYB_CUDA_SUCCESS)
    return cuda_fail(drv, r, result, err, "cuCheckpointProcessGetRestoreThreadId(pid %d)",
                     (int)pid);
  *tid = t;
  set_ok(result);
  return 0;
}

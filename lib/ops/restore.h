/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node-level restore operation without Kubernetes: one image -> one NEW
 * container, through containerd's API.
 *
 *   1. read the image's manifest (spec, image, snapshotter, snapshot parent);
 *   2. Containers.Create: the recorded OCI spec with the annotation
 *      kybernate.io/restore-from = <store-uri>/<name> (and, with `gpus`,
 *      the GPUs given instead of the recorded ones), runtime
 *      io.containerd.runc.v2 with kybernate-runc as its binary;
 *   3. Snapshots.Prepare: a fresh rootfs on the recorded snapshot parent;
 *   4. Tasks.Create: the shim runs `kybernate-runc create`, which verifies
 *      the image, applies the rootfs diff and runs `runc restore` (see
 *      docs/runtime.md); then Tasks.Start (a no-op for a restored task).
 * A failure at any step removes what the earlier steps created: no
 * half-created container is left behind.
 */
#ifndef KYB_OPS_RESTORE_H
#define KYB_OPS_RESTORE_H

#include <stdint.h>

#include "store/store.h"
#include "util/error.h"

#define KYB_ANNOTATION_RESTORE_FROM "kybernate.io/restore-from"
#define KYB_LABEL_RESTORED_FROM "kybernate.io/restored-from"

typedef struct {
  const char *address;        /* containerd socket; NULL = default */
  const char *namespace_;     /* containerd namespace; NULL = "default" */
  const char *ref;            /* image name (in store_uri) or <store-uri>/<name> */
  const char *store_uri;      /* store of a bare name; NULL = the default store */
  const char *name;           /* id of the new container */
  const char *log_path;       /* file the container's stdout and stderr go to (absolute) */
  const char *runtime_binary; /* kybernate-runc; NULL = next to this program, else PATH */
  const char *runc_root;      /* runc --root for the new container; NULL = containerd's */
  /* The new container's GPUs: indices (NVML order) and GPU UUIDs separated
   * by commas, or "none" (only for an image without GPU state); the
   * recorded spec is rewritten to give exactly these (ops/gpu_spec.h).
   * NULL = the recorded spec's GPUs. */
  const char *gpus;
  const char *nvidia_proc; /* NULL = $KYBERNATE_NVIDIA_PROC, else /proc/driver/nvidia */
  /* kyb_store_open flags for the image's store: KYB_STORE_LOCAL_ONLY when
   * the uploader has fetched a remote image into the node cache already. */
  int store_flags;
  /* Bytes of the download from a remote store (store.h); NULL: none. */
  kyb_store_progress_fn transfer_progress;
  void *transfer_progress_ud;
} kyb_restore_opts;

typedef struct {
  char *container_id;
  char *ref; /* the full reference restored from */
  uint32_t pid;
  uint64_t total_ms;
} kyb_restore_result;

void kyb_restore_result_clear(kyb_restore_result *r);

int kyb_restore(const kyb_restore_opts *opts, kyb_restore_result *out, kyb_error **err);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node-level checkpoint operation: one container -> one published image.
 *
 * Order (each step timed into the manifest):
 *   1. find the container and its task in containerd (must be running);
 *   1b. GPU (ops/gpu.h): lock all CUDA processes of the task, then move
 *      their VRAM into host memory, while they still run;
 *   2. pause the task (freezer), so memory and writable layer are taken at
 *      the same instant;
 *   3. containerd Tasks.Checkpoint (runc -> CRIU) into the staging image's
 *      criu/ with --leave-running: the processes stay, frozen;
 *   4. the rootfs diff from the container's overlay upperdir;
 *   5. manifest, verification, atomic publish into the store;
 *   6. then, and only then: resume (leave_running) or kill the task; once
 *      it runs again, GPU restore + unlock of its CUDA processes.
 * Any failure before 6 resumes the task, then restores and unlocks its CUDA
 * processes, and removes the staging directory: the container keeps
 * running and no image appears in the store.
 *
 * Interrupts: when opts->interrupted turns non-zero (the caller's
 * SIGINT/SIGTERM/SIGHUP handler, ops/interrupt.h), the operation stops at
 * its next phase boundary (before the GPU lock, after the GPU checkpoint,
 * after the pause, after the CRIU dump, after the rootfs diff, before the
 * publish; a remote store's upload stops too) and fails through
 * that same rollback: "interrupted by SIGINT (after the CRIU dump): rolled
 * back, the container keeps running".  A call in flight (the dump, a GPU
 * driver call) ends first.  The publish is the point of no return: a signal
 * after it does not stop the operation, which finishes normally.
 *
 * The CPU/memory checkpoint goes only through containerd's API (DESIGN.md):
 * no runc or CRIU call beside containerd.
 */
#ifndef KYB_OPS_CHECKPOINT_H
#define KYB_OPS_CHECKPOINT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"
#include "util/error.h"

/* Phase notifications for progress output: called with done=false when a
 * phase starts and done=true (with its duration) when it ends. */
typedef void (*kyb_progress_fn)(void *ud, const char *phase, bool done, uint64_t ms);

typedef struct {
  const char *address;    /* containerd socket; NULL = /run/containerd/containerd.sock */
  const char *namespace_; /* containerd namespace; NULL = "default" */
  const char *container;  /* container id (namespace_), or NULL with pod_* set */
  /* A Kubernetes container, found by its CRI labels in namespace k8s.io. */
  const char *pod_namespace;
  const char *pod_name;
  const char *container_name;
  const char *store_uri; /* NULL = file:///var/lib/kybernate/images */
  const char *name;      /* image name; NULL = generated from the container */
  bool leave_running;
  bool open_tcp;
  bool file_locks;
  bool external_unix_sockets;
  int64_t timeout_ms; /* for the CRIU dump; 0 = 30 minutes */
  /* For locking the container's CUDA processes (the whole lock phase);
   * 0 = 10 s.  Their CUDA calls wait meanwhile. */
  unsigned int gpu_lock_timeout_ms;
  kyb_progress_fn progress;
  void *progress_ud;
  /* Bytes of the upload into a remote store (store.h); NULL: none. */
  kyb_store_progress_fn transfer_progress;
  void *transfer_progress_ud;
  /* 0, or the number of a signal that asks the operation to stop and roll
   * back (kyb_interrupt_flag(), ops/interrupt.h); read at phase
   * boundaries.  NULL: never interrupted. */
  const volatile sig_atomic_t *interrupted;
} kyb_checkpoint_opts;

typedef struct {
  char *container_id;
  char *name;   /* image name in the store */
  char *ref;    /* "<store uri>/<name>" */
  char *digest; /* "sha256:<hex>" of the manifest */
  uint64_t size;
  uint64_t total_ms;
} kyb_checkpoint_result;

void kyb_checkpoint_result_clear(kyb_checkpoint_result *r);

int kyb_checkpoint(const kyb_checkpoint_opts *opts, kyb_checkpoint_result *out, kyb_error **err);

#endif

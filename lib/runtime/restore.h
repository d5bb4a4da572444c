/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Restore instead of create: what kybernate-runc does with a `create` whose
 * spec asks for a restore (decide.h).  In order:
 *
 *   1. resolve the checkpoint reference to a local image and verify every
 *      digest (kyb_resolve_image: no host paths, only configured stores);
 *   2. the namespace rule (kyb_rt_check_namespace);
 *   3. apply the image's rootfs diff onto the bundle's rootfs (root.path);
 *   4. run `<delegate> <global flags> restore --detach ...` (runc_args.h)
 *      with the image's CRIU files seen through a private directory of
 *      links, so neither runc nor CRIU ever writes into the image (CRIU
 *      writes stats-restore into its images directory), and a private work
 *      directory <bundle>/kybernate-restore/work for CRIU's restore.log;
 *   5. when the image holds GPU state (manifest `gpus` not empty): the GPU
 *      map onto the GPUs the spec gives this container is built before
 *      anything is touched (gpu_restore.h: no driver, too few GPUs or
 *      another model fail here), and after runc restore
 *      every CUDA process of the restored container is GPU-restored (onto
 *      the mapped GPUs) and unlocked; a failure there removes the container;
 *   6. record the restore marker (marker.h) so `start` becomes a no-op.
 *
 * A failure leaves no container behind: when runc restore failed after it
 * created runc state, `<delegate> delete --force ID` runs before the error
 * comes back.  The error names the cause: the reference refused, the image
 * missing, the file whose digest did not match, the namespaces, or runc's own
 * error with the relevant lines of CRIU's restore.log.  containerd removes the
 * bundle right after a failed create, so the whole restore.log of a failed
 * runc restore is kept as <state dir>/failed/<id>.restore.log (the newest 16
 * are kept) and the error names that copy.  The work directory is removed
 * after every restore, failed or not.
 */
#ifndef KYB_RUNTIME_RESTORE_H
#define KYB_RUNTIME_RESTORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ops/nodeconf.h"
#include "runtime/runc_args.h"
#include "util/error.h"

/* Bound on the bundle's config.json (outside input). */
#define KYB_RT_SPEC_MAX_BYTES (16u << 20)
/* Name of the private directory kybernate-runc keeps in the bundle. */
#define KYB_RT_WORK_NAME "kybernate-restore"

/* Reads <bundle>/config.json (size-limited, must be an object). */
int kyb_rt_load_spec(const char *bundle, json_t **out, kyb_error **err);

/* The spec's "annotations" object, or NULL. */
const json_t *kyb_rt_spec_annotations(const json_t *spec);

/* The absolute rootfs path: root.path, taken relative to the bundle when it
 * is not absolute (heap). */
int kyb_rt_spec_rootfs(const json_t *spec, const char *bundle, char **out, kyb_error **err);

typedef struct {
  const kyb_runc_cmdline *global;
  const kyb_runc_create_args *create;
  const kyb_nodeconf *conf;
  const char *delegate;
  const char *bundle; /* absolute */
  const json_t *spec; /* the bundle's config.json */
  const char *ref;    /* checkpoint reference (decide.h) */
  const char *state_dir;
  const char *gpu_driver;  /* NULL: $KYBERNATE_LIBCUDA, else libcuda.so.1 */
  const char *nvidia_proc; /* NULL: $KYBERNATE_NVIDIA_PROC, else /proc/driver/nvidia */
} kyb_rt_restore_req;

typedef struct {
  bool rootfs_changed; /* the rootfs diff was applied in full */
  bool rootfs_partial; /* applying it failed midway: the rootfs is neither fresh nor restored */
  char *image_dir;     /* heap: the image used, once resolved */
  uint64_t resolve_ms, rootfs_ms, criu_ms;
  size_t gpu_procs;      /* CUDA processes GPU-restored (0: no GPU state) */
  size_t gpu_remapped;   /* GPUs that moved */
  double gpu_restore_ms; /* the driver's restore phase over all processes */
  double gpu_unlock_ms;  /* ... and its unlock phase */
  double gpu_ms;         /* the whole GPU step: discovery, restore, unlock */
} kyb_rt_restore_result;

void kyb_rt_restore_result_clear(kyb_rt_restore_result *r);

int kyb_rt_restore(const kyb_rt_restore_req *req, kyb_rt_restore_result *res, kyb_error **err);

/* The path of `to` relative to the directory `from`, both canonical and
 * absolute: from "/run/b/x", to "/var/img/criu" gives "../../../var/img/criu"
 * (heap; NULL on ENOMEM).  The image links are relative (see restore.c). */
char *kyb_rt_relative_path(const char *from, const char *to);

/* Runs `<delegate> <global flags> delete --force ID` quietly when runc has
 * state for ID under its root; used after a failed restore. */
int kyb_rt_delete_leftover(const kyb_runc_cmdline *g, const char *delegate, const char *id,
                           kyb_error **err);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Whether a `create` becomes a restore, from the OCI spec's annotations
 * (docs/runtime.md is the user-facing contract):
 *
 *   kybernate.io/restore-from      the checkpoint reference, either one
 *                                  reference for every application container
 *                                  of the pod ("web-1-20261128-134000",
 *                                  "file:///mnt/images/web-1-...") or a map
 *                                  by container name: "app=ref1,sidecar=ref2"
 *                                  (a value with '=' is a map);
 *   kybernate.io/restore-fallback  "cold": a failed restore starts the
 *                                  container normally; "none" (the default):
 *                                  a failed restore fails the create.
 *
 * containerd's CRI copies pod annotations into the sandbox's spec too, so
 * only application containers restore: io.kubernetes.cri.container-type
 * "container", or no such annotation (a container made without CRI).  The
 * sandbox and unknown types pass through.  A container the map does not name
 * is created normally.
 *
 * And the namespace rule: an image taken from a Kubernetes pod restores
 * only into a pod of the same Kubernetes namespace; an image taken outside
 * Kubernetes only into a container outside Kubernetes.
 *
 * Annotation values are untrusted: length-limited and syntax-checked; the
 * reference itself is checked by kyb_resolve_image.
 */
#ifndef KYB_RUNTIME_DECIDE_H
#define KYB_RUNTIME_DECIDE_H

#include <jansson.h>
#include <stdbool.h>

#include "util/error.h"

#define KYB_ANN_RESTORE_FROM "kybernate.io/restore-from"
#define KYB_ANN_RESTORE_FALLBACK "kybernate.io/restore-fallback"
#define KYB_ANN_CRI_CONTAINER_TYPE "io.kubernetes.cri.container-type"
#define KYB_ANN_CRI_CONTAINER_NAME "io.kubernetes.cri.container-name"
#define KYB_ANN_CRI_SANDBOX_NAMESPACE "io.kubernetes.cri.sandbox-namespace"

/* Bound on an annotation value we parse. */
#define KYB_ANN_VALUE_MAX 4096u

typedef enum {
  KYB_RT_CREATE = 0,  /* pass `create` through unchanged */
  KYB_RT_RESTORE = 1, /* restore from out->ref */
} kyb_rt_action;

typedef enum {
  KYB_RT_FALLBACK_NONE = 0, /* a failed restore fails the create */
  KYB_RT_FALLBACK_COLD = 1, /* a failed restore creates the container normally */
} kyb_rt_fallback;

typedef struct {
  kyb_rt_action action;
  kyb_rt_fallback fallback;
  char *ref;          /* heap: the reference for this container (KYB_RT_RESTORE) */
  const char *reason; /* static text: why KYB_RT_CREATE (for the debug log) */
} kyb_rt_decision;

void kyb_rt_decision_clear(kyb_rt_decision *d);

/* Decides from the spec's "annotations" object (NULL: none).  On failure (a
 * malformed kybernate.io annotation) out->fallback still holds the fallback
 * the annotations asked for, when that one was valid, so the caller can
 * honour it. */
int kyb_rt_decide(const json_t *annotations, kyb_rt_decision *out, kyb_error **err);

/* The namespace rule, between a verified image manifest and the new
 * container's annotations.  Fails with EPERM saying which namespaces. */
int kyb_rt_check_namespace(const json_t *manifest, const json_t *annotations, kyb_error **err);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pods, pure: what a Checkpoint records of the checkpointed pod, and the
 * pod a Restore creates from it (docs/api.md, "The pod the operator
 * creates"):
 *
 *  1. labels and annotations as recorded, minus those a controller owns
 *     (a ReplicaSet or StatefulSet must not adopt the restored pod) and the
 *     kybernate.io keys the operator sets itself, plus the Restore's
 *     podTemplate.labels/.annotations, plus kybernate.io/restore: <name>;
 *  2. the recorded spec without nodeName, ephemeral containers, priority
 *     and preemptionPolicy (admission fills those from priorityClassName,
 *     and refuses a pod whose values disagree with the class as it is now)
 *     and the projected service-account token volume kube-api-access-* with
 *     its mounts (the API server adds a fresh one); runtimeClassName
 *     kybernate — another runtime class is refused (RuntimeClassConflict);
 *  3. kybernate.io/restore-from and kybernate.io/restore-fallback;
 *  4. spec.nodeName, or the Restore's nodeSelector merged in;
 *  5. no ownerReference: the pod outlives its Restore.
 */
#ifndef KYB_OPERATOR_PODSPEC_H
#define KYB_OPERATOR_PODSPEC_H

#include <jansson.h>
#include <stdbool.h>

#include "util/error.h"

/* {"metadata": {"labels", "annotations"}, "spec"} of a pod, as a Checkpoint
 * records it in status.podTemplate (new reference; NULL on ENOMEM). */
json_t *kyb_op_pod_template(const json_t *pod);

/* Is the label key one a controller sets on its pods? */
bool kyb_op_controller_owned_key(const char *key);

typedef struct {
  const json_t *restore;    /* the Restore object */
  const json_t *tmpl;       /* {"metadata": {...}, "spec": {...}}: status.podTemplate */
  const char *restore_from; /* the kybernate.io/restore-from value */
  const char *node_name;    /* spec.nodeName of the pod; NULL: none (selector or scheduler) */
} kyb_op_restore_pod_in;

/* The pod for a Restore.  Returns 0 with *pod (new reference), 1 when the
 * Restore cannot have this pod (*reason a condition reason, *message heap,
 * for people), -1 with err (ENOMEM). */
int kyb_op_restore_pod(const kyb_op_restore_pod_in *in, json_t **pod, const char **reason,
                       char **message, kyb_error **err);

/* The template of a Restore from spec.imageRef: its podTemplate.spec, no
 * recorded metadata (new reference; NULL on ENOMEM). */
json_t *kyb_op_image_template(const json_t *restore);

/* kybernate.io/restore-from for a Restore from spec.imageRef:
 * "<first container of podTemplate.spec>=<imageRef>".  0 with *out (heap), 1
 * refused (*message heap: no container), -1 ENOMEM. */
int kyb_op_image_restore_from(const json_t *restore, char **out, char **message, kyb_error **err);

/* Does a node's nvidia.com/gpu.product label (NVIDIA GPU feature discovery:
 * the product name with blanks as '-', e.g. "NVIDIA-H200", "-SHARED" for
 * time-slicing, "-MIG-<profile>" in the mixed MIG strategy) name the model
 * a manifest records ("NVIDIA H200")?  Case-insensitive. */
bool kyb_op_gpu_model_matches(const char *model, const char *label);

/* The GPU check of a Restore: 1 with *message (heap) when a GPU model the
 * Checkpoint recorded (status.gpus[].model) is not the node's label; 0 when
 * they match or nothing can be told (no GPUs recorded, no label); -1 ENOMEM. */
int kyb_op_gpu_check(const json_t *checkpoint, const json_t *node, char **message, kyb_error **err);

#endif

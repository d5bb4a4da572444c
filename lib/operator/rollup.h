/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checkpoints, pure: the checks that resolve a pod, the CheckpointRequests
 * the operator creates, and the roll-up of a request's status into its
 * Checkpoint's (docs/api.md, "Checkpoint" and "CheckpointRequest").
 *
 * Request names are deterministic: "<checkpoint>-<5 chars>" like
 * generateName makes them, but the 5 chars come from sha256 of the
 * Checkpoint's uid (and the action).  An operator that restarts between
 * creating a request and recording it, or two operators that both think
 * they lead, create the same name, and the API server refuses the second
 * (409): a Checkpoint never has two requests for the same action.
 *
 * Roll-up rules:
 *  - Pending request: waits for an agent; older than node_lost → the
 *    caller deletes it (conditioned on its resourceVersion: a claim that
 *    comes first wins) and fails the Checkpoint with NodeLost.
 *  - Running: startedAt and partial timings copied; agent.renewTime older
 *    than node_lost → Failed, NodeLost (the request is left alone).
 *  - Completed: images, sizes, GPUs, timings (total always), restoreFrom in
 *    the map form, Ready=True Completed.
 *  - Failed: Ready=False with the request's reason mapped: DeadlineExceeded
 *    and the PodResolved reasons (PodNotFound, ContainerNotFound) as they
 *    are, StoreNotConfigured → InvalidStorage, anything else → AgentFailed
 *    with "<reason>: <message>".
 */
#ifndef KYB_OPERATOR_ROLLUP_H
#define KYB_OPERATOR_ROLLUP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define KYB_OP_NAME_MAX 253

/* "<base>-<5 chars of sha256(seed)>" with base cut to 58 bytes (as
 * generateName cuts it) and no trailing '-' or '.'. */
void kyb_op_request_name(const char *base, const char *seed, char *out, size_t size);

typedef struct {
  const char *reason; /* NULL: the pod may be checkpointed */
  char *message;      /* heap; for people */
  json_t *containers; /* the resolved container names (array) when reason is NULL */
} kyb_op_pod_verdict;

void kyb_op_pod_verdict_clear(kyb_op_pod_verdict *v);

/* PodResolved for a Checkpoint: pod is the pod as read, NULL when it does not
 * exist.  Reasons: PodNotFound, PodNotScheduled, PodNotRunning,
 * ContainerNotFound, ContainerNotRunning.  -1 only on ENOMEM. */
int kyb_op_check_pod(const json_t *ckpt, const json_t *pod, kyb_op_pod_verdict *v, kyb_error **err);

/* The Checkpoint-action request for ckpt on the pod's node (new reference). */
json_t *kyb_op_request_build(const json_t *ckpt, const json_t *pod, const json_t *containers,
                             const char *name);
/* The DeleteImage request for refs (array of image references) on node. */
json_t *kyb_op_delete_request_build(const json_t *ckpt, const char *name, const char *node,
                                    const json_t *refs);

/* A PodResolved reason?  (Those set PodResolved=False as well as Ready.) */
bool kyb_op_pod_reason(const char *reason);

/* Fails a Checkpoint's status (a copy the caller owns): phase Failed,
 * completedAt, Ready=False reason/message, and PodResolved=False for the
 * PodResolved reasons.  -1 on ENOMEM. */
int kyb_op_checkpoint_fail(json_t *status, json_int_t generation, const char *reason,
                           const char *message, int64_t now_us, kyb_error **err);

typedef enum {
  KYB_OP_ROLLUP_WAIT,      /* the request is not finished: look again (recheck_us) */
  KYB_OP_ROLLUP_DONE,      /* status is final now (Completed or Failed) */
  KYB_OP_ROLLUP_UNCLAIMED, /* no agent took it in time: delete it, then fail with NodeLost */
} kyb_op_rollup_outcome;

typedef struct {
  kyb_op_rollup_outcome outcome;
  int64_t recheck_us; /* WAIT: when the NodeLost clock runs out (us from now) */
  char *message;      /* UNCLAIMED: the NodeLost message (heap) */
} kyb_op_rollup_result;

/* Rolls req's status up into status (a copy of ckpt's status the caller
 * owns, changed in place).  -1 on ENOMEM. */
int kyb_op_rollup(json_t *status, const json_t *ckpt, const json_t *req, int64_t now_us,
                  int64_t node_lost_us, kyb_op_rollup_result *res, kyb_error **err);

/* "server=file:///x/a,side=file:///x/b" from status.images (heap; "" when
 * none; NULL on ENOMEM). */
char *kyb_op_restore_from(const json_t *images);

/* Every image reference a Checkpoint's images may be under: its
 * status.images and those of its requests' statuses (items: the requests
 * owned by it), without duplicates (new array). */
json_t *kyb_op_image_refs(const json_t *ckpt, const json_t *requests);

#endif

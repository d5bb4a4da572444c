/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Restores, pure: a Restore's status from its pod (docs/api.md, "Restore").
 *
 *  - Completed, Ready=True Running: the pod is Running and every container
 *    of its spec runs.  Ready=True ColdStarted instead when the node agent
 *    recorded on the pod (annotation kybernate.io/restore-outcome, from
 *    kybernate-runc's report) that a container took the cold fallback: the
 *    message names each such container and why.  Still Completed: the
 *    pod runs as asked (fallback Cold), only not from the checkpoint.
 *  - Failed, RestoreFailed: a container's create or start failed
 *    (StartError / CreateContainerError, now or as its last state: with
 *    restartPolicy Always the kubelet retries, the restore would fail again);
 *    the message carries the kubelet's, which carries kybernate-runc's reason.
 *  - Failed, Unschedulable: the kubelet refused the pod (NodeAffinity: the
 *    node lacks the RuntimeClass's label or the selector's).  A pod the
 *    scheduler cannot place yet (PodScheduled=False) is reported as
 *    Ready=False Unschedulable but stays Restoring: a node may come.
 *  - Failed, PodFailed: the pod failed otherwise, or ended (Succeeded)
 *    before it was seen running.
 *  - Failed, PodDeleted: the pod is gone (or replaced by another of the same
 *    name) before it ran.
 *  - Otherwise Restoring, Ready=Unknown InProgress.
 * timings: scheduled (PodScheduled), created (PodReadyToStartContainers: the
 * sandbox is up), running (the last container start), total — milliseconds
 * since status.startedAt (second resolution: the pod's times are seconds).
 */
#ifndef KYB_OPERATOR_RSTATUS_H
#define KYB_OPERATOR_RSTATUS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

/* A PodCreated reason?  (Those set PodCreated=False as well as Ready.) */
bool kyb_op_pod_created_reason(const char *reason);

/* Fails a Restore's status (a copy the caller owns): phase Failed,
 * completedAt, Ready=False and, for PodCreated reasons, PodCreated=False. */
int kyb_op_restore_fail(json_t *status, json_int_t generation, const char *reason,
                        const char *message, int64_t now_us, kyb_error **err);

/* Follows the pod (NULL: gone) into status (a copy the caller owns).  *done:
 * the status is final now.  -1 on ENOMEM. */
int kyb_op_restore_observe(json_t *status, const json_t *restore, const json_t *pod, int64_t now_us,
                           bool *done, kyb_error **err);

#endif

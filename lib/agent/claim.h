/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The claim protocol of docs/api.md ("never run twice at once") as pure
 * functions: what to do with a request, and the status each step writes.
 * No I/O and no clock: the caller passes `now` (microseconds since the
 * epoch), so the unit tests drive it with a fake clock.
 *
 *   Pending                      -> CLAIM: update conditioned on the
 *                                   resourceVersion read (a 409 means someone
 *                                   else wrote first: re-read, decide again)
 *   Running, run by this process -> SKIP (the worker renews it)
 *   Running, not run by us       -> TAKE_OVER: a previous incarnation of this
 *                                   node's agent left it (only one agent runs
 *                                   per node: the host flock); finish it from
 *                                   the node's state, never dump again
 *   Completed / Failed           -> SKIP (final)
 *   another node's               -> SKIP
 *
 * Why "not run by this process" rather than "another holder podUID": a
 * container restart inside the same agent pod keeps POD_UID, and the flock
 * already guarantees that no other agent of this node is alive.  The holder
 * recorded in status.agent is for people and the operator.
 *
 * Conditions are written the way meta.SetStatusCondition writes them:
 * one entry per type, lastTransitionTime changes only with status.
 */
#ifndef KYB_AGENT_CLAIM_H
#define KYB_AGENT_CLAIM_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/request.h"
#include "util/error.h"

/* Renew status.agent.renewTime at least this often (docs/api.md: <= 15 s). */
#define KYB_AGENT_RENEW_INTERVAL_US (10LL * 1000000)
#define KYB_AGENT_CONDITION_SUCCEEDED "Succeeded"
#define KYB_AGENT_MAX_MESSAGE (32u << 10) /* metav1.Condition message limit */

typedef enum {
  KYB_AGENT_SKIP,
  KYB_AGENT_CLAIM,
  KYB_AGENT_TAKE_OVER,
} kyb_agent_decision;

/* Who we are (status.agent). */
typedef struct {
  const char *pod_name;
  const char *pod_uid;
} kyb_agent_identity;

/* What to do with r on node `node`; running_here: this process runs it now.
 * *why (may be NULL) gets a static reason for the log. */
kyb_agent_decision kyb_agent_decide(const kyb_agent_request *r, const char *node, bool running_here,
                                    const char **why);

/* The deadline (status.startedAt + spec.deadlineSeconds) has passed. */
bool kyb_agent_deadline_passed(const kyb_agent_request *r, int64_t now_us);
/* Microseconds until the deadline (<= 0: passed); a request never started
 * has its whole budget left. */
int64_t kyb_agent_deadline_left(const kyb_agent_request *r, int64_t now_us);

/* A renewal is due: more than KYB_AGENT_RENEW_INTERVAL_US since the last
 * one (last_us 0: never renewed: due). */
bool kyb_agent_renew_due(int64_t last_us, int64_t now_us);

/* ---- status writes (mutate the object in place, for a PUT of /status) ---- */

/* metav1.Condition semantics on status.conditions of obj. */
int kyb_agent_set_condition(json_t *obj, const char *type, const char *status, const char *reason,
                            const char *message, int64_t now_us, kyb_error **err);

/* The claim (takeover false) or takeover (true): phase Running, agent = me
 * with claimedAt and renewTime now, attempts + 1, startedAt if unset, step
 * "claimed" (a takeover keeps the step the previous agent reached: where it
 * died), observedGeneration, Succeeded Unknown (InProgress or Recovering). */
int kyb_agent_status_claim(json_t *obj, const kyb_agent_identity *me, bool takeover, int64_t now_us,
                           kyb_error **err);

/* The merge patch of a renewal: status.agent.renewTime = now, and step and
 * timings (an object of name -> ms; may be NULL) when given. */
json_t *kyb_agent_renew_patch(const char *step, const json_t *timings, int64_t now_us);

/* How a request ended. */
typedef struct {
  bool succeeded;
  const char *reason;  /* CamelCase: "Completed", or the failure reason */
  const char *message; /* the library's error chain, or a summary; cut to 32 KiB */
  /* Results (may be NULL): images [{container, imageRef, imageDigest,
   * sizeBytes}], gpus [{uuid, model, memoryBytes}], timings {name: ms}. */
  const json_t *images;
  const json_t *gpus;
  const json_t *timings;
} kyb_agent_outcome;

/* The final update: phase Completed/Failed, step done, completedAt, the
 * results (imageRef/imageDigest/sizeBytes for exactly one image, sizeBytes
 * the sum), timings with "total" (from startedAt when the outcome has none),
 * the Succeeded condition. */
int kyb_agent_status_finish(json_t *obj, const kyb_agent_outcome *o, int64_t now_us,
                            kyb_error **err);

/* The failure reason for an error of the checkpoint worker: `phase` is the
 * last phase it started (NULL: none yet), errnum and message its error. */
const char *kyb_agent_failure_reason(const char *phase, int errnum, const char *message);

/* The status.step (docs/api.md's names) for a progress phase of
 * lib/ops/checkpoint ("criu_dump" -> "dump", "package" -> "publish", ...). */
const char *kyb_agent_step_of_phase(const char *phase);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Telling the node agent how a pod's container came up: restored from its
 * checkpoint, or started cold (kybernate.io/restore-fallback: cold), so the
 * operator can tell them apart (docs/runtime.md, "Reporting the outcome";
 * the agent's side is lib/agent/report.h).
 *
 * Best effort by contract: a report never fails or holds up the create
 * beyond KYB_AGENT_CLIENT_REPORT_TIMEOUT_S.  Nothing is sent for a
 * container outside Kubernetes (the CRI annotations naming the pod and the
 * container are missing) or when no agent socket is known
 * ($KYBERNATE_AGENT_SOCKET, the node config's agentSocket); a failure is
 * a warning in the log.
 */
#ifndef KYB_RUNTIME_REPORT_H
#define KYB_RUNTIME_REPORT_H

#include <jansson.h>
#include <stdbool.h>

#define KYB_ANN_CRI_SANDBOX_NAME "io.kubernetes.cri.sandbox-name"
#define KYB_ANN_CRI_SANDBOX_UID "io.kubernetes.cri.sandbox-uid"

/* The POST /v1/restore-outcome body for a container with these spec
 * annotations (new reference), or NULL when they do not name a pod's
 * container.  reason: why cold (required then); ref may be NULL. */
json_t *kyb_rt_report_body(const json_t *annotations, bool cold, const char *reason,
                           const char *ref);

/* Sends it to the agent at socket (NULL: nothing is sent).  Never fails. */
void kyb_rt_report_outcome(const char *socket, const json_t *annotations, bool cold,
                           const char *reason, const char *ref);

#endif

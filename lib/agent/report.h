/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Restore outcomes: what kybernate-runc tells the agent after it restored a
 * pod's container, or took the cold fallback (docs/runtime.md, "Fallback"),
 * and how the agent records it on the pod for the operator (docs/api.md,
 * Restore: Ready True ColdStarted).
 *
 *   POST /v1/restore-outcome  {"podNamespace", "podName", "podUID",
 *                              "container", "outcome": "restored"|"cold",
 *                              "reason" (required for cold), "imageRef"}
 *
 * The agent writes the pod annotation kybernate.io/restore-outcome, a JSON
 * object by container name:
 *
 *   {"main": {"outcome": "cold", "reason": "...", "imageRef": "...",
 *             "at": "2026-12-01T14:00:00Z"}}
 *
 * through a merge patch that carries the pod's uid and resourceVersion as
 * preconditions (a replaced pod never gets the old one's outcome; another
 * container's entry written meanwhile is not lost), and an Event on the pod:
 * Warning ColdStarted or Normal Restored.
 *
 * The body is outside input (any root process of the node can connect):
 * unknown fields, wrong types, names that are not Kubernetes names, control
 * characters and over-long strings are refused with a message.  Pure but for
 * kyb_agent_record_outcome (internal.h).
 */
#ifndef KYB_AGENT_REPORT_H
#define KYB_AGENT_REPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

#define KYB_AGENT_OUTCOME_ANNOTATION "kybernate.io/restore-outcome"
#define KYB_AGENT_REPORT_MAX_REASON 8192u  /* accepted in a body */
#define KYB_AGENT_REPORT_KEPT_REASON 1024u /* kept in the annotation (cut on UTF-8) */
#define KYB_AGENT_REPORT_MAX_REF 1024u
#define KYB_AGENT_REPORT_MAX_UID 128u
#define KYB_AGENT_OUTCOME_MAX_BYTES (64u << 10) /* an annotation value we read */
/* Each API call of a report (get, patch, event): kybernate-runc waits for
 * the answer inside the container's create. */
#define KYB_AGENT_REPORT_KUBE_TIMEOUT_MS 3000

typedef struct kyb_agent_restore_report {
  char *pod_ns, *pod_name, *pod_uid, *container;
  bool cold;       /* outcome "cold"; else "restored" */
  char *reason;    /* required for cold; NULL when a restore gave none */
  char *image_ref; /* NULL when not known (e.g. the reference was malformed) */
} kyb_agent_restore_report;

/* Checks a POST /v1/restore-outcome body; EINVAL with a message naming the
 * field.  *out is filled only on success. */
int kyb_agent_restore_report_parse(const json_t *body, kyb_agent_restore_report *out,
                                   kyb_error **err);
void kyb_agent_restore_report_clear(kyb_agent_restore_report *r);

/* The annotation's new value: `existing` (NULL, or the value on the pod; a
 * malformed one is replaced) with r's container entry set (heap; NULL on
 * ENOMEM).  The reason is cut to KYB_AGENT_REPORT_KEPT_REASON bytes. */
char *kyb_agent_outcome_annotation(const char *existing, const kyb_agent_restore_report *r,
                                   int64_t now_us);

#endif

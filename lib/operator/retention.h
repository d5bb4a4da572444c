/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Retention, pure (docs/api.md, "Retention"): per pod (same namespace and
 * spec.podName), when a Checkpoint completes, the Completed Checkpoints
 * beyond the newest keepLast (by status.completedAt; ties: the later
 * creationTimestamp, then the greater name counts as newer) are deleted —
 * their images go through the finalizer.  Failed ones are neither counted
 * nor deleted; nor are those already being deleted.  The keepLast of the
 * Checkpoint that completed governs (absent: the operator's --keep-last;
 * 0 keeps all).
 *
 * It is applied only for the newest Completed Checkpoint of the pod, so the
 * operator can run it again at any time (after a restart, on every event)
 * with the same result, and an older Checkpoint's keepLast never overrules
 * the newest one's.
 */
#ifndef KYB_OPERATOR_RETENTION_H
#define KYB_OPERATOR_RETENTION_H

#include <jansson.h>

/* items: the Checkpoints of the namespace (a list's items, possibly a
 * moment stale); just: the Checkpoint that completed as last read (it
 * replaces its copy in items, matched by uid).  Returns the victims as an
 * array of {"name", "uid"} (new reference; empty when nothing goes), NULL on
 * ENOMEM. */
json_t *kyb_op_retention_victims(const json_t *items, const json_t *just, long default_keep);

#endif

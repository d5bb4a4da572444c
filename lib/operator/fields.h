/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small pure helpers the reconcilers share: reading fields of Kubernetes
 * objects (jansson values) without a NULL check at every level, the
 * kybernate.io/v1alpha1 resources, and status conditions written exactly the
 * way Kubernetes' meta.SetStatusCondition writes them (docs/api.md,
 * "Conventions"):
 *
 *  - one entry per type;
 *  - lastTransitionTime changes only when status changes, never when only
 *    the reason, message or observedGeneration do;
 *  - messages are cut at 32 KiB (the CRDs' maxLength) on a UTF-8 boundary.
 *
 * Everything read from an object is untrusted: a field of the wrong type
 * reads as absent.
 */
#ifndef KYB_OPERATOR_FIELDS_H
#define KYB_OPERATOR_FIELDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kube/client.h"
#include "util/error.h"

#define KYB_OP_GROUP_VERSION "kybernate.io/v1alpha1"
#define KYB_OP_FINALIZER "kybernate.io/image"
#define KYB_OP_LABEL_NODE "kybernate.io/node"
#define KYB_OP_LABEL_RESTORE "kybernate.io/restore"
#define KYB_OP_ANN_RESTORE_FROM "kybernate.io/restore-from"
#define KYB_OP_ANN_FALLBACK "kybernate.io/restore-fallback"
/* Written by the node agent from kybernate-runc's report (lib/agent/report.h). */
#define KYB_OP_ANN_RESTORE_OUTCOME "kybernate.io/restore-outcome"
#define KYB_OP_RUNTIME_CLASS "kybernate"
#define KYB_OP_GPU_PRODUCT_LABEL "nvidia.com/gpu.product"
#define KYB_OP_MAX_MESSAGE 32768

extern const kyb_kube_resource kyb_op_res_checkpoints;
extern const kyb_kube_resource kyb_op_res_restores;
extern const kyb_kube_resource kyb_op_res_requests;

/* obj.k1.k2...: the value, or NULL when any step is missing or not an
 * object.  The keys are a NULL-terminated list: kyb_op_get(o, "a", "b",
 * NULL) (a macro over an array, so no va_list is involved). */
json_t *kyb_op_getk(const json_t *obj, const char *const *keys);
#define kyb_op_get(obj, ...) kyb_op_getk((obj), (const char *const[]){__VA_ARGS__})
/* The same, the value only when it is a string (NULL otherwise). */
const char *kyb_op_strk(const json_t *obj, const char *const *keys);
#define kyb_op_str(obj, ...) kyb_op_strk((obj), (const char *const[]){__VA_ARGS__})
/* The string, or "" when absent: for messages and comparisons. */
const char *kyb_op_str0k(const json_t *obj, const char *const *keys);
#define kyb_op_str0(obj, ...) kyb_op_str0k((obj), (const char *const[]){__VA_ARGS__})
/* An integer field; dflt when absent or not an integer. */
json_int_t kyb_op_intk(json_int_t dflt, const json_t *obj, const char *const *keys);
#define kyb_op_int(dflt, obj, ...) kyb_op_intk((dflt), (obj), (const char *const[]){__VA_ARGS__})
/* A boolean field; dflt when absent or not a boolean. */
bool kyb_op_boolk(bool dflt, const json_t *obj, const char *const *keys);
#define kyb_op_bool(dflt, obj, ...) kyb_op_boolk((dflt), (obj), (const char *const[]){__VA_ARGS__})

/* Sets obj[key] (a new object when absent or not an object) and returns it;
 * NULL on ENOMEM. */
json_t *kyb_op_child(json_t *obj, const char *key);

/* RFC 3339 time fields: microseconds, or 0 when absent or malformed. */
int64_t kyb_op_timek(const json_t *obj, const char *const *keys);
#define kyb_op_time(obj, ...) kyb_op_timek((obj), (const char *const[]){__VA_ARGS__})
/* "2026-12-01T13:40:21Z" for now_us (the CRDs' date-time, seconds). */
void kyb_op_time_str(int64_t us, char *buf, size_t size);

/* ---- conditions ---- */

/* The condition of `type` in status.conditions, or NULL. */
json_t *kyb_op_cond(const json_t *status, const char *type);
/* True when the condition exists with this status ("True"/"False"/"Unknown"). */
bool kyb_op_cond_is(const json_t *status, const char *type, const char *cstatus);

/* meta.SetStatusCondition on status.conditions (created when absent).
 * now: the RFC 3339 time for lastTransitionTime.  Returns 1 when something
 * changed, 0 when the condition was already exactly so, -1 on ENOMEM. */
int kyb_op_cond_set(json_t *status, const char *type, const char *cstatus, const char *reason,
                    const char *message, json_int_t generation, const char *now, kyb_error **err);

/* A final failure on a Checkpoint's or Restore's status: phase Failed,
 * completedAt (kept when set), observedGeneration, Ready False with the
 * reason, and, when `first_applies`, the condition `first` (PodResolved,
 * PodCreated) False with it too.  `what` names the object in ENOMEM errors. */
int kyb_op_status_fail(json_t *status, json_int_t generation, const char *first, bool first_applies,
                       const char *reason, const char *message, int64_t now_us, const char *what,
                       kyb_error **err);

/* A copy of msg cut to at most max bytes without splitting a UTF-8
 * sequence (heap; NULL on ENOMEM). */
char *kyb_op_truncate_utf8(const char *msg, size_t max);

/* "17.5 GB", "812.0 MB", "4.2 kB", "512 B" (decimal units, as kubectl). */
void kyb_op_format_bytes(int64_t bytes, char *buf, size_t size);

#endif

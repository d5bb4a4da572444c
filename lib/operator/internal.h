/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the operator's pieces share inside lib/operator: the reconcile
 * context, the controller's caches, status writes and events.
 *
 * Reconcilers read the object they reconcile with a live GET (never a
 * possibly stale cache copy) and write with its resourceVersion: a write
 * that lost a race answers 409, the worker requeues the key at once, and
 * the next round reads again.  The caches serve the lookups that tolerate
 * a moment's lag (retention, which Restores wait for a Checkpoint) and the
 * gauges.
 */
#ifndef KYB_OPERATOR_INTERNAL_H
#define KYB_OPERATOR_INTERNAL_H

#include <jansson.h>
#include <stdint.h>

#include "kube/client.h"
#include "kube/config.h"
#include "kube/events.h"
#include "operator/metrics.h"
#include "operator/operator.h"
#include "util/error.h"

typedef struct kyb_op_controller kyb_op_controller;

typedef enum {
  KYB_OP_CACHE_CHECKPOINTS,
  KYB_OP_CACHE_RESTORES,
  KYB_OP_CACHE_REQUESTS,
  KYB_OP_CACHE_PODS,
  KYB_OP_NCACHES
} kyb_op_cache_id;

typedef struct {
  kyb_kube_client *c; /* the worker's own client */
  kyb_kube_recorder *rec;
  const kyb_operator_config *cfg;
  kyb_op_metrics *m;
  kyb_op_controller *ctl;
  int64_t node_lost_us;
  long keep_last;
} kyb_op_ctx;

typedef struct {
  int64_t requeue_us; /* > 0: reconcile again after this long */
} kyb_op_result;

/* ---- reconcilers (checkpoint.c, finalize.c, restore.c) ---- */

int kyb_op_reconcile_checkpoint(kyb_op_ctx *x, const char *ns, const char *name, kyb_op_result *res,
                                kyb_error **err);
int kyb_op_finalize_checkpoint(kyb_op_ctx *x, const json_t *ckpt, kyb_op_result *res,
                               kyb_error **err);
int kyb_op_reconcile_restore(kyb_op_ctx *x, const char *ns, const char *name, kyb_op_result *res,
                             kyb_error **err);

/* ---- controller (controller.c) ---- */

int kyb_op_controller_start(const kyb_operator_config *cfg, const kyb_kube_config *kcfg,
                            const char *identity, kyb_op_metrics *m, kyb_op_controller **out,
                            kyb_error **err);
/* Cancels every call in flight, joins every thread, frees. */
void kyb_op_controller_stop(kyb_op_controller *ctl);
bool kyb_op_controller_synced(kyb_op_controller *ctl);
/* An informer or the worker ended with an error: the message (owned), else NULL. */
const char *kyb_op_controller_failure(kyb_op_controller *ctl);
/* The objects of a cache in namespace ns (NULL: all), a snapshot: a new
 * array whose items must not be changed. */
json_t *kyb_op_cache_items(kyb_op_controller *ctl, kyb_op_cache_id id, const char *ns);
/* Gauges by phase for the metrics. */
void kyb_op_controller_phases(void *ctl, kyb_op_kind kind, long counts[KYB_OP_NPHASES]);

/* ---- helpers (write.c) ---- */

/* PUT obj with status replaced by `status` through the status subresource,
 * unless it is already so.  *out (may be NULL): the object as written (or
 * obj).  409 and other API errors come back as they are. */
int kyb_op_write_status(kyb_op_ctx *x, const kyb_kube_resource *res, const json_t *obj,
                        const json_t *status, json_t **out, kyb_error **err);

/* Adds (add=true) or removes the finalizer kybernate.io/image with an
 * update of the object; *out: the object as written (or a new reference to
 * obj when nothing changed). */
int kyb_op_set_finalizer(kyb_op_ctx *x, const json_t *obj, bool add, json_t **out, kyb_error **err);

/* An Event about obj, best effort (a failure is logged). */
void kyb_op_event(kyb_op_ctx *x, const json_t *obj, const char *type, const char *reason,
                  const char *msg);

/* A live GET that answers 0 with *out NULL for 404. */
int kyb_op_get_opt(kyb_op_ctx *x, const kyb_kube_resource *res, const char *ns, const char *name,
                   json_t **out, kyb_error **err);

int64_t kyb_op_now_us(void);

#endif

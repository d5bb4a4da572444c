/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Restore reconciler (docs/api.md, "Restore"):
 *
 *   new ──► the pod's name taken? ── ours (label kybernate.io/restore = this
 *    │      Restore, created after it): adopt it; anyone else's: PodExists
 *    └──► source: a Completed Checkpoint of this namespace (Pending while it
 *         is still running; CheckpointNotFound / CheckpointNotCompleted) or
 *         spec.imageRef with podTemplate.spec ──► target node and its GPU
 *         model (GPUModelMismatch) ──► the pod (podspec.h) ──► Restoring
 *   Restoring ──► follow the pod (rstatus.h) until Completed or Failed.
 *
 * The pod carries no ownerReference (it outlives its Restore), so "ours" is
 * told by the label plus the creation time: a pod left by an earlier Restore
 * of the same name is older than this one.
 */
#define KYB_LOG_MODULE "operator"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/fields.h"
#include "operator/internal.h"
#include "operator/podspec.h"
#include "operator/rstatus.h"
#include "util/cleanup.h"
#include "util/log.h"

static const char *ns_of(const json_t *o) {
  return kyb_op_str0(o, "metadata", "namespace", NULL);
}

static const char *name_of(const json_t *o) {
  return kyb_op_str0(o, "metadata", "name", NULL);
}

static const char *pod_name_of(const json_t *r) {
  const char *p = kyb_op_str(r, "spec", "podTemplate", "name", NULL);
  return p != NULL ? p : name_of(r);
}

static bool ours(const json_t *r, const json_t *pod) {
  const char *l = kyb_op_str(pod, "metadata", "labels", KYB_OP_LABEL_RESTORE, NULL);
  int64_t pc = kyb_op_time(pod, "metadata", "creationTimestamp", NULL);
  int64_t rc = kyb_op_time(r, "metadata", "creationTimestamp", NULL);
  return l != NULL && strcmp(l, name_of(r)) == 0 && pc != 0 && rc != 0 && pc >= rc;
}

static void announce(kyb_op_ctx *x, const json_t *r, const json_t *st) {
  json_t *ready = kyb_op_cond(st, "Ready");
  const char *reason = kyb_op_str0(ready, "reason", NULL);
  const char *msg = kyb_op_str0(ready, "message", NULL);
  bool ok = strcmp(kyb_op_str0(st, "phase", NULL), "Completed") == 0;
  if (ok)
    log_info("restore %s/%s completed: %s", ns_of(r), name_of(r), msg);
  else
    log_warn("restore %s/%s failed: %s: %s", ns_of(r), name_of(r), reason, msg);
  bool cold = ok && strcmp(reason, "ColdStarted") == 0;
  kyb_op_event(x, r, ok && !cold ? "Normal" : "Warning", ok && !cold ? "Restored" : reason, msg);
}

static int write_st(kyb_op_ctx *x, const json_t *r, const json_t *st, kyb_error **err) {
  const char *was = kyb_op_str0(r, "status", "phase", NULL);
  const char *now = kyb_op_str0(st, "phase", NULL);
  if (kyb_op_write_status(x, &kyb_op_res_restores, r, st, NULL, err) < 0)
    return -1;
  if (strcmp(was, now) != 0 && (strcmp(now, "Completed") == 0 || strcmp(now, "Failed") == 0))
    announce(x, r, st);
  return 0;
}

static int fail(kyb_op_ctx *x, const json_t *r, json_t *st, const char *reason, const char *msg,
                kyb_error **err) {
  if (kyb_op_restore_fail(st, kyb_op_int(0, r, "metadata", "generation", NULL), reason,
                          msg != NULL ? msg : reason, kyb_op_now_us(), err) < 0)
    return -1;
  return write_st(x, r, st, err);
}

/* Restoring from now on, with pod as created (or found). */
static int restoring(kyb_op_ctx *x, const json_t *r, json_t *st, const json_t *pod,
                     kyb_error **err) {
  json_int_t gen = kyb_op_int(0, r, "metadata", "generation", NULL);
  char now[40], msg[600];
  int64_t t = kyb_op_now_us();
  kyb_op_time_str(t, now, sizeof(now));
  const char *started = kyb_op_str(pod, "metadata", "creationTimestamp", NULL);
  const char *from = kyb_op_str0(pod, "metadata", "annotations", KYB_OP_ANN_RESTORE_FROM, NULL);
  snprintf(msg, sizeof(msg), "pod %s/%s created with runtimeClassName %s", ns_of(pod), name_of(pod),
           KYB_OP_RUNTIME_CLASS);
  if (json_object_set_new(st, "phase", json_string("Restoring")) < 0 ||
      json_object_set_new(st, "podName", json_string(name_of(pod))) < 0 ||
      json_object_set_new(st, "podUID", json_string(kyb_op_str0(pod, "metadata", "uid", NULL))) <
          0 ||
      json_object_set_new(st, "restoreFrom", json_string(from)) < 0 ||
      json_object_set_new(st, "startedAt", json_string(started != NULL ? started : now)) < 0 ||
      kyb_op_cond_set(st, "PodCreated", "True", "Created", msg, gen, now, err) < 0)
    return kyb_error_set(err, ENOMEM, "restore status");
  bool done = false;
  if (kyb_op_restore_observe(st, r, pod, t, &done, err) < 0)
    return -1;
  return write_st(x, r, st, err);
}

/* Where the pod goes, and the GPU check there.  1: refused (st written). */
static int target(kyb_op_ctx *x, const json_t *r, const json_t *ck, json_t *st, const char **node,
                  kyb_error **err) {
  *node = kyb_op_str(r, "spec", "nodeName", NULL);
  if (*node == NULL && ck != NULL && kyb_op_get(r, "spec", "nodeSelector", NULL) == NULL)
    *node = kyb_op_str(ck, "status", "nodeName", NULL);
  if (*node == NULL || ck == NULL)
    return 0;
  cleanup_json json_t *n = NULL;
  if (kyb_op_get_opt(x, &kyb_kube_res_nodes, NULL, *node, &n, err) < 0)
    return -1;
  char buf[600];
  if (n == NULL) {
    snprintf(buf, sizeof(buf), "node %s does not exist", *node);
    return fail(x, r, st, "CreateFailed", buf, err) < 0 ? -1 : 1;
  }
  cleanup_free char *why = NULL;
  int g = kyb_op_gpu_check(ck, n, &why, err);
  if (g < 0)
    return -1;
  if (g > 0)
    return fail(x, r, st, "GPUModelMismatch", why, err) < 0 ? -1 : 1;
  return 0;
}

/* The Checkpoint to restore; 1 when the Restore cannot go on now (st
 * written: failed, or waiting for the Checkpoint). */
static int source(kyb_op_ctx *x, const json_t *r, json_t *st, json_t **ck, kyb_error **err) {
  const char *ns = ns_of(r), *cname = kyb_op_str0(r, "spec", "checkpointName", NULL);
  char msg[1500];
  if (kyb_op_get_opt(x, &kyb_op_res_checkpoints, ns, cname, ck, err) < 0)
    return -1;
  if (*ck == NULL || kyb_op_str(*ck, "metadata", "deletionTimestamp", NULL) != NULL) {
    snprintf(msg, sizeof(msg), "checkpoint %s/%s %s", ns, cname,
             *ck == NULL ? "does not exist" : "is being deleted");
    return fail(x, r, st, "CheckpointNotFound", msg, err) < 0 ? -1 : 1;
  }
  const char *phase = kyb_op_str0(*ck, "status", "phase", NULL);
  if (strcmp(phase, "Failed") == 0) {
    snprintf(msg, sizeof(msg), "checkpoint %s/%s failed: %s", ns, cname,
             kyb_op_str0(kyb_op_cond(kyb_op_get(*ck, "status", NULL), "Ready"), "message", NULL));
    return fail(x, r, st, "CheckpointNotCompleted", msg, err) < 0 ? -1 : 1;
  }
  if (strcmp(phase, "Completed") != 0) {
    /* Not final: the Checkpoint's events bring this Restore back. */
    json_int_t gen = kyb_op_int(0, r, "metadata", "generation", NULL);
    char now[40];
    kyb_op_time_str(kyb_op_now_us(), now, sizeof(now));
    snprintf(msg, sizeof(msg), "waiting for checkpoint %s/%s to complete (phase %s)", ns, cname,
             phase[0] != '\0' ? phase : "Pending");
    if (json_object_set_new(st, "phase", json_string("Pending")) < 0 ||
        json_object_set_new(st, "observedGeneration", json_integer(gen)) < 0 ||
        kyb_op_cond_set(st, "PodCreated", "False", "CheckpointNotCompleted", msg, gen, now, err) <
            0 ||
        kyb_op_cond_set(st, "Ready", "Unknown", "InProgress", msg, gen, now, err) < 0)
      return kyb_error_set(err, ENOMEM, "restore status");
    return write_st(x, r, st, err) < 0 ? -1 : 1;
  }
  if (!json_is_object(kyb_op_get(*ck, "status", "podTemplate", NULL)) ||
      kyb_op_str(*ck, "status", "restoreFrom", NULL) == NULL) {
    snprintf(msg, sizeof(msg), "checkpoint %s/%s recorded no pod template or restoreFrom", ns,
             cname);
    return fail(x, r, st, "CreateFailed", msg, err) < 0 ? -1 : 1;
  }
  return 0;
}

static int create(kyb_op_ctx *x, const json_t *r, json_t *st, kyb_op_result *res, kyb_error **err) {
  const char *ns = ns_of(r), *pname = pod_name_of(r);
  char msg[1500];
  cleanup_json json_t *pod = NULL;
  if (kyb_op_get_opt(x, &kyb_kube_res_pods, ns, pname, &pod, err) < 0)
    return -1;
  if (pod != NULL) {
    if (ours(r, pod))
      return restoring(x, r, st, pod, err);
    snprintf(msg, sizeof(msg),
             "pod %s/%s already exists and was not created for this Restore; name the new pod "
             "with podTemplate.name",
             ns, pname);
    return fail(x, r, st, "PodExists", msg, err);
  }
  cleanup_json json_t *ck = NULL, *tmpl = NULL;
  cleanup_free char *from = NULL, *why = NULL;
  if (kyb_op_str(r, "spec", "imageRef", NULL) != NULL) {
    tmpl = kyb_op_image_template(r);
    int f = kyb_op_image_restore_from(r, &from, &why, err);
    if (f < 0 || tmpl == NULL)
      return kyb_error_set(err, ENOMEM, "restore");
    if (f > 0)
      return fail(x, r, st, "CreateFailed", why, err);
  } else {
    int s = source(x, r, st, &ck, err);
    if (s != 0)
      return s < 0 ? -1 : 0;
    tmpl = json_incref(kyb_op_get(ck, "status", "podTemplate", NULL));
    from = strdup(kyb_op_str0(ck, "status", "restoreFrom", NULL));
    if (from == NULL)
      return kyb_error_set(err, ENOMEM, "restore");
  }
  const char *node = NULL;
  int t = target(x, r, ck, st, &node, err);
  if (t != 0)
    return t < 0 ? -1 : 0;
  kyb_op_restore_pod_in in = {.restore = r, .tmpl = tmpl, .restore_from = from, .node_name = node};
  const char *reason = NULL;
  cleanup_json json_t *obj = NULL;
  int b = kyb_op_restore_pod(&in, &obj, &reason, &why, err);
  if (b < 0)
    return -1;
  if (b > 0)
    return fail(x, r, st, reason, why, err);
  cleanup_json json_t *made = NULL;
  if (kyb_kube_create(x->c, &kyb_kube_res_pods, ns, obj, &made, err) < 0) {
    int code = kyb_kube_status_of(*err);
    if (code == 409) { /* created meanwhile: the next round tells whose it is */
      kyb_error_clear(err);
      res->requeue_us = 1;
      return 0;
    }
    if (code == 400 || code == 403 || code == 404 || code == 422) {
      snprintf(msg, sizeof(msg), "%s", kyb_error_message(*err));
      kyb_error_clear(err);
      return fail(x, r, st, "CreateFailed", msg, err);
    }
    return kyb_error_wrap(err, "restore %s/%s", ns, name_of(r));
  }
  kyb_op_metrics_count(x->m, &x->m->pods_created);
  log_info("restore %s/%s: created pod %s%s%s (restore-from %s)", ns, name_of(r), pname,
           node != NULL ? " on node " : "", node != NULL ? node : "", from);
  snprintf(msg, sizeof(msg), "created pod %s%s%s", pname, node != NULL ? " on node " : "",
           node != NULL ? node : "");
  kyb_op_event(x, r, "Normal", "PodCreated", msg);
  return restoring(x, r, st, made, err);
}

int kyb_op_reconcile_restore(kyb_op_ctx *x, const char *ns, const char *name, kyb_op_result *res,
                             kyb_error **err) {
  cleanup_json json_t *r = NULL;
  *res = (kyb_op_result){0};
  if (kyb_op_get_opt(x, &kyb_op_res_restores, ns, name, &r, err) < 0)
    return -1;
  if (r == NULL || kyb_op_str(r, "metadata", "deletionTimestamp", NULL) != NULL)
    return 0;
  const char *phase = kyb_op_str0(r, "status", "phase", NULL);
  if (strcmp(phase, "Completed") == 0 || strcmp(phase, "Failed") == 0)
    return 0;
  json_t *old = kyb_op_get(r, "status", NULL);
  cleanup_json json_t *st = json_is_object(old) ? json_deep_copy(old) : json_object();
  if (st == NULL)
    return kyb_error_set(err, ENOMEM, "restore status");
  const char *pname = kyb_op_str(st, "podName", NULL);
  if (pname == NULL || strcmp(phase, "Restoring") != 0)
    return create(x, r, st, res, err);
  cleanup_json json_t *pod = NULL;
  if (kyb_op_get_opt(x, &kyb_kube_res_pods, ns, pname, &pod, err) < 0)
    return -1;
  bool done = false;
  if (kyb_op_restore_observe(st, r, pod, kyb_op_now_us(), &done, err) < 0)
    return -1;
  return write_st(x, r, st, err);
}

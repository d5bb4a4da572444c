/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Checkpoint reconciler (docs/api.md, "Checkpoint"):
 *
 *   new ──► request of this Checkpoint exists? ──yes──► adopt it (an earlier
 *    │                                                   run created it)
 *    └──► pod checks ──fail──► Failed (PodResolved=False, Ready=False)
 *          └──► finalizer kybernate.io/image ──► CheckpointRequest on the
 *               pod's node (deterministic name) ──► Running, podTemplate
 *   Running ──► roll the request's status up; NodeLost when its agent went
 *               quiet; on Completed: hibernation (delete the pod) and
 *               retention
 *   Completed ──► hibernation retried until the pod is gone; retention
 *   deleting ──► finalize.c
 *
 * Every step can be repeated after a crash at any point: the request's name
 * is derived from the Checkpoint's uid (rollup.h), the finalizer is added
 * before the request exists, and what was done is read back from the API.
 */
#define KYB_LOG_MODULE "operator"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/fields.h"
#include "operator/internal.h"
#include "operator/podspec.h"
#include "operator/retention.h"
#include "operator/rollup.h"
#include "util/cleanup.h"
#include "util/log.h"

#define HIBERNATE_RETRY_US (10LL * 1000000)

static const char *ns_of(const json_t *o) {
  return kyb_op_str0(o, "metadata", "namespace", NULL);
}

static const char *name_of(const json_t *o) {
  return kyb_op_str0(o, "metadata", "name", NULL);
}

static json_t *status_copy(const json_t *ck) {
  json_t *st = kyb_op_get(ck, "status", NULL);
  return json_is_object(st) ? json_deep_copy(st) : json_object();
}

/* ---- retention ---- */

static int retention(kyb_op_ctx *x, const json_t *ck, kyb_error **err) {
  cleanup_json json_t *items = kyb_op_cache_items(x->ctl, KYB_OP_CACHE_CHECKPOINTS, ns_of(ck));
  cleanup_json json_t *victims =
      items != NULL ? kyb_op_retention_victims(items, ck, x->keep_last) : NULL;
  if (victims == NULL)
    return kyb_error_set(err, ENOMEM, "retention");
  size_t i;
  json_t *v;
  json_array_foreach(victims, i, v) {
    const char *vname = kyb_op_str0(v, "name", NULL);
    kyb_kube_delete_opts o = {.precondition_uid = kyb_op_str0(v, "uid", NULL),
                              .grace_period_seconds = -1};
    if (kyb_kube_delete(x->c, &kyb_op_res_checkpoints, ns_of(ck), vname, &o, NULL, err) < 0) {
      int code = kyb_kube_status_of(*err);
      if (code != 404 && code != 409)
        return kyb_error_wrap(err, "retention of pod %s/%s", ns_of(ck),
                              kyb_op_str0(ck, "spec", "podName", NULL));
      kyb_error_clear(err); /* gone already, or another object by now */
      continue;
    }
    kyb_op_metrics_count(x->m, &x->m->retention_deletions);
    log_info("retention: deleted checkpoint %s/%s (pod %s keeps the newest %lld, newest %s)",
             ns_of(ck), vname, kyb_op_str0(ck, "spec", "podName", NULL),
             (long long)kyb_op_int(x->keep_last, ck, "spec", "retention", "keepLast", NULL),
             name_of(ck));
    char msg[1024];
    snprintf(msg, sizeof(msg), "deleted checkpoint %s: pod %s keeps its newest %lld checkpoints",
             vname, kyb_op_str0(ck, "spec", "podName", NULL),
             (long long)kyb_op_int(x->keep_last, ck, "spec", "retention", "keepLast", NULL));
    kyb_op_event(x, ck, "Normal", "RetentionDeleted", msg);
  }
  return 0;
}

/* ---- hibernation ---- */

/* The controller that owns a pod ("ReplicaSet/web-5d4f"), or NULL. */
static bool pod_controller(const json_t *pod, char *buf, size_t size) {
  size_t i;
  json_t *o;
  json_array_foreach(kyb_op_get(pod, "metadata", "ownerReferences", NULL), i, o) {
    if (kyb_op_bool(false, o, "controller", NULL)) {
      snprintf(buf, size, "%s/%s", kyb_op_str0(o, "kind", NULL), kyb_op_str0(o, "name", NULL));
      return true;
    }
  }
  return false;
}

/* leaveRunning false: delete the checkpointed pod so its GPUs go back to the
 * device plugin; the outcome is the PodDeleted condition in st.  Returns 1
 * when it has to be tried again, 0 when done, -1 on ENOMEM. */
static int hibernate(kyb_op_ctx *x, const json_t *ck, json_t *st, kyb_error **err) {
  const char *ns = ns_of(ck), *pod_name = kyb_op_str0(ck, "spec", "podName", NULL);
  const char *uid = kyb_op_str0(st, "podUID", NULL);
  json_int_t gen = kyb_op_int(0, ck, "metadata", "generation", NULL);
  char now[40], msg[1024], owner[600] = "";
  kyb_op_time_str(kyb_op_now_us(), now, sizeof(now));
  cleanup_json json_t *pod = NULL;
  cleanup_error kyb_error *e = NULL;
  if (kyb_op_get_opt(x, &kyb_kube_res_pods, ns, pod_name, &pod, &e) < 0)
    pod = NULL;
  bool gone = pod == NULL || strcmp(kyb_op_str0(pod, "metadata", "uid", NULL), uid) != 0;
  bool owned = pod != NULL && pod_controller(pod, owner, sizeof(owner));
  if (!gone) {
    kyb_kube_delete_opts o = {.precondition_uid = uid, .grace_period_seconds = -1};
    if (kyb_kube_delete(x->c, &kyb_kube_res_pods, ns, pod_name, &o, NULL, &e) < 0) {
      int code = kyb_kube_status_of(e);
      if (code != 404 && code != 409) {
        snprintf(msg, sizeof(msg), "delete pod %s/%s: %s", ns, pod_name, kyb_error_message(e));
        log_warn("checkpoint %s/%s: %s (retrying)", ns, name_of(ck), msg);
        return kyb_op_cond_set(st, "PodDeleted", "False", "DeleteFailed", msg, gen, now, err) < 0
                   ? -1
                   : 1;
      }
    }
  }
  if (owned) {
    /* Names are bounded by Kubernetes; a cut message is still a message. */
    int n = snprintf(msg, sizeof(msg),
                     "pod %s/%s deleted after the checkpoint, but its controller %s creates a "
                     "fresh pod that takes the GPUs again: scale %s down to keep them free",
                     ns, pod_name, owner, owner);
    if (n < 0 || (size_t)n >= sizeof(msg))
      log_debug("checkpoint %s/%s: condition message cut to %zu bytes", ns, name_of(ck),
                sizeof(msg) - 1);
    kyb_op_event(x, ck, "Warning", "ControllerRecreates", msg);
    return kyb_op_cond_set(st, "PodDeleted", "True", "ControllerRecreates", msg, gen, now, err) < 0
               ? -1
               : 0;
  }
  snprintf(msg, sizeof(msg), "pod %s/%s %s: its GPUs are free", ns, pod_name,
           gone ? "was already gone" : "deleted after the checkpoint");
  log_info("checkpoint %s/%s: hibernated, %s", ns, name_of(ck), msg);
  return kyb_op_cond_set(st, "PodDeleted", "True", "Hibernated", msg, gen, now, err) < 0 ? -1 : 0;
}

/* ---- roll-up ---- */

/* Log and Event for a Checkpoint that just became final. */
static void announce(kyb_op_ctx *x, const json_t *ck, const json_t *st) {
  json_t *ready = kyb_op_cond(st, "Ready");
  const char *phase = kyb_op_str0(st, "phase", NULL);
  const char *reason = kyb_op_str0(ready, "reason", NULL);
  const char *msg = kyb_op_str0(ready, "message", NULL);
  bool ok = strcmp(phase, "Completed") == 0;
  if (ok)
    log_info("checkpoint %s/%s completed: %s", ns_of(ck), name_of(ck), msg);
  else
    log_warn("checkpoint %s/%s failed: %s: %s", ns_of(ck), name_of(ck), reason, msg);
  kyb_op_event(x, ck, ok ? "Normal" : "Warning", ok ? "Completed" : reason, msg);
}

/* Writes st; a Completed Checkpoint then hibernates (done before the write,
 * so one write records both) and applies retention. */
static int finish_write(kyb_op_ctx *x, const json_t *ck, json_t *st, kyb_op_result *res,
                        kyb_error **err) {
  const char *was = kyb_op_str0(ck, "status", "phase", NULL);
  const char *now_phase = kyb_op_str0(st, "phase", NULL);
  bool completed = strcmp(now_phase, "Completed") == 0;
  bool became_final =
      strcmp(was, now_phase) != 0 && (completed || strcmp(now_phase, "Failed") == 0);
  if (completed && !kyb_op_bool(true, ck, "spec", "leaveRunning", NULL) &&
      !kyb_op_cond_is(st, "PodDeleted", "True")) {
    int h = hibernate(x, ck, st, err);
    if (h < 0)
      return -1;
    if (h > 0)
      res->requeue_us = HIBERNATE_RETRY_US;
  }
  cleanup_json json_t *written = NULL;
  if (kyb_op_write_status(x, &kyb_op_res_checkpoints, ck, st, &written, err) < 0) {
    if (kyb_kube_status_of(*err) != 422 || !became_final)
      return -1;
    /* The request's results do not pass the Checkpoint's schema: record
     * that instead of retrying the same write for ever. */
    char msg[2048];
    snprintf(msg, sizeof(msg), "the request's results cannot be recorded: %s",
             kyb_error_message(*err));
    kyb_error_clear(err);
    cleanup_json json_t *fst = status_copy(ck);
    if (fst == NULL ||
        kyb_op_checkpoint_fail(fst, kyb_op_int(0, ck, "metadata", "generation", NULL),
                               "AgentFailed", msg, kyb_op_now_us(), err) < 0 ||
        kyb_op_write_status(x, &kyb_op_res_checkpoints, ck, fst, &written, err) < 0)
      return -1;
    announce(x, ck, fst);
    return 0;
  }
  if (became_final)
    announce(x, ck, st);
  if (completed)
    return retention(x, written, err);
  return 0;
}

static int rollup_write(kyb_op_ctx *x, const json_t *ck, json_t *st, const json_t *req,
                        kyb_op_result *res, kyb_error **err) {
  kyb_op_rollup_result rr;
  int64_t now = kyb_op_now_us();
  if (kyb_op_rollup(st, ck, req, now, x->node_lost_us, &rr, err) < 0)
    return -1;
  cleanup_free char *lost = rr.message;
  if (rr.outcome == KYB_OP_ROLLUP_UNCLAIMED) {
    /* Conditioned on the resourceVersion we read: an agent that claims it
     * first wins, and we look again. */
    kyb_kube_delete_opts o = {.precondition_rv =
                                  kyb_op_str0(req, "metadata", "resourceVersion", NULL),
                              .grace_period_seconds = -1};
    if (kyb_kube_delete(x->c, &kyb_op_res_requests, ns_of(req), name_of(req), &o, NULL, err) < 0) {
      if (kyb_kube_status_of(*err) == 409) {
        kyb_error_clear(err);
        res->requeue_us = 1;
        return 0;
      }
      if (kyb_kube_status_of(*err) != 404)
        return kyb_error_wrap(err, "delete unclaimed request %s", name_of(req));
      kyb_error_clear(err);
    }
    if (kyb_op_checkpoint_fail(st, kyb_op_int(0, ck, "metadata", "generation", NULL), "NodeLost",
                               lost, now, err) < 0)
      return -1;
  } else if (rr.outcome == KYB_OP_ROLLUP_WAIT) {
    res->requeue_us = rr.recheck_us + 1000000;
  }
  return finish_write(x, ck, st, res, err);
}

/* ---- start ---- */

/* The base of a Running status: where, which pod, which request. */
static int running_status(json_t *st, const json_t *ck, const json_t *req, const json_t *pod,
                          kyb_error **err) {
  const char *node = kyb_op_str0(req, "spec", "nodeName", NULL);
  const char *uid = kyb_op_str0(req, "spec", "podUID", NULL);
  json_int_t gen = kyb_op_int(0, ck, "metadata", "generation", NULL);
  char now[40], msg[1024];
  kyb_op_time_str(kyb_op_now_us(), now, sizeof(now));
  if (json_object_set_new(st, "phase", json_string("Running")) < 0 ||
      json_object_set_new(st, "nodeName", json_string(node)) < 0 ||
      json_object_set_new(st, "podUID", json_string(uid)) < 0 ||
      json_object_set_new(st, "checkpointRequestName", json_string(name_of(req))) < 0 ||
      json_object_set_new(st, "observedGeneration", json_integer(gen)) < 0)
    return kyb_error_set(err, ENOMEM, "checkpoint status");
  /* The template of the pod instance the request is for, as read now. */
  if (pod != NULL && strcmp(kyb_op_str0(pod, "metadata", "uid", NULL), uid) == 0 &&
      json_object_get(st, "podTemplate") == NULL) {
    json_t *t = kyb_op_pod_template(pod);
    if (t == NULL || json_object_set_new(st, "podTemplate", t) < 0)
      return kyb_error_set(err, ENOMEM, "checkpoint status");
  }
  snprintf(msg, sizeof(msg), "pod %s (uid %s) runs on node %s",
           kyb_op_str0(ck, "spec", "podName", NULL), uid, node);
  return kyb_op_cond_set(st, "PodResolved", "True", "Found", msg, gen, now, err) < 0 ? -1 : 0;
}

/* A request of this Checkpoint already exists: record it and go on. */
static int adopt(kyb_op_ctx *x, const json_t *ck, const json_t *req, kyb_op_result *res,
                 kyb_error **err) {
  cleanup_json json_t *pod = NULL;
  cleanup_json json_t *fin = NULL;
  cleanup_json json_t *st = status_copy(ck);
  if (st == NULL)
    return kyb_error_set(err, ENOMEM, "checkpoint status");
  if (kyb_op_get_opt(x, &kyb_kube_res_pods, ns_of(ck), kyb_op_str0(ck, "spec", "podName", NULL),
                     &pod, err) < 0)
    return -1;
  if (kyb_op_set_finalizer(x, ck, true, &fin, err) < 0)
    return -1;
  log_info("checkpoint %s/%s: found its request %s on node %s", ns_of(ck), name_of(ck),
           name_of(req), kyb_op_str0(req, "spec", "nodeName", NULL));
  if (running_status(st, fin, req, pod, err) < 0)
    return -1;
  return rollup_write(x, fin, st, req, res, err);
}

static int fail_now(kyb_op_ctx *x, const json_t *ck, const char *reason, const char *msg,
                    kyb_op_result *res, kyb_error **err) {
  cleanup_json json_t *st = status_copy(ck);
  if (st == NULL || kyb_op_checkpoint_fail(st, kyb_op_int(0, ck, "metadata", "generation", NULL),
                                           reason, msg, kyb_op_now_us(), err) < 0)
    return kyb_error_set(err, ENOMEM, "checkpoint status");
  return finish_write(x, ck, st, res, err);
}

static int start(kyb_op_ctx *x, const json_t *ck, kyb_op_result *res, kyb_error **err) {
  const char *ns = ns_of(ck), *uid = kyb_op_str0(ck, "metadata", "uid", NULL);
  char rname[KYB_OP_NAME_MAX + 1], seed[200];
  snprintf(seed, sizeof(seed), "checkpoint:%s", uid);
  kyb_op_request_name(name_of(ck), seed, rname, sizeof(rname));
  cleanup_json json_t *req = NULL;
  if (kyb_op_get_opt(x, &kyb_op_res_requests, ns, rname, &req, err) < 0)
    return -1;
  if (req != NULL) {
    if (strcmp(kyb_op_str0(req, "spec", "checkpointRef", "uid", NULL), uid) != 0)
      return kyb_error_set(err, EEXIST, "checkpoint request %s/%s belongs to another checkpoint",
                           ns, rname);
    return adopt(x, ck, req, res, err);
  }
  cleanup_json json_t *pod = NULL;
  if (kyb_op_get_opt(x, &kyb_kube_res_pods, ns, kyb_op_str0(ck, "spec", "podName", NULL), &pod,
                     err) < 0)
    return -1;
  kyb_op_pod_verdict v;
  if (kyb_op_check_pod(ck, pod, &v, err) < 0)
    return -1;
  if (v.reason != NULL) {
    int r = fail_now(x, ck, v.reason, v.message != NULL ? v.message : v.reason, res, err);
    kyb_op_pod_verdict_clear(&v);
    return r;
  }
  cleanup_json json_t *containers = steal_ptr(v.containers);
  kyb_op_pod_verdict_clear(&v);
  /* The finalizer first: an image published before it could never be
   * deleted with its Checkpoint. */
  cleanup_json json_t *fin = NULL;
  if (kyb_op_set_finalizer(x, ck, true, &fin, err) < 0)
    return -1;
  cleanup_json json_t *obj = kyb_op_request_build(fin, pod, containers, rname);
  if (obj == NULL)
    return kyb_error_set(err, ENOMEM, "checkpoint request");
  cleanup_json json_t *made = NULL;
  if (kyb_kube_create(x->c, &kyb_op_res_requests, ns, obj, &made, err) < 0) {
    if (kyb_kube_status_of(*err) != 409)
      return kyb_error_wrap(err, "checkpoint %s/%s", ns, name_of(ck));
    kyb_error_clear(err); /* created meanwhile (by another run): read it and adopt it */
    res->requeue_us = 1;
    return 0;
  }
  kyb_op_metrics_count(x->m, &x->m->requests_created);
  const char *node = kyb_op_str0(made, "spec", "nodeName", NULL);
  log_info("checkpoint %s/%s: created request %s for pod %s on node %s", ns, name_of(ck), rname,
           kyb_op_str0(ck, "spec", "podName", NULL), node);
  char msg[800];
  snprintf(msg, sizeof(msg), "created checkpoint request %s on node %s", rname, node);
  kyb_op_event(x, fin, "Normal", "RequestCreated", msg);
  cleanup_json json_t *st = status_copy(fin);
  if (st == NULL)
    return kyb_error_set(err, ENOMEM, "checkpoint status");
  if (running_status(st, fin, made, pod, err) < 0)
    return -1;
  return rollup_write(x, fin, st, made, res, err);
}

/* ---- the reconciler ---- */

static int follow(kyb_op_ctx *x, const json_t *ck, kyb_op_result *res, kyb_error **err) {
  const char *rname = kyb_op_str0(ck, "status", "checkpointRequestName", NULL);
  cleanup_json json_t *req = NULL;
  if (kyb_op_get_opt(x, &kyb_op_res_requests, ns_of(ck), rname, &req, err) < 0)
    return -1;
  if (req == NULL || strcmp(kyb_op_str0(req, "spec", "checkpointRef", "uid", NULL),
                            kyb_op_str0(ck, "metadata", "uid", NULL)) != 0) {
    char msg[600];
    snprintf(msg, sizeof(msg), "checkpoint request %s was deleted before it finished", rname);
    return fail_now(x, ck, "AgentFailed", msg, res, err);
  }
  cleanup_json json_t *st = status_copy(ck);
  if (st == NULL)
    return kyb_error_set(err, ENOMEM, "checkpoint status");
  return rollup_write(x, ck, st, req, res, err);
}

/* Completed: a hibernation whose pod deletion failed is tried again, and
 * retention runs (it is idempotent: retention.h). */
static int completed(kyb_op_ctx *x, const json_t *ck, kyb_op_result *res, kyb_error **err) {
  if (!kyb_op_bool(true, ck, "spec", "leaveRunning", NULL) &&
      !kyb_op_cond_is(kyb_op_get(ck, "status", NULL), "PodDeleted", "True")) {
    cleanup_json json_t *st = status_copy(ck);
    if (st == NULL)
      return kyb_error_set(err, ENOMEM, "checkpoint status");
    return finish_write(x, ck, st, res, err);
  }
  return retention(x, ck, err);
}

int kyb_op_reconcile_checkpoint(kyb_op_ctx *x, const char *ns, const char *name, kyb_op_result *res,
                                kyb_error **err) {
  cleanup_json json_t *ck = NULL;
  *res = (kyb_op_result){0};
  if (kyb_op_get_opt(x, &kyb_op_res_checkpoints, ns, name, &ck, err) < 0)
    return -1;
  if (ck == NULL)
    return 0;
  if (kyb_op_str(ck, "metadata", "deletionTimestamp", NULL) != NULL)
    return kyb_op_finalize_checkpoint(x, ck, res, err);
  const char *phase = kyb_op_str0(ck, "status", "phase", NULL);
  if (strcmp(phase, "Failed") == 0)
    return 0;
  if (strcmp(phase, "Completed") == 0)
    return completed(x, ck, res, err);
  if (strcmp(phase, "Running") == 0 &&
      kyb_op_str(ck, "status", "checkpointRequestName", NULL) != NULL)
    return follow(x, ck, res, err);
  return start(x, ck, res, err);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Deleting a Checkpoint deletes its images (docs/api.md, "Deletion"): while
 * the finalizer kybernate.io/image is on it,
 *
 *  1. a checkpoint request still at work is waited for (its images may be
 *     about to be published); one no agent has claimed is deleted
 *     (conditioned on its resourceVersion); one whose agent went quiet for
 *     node_lost is given up;
 *  2. the images: status.images and those the requests recorded (a request
 *     may have finished after its Checkpoint failed with NodeLost);
 *     none → the finalizer goes at once;
 *  3. a DeleteImage request (deterministic name) on the Checkpoint's node —
 *     when that node is gone and the store is remote (oci://, s3://), on a
 *     node labelled kybernate.io/runtime=ready;
 *  4. Completed → ImageDeleted=True, finalizer removed; Failed, or no agent
 *     on it → ImageDeleted=False DeleteFailed, the Checkpoint stays (the
 *     administrator can remove the finalizer by hand to give up the image).
 */
#define KYB_LOG_MODULE "operator"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/fields.h"
#include "operator/internal.h"
#include "operator/rollup.h"
#include "util/cleanup.h"
#include "util/log.h"

static const char *ns_of(const json_t *o) {
  return kyb_op_str0(o, "metadata", "namespace", NULL);
}

static const char *name_of(const json_t *o) {
  return kyb_op_str0(o, "metadata", "name", NULL);
}

static bool has_finalizer(const json_t *obj) {
  size_t i;
  json_t *f;
  json_array_foreach(kyb_op_get(obj, "metadata", "finalizers", NULL), i, f) {
    if (json_is_string(f) && strcmp(json_string_value(f), KYB_OP_FINALIZER) == 0)
      return true;
  }
  return false;
}

/* Last sign of life of a running request (its agent's renewal). */
static int64_t last_renewal(const json_t *req) {
  int64_t t = kyb_op_time(req, "status", "agent", "renewTime", NULL);
  if (t == 0)
    t = kyb_op_time(req, "status", "agent", "claimedAt", NULL);
  if (t == 0)
    t = kyb_op_time(req, "status", "startedAt", NULL);
  if (t == 0)
    t = kyb_op_time(req, "metadata", "creationTimestamp", NULL);
  return t;
}

static bool finished(const json_t *req) {
  const char *p = kyb_op_str0(req, "status", "phase", NULL);
  return strcmp(p, "Completed") == 0 || strcmp(p, "Failed") == 0;
}

static bool remote_store(const json_t *ck, const json_t *refs) {
  const char *s = kyb_op_str0(ck, "spec", "storage", NULL);
  if (strncmp(s, "oci://", 6) == 0 || strncmp(s, "s3://", 5) == 0)
    return true;
  const char *r = json_string_value(json_array_get(refs, 0));
  return r != NULL && (strncmp(r, "oci://", 6) == 0 || strncmp(r, "s3://", 5) == 0);
}

static int set_image_deleted(kyb_op_ctx *x, const json_t *ck, const char *cstatus,
                             const char *reason, const char *msg, json_t **written,
                             kyb_error **err) {
  char now[40];
  kyb_op_time_str(kyb_op_now_us(), now, sizeof(now));
  json_t *old = kyb_op_get(ck, "status", NULL);
  cleanup_json json_t *st = json_is_object(old) ? json_deep_copy(old) : json_object();
  if (st == NULL ||
      kyb_op_cond_set(st, "ImageDeleted", cstatus, reason, msg,
                      kyb_op_int(0, ck, "metadata", "generation", NULL), now, err) < 0)
    return kyb_error_set(err, ENOMEM, "checkpoint status");
  return kyb_op_write_status(x, &kyb_op_res_checkpoints, ck, st, written, err);
}

static int delete_failed(kyb_op_ctx *x, const json_t *ck, const char *msg, kyb_error **err) {
  char full[2048];
  snprintf(full, sizeof(full),
           "%s; the Checkpoint stays until the images are deleted (remove the finalizer %s by "
           "hand to give them up)",
           msg, KYB_OP_FINALIZER);
  if (!kyb_op_cond_is(kyb_op_get(ck, "status", NULL), "ImageDeleted", "False")) {
    log_warn("checkpoint %s/%s: image deletion failed: %s", ns_of(ck), name_of(ck), msg);
    kyb_op_event(x, ck, "Warning", "DeleteFailed", msg);
  }
  cleanup_json json_t *w = NULL;
  return set_image_deleted(x, ck, "False", "DeleteFailed", full, &w, err);
}

/* The node for the DeleteImage request; NULL (and *why) when none. */
static int delete_node(kyb_op_ctx *x, const json_t *ck, const json_t *refs, const char *node,
                       char **out, char *why, size_t size, kyb_error **err) {
  *out = NULL;
  cleanup_json json_t *n = NULL;
  if (node[0] != '\0') {
    if (kyb_op_get_opt(x, &kyb_kube_res_nodes, NULL, node, &n, err) < 0)
      return -1;
    if (n != NULL)
      return (*out = strdup(node)) != NULL ? 0 : kyb_error_set(err, ENOMEM, "node");
  }
  if (!remote_store(ck, refs)) {
    snprintf(why, size, "node %s, whose store holds the images, is gone", node);
    return 0;
  }
  kyb_kube_list_opts lo = {.label_selector = "kybernate.io/runtime=ready"};
  cleanup_json json_t *items = NULL;
  cleanup_free char *rv = NULL;
  if (kyb_kube_list_all(x->c, &kyb_kube_res_nodes, NULL, &lo, &items, &rv, err) < 0)
    return -1;
  const char *best = NULL;
  size_t i;
  json_t *it;
  json_array_foreach(items, i, it) {
    const char *nm = name_of(it);
    if (best == NULL || strcmp(nm, best) < 0)
      best = nm;
  }
  if (best == NULL) {
    snprintf(why, size, "node %s is gone and no node is labelled kybernate.io/runtime=ready", node);
    return 0;
  }
  return (*out = strdup(best)) != NULL ? 0 : kyb_error_set(err, ENOMEM, "node");
}

static int remove_finalizer(kyb_op_ctx *x, const json_t *ck, kyb_error **err) {
  cleanup_json json_t *out = NULL;
  if (kyb_op_set_finalizer(x, ck, false, &out, err) < 0)
    return -1;
  log_info("checkpoint %s/%s: finalizer removed", ns_of(ck), name_of(ck));
  return 0;
}

/* Step 1: 1 when a request is still at work (wait), 0 when none is. */
static int settle_requests(kyb_op_ctx *x, const json_t *reqs, kyb_op_result *res, kyb_error **err) {
  int64_t now = kyb_op_now_us();
  size_t i;
  json_t *r;
  json_array_foreach(reqs, i, r) {
    if (strcmp(kyb_op_str0(r, "spec", "action", NULL), "DeleteImage") == 0 || finished(r))
      continue;
    if (strcmp(kyb_op_str0(r, "status", "phase", NULL), "Running") != 0) {
      kyb_kube_delete_opts o = {.precondition_rv =
                                    kyb_op_str0(r, "metadata", "resourceVersion", NULL),
                                .grace_period_seconds = -1};
      if (kyb_kube_delete(x->c, &kyb_op_res_requests, ns_of(r), name_of(r), &o, NULL, err) < 0) {
        if (kyb_kube_status_of(*err) != 404 && kyb_kube_status_of(*err) != 409)
          return -1;
        if (kyb_kube_status_of(*err) == 409) { /* claimed meanwhile: look again */
          kyb_error_clear(err);
          res->requeue_us = 1;
          return 1;
        }
        kyb_error_clear(err);
      }
      continue;
    }
    int64_t age = now - last_renewal(r);
    if (age < x->node_lost_us) {
      res->requeue_us = x->node_lost_us - age + 1000000;
      return 1;
    }
  }
  return 0;
}

int kyb_op_finalize_checkpoint(kyb_op_ctx *x, const json_t *ck, kyb_op_result *res,
                               kyb_error **err) {
  if (!has_finalizer(ck))
    return 0;
  const char *ns = ns_of(ck), *uid = kyb_op_str0(ck, "metadata", "uid", NULL);
  /* The requests of this Checkpoint, read live: a cache a moment behind
   * could miss the one that published the images. */
  cleanup_json json_t *all = NULL;
  cleanup_free char *rv = NULL;
  if (kyb_kube_list_all(x->c, &kyb_op_res_requests, ns, NULL, &all, &rv, err) < 0)
    return kyb_error_wrap(err, "finalize checkpoint %s/%s", ns, name_of(ck));
  cleanup_json json_t *reqs = json_array();
  if (reqs == NULL)
    return kyb_error_set(err, ENOMEM, "finalize");
  size_t i;
  json_t *r;
  json_array_foreach(all, i, r) {
    if (strcmp(kyb_op_str0(r, "spec", "checkpointRef", "uid", NULL), uid) == 0 &&
        json_array_append(reqs, r) < 0)
      return kyb_error_set(err, ENOMEM, "finalize");
  }
  int s = settle_requests(x, reqs, res, err);
  if (s != 0)
    return s < 0 ? -1 : 0;
  cleanup_json json_t *refs = kyb_op_image_refs(ck, reqs);
  if (refs == NULL)
    return kyb_error_set(err, ENOMEM, "finalize");
  if (json_array_size(refs) == 0)
    return remove_finalizer(x, ck, err);

  char dname[KYB_OP_NAME_MAX + 1], seed[200];
  snprintf(seed, sizeof(seed), "delete:%s", uid);
  kyb_op_request_name(name_of(ck), seed, dname, sizeof(dname));
  json_t *del = NULL;
  json_array_foreach(reqs, i, r) {
    if (strcmp(name_of(r), dname) == 0)
      del = r;
  }
  if (del == NULL) {
    const char *node = kyb_op_str0(ck, "status", "nodeName", NULL);
    json_array_foreach(reqs, i, r) {
      if (node[0] == '\0')
        node = kyb_op_str0(r, "spec", "nodeName", NULL);
    }
    cleanup_free char *target = NULL;
    char why[600] = "";
    if (delete_node(x, ck, refs, node, &target, why, sizeof(why), err) < 0)
      return -1;
    if (target == NULL)
      return delete_failed(x, ck, why, err);
    cleanup_json json_t *obj = kyb_op_delete_request_build(ck, dname, target, refs);
    if (obj == NULL)
      return kyb_error_set(err, ENOMEM, "delete request");
    if (kyb_kube_create(x->c, &kyb_op_res_requests, ns, obj, NULL, err) < 0) {
      if (kyb_kube_status_of(*err) != 409)
        return kyb_error_wrap(err, "delete images of checkpoint %s/%s", ns, name_of(ck));
      kyb_error_clear(err);
    } else {
      kyb_op_metrics_count(x->m, &x->m->requests_created);
      log_info("checkpoint %s/%s: deleting %zu image(s) through request %s on node %s", ns,
               name_of(ck), json_array_size(refs), dname, target);
      char msg[800];
      snprintf(msg, sizeof(msg), "deleting %zu image(s) through request %s on node %s",
               json_array_size(refs), dname, target);
      kyb_op_event(x, ck, "Normal", "DeletingImages", msg);
    }
    res->requeue_us = x->node_lost_us + 1000000;
    return 0;
  }

  const char *phase = kyb_op_str0(del, "status", "phase", NULL);
  const char *dnode = kyb_op_str0(del, "spec", "nodeName", NULL);
  char msg[1500];
  if (strcmp(phase, "Completed") == 0) {
    snprintf(msg, sizeof(msg), "deleted %zu image(s) through request %s on node %s",
             json_array_size(refs), dname, dnode);
    cleanup_json json_t *w = NULL;
    if (set_image_deleted(x, ck, "True", "Deleted", msg, &w, err) < 0)
      return -1;
    log_info("checkpoint %s/%s: %s", ns, name_of(ck), msg);
    return remove_finalizer(x, w, err);
  }
  if (strcmp(phase, "Failed") == 0) {
    json_t *c = kyb_op_cond(kyb_op_get(del, "status", NULL), "Succeeded");
    snprintf(msg, sizeof(msg), "request %s on node %s failed: %s: %s", dname, dnode,
             kyb_op_str0(c, "reason", NULL), kyb_op_str0(c, "message", NULL));
    return delete_failed(x, ck, msg, err);
  }
  int64_t age = kyb_op_now_us() - last_renewal(del);
  if (age >= x->node_lost_us) {
    snprintf(msg, sizeof(msg), "no agent on node %s %s request %s", dnode,
             phase[0] == 'R' ? "renews" : "claimed", dname);
    res->requeue_us = x->node_lost_us; /* the agent may come back and finish it */
    return delete_failed(x, ck, msg, err);
  }
  res->requeue_us = x->node_lost_us - age + 1000000;
  return 0;
}

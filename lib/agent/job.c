/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One CheckpointRequest, from the worker thread: re-read it, decide
 * (claim.h), claim or take it over with a status update conditioned on the
 * resourceVersion read, run its action (ckpt.c for Checkpoint, here for
 * DeleteImage), and write the final status.
 */
#define KYB_LOG_MODULE "agent"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/internal.h"
#include "agent/recover.h"
#include "kube/events.h"
#include "store/store.h"
#include "util/cleanup.h"
#include "util/log.h"

static const kyb_kube_resource requests_res = {"kybernate.io", "v1alpha1", "checkpointrequests",
                                               true};

#define TRANSIENT_RETRY_S 2

/* ---- stores ---------------------------------------------------------------------------- */

bool kyb_agent_store_remote(const char *uri) {
  return uri != NULL && (strncmp(uri, "oci://", 6) == 0 || strncmp(uri, "s3://", 5) == 0);
}

/* The directory of a file:// URI, without "localhost" and trailing '/'. */
static char *file_dir(const char *uri) {
  if (uri == NULL || strncmp(uri, "file://", 7) != 0)
    return NULL;
  const char *p = uri + 7;
  if (strncmp(p, "localhost/", 10) == 0)
    p += 9;
  char *d = strdup(p);
  if (d == NULL)
    return NULL;
  size_t n = strlen(d);
  while (n > 1 && d[n - 1] == '/')
    d[--n] = '\0';
  return d;
}

static bool same_dir(const char *uri, const char *other_uri) {
  cleanup_free char *a = file_dir(uri);
  cleanup_free char *b = file_dir(other_uri);
  return a != NULL && b != NULL && strcmp(a, b) == 0;
}

int kyb_agent_store_allowed(const kyb_agent *a, const char *uri, kyb_error **err) {
  if (uri == NULL || !kyb_agent_store_uri_valid(uri))
    return kyb_error_set(err, EINVAL, "\"%s\" is not a store URI", uri ? uri : "");
  if (kyb_agent_store_remote(uri))
    return 0; /* storage credentials decide (the uploader's, or this process's) */
  /* A file:// store is a directory on this host, written by a privileged
   * process: only the node's own stores, never a path a request makes up. */
  if (same_dir(uri, a->default_store))
    return 0;
  for (size_t i = 0; i < a->nodeconf.nstores; i++)
    if (same_dir(uri, a->nodeconf.stores[i]))
      return 0;
  return kyb_error_set(err, EPERM,
                       "store %s is not one of this node's stores (the default %s and the "
                       "\"stores\" of %s)",
                       uri, a->default_store,
                       a->nodeconf.path ? a->nodeconf.path : "the node configuration");
}

const char *kyb_agent_request_store(const kyb_agent *a, const kyb_agent_request *req) {
  return req->storage != NULL ? req->storage : a->default_store;
}

/* ---- events and the final status ------------------------------------------------------- */

static void eventv(kyb_agent *a, const json_t *obj, const char *type, const char *reason,
                   const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));
static void eventv(kyb_agent *a, const json_t *obj, const char *type, const char *reason,
                   const char *fmt, va_list ap) {
  cleanup_free char *msg = NULL;
  if (vasprintf(&msg, fmt, ap) < 0)
    msg = NULL;
  cleanup_error kyb_error *err = NULL;
  if (kyb_kube_event(a->work_kc, a->rec, obj, type, reason, &err, "%s", msg ? msg : reason) < 0)
    log_warn_chain(err, "event %s", reason);
}

void kyb_agent_event(kyb_agent *a, const json_t *obj, const char *type, const char *reason,
                     const char *fmt, ...) {
  if (a->work_kc == NULL || a->rec == NULL || obj == NULL)
    return;
  va_list ap;
  va_start(ap, fmt);
  eventv(a, obj, type, reason, fmt, ap);
  va_end(ap);
}

typedef struct {
  kyb_agent *a;
  const kyb_agent_outcome *o;
  bool already_final;
} finish_ud;

static int finish_mutate(void *ud, json_t *obj, kyb_error **err) {
  finish_ud *f = ud;
  const char *phase = json_string_value(json_object_get(json_object_get(obj, "status"), "phase"));
  if (phase != NULL && (strcmp(phase, "Completed") == 0 || strcmp(phase, "Failed") == 0)) {
    f->already_final = true; /* final is final: never rewrite it */
    return 1;
  }
  return kyb_agent_status_finish(obj, f->o, kyb_kube_now_us(), err);
}

int kyb_agent_finish(kyb_agent *a, const kyb_agent_request *req, const json_t *obj,
                     const kyb_agent_outcome *o) {
  finish_ud f = {.a = a, .o = o};
  cleanup_error kyb_error *err = NULL;
  cleanup_json json_t *written = NULL;
  kyb_kube_retry retry = {.attempts = 8, .backoff_ms = 50, .max_backoff_ms = 2000};
  if (kyb_kube_modify(a->work_kc, &requests_res, req->ns, req->name, "status", finish_mutate, &f,
                      &retry, &written, NULL, &err) < 0) {
    log_error_chain(err, "could not write the end of %s/%s (%s: %s)", req->ns, req->name,
                    o->succeeded ? "Completed" : "Failed", o->reason);
    return -1;
  }
  if (f.already_final) {
    log_warn("%s/%s was already final; not rewritten", req->ns, req->name);
    return 0;
  }
  pthread_mutex_lock(&a->mu);
  a->done_requests++;
  pthread_mutex_unlock(&a->mu);
  if (o->succeeded) {
    log_info("request %s/%s Completed: %s", req->ns, req->name, o->message);
    kyb_agent_event(a, written ? written : obj, "Normal", o->reason, "%s", o->message);
  } else {
    log_error("request %s/%s Failed (%s): %s", req->ns, req->name, o->reason, o->message);
    kyb_agent_event(a, written ? written : obj, "Warning", "Failed", "%s: %s", o->reason,
                    o->message);
  }
  return 0;
}

/* ---- claim ----------------------------------------------------------------------------- */

typedef struct {
  kyb_agent *a;
  kyb_agent_decision expect;
  bool lost;
  const char *why;
} claim_ud;

static int claim_mutate(void *ud, json_t *obj, kyb_error **err) {
  claim_ud *c = ud;
  kyb_agent_request r;
  cleanup_error kyb_error *perr = NULL;
  int pr = kyb_agent_request_parse(obj, &r, &perr);
  kyb_agent_decision d = KYB_AGENT_SKIP;
  if (r.name != NULL) {
    /* An invalid spec is claimed only to be failed at once (InvalidRequest):
     * decide on the status alone, for our node by label. */
    if (pr < 0 && r.node == NULL && r.node_label != NULL)
      r.node = strdup(r.node_label);
    d = kyb_agent_decide(&r, c->a->cfg->node, false, &c->why);
  }
  kyb_agent_request_clear(&r);
  if (d != c->expect) {
    c->lost = true; /* someone changed it first: only go on if still ours to take */
    return 1;
  }
  return kyb_agent_status_claim(obj, &c->a->me, d == KYB_AGENT_TAKE_OVER, kyb_kube_now_us(), err);
}

/* Claims or takes over; *written: the object as written.  1 when the
 * request is no longer ours to take (someone else wrote first). */
static int claim(kyb_agent *a, const kyb_agent_request *req, kyb_agent_decision d, json_t **written,
                 kyb_error **err) {
  claim_ud c = {.a = a, .expect = d};
  kyb_kube_retry retry = {.attempts = 5, .backoff_ms = 20, .max_backoff_ms = 500};
  if (kyb_kube_modify(a->work_kc, &requests_res, req->ns, req->name, "status", claim_mutate, &c,
                      &retry, written, NULL, err) < 0)
    return -1;
  if (c.lost) {
    log_info("request %s/%s is no longer ours to take (%s)", req->ns, req->name,
             c.why ? c.why : "changed");
    json_decref(*written);
    *written = NULL;
    return 1;
  }
  return 0;
}

/* ---- DeleteImage ----------------------------------------------------------------------- */

static void delete_images(kyb_agent *a, const kyb_agent_request *req, const json_t *obj) {
  kyb_agent_progress p = {.a = a, .req = req, .step = "delete", .step_dirty = true};
  cleanup_error kyb_error *rerr = NULL;
  if (kyb_agent_renew(&p, &rerr) < 0)
    log_warn_chain(rerr, "renewal");
  size_t deleted = 0, absent = 0;
  cleanup_free char *failures = NULL;
  size_t flen = 0;
  FILE *fm = open_memstream(&failures, &flen);
  for (size_t i = 0; i < req->nimage_refs; i++) {
    const char *ref = req->image_refs[i];
    cleanup_free char *uri = NULL;
    cleanup_free char *name = NULL;
    cleanup_error kyb_error *err = NULL;
    bool existed = false;
    bool via_uploader = false;
    int r = kyb_image_ref_parse(ref, a->default_store, &uri, &name, &err);
    if (r == 0)
      r = kyb_agent_store_allowed(a, uri, &err);
    via_uploader = r == 0 && kyb_agent_store_remote(uri) && a->cfg->uploader != NULL;
    if (r == 0 && via_uploader) {
      cleanup_free char *full = kyb_image_ref_format(uri, name);
      r = full ? kyb_agent_remote_delete(a, full, &existed, &err)
               : kyb_error_set(&err, ENOMEM, "image reference");
    } else if (r == 0) {
      r = kyb_agent_image_delete(uri, name, &existed, &err);
    }
    if (r < 0) {
      if (fm != NULL)
        fprintf(fm, "%s%s: %s", ftell(fm) > 0 ? "; " : "", ref, kyb_error_message(err));
      continue;
    }
    existed ? deleted++ : absent++;
    log_info("image %s %s", ref, existed ? "deleted" : "was already gone");
  }
  if (fm != NULL)
    fclose(fm);
  char msg[256];
  snprintf(msg, sizeof(msg), "%zu image(s) deleted, %zu already gone", deleted, absent);
  bool ok = failures == NULL || failures[0] == '\0';
  kyb_agent_outcome o = {
      .succeeded = ok, .reason = ok ? "Completed" : "DeleteFailed", .message = ok ? msg : failures};
  kyb_agent_finish(a, req, obj, &o);
}

/* ---- dispatch -------------------------------------------------------------------------- */

/* A request whose spec the agent cannot act on: claimed and failed in one
 * go, so it does not stay Pending forever. */
static void fail_invalid(kyb_agent *a, const kyb_agent_request *req, kyb_error *why) {
  cleanup_json json_t *written = NULL;
  cleanup_error kyb_error *err = NULL;
  int r = claim(a, req, KYB_AGENT_CLAIM, &written, &err);
  if (r < 0)
    log_error_chain(err, "claim of invalid request %s/%s", req->ns, req->name);
  if (r != 0)
    return;
  kyb_agent_outcome o = {
      .succeeded = false, .reason = "InvalidRequest", .message = kyb_error_message(why)};
  kyb_agent_finish(a, req, written, &o);
}

static void retry_later(kyb_agent *a, const char *ns, const char *name) {
  if (kyb_agent_stopping(a))
    return;
  sleep(TRANSIENT_RETRY_S);
  cleanup_free char *key = NULL;
  if (asprintf(&key, "%s/%s", ns, name) >= 0)
    kyb_agent_enqueue_key(a, key);
}

void kyb_agent_handle_request(kyb_agent *a, const char *ns, const char *name) {
  cleanup_json json_t *obj = NULL;
  cleanup_error kyb_error *err = NULL;
  if (kyb_kube_get(a->work_kc, &requests_res, ns, name, &obj, &err) < 0) {
    if (kyb_kube_status_of(err) == 404) {
      log_debug("request %s/%s is gone", ns, name);
      return;
    }
    log_warn_chain(err, "read request %s/%s; trying again", ns, name);
    retry_later(a, ns, name);
    return;
  }
  kyb_agent_request req;
  int pr = kyb_agent_request_parse(obj, &req, &err);
  if (pr < 0) {
    bool ours = req.node_label != NULL && strcmp(req.node_label, a->cfg->node) == 0;
    if (req.name != NULL && ours && !kyb_agent_request_final(&req) &&
        req.phase == KYB_AGENT_PHASE_PENDING && !kyb_agent_stopping(a)) {
      log_error_chain(err, "request %s/%s is invalid: failing it", ns, name);
      fail_invalid(a, &req, err);
    } else if (req.name == NULL || ours) {
      log_warn_chain(err, "request %s/%s ignored", ns, name);
    }
    kyb_agent_request_clear(&req);
    return;
  }
  const char *why = NULL;
  kyb_agent_decision d = kyb_agent_decide(&req, a->cfg->node, false, &why);
  if (d == KYB_AGENT_SKIP || kyb_agent_stopping(a)) {
    log_debug("request %s/%s: %s", ns, name, kyb_agent_stopping(a) ? "stopping" : why);
    kyb_agent_request_clear(&req);
    return;
  }
  cleanup_free char *old_step = req.step ? strdup(req.step) : NULL;
  long old_attempts = req.attempts;
  kyb_agent_request_clear(&req);

  cleanup_json json_t *written = NULL;
  kyb_agent_request mine;
  int cr =
      claim(a, &(kyb_agent_request){.ns = (char *)ns, .name = (char *)name}, d, &written, &err);
  if (cr != 0) {
    if (cr < 0) {
      log_error_chain(err, "claim of %s/%s failed", ns, name);
      retry_later(a, ns, name);
    }
    return;
  }
  if (kyb_agent_request_parse(written, &mine, &err) < 0) {
    log_error_chain(err, "request %s/%s as written", ns, name);
    kyb_agent_request_clear(&mine);
    return;
  }
  log_info("%s %s/%s (%s, attempt %ld)", d == KYB_AGENT_CLAIM ? "claimed" : "took over", ns, name,
           mine.action == KYB_AGENT_ACTION_CHECKPOINT ? "Checkpoint" : "DeleteImage",
           mine.attempts);
  if (d == KYB_AGENT_TAKE_OVER)
    kyb_agent_event(a, written, "Warning", "TakenOver",
                    "the agent of node %s restarted while this request was Running (step %s, "
                    "attempt %ld); %s finishes it from the node's state",
                    a->cfg->node, old_step ? old_step : "?", old_attempts, a->me.pod_name);
  else
    kyb_agent_event(a, written, "Normal", "Claimed", "claimed by %s on node %s (attempt %ld)",
                    a->me.pod_name, a->cfg->node, mine.attempts);
  if (mine.action == KYB_AGENT_ACTION_DELETE_IMAGE)
    delete_images(a, &mine, written); /* deleting again is harmless */
  else if (d == KYB_AGENT_CLAIM)
    kyb_agent_checkpoint(a, &mine, written);
  else
    kyb_agent_take_over(a, &mine, written, old_step);
  kyb_agent_request_clear(&mine);
}

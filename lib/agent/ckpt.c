/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Checkpoint action of a CheckpointRequest: check the pod (podUID ->
 * PodReplaced), then one worker run per container (run.c), each into an
 * image whose name the request fixes (request.h), results and timings into
 * the final status; and the takeover of a request a previous agent left
 * Running: finish it from the node's state, never dump again.
 *
 * Remote stores (oci://, s3://) with KYBERNATE_UPLOADER_SOCKET set: the
 * worker writes into the node's local file:// store (the default store, or
 * the first file:// one of the node config: the uploader reads only from
 * those) and the uploader moves the image to the store (upload.c); the
 * agent holds no storage credentials.  The local copy stays until the
 * request's final status is written, so a takeover finds it and uploads
 * again (an image the store has already is "already there": published).
 */
#define KYB_LOG_MODULE "agent"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "agent/internal.h"
#include "agent/recover.h"
#include "store/store.h"
#include "util/cleanup.h"
#include "util/log.h"

#define RECOVERY_TEXT 2048

/* Everything one request's checkpoint collects. */
typedef struct {
  kyb_agent *a;
  const kyb_agent_request *req;
  const json_t *obj;
  const char *store;     /* where the images end up */
  const char *write_uri; /* where the worker writes: the store, or the local store */
  bool via_uploader;
  json_t *images; /* [{container, imageRef, imageDigest, sizeBytes}] */
  json_t *gpus;
  char **names; /* image name per container (NULL-terminated) */
  kyb_agent_progress p;
  char recovery[RECOVERY_TEXT];
} ckpt;

static void ckpt_release(ckpt *c) {
  json_decref(c->images);
  json_decref(c->gpus);
  json_decref(c->p.timings);
  if (c->names != NULL)
    for (char **n = c->names; *n; n++)
      free(*n);
  free(c->names);
}

static void finish(ckpt *c, bool ok, const char *reason, const char *message) {
  kyb_agent_outcome o = {.succeeded = ok,
                         .reason = reason,
                         .message = message,
                         .images = ok ? c->images : NULL,
                         .gpus = ok ? c->gpus : NULL,
                         .timings = c->p.timings};
  kyb_agent_finish(c->a, c->req, c->obj, &o);
  if (c->via_uploader) /* the local copies were only kept for a takeover */
    for (char **n = c->names; n && *n; n++) {
      bool existed = false;
      cleanup_error kyb_error *err = NULL;
      if (kyb_agent_image_delete(c->write_uri, *n, &existed, &err) < 0)
        log_warn_chain(err, "local copy %s left behind", *n);
    }
}

static void fail(ckpt *c, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(ckpt *c, const char *reason, const char *fmt, ...) {
  cleanup_free char *msg = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&msg, fmt, ap) < 0)
    msg = NULL;
  va_end(ap);
  finish(c, false, reason, msg ? msg : reason);
}

/* ---- pieces ---------------------------------------------------------------------------- */

/* The pod named by the request must exist, be this instance and be here. */
static int check_pod(ckpt *c, const char **reason, char **message) {
  const kyb_agent_request *r = c->req;
  cleanup_json json_t *pod = NULL;
  cleanup_error kyb_error *err = NULL;
  int rc = -1;
  if (kyb_kube_get(c->a->work_kc, &kyb_kube_res_pods, r->pod_ns, r->pod_name, &pod, &err) < 0) {
    *reason = "PodNotFound";
    if (kyb_kube_status_of(err) == 404)
      rc = asprintf(message, "pod %s/%s does not exist", r->pod_ns, r->pod_name);
    else
      rc = asprintf(message, "pod %s/%s could not be read: %s", r->pod_ns, r->pod_name,
                    kyb_error_message(err));
    return rc < 0 ? (*message = NULL, -1) : -1;
  }
  const char *uid = json_string_value(json_object_get(json_object_get(pod, "metadata"), "uid"));
  const char *node = json_string_value(json_object_get(json_object_get(pod, "spec"), "nodeName"));
  if (uid == NULL || strcmp(uid, r->pod_uid) != 0) {
    *reason = "PodReplaced";
    rc = asprintf(message,
                  "pod %s/%s is another instance (uid %s; the request names %s): it was "
                  "recreated under the same name",
                  r->pod_ns, r->pod_name, uid ? uid : "?", r->pod_uid);
  } else if (node == NULL || strcmp(node, c->a->cfg->node) != 0) {
    *reason = "PodNotFound";
    rc = asprintf(message, "pod %s/%s is on node %s, not on this node (%s)", r->pod_ns, r->pod_name,
                  node ? node : "(none)", c->a->cfg->node);
  } else {
    return 0;
  }
  if (rc < 0)
    *message = NULL;
  return -1;
}

static int make_names(ckpt *c, kyb_error **err) {
  c->names = calloc(c->req->ncontainers + 1, sizeof(char *));
  if (c->names == NULL)
    return kyb_error_set(err, ENOMEM, "image names");
  for (size_t i = 0; i < c->req->ncontainers; i++)
    if (kyb_agent_image_name(c->req, c->req->containers[i], &c->names[i], err) < 0)
      return -1;
  return 0;
}

/* gpus from a manifest: uuid, model, memoryBytes only (the CRD's fields),
 * each GPU once. */
static void add_gpus(ckpt *c, const json_t *gpus) {
  for (size_t i = 0; i < json_array_size(gpus); i++) {
    const json_t *g = json_array_get(gpus, i);
    const char *uuid = json_string_value(json_object_get(g, "uuid"));
    bool seen = uuid == NULL;
    for (size_t j = 0; !seen && j < json_array_size(c->gpus); j++) {
      const char *other = json_string_value(json_object_get(json_array_get(c->gpus, j), "uuid"));
      seen = other != NULL && strcmp(other, uuid) == 0;
    }
    if (seen)
      continue;
    json_t *e = json_pack("{s:s}", "uuid", uuid);
    const json_t *model = json_object_get(g, "model");
    const json_t *mem = json_object_get(g, "memoryBytes");
    if (e != NULL && json_is_string(model))
      json_object_set(e, "model", (json_t *)model);
    if (e != NULL && json_is_integer(mem) && json_integer_value(mem) >= 0)
      json_object_set(e, "memoryBytes", (json_t *)mem);
    json_array_append_new(c->gpus, e);
  }
}

/* Records a published image of container i: the final reference (after
 * the upload when there is one), digest, size, GPUs, and the manifest's
 * gpu_lock timing (the worker reports the others as they happen).  worker:
 * what the worker said about it (digest), or NULL (a takeover). */
static int record_image(ckpt *c, size_t i, const json_t *worker, kyb_error **err) {
  bool add_timings = worker != NULL;
  const char *name = c->names[i];
  kyb_agent_image_info info = {0};
  int r = kyb_agent_image_published(c->write_uri, name, &info, err);
  if (r == 0)
    r = kyb_error_set(err, ENOENT, "image %s is not in %s", name, c->write_uri);
  if (r < 0)
    return -1;
  cleanup_free char *ref = NULL;
  if (c->via_uploader) {
    c->p.step = "upload";
    c->p.step_dirty = true;
    if (kyb_agent_upload(c->a, info.ref, c->store, &c->p, &ref, err) < 0) {
      kyb_agent_image_info_clear(&info);
      return -1;
    }
  } else {
    ref = strdup(info.ref);
  }
  const char *digest = info.digest;
  if (digest == NULL) /* a remote store written directly: the worker's word */
    digest = json_string_value(json_object_get(worker, "digest"));
  json_t *img = json_pack("{s:s, s:s, s:s?, s:I}", "container", c->req->containers[i], "imageRef",
                          ref, "imageDigest", digest, "sizeBytes", (json_int_t)info.size);
  if (img == NULL || json_array_append_new(c->images, img) < 0) {
    kyb_agent_image_info_clear(&info);
    return kyb_error_set(err, ENOMEM, "status images");
  }
  add_gpus(c, info.gpus);
  const json_t *lock = json_object_get(info.timings, "gpu_lock");
  if (add_timings && json_is_integer(lock)) {
    json_int_t prev = json_integer_value(json_object_get(c->p.timings, "gpu_lock"));
    json_object_set_new(c->p.timings, "gpu_lock", json_integer(prev + json_integer_value(lock)));
  }
  kyb_agent_image_info_clear(&info);
  return 0;
}

/* Brings container i back (resume, GPU restore; stop: end it) and appends
 * what was done to c->recovery. */
static int recover(ckpt *c, size_t i, bool stop) {
  kyb_agent_recover_target t = {.address = c->a->cfg->containerd,
                                .pod_namespace = c->req->pod_ns,
                                .pod_name = c->req->pod_name,
                                .container_name = c->req->containers[i],
                                .stop = stop};
  kyb_agent_recover_report rep;
  cleanup_error kyb_error *err = NULL;
  int r = kyb_agent_recover_container(&t, &rep, &err);
  char line[512];
  if (r < 0) {
    log_error_chain(err, "recovery of container %s", c->req->containers[i]);
    snprintf(line, sizeof(line), "container %s: RECOVERY FAILED: %s", c->req->containers[i],
             kyb_error_message(err));
  } else {
    kyb_agent_recover_describe(&rep, c->req->containers[i], line, sizeof(line));
    log_info("recovery: %s", line);
  }
  size_t used = strlen(c->recovery);
  snprintf(c->recovery + used, sizeof(c->recovery) - used, "%s%s", used ? "; " : "", line);
  return r;
}

/* A failed run leaves no image behind: the ones published for earlier
 * containers (and this one, when it got that far) go, staging leftovers
 * too. */
static void discard_images(ckpt *c, size_t upto) {
  for (size_t i = 0; i <= upto && c->names[i] != NULL; i++) {
    bool existed = false;
    cleanup_error kyb_error *err = NULL;
    /* Uploaded already (an earlier container): the store's copy goes too. */
    cleanup_free char *remote =
        c->via_uploader ? kyb_image_ref_format(c->store, c->names[i]) : NULL;
    for (size_t k = 0; remote != NULL && k < json_array_size(c->images); k++) {
      const char *ref =
          json_string_value(json_object_get(json_array_get(c->images, k), "imageRef"));
      if (ref != NULL && strcmp(ref, remote) == 0 &&
          kyb_agent_remote_delete(c->a, remote, &existed, &err) < 0)
        log_warn_chain(err, "could not remove %s of the failed request", remote);
    }
    kyb_error_clear(&err);
    if (kyb_agent_image_delete(c->write_uri, c->names[i], &existed, &err) < 0)
      log_warn_chain(err, "could not remove image %s of the failed request", c->names[i]);
    else if (existed)
      log_info("removed image %s of the failed request", c->names[i]);
  }
  kyb_agent_store_cleanup(c->write_uri);
}

static const char *describe_wait(int status, char *buf, size_t size) {
  if (WIFSIGNALED(status))
    snprintf(buf, size, "killed by signal %d", WTERMSIG(status));
  else if (WIFEXITED(status))
    snprintf(buf, size, "exit status %d", WEXITSTATUS(status));
  else
    snprintf(buf, size, "wait status %d", status);
  return buf;
}

/* ---- the Checkpoint action ------------------------------------------------------------- */

static json_t *worker_job(ckpt *c, size_t i, bool leave_running) {
  const kyb_agent_request *r = c->req;
  return json_pack("{s:s?, s:s, s:s, s:s, s:s, s:s, s:b, s:I}", "address", c->a->cfg->containerd,
                   "podNamespace", r->pod_ns, "podName", r->pod_name, "container", r->containers[i],
                   "store", c->write_uri, "name", c->names[i], "leaveRunning", leave_running,
                   "gpuLockTimeoutMs", (json_int_t)r->gpu_lock_timeout_s * 1000);
}

/* One container.  0: published; -1: the request was failed (or is gone). */
static int one_container(ckpt *c, size_t i, bool leave_running) {
  cleanup_json json_t *job = worker_job(c, i, leave_running);
  kyb_agent_run_outcome o = {0};
  cleanup_error kyb_error *err = NULL;
  if (job == NULL || kyb_agent_run_worker(c->a, job, &c->p, &o, &err) < 0) {
    discard_images(c, i);
    fail(c, "DumpFailed", "could not start the checkpoint worker: %s",
         err ? kyb_error_message(err) : "out of memory");
    return -1;
  }
  const char *phase = o.phase ? o.phase : "start";
  char how[64];
  int r = -1;
  cleanup_json json_t *said = NULL;
  if (o.end == KYB_AGENT_RUN_DONE && o.result != NULL) {
    said = json_incref(o.result);
    r = 0;
  } else if (o.end == KYB_AGENT_RUN_DONE && json_object_get(o.error, "ref") != NULL) {
    said = json_incref(o.error);
    /* Published, then resuming or stopping failed; the worker's own
     * rollback ran.  The image is good: keep it, say what went wrong. */
    const char *msg = json_string_value(json_object_get(o.error, "message"));
    log_warn("image of %s published, but: %s", c->req->containers[i], msg ? msg : "?");
    kyb_agent_event(c->a, c->obj, "Warning", "FinishFailed", "%s", msg ? msg : "?");
    r = 0;
  } else if (o.end == KYB_AGENT_RUN_DONE) {
    const char *msg = json_string_value(json_object_get(o.error, "message"));
    int errnum = (int)json_integer_value(json_object_get(o.error, "errno"));
    discard_images(c, i);
    fail(c, kyb_agent_failure_reason(o.phase, errnum, msg), "container %s: %s",
         c->req->containers[i], msg ? msg : "checkpoint failed");
  } else {
    /* The worker is dead: bring the container back from outside. */
    recover(c, i, false);
    discard_images(c, i);
    switch (o.end) {
    case KYB_AGENT_RUN_DEADLINE:
      fail(c, "DeadlineExceeded",
           "not finished %ld s after startedAt (deadlineSeconds); stopped during %s of "
           "container %s; %s",
           c->req->deadline_s, phase, c->req->containers[i], c->recovery);
      break;
    case KYB_AGENT_RUN_SHUTDOWN:
      fail(c, "AgentRestarted",
           "the agent was stopped during %s of container %s and its grace period ran out; %s",
           phase, c->req->containers[i], c->recovery);
      break;
    case KYB_AGENT_RUN_GONE:
      log_warn("request %s/%s was deleted: checkpoint stopped (%s)", c->req->ns, c->req->name,
               c->recovery);
      break;
    default:
      fail(c, kyb_agent_failure_reason(o.phase, 0, NULL),
           "the checkpoint worker died (%s) during %s of container %s; %s",
           describe_wait(o.wait_status, how, sizeof(how)), phase, c->req->containers[i],
           c->recovery);
    }
  }
  kyb_agent_run_outcome_clear(&o);
  if (r == 0 && record_image(c, i, said, &err) < 0) {
    bool upload = c->p.step != NULL && strcmp(c->p.step, "upload") == 0;
    discard_images(c, i);
    if (c->p.stopped == KYB_AGENT_RUN_GONE)
      log_warn("request %s/%s was deleted: upload stopped", c->req->ns, c->req->name);
    else if (c->p.stopped == KYB_AGENT_RUN_DEADLINE)
      fail(c, "DeadlineExceeded",
           "not finished %ld s after startedAt (deadlineSeconds): upload "
           "of container %s stopped",
           c->req->deadline_s, c->req->containers[i]);
    else if (c->p.stopped == KYB_AGENT_RUN_SHUTDOWN)
      fail(c, "AgentRestarted",
           "the agent was stopped during the upload of container %s and "
           "its grace period ran out",
           c->req->containers[i]);
    else
      fail(c, upload ? "UploadFailed" : "PublishFailed", "container %s: %s", c->req->containers[i],
           kyb_error_message(err));
    return -1;
  }
  return r;
}

static int setup(ckpt *c, kyb_agent *a, const kyb_agent_request *req, const json_t *obj,
                 kyb_error **err) {
  memset(c, 0, sizeof(*c));
  c->a = a;
  c->req = req;
  c->obj = obj;
  c->store = kyb_agent_request_store(a, req);
  c->via_uploader = kyb_agent_store_remote(c->store) && a->cfg->uploader != NULL;
  c->write_uri = c->via_uploader ? a->local_uri : c->store;
  c->images = json_array();
  c->gpus = json_array();
  c->p = (kyb_agent_progress){.a = a,
                              .req = req,
                              .step = "claimed",
                              .last_renew_us = kyb_kube_now_us(),
                              .timings = json_object()};
  if (c->images == NULL || c->gpus == NULL || c->p.timings == NULL) {
    kyb_error_set(err, ENOMEM, "checkpoint");
    return -1;
  }
  if (c->via_uploader && c->write_uri == NULL) {
    kyb_error_set(err, ENOENT,
                  "no local file:// store on this node to stage the checkpoint in for the "
                  "uploader (the default store is %s; the node config names no file:// store)",
                  a->default_store);
    return -1;
  }
  if (kyb_agent_store_allowed(a, c->store, err) < 0 || make_names(c, err) < 0 || c->names == NULL)
    return -1;
  return 0;
}

void kyb_agent_checkpoint(kyb_agent *a, const kyb_agent_request *req, const json_t *obj) {
  ckpt c;
  cleanup_error kyb_error *err = NULL;
  if (setup(&c, a, req, obj, &err) < 0) {
    fail(&c, "StoreNotConfigured", "%s", kyb_error_message(err));
    ckpt_release(&c);
    return;
  }
  const char *reason = NULL;
  cleanup_free char *message = NULL;
  if (check_pod(&c, &reason, &message) < 0) {
    fail(&c, reason, "%s", message ? message : reason);
    ckpt_release(&c);
    return;
  }
  /* Several containers hibernate together: each is checkpointed running,
   * then all stop at the end, so no container stops while another of the
   * pod is still to be dumped (the kubelet would restart it cold). */
  bool together = req->ncontainers > 1 && !req->leave_running;
  size_t i;
  for (i = 0; i < req->ncontainers; i++)
    if (one_container(&c, i, together ? true : req->leave_running) < 0)
      break;
  if (i == req->ncontainers) {
    if (together)
      for (size_t k = 0; k < req->ncontainers; k++)
        recover(&c, k, true);
    char msg[128];
    snprintf(msg, sizeof(msg), "%zu image(s) published", req->ncontainers);
    finish(&c, true, "Completed", msg);
  }
  ckpt_release(&c);
}

/* ---- takeover -------------------------------------------------------------------------- */

void kyb_agent_take_over(kyb_agent *a, const kyb_agent_request *req, const json_t *obj,
                         const char *old_step) {
  ckpt c;
  cleanup_error kyb_error *err = NULL;
  if (setup(&c, a, req, obj, &err) < 0) {
    fail(&c, "AgentRestarted",
         "the agent restarted during step %s; the request cannot be finished here: %s",
         old_step ? old_step : "?", kyb_error_message(err));
    ckpt_release(&c);
    return;
  }
  /* Published = in the store under the request's name (atomic publish). */
  size_t published = 0;
  bool *have = calloc(req->ncontainers, sizeof(bool));
  for (size_t i = 0; have != NULL && i < req->ncontainers; i++) {
    cleanup_error kyb_error *perr = NULL;
    int r = kyb_agent_image_published(c.write_uri, c.names[i], NULL, &perr);
    if (r < 0)
      log_warn_chain(perr, "image %s", c.names[i]);
    have[i] = r == 1;
    published += have[i];
  }
  bool all = have != NULL && published == req->ncontainers;
  /* The node first: nothing of the pod stays frozen or GPU-locked. */
  bool ok = true;
  for (size_t i = 0; i < req->ncontainers; i++)
    ok &= recover(&c, i, all && !req->leave_running) == 0;
  kyb_agent_store_cleanup(c.write_uri);
  if (all) {
    size_t i;
    for (i = 0; i < req->ncontainers; i++)
      if (record_image(&c, i, NULL, &err) < 0)
        break;
    if (i == req->ncontainers) {
      cleanup_free char *msg = NULL;
      if (asprintf(&msg,
                   "%zu image(s) published before the agent restarted (step %s); completed "
                   "without dumping again; %s",
                   req->ncontainers, old_step ? old_step : "?", c.recovery) < 0)
        msg = NULL;
      finish(&c, true, "Completed", msg ? msg : "completed after an agent restart");
      free(have);
      ckpt_release(&c);
      return;
    }
    log_error_chain(err, "image of a taken-over request");
  }
  discard_images(&c, req->ncontainers - 1);
  fail(&c, "AgentRestarted",
       "the agent restarted during step %s (attempt %ld); the checkpoint was not redone (%zu of "
       "%zu image(s) had been published: discarded)%s; %s",
       old_step ? old_step : "?", req->attempts, published, req->ncontainers,
       ok ? "" : "; RECOVERY INCOMPLETE", c.recovery);
  free(have);
  ckpt_release(&c);
}

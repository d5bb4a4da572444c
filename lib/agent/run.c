/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One checkpoint in a worker process, watched from the worker thread: the
 * worker's progress becomes status.step and timings, renewTime is renewed at
 * least every KYB_AGENT_RENEW_INTERVAL_US, and the worker is killed when the
 * request's deadline passes, when the request is deleted, or when the agent
 * is stopping and the grace period ran out.  What to do after a kill
 * (recover the container, fail the request) is the caller's (job.c).
 */
#define KYB_LOG_MODULE "agent"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "agent/internal.h"
#include "agent/worker.h"
#include "kube/client.h"
#include "util/cleanup.h"
#include "util/log.h"

#define POLL_MS 1000

static const kyb_kube_resource requests_res = {"kybernate.io", "v1alpha1", "checkpointrequests",
                                               true};

void kyb_agent_run_outcome_clear(kyb_agent_run_outcome *o) {
  if (o == NULL)
    return;
  json_decref(o->result);
  json_decref(o->error);
  free(o->phase);
  memset(o, 0, sizeof(*o));
}

int kyb_agent_renew(kyb_agent_progress *p, kyb_error **err) {
  if (p->req == NULL || p->a->work_kc == NULL)
    return 0;
  int64_t now = kyb_kube_now_us();
  cleanup_json json_t *patch =
      kyb_agent_renew_patch(p->step_dirty ? p->step : NULL, p->timings, now);
  if (patch == NULL)
    return kyb_error_set(err, ENOMEM, "renewal");
  if (kyb_kube_patch(p->a->work_kc, &requests_res, p->req->ns, p->req->name, patch, "status", NULL,
                     err) < 0) {
    if (kyb_kube_status_of(*err) == 404)
      return kyb_error_set(err, ENOENT, "CheckpointRequest %s/%s was deleted", p->req->ns,
                           p->req->name);
    return -1;
  }
  p->last_renew_us = now;
  p->step_dirty = false;
  log_debug("renewed %s/%s (step %s)", p->req->ns, p->req->name, p->step ? p->step : "-");
  return 0;
}

static void on_phase(void *ud, const char *phase, bool done, long ms) {
  kyb_agent_progress *p = ud;
  if (done) {
    if (p->timings != NULL && ms >= 0) {
      json_int_t prev = json_integer_value(json_object_get(p->timings, phase));
      json_object_set_new(p->timings, phase, json_integer(prev + ms));
    }
    log_info("%s done in %ld ms", phase, ms);
    return;
  }
  const char *step = kyb_agent_step_of_phase(phase);
  if (step != NULL && (p->step == NULL || strcmp(step, p->step) != 0)) {
    p->step = step;
    p->step_dirty = true;
  }
}

/* Which reason, if any, ends the run from outside now. */
kyb_agent_run_end kyb_agent_must_stop(kyb_agent_progress *p, int64_t now) {
  kyb_agent *a = p->a;
  if (kyb_agent_stopping(a)) {
    if (a->stop_since_us == 0)
      a->stop_since_us = now;
    long grace =
        a->cfg->shutdown_grace_s > 0 ? a->cfg->shutdown_grace_s : KYB_AGENT_DEFAULT_GRACE_S;
    if (now - a->stop_since_us >= (int64_t)grace * 1000000)
      return KYB_AGENT_RUN_SHUTDOWN;
  }
  if (p->req != NULL && kyb_agent_deadline_passed(p->req, now))
    return KYB_AGENT_RUN_DEADLINE;
  return KYB_AGENT_RUN_DONE;
}

static int poll_timeout(const kyb_agent_progress *p, int64_t now) {
  int64_t t = POLL_MS * 1000LL;
  if (p->req != NULL) {
    int64_t renew = p->last_renew_us + KYB_AGENT_RENEW_INTERVAL_US - now;
    int64_t deadline = kyb_agent_deadline_left(p->req, now);
    if (renew < t)
      t = renew;
    if (deadline < t)
      t = deadline;
  }
  return t <= 0 ? 0 : (int)(t / 1000) + 1;
}

int kyb_agent_run_worker(kyb_agent *a, const json_t *job, kyb_agent_progress *p,
                         kyb_agent_run_outcome *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  kyb_agent_worker *w = NULL;
  if (kyb_agent_worker_start(a->exe, (const char *const *)a->worker_args, job, &w, err) < 0)
    return -1;
  log_info("checkpoint worker %d: %s", (int)kyb_agent_worker_pid(w),
           json_string_value(json_object_get(job, "name"))
               ? json_string_value(json_object_get(job, "name"))
               : "(local)");
  kyb_agent_run_end end = KYB_AGENT_RUN_DONE;
  int r = 0;
  while (true) {
    struct pollfd pfd = {.fd = kyb_agent_worker_fd(w), .events = POLLIN};
    int pr = poll(&pfd, 1, poll_timeout(p, kyb_kube_now_us()));
    if (pr < 0 && errno != EINTR) {
      r = kyb_error_errno(err, "poll the checkpoint worker");
      break;
    }
    int rd = 0;
    if (pr > 0) {
      rd = kyb_agent_worker_read(w, on_phase, p, err);
      if (rd < 0) {
        r = -1;
        break;
      }
    }
    int64_t now = kyb_kube_now_us();
    if (p->req != NULL && (p->step_dirty || kyb_agent_renew_due(p->last_renew_us, now))) {
      cleanup_error kyb_error *rerr = NULL;
      if (kyb_agent_renew(p, &rerr) < 0) {
        if (kyb_error_code(rerr) == ENOENT) {
          log_warn_chain(rerr, "stopping the checkpoint");
          end = KYB_AGENT_RUN_GONE;
          break;
        }
        /* Not fatal: the next tick retries; the operator only gives up
         * after two minutes without a renewal. */
        log_warn_chain(rerr, "renewal of %s/%s failed", p->req->ns, p->req->name);
        p->last_renew_us = now - KYB_AGENT_RENEW_INTERVAL_US + 2000000;
      }
    }
    if (rd == 1)
      break;
    end = kyb_agent_must_stop(p, now);
    if (end != KYB_AGENT_RUN_DONE)
      break;
  }
  if (end != KYB_AGENT_RUN_DONE || r < 0) {
    log_warn("killing checkpoint worker %d (%s)", (int)kyb_agent_worker_pid(w),
             end == KYB_AGENT_RUN_DEADLINE   ? "deadline passed"
             : end == KYB_AGENT_RUN_SHUTDOWN ? "agent stopping, grace period over"
             : end == KYB_AGENT_RUN_GONE     ? "request deleted"
                                             : "lost contact");
    kyb_agent_worker_kill(w);
  }
  if (r < 0) {
    log_warn_chain(*err, "checkpoint worker %d", (int)kyb_agent_worker_pid(w));
    kyb_error_clear(err);
  }
  cleanup_error kyb_error *werr = NULL;
  if (kyb_agent_worker_wait(w, &out->wait_status, &werr) < 0)
    log_warn_chain(werr, "worker");
  out->end = end;
  if (kyb_agent_worker_result(w) != NULL)
    out->result = json_deep_copy(kyb_agent_worker_result(w));
  if (kyb_agent_worker_error(w) != NULL)
    out->error = json_deep_copy(kyb_agent_worker_error(w));
  if (kyb_agent_worker_phase(w) != NULL)
    out->phase = strdup(kyb_agent_worker_phase(w));
  /* Without a last word the worker died (or we lost contact with it and
   * killed it): an outcome for the caller to recover from, not an error. */
  if (end == KYB_AGENT_RUN_DONE && out->result == NULL && out->error == NULL)
    out->end = KYB_AGENT_RUN_CRASHED;
  kyb_agent_worker_free(w);
  return 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Remote stores through kybernate-uploader (lib/uploader/client.h): the
 * agent holds no storage credentials, the uploader sidecar does.
 */
#define KYB_LOG_MODULE "agent"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/internal.h"
#include "store/store.h"
#include "uploader/client.h"
#include "util/cleanup.h"
#include "util/log.h"

#define POLL_MS 500
/* Submissions of one upload when the uploader restarts under it. */
#define UPLOAD_ATTEMPTS 4
#define RESUBMIT_MS 2000

/* The uploader's jobs live in its memory: after a restart it answers 404
 * for the job being followed; while it restarts its socket refuses (or, as
 * it shuts down, answers 503).  Then the upload is submitted again; the
 * stores resume at blob granularity, so what was pushed is not sent twice.
 * ENOENT counts only once the job was accepted (before, it is the uploader
 * saying the local image is not there). */
static bool uploader_went_away(int e, bool accepted) {
  return e == ECONNREFUSED || e == EAGAIN || (accepted && e == ENOENT);
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

/* Called at every poll of the job: renewals go on during long uploads, and
 * the deadline, a deleted request or the end of the shutdown grace stop the
 * wait (the caller cancels the job). */
static int on_poll(void *ud, const kyb_upload_job *j) {
  kyb_agent_progress *p = ud;
  if (p == NULL)
    return 0;
  log_debug("upload %s: %llu of %llu bytes", j->id ? j->id : "?", (unsigned long long)j->done,
            (unsigned long long)j->total);
  int64_t now = kyb_kube_now_us();
  if (p->req != NULL && (p->step_dirty || kyb_agent_renew_due(p->last_renew_us, now))) {
    cleanup_error kyb_error *err = NULL;
    if (kyb_agent_renew(p, &err) < 0) {
      if (kyb_error_code(err) == ENOENT) {
        p->stopped = KYB_AGENT_RUN_GONE;
        return 1;
      }
      log_warn_chain(err, "renewal during the upload");
    }
  }
  p->stopped = kyb_agent_must_stop(p, now);
  return p->stopped != KYB_AGENT_RUN_DONE;
}

int kyb_agent_upload(kyb_agent *a, const char *local_ref, const char *store_uri,
                     kyb_agent_progress *p, char **ref, kyb_error **err) {
  *ref = NULL;
  cleanup_free char *local_store = NULL;
  cleanup_free char *name = NULL;
  if (kyb_image_ref_parse(local_ref, NULL, &local_store, &name, err) < 0)
    return -1;
  kyb_uploader_client *c = NULL;
  if (kyb_uploader_client_new(a->cfg->uploader, &c, err) < 0)
    return kyb_error_wrap(err, "uploader");
  kyb_upload_job job = {0};
  uint64_t t0 = (uint64_t)kyb_kube_now_us();
  int r = -1;
  for (int attempt = 1;; attempt++) {
    bool accepted = false;
    r = kyb_uploader_client_upload(c, local_ref, store_uri, &job, err);
    if (r == 0) {
      accepted = true;
      r = kyb_uploader_client_wait(c, job.id, POLL_MS, on_poll, p, &job, err);
      if (r < 0 && p != NULL && p->stopped != KYB_AGENT_RUN_DONE) {
        cleanup_error kyb_error *cerr = NULL;
        if (kyb_uploader_client_cancel(c, job.id, NULL, &cerr) < 0)
          log_warn_chain(cerr, "cancel upload %s", job.id);
      }
    }
    if (r == 0 || attempt == UPLOAD_ATTEMPTS || (p != NULL && p->stopped != KYB_AGENT_RUN_DONE) ||
        !uploader_went_away(kyb_error_code(*err), accepted))
      break;
    log_warn("upload of %s to %s: %s; the uploader restarted or is restarting: submitting it "
             "again in %u ms (attempt %d of %d)",
             name, store_uri, kyb_error_message(*err), RESUBMIT_MS, attempt + 1, UPLOAD_ATTEMPTS);
    kyb_error_clear(err);
    kyb_upload_job_clear(&job);
    sleep_ms(RESUBMIT_MS);
  }
  if (r < 0 && kyb_error_code(*err) == EEXIST) {
    /* The store has this name already: names are fixed per request, so it
     * is this request's image, uploaded before an agent restart. */
    log_info("%s is in %s already", name, store_uri);
    kyb_error_clear(err);
    r = 0;
    free(job.ref);
    job.ref = NULL;
  }
  if (r == 0) {
    *ref = job.ref ? strdup(job.ref) : kyb_image_ref_format(store_uri, name);
    if (*ref == NULL)
      r = kyb_error_set(err, ENOMEM, "image reference");
  } else {
    kyb_error_wrap(err, "upload of %s to %s through kybernate-uploader", name, store_uri);
  }
  if (r == 0 && p != NULL && p->timings != NULL) {
    json_int_t ms = (json_int_t)(((uint64_t)kyb_kube_now_us() - t0) / 1000);
    json_int_t prev = json_integer_value(json_object_get(p->timings, "upload"));
    json_object_set_new(p->timings, "upload", json_integer(prev + ms));
  }
  kyb_upload_job_clear(&job);
  kyb_uploader_client_free(c);
  return r;
}

int kyb_agent_remote_delete(kyb_agent *a, const char *ref, bool *existed, kyb_error **err) {
  *existed = false;
  kyb_uploader_client *c = NULL;
  if (kyb_uploader_client_new(a->cfg->uploader, &c, err) < 0)
    return kyb_error_wrap(err, "uploader");
  int r = kyb_uploader_client_delete(c, ref, NULL, err);
  if (r == 0)
    *existed = true;
  else if (kyb_error_code(*err) == ENOENT) { /* gone already: what was asked for */
    kyb_error_clear(err);
    r = 0;
  }
  kyb_uploader_client_free(c);
  return r;
}

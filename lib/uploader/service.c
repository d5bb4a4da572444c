/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The job service (service.h): table, queue, workers, retries, cancel,
 * shutdown.
 */
#define KYB_LOG_MODULE "jobs"

#include "uploader/service.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/cleanup.h"
#include "util/log.h"

#define WORKERS_DEFAULT 2
#define WORKERS_MAX 16
#define RETRIES_DEFAULT 3
#define BACKOFF_DEFAULT_MS 2000
#define BACKOFF_MAX_DEFAULT_MS 60000
#define ACTIVE_DEFAULT 64
#define KEPT_DEFAULT 256

struct kyb_uploader {
  kyb_uploader_opts o;
  pthread_mutex_t lock;
  pthread_cond_t work;    /* a job was queued, or stopping */
  pthread_cond_t changed; /* a job changed state, or a cancel was asked */
  kyb_job **jobs;         /* submission order */
  size_t njobs, cap;
  size_t active, running, finished;
  bool stopping;
  pthread_t *threads;
  int nthreads;
  int live; /* workers not yet returned */
};

struct kyb_job_ctx {
  kyb_uploader *u;
  kyb_job *j;
};

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits on cv until deadline (CLOCK_MONOTONIC ms); false when it passed. */
static bool wait_until(pthread_cond_t *cv, pthread_mutex_t *m, uint64_t deadline) {
  uint64_t now = mono_ms();
  if (now >= deadline)
    return false;
  struct timespec ts = {.tv_sec = (time_t)(deadline / 1000),
                        .tv_nsec = (long)(deadline % 1000) * 1000000L};
  return pthread_cond_timedwait(cv, m, &ts) != ETIMEDOUT || mono_ms() < deadline;
}

bool kyb_uploader_transient(const kyb_error *err) {
  switch (kyb_error_code(err)) {
  case ECONNREFUSED:
  case ECONNRESET:
  case ECONNABORTED:
  case ETIMEDOUT:
  case EHOSTUNREACH:
  case ENETUNREACH:
  case ENETDOWN:
  case EPIPE:
  case EAGAIN:
  case EIO:
    return true;
  default:
    return false;
  }
}

/* ---- runner side ------------------------------------------------------------ */

int kyb_job_ctx_progress(kyb_job_ctx *c, const char *part, uint64_t done, uint64_t total,
                         kyb_error **err) {
  kyb_uploader *u = c->u;
  kyb_job *j = c->j;
  int r = 0;
  pthread_mutex_lock(&u->lock);
  if (j->cancel) {
    r = kyb_error_set(err, ECANCELED, "job %s cancelled", j->id);
  } else {
    j->done = done;
    j->total = total;
    if (part == NULL || j->part == NULL || strcmp(part, j->part) != 0) {
      free(j->part);
      j->part = part ? strdup(part) : NULL;
    }
  }
  pthread_mutex_unlock(&u->lock);
  return r;
}

bool kyb_job_ctx_cancelled(kyb_job_ctx *c) {
  pthread_mutex_lock(&c->u->lock);
  bool r = c->j->cancel;
  pthread_mutex_unlock(&c->u->lock);
  return r;
}

const char *kyb_job_ctx_id(const kyb_job_ctx *c) {
  return c->j->id;
}

/* ---- the table (lock held) ----------------------------------------------------- */

static kyb_job *find(kyb_uploader *u, const char *id) {
  for (size_t i = 0; i < u->njobs; i++)
    if (strcmp(u->jobs[i]->id, id) == 0)
      return u->jobs[i];
  return NULL;
}

/* Drops the oldest finished jobs beyond max_kept. */
static void evict(kyb_uploader *u) {
  size_t w = 0;
  for (size_t i = 0; i < u->njobs; i++) {
    kyb_job *j = u->jobs[i];
    if (u->finished > u->o.max_kept && kyb_job_state_final(j->state)) {
      kyb_job_free(j);
      u->finished--;
      continue;
    }
    u->jobs[w++] = j;
  }
  u->njobs = w;
}

/* "upload of <source> to <destination>" / "fetch of <ref> into the node
 * cache", for log lines. */
static const char *what(const kyb_job *j, char *buf, size_t len) {
  if (j->req.op == KYB_JOB_FETCH)
    snprintf(buf, len, "fetch of %s into the node cache", j->req.source);
  else
    snprintf(buf, len, "upload of %s to %s", j->req.source, j->req.destination);
  return buf;
}

/* Moves j by ev and keeps the counters; logs final states. */
static void apply(kyb_uploader *u, kyb_job *j, kyb_job_event ev) {
  kyb_job_state before = j->state;
  cleanup_error kyb_error *err = NULL;
  if (kyb_job_apply(j, ev, time(NULL), &err) < 0) {
    log_error_chain(err, "job state machine");
    return;
  }
  if (before == KYB_JOB_QUEUED && j->state == KYB_JOB_RUNNING)
    u->running++;
  if (!kyb_job_state_final(before) && kyb_job_state_final(j->state)) {
    u->active--;
    u->finished++;
    if (before == KYB_JOB_RUNNING)
      u->running--;
    char w[8400];
    if (j->state == KYB_JOB_DONE)
      log_info("job %s: %s done (%llu bytes, attempt %d)", j->id, what(j, w, sizeof(w)),
               (unsigned long long)j->result.size, j->attempt);
    else
      log_warn("job %s: %s %s: %s", j->id, what(j, w, sizeof(w)), kyb_job_state_name(j->state),
               j->error ? j->error : "");
  }
  pthread_cond_broadcast(&u->changed);
}

static kyb_job *next_queued(kyb_uploader *u) {
  for (size_t i = 0; i < u->njobs; i++)
    if (u->jobs[i]->state == KYB_JOB_QUEUED)
      return u->jobs[i];
  return NULL;
}

/* ---- workers -------------------------------------------------------------------- */

static long backoff_ms(const kyb_uploader *u, int attempt) {
  long ms = u->o.backoff_ms;
  for (int i = 1; i < attempt && ms < u->o.backoff_max_ms; i++)
    ms *= 2;
  return ms > u->o.backoff_max_ms ? u->o.backoff_max_ms : ms;
}

/* After a failed attempt (lock held): true when another attempt follows
 * (after its backoff, which a cancel or a shutdown cuts short). */
static bool retry_after(kyb_uploader *u, kyb_job *j, kyb_error *err) {
  if (j->cancel || u->stopping || !kyb_uploader_transient(err) || j->attempt > u->o.retries)
    return false;
  long ms = backoff_ms(u, j->attempt);
  log_warn_chain(err, "job %s: attempt %d of %d failed; next in %ld ms", j->id, j->attempt,
                 u->o.retries + 1, ms);
  kyb_job_set_error(j, err); /* visible while it waits */
  uint64_t deadline = mono_ms() + (uint64_t)ms;
  while (!j->cancel && !u->stopping && wait_until(&u->changed, &u->lock, deadline))
    ;
  if (j->cancel || u->stopping)
    return false;
  apply(u, j, KYB_JOB_EV_RETRY);
  return true;
}

/* Runs j's attempts; takes and returns with the lock held. */
static void run_job(kyb_uploader *u, kyb_job *j) {
  kyb_job_ctx ctx = {.u = u, .j = j};
  for (;;) {
    char w[8400];
    log_info("job %s: %s, attempt %d", j->id, what(j, w, sizeof(w)), j->attempt);
    pthread_mutex_unlock(&u->lock);
    kyb_job_result res = {0};
    kyb_error *err = NULL;
    int r = u->o.run(u->o.run_ud, &ctx, &j->req, &res, &err);
    pthread_mutex_lock(&u->lock);
    if (r == 0) {
      kyb_job_result_clear(&j->result);
      j->result = res;
      free(j->error);
      j->error = NULL;
      j->errnum = 0;
      if (j->total == 0 || j->done < j->total)
        j->done = j->total = res.size;
      apply(u, j, KYB_JOB_EV_SUCCEED);
      return;
    }
    kyb_job_result_clear(&res);
    bool again = retry_after(u, j, err);
    if (!again) {
      if (j->cancel) {
        kyb_error_free(err);
        err = NULL;
        kyb_error_set(&err, ECANCELED, "%s",
                      u->stopping ? "stopped: the uploader is stopping and the grace period ended"
                                  : "cancelled while it ran; nothing half-done is visible");
      } else if (u->stopping && kyb_uploader_transient(err)) {
        kyb_error_wrap(&err, "no further attempt: the uploader is stopping");
      }
      kyb_job_set_error(j, err);
      apply(u, j, j->cancel ? KYB_JOB_EV_STOPPED : KYB_JOB_EV_FAIL);
    }
    kyb_error_free(err);
    if (!again)
      return;
  }
}

static void *worker(void *arg) {
  kyb_uploader *u = arg;
  pthread_mutex_lock(&u->lock);
  for (;;) {
    kyb_job *j = next_queued(u);
    if (j == NULL && u->stopping)
      break;
    if (j == NULL) {
      pthread_cond_wait(&u->work, &u->lock);
      continue;
    }
    apply(u, j, KYB_JOB_EV_START);
    run_job(u, j);
    evict(u);
  }
  u->live--;
  pthread_cond_broadcast(&u->changed);
  pthread_mutex_unlock(&u->lock);
  return NULL;
}

/* ---- public calls ------------------------------------------------------------- */

static void set_defaults(kyb_uploader_opts *o) {
  if (o->workers <= 0)
    o->workers = WORKERS_DEFAULT;
  if (o->workers > WORKERS_MAX)
    o->workers = WORKERS_MAX;
  if (o->retries == 0)
    o->retries = RETRIES_DEFAULT;
  if (o->retries < 0)
    o->retries = 0;
  if (o->backoff_ms <= 0)
    o->backoff_ms = BACKOFF_DEFAULT_MS;
  if (o->backoff_max_ms <= 0)
    o->backoff_max_ms = BACKOFF_MAX_DEFAULT_MS;
  if (o->backoff_max_ms < o->backoff_ms)
    o->backoff_max_ms = o->backoff_ms;
  if (o->max_active == 0)
    o->max_active = ACTIVE_DEFAULT;
  if (o->max_kept == 0)
    o->max_kept = KEPT_DEFAULT;
}

int kyb_uploader_new(const kyb_uploader_opts *opts, kyb_uploader **out, kyb_error **err) {
  if (opts->run == NULL)
    return kyb_error_set(err, EINVAL, "uploader: no job runner");
  kyb_uploader *u = calloc(1, sizeof(*u));
  if (u == NULL)
    return kyb_error_set(err, ENOMEM, "uploader");
  u->o = *opts;
  set_defaults(&u->o);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&u->lock, NULL);
  pthread_cond_init(&u->work, NULL);
  pthread_cond_init(&u->changed, &ca);
  pthread_condattr_destroy(&ca);
  u->threads = calloc((size_t)u->o.workers, sizeof(*u->threads));
  if (u->threads == NULL) {
    kyb_uploader_free(u);
    return kyb_error_set(err, ENOMEM, "uploader");
  }
  for (int i = 0; i < u->o.workers; i++) {
    int e = pthread_create(&u->threads[i], NULL, worker, u);
    if (e != 0) {
      kyb_uploader_shutdown(u, 0, 0);
      kyb_uploader_free(u);
      return kyb_error_set(err, e, "uploader: start worker thread %d", i + 1);
    }
    pthread_mutex_lock(&u->lock);
    u->nthreads++;
    u->live++;
    pthread_mutex_unlock(&u->lock);
  }
  *out = u;
  return 0;
}

/* An active job that writes req's destination, or NULL. */
static kyb_job *writing(kyb_uploader *u, const kyb_job_request *req) {
  for (size_t i = 0; i < u->njobs; i++) {
    kyb_job *j = u->jobs[i];
    if (!kyb_job_state_final(j->state) && j->req.op == req->op &&
        strcmp(j->req.destination, req->destination) == 0)
      return j;
  }
  return NULL;
}

/* A new queued job in the table, or NULL with err set. */
static kyb_job *add(kyb_uploader *u, kyb_job_request *req, kyb_error **err) {
  char id[KYB_JOB_ID_LEN + 1];
  if (kyb_job_new_id(id, err) < 0)
    return NULL;
  if (u->njobs == u->cap) {
    size_t nc = u->cap ? 2 * u->cap : 16;
    kyb_job **v = realloc(u->jobs, nc * sizeof(kyb_job *));
    if (v == NULL) {
      kyb_error_set(err, ENOMEM, "job table");
      return NULL;
    }
    u->jobs = v;
    u->cap = nc;
  }
  kyb_job *j = kyb_job_new(id, req, time(NULL));
  if (j == NULL) {
    kyb_error_set(err, ENOMEM, "job");
    return NULL;
  }
  u->jobs[u->njobs++] = j;
  u->active++;
  return j;
}

int kyb_uploader_submit(kyb_uploader *u, kyb_job_request *req, json_t **job, bool *joined,
                        kyb_error **err) {
  int r = 0;
  kyb_job *j = NULL;
  *joined = false;
  pthread_mutex_lock(&u->lock);
  kyb_job *other = writing(u, req);
  if (u->stopping) {
    r = kyb_error_set(err, ESHUTDOWN, "the uploader is stopping: no new jobs");
  } else if (other != NULL && kyb_job_request_same(&other->req, req)) {
    j = other;
    *joined = true;
  } else if (other != NULL) {
    r = kyb_error_set(err, EEXIST, "job %s (%s of %s) is writing %s already", other->id,
                      kyb_job_op_name(other->req.op), other->req.source, req->destination);
  } else if (u->active >= u->o.max_active) {
    r = kyb_error_set(err, EAGAIN, "%zu jobs are queued or running: try again later", u->active);
  } else if ((j = add(u, req, err)) == NULL) {
    r = -1;
  } else {
    char w[8400];
    log_info("job %s: %s queued", j->id, what(j, w, sizeof(w)));
    pthread_cond_signal(&u->work);
  }
  if (r == 0 && (*job = kyb_job_json(j)) == NULL)
    r = kyb_error_set(err, ENOMEM, "job");
  pthread_mutex_unlock(&u->lock);
  return r;
}

json_t *kyb_uploader_get(kyb_uploader *u, const char *id) {
  pthread_mutex_lock(&u->lock);
  kyb_job *j = find(u, id);
  json_t *r = j ? kyb_job_json(j) : NULL;
  pthread_mutex_unlock(&u->lock);
  return r;
}

json_t *kyb_uploader_list(kyb_uploader *u) {
  json_t *arr = json_array();
  pthread_mutex_lock(&u->lock);
  for (size_t i = 0; arr != NULL && i < u->njobs; i++)
    if (json_array_append_new(arr, kyb_job_json(u->jobs[i])) < 0) {
      json_decref(arr);
      arr = NULL;
    }
  pthread_mutex_unlock(&u->lock);
  return arr ? json_pack("{s:o}", "jobs", arr) : NULL;
}

int kyb_uploader_cancel(kyb_uploader *u, const char *id, json_t **job, kyb_error **err) {
  int r = 0;
  pthread_mutex_lock(&u->lock);
  kyb_job *j = find(u, id);
  if (j == NULL) {
    r = kyb_error_set(err, ENOENT, "no job %s", id);
  } else if (kyb_job_state_final(j->state)) {
    r = kyb_error_set(err, EALREADY, "job %s has finished (%s)", id, kyb_job_state_name(j->state));
  } else {
    if (j->state == KYB_JOB_QUEUED) {
      cleanup_error kyb_error *why = NULL;
      kyb_error_set(&why, ECANCELED, "cancelled before it started");
      kyb_job_set_error(j, why);
    }
    apply(u, j, KYB_JOB_EV_CANCEL);
    log_info("job %s: cancel asked", id);
  }
  if (r == 0 && (*job = kyb_job_json(j)) == NULL)
    r = kyb_error_set(err, ENOMEM, "job");
  pthread_mutex_unlock(&u->lock);
  return r;
}

json_t *kyb_uploader_health(kyb_uploader *u) {
  pthread_mutex_lock(&u->lock);
  json_t *r = json_pack("{s:s, s:i, s:I, s:I, s:I}", "status", u->stopping ? "stopping" : "ok",
                        "workers", u->o.workers, "queued", (json_int_t)(u->active - u->running),
                        "running", (json_int_t)u->running, "finished", (json_int_t)u->finished);
  pthread_mutex_unlock(&u->lock);
  return r;
}

bool kyb_uploader_stopping(kyb_uploader *u) {
  pthread_mutex_lock(&u->lock);
  bool r = u->stopping;
  pthread_mutex_unlock(&u->lock);
  return r;
}

bool kyb_uploader_shutdown(kyb_uploader *u, long grace_ms, long stop_ms) {
  pthread_mutex_lock(&u->lock);
  u->stopping = true;
  for (size_t i = 0; i < u->njobs; i++)
    if (u->jobs[i]->state == KYB_JOB_QUEUED) {
      cleanup_error kyb_error *why = NULL;
      kyb_error_set(&why, ECANCELED, "cancelled: the uploader stopped before it started");
      kyb_job_set_error(u->jobs[i], why);
      apply(u, u->jobs[i], KYB_JOB_EV_CANCEL);
    }
  pthread_cond_broadcast(&u->work);
  pthread_cond_broadcast(&u->changed);
  uint64_t deadline = mono_ms() + (uint64_t)(grace_ms > 0 ? grace_ms : 0);
  while (u->running > 0 && wait_until(&u->changed, &u->lock, deadline))
    ;
  if (u->running > 0) {
    log_warn("%zu job(s) still running after the grace period: cancelling them", u->running);
    for (size_t i = 0; i < u->njobs; i++)
      if (u->jobs[i]->state == KYB_JOB_RUNNING)
        apply(u, u->jobs[i], KYB_JOB_EV_CANCEL);
  }
  deadline = mono_ms() + (uint64_t)(stop_ms > 0 ? stop_ms : 0);
  while (u->live > 0 && wait_until(&u->changed, &u->lock, deadline))
    ;
  bool all = u->live == 0;
  pthread_mutex_unlock(&u->lock);
  if (all)
    for (int i = 0; i < u->nthreads; i++)
      pthread_join(u->threads[i], NULL);
  if (all)
    u->nthreads = 0;
  return all;
}

void kyb_uploader_free(kyb_uploader *u) {
  if (u == NULL)
    return;
  if (u->nthreads > 0 && !kyb_uploader_shutdown(u, 0, 0))
    return; /* workers still run: leaking beats freeing what they use */
  for (size_t i = 0; i < u->njobs; i++)
    kyb_job_free(u->jobs[i]);
  free(u->jobs);
  free(u->threads);
  pthread_cond_destroy(&u->work);
  pthread_cond_destroy(&u->changed);
  pthread_mutex_destroy(&u->lock);
  free(u);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the uploader's jobs: the state machine (lib/uploader/job.h),
 * the service (service.h: workers, joining, conflicts, retries with
 * backoff on transient errors only, cancel queued and running, limits,
 * retention, shutdown) and the API routing (api.h: every endpoint and its
 * HTTP statuses), with a scripted runner standing in for the transfers
 * (test_uploader_transfer.c runs the real one). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "uploader/api.h"
#include "uploader/job.h"
#include "uploader/service.h"
#include "util/cleanup.h"

static const char *const locals[] = {"file:///local"};
static const kyb_job_policy pol = {
    .default_store = "file:///local", .locals = locals, .nlocals = 1};

/* ---- a scripted runner ----------------------------------------------------------
 * By image name: "ok*" reports progress and succeeds; "flakyN*" fails with
 * ECONNREFUSED N times, then succeeds; "bad*" fails with EACCES; "block*"
 * reports progress until cancelled or released; "slow*" succeeds after a
 * while of progress reports. */
typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t cv;
  int calls;    /* attempts run, all jobs */
  int blocking; /* "block" attempts now running */
  bool release; /* "block" attempts succeed */
} script;

static script sc = {.lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void nap(long ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int succeed(const kyb_job_request *req, kyb_job_result *res) {
  res->ref = strdup(req->destination);
  res->digest = strdup("sha256:00");
  res->size = 300;
  return 0;
}

static int run(void *ud, kyb_job_ctx *ctx, const kyb_job_request *req, kyb_job_result *res,
               kyb_error **err) {
  (void)ud;
  pthread_mutex_lock(&sc.lock);
  int call = ++sc.calls;
  pthread_mutex_unlock(&sc.lock);
  (void)call;
  const char *n = req->name;
  if (strncmp(n, "ok", 2) == 0) {
    for (uint64_t d = 0; d <= 300; d += 100)
      if (kyb_job_ctx_progress(ctx, "criu/pages-1.img", d, 300, err) < 0)
        return -1;
    return succeed(req, res);
  }
  if (strncmp(n, "flaky", 5) == 0) {
    static int failures; /* one flaky job at a time in these tests */
    int want = n[5] - '0';
    pthread_mutex_lock(&sc.lock);
    bool fail = failures < want;
    failures = fail ? failures + 1 : 0;
    pthread_mutex_unlock(&sc.lock);
    if (fail)
      return kyb_error_set(err, ECONNREFUSED, "registry: connection refused");
    return succeed(req, res);
  }
  if (strncmp(n, "bad", 3) == 0)
    return kyb_error_set(err, EACCES, "registry refused access: HTTP 401 Unauthorized");
  if (strncmp(n, "slow", 4) == 0) {
    for (uint64_t d = 0; d < 20; d++) {
      if (kyb_job_ctx_progress(ctx, "rootfs-diff.tar", d, 20, err) < 0)
        return -1;
      nap(5);
    }
    return succeed(req, res);
  }
  if (strncmp(n, "block", 5) == 0) {
    pthread_mutex_lock(&sc.lock);
    sc.blocking++;
    pthread_cond_broadcast(&sc.cv);
    pthread_mutex_unlock(&sc.lock);
    int r = 0;
    for (uint64_t d = 0;; d++) {
      if (kyb_job_ctx_progress(ctx, "criu/pages-1.img", d % 100, 100, err) < 0) {
        r = -1;
        break;
      }
      pthread_mutex_lock(&sc.lock);
      bool go = sc.release;
      pthread_mutex_unlock(&sc.lock);
      if (go)
        break;
      nap(2);
    }
    pthread_mutex_lock(&sc.lock);
    sc.blocking--;
    pthread_mutex_unlock(&sc.lock);
    return r < 0 ? -1 : succeed(req, res);
  }
  return kyb_error_set(err, EINVAL, "no script for %s", n);
}

static void wait_blocking(int n) {
  pthread_mutex_lock(&sc.lock);
  while (sc.blocking < n)
    pthread_cond_wait(&sc.cv, &sc.lock);
  pthread_mutex_unlock(&sc.lock);
}

static kyb_uploader *service(int workers, size_t max_active, size_t max_kept) {
  kyb_uploader_opts o = {.workers = workers,
                         .retries = 2,
                         .backoff_ms = 1,
                         .backoff_max_ms = 4,
                         .max_active = max_active,
                         .max_kept = max_kept,
                         .run = run};
  kyb_uploader *u = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_uploader_new(&o, &u, &err), 0);
  pthread_mutex_lock(&sc.lock);
  sc.release = false;
  pthread_mutex_unlock(&sc.lock);
  return u;
}

static kyb_job_request upload_req(const char *name, const char *src_store) {
  char body[512];
  snprintf(body, sizeof(body), "{\"op\":\"upload\",\"image\":\"%s/%s\",\"to\":\"oci://h/r\"}",
           src_store ? src_store : "file:///local", name);
  kyb_job_request rq = {0};
  cleanup_error kyb_error *err = NULL;
  const char *const more[] = {"file:///local", "file:///other"};
  kyb_job_policy p = {.default_store = "file:///local", .locals = more, .nlocals = 2};
  if (kyb_job_request_parse(body, strlen(body), &p, &rq, &err) < 0)
    fail_msg("%s", kyb_error_message(err));
  return rq;
}

/* Submits; returns the new job's id (malloc'd). */
static char *submit(kyb_uploader *u, const char *name, bool *joined) {
  kyb_job_request rq = upload_req(name, NULL);
  json_t *j = NULL;
  bool jn = false;
  cleanup_error kyb_error *err = NULL;
  if (kyb_uploader_submit(u, &rq, &j, &jn, &err) < 0)
    fail_msg("submit %s: %s", name, kyb_error_message(err));
  kyb_job_request_clear(&rq);
  if (joined)
    *joined = jn;
  char *id = strdup(json_string_value(json_object_get(j, "id")));
  json_decref(j);
  return id;
}

/* Waits (deadline 60 s) until job id is in `state`; returns its JSON. */
static json_t *wait_state(kyb_uploader *u, const char *id, const char *state) {
  for (int i = 0; i < 30000; i++) {
    json_t *j = kyb_uploader_get(u, id);
    assert_non_null(j);
    if (strcmp(json_string_value(json_object_get(j, "state")), state) == 0)
      return j;
    json_decref(j);
    nap(2);
  }
  fail_msg("job %s never became %s", id, state);
  return NULL;
}

/* ---- the state machine ------------------------------------------------------------ */

static void test_state_machine(void **state) {
  (void)state;
  struct {
    kyb_job_state from;
    bool cancel;
    kyb_job_event ev;
    int ok;
    kyb_job_state to;
  } t[] = {
      {KYB_JOB_QUEUED, false, KYB_JOB_EV_START, 1, KYB_JOB_RUNNING},
      {KYB_JOB_QUEUED, false, KYB_JOB_EV_CANCEL, 1, KYB_JOB_CANCELLED},
      {KYB_JOB_QUEUED, false, KYB_JOB_EV_SUCCEED, 0, KYB_JOB_QUEUED},
      {KYB_JOB_QUEUED, false, KYB_JOB_EV_FAIL, 0, KYB_JOB_QUEUED},
      {KYB_JOB_QUEUED, false, KYB_JOB_EV_RETRY, 0, KYB_JOB_QUEUED},
      {KYB_JOB_QUEUED, false, KYB_JOB_EV_STOPPED, 0, KYB_JOB_QUEUED},
      {KYB_JOB_RUNNING, false, KYB_JOB_EV_START, 0, KYB_JOB_RUNNING},
      {KYB_JOB_RUNNING, false, KYB_JOB_EV_RETRY, 1, KYB_JOB_RUNNING},
      {KYB_JOB_RUNNING, false, KYB_JOB_EV_SUCCEED, 1, KYB_JOB_DONE},
      {KYB_JOB_RUNNING, false, KYB_JOB_EV_FAIL, 1, KYB_JOB_FAILED},
      {KYB_JOB_RUNNING, false, KYB_JOB_EV_CANCEL, 1, KYB_JOB_RUNNING},
      {KYB_JOB_RUNNING, false, KYB_JOB_EV_STOPPED, 0, KYB_JOB_RUNNING},
      {KYB_JOB_RUNNING, true, KYB_JOB_EV_STOPPED, 1, KYB_JOB_CANCELLED},
      {KYB_JOB_RUNNING, true, KYB_JOB_EV_RETRY, 0, KYB_JOB_RUNNING},
      {KYB_JOB_RUNNING, true, KYB_JOB_EV_SUCCEED, 1, KYB_JOB_DONE},
      {KYB_JOB_RUNNING, true, KYB_JOB_EV_FAIL, 1, KYB_JOB_FAILED},
  };
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    kyb_job j = {.id = "j", .state = t[i].from, .cancel = t[i].cancel, .attempt = 1, .done = 5};
    cleanup_error kyb_error *err = NULL;
    int r = kyb_job_apply(&j, t[i].ev, 100, &err);
    if ((r == 0) != (t[i].ok == 1) || j.state != t[i].to)
      fail_msg("case %zu: %s --%d--> got r=%d state %s", i, kyb_job_state_name(t[i].from),
               (int)t[i].ev, r, kyb_job_state_name(j.state));
    if (r < 0)
      assert_int_equal(kyb_error_code(err), EINVAL);
    if (r == 0 && t[i].ev == KYB_JOB_EV_CANCEL && t[i].from == KYB_JOB_RUNNING)
      assert_true(j.cancel); /* asked, not yet stopped */
    if (r == 0 && t[i].ev == KYB_JOB_EV_RETRY) {
      assert_int_equal(j.attempt, 2);
      assert_int_equal(j.done, 0);
    }
    if (r == 0 && kyb_job_state_final(j.state))
      assert_int_equal(j.finished, 100);
    free(j.part);
  }
  /* every final state refuses everything */
  kyb_job_state finals[] = {KYB_JOB_DONE, KYB_JOB_FAILED, KYB_JOB_CANCELLED};
  for (size_t f = 0; f < 3; f++)
    for (int ev = KYB_JOB_EV_START; ev <= KYB_JOB_EV_STOPPED; ev++) {
      kyb_job j = {.id = "j", .state = finals[f]};
      cleanup_error kyb_error *err = NULL;
      assert_int_equal(kyb_job_apply(&j, (kyb_job_event)ev, 1, &err), -1);
      assert_int_equal(j.state, finals[f]);
    }
}

static void test_job_json_and_ids(void **state) {
  (void)state;
  char id[KYB_JOB_ID_LEN + 1], id2[KYB_JOB_ID_LEN + 1];
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_job_new_id(id, &err), 0);
  assert_int_equal(kyb_job_new_id(id2, &err), 0);
  assert_true(kyb_job_id_valid(id));
  assert_string_not_equal(id, id2);
  assert_false(kyb_job_id_valid(""));
  assert_false(kyb_job_id_valid("0123456789abcdef0123456789ABCDEF"));
  assert_false(kyb_job_id_valid("0123456789abcdef0123456789abcdef0"));
  assert_false(kyb_job_id_valid("../../etc/passwd"));
  kyb_job_request rq = upload_req("web-1", NULL);
  kyb_job *j = kyb_job_new(id, &rq, 1795873200);
  assert_non_null(j);
  assert_null(rq.name); /* moved */
  assert_int_equal(kyb_job_apply(j, KYB_JOB_EV_START, 1795873201, &err), 0);
  kyb_error *why = NULL;
  kyb_error_set(&why, EACCES, "HTTP 401 Unauthorized");
  kyb_job_set_error(j, why);
  kyb_error_free(why);
  assert_int_equal(kyb_job_apply(j, KYB_JOB_EV_FAIL, 1795873202, &err), 0);
  cleanup_json json_t *o = kyb_job_json(j);
  assert_non_null(o);
  assert_string_equal(json_string_value(json_object_get(o, "op")), "upload");
  assert_string_equal(json_string_value(json_object_get(o, "state")), "failed");
  assert_string_equal(json_string_value(json_object_get(o, "destination")), "oci://h/r:web-1");
  assert_string_equal(json_string_value(json_object_get(o, "created")), "2026-11-28T13:40:00Z");
  const json_t *e = json_object_get(o, "error");
  assert_non_null(strstr(json_string_value(json_object_get(e, "message")), "HTTP 401"));
  assert_int_equal(json_integer_value(json_object_get(e, "errno")), EACCES);
  assert_string_equal(json_string_value(json_object_get(e, "errnoName")), "EACCES");
  assert_true(json_is_null(json_object_get(o, "result")));
  kyb_job_free(j);
}

/* ---- the service ------------------------------------------------------------------ */

static void test_runs_and_reports(void **state) {
  (void)state;
  kyb_uploader *u = service(2, 0, 0);
  cleanup_free char *id = submit(u, "ok-1", NULL);
  cleanup_json json_t *j = wait_state(u, id, "done");
  const json_t *p = json_object_get(j, "progress");
  assert_int_equal(json_integer_value(json_object_get(p, "bytesDone")), 300);
  assert_int_equal(json_integer_value(json_object_get(p, "bytesTotal")), 300);
  assert_int_equal(json_integer_value(json_object_get(j, "attempt")), 1);
  const json_t *r = json_object_get(j, "result");
  assert_string_equal(json_string_value(json_object_get(r, "ref")), "oci://h/r:ok-1");
  assert_true(json_is_null(json_object_get(j, "error")));
  assert_true(json_is_string(json_object_get(j, "finished")));
  cleanup_json json_t *h = kyb_uploader_health(u);
  assert_string_equal(json_string_value(json_object_get(h, "status")), "ok");
  assert_int_equal(json_integer_value(json_object_get(h, "finished")), 1);
  assert_true(kyb_uploader_shutdown(u, 1000, 1000));
  kyb_uploader_free(u);
}

static void test_join_and_conflict(void **state) {
  (void)state;
  kyb_uploader *u = service(2, 0, 0);
  bool joined = true;
  cleanup_free char *id = submit(u, "block-j", &joined);
  assert_false(joined);
  wait_blocking(1);
  cleanup_free char *id2 = submit(u, "block-j", &joined); /* the same request again */
  assert_true(joined);
  assert_string_equal(id, id2);
  /* the same destination from another source: refused */
  kyb_job_request rq = upload_req("block-j", "file:///other");
  json_t *j = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_uploader_submit(u, &rq, &j, &joined, &err), -1);
  assert_int_equal(kyb_error_code(err), EEXIST);
  assert_non_null(strstr(kyb_error_message(err), id));
  kyb_job_request_clear(&rq);
  pthread_mutex_lock(&sc.lock);
  sc.release = true;
  pthread_mutex_unlock(&sc.lock);
  json_decref(wait_state(u, id, "done"));
  /* once it ended, the destination is free again (the store refuses a
   * second publish of the name itself) */
  cleanup_free char *id3 = submit(u, "block-j", &joined);
  assert_false(joined);
  assert_string_not_equal(id, id3);
  json_decref(wait_state(u, id3, "done"));
  assert_true(kyb_uploader_shutdown(u, 1000, 1000));
  kyb_uploader_free(u);
}

static void test_retries(void **state) {
  (void)state;
  kyb_uploader *u = service(1, 0, 0);
  /* two transient failures, then it passes on attempt 3 */
  cleanup_free char *a = submit(u, "flaky2", NULL);
  cleanup_json json_t *ja = wait_state(u, a, "done");
  assert_int_equal(json_integer_value(json_object_get(ja, "attempt")), 3);
  assert_true(json_is_null(json_object_get(ja, "error")));
  /* more failures than retries: failed after 1 + 2 attempts, last error kept */
  cleanup_free char *b = submit(u, "flaky5", NULL);
  cleanup_json json_t *jb = wait_state(u, b, "failed");
  assert_int_equal(json_integer_value(json_object_get(jb, "attempt")), 3);
  const json_t *e = json_object_get(jb, "error");
  assert_int_equal(json_integer_value(json_object_get(e, "errno")), ECONNREFUSED);
  assert_non_null(strstr(json_string_value(json_object_get(e, "message")), "connection refused"));
  /* a failure that another attempt cannot fix: no retry */
  cleanup_free char *c = submit(u, "bad-1", NULL);
  cleanup_json json_t *jc = wait_state(u, c, "failed");
  assert_int_equal(json_integer_value(json_object_get(jc, "attempt")), 1);
  assert_non_null(strstr(
      json_string_value(json_object_get(json_object_get(jc, "error"), "message")), "HTTP 401"));
  assert_true(kyb_uploader_shutdown(u, 1000, 1000));
  kyb_uploader_free(u);
  /* what counts as transient */
  int yes[] = {ECONNREFUSED, ECONNRESET, ETIMEDOUT, EHOSTUNREACH, EAGAIN, EIO};
  int no[] = {EACCES, EBADMSG, ENOENT, EEXIST, EINVAL, ECANCELED, ENOSPC};
  for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
    cleanup_error kyb_error *err = NULL;
    kyb_error_set(&err, yes[i], "x");
    assert_true(kyb_uploader_transient(err));
  }
  for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
    cleanup_error kyb_error *err = NULL;
    kyb_error_set(&err, no[i], "x");
    assert_false(kyb_uploader_transient(err));
  }
}

static void test_cancel(void **state) {
  (void)state;
  kyb_uploader *u = service(1, 0, 0);
  cleanup_free char *run_id = submit(u, "block-c", NULL);
  wait_blocking(1);
  cleanup_free char *queued = submit(u, "ok-c", NULL); /* the one worker is busy */
  json_t *j = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_uploader_cancel(u, queued, &j, &err), 0);
  assert_string_equal(json_string_value(json_object_get(j, "state")), "cancelled");
  json_decref(j);
  assert_int_equal(kyb_uploader_cancel(u, run_id, &j, &err), 0);
  assert_string_equal(json_string_value(json_object_get(j, "state")), "running");
  assert_true(json_is_true(json_object_get(j, "cancelRequested")));
  json_decref(j);
  cleanup_json json_t *c = wait_state(u, run_id, "cancelled");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(c, "error"), "errno")),
                   ECANCELED);
  assert_int_equal(kyb_uploader_cancel(u, run_id, &j, &err), -1);
  assert_int_equal(kyb_error_code(err), EALREADY);
  kyb_error_clear(&err);
  assert_int_equal(kyb_uploader_cancel(u, "0123456789abcdef0123456789abcdef", &j, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
  assert_null(kyb_uploader_get(u, "0123456789abcdef0123456789abcdef"));
  assert_true(kyb_uploader_shutdown(u, 1000, 1000));
  kyb_uploader_free(u);
}

static void test_limits_and_retention(void **state) {
  (void)state;
  kyb_uploader *u = service(1, 2, 2);
  cleanup_free char *a = submit(u, "block-l", NULL);
  cleanup_free char *b = submit(u, "ok-l1", NULL);
  kyb_job_request rq = upload_req("ok-l2", NULL);
  json_t *j = NULL;
  bool joined = false;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_uploader_submit(u, &rq, &j, &joined, &err), -1);
  assert_int_equal(kyb_error_code(err), EAGAIN);
  kyb_job_request_clear(&rq);
  pthread_mutex_lock(&sc.lock);
  sc.release = true;
  pthread_mutex_unlock(&sc.lock);
  json_decref(wait_state(u, b, "done"));
  for (int i = 0; i < 4; i++) {
    char name[16];
    snprintf(name, sizeof(name), "ok-r%d", i);
    cleanup_free char *id = submit(u, name, NULL);
    json_decref(wait_state(u, id, "done"));
  }
  /* the worker drops the oldest finished jobs beyond max_kept */
  cleanup_json json_t *all = kyb_uploader_list(u);
  assert_true(json_array_size(json_object_get(all, "jobs")) <= 3);
  assert_null(kyb_uploader_get(u, a));
  assert_true(kyb_uploader_shutdown(u, 1000, 1000));
  kyb_uploader_free(u);
}

static void test_shutdown(void **state) {
  (void)state;
  /* a job that finishes within the grace period is done, the queued one
   * cancelled, new ones refused */
  kyb_uploader *u = service(1, 0, 0);
  cleanup_free char *slow = submit(u, "slow-s", NULL);
  cleanup_free char *queued = submit(u, "ok-s", NULL);
  json_decref(wait_state(u, slow, "running"));
  assert_true(kyb_uploader_shutdown(u, 60000, 1000));
  cleanup_json json_t *js = kyb_uploader_get(u, slow);
  assert_string_equal(json_string_value(json_object_get(js, "state")), "done");
  cleanup_json json_t *jq = kyb_uploader_get(u, queued);
  const char *st = json_string_value(json_object_get(jq, "state"));
  assert_true(strcmp(st, "cancelled") == 0 || strcmp(st, "done") == 0);
  assert_true(kyb_uploader_stopping(u));
  kyb_job_request rq = upload_req("ok-late", NULL);
  json_t *j = NULL;
  bool joined = false;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_uploader_submit(u, &rq, &j, &joined, &err), -1);
  assert_int_equal(kyb_error_code(err), ESHUTDOWN);
  kyb_job_request_clear(&rq);
  kyb_uploader_free(u);

  /* one that does not finish in time is stopped after the grace period */
  u = service(1, 0, 0);
  cleanup_free char *blk = submit(u, "block-s", NULL);
  wait_blocking(1);
  assert_true(kyb_uploader_shutdown(u, 20, 10000));
  cleanup_json json_t *jb = kyb_uploader_get(u, blk);
  assert_string_equal(json_string_value(json_object_get(jb, "state")), "cancelled");
  cleanup_json json_t *h = kyb_uploader_health(u);
  assert_string_equal(json_string_value(json_object_get(h, "status")), "stopping");
  kyb_uploader_free(u);
}

/* ---- the API ---------------------------------------------------------------------- */

static int call(kyb_uploader *u, const char *method, const char *path, const char *body,
                kyb_api_response *r) {
  kyb_api_request rq = {
      .method = method, .path = path, .body = body, .len = body ? strlen(body) : 0};
  kyb_api_response_clear(r);
  kyb_uploader_api(u, &pol, &rq, r);
  return r->status;
}

static const char *msg(const kyb_api_response *r) {
  return json_string_value(json_object_get(json_object_get(r->body, "error"), "message"));
}

static void test_api(void **state) {
  (void)state;
  kyb_uploader *u = service(1, 0, 0);
  kyb_api_response r = {0};
  assert_int_equal(call(u, "GET", "/healthz", NULL, &r), 200);
  assert_string_equal(json_string_value(json_object_get(r.body, "status")), "ok");
  assert_int_equal(call(u, "POST", "/healthz", NULL, &r), 405);
  assert_string_equal(r.allow, "GET, HEAD");

  const char *up = "{\"op\":\"upload\",\"image\":\"block-api\",\"to\":\"oci://h/r\"}";
  assert_int_equal(call(u, "POST", "/v1/jobs", up, &r), 202);
  cleanup_free char *id = strdup(json_string_value(json_object_get(r.body, "id")));
  char loc[64];
  snprintf(loc, sizeof(loc), "/v1/jobs/%s", id);
  assert_string_equal(r.location, loc);
  assert_true(json_is_false(json_object_get(r.body, "joined")));
  wait_blocking(1);
  assert_int_equal(call(u, "POST", "/v1/jobs", up, &r), 200);
  assert_true(json_is_true(json_object_get(r.body, "joined")));
  assert_string_equal(json_string_value(json_object_get(r.body, "id")), id);
  const char *other = "{\"op\":\"upload\",\"image\":\"block-api\",\"to\":\"oci://h/r/\"}";
  assert_int_equal(call(u, "POST", "/v1/jobs", other, &r), 200); /* normalised: the same */

  assert_int_equal(call(u, "POST", "/v1/jobs", "{nope", &r), 400);
  assert_non_null(strstr(msg(&r), "invalid JSON"));
  assert_int_equal(call(u, "POST", "/v1/jobs", NULL, &r), 400);
  assert_non_null(strstr(msg(&r), "empty request body"));
  assert_int_equal(call(u, "POST", "/v1/jobs",
                        "{\"op\":\"upload\",\"image\":\"file:///etc/passwd\",\"to\":\"oci://h/r\"}",
                        &r),
                   403);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(r.body, "error"), "status")),
                   403);
  kyb_api_request big = {
      .method = "POST", .path = "/v1/jobs", .body = "{}", .len = KYB_JOB_REQUEST_MAX + 1};
  kyb_api_response_clear(&r);
  kyb_uploader_api(u, &pol, &big, &r);
  assert_int_equal(r.status, 413);

  assert_int_equal(call(u, "GET", "/v1/jobs", NULL, &r), 200);
  assert_int_equal(json_array_size(json_object_get(r.body, "jobs")), 1);
  assert_int_equal(call(u, "GET", loc, NULL, &r), 200);
  assert_string_equal(json_string_value(json_object_get(r.body, "state")), "running");
  assert_int_equal(call(u, "GET", "/v1/jobs/xyz", NULL, &r), 404);
  assert_int_equal(call(u, "GET", "/v1/jobs/0123456789abcdef0123456789abcdef", NULL, &r), 404);
  assert_int_equal(call(u, "PUT", loc, NULL, &r), 405);
  assert_string_equal(r.allow, "GET, DELETE");
  assert_int_equal(call(u, "PUT", "/v1/jobs", NULL, &r), 405);
  assert_string_equal(r.allow, "GET, POST");
  assert_int_equal(call(u, "GET", "/v2/jobs", NULL, &r), 404);
  assert_non_null(strstr(msg(&r), "no such endpoint"));

  assert_int_equal(call(u, "DELETE", loc, NULL, &r), 202);
  json_decref(wait_state(u, id, "cancelled"));
  assert_int_equal(call(u, "DELETE", loc, NULL, &r), 409);
  assert_non_null(strstr(msg(&r), "has finished"));

  assert_int_equal(call(u, "GET", "/v1/images", NULL, &r), 400);
  assert_non_null(strstr(msg(&r), "store=<URI>"));
  kyb_api_request ls = {.method = "GET", .path = "/v1/images", .store = "file:///etc"};
  kyb_api_response_clear(&r);
  kyb_uploader_api(u, &pol, &ls, &r);
  assert_int_equal(r.status, 403);
  assert_int_equal(call(u, "DELETE", "/v1/images", NULL, &r), 400);
  assert_int_equal(call(u, "POST", "/v1/images", NULL, &r), 405);

  assert_true(kyb_uploader_shutdown(u, 1000, 1000));
  assert_int_equal(call(u, "GET", "/healthz", NULL, &r), 503);
  assert_int_equal(call(u, "POST", "/v1/jobs", up, &r), 503);
  assert_int_equal(r.retry_after_s, 30);
  assert_int_equal(call(u, "GET", loc, NULL, &r), 200); /* jobs stay queryable */
  kyb_api_response_clear(&r);
  kyb_uploader_free(u);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_state_machine),
      cmocka_unit_test(test_job_json_and_ids),
      cmocka_unit_test(test_runs_and_reports),
      cmocka_unit_test(test_join_and_conflict),
      cmocka_unit_test(test_retries),
      cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_limits_and_retention),
      cmocka_unit_test(test_shutdown),
      cmocka_unit_test(test_api),
  };
  return cmocka_run_group_tests_name("uploader_jobs", tests, NULL, NULL);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Job records and their state machine (job.h).
 */
#include "uploader/job.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "image/image.h"
#include "util/cleanup.h"

const char *kyb_job_state_name(kyb_job_state s) {
  switch (s) {
  case KYB_JOB_QUEUED:
    return "queued";
  case KYB_JOB_RUNNING:
    return "running";
  case KYB_JOB_DONE:
    return "done";
  case KYB_JOB_FAILED:
    return "failed";
  case KYB_JOB_CANCELLED:
    return "cancelled";
  }
  return "unknown";
}

bool kyb_job_state_final(kyb_job_state s) {
  return s == KYB_JOB_DONE || s == KYB_JOB_FAILED || s == KYB_JOB_CANCELLED;
}

static const char *event_name(kyb_job_event ev) {
  static const char *const names[] = {"start", "retry", "succeed", "fail", "cancel", "stopped"};
  return (unsigned)ev < sizeof(names) / sizeof(names[0]) ? names[ev] : "unknown";
}

/* The state ev leads to from s, or -1 when s does not allow it. */
static int next_state(kyb_job_state s, bool cancel, kyb_job_event ev) {
  switch (ev) {
  case KYB_JOB_EV_START:
    return s == KYB_JOB_QUEUED ? KYB_JOB_RUNNING : -1;
  case KYB_JOB_EV_RETRY:
    return s == KYB_JOB_RUNNING && !cancel ? KYB_JOB_RUNNING : -1;
  case KYB_JOB_EV_SUCCEED:
    return s == KYB_JOB_RUNNING ? KYB_JOB_DONE : -1;
  case KYB_JOB_EV_FAIL:
    return s == KYB_JOB_RUNNING ? KYB_JOB_FAILED : -1;
  case KYB_JOB_EV_CANCEL:
    return s == KYB_JOB_QUEUED ? KYB_JOB_CANCELLED : s == KYB_JOB_RUNNING ? KYB_JOB_RUNNING : -1;
  case KYB_JOB_EV_STOPPED:
    return s == KYB_JOB_RUNNING && cancel ? KYB_JOB_CANCELLED : -1;
  }
  return -1;
}

int kyb_job_apply(kyb_job *j, kyb_job_event ev, time_t now, kyb_error **err) {
  int to = next_state(j->state, j->cancel, ev);
  if (to < 0)
    return kyb_error_set(err, EINVAL, "job %s is %s%s: %s is not possible", j->id,
                         kyb_job_state_name(j->state), j->cancel ? " (cancelling)" : "",
                         event_name(ev));
  switch (ev) {
  case KYB_JOB_EV_START:
    j->started = now;
    j->attempt = 1;
    break;
  case KYB_JOB_EV_RETRY:
    j->attempt++;
    j->done = 0;
    free(j->part);
    j->part = NULL;
    break;
  case KYB_JOB_EV_CANCEL:
    if (j->state == KYB_JOB_RUNNING) {
      j->cancel = true;
      return 0;
    }
    break;
  default:
    break;
  }
  j->state = (kyb_job_state)to;
  if (kyb_job_state_final(j->state)) {
    j->finished = now;
    free(j->part);
    j->part = NULL;
  }
  return 0;
}

kyb_job *kyb_job_new(const char id[KYB_JOB_ID_LEN + 1], kyb_job_request *req, time_t now) {
  kyb_job *j = calloc(1, sizeof(*j));
  if (j == NULL)
    return NULL;
  memcpy(j->id, id, KYB_JOB_ID_LEN + 1);
  j->req = *req;
  memset(req, 0, sizeof(*req));
  j->state = KYB_JOB_QUEUED;
  j->created = now;
  return j;
}

void kyb_job_result_clear(kyb_job_result *r) {
  free(r->ref);
  free(r->path);
  free(r->digest);
  memset(r, 0, sizeof(*r));
}

void kyb_job_free(kyb_job *j) {
  if (j == NULL)
    return;
  kyb_job_request_clear(&j->req);
  kyb_job_result_clear(&j->result);
  free(j->part);
  free(j->error);
  free(j);
}

void kyb_job_set_error(kyb_job *j, kyb_error *err) {
  free(j->error);
  j->error = strdup(err ? kyb_error_message(err) : "unknown error");
  j->errnum = err ? kyb_error_code(err) : 0;
}

static json_t *time_or_null(time_t t) {
  if (t == 0)
    return json_null();
  char buf[21];
  kyb_image_format_time(t, buf);
  return json_string(buf);
}

static json_t *result_json(const kyb_job *j) {
  if (j->state != KYB_JOB_DONE)
    return json_null();
  return json_pack("{s:s?, s:s?, s:s?, s:I}", "ref", j->result.ref, "path", j->result.path,
                   "digest", j->result.digest, "size", (json_int_t)j->result.size);
}

static json_t *error_json(const kyb_job *j) {
  if (j->error == NULL)
    return json_null();
  const char *name = j->errnum ? strerrorname_np(j->errnum) : NULL;
  return json_pack("{s:s, s:i, s:s?}", "message", j->error, "errno", j->errnum, "errnoName", name);
}

json_t *kyb_job_json(const kyb_job *j) {
  const kyb_job_request *r = &j->req;
  return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:i, s:{s:I, s:I, s:s?}, s:o, s:o, "
                   "s:o, s:o, s:o}",
                   "id", j->id, "op", kyb_job_op_name(r->op), "image", r->name, "source", r->source,
                   "destination", r->destination, "state", kyb_job_state_name(j->state),
                   "cancelRequested", j->cancel, "attempt", j->attempt, "progress", "bytesDone",
                   (json_int_t)j->done, "bytesTotal", (json_int_t)j->total, "part", j->part,
                   "created", time_or_null(j->created), "started", time_or_null(j->started),
                   "finished", time_or_null(j->finished), "error", error_json(j), "result",
                   result_json(j));
}

int kyb_job_new_id(char out[KYB_JOB_ID_LEN + 1], kyb_error **err) {
  unsigned char r[KYB_JOB_ID_LEN / 2];
  if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
    return kyb_error_errno(err, "job id: getrandom");
  for (size_t i = 0; i < sizeof(r); i++)
    snprintf(out + 2 * i, 3, "%02x", r[i]);
  return 0;
}

bool kyb_job_id_valid(const char *s) {
  size_t i = 0;
  for (; s[i] != '\0'; i++)
    if (i >= KYB_JOB_ID_LEN || !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return i == KYB_JOB_ID_LEN;
}

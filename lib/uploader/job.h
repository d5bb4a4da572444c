/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One uploader job: its request, where it is in its life, its progress and
 * its outcome; and the state machine that moves it.
 *
 *                 start           succeed
 *     queued ─────────────► running ────────► done
 *       │                   │  ▲ │ fail
 *       │ cancel            │  └─┘ retry      ──► failed
 *       ▼                   │ stopped (after cancel)
 *     cancelled ◄───────────┘
 *
 * cancel on a queued job ends it at once; on a running job it only asks
 * (the `cancel` flag): the worker stops at its next progress report and
 * ends the job with `stopped`.  done, failed and cancelled are final: every
 * event there is refused.  The functions here do no locking; the service
 * (service.h) holds its lock around them.
 */
#ifndef KYB_UPLOADER_JOB_H
#define KYB_UPLOADER_JOB_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "uploader/request.h"
#include "util/error.h"

#define KYB_JOB_ID_LEN 32 /* lower-case hex */

typedef enum {
  KYB_JOB_QUEUED = 0,
  KYB_JOB_RUNNING,
  KYB_JOB_DONE,
  KYB_JOB_FAILED,
  KYB_JOB_CANCELLED,
} kyb_job_state;

typedef enum {
  KYB_JOB_EV_START,   /* a worker takes it */
  KYB_JOB_EV_RETRY,   /* an attempt failed transiently; another follows */
  KYB_JOB_EV_SUCCEED, /* the transfer is complete */
  KYB_JOB_EV_FAIL,    /* it failed for good */
  KYB_JOB_EV_CANCEL,  /* someone asked to stop it */
  KYB_JOB_EV_STOPPED, /* the worker stopped it after a cancel */
} kyb_job_event;

/* What a finished job produced. */
typedef struct {
  char *ref;    /* the image's reference where it now is */
  char *path;   /* fetch: the local image directory; NULL for uploads */
  char *digest; /* sha256 of its manifest.json */
  uint64_t size;
} kyb_job_result;

typedef struct kyb_job {
  char id[KYB_JOB_ID_LEN + 1];
  kyb_job_request req;
  kyb_job_state state;
  bool cancel; /* stop asked while running */
  int attempt; /* 1 while the first attempt runs */
  uint64_t done, total;
  char *part; /* the file being moved; NULL between files */
  char *error;
  int errnum;
  kyb_job_result result;
  time_t created, started, finished;
} kyb_job;

const char *kyb_job_state_name(kyb_job_state s);
bool kyb_job_state_final(kyb_job_state s);

/* Applies ev: 0, or -1 with EINVAL when the state does not allow it (the
 * job is unchanged).  `now` stamps started/finished. */
int kyb_job_apply(kyb_job *j, kyb_job_event ev, time_t now, kyb_error **err);

/* A new queued job owning *req (moved: *req is zeroed). */
kyb_job *kyb_job_new(const char id[KYB_JOB_ID_LEN + 1], kyb_job_request *req, time_t now);
void kyb_job_free(kyb_job *j);
void kyb_job_result_clear(kyb_job_result *r);

/* Records the failure (message and errno) of err on the job. */
void kyb_job_set_error(kyb_job *j, kyb_error *err);

/* The job as the API shows it (docs/uploader.md). */
json_t *kyb_job_json(const kyb_job *j);

/* 32 random hex digits. */
int kyb_job_new_id(char out[KYB_JOB_ID_LEN + 1], kyb_error **err);
/* Whether s looks like a job id (checked before any lookup). */
bool kyb_job_id_valid(const char *s);

#endif

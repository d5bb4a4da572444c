/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the agent's files share: the context, the work queue, and the calls
 * between agent.c (setup, threads, informer), job.c (requests), run.c (one
 * checkpoint in a worker, watched), api.c (local API).  Not a public header.
 */
#ifndef KYB_AGENT_INTERNAL_H
#define KYB_AGENT_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/agent.h"
#include "agent/claim.h"
#include "agent/request.h"
#include "kube/client.h"
#include "kube/events.h"
#include "ops/nodeconf.h"
#include "util/error.h"

/* A checkpoint asked for through the local API: the worker thread runs it
 * and signals the waiting HTTP thread. */
typedef struct {
  json_t *job; /* worker job (worker.h) */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
  int status; /* HTTP status of the answer */
  json_t *answer;
} kyb_agent_local;

typedef struct kyb_agent_item {
  struct kyb_agent_item *next;
  char *key;              /* "<namespace>/<name>" of a request, or NULL */
  kyb_agent_local *local; /* a local API checkpoint, or NULL */
} kyb_agent_item;

typedef struct {
  const kyb_agent_config *cfg;
  const char *state_dir;
  const char *exe;
  const char *local_uri; /* a file:// store of the node: remote checkpoints wait here for the
                          * uploader (NULL: none) */
  kyb_nodeconf nodeconf;
  const char *default_store;
  kyb_agent_identity me;
  char *worker_args[5];      /* --log-level L --log-format F, NULL-terminated */
  kyb_kube_client *watch_kc; /* the informer's (main thread) */
  kyb_kube_client *work_kc;  /* the worker thread's */
  kyb_kube_recorder *rec;
  /* Restore outcomes from kybernate-runc (report.h) arrive on the local
   * API's threads: their own client (short timeout) and recorder. */
  pthread_mutex_t report_mu;
  kyb_kube_client *report_kc; /* NULL: standalone */
  kyb_kube_recorder *report_rec;

  pthread_mutex_t mu; /* the queue and the fields below */
  pthread_cond_t cv;
  kyb_agent_item *head, *tail;
  size_t queued;
  char *current; /* what the worker does now, for /v1/healthz; NULL: idle */
  bool watching; /* the informer has listed at least once */
  uint64_t done_requests;

  volatile sig_atomic_t *stop_flag; /* the caller's (SIGTERM) */
  volatile sig_atomic_t stop_self;  /* ours: the informer failed for good */
  int stop_fd;
  int64_t stop_since_us; /* when stopping was first seen (worker thread) */
} kyb_agent;

bool kyb_agent_stopping(kyb_agent *a);

/* ---- queue (agent.c) ---- */
/* Queues a request key unless it is queued already.  Returns 0, -1 ENOMEM. */
int kyb_agent_enqueue_key(kyb_agent *a, const char *key);
/* Queues a local job; 503 answer when stopping. */
int kyb_agent_enqueue_local(kyb_agent *a, kyb_agent_local *l);

/* ---- requests (job.c) ---- */
void kyb_agent_handle_request(kyb_agent *a, const char *ns, const char *name);
/* The final status update (claim.h's finish), retried on 409; logs and
 * records an event.  0, or -1 when the API server could not be told. */
int kyb_agent_finish(kyb_agent *a, const kyb_agent_request *req, const json_t *obj,
                     const kyb_agent_outcome *o);
/* A best-effort Event on the request object obj. */
void kyb_agent_event(kyb_agent *a, const json_t *obj, const char *type, const char *reason,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The store a request writes to (its storage, else the default). */
const char *kyb_agent_request_store(const kyb_agent *a, const kyb_agent_request *req);

/* ---- the Checkpoint action (ckpt.c) ---- */
/* req was just claimed (obj: the object as written). */
void kyb_agent_checkpoint(kyb_agent *a, const kyb_agent_request *req, const json_t *obj);
/* req was just taken over from a previous incarnation; old_step is where
 * that one was. */
void kyb_agent_take_over(kyb_agent *a, const kyb_agent_request *req, const json_t *obj,
                         const char *old_step);

/* ---- one checkpoint in a worker process (run.c) ---- */

typedef enum {
  KYB_AGENT_RUN_DONE,     /* the worker ended by itself (result or error) */
  KYB_AGENT_RUN_CRASHED,  /* it died without a last word */
  KYB_AGENT_RUN_DEADLINE, /* killed: the request's deadline passed */
  KYB_AGENT_RUN_SHUTDOWN, /* killed: the agent is stopping and the grace ran out */
  KYB_AGENT_RUN_GONE,     /* killed: the request was deleted */
} kyb_agent_run_end;

/* Progress reporting during a run: the request (for renewals) or none. */
typedef struct {
  kyb_agent *a;
  const kyb_agent_request *req; /* NULL: a local job (no renewals, no deadline) */
  const char *step;             /* the step to report now */
  bool step_dirty;
  json_t *timings; /* everything so far, incl. earlier containers */
  int64_t last_renew_us;
  kyb_agent_run_end stopped; /* an upload stopped from outside: why (else DONE) */
} kyb_agent_progress;

typedef struct {
  kyb_agent_run_end end;
  json_t *result; /* the worker's result object, or NULL */
  json_t *error;  /* the worker's error object, or NULL */
  char *phase;    /* the last phase started, or NULL */
  int wait_status;
} kyb_agent_run_outcome;

void kyb_agent_run_outcome_clear(kyb_agent_run_outcome *o);

/* Starts the worker for `job` and watches it until it ends or must be
 * stopped (renewing the request through p when p->req is set). */
int kyb_agent_run_worker(kyb_agent *a, const json_t *job, kyb_agent_progress *p,
                         kyb_agent_run_outcome *out, kyb_error **err);

/* Whether something outside ends the work now: the deadline (req set), the
 * agent stopping with the grace period over; DONE: go on. */
kyb_agent_run_end kyb_agent_must_stop(kyb_agent_progress *p, int64_t now_us);

/* Writes a renewal now (status patch); 404 -> -1 with ENOENT. */
int kyb_agent_renew(kyb_agent_progress *p, kyb_error **err);

/* ---- the uploader (upload.c) ---- */
/* Hands image local_ref (a file:// reference, local_uri) to the uploader
 * for store_uri and waits, renewing through p; *ref: where it is now.  An
 * image the store already has under that name counts as uploaded. */
int kyb_agent_upload(kyb_agent *a, const char *local_ref, const char *store_uri,
                     kyb_agent_progress *p, char **ref, kyb_error **err);

/* Deletes a remote image through the uploader; gone already is no error. */
int kyb_agent_remote_delete(kyb_agent *a, const char *ref, bool *existed, kyb_error **err);

/* ---- local API (api.c) ---- */
typedef struct kyb_agent_api kyb_agent_api;
int kyb_agent_api_start(kyb_agent *a, const char *socket_path, kyb_agent_api **out,
                        kyb_error **err);
void kyb_agent_api_stop(kyb_agent_api *api);
/* The worker thread's side of a local job. */
void kyb_agent_handle_local(kyb_agent *a, kyb_agent_local *l);
void kyb_agent_local_finish(kyb_agent_local *l, int status, json_t *answer);

/* ---- restore outcomes (report.c) ---- */
struct kyb_agent_restore_report;
/* Records r on its pod (annotation, Event); *status: the HTTP answer's
 * status (200, or 404 no pod, 409 replaced, 403 another node's, 503
 * standalone, 502 the API server failed). */
int kyb_agent_record_outcome(kyb_agent *a, const struct kyb_agent_restore_report *r, int *status,
                             kyb_error **err);

/* ---- stores (job.c) ---- */
/* file:// stores must be the node's (config, --store); 0 or -1. */
int kyb_agent_store_allowed(const kyb_agent *a, const char *uri, kyb_error **err);
bool kyb_agent_store_remote(const char *uri);

#endif

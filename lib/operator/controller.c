/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The controller: four informers (checkpoints, restores, checkpointrequests,
 * pods labelled kybernate.io/restore), each on its own thread and client
 * (a watch occupies its client), feeding caches and the work queue; one
 * worker thread with its own client runs the reconcilers, one key at a
 * time, once every informer has synced.
 *
 * What an event queues:
 *   Checkpoint c           → c, and the Restores waiting for it (by cache)
 *   Restore r              → r
 *   CheckpointRequest q    → the Checkpoint of spec.checkpointRef.name
 *   Pod with label kybernate.io/restore=r → r
 * Every resync period the worker also queues every unfinished object (the
 * NodeLost clock runs without events) — reconciles are idempotent.
 *
 * Stop: an eventfd given to every client as its cancel fd is written (every
 * call in flight ends with ECANCELED), the queue shuts down, threads are
 * joined.
 */
#define KYB_LOG_MODULE "operator"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kube/watch.h"
#include "operator/fields.h"
#include "operator/internal.h"
#include "operator/queue.h"
#include "util/cleanup.h"
#include "util/log.h"

#define CONFLICT_RETRY_US 100000LL
#define RETRY_BASE_US 500000LL
#define RETRY_CAP_US (60LL * 1000000)

typedef struct {
  kyb_op_controller *ctl;
  kyb_op_cache_id id;
  const kyb_kube_resource *res;
  const char *label_selector;
  json_t *objs; /* "ns/name" → object; under ctl->mu */
  bool synced;
  kyb_kube_client *c;
  pthread_t th;
  bool running;
} informer;

struct kyb_op_controller {
  const kyb_operator_config *cfg;
  kyb_op_metrics *m;
  int cancel_fd;
  kyb_op_queue *q;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* synced, failure, stop */
  informer inf[KYB_OP_NCACHES];
  char *failure;
  bool stopping;
  kyb_op_ctx x;
  pthread_t worker;
  bool worker_running;
};

static const char *ns_of(const json_t *o) {
  return kyb_op_str0(o, "metadata", "namespace", NULL);
}

static const char *name_of(const json_t *o) {
  return kyb_op_str0(o, "metadata", "name", NULL);
}

static void fail_with(kyb_op_controller *ctl, const char *what, kyb_error *err) {
  pthread_mutex_lock(&ctl->mu);
  if (ctl->failure == NULL &&
      asprintf(&ctl->failure, "%s: %s", what, err != NULL ? kyb_error_message(err) : "failed") < 0)
    ctl->failure = NULL;
  pthread_cond_broadcast(&ctl->cv);
  pthread_mutex_unlock(&ctl->mu);
}

/* ---- queueing ---- */

static void enqueue(kyb_op_controller *ctl, char kind, const char *ns, const char *name,
                    int64_t delay) {
  if (ns[0] == '\0' || name[0] == '\0')
    return;
  char key[600];
  snprintf(key, sizeof(key), "%c/%s/%s", kind, ns, name);
  if (kyb_op_queue_add(ctl->q, key, delay) < 0)
    log_error("work queue: out of memory, %s dropped until the next resync", key);
}

static bool final_phase(const char *p) {
  return strcmp(p, "Completed") == 0 || strcmp(p, "Failed") == 0;
}

/* Restores that wait for Checkpoint ns/name. */
static void enqueue_waiting(kyb_op_controller *ctl, const char *ns, const char *name) {
  cleanup_json json_t *rs = kyb_op_cache_items(ctl, KYB_OP_CACHE_RESTORES, ns);
  size_t i;
  json_t *r;
  json_array_foreach(rs, i, r) {
    if (strcmp(kyb_op_str0(r, "spec", "checkpointName", NULL), name) == 0 &&
        !final_phase(kyb_op_str0(r, "status", "phase", NULL)))
      enqueue(ctl, 'r', ns, name_of(r), 0);
  }
}

static void enqueue_for(informer *inf, const json_t *obj) {
  kyb_op_controller *ctl = inf->ctl;
  const char *ns = ns_of(obj);
  switch (inf->id) {
  case KYB_OP_CACHE_CHECKPOINTS:
    enqueue(ctl, 'c', ns, name_of(obj), 0);
    enqueue_waiting(ctl, ns, name_of(obj));
    break;
  case KYB_OP_CACHE_RESTORES:
    enqueue(ctl, 'r', ns, name_of(obj), 0);
    break;
  case KYB_OP_CACHE_REQUESTS:
    enqueue(ctl, 'c', ns, kyb_op_str0(obj, "spec", "checkpointRef", "name", NULL), 0);
    break;
  case KYB_OP_CACHE_PODS:
    enqueue(ctl, 'r', ns, kyb_op_str0(obj, "metadata", "labels", KYB_OP_LABEL_RESTORE, NULL), 0);
    break;
  default:
    break;
  }
}

/* ---- informers ---- */

static int on_sync(void *ud, json_t *items, const char *rv, kyb_error **err) {
  (void)rv;
  informer *inf = ud;
  kyb_op_controller *ctl = inf->ctl;
  json_t *objs = json_object();
  if (objs == NULL)
    return kyb_error_set(err, ENOMEM, "cache of %s", inf->res->plural);
  size_t i;
  json_t *o;
  json_array_foreach(items, i, o) {
    char key[600];
    snprintf(key, sizeof(key), "%s/%s", ns_of(o), name_of(o));
    if (json_object_set(objs, key, o) < 0) {
      json_decref(objs);
      return kyb_error_set(err, ENOMEM, "cache of %s", inf->res->plural);
    }
  }
  pthread_mutex_lock(&ctl->mu);
  json_t *old = inf->objs;
  inf->objs = objs;
  bool first = !inf->synced;
  inf->synced = true;
  pthread_cond_broadcast(&ctl->cv);
  pthread_mutex_unlock(&ctl->mu);
  log_debug("informer %s: %zu objects%s", inf->res->plural, json_array_size(items),
            first ? " (synced)" : " (relisted)");
  /* Everything now, and everything that vanished while we were not
   * watching (their dependents must notice). */
  const char *k;
  json_object_foreach(objs, k, o) {
    enqueue_for(inf, o);
  }
  json_object_foreach(old, k, o) {
    if (json_object_get(objs, k) == NULL)
      enqueue_for(inf, o);
  }
  json_decref(old);
  return 0;
}

static int on_event(void *ud, kyb_kube_event_type type, json_t *obj, kyb_error **err) {
  informer *inf = ud;
  kyb_op_controller *ctl = inf->ctl;
  char key[600];
  snprintf(key, sizeof(key), "%s/%s", ns_of(obj), name_of(obj));
  pthread_mutex_lock(&ctl->mu);
  int r = type == KYB_KUBE_DELETED ? (json_object_del(inf->objs, key), 0)
                                   : json_object_set(inf->objs, key, obj);
  pthread_mutex_unlock(&ctl->mu);
  if (r < 0)
    return kyb_error_set(err, ENOMEM, "cache of %s", inf->res->plural);
  log_trace("informer %s: %s %s", inf->res->plural, kyb_kube_event_type_name(type), key);
  enqueue_for(inf, obj);
  return 0;
}

static void *informer_main(void *arg) {
  informer *inf = arg;
  const kyb_operator_config *cfg = inf->ctl->cfg;
  kyb_kube_informer_opts o = {.res = inf->res,
                              .ns = cfg->watch_namespace != NULL ? cfg->watch_namespace : "",
                              .label_selector = inf->label_selector,
                              .on_sync = on_sync,
                              .on_event = on_event,
                              .ud = inf};
  kyb_error *err = NULL;
  if (kyb_kube_informer_run(inf->c, &o, &err) < 0 && kyb_error_code(err) != ECANCELED) {
    log_error_chain(err, "informer on %s stopped", inf->res->plural);
    fail_with(inf->ctl, inf->res->plural, err);
  }
  kyb_error_free(err);
  return NULL;
}

/* ---- cache access ---- */

json_t *kyb_op_cache_items(kyb_op_controller *ctl, kyb_op_cache_id id, const char *ns) {
  json_t *out = json_array();
  if (out == NULL)
    return NULL;
  pthread_mutex_lock(&ctl->mu);
  const char *k;
  json_t *o;
  json_object_foreach(ctl->inf[id].objs, k, o) {
    if ((ns == NULL || strcmp(ns_of(o), ns) == 0) && json_array_append(out, o) < 0) {
      json_decref(out);
      out = NULL;
      break;
    }
  }
  pthread_mutex_unlock(&ctl->mu);
  return out;
}

void kyb_op_controller_phases(void *ud, kyb_op_kind kind, long counts[KYB_OP_NPHASES]) {
  kyb_op_controller *ctl = ud;
  const char *const *names =
      kind == KYB_OP_KIND_CHECKPOINT ? kyb_op_checkpoint_phases : kyb_op_restore_phases;
  kyb_op_cache_id id =
      kind == KYB_OP_KIND_CHECKPOINT ? KYB_OP_CACHE_CHECKPOINTS : KYB_OP_CACHE_RESTORES;
  pthread_mutex_lock(&ctl->mu);
  const char *k;
  json_t *o;
  json_object_foreach(ctl->inf[id].objs, k, o) {
    const char *p = kyb_op_str0(o, "status", "phase", NULL);
    for (int i = 0; i < KYB_OP_NPHASES; i++)
      if (strcmp(p, names[i]) == 0 || (i == 0 && p[0] == '\0'))
        counts[i]++;
  }
  pthread_mutex_unlock(&ctl->mu);
}

bool kyb_op_controller_synced(kyb_op_controller *ctl) {
  pthread_mutex_lock(&ctl->mu);
  bool all = true;
  for (int i = 0; i < KYB_OP_NCACHES; i++)
    all = all && ctl->inf[i].synced;
  pthread_mutex_unlock(&ctl->mu);
  return all;
}

const char *kyb_op_controller_failure(kyb_op_controller *ctl) {
  pthread_mutex_lock(&ctl->mu);
  const char *f = ctl->failure;
  pthread_mutex_unlock(&ctl->mu);
  return f;
}

/* ---- the worker ---- */

/* Every unfinished object, and every Checkpoint being deleted. */
static void resync(kyb_op_controller *ctl) {
  cleanup_json json_t *cks = kyb_op_cache_items(ctl, KYB_OP_CACHE_CHECKPOINTS, NULL);
  cleanup_json json_t *rs = kyb_op_cache_items(ctl, KYB_OP_CACHE_RESTORES, NULL);
  size_t i;
  json_t *o;
  json_array_foreach(cks, i, o) {
    const char *p = kyb_op_str0(o, "status", "phase", NULL);
    bool hibernating = strcmp(p, "Completed") == 0 &&
                       !kyb_op_bool(true, o, "spec", "leaveRunning", NULL) &&
                       !kyb_op_cond_is(kyb_op_get(o, "status", NULL), "PodDeleted", "True");
    if (!final_phase(p) || hibernating ||
        kyb_op_str(o, "metadata", "deletionTimestamp", NULL) != NULL)
      enqueue(ctl, 'c', ns_of(o), name_of(o), 0);
  }
  json_array_foreach(rs, i, o) {
    if (!final_phase(kyb_op_str0(o, "status", "phase", NULL)))
      enqueue(ctl, 'r', ns_of(o), name_of(o), 0);
  }
}

static bool wait_synced(kyb_op_controller *ctl) {
  pthread_mutex_lock(&ctl->mu);
  for (;;) {
    bool all = true;
    for (int i = 0; i < KYB_OP_NCACHES; i++)
      all = all && ctl->inf[i].synced;
    if (ctl->stopping || ctl->failure != NULL || all) {
      bool ok = all && !ctl->stopping && ctl->failure == NULL;
      pthread_mutex_unlock(&ctl->mu);
      return ok;
    }
    pthread_cond_wait(&ctl->cv, &ctl->mu);
  }
}

static void process(kyb_op_controller *ctl, const char *key) {
  char kind = key[0];
  const char *ns = key + 2;
  const char *slash = strchr(ns, '/');
  if ((kind != 'c' && kind != 'r') || key[1] != '/' || slash == NULL)
    return;
  char nsbuf[300];
  snprintf(nsbuf, sizeof(nsbuf), "%.*s", (int)(slash - ns), ns);
  const char *name = slash + 1;
  kyb_op_result res = {0};
  kyb_error *err = NULL;
  int64_t t0 = kyb_op_queue_now_us();
  int r = kind == 'c' ? kyb_op_reconcile_checkpoint(&ctl->x, nsbuf, name, &res, &err)
                      : kyb_op_reconcile_restore(&ctl->x, nsbuf, name, &res, &err);
  double secs = (double)(kyb_op_queue_now_us() - t0) / 1e6;
  kyb_op_kind mk = kind == 'c' ? KYB_OP_KIND_CHECKPOINT : KYB_OP_KIND_RESTORE;
  const char *what = kind == 'c' ? "checkpoint" : "restore";
  if (r < 0 && kyb_error_code(err) == ECANCELED) {
    kyb_op_queue_done(ctl->q, key);
    kyb_error_free(err);
    return;
  }
  if (r < 0 && kyb_kube_status_of(err) == 409) {
    /* Lost a race with another writer: read again at once. */
    log_debug("%s %s/%s: conflict, again: %s", what, nsbuf, name, kyb_error_message(err));
    kyb_op_metrics_reconciled(ctl->m, mk, secs, false);
    kyb_op_queue_done(ctl->q, key);
    kyb_op_queue_add(ctl->q, key, CONFLICT_RETRY_US);
  } else if (r < 0) {
    int64_t delay = kyb_op_queue_failed(ctl->q, key);
    log_warn_chain(err, "%s %s/%s: reconcile failed, again in %lld ms", what, nsbuf, name,
                   (long long)(delay / 1000));
    kyb_op_metrics_reconciled(ctl->m, mk, secs, true);
    kyb_op_queue_done(ctl->q, key);
    kyb_op_queue_add(ctl->q, key, delay);
  } else {
    kyb_op_metrics_reconciled(ctl->m, mk, secs, false);
    kyb_op_queue_forget(ctl->q, key);
    kyb_op_queue_done(ctl->q, key);
    if (res.requeue_us > 0)
      kyb_op_queue_add(ctl->q, key, res.requeue_us);
  }
  kyb_error_free(err);
}

static void *worker_main(void *arg) {
  kyb_op_controller *ctl = arg;
  if (!wait_synced(ctl))
    return NULL;
  log_info("caches synced: reconciling");
  int64_t period = (ctl->cfg->resync_s > 0 ? ctl->cfg->resync_s : 30) * 1000000LL;
  int64_t next = kyb_op_queue_now_us() + period;
  for (;;) {
    char *key = NULL;
    int r = kyb_op_queue_get(ctl->q, next, &key);
    if (r < 0)
      break;
    if (r == 0) {
      resync(ctl);
      next = kyb_op_queue_now_us() + period;
      continue;
    }
    log_trace("reconcile %s", key);
    process(ctl, key);
    free(key);
    if (kyb_kube_client_cancelled(ctl->x.c))
      break;
  }
  return NULL;
}

/* ---- lifecycle ---- */

static int new_client(kyb_op_controller *ctl, const kyb_kube_config *kcfg, kyb_kube_client **c,
                      kyb_error **err) {
  if (kyb_kube_client_new(kcfg, NULL, c, err) < 0)
    return -1;
  kyb_kube_client_set_cancel(*c, ctl->cancel_fd, NULL);
  return 0;
}

int kyb_op_controller_start(const kyb_operator_config *cfg, const kyb_kube_config *kcfg,
                            const char *identity, kyb_op_metrics *m, kyb_op_controller **out,
                            kyb_error **err) {
  static const kyb_kube_resource *const res[KYB_OP_NCACHES] = {
      &kyb_op_res_checkpoints, &kyb_op_res_restores, &kyb_op_res_requests, &kyb_kube_res_pods};
  /* Pods: only restore pods; the checkpointed pod is read live. */
  static const char *const selectors[KYB_OP_NCACHES] = {NULL, NULL, NULL, KYB_OP_LABEL_RESTORE};
  kyb_op_controller *ctl = calloc(1, sizeof(*ctl));
  if (ctl == NULL)
    return kyb_error_set(err, ENOMEM, "controller");
  ctl->cfg = cfg;
  ctl->m = m;
  pthread_mutex_init(&ctl->mu, NULL);
  pthread_cond_init(&ctl->cv, NULL);
  ctl->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ctl->q = kyb_op_queue_new(RETRY_BASE_US, RETRY_CAP_US);
  if (ctl->cancel_fd < 0 || ctl->q == NULL) {
    kyb_error_errno(err, "controller");
    kyb_op_controller_stop(ctl);
    return -1;
  }
  for (int i = 0; i < KYB_OP_NCACHES; i++) {
    informer *inf = &ctl->inf[i];
    *inf = (informer){.ctl = ctl,
                      .id = (kyb_op_cache_id)i,
                      .res = res[i],
                      .label_selector = selectors[i],
                      .objs = json_object()};
    if (inf->objs == NULL || new_client(ctl, kcfg, &inf->c, err) < 0) {
      if (inf->objs == NULL)
        kyb_error_set(err, ENOMEM, "controller");
      kyb_op_controller_stop(ctl);
      return -1;
    }
  }
  ctl->x = (kyb_op_ctx){.cfg = cfg,
                        .m = m,
                        .ctl = ctl,
                        .node_lost_us = (cfg->node_lost_s > 0 ? cfg->node_lost_s : 120) * 1000000LL,
                        .keep_last = cfg->keep_last};
  kyb_kube_recorder_opts ro = {.component = "kybernate-operator", .instance = identity};
  if (new_client(ctl, kcfg, &ctl->x.c, err) < 0 ||
      kyb_kube_recorder_new(&ro, &ctl->x.rec, err) < 0) {
    kyb_op_controller_stop(ctl);
    return -1;
  }
  for (int i = 0; i < KYB_OP_NCACHES; i++) {
    if (pthread_create(&ctl->inf[i].th, NULL, informer_main, &ctl->inf[i]) != 0) {
      kyb_error_set(err, EAGAIN, "start informer on %s", res[i]->plural);
      kyb_op_controller_stop(ctl);
      return -1;
    }
    ctl->inf[i].running = true;
  }
  if (pthread_create(&ctl->worker, NULL, worker_main, ctl) != 0) {
    kyb_error_set(err, EAGAIN, "start worker");
    kyb_op_controller_stop(ctl);
    return -1;
  }
  ctl->worker_running = true;
  *out = ctl;
  return 0;
}

void kyb_op_controller_stop(kyb_op_controller *ctl) {
  if (ctl == NULL)
    return;
  if (ctl->cancel_fd >= 0) {
    uint64_t one = 1;
    if (write(ctl->cancel_fd, &one, sizeof(one)) < 0)
      log_warn("controller stop: eventfd: %s", strerror(errno));
  }
  pthread_mutex_lock(&ctl->mu);
  ctl->stopping = true;
  pthread_cond_broadcast(&ctl->cv);
  pthread_mutex_unlock(&ctl->mu);
  if (ctl->q != NULL)
    kyb_op_queue_shutdown(ctl->q);
  if (ctl->worker_running)
    pthread_join(ctl->worker, NULL);
  for (int i = 0; i < KYB_OP_NCACHES; i++) {
    if (ctl->inf[i].running)
      pthread_join(ctl->inf[i].th, NULL);
    kyb_kube_client_free(ctl->inf[i].c);
    json_decref(ctl->inf[i].objs);
  }
  kyb_kube_recorder_free(ctl->x.rec);
  kyb_kube_client_free(ctl->x.c);
  kyb_op_queue_free(ctl->q);
  if (ctl->cancel_fd >= 0)
    close(ctl->cancel_fd);
  free(ctl->failure);
  pthread_cond_destroy(&ctl->cv);
  pthread_mutex_destroy(&ctl->mu);
  free(ctl);
}

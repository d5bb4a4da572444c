/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The operator's lifecycle (contract in operator.h): the HTTP port first (a
 * standby serves probes and metrics too), then leader election — the
 * controller runs only while this replica holds the Lease — until stop_fd.
 *
 * Losing the lease ends the process with an error instead of stopping the
 * controller and campaigning again (client-go's and controller-runtime's
 * choice): a leader that could not renew may have been replaced, and a
 * fresh process starts from the API's state with nothing half-done in
 * memory.  The Deployment restarts it as a standby.
 */
#define KYB_LOG_MODULE "operator"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "kube/client.h"
#include "kube/config.h"
#include "kube/lease.h"
#include "operator/internal.h"
#include "operator/operator.h"
#include "util/cleanup.h"
#include "util/log.h"

/* What the readiness probe looks at; changed by the main thread, read by
 * libmicrohttpd's. */
typedef struct {
  pthread_mutex_t mu;
  kyb_op_controller *ctl;
  bool api_ok;   /* the last election attempt reached the API server */
  bool electing; /* leader election on: a standby is ready when api_ok */
} state;

static bool ready(void *ud, char *why, size_t size) {
  state *s = ud;
  pthread_mutex_lock(&s->mu);
  bool ok;
  if (s->ctl != NULL) {
    const char *f = kyb_op_controller_failure(s->ctl);
    ok = f == NULL && kyb_op_controller_synced(s->ctl);
    snprintf(why, size, "%s", f != NULL ? f : "caches not synced yet");
  } else {
    ok = s->electing && s->api_ok;
    snprintf(why, size, "%s", s->electing ? "the API server did not answer" : "starting");
  }
  pthread_mutex_unlock(&s->mu);
  return ok;
}

static void phases(void *ud, kyb_op_kind kind, long counts[KYB_OP_NPHASES]) {
  state *s = ud;
  pthread_mutex_lock(&s->mu);
  if (s->ctl != NULL)
    kyb_op_controller_phases(s->ctl, kind, counts);
  pthread_mutex_unlock(&s->mu);
}

static void set_ctl(state *s, kyb_op_controller *ctl) {
  pthread_mutex_lock(&s->mu);
  s->ctl = ctl;
  pthread_mutex_unlock(&s->mu);
}

static void set_api_ok(state *s, bool ok) {
  pthread_mutex_lock(&s->mu);
  s->api_ok = ok;
  pthread_mutex_unlock(&s->mu);
}

/* Waits ms for stop_fd: true when it became readable. */
static bool wait_stop(int fd, long ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  int r = poll(&p, fd >= 0 ? 1 : 0, (int)ms);
  return r > 0;
}

/* "<POD_NAME or host name>_<8 hex>": unique per process, as client-go's. */
static int make_identity(const kyb_operator_config *cfg, char *buf, size_t size, kyb_error **err) {
  if (cfg->identity != NULL) {
    snprintf(buf, size, "%s", cfg->identity);
    return 0;
  }
  char host[256] = "";
  const char *pod = getenv("POD_NAME");
  if (pod == NULL || pod[0] == '\0') {
    if (gethostname(host, sizeof(host) - 1) < 0)
      snprintf(host, sizeof(host), "kybernate-operator");
    pod = host;
  }
  unsigned char rnd[4];
  if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
    return kyb_error_errno(err, "identity: getrandom");
  snprintf(buf, size, "%s_%02x%02x%02x%02x", pod, rnd[0], rnd[1], rnd[2], rnd[3]);
  return 0;
}

static int run_controller(const kyb_operator_config *cfg, const kyb_kube_config *kcfg,
                          const char *identity, kyb_op_metrics *m, state *s, kyb_error **err) {
  kyb_op_controller *ctl = NULL;
  if (kyb_op_controller_start(cfg, kcfg, identity, m, &ctl, err) < 0)
    return -1;
  set_ctl(s, ctl);
  int rc = 0;
  while (!wait_stop(cfg->stop_fd, 1000)) {
    const char *f = kyb_op_controller_failure(ctl);
    if (f != NULL) {
      rc = kyb_error_set(err, EIO, "controller failed: %s", f);
      break;
    }
  }
  set_ctl(s, NULL);
  kyb_op_controller_stop(ctl);
  return rc;
}

static int run_elected(const kyb_operator_config *cfg, const kyb_kube_config *kcfg,
                       const char *identity, kyb_op_metrics *m, state *s, kyb_error **err) {
  long retry_ms = cfg->retry_period_ms > 0 ? cfg->retry_period_ms : 2000;
  const char *lease_ns = cfg->lease_namespace;
  if (lease_ns == NULL || lease_ns[0] == '\0')
    lease_ns = getenv("POD_NAMESPACE");
  if (lease_ns == NULL || lease_ns[0] == '\0')
    lease_ns = kcfg->ns;
  kyb_kube_elector_opts eo = {.ns = lease_ns,
                              .name =
                                  cfg->lease_name != NULL ? cfg->lease_name : "kybernate-operator",
                              .identity = identity,
                              .lease_duration_s = cfg->lease_duration_s,
                              .renew_deadline_ms = cfg->renew_deadline_s * 1000};
  /* The elector's client is never cancelled: the release on the way out
   * must still reach the API server.  Its calls are short (timeout). */
  kyb_kube_client_opts co = {.timeout_ms = 5000};
  kyb_kube_client *lc = NULL;
  kyb_kube_elector *el = NULL;
  if (kyb_kube_client_new(kcfg, &co, &lc, err) < 0)
    return -1;
  if (kyb_kube_elector_new(&eo, &el, err) < 0) {
    kyb_kube_client_free(lc);
    return -1;
  }
  log_info("leader election on lease %s/%s as %s", lease_ns, eo.name, identity);
  kyb_op_controller *ctl = NULL;
  int rc = 0;
  for (;;) {
    bool leader = false;
    kyb_error *e = NULL;
    if (kyb_kube_elector_try(lc, el, &leader, &e) < 0) {
      log_warn_chain(e, "leader election: attempt failed");
      kyb_error_free(e);
      set_api_ok(s, false);
    } else {
      set_api_ok(s, true);
    }
    bool is_leader = kyb_kube_elector_is_leader(el);
    if (ctl == NULL && is_leader) {
      log_info("leading (lease %s/%s): starting the controller", lease_ns, eo.name);
      kyb_op_metrics_set_leader(m, true);
      if (kyb_op_controller_start(cfg, kcfg, identity, m, &ctl, err) < 0) {
        rc = -1;
        break;
      }
      set_ctl(s, ctl);
    } else if (ctl != NULL && !is_leader) {
      log_error("leader election lost (lease %s/%s now held by \"%s\"): stopping", lease_ns,
                eo.name, kyb_kube_elector_holder(el));
      rc = kyb_error_set(err, EBUSY, "leader election lost");
      break;
    } else if (ctl == NULL) {
      log_debug("standby: lease %s/%s held by %s", lease_ns, eo.name, kyb_kube_elector_holder(el));
    }
    if (ctl != NULL && kyb_op_controller_failure(ctl) != NULL) {
      rc = kyb_error_set(err, EIO, "controller failed: %s", kyb_op_controller_failure(ctl));
      break;
    }
    if (wait_stop(cfg->stop_fd, retry_ms))
      break;
  }
  /* Controller first (nothing may write after the lease is gone), then the
   * lease, so a standby takes over at once. */
  set_ctl(s, NULL);
  kyb_op_controller_stop(ctl);
  kyb_op_metrics_set_leader(m, false);
  kyb_error *e = NULL;
  if (kyb_kube_elector_release(lc, el, &e) < 0) {
    log_warn_chain(e, "lease %s/%s not released", lease_ns, eo.name);
    kyb_error_free(e);
  }
  kyb_kube_elector_free(el);
  kyb_kube_client_free(lc);
  return rc;
}

int kyb_operator_run(const kyb_operator_config *cfg, kyb_error **err) {
  kyb_kube_config kcfg = {0};
  if (kyb_kube_config_load(cfg->kubeconfig, cfg->context, &kcfg, err) < 0)
    return kyb_error_wrap(err, "Kubernetes API configuration");
  log_info("API server %s (%s)", kcfg.server, kcfg.source != NULL ? kcfg.source : "?");
  char identity[300];
  if (make_identity(cfg, identity, sizeof(identity), err) < 0) {
    kyb_kube_config_clear(&kcfg);
    return -1;
  }
  kyb_op_metrics m;
  kyb_op_metrics_init(&m);
  state s = {.electing = cfg->leader_elect};
  pthread_mutex_init(&s.mu, NULL);
  m.ready = ready;
  m.ready_ud = &s;
  m.phases = phases;
  m.phases_ud = &s;
  kyb_op_http *http = NULL;
  int rc = 0;
  const char *addr = cfg->metrics_addr;
  if (addr != NULL && addr[0] != '\0' && strcmp(addr, "0") != 0)
    rc = kyb_op_http_start(addr, &m, &http, err);
  if (rc == 0)
    rc = cfg->leader_elect ? run_elected(cfg, &kcfg, identity, &m, &s, err)
                           : run_controller(cfg, &kcfg, identity, &m, &s, err);
  kyb_op_http_stop(http);
  pthread_mutex_destroy(&s.mu);
  kyb_op_metrics_destroy(&m);
  kyb_kube_config_clear(&kcfg);
  if (rc == 0)
    log_info("stopped");
  return rc;
}

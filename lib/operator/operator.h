/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kybernate-operator's library side (docs/operator.md): reconciles
 * Checkpoints and Restores (docs/api.md) with informers on checkpoints,
 * restores, checkpointrequests and restore pods, one worker, leader
 * election on a Lease (only the leader reconciles; a leader that cannot
 * renew stops with an error so that its replacement starts clean),
 * Prometheus metrics and probes on one HTTP port.
 *
 * kyb_operator_run returns 0 after stop_fd became readable (SIGTERM: the
 * controller stops first, then the lease is released so a standby takes
 * over at once), -1 with err when the operator cannot go on (no API
 * configuration, the port is taken, leadership lost, an informer failed).
 */
#ifndef KYB_OPERATOR_OPERATOR_H
#define KYB_OPERATOR_OPERATOR_H

#include <stdbool.h>

#include "util/error.h"

typedef struct {
  const char *kubeconfig;      /* NULL: in-cluster, $KUBECONFIG, ~/.kube/config */
  const char *context;         /* NULL: current-context */
  const char *watch_namespace; /* NULL or "": every namespace */
  bool leader_elect;
  const char *lease_name;      /* NULL: "kybernate-operator" */
  const char *lease_namespace; /* NULL: $POD_NAMESPACE, else the configuration's namespace */
  const char *identity;        /* NULL: $POD_NAME (else the host name) + "_" + random */
  long lease_duration_s;       /* 0: 15 */
  long renew_deadline_s;       /* 0: 10 */
  long retry_period_ms;        /* 0: 2000 */
  const char *metrics_addr;    /* NULL, "" or "0": no HTTP port */
  long keep_last;              /* retention default (Checkpoint spec.retention.keepLast absent) */
  long node_lost_s; /* 0: 120: a request not renewed (or not claimed) this long is lost */
  long resync_s;    /* 0: 30: look at every unfinished object this often */
  int stop_fd;      /* readable: stop; -1: never */
} kyb_operator_config;

int kyb_operator_run(const kyb_operator_config *cfg, kyb_error **err);

#endif

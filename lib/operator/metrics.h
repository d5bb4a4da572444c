/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The operator's Prometheus metrics (text exposition format 0.0.4) and its
 * one HTTP port: /metrics, /healthz (the process serves), /readyz (the API
 * server answered the last leader-election attempt and, on the leader, every
 * informer has synced; a standby is ready too).
 *
 * Metrics (all prefixed kybernate_operator_):
 *   reconciles_total{kind}                 counter  reconciles run
 *   reconcile_errors_total{kind}           counter  reconciles that failed (retried)
 *   reconcile_duration_seconds{kind}       histogram
 *   checkpoint_requests_created_total      counter
 *   restore_pods_created_total             counter
 *   retention_deletions_total              counter  Checkpoints retention deleted
 *   checkpoints{phase} restores{phase}     gauge    objects by phase (leader's cache;
 *                                                   no status yet counts as Pending)
 *   leader                                 gauge    1 while this replica leads
 *   build_info{version}                    gauge    1
 */
#ifndef KYB_OPERATOR_METRICS_H
#define KYB_OPERATOR_METRICS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

typedef enum { KYB_OP_KIND_CHECKPOINT = 0, KYB_OP_KIND_RESTORE = 1, KYB_OP_NKINDS } kyb_op_kind;

#define KYB_OP_NBUCKETS 10
#define KYB_OP_NPHASES 4

typedef struct {
  pthread_mutex_t mu;
  uint64_t reconciles[KYB_OP_NKINDS], errors[KYB_OP_NKINDS];
  uint64_t buckets[KYB_OP_NKINDS][KYB_OP_NBUCKETS]; /* cumulative at render */
  double duration_sum[KYB_OP_NKINDS];
  uint64_t requests_created, pods_created, retention_deletions;
  int leader;
  /* Gauges by phase, filled at scrape time by the controller (may be NULL). */
  void (*phases)(void *ud, kyb_op_kind kind, long counts[KYB_OP_NPHASES]);
  void *phases_ud;
  /* Readiness: true when ready; else false with the reason in why. */
  bool (*ready)(void *ud, char *why, size_t size);
  void *ready_ud;
} kyb_op_metrics;

/* The phase names of the gauges, in the order of counts[]. */
extern const char *const kyb_op_checkpoint_phases[KYB_OP_NPHASES];
extern const char *const kyb_op_restore_phases[KYB_OP_NPHASES];

void kyb_op_metrics_init(kyb_op_metrics *m);
void kyb_op_metrics_destroy(kyb_op_metrics *m);

void kyb_op_metrics_reconciled(kyb_op_metrics *m, kyb_op_kind kind, double seconds, bool failed);
void kyb_op_metrics_count(kyb_op_metrics *m, uint64_t *counter);
void kyb_op_metrics_set_leader(kyb_op_metrics *m, bool leader);

/* The exposition text (heap; NULL on ENOMEM). */
char *kyb_op_metrics_render(kyb_op_metrics *m);

/* ---- the HTTP server ---- */

typedef struct kyb_op_http kyb_op_http;

/* addr: "[host]:port" (":8080" every address, "127.0.0.1:9000",
 * "[::1]:9000").  Serves m until stopped. */
int kyb_op_http_start(const char *addr, kyb_op_metrics *m, kyb_op_http **out, kyb_error **err);
void kyb_op_http_stop(kyb_op_http *h);
/* The port it listens on (useful with port 0). */
int kyb_op_http_port(const kyb_op_http *h);

/* Parses addr into a socket address (pure; for tests). */
int kyb_op_parse_bind(const char *addr, void *sockaddr_storage, unsigned *len, uint16_t *port,
                      kyb_error **err);

#endif

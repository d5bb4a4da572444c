/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Metrics registry and its text rendering (contract in metrics.h).
 */
#include "operator/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "version.h"

const char *const kyb_op_checkpoint_phases[KYB_OP_NPHASES] = {"Pending", "Running", "Completed",
                                                              "Failed"};
const char *const kyb_op_restore_phases[KYB_OP_NPHASES] = {"Pending", "Restoring", "Completed",
                                                           "Failed"};

static const char *const kind_names[KYB_OP_NKINDS] = {"checkpoint", "restore"};
/* Reconciles are API round trips: milliseconds to a few seconds. */
static const double bounds[KYB_OP_NBUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1,
                                               0.25,  0.5,  1,     2.5,  10};

void kyb_op_metrics_init(kyb_op_metrics *m) {
  memset(m, 0, sizeof(*m));
  pthread_mutex_init(&m->mu, NULL);
}

void kyb_op_metrics_destroy(kyb_op_metrics *m) {
  pthread_mutex_destroy(&m->mu);
}

void kyb_op_metrics_reconciled(kyb_op_metrics *m, kyb_op_kind kind, double seconds, bool failed) {
  pthread_mutex_lock(&m->mu);
  m->reconciles[kind]++;
  if (failed)
    m->errors[kind]++;
  for (int i = 0; i < KYB_OP_NBUCKETS; i++)
    if (seconds <= bounds[i]) {
      m->buckets[kind][i]++;
      break;
    }
  m->duration_sum[kind] += seconds;
  pthread_mutex_unlock(&m->mu);
}

void kyb_op_metrics_count(kyb_op_metrics *m, uint64_t *counter) {
  pthread_mutex_lock(&m->mu);
  (*counter)++;
  pthread_mutex_unlock(&m->mu);
}

void kyb_op_metrics_set_leader(kyb_op_metrics *m, bool leader) {
  pthread_mutex_lock(&m->mu);
  m->leader = leader ? 1 : 0;
  pthread_mutex_unlock(&m->mu);
}

static void header(FILE *f, const char *name, const char *type, const char *help) {
  fprintf(f, "# HELP kybernate_operator_%s %s\n# TYPE kybernate_operator_%s %s\n", name, help, name,
          type);
}

static void phases(FILE *f, kyb_op_metrics *m, kyb_op_kind kind, const char *name,
                   const char *const *names) {
  long counts[KYB_OP_NPHASES] = {0};
  if (m->phases != NULL)
    m->phases(m->phases_ud, kind, counts);
  for (int i = 0; i < KYB_OP_NPHASES; i++)
    fprintf(f, "kybernate_operator_%s{phase=\"%s\"} %ld\n", name, names[i], counts[i]);
}

char *kyb_op_metrics_render(kyb_op_metrics *m) {
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  if (f == NULL)
    return NULL;
  /* The gauges by phase call into the controller, which takes its own
   * locks: not under ours. */
  header(f, "checkpoints", "gauge", "Checkpoint objects by phase.");
  phases(f, m, KYB_OP_KIND_CHECKPOINT, "checkpoints", kyb_op_checkpoint_phases);
  header(f, "restores", "gauge", "Restore objects by phase.");
  phases(f, m, KYB_OP_KIND_RESTORE, "restores", kyb_op_restore_phases);
  pthread_mutex_lock(&m->mu);
  header(f, "reconciles_total", "counter", "Reconciles run, by kind.");
  for (int k = 0; k < KYB_OP_NKINDS; k++)
    fprintf(f, "kybernate_operator_reconciles_total{kind=\"%s\"} %llu\n", kind_names[k],
            (unsigned long long)m->reconciles[k]);
  header(f, "reconcile_errors_total", "counter", "Reconciles that failed and were retried.");
  for (int k = 0; k < KYB_OP_NKINDS; k++)
    fprintf(f, "kybernate_operator_reconcile_errors_total{kind=\"%s\"} %llu\n", kind_names[k],
            (unsigned long long)m->errors[k]);
  header(f, "reconcile_duration_seconds", "histogram", "Time one reconcile took.");
  for (int k = 0; k < KYB_OP_NKINDS; k++) {
    uint64_t cum = 0;
    for (int i = 0; i < KYB_OP_NBUCKETS; i++) {
      cum += m->buckets[k][i];
      fprintf(f,
              "kybernate_operator_reconcile_duration_seconds_bucket{kind=\"%s\",le=\"%g\"} %llu\n",
              kind_names[k], bounds[i], (unsigned long long)cum);
    }
    fprintf(f,
            "kybernate_operator_reconcile_duration_seconds_bucket{kind=\"%s\",le=\"+Inf\"} %llu\n"
            "kybernate_operator_reconcile_duration_seconds_sum{kind=\"%s\"} %.6f\n"
            "kybernate_operator_reconcile_duration_seconds_count{kind=\"%s\"} %llu\n",
            kind_names[k], (unsigned long long)m->reconciles[k], kind_names[k], m->duration_sum[k],
            kind_names[k], (unsigned long long)m->reconciles[k]);
  }
  header(f, "checkpoint_requests_created_total", "counter",
         "CheckpointRequests created (both actions).");
  fprintf(f, "kybernate_operator_checkpoint_requests_created_total %llu\n",
          (unsigned long long)m->requests_created);
  header(f, "restore_pods_created_total", "counter", "Restore pods created.");
  fprintf(f, "kybernate_operator_restore_pods_created_total %llu\n",
          (unsigned long long)m->pods_created);
  header(f, "retention_deletions_total", "counter", "Checkpoints deleted by retention.");
  fprintf(f, "kybernate_operator_retention_deletions_total %llu\n",
          (unsigned long long)m->retention_deletions);
  header(f, "leader", "gauge", "1 while this replica is the leader.");
  fprintf(f, "kybernate_operator_leader %d\n", m->leader);
  pthread_mutex_unlock(&m->mu);
  header(f, "build_info", "gauge", "The operator's version.");
  fprintf(f, "kybernate_operator_build_info{version=\"%s\"} 1\n", KYB_VERSION);
  if (fclose(f) != 0) {
    free(out);
    return NULL;
  }
  return out;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The work queue (contract in queue.h).  A plain array: an operator has
 * tens to thousands of objects, and each operation is a linear scan under
 * one mutex — simpler to trust than a heap plus a hash.
 */
#include "operator/queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum { IDLE, QUEUED, PROCESSING, PROCESSING_AGAIN } state;

typedef struct {
  char *key;
  state st;
  int64_t due; /* QUEUED: when; PROCESSING_AGAIN: when after done */
  int failures;
} entry;

struct kyb_op_queue {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  entry *es;
  size_t n, cap;
  bool shut;
  int64_t base_us, cap_us;
};

int64_t kyb_op_queue_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

kyb_op_queue *kyb_op_queue_new(int64_t base_us, int64_t cap_us) {
  kyb_op_queue *q = calloc(1, sizeof(*q));
  if (q == NULL)
    return NULL;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&q->cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&q->mu, NULL);
  q->base_us = base_us > 0 ? base_us : 500000;
  q->cap_us = cap_us >= q->base_us ? cap_us : q->base_us;
  return q;
}

void kyb_op_queue_free(kyb_op_queue *q) {
  if (q == NULL)
    return;
  for (size_t i = 0; i < q->n; i++)
    free(q->es[i].key);
  free(q->es);
  pthread_cond_destroy(&q->cv);
  pthread_mutex_destroy(&q->mu);
  free(q);
}

static entry *find(kyb_op_queue *q, const char *key) {
  for (size_t i = 0; i < q->n; i++)
    if (strcmp(q->es[i].key, key) == 0)
      return &q->es[i];
  return NULL;
}

static entry *find_or_add(kyb_op_queue *q, const char *key) {
  entry *e = find(q, key);
  if (e != NULL)
    return e;
  if (q->n == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 64;
    entry *es = realloc(q->es, cap * sizeof(*es));
    if (es == NULL)
      return NULL;
    q->es = es;
    q->cap = cap;
  }
  char *k = strdup(key);
  if (k == NULL)
    return NULL;
  q->es[q->n] = (entry){.key = k, .st = IDLE};
  return &q->es[q->n++];
}

/* Drops an entry that holds nothing any more. */
static void maybe_drop(kyb_op_queue *q, entry *e) {
  if (e->st != IDLE || e->failures != 0)
    return;
  free(e->key);
  *e = q->es[--q->n];
}

int kyb_op_queue_add(kyb_op_queue *q, const char *key, int64_t delay_us) {
  int64_t due = kyb_op_queue_now_us() + (delay_us > 0 ? delay_us : 0);
  pthread_mutex_lock(&q->mu);
  entry *e = find_or_add(q, key);
  if (e == NULL) {
    pthread_mutex_unlock(&q->mu);
    errno = ENOMEM;
    return -1;
  }
  switch (e->st) {
  case IDLE:
    e->st = QUEUED;
    e->due = due;
    break;
  case QUEUED:
    if (due < e->due)
      e->due = due;
    break;
  case PROCESSING:
    e->st = PROCESSING_AGAIN;
    e->due = due;
    break;
  case PROCESSING_AGAIN:
    if (due < e->due)
      e->due = due;
    break;
  }
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
  return 0;
}

static void abs_time(int64_t us, struct timespec *ts) {
  ts->tv_sec = (time_t)(us / 1000000);
  ts->tv_nsec = (long)(us % 1000000) * 1000;
}

int kyb_op_queue_get(kyb_op_queue *q, int64_t deadline_us, char **key) {
  pthread_mutex_lock(&q->mu);
  for (;;) {
    if (q->shut) {
      pthread_mutex_unlock(&q->mu);
      return -1;
    }
    int64_t now = kyb_op_queue_now_us();
    entry *best = NULL;
    for (size_t i = 0; i < q->n; i++)
      if (q->es[i].st == QUEUED && (best == NULL || q->es[i].due < best->due))
        best = &q->es[i];
    if (best != NULL && best->due <= now) {
      char *k = strdup(best->key);
      if (k == NULL) { /* leave it queued: the next call tries again */
        pthread_mutex_unlock(&q->mu);
        return 0;
      }
      best->st = PROCESSING;
      *key = k;
      pthread_mutex_unlock(&q->mu);
      return 1;
    }
    if (deadline_us > 0 && now >= deadline_us) {
      pthread_mutex_unlock(&q->mu);
      return 0;
    }
    int64_t wake = best != NULL ? best->due : 0;
    if (deadline_us > 0 && (wake == 0 || deadline_us < wake))
      wake = deadline_us;
    if (wake == 0) {
      pthread_cond_wait(&q->cv, &q->mu);
    } else {
      struct timespec ts;
      abs_time(wake, &ts);
      pthread_cond_timedwait(&q->cv, &q->mu, &ts);
    }
  }
}

void kyb_op_queue_done(kyb_op_queue *q, const char *key) {
  pthread_mutex_lock(&q->mu);
  entry *e = find(q, key);
  if (e != NULL) {
    if (e->st == PROCESSING_AGAIN) {
      e->st = QUEUED;
      pthread_cond_broadcast(&q->cv);
    } else if (e->st == PROCESSING) {
      e->st = IDLE;
      maybe_drop(q, e);
    }
  }
  pthread_mutex_unlock(&q->mu);
}

int64_t kyb_op_queue_failed(kyb_op_queue *q, const char *key) {
  pthread_mutex_lock(&q->mu);
  entry *e = find_or_add(q, key);
  int64_t d = q->base_us;
  if (e != NULL) {
    for (int i = 0; i < e->failures && d < q->cap_us; i++)
      d *= 2;
    if (e->failures < 64)
      e->failures++;
  }
  pthread_mutex_unlock(&q->mu);
  return d < q->cap_us ? d : q->cap_us;
}

void kyb_op_queue_forget(kyb_op_queue *q, const char *key) {
  pthread_mutex_lock(&q->mu);
  entry *e = find(q, key);
  if (e != NULL) {
    e->failures = 0;
    maybe_drop(q, e);
  }
  pthread_mutex_unlock(&q->mu);
}

void kyb_op_queue_shutdown(kyb_op_queue *q) {
  pthread_mutex_lock(&q->mu);
  q->shut = true;
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
}

size_t kyb_op_queue_len(kyb_op_queue *q) {
  pthread_mutex_lock(&q->mu);
  size_t k = 0;
  for (size_t i = 0; i < q->n; i++)
    k += q->es[i].st == QUEUED || q->es[i].st == PROCESSING_AGAIN;
  pthread_mutex_unlock(&q->mu);
  return k;
}

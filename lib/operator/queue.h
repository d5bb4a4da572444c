/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The operator's work queue (client-go's delaying, rate-limited workqueue,
 * reduced to what one worker needs):
 *
 *  - a key ("c/<ns>/<name>", "r/<ns>/<name>") is queued at most once; adding
 *    it again keeps the earlier due time;
 *  - a key being processed is never handed out twice: added meanwhile, it
 *    is queued again when kyb_op_queue_done is called;
 *  - kyb_op_queue_failed gives the per-key back-off for a retry (doubling
 *    from base to cap), kyb_op_queue_forget resets it;
 *  - kyb_op_queue_get waits for the earliest due key, a deadline, or
 *    shutdown.
 * Thread-safe; times are CLOCK_MONOTONIC microseconds.
 */
#ifndef KYB_OPERATOR_QUEUE_H
#define KYB_OPERATOR_QUEUE_H

#include <stddef.h>
#include <stdint.h>

typedef struct kyb_op_queue kyb_op_queue;

/* base_us/cap_us: the retry back-off; NULL on ENOMEM. */
kyb_op_queue *kyb_op_queue_new(int64_t base_us, int64_t cap_us);
void kyb_op_queue_free(kyb_op_queue *q);

int64_t kyb_op_queue_now_us(void);

/* Queues key to be due delay_us from now.  -1 on ENOMEM. */
int kyb_op_queue_add(kyb_op_queue *q, const char *key, int64_t delay_us);

/* 1 with *key (heap) now marked processing; 0 when deadline_us (absolute,
 * monotonic; 0: none) came first; -1 after shutdown. */
int kyb_op_queue_get(kyb_op_queue *q, int64_t deadline_us, char **key);

/* Processing of key ended; a re-add that came meanwhile is queued now. */
void kyb_op_queue_done(kyb_op_queue *q, const char *key);

/* The back-off for key's next retry (and counts this failure). */
int64_t kyb_op_queue_failed(kyb_op_queue *q, const char *key);
void kyb_op_queue_forget(kyb_op_queue *q, const char *key);

/* Wakes every waiter; get answers -1 from now on. */
void kyb_op_queue_shutdown(kyb_op_queue *q);

/* Keys queued (not processing). */
size_t kyb_op_queue_len(kyb_op_queue *q);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the operator's work queue: one entry per key, the earlier
 * due time wins, a key in processing is never handed out twice and comes
 * back once done, delays and deadlines, per-key back-off, shutdown wakes a
 * waiting worker.  (Waits are bounded by deadlines, never timed asserts.) */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "operator/queue.h"

#define MS 1000LL
#define SEC 1000000LL

static char *get_now(kyb_op_queue *q) {
  char *key = NULL;
  /* A deadline already passed: only what is due now. */
  int r = kyb_op_queue_get(q, kyb_op_queue_now_us(), &key);
  return r == 1 ? key : NULL;
}

static void test_dedup_and_order(void **state) {
  (void)state;
  kyb_op_queue *q = kyb_op_queue_new(0, 0);
  assert_int_equal(kyb_op_queue_add(q, "c/ns/a", 0), 0);
  assert_int_equal(kyb_op_queue_add(q, "c/ns/a", 0), 0);
  assert_int_equal(kyb_op_queue_add(q, "r/ns/b", 0), 0);
  assert_int_equal(kyb_op_queue_len(q), 2);
  char *k1 = get_now(q), *k2 = get_now(q), *k3 = get_now(q);
  assert_non_null(k1);
  assert_non_null(k2);
  assert_null(k3);
  assert_string_not_equal(k1, k2);
  kyb_op_queue_done(q, k1);
  kyb_op_queue_done(q, k2);
  free(k1);
  free(k2);
  assert_int_equal(kyb_op_queue_len(q), 0);
  kyb_op_queue_free(q);
}

static void test_processing_key_requeued_after_done(void **state) {
  (void)state;
  kyb_op_queue *q = kyb_op_queue_new(0, 0);
  kyb_op_queue_add(q, "c/ns/a", 0);
  char *k = get_now(q);
  assert_string_equal(k, "c/ns/a");
  /* An event while it is processed: not handed out again until done. */
  kyb_op_queue_add(q, "c/ns/a", 0);
  assert_null(get_now(q));
  assert_int_equal(kyb_op_queue_len(q), 1);
  kyb_op_queue_done(q, k);
  free(k);
  k = get_now(q);
  assert_non_null(k);
  assert_string_equal(k, "c/ns/a");
  kyb_op_queue_done(q, k);
  free(k);
  assert_null(get_now(q));
  kyb_op_queue_free(q);
}

static void test_delays_and_deadline(void **state) {
  (void)state;
  kyb_op_queue *q = kyb_op_queue_new(0, 0);
  kyb_op_queue_add(q, "later", 3600 * SEC);
  assert_null(get_now(q));
  /* A deadline before the item is due: 0 after waiting for it. */
  char *key = NULL;
  assert_int_equal(kyb_op_queue_get(q, kyb_op_queue_now_us() + 20 * MS, &key), 0);
  /* Adding again with a shorter delay moves it earlier. */
  kyb_op_queue_add(q, "later", 0);
  key = get_now(q);
  assert_non_null(key);
  kyb_op_queue_done(q, key);
  free(key);
  /* A short delay: a wait without deadline returns it once due. */
  kyb_op_queue_add(q, "soon", 10 * MS);
  assert_int_equal(kyb_op_queue_get(q, 0, &key), 1);
  assert_string_equal(key, "soon");
  kyb_op_queue_done(q, key);
  free(key);
  kyb_op_queue_free(q);
}

static void test_backoff(void **state) {
  (void)state;
  kyb_op_queue *q = kyb_op_queue_new(100 * MS, 1 * SEC);
  assert_int_equal(kyb_op_queue_failed(q, "k"), 100 * MS);
  assert_int_equal(kyb_op_queue_failed(q, "k"), 200 * MS);
  assert_int_equal(kyb_op_queue_failed(q, "k"), 400 * MS);
  assert_int_equal(kyb_op_queue_failed(q, "k"), 800 * MS);
  assert_int_equal(kyb_op_queue_failed(q, "k"), 1 * SEC);
  assert_int_equal(kyb_op_queue_failed(q, "k"), 1 * SEC);
  assert_int_equal(kyb_op_queue_failed(q, "other"), 100 * MS);
  kyb_op_queue_forget(q, "k");
  assert_int_equal(kyb_op_queue_failed(q, "k"), 100 * MS);
  kyb_op_queue_free(q);
}

static void *waiter(void *arg) {
  char *key = NULL;
  long r = kyb_op_queue_get(arg, 0, &key);
  free(key);
  return (void *)r;
}

static void test_shutdown_wakes(void **state) {
  (void)state;
  kyb_op_queue *q = kyb_op_queue_new(0, 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, waiter, q), 0);
  kyb_op_queue_shutdown(q);
  void *ret = NULL;
  pthread_join(th, &ret);
  assert_int_equal((long)ret, -1);
  char *key = NULL;
  kyb_op_queue_add(q, "x", 0);
  assert_int_equal(kyb_op_queue_get(q, 0, &key), -1);
  kyb_op_queue_free(q);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dedup_and_order),
      cmocka_unit_test(test_processing_key_requeued_after_done),
      cmocka_unit_test(test_delays_and_deadline),
      cmocka_unit_test(test_backoff),
      cmocka_unit_test(test_shutdown_wakes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

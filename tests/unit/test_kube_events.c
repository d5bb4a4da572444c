/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of Events: the core/v1 Event object, input checks, and the
 * folding of repeats into count/lastTimestamp (a new Event when the old one
 * is gone or the repeat comes too late), on the wire. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "kube/events.h"
#include "kube_fake_server.h"
#include "util/cleanup.h"

static int64_t fake_now;
static int64_t clock_fn(void *ud) {
  (void)ud;
  return fake_now;
}

#define SEC 1000000LL
#define T0 (1700000000LL * SEC)

static const char involved_json[] =
    "{\"apiVersion\":\"kybernate.io/v1alpha1\",\"kind\":\"Checkpoint\",\"metadata\":{\"name\":"
    "\"ck-1\",\"namespace\":\"team\",\"uid\":\"u-1\",\"resourceVersion\":\"42\"}}";

static void test_build(void **state) {
  (void)state;
  cleanup_json json_t *inv = json_loads(involved_json, 0, NULL);
  kyb_kube_recorder_opts o = {.component = "kybernate-operator", .instance = "op-0"};
  cleanup_error kyb_error *err = NULL;
  cleanup_json json_t *ev =
      kyb_kube_event_build(&o, inv, "Warning", "PodNotFound", "pod web-0 does not exist", T0, &err);
  assert_non_null(ev);
  cleanup_free char *s = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
  assert_string_equal(
      s, "{\"apiVersion\":\"v1\",\"count\":1,\"firstTimestamp\":\"2023-11-14T22:13:20Z\","
         "\"involvedObject\":{\"apiVersion\":\"kybernate.io/v1alpha1\",\"kind\":\"Checkpoint\","
         "\"name\":\"ck-1\",\"namespace\":\"team\",\"resourceVersion\":\"42\",\"uid\":\"u-1\"},"
         "\"kind\":\"Event\",\"lastTimestamp\":\"2023-11-14T22:13:20Z\",\"message\":\"pod web-0 "
         "does not exist\",\"metadata\":{\"name\":\"ck-1.17979cfe362a0000\",\"namespace\":"
         "\"team\"},\"reason\":\"PodNotFound\",\"reportingComponent\":\"kybernate-operator\","
         "\"reportingInstance\":\"op-0\",\"source\":{\"component\":\"kybernate-operator\","
         "\"host\":\"op-0\"},\"type\":\"Warning\"}");

  /* A cluster-scoped object's events go to "default", as client-go does. */
  cleanup_json json_t *node = json_loads(
      "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"n1\"}}", 0, NULL);
  cleanup_json json_t *ev2 = kyb_kube_event_build(&o, node, "Normal", "Ok", "fine", T0, &err);
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(ev2, "metadata"), "namespace")), "default");

  /* Refusals. */
  assert_null(kyb_kube_event_build(&o, inv, "Error", "X", "m", T0, &err));
  assert_null(kyb_kube_event_build(&o, inv, "Normal", "not camel", "m", T0, &err));
  assert_null(kyb_kube_event_build(&o, inv, "Normal", "", "m", T0, &err));
  cleanup_json json_t *item = json_loads("{\"metadata\":{\"name\":\"x\"}}", 0, NULL);
  assert_null(kyb_kube_event_build(&o, item, "Normal", "X", "m", T0, &err));
  assert_non_null(strstr(kyb_error_message(err), "list items lack apiVersion and kind"));
  assert_null(kyb_kube_event_build(&o, inv, "Normal", "X", "\xff", T0, &err));
}

static void test_repeats_fold(void **state) {
  (void)state;
  fake_server s;
  fake_reply r[] = {
      {.pieces = {fake_json(201, "{}")}}, /* first: create */
      {.pieces = {fake_json(200, "{}")}}, /* repeat: patch count 2 */
      {.pieces = {fake_json(404, "{\"kind\":\"Status\",\"code\":404,\"reason\":\"NotFound\"}")}},
      {.pieces = {fake_json(201, "{}")}}, /* ... gone: create anew */
      {.pieces = {fake_json(201, "{}")}}, /* too late for folding: new */
      {.pieces = {fake_json(201, "{}")}}, /* another message: new */
  };
  assert_int_equal(fake_start(&s, r, 6), 0);
  kyb_kube_client *c = fake_client(&s, NULL);
  kyb_kube_recorder_opts o = {.component = "kybernate-agent", .now_us = clock_fn};
  kyb_kube_recorder *rec = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_kube_recorder_new(&o, &rec, &err), 0);
  cleanup_json json_t *inv = json_loads(involved_json, 0, NULL);

  fake_now = T0;
  assert_int_equal(kyb_kube_event(c, rec, inv, "Normal", "Started", &err, "step %d", 1), 0);
  cleanup_free char *q1 = fake_next_request(&s);
  assert_true(fake_starts(q1, "POST /api/v1/namespaces/team/events "));
  assert_non_null(strstr(fake_body(q1), "\"message\":\"step 1\""));

  fake_now = T0 + 5 * SEC;
  assert_int_equal(kyb_kube_event(c, rec, inv, "Normal", "Started", &err, "step %d", 1), 0);
  cleanup_free char *q2 = fake_next_request(&s);
  assert_true(fake_starts(q2, "PATCH /api/v1/namespaces/team/events/ck-1.17979cfe362a0000 "));
  assert_string_equal(fake_body(q2), "{\"count\":2,\"lastTimestamp\":\"2023-11-14T22:13:25Z\"}");

  fake_now = T0 + 6 * SEC;
  assert_int_equal(kyb_kube_event(c, rec, inv, "Normal", "Started", &err, "step %d", 1), 0);
  free(fake_next_request(&s)); /* the PATCH that found nothing */
  cleanup_free char *q3 = fake_next_request(&s);
  assert_true(fake_starts(q3, "POST "));

  fake_now = T0 + 6 * SEC + KYB_KUBE_EVENT_REPEAT_US;
  assert_int_equal(kyb_kube_event(c, rec, inv, "Normal", "Started", &err, "step %d", 1), 0);
  cleanup_free char *q4 = fake_next_request(&s);
  assert_true(fake_starts(q4, "POST "));
  assert_non_null(strstr(fake_body(q4), "\"count\":1"));

  assert_int_equal(kyb_kube_event(c, rec, inv, "Normal", "Started", &err, "step %d", 2), 0);
  cleanup_free char *q5 = fake_next_request(&s);
  assert_true(fake_starts(q5, "POST "));

  /* Long messages are cut at 1024 bytes. */
  char big[2048];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  cleanup_json json_t *ev = kyb_kube_event_build(&o, inv, "Normal", "Big", big, T0, &err);
  assert_int_equal(json_string_length(json_object_get(ev, "message")), KYB_KUBE_EVENT_MAX_MESSAGE);

  kyb_kube_recorder_free(rec);
  kyb_kube_client_free(c);
  fake_stop(&s);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_build),
      cmocka_unit_test(test_repeats_fold),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

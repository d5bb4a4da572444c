/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of leader election with a fake clock: client-go's takeover
 * rule (observed time, never the other machine's renewTime), released
 * leases, transitions, the renew deadline, races lost with 409, and release
 * — the elector's requests checked on the wire against the canned server. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "kube/lease.h"
#include "kube_fake_server.h"
#include "util/cleanup.h"

static int64_t fake_now;
static int64_t clock_fn(void *ud) {
  (void)ud;
  return fake_now;
}

#define SEC 1000000LL
#define T0 (1700000000LL * SEC)

static void test_may_take_rule(void **state) {
  (void)state;
  kyb_kube_lease_record held = {.holder = "other", .duration_s = 15, .renew_us = T0};
  /* Held by another: wait leaseDuration from when WE first saw this content. */
  assert_false(kyb_kube_lease_may_take(&held, T0, "me", T0));
  assert_false(kyb_kube_lease_may_take(&held, T0, "me", T0 + 15 * SEC - 1));
  assert_true(kyb_kube_lease_may_take(&held, T0, "me", T0 + 15 * SEC));
  /* A renewTime far in the past means nothing if we only just saw it. */
  held.renew_us = T0 - 3600 * SEC;
  assert_false(kyb_kube_lease_may_take(&held, T0, "me", T0 + SEC));
  /* Ours: always renewable.  Released: free at once. */
  assert_true(kyb_kube_lease_may_take(&held, T0, "other", T0));
  kyb_kube_lease_record released = {.holder = "", .duration_s = 1};
  assert_true(kyb_kube_lease_may_take(&released, T0, "me", T0));
  kyb_kube_lease_record zero = {.holder = "other", .duration_s = 0};
  assert_true(kyb_kube_lease_may_take(&zero, T0, "me", T0));
}

static void test_record_json(void **state) {
  (void)state;
  kyb_kube_lease_record r = {.holder = "me",
                             .duration_s = 15,
                             .acquire_us = T0,
                             .renew_us = T0 + 123456,
                             .transitions = 3};
  cleanup_json json_t *j = kyb_kube_lease_record_json(&r);
  cleanup_free char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
  assert_string_equal(s, "{\"acquireTime\":\"2023-11-14T22:13:20.000000Z\",\"holderIdentity\":"
                         "\"me\",\"leaseDurationSeconds\":15,\"leaseTransitions\":3,\"renewTime\":"
                         "\"2023-11-14T22:13:20.123456Z\"}");
  kyb_kube_lease_record back;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_kube_lease_record_parse(j, &back, &err), 0);
  assert_string_equal(back.holder, "me");
  assert_int_equal(back.duration_s, 15);
  assert_int_equal(back.renew_us, T0 + 123456);
  assert_int_equal(back.transitions, 3);
  kyb_kube_lease_record_clear(&back);
  /* Missing fields read as the Go struct's zero values. */
  cleanup_json json_t *empty = json_object();
  assert_int_equal(kyb_kube_lease_record_parse(empty, &back, &err), 0);
  assert_string_equal(back.holder, "");
  assert_int_equal(back.duration_s, 0);
  kyb_kube_lease_record_clear(&back);
}

#define LEASE(rv, holder, dur, trans, renew)                                                       \
  "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"metadata\":{\"name\":\"op\","   \
  "\"namespace\":\"kyb\",\"resourceVersion\":\"" rv "\"},\"spec\":{\"holderIdentity\":\"" holder   \
  "\",\"leaseDurationSeconds\":" dur ",\"leaseTransitions\":" trans ",\"acquireTime\":"            \
  "\"2023-11-14T22:00:00.000000Z\",\"renewTime\":\"" renew "\"}}"
#define NOT_FOUND fake_json(404, "{\"kind\":\"Status\",\"code\":404,\"reason\":\"NotFound\"}")
#define CONFLICT fake_json(409, "{\"kind\":\"Status\",\"code\":409,\"reason\":\"Conflict\"}")

static json_t *spec_of(const char *req) {
  json_t *j = json_loads(fake_body(req), 0, NULL);
  json_t *spec = json_incref(json_object_get(j, "spec"));
  json_decref(j);
  return spec;
}

static void assert_spec(json_t *spec, const char *holder, long dur, long trans) {
  assert_string_equal(json_string_value(json_object_get(spec, "holderIdentity")), holder);
  assert_int_equal(json_integer_value(json_object_get(spec, "leaseDurationSeconds")), dur);
  assert_int_equal(json_integer_value(json_object_get(spec, "leaseTransitions")), trans);
}

static kyb_kube_elector *elector(const char *id) {
  kyb_kube_elector_opts o = {.ns = "kyb", .name = "op", .identity = id, .now_us = clock_fn};
  kyb_kube_elector *el = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_kube_elector_new(&o, &el, &err), 0);
  return el;
}

static void test_acquire_new_renew_release(void **state) {
  (void)state;
  fake_server s;
  const char *mine = LEASE("1", "me", "15", "0", "2023-11-14T22:13:20.000000Z");
  fake_reply r[] = {
      {.pieces = {NOT_FOUND}},
      {.pieces = {fake_json(201, mine)}},
      /* renew: the lease as we left it */
      {.pieces = {fake_json(200, mine)}},
      {.pieces = {fake_json(200, LEASE("2", "me", "15", "0", "2023-11-14T22:13:22.000000Z"))}},
      /* release */
      {.pieces = {fake_json(200, LEASE("3", "", "1", "0", "2023-11-14T22:13:23.000000Z"))}},
  };
  assert_int_equal(fake_start(&s, r, 5), 0);
  kyb_kube_client *c = fake_client(&s, NULL);
  kyb_kube_elector *el = elector("me");
  cleanup_error kyb_error *err = NULL;
  bool leader = false;
  fake_now = T0;
  assert_int_equal(kyb_kube_elector_try(c, el, &leader, &err), 0);
  assert_true(leader);
  assert_true(kyb_kube_elector_is_leader(el));
  free(fake_next_request(&s));
  cleanup_free char *create = fake_next_request(&s);
  assert_true(fake_starts(create, "POST /apis/coordination.k8s.io/v1/namespaces/kyb/leases "));
  cleanup_json json_t *cs = spec_of(create);
  assert_spec(cs, "me", 15, 0);
  assert_string_equal(json_string_value(json_object_get(cs, "renewTime")),
                      "2023-11-14T22:13:20.000000Z");

  fake_now = T0 + 2 * SEC;
  assert_int_equal(kyb_kube_elector_try(c, el, &leader, &err), 0);
  assert_true(leader);
  free(fake_next_request(&s));
  cleanup_free char *renew = fake_next_request(&s);
  assert_true(fake_starts(renew, "PUT /apis/coordination.k8s.io/v1/namespaces/kyb/leases/op "));
  cleanup_json json_t *rs = spec_of(renew);
  assert_spec(rs, "me", 15, 0); /* renewing is no transition */
  assert_string_equal(json_string_value(json_object_get(rs, "renewTime")),
                      "2023-11-14T22:13:22.000000Z");
  assert_string_equal(json_string_value(json_object_get(rs, "acquireTime")),
                      "2023-11-14T22:00:00.000000Z"); /* kept */
  assert_non_null(strstr(fake_body(renew), "\"resourceVersion\":\"1\""));

  /* No renew for longer than the renew deadline (10 s): not leader any more. */
  fake_now = T0 + 12 * SEC + 1;
  assert_false(kyb_kube_elector_is_leader(el));
  fake_now = T0 + 3 * SEC;
  assert_true(kyb_kube_elector_is_leader(el));

  assert_int_equal(kyb_kube_elector_release(c, el, &err), 0);
  cleanup_free char *rel = fake_next_request(&s);
  cleanup_json json_t *ls = spec_of(rel);
  assert_spec(ls, "", 1, 0);
  assert_false(kyb_kube_elector_is_leader(el));
  assert_string_equal(kyb_kube_elector_holder(el), "");
  /* Not holding: release is a no-op. */
  assert_int_equal(kyb_kube_elector_release(c, el, &err), 0);
  kyb_kube_elector_free(el);
  kyb_kube_client_free(c);
  fake_stop(&s);
}

static void test_takeover_waits_for_observed_expiry(void **state) {
  (void)state;
  fake_server s;
  /* renewTime is an hour old by our clock: that must not matter. */
  const char *held = LEASE("7", "other", "15", "4", "2023-11-14T21:00:00.000000Z");
  const char *renewed = LEASE("8", "other", "15", "4", "2023-11-14T21:00:05.000000Z");
  fake_reply r[] = {
      {.pieces = {fake_json(200, held)}},    /* t0: first seen */
      {.pieces = {fake_json(200, held)}},    /* t0+10: unchanged, not yet */
      {.pieces = {fake_json(200, renewed)}}, /* t0+14: the holder renewed: clock restarts */
      {.pieces = {fake_json(200, renewed)}}, /* t0+20: only 6 s since the change */
      {.pieces = {fake_json(200, renewed)}}, /* t0+29: 15 s since the change: take it */
      {.pieces = {fake_json(200, LEASE("9", "me", "15", "5", "2023-11-14T22:13:49.000000Z"))}},
  };
  assert_int_equal(fake_start(&s, r, 6), 0);
  kyb_kube_client *c = fake_client(&s, NULL);
  kyb_kube_elector *el = elector("me");
  cleanup_error kyb_error *err = NULL;
  bool leader = true;
  const int64_t at[] = {0, 10, 14, 20};
  for (size_t k = 0; k < 4; k++) {
    fake_now = T0 + at[k] * SEC;
    assert_int_equal(kyb_kube_elector_try(c, el, &leader, &err), 0);
    assert_false(leader);
    assert_string_equal(kyb_kube_elector_holder(el), "other");
    cleanup_free char *get = fake_next_request(&s);
    assert_true(fake_starts(get, "GET "));
  }
  fake_now = T0 + 29 * SEC;
  assert_int_equal(kyb_kube_elector_try(c, el, &leader, &err), 0);
  assert_true(leader);
  free(fake_next_request(&s));
  cleanup_free char *put = fake_next_request(&s);
  cleanup_json json_t *ps = spec_of(put);
  assert_spec(ps, "me", 15, 5); /* a takeover is a transition */
  assert_string_equal(json_string_value(json_object_get(ps, "acquireTime")),
                      "2023-11-14T22:13:49.000000Z");
  assert_non_null(strstr(fake_body(put), "\"resourceVersion\":\"8\""));
  assert_int_equal(kyb_kube_elector_transitions(el), 5);
  kyb_kube_elector_free(el);
  kyb_kube_client_free(c);
  fake_stop(&s);
}

static void test_released_and_races(void **state) {
  (void)state;
  fake_server s;
  fake_reply r[] = {
      /* released: take it at once, but another candidate wrote first */
      {.pieces = {fake_json(200, LEASE("3", "", "1", "2", "2023-11-14T22:13:20.000000Z"))}},
      {.pieces = {CONFLICT}},
      /* both created it at once: theirs won */
      {.pieces = {NOT_FOUND}},
      {.pieces = {fake_json(409,
                            "{\"kind\":\"Status\",\"code\":409,\"reason\":\"AlreadyExists\"}")}},
      /* a real server error is an error */
      {.pieces = {fake_json(500, "{\"kind\":\"Status\",\"code\":500,\"message\":\"etcd\"}")}},
  };
  assert_int_equal(fake_start(&s, r, 5), 0);
  kyb_kube_client *c = fake_client(&s, NULL);
  kyb_kube_elector *el = elector("me");
  cleanup_error kyb_error *err = NULL;
  bool leader = true;
  fake_now = T0;
  assert_int_equal(kyb_kube_elector_try(c, el, &leader, &err), 0);
  assert_false(leader);
  free(fake_next_request(&s));
  cleanup_free char *put = fake_next_request(&s);
  cleanup_json json_t *ps = spec_of(put);
  assert_spec(ps, "me", 15, 3);

  assert_int_equal(kyb_kube_elector_try(c, el, &leader, &err), 0);
  assert_false(leader);
  assert_false(kyb_kube_elector_is_leader(el));

  assert_int_equal(kyb_kube_elector_try(c, el, &leader, &err), -1);
  assert_int_equal(kyb_kube_status_of(err), 500);
  assert_false(leader);
  kyb_kube_elector_free(el);
  kyb_kube_client_free(c);
  fake_stop(&s);
}

static void test_elector_opts(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  kyb_kube_elector *el = NULL;
  kyb_kube_elector_opts o = {
      .name = "op", .identity = "me", .lease_duration_s = 5, .renew_deadline_ms = 5000};
  assert_int_equal(kyb_kube_elector_new(&o, &el, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "must be shorter than the lease duration"));
  kyb_kube_elector_opts o2 = {.name = "op", .identity = ""};
  assert_int_equal(kyb_kube_elector_new(&o2, &el, &err), -1);
  assert_null(el);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_may_take_rule),
      cmocka_unit_test(test_record_json),
      cmocka_unit_test(test_acquire_new_renew_release),
      cmocka_unit_test(test_takeover_waits_for_observed_expiry),
      cmocka_unit_test(test_released_and_races),
      cmocka_unit_test(test_elector_opts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

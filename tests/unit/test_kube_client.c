/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the calls on the wire (against the canned server): method,
 * path, content type and body of get/list/create/update/patch/delete,
 * conflict retry, paging with an expired continue token, bearer token
 * rotation, size limits, malformed answers, timeouts and an unreachable
 * server. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "kube/client.h"
#include "kube_fake_server.h"
#include "util/cleanup.h"
#include "util/fs.h"

static const kyb_kube_resource checkpoints = {"kybernate.io", "v1alpha1", "checkpoints", true};

#define CP(rv, phase)                                                                              \
  "{\"apiVersion\":\"kybernate.io/v1alpha1\",\"kind\":\"Checkpoint\",\"metadata\":{\"name\":"      \
  "\"x\",\"namespace\":\"team\",\"resourceVersion\":\"" rv "\"},\"status\":{\"phase\":\"" phase    \
  "\"}}"

static char *next_req(fake_server *s, const char *start) {
  char *req = fake_next_request(s);
  if (req == NULL || strncmp(req, start, strlen(start)) != 0)
    fail_msg("request '%.300s' does not start with '%s'", req ? req : "(none)", start);
  return req;
}

static void assert_has(const char *s, const char *part) {
  if (s == NULL || strstr(s, part) == NULL)
    fail_msg("'%.400s' lacks '%s'", s ? s : "(null)", part);
}

static void test_calls_on_the_wire(void **state) {
  (void)state;
  fake_server s;
  fake_reply r[] = {
      {.pieces = {fake_json(200, CP("1", "Pending"))}},
      {.pieces = {fake_json(201, CP("2", ""))}},
      {.pieces = {fake_json(200, CP("3", "Running"))}},
      {.pieces = {fake_json(200, CP("4", "Done"))}},
      {.pieces = {fake_json(200, "{\"kind\":\"Status\",\"status\":\"Success\"}")}},
      {.pieces = {fake_json(409, "{\"kind\":\"Status\",\"code\":409,\"reason\":\"AlreadyExists\","
                                 "\"message\":\"checkpoints.kybernate.io \\\"x\\\" already "
                                 "exists\"}")}},
      {.pieces = {fake_json(200, "{\"metadata\":{\"resourceVersion\":\"9\"},\"items\":null}")}},
  };
  assert_int_equal(fake_start(&s, r, 7), 0);
  kyb_kube_client *c = fake_client(&s, NULL);
  cleanup_error kyb_error *err = NULL;

  cleanup_json json_t *got = NULL;
  assert_int_equal(kyb_kube_get(c, &checkpoints, "team", "x", &got, &err), 0);
  assert_string_equal(json_string_value(json_object_get(json_object_get(got, "status"), "phase")),
                      "Pending");
  cleanup_free char *q1 = next_req(&s, "GET /apis/kybernate.io/v1alpha1/namespaces/team/"
                                       "checkpoints/x HTTP/1.1\r\n");
  assert_has(q1, "\r\nUser-Agent: kybernate/");

  cleanup_json json_t *obj = json_loads("{\"metadata\":{\"name\":\"x\"},\"spec\":{}}", 0, NULL);
  assert_int_equal(kyb_kube_create(c, &checkpoints, "team", obj, NULL, &err), 0);
  cleanup_free char *q2 =
      next_req(&s, "POST /apis/kybernate.io/v1alpha1/namespaces/team/checkpoints HTTP/1.1\r\n");
  assert_has(q2, "\r\nContent-Type: application/json\r\n");
  assert_string_equal(fake_body(q2), "{\"metadata\":{\"name\":\"x\"},\"spec\":{}}");

  cleanup_json json_t *upd = json_loads(CP("2", "Running"), 0, NULL);
  assert_int_equal(kyb_kube_update(c, &checkpoints, upd, "status", NULL, &err), 0);
  cleanup_free char *q3 = next_req(&s, "PUT /apis/kybernate.io/v1alpha1/namespaces/team/"
                                       "checkpoints/x/status HTTP/1.1\r\n");
  assert_has(fake_body(q3), "\"resourceVersion\":\"2\"");

  cleanup_json json_t *patch = json_loads("{\"status\":{\"phase\":\"Done\"}}", 0, NULL);
  assert_int_equal(kyb_kube_patch(c, &checkpoints, "team", "x", patch, NULL, NULL, &err), 0);
  cleanup_free char *q4 =
      next_req(&s, "PATCH /apis/kybernate.io/v1alpha1/namespaces/team/checkpoints/x HTTP/1.1");
  assert_has(q4, "\r\nContent-Type: application/merge-patch+json\r\n");
  assert_string_equal(fake_body(q4), "{\"status\":{\"phase\":\"Done\"}}");

  kyb_kube_delete_opts d = {
      .propagation_policy = "Foreground", .precondition_uid = "u-1", .grace_period_seconds = -1};
  assert_int_equal(kyb_kube_delete(c, &checkpoints, "team", "x", &d, NULL, &err), 0);
  cleanup_free char *q5 =
      next_req(&s, "DELETE /apis/kybernate.io/v1alpha1/namespaces/team/checkpoints/x HTTP/1.1");
  assert_string_equal(fake_body(q5), "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\","
                                     "\"propagationPolicy\":\"Foreground\",\"preconditions\":{"
                                     "\"uid\":\"u-1\"}}");

  assert_int_equal(kyb_kube_create(c, &checkpoints, NULL, upd, NULL, &err), -1);
  assert_string_equal(kyb_error_message(err),
                      "kube: create kybernate.io/v1alpha1 checkpoints team/x: 409 AlreadyExists: "
                      "checkpoints.kybernate.io \"x\" already exists (File exists)");
  free(fake_next_request(&s));

  cleanup_json json_t *list = NULL;
  kyb_kube_list_opts lo = {.field_selector = "spec.nodeName=n1", .resource_version = "0"};
  assert_int_equal(kyb_kube_list(c, &kyb_kube_res_pods, "", &lo, &list, &err), 0);
  assert_true(json_is_array(json_object_get(list, "items"))); /* null became [] */
  cleanup_free char *q7 = next_req(&s, "GET /api/v1/pods?fieldSelector=spec.nodeName%3Dn1&"
                                       "resourceVersion=0 HTTP/1.1");
  kyb_kube_client_free(c);
  fake_stop(&s);
}

typedef struct {
  int calls;
  int skip_when_phase_is; /* answer 1 when the phase already reads "Done" */
} mutation;

static int set_done(void *ud, json_t *obj, kyb_error **err) {
  (void)err;
  mutation *m = ud;
  m->calls++;
  json_t *st = json_object_get(obj, "status");
  const char *ph = json_string_value(json_object_get(st, "phase"));
  if (m->skip_when_phase_is && ph != NULL && strcmp(ph, "Done") == 0)
    return 1;
  json_object_set_new(st, "phase", json_string("Done"));
  return 0;
}

#define CONFLICT                                                                                   \
  fake_json(409, "{\"kind\":\"Status\",\"code\":409,\"reason\":\"Conflict\",\"message\":"          \
                 "\"the object has been modified\"}")

static void test_modify_retries_on_conflict(void **state) {
  (void)state;
  fake_server s;
  fake_reply r[] = {
      {.pieces = {fake_json(200, CP("1", "Running"))}},
      {.pieces = {CONFLICT}},
      {.pieces = {fake_json(200, CP("2", "Running"))}},
      {.pieces = {fake_json(200, CP("3", "Done"))}},
      /* already as wanted: no write */
      {.pieces = {fake_json(200, CP("3", "Done"))}},
      /* conflicts until the attempts run out */
      {.pieces = {fake_json(200, CP("3", "Running"))}},
      {.pieces = {CONFLICT}},
      {.pieces = {fake_json(200, CP("4", "Running"))}},
      {.pieces = {CONFLICT}},
  };
  assert_int_equal(fake_start(&s, r, 9), 0);
  kyb_kube_client *c = fake_client(&s, NULL);
  cleanup_error kyb_error *err = NULL;
  mutation m = {0};
  int attempts = 0;
  cleanup_json json_t *out = NULL;
  if (kyb_kube_modify(c, &checkpoints, "team", "x", "status", set_done, &m, NULL, &out, &attempts,
                      &err) != 0)
    fail_msg("%s", kyb_error_message(err));
  assert_int_equal(m.calls, 2);
  assert_int_equal(attempts, 2);
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(out, "metadata"), "resourceVersion")), "3");
  free(next_req(&s, "GET /apis/kybernate.io/v1alpha1/namespaces/team/checkpoints/x "));
  free(next_req(&s, "PUT /apis/kybernate.io/v1alpha1/namespaces/team/checkpoints/x/status "));
  free(next_req(&s, "GET "));
  cleanup_free char *put2 = next_req(&s, "PUT ");
  assert_has(fake_body(put2), "\"resourceVersion\":\"2\"");
  assert_has(fake_body(put2), "\"phase\":\"Done\"");

  mutation skip = {.skip_when_phase_is = 1};
  assert_int_equal(kyb_kube_modify(c, &checkpoints, "team", "x", "status", set_done, &skip, NULL,
                                   NULL, &attempts, &err),
                   0);
  assert_int_equal(attempts, 0);
  free(next_req(&s, "GET "));

  kyb_kube_retry two = {.attempts = 2, .backoff_ms = 1};
  assert_int_equal(kyb_kube_modify(c, &checkpoints, "team", "x", "status", set_done, &m, &two, NULL,
                                   &attempts, &err),
                   -1);
  assert_int_equal(attempts, 2);
  assert_int_equal(kyb_kube_status_of(err), 409);
  assert_has(kyb_error_message(err), "still conflicting after 2 attempts: kube: update status");
  kyb_kube_client_free(c);
  fake_stop(&s);
}

static void test_list_all_pages_and_expired_continue(void **state) {
  (void)state;
  fake_server s;
  fake_reply r[] = {
      {.pieces = {fake_json(200, "{\"metadata\":{\"resourceVersion\":\"5\",\"continue\":\"c1\"},"
                                 "\"items\":[{\"metadata\":{\"name\":\"a\"}}]}")}},
      {.pieces = {fake_json(410, "{\"kind\":\"Status\",\"code\":410,\"reason\":\"Expired\","
                                 "\"message\":\"continue token expired\"}")}},
      {.pieces = {fake_json(200, "{\"metadata\":{\"resourceVersion\":\"6\"},\"items\":["
                                 "{\"metadata\":{\"name\":\"a\"}},{\"metadata\":{\"name\":\"b\"}}"
                                 "]}")}},
      {.pieces = {fake_json(200, "{\"metadata\":{},\"items\":[]}")}},
      {.pieces = {fake_json(200, "{\"metadata\":{\"resourceVersion\":\"1\"},\"items\":[1]}")}},
  };
  assert_int_equal(fake_start(&s, r, 5), 0);
  kyb_kube_client *c = fake_client(&s, NULL);
  cleanup_error kyb_error *err = NULL;
  cleanup_json json_t *items = NULL;
  cleanup_free char *rv = NULL;
  kyb_kube_list_opts lo = {.limit = 1, .label_selector = "app=x"};
  if (kyb_kube_list_all(c, &kyb_kube_res_pods, NULL, &lo, &items, &rv, &err) < 0)
    fail_msg("%s", kyb_error_message(err));
  assert_int_equal(json_array_size(items), 2); /* not a, a, b */
  assert_string_equal(rv, "6");
  free(next_req(&s, "GET /api/v1/namespaces/default/pods?labelSelector=app%3Dx&limit=1 "));
  free(next_req(&s, "GET /api/v1/namespaces/default/pods?labelSelector=app%3Dx&limit=1&"
                    "continue=c1 "));
  free(next_req(&s, "GET /api/v1/namespaces/default/pods?labelSelector=app%3Dx HTTP"));

  cleanup_json json_t *l2 = NULL;
  assert_int_equal(kyb_kube_list(c, &kyb_kube_res_pods, NULL, NULL, &l2, &err), -1);
  assert_has(kyb_error_message(err), "malformed answer: no metadata.resourceVersion");
  assert_int_equal(kyb_kube_list(c, &kyb_kube_res_pods, NULL, NULL, &l2, &err), -1);
  assert_has(kyb_error_message(err), "items[0] is not an object");
  kyb_kube_client_free(c);
  fake_stop(&s);
}

static void test_token_file_rotation(void **state) {
  (void)state;
  fake_server s;
  fake_reply r[] = {{.pieces = {fake_json(200, "{}")}},
                    {.pieces = {fake_json(200, "{}")}},
                    {.pieces = {fake_json(200, "{}")}}};
  assert_int_equal(fake_start(&s, r, 3), 0);
  char tok[128];
  snprintf(tok, sizeof(tok), "%s/token", s.dir);
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_write_file_atomic(tok, "first\n", 6, 0600, &err), 0);
  kyb_kube_config cfg;
  assert_int_equal(kyb_kube_config_explicit("http://localhost", "static", NULL, &cfg, &err), 0);
  cfg.unix_socket = strdup(s.sock);
  cfg.token_file = strdup(tok);
  kyb_kube_client *c = NULL;
  assert_int_equal(kyb_kube_client_new(&cfg, NULL, &c, &err), 0);
  kyb_kube_config_clear(&cfg);

  assert_int_equal(kyb_kube_get(c, &kyb_kube_res_pods, NULL, "p", NULL, &err), 0);
  cleanup_free char *a = fake_next_request(&s);
  assert_has(a, "\r\nAuthorization: Bearer first\r\n"); /* the file wins over the static token */

  /* kubelet swaps a projected token in by rename: a new file. */
  assert_int_equal(kyb_write_file_atomic(tok, "second", 6, 0600, &err), 0);
  assert_int_equal(kyb_kube_get(c, &kyb_kube_res_pods, NULL, "p", NULL, &err), 0);
  cleanup_free char *b = fake_next_request(&s);
  assert_has(b, "\r\nAuthorization: Bearer second\r\n");

  /* The file goes away: the last good token is kept. */
  unlink(tok);
  assert_int_equal(kyb_kube_get(c, &kyb_kube_res_pods, NULL, "p", NULL, &err), 0);
  cleanup_free char *d = fake_next_request(&s);
  assert_has(d, "\r\nAuthorization: Bearer second\r\n");
  kyb_kube_client_free(c);
  fake_stop(&s);
}

static void test_limits_malformed_timeout(void **state) {
  (void)state;
  fake_server s;
  char big[300];
  snprintf(big, sizeof(big), "{\"pad\":\"%0200d\"}", 0);
  fake_reply r[] = {
      {.pieces = {fake_json(200, big)}},
      {.pieces = {fake_json(200, "<html>hi</html>")}},
      {.pieces = {fake_json(200, "[1,2]")}},
      {.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"}, .hang = true},
  };
  assert_int_equal(fake_start(&s, r, 4), 0);
  kyb_kube_client_opts o = {.max_body = 64, .timeout_ms = 300};
  kyb_kube_client *c = fake_client(&s, &o);
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_kube_get(c, &kyb_kube_res_pods, NULL, "p", NULL, &err), -1);
  assert_int_equal(kyb_error_code(err), EMSGSIZE);
  assert_string_equal(kyb_error_root(err), "kube: get v1 pods default/p: answer is over 64 bytes");
  assert_int_equal(kyb_kube_get(c, &kyb_kube_res_pods, NULL, "p", NULL, &err), -1);
  assert_int_equal(kyb_error_code(err), EPROTO);
  assert_has(kyb_error_message(err), "malformed answer");
  assert_has(kyb_error_message(err), "(starts '<html>hi</html>')");
  assert_int_equal(kyb_kube_get(c, &kyb_kube_res_pods, NULL, "p", NULL, &err), -1);
  assert_has(kyb_error_message(err), "not a JSON object");
  assert_int_equal(kyb_kube_get(c, &kyb_kube_res_pods, NULL, "p", NULL, &err), -1);
  assert_int_equal(kyb_error_code(err), ETIMEDOUT);
  assert_has(kyb_error_message(err), "no answer within 300 ms");
  kyb_kube_client_free(c);
  fake_stop(&s);
}

static void test_refusals_before_the_wire(void **state) {
  (void)state;
  fake_server s;
  fake_reply none[] = {{.pieces = {NULL}}};
  assert_int_equal(fake_start(&s, none, 0), 0);
  kyb_kube_client *c = fake_client(&s, NULL);
  cleanup_error kyb_error *err = NULL;
  /* The child served nothing and exited: the socket is dead. */
  waitpid(s.pid, NULL, 0);
  s.pid = 0;
  assert_int_equal(kyb_kube_get(c, &kyb_kube_res_pods, NULL, "p", NULL, &err), -1);
  assert_int_equal(kyb_kube_status_of(err), 0);
  assert_has(kyb_error_message(err), "cannot connect to the API server at /tmp/kyb-kube-test");
  assert_int_equal(kyb_kube_get(c, &kyb_kube_res_pods, "", "p", NULL, &err), -1);
  assert_string_equal(kyb_error_root(err), "kube: get v1 pods p: a namespace is needed");
  assert_int_equal(kyb_kube_get(c, &kyb_kube_res_pods, NULL, "../x", NULL, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
  assert_int_equal(kyb_kube_patch(c, &kyb_kube_res_pods, NULL, "p", NULL, NULL, NULL, &err), -1);
  assert_has(kyb_error_message(err), "not a JSON object");
  kyb_kube_config bad = {.server = "gopher://x", .ns = "default"};
  kyb_kube_client *c2 = NULL;
  assert_int_equal(kyb_kube_client_new(&bad, NULL, &c2, &err), -1);
  assert_null(c2);
  kyb_kube_client_free(c);
  fake_stop(&s);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_calls_on_the_wire),
      cmocka_unit_test(test_modify_retries_on_conflict),
      cmocka_unit_test(test_list_all_pages_and_expired_continue),
      cmocka_unit_test(test_token_file_rotation),
      cmocka_unit_test(test_limits_malformed_timeout),
      cmocka_unit_test(test_refusals_before_the_wire),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

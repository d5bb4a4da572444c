/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of watches: the line splitter under any chunking and its size
 * limit, event parsing, a real streaming GET against the canned server
 * (bookmarks, 410, drops, oversized lines, stop, cancellation), and the
 * informer's list → watch → relist/resume loop. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/time.h>

#include <cmocka.h>

#include "kube/watch.h"
#include "kube_fake_server.h"
#include "util/cleanup.h"

/* ---- the splitter ---- */

typedef struct {
  char lines[16][64];
  size_t n;
  size_t stop_at; /* return 1 on this line (1-based), 0: never */
} collected;

static int collect_line(void *ud, const char *line, size_t len, kyb_error **err) {
  (void)err;
  collected *c = ud;
  snprintf(c->lines[c->n], sizeof(c->lines[0]), "%.*s", (int)len, line);
  c->n++;
  return c->stop_at != 0 && c->n == c->stop_at ? 1 : 0;
}

static void test_lines_any_chunking(void **state) {
  (void)state;
  const char stream[] = "first\n{\"a\":1}\n\nlast-no-newline";
  for (size_t chunk = 1; chunk <= sizeof(stream); chunk++) {
    kyb_kube_lines l;
    kyb_kube_lines_init(&l, 64);
    collected c = {0};
    cleanup_error kyb_error *err = NULL;
    for (size_t off = 0; off < sizeof(stream) - 1; off += chunk) {
      size_t n = sizeof(stream) - 1 - off < chunk ? sizeof(stream) - 1 - off : chunk;
      assert_int_equal(kyb_kube_lines_feed(&l, stream + off, n, collect_line, &c, &err), 0);
    }
    assert_int_equal(kyb_kube_lines_finish(&l, collect_line, &c, &err), 0);
    assert_int_equal(c.n, 4);
    assert_string_equal(c.lines[0], "first");
    assert_string_equal(c.lines[1], "{\"a\":1}");
    assert_string_equal(c.lines[2], "");
    assert_string_equal(c.lines[3], "last-no-newline");
    kyb_kube_lines_clear(&l);
  }
}

static void test_lines_limit_and_stop(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  kyb_kube_lines l;
  collected c = {0};
  kyb_kube_lines_init(&l, 8);
  assert_int_equal(kyb_kube_lines_feed(&l, "12345678\n", 9, collect_line, &c, &err), 0);
  assert_int_equal(kyb_kube_lines_feed(&l, "123456789\n", 10, collect_line, &c, &err), -1);
  assert_int_equal(kyb_error_code(err), EMSGSIZE);
  kyb_kube_lines_clear(&l);

  /* The limit holds across chunks, before the newline arrives. */
  kyb_kube_lines_init(&l, 8);
  assert_int_equal(kyb_kube_lines_feed(&l, "12345", 5, collect_line, &c, &err), 0);
  assert_int_equal(kyb_kube_lines_feed(&l, "6789", 4, collect_line, &c, &err), -1);
  assert_int_equal(kyb_error_code(err), EMSGSIZE);
  assert_true(l.cap <= 8);
  kyb_kube_lines_clear(&l);

  /* A callback that stops ends the feed at once. */
  kyb_kube_lines_init(&l, 8);
  collected s = {.stop_at = 2};
  assert_int_equal(kyb_kube_lines_feed(&l, "a\nb\nc\n", 6, collect_line, &s, &err), 1);
  assert_int_equal(s.n, 2);
  kyb_kube_lines_clear(&l);

  /* A blank tail is no line. */
  kyb_kube_lines_init(&l, 8);
  collected t = {0};
  assert_int_equal(kyb_kube_lines_feed(&l, "a\n \r", 4, collect_line, &t, &err), 0);
  assert_int_equal(kyb_kube_lines_finish(&l, collect_line, &t, &err), 0);
  assert_int_equal(t.n, 1);
  kyb_kube_lines_clear(&l);
}

static void test_event_parse(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  kyb_kube_event_type t;
  json_t *o = NULL;
  const char ok[] = "{\"type\":\"DELETED\",\"object\":{\"kind\":\"Pod\"}}";
  assert_int_equal(kyb_kube_event_parse(ok, strlen(ok), &t, &o, &err), 0);
  assert_int_equal(t, KYB_KUBE_DELETED);
  assert_string_equal(json_string_value(json_object_get(o, "kind")), "Pod");
  json_decref(o);
  const char *bad[] = {"not json",
                       "[]",
                       "{\"type\":\"ADDED\"}",
                       "{\"object\":{}}",
                       "{\"type\":\"ADDED\",\"object\":[]}",
                       "{\"type\":\"RENAMED\",\"object\":{}}",
                       "{\"type\":\"ADDED\",\"type\":\"DELETED\",\"object\":{}}"};
  for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
    o = NULL;
    assert_int_equal(kyb_kube_event_parse(bad[k], strlen(bad[k]), &t, &o, &err), -1);
    assert_int_equal(kyb_error_code(err), EPROTO);
    assert_null(o);
  }
  assert_string_equal(kyb_kube_event_type_name(KYB_KUBE_BOOKMARK), "BOOKMARK");
}

/* Fuzz-style: a real event stream, damaged at random and fed in random
 * chunks through the splitter into the event parser: every line parses or
 * fails cleanly, and the splitter's buffer never exceeds its limit. */
static int parse_line(void *ud, const char *line, size_t len, kyb_error **err) {
  size_t *bad = ud;
  kyb_kube_event_type t;
  json_t *o = NULL;
  kyb_error *e = NULL;
  (void)err;
  if (kyb_kube_event_parse(line, len, &t, &o, &e) < 0) {
    assert_null(o);
    assert_non_null(e);
    (*bad)++;
  } else {
    assert_true(json_is_object(o));
    assert_null(e);
  }
  json_decref(o);
  kyb_error_free(e);
  return 0;
}

static void test_stream_mutations_never_crash(void **state) {
  (void)state;
  static const char stream[] =
      "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"1\"}}}\n"
      "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"2\"}}}\n"
      "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410}}\n";
  unsigned int seed = 777;
  char buf[512];
  size_t bad = 0;
  for (int iter = 0; iter < 4000; iter++) {
    size_t n = sizeof(stream) - 1;
    memcpy(buf, stream, n);
    for (int e = 0; e < 1 + iter % 5; e++) {
      size_t at = (size_t)rand_r(&seed) % n;
      if (rand_r(&seed) % 2)
        buf[at] = (char)(buf[at] ^ (1 << (rand_r(&seed) % 8)));
      else
        buf[at] = "\n{}\":,\\\0"[rand_r(&seed) % 9];
    }
    kyb_kube_lines l;
    kyb_kube_lines_init(&l, 64 + (size_t)(rand_r(&seed) % 128));
    cleanup_error kyb_error *err = NULL;
    size_t off = 0;
    int r = 0;
    while (off < n && r == 0) {
      size_t chunk = 1 + (size_t)rand_r(&seed) % 40;
      if (chunk > n - off)
        chunk = n - off;
      r = kyb_kube_lines_feed(&l, buf + off, chunk, parse_line, &bad, &err);
      assert_true(l.len <= l.max_line);
      off += chunk;
    }
    if (r == 0)
      r = kyb_kube_lines_finish(&l, parse_line, &bad, &err);
    assert_true(r == 0 || kyb_error_code(err) == EMSGSIZE);
    kyb_kube_lines_clear(&l);
  }
  assert_true(bad > 0); /* the damage did reach the parser */
}

/* ---- watches against the canned server ---- */

#define EV(type, name, rv)                                                                         \
  "{\"type\":\"" type "\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"name\":\"" name             \
  "\",\"resourceVersion\":\"" rv "\"}}}\n"

typedef struct {
  char seen[16][48];
  size_t n;
  size_t stop_at;
  bool fail;
} events;

static int on_event(void *ud, kyb_kube_event_type type, json_t *obj, kyb_error **err) {
  events *e = ud;
  const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
  snprintf(e->seen[e->n % 16], sizeof(e->seen[0]), "%s %s", kyb_kube_event_type_name(type),
           name ? name : "?");
  e->n++;
  if (e->fail)
    return kyb_error_set(err, EDOM, "handler refused %s", name);
  return e->stop_at != 0 && e->n == e->stop_at ? 1 : 0;
}

static void test_watch_stream(void **state) {
  (void)state;
  fake_server s;
  fake_reply r[] = {
      {.pieces = {FAKE_CHUNKED_HEAD, fake_chunk(EV("ADDED", "a", "11") "{\"type\":\"MOD"),
                  fake_chunk("IFIED\",\"object\":{\"metadata\":{\"name\":\"a\","
                             "\"resourceVersion\":\"12\"}}}\n"),
                  fake_chunk(EV("BOOKMARK", "", "15")), FAKE_CHUNKED_END}}};
  assert_int_equal(fake_start(&s, r, 1), 0);
  kyb_kube_client *c = fake_client(&s, NULL);
  events e = {0};
  kyb_kube_watch_opts wo = {.resource_version = "10",
                            .label_selector = "app=web",
                            .timeout_seconds = 30,
                            .on_event = on_event,
                            .ud = &e};
  cleanup_free char *rv = NULL;
  cleanup_error kyb_error *err = NULL;
  int rc = kyb_kube_watch(c, &kyb_kube_res_pods, NULL, &wo, &rv, &err);
  if (rc != 0)
    fail_msg("%s", kyb_error_message(err));
  assert_int_equal(e.n, 2);
  assert_string_equal(e.seen[0], "ADDED a");
  assert_string_equal(e.seen[1], "MODIFIED a");
  assert_string_equal(rv, "15"); /* the bookmark moved it on */
  cleanup_free char *req = fake_next_request(&s);
  assert_non_null(strstr(req, "GET /api/v1/namespaces/default/pods?watch=1&resourceVersion=10"
                              "&allowWatchBookmarks=true&timeoutSeconds=30&labelSelector=app%3Dweb"
                              " HTTP/1.1\r\n"));
  assert_non_null(strstr(req, "\r\nAuthorization: Bearer tok\r\n"));
  assert_non_null(strstr(req, "\r\nAccept: application/json\r\n"));
  kyb_kube_client_free(c);
  fake_stop(&s);
}

static void test_watch_endings(void **state) {
  (void)state;
  fake_server s;
  fake_reply r[] = {
      /* 410 as an ERROR event */
      {.pieces = {FAKE_CHUNKED_HEAD,
                  fake_chunk("{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,"
                             "\"reason\":\"Expired\",\"message\":\"too old resource version: 1 "
                             "(50)\"}}\n"),
                  FAKE_CHUNKED_END}},
      /* the connection drops after one event */
      {.pieces = {FAKE_CHUNKED_HEAD, fake_chunk(EV("ADDED", "b", "21"))}},
      /* one line over the limit */
      {.pieces = {FAKE_CHUNKED_HEAD,
                  fake_chunk("{\"type\":\"ADDED\",\"object\":{\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxx"
                             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}\n"),
                  FAKE_CHUNKED_END}},
      /* not JSON */
      {.pieces = {FAKE_CHUNKED_HEAD, fake_chunk("<html>\n"), FAKE_CHUNKED_END}},
      /* refused before streaming */
      {.pieces = {fake_json(403, "{\"kind\":\"Status\",\"code\":403,\"reason\":\"Forbidden\","
                                 "\"message\":\"pods is forbidden\"}")}},
      /* the handler stops, then fails */
      {.pieces = {FAKE_CHUNKED_HEAD, fake_chunk(EV("ADDED", "c", "31") EV("ADDED", "d", "32")),
                  FAKE_CHUNKED_END}},
      {.pieces = {FAKE_CHUNKED_HEAD, fake_chunk(EV("ADDED", "e", "41")), FAKE_CHUNKED_END}},
  };
  assert_int_equal(fake_start(&s, r, 7), 0);
  kyb_kube_client_opts co = {.max_line = 120};
  kyb_kube_client *c = fake_client(&s, &co);
  events e = {0};
  kyb_kube_watch_opts wo = {.resource_version = "1", .on_event = on_event, .ud = &e};
  cleanup_error kyb_error *err = NULL;
  char *rv = NULL;
  char reason[32];

  assert_int_equal(kyb_kube_watch(c, &kyb_kube_res_pods, "ns", &wo, &rv, &err), -1);
  assert_int_equal(kyb_kube_status_of(err), 410);
  assert_string_equal(kyb_kube_reason_of(err, reason, sizeof(reason)), "Expired");
  assert_string_equal(kyb_error_root(err), "kube: watch v1 pods ns: 410 Expired: too old "
                                           "resource version: 1 (50)");
  assert_string_equal(rv, "1");
  free(rv);

  assert_int_equal(kyb_kube_watch(c, &kyb_kube_res_pods, "ns", &wo, &rv, &err), -1);
  assert_int_equal(kyb_error_code(err), ECONNRESET);
  assert_int_equal(kyb_kube_status_of(err), 0);
  assert_string_equal(rv, "21"); /* resume from here */
  free(rv);

  assert_int_equal(kyb_kube_watch(c, &kyb_kube_res_pods, "ns", &wo, &rv, &err), -1);
  assert_int_equal(kyb_error_code(err), EMSGSIZE);
  assert_string_equal(kyb_error_message(err), "kube: watch v1 pods ns: watch stream: event line "
                                              "longer than 120 bytes (Message too long)");
  free(rv);

  assert_int_equal(kyb_kube_watch(c, &kyb_kube_res_pods, "ns", &wo, &rv, &err), -1);
  assert_int_equal(kyb_error_code(err), EPROTO);
  assert_non_null(strstr(kyb_error_message(err), "kube: watch v1 pods ns: malformed watch event"));
  free(rv);

  assert_int_equal(kyb_kube_watch(c, &kyb_kube_res_pods, "ns", &wo, &rv, &err), -1);
  assert_int_equal(kyb_kube_status_of(err), 403);
  assert_int_equal(kyb_error_code(err), EACCES);
  free(rv);

  e.n = 0;
  e.stop_at = 1;
  assert_int_equal(kyb_kube_watch(c, &kyb_kube_res_pods, "ns", &wo, &rv, &err), 1);
  assert_int_equal(e.n, 1);
  assert_string_equal(rv, "31");
  free(rv);

  e.fail = true;
  assert_int_equal(kyb_kube_watch(c, &kyb_kube_res_pods, "ns", &wo, &rv, &err), -1);
  assert_string_equal(kyb_error_message(err), "handler refused e (Numerical argument out of "
                                              "domain)");
  free(rv);
  kyb_kube_client_free(c);
  fake_stop(&s);
}

static volatile sig_atomic_t stop_flag;
static void on_alarm(int sig) {
  (void)sig;
  stop_flag = 1;
}

static void test_watch_cancel(void **state) {
  (void)state;
  int pfd[2];
  assert_int_equal(pipe(pfd), 0);
  fake_server s;
  fake_reply r[] = {
      {.pieces = {FAKE_CHUNKED_HEAD, fake_chunk(EV("ADDED", "a", "5"))},
       .poke = true,
       .poke_fd = pfd[1],
       .hang = true},
  };
  assert_int_equal(fake_start(&s, r, 1), 0);
  kyb_kube_client *c = fake_client(&s, NULL);
  kyb_kube_client_set_cancel(c, pfd[0], NULL);
  events e = {0};
  kyb_kube_watch_opts wo = {.on_event = on_event, .ud = &e};
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *rv = NULL;
  /* The server sends one event, pokes the cancel pipe and hangs: only the
   * cancel fd can end this call. */
  assert_int_equal(kyb_kube_watch(c, &kyb_kube_res_pods, NULL, &wo, &rv, &err), -1);
  assert_int_equal(kyb_error_code(err), ECANCELED);
  assert_int_equal(e.n, 1);
  assert_string_equal(rv, "5");
  /* Cancelled stays cancelled: later calls and sleeps fail at once. */
  assert_true(kyb_kube_client_cancelled(c));
  assert_int_equal(kyb_kube_sleep(c, 60000, &err), -1);
  assert_int_equal(kyb_error_code(err), ECANCELED);
  kyb_kube_client_free(c);
  fake_stop(&s);
  close(pfd[0]);
  close(pfd[1]);
}

static void test_watch_cancel_flag(void **state) {
  (void)state;
  fake_server s;
  fake_reply r[] = {{.pieces = {FAKE_CHUNKED_HEAD}, .hang = true}};
  assert_int_equal(fake_start(&s, r, 1), 0);
  kyb_kube_client *c = fake_client(&s, NULL);
  stop_flag = 0;
  kyb_kube_client_set_cancel(c, -1, &stop_flag);
  struct sigaction sa = {.sa_handler = on_alarm};
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval it = {.it_value = {.tv_usec = 200000}};
  setitimer(ITIMER_REAL, &it, NULL);
  kyb_kube_watch_opts wo = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_kube_watch(c, &kyb_kube_res_pods, NULL, &wo, NULL, &err), -1);
  assert_int_equal(kyb_error_code(err), ECANCELED);
  kyb_kube_client_free(c);
  fake_stop(&s);
}

/* ---- the informer ---- */

typedef struct {
  size_t syncs;
  size_t sizes[4];
  char rvs[4][16];
  events ev;
} informed;

static int on_sync(void *ud, json_t *items, const char *rv, kyb_error **err) {
  (void)err;
  informed *i = ud;
  i->sizes[i->syncs % 4] = json_array_size(items);
  snprintf(i->rvs[i->syncs % 4], sizeof(i->rvs[0]), "%s", rv);
  i->syncs++;
  return 0;
}

static int on_inf_event(void *ud, kyb_kube_event_type type, json_t *obj, kyb_error **err) {
  informed *i = ud;
  return on_event(&i->ev, type, obj, err);
}

#define LIST(rv, items)                                                                            \
  fake_json(200, "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"" rv "\"},"            \
                 "\"items\":[" items "]}")
#define POD(n) "{\"metadata\":{\"name\":\"" n "\"}}"

static void assert_request(fake_server *s, const char *line) {
  cleanup_free char *req = fake_next_request(s);
  if (req == NULL || strncmp(req, line, strlen(line)) != 0)
    fail_msg("request '%.200s' does not start with '%s'", req ? req : "(none)", line);
}

static void test_informer_relist_and_resume(void **state) {
  (void)state;
  fake_server s;
  fake_reply r[] = {
      {.pieces = {LIST("100", POD("a"))}},
      {.pieces = {FAKE_CHUNKED_HEAD,
                  fake_chunk("{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,"
                             "\"reason\":\"Expired\",\"message\":\"too old\"}}\n"),
                  FAKE_CHUNKED_END}},
      {.pieces = {LIST("200", POD("a") "," POD("b"))}},
      {.pieces = {FAKE_CHUNKED_HEAD, fake_chunk(EV("ADDED", "c", "201")), FAKE_CHUNKED_END}},
      {.pieces = {FAKE_CHUNKED_HEAD, fake_chunk(EV("BOOKMARK", "", "205")),
                  fake_chunk(EV("MODIFIED", "c", "206")), FAKE_CHUNKED_END}},
  };
  assert_int_equal(fake_start(&s, r, 5), 0);
  kyb_kube_client *c = fake_client(&s, NULL);
  informed inf = {.ev = {.stop_at = 2}};
  kyb_kube_informer_opts io = {.res = &kyb_kube_res_pods,
                               .ns = "",
                               .label_selector = "kybernate.io/node=n1",
                               .page_limit = 50,
                               .watch_timeout_s = 60,
                               .on_sync = on_sync,
                               .on_event = on_inf_event,
                               .ud = &inf};
  cleanup_error kyb_error *err = NULL;
  if (kyb_kube_informer_run(c, &io, &err) != 0)
    fail_msg("%s", kyb_error_message(err));
  assert_int_equal(inf.syncs, 2);
  assert_int_equal(inf.sizes[0], 1);
  assert_string_equal(inf.rvs[0], "100");
  assert_int_equal(inf.sizes[1], 2);
  assert_string_equal(inf.rvs[1], "200");
  assert_int_equal(inf.ev.n, 2);
  assert_string_equal(inf.ev.seen[0], "ADDED c");
  assert_string_equal(inf.ev.seen[1], "MODIFIED c");
  assert_request(&s, "GET /api/v1/pods?labelSelector=kybernate.io%2Fnode%3Dn1&limit=50 ");
  assert_request(&s, "GET /api/v1/pods?watch=1&resourceVersion=100&allowWatchBookmarks=true&"
                     "timeoutSeconds=60&labelSelector=kybernate.io%2Fnode%3Dn1 ");
  assert_request(&s, "GET /api/v1/pods?labelSelector=kybernate.io%2Fnode%3Dn1&limit=50 ");
  assert_request(&s, "GET /api/v1/pods?watch=1&resourceVersion=200&");
  assert_request(&s, "GET /api/v1/pods?watch=1&resourceVersion=201&");
  kyb_kube_client_free(c);
  fake_stop(&s);
}

static void test_informer_backoff_and_give_up(void **state) {
  (void)state;
  fake_server s;
  fake_reply r[] = {
      /* a paged list: two pages */
      {.pieces = {fake_json(200, "{\"metadata\":{\"resourceVersion\":\"7\",\"continue\":\"t1\"},"
                                 "\"items\":[" POD("a") "]}")}},
      {.pieces = {LIST("7", POD("b"))}},
      {.pieces = {FAKE_CHUNKED_HEAD, fake_chunk(EV("ADDED", "c", "8"))}}, /* drops */
      {.pieces = {fake_json(500, "{\"kind\":\"Status\",\"code\":500,\"reason\":\"InternalError\","
                                 "\"message\":\"etcd down\"}")}},
      {.pieces = {fake_json(503, "not json")}},
  };
  assert_int_equal(fake_start(&s, r, 5), 0);
  kyb_kube_client *c = fake_client(&s, NULL);
  informed inf = {0};
  kyb_kube_informer_opts io = {.res = &kyb_kube_res_pods,
                               .page_limit = 1,
                               .backoff_ms = 1,
                               .max_failures = 3,
                               .on_sync = on_sync,
                               .on_event = on_inf_event,
                               .ud = &inf};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_kube_informer_run(c, &io, &err), -1);
  /* The drop came after an event: it starts the count afresh (1), then 500
   * (2) and 503 (3) in a row. */
  assert_int_equal(kyb_kube_status_of(err), 503);
  assert_non_null(strstr(kyb_error_message(err), "gave up after 3 failures in a row"));
  assert_int_equal(inf.syncs, 1);
  assert_int_equal(inf.sizes[0], 2);
  assert_int_equal(inf.ev.n, 1);
  assert_request(&s, "GET /api/v1/namespaces/default/pods?limit=1 ");
  assert_request(&s, "GET /api/v1/namespaces/default/pods?limit=1&continue=t1 ");
  assert_request(&s, "GET /api/v1/namespaces/default/pods?watch=1&resourceVersion=7&");
  assert_request(&s, "GET /api/v1/namespaces/default/pods?watch=1&resourceVersion=8&");
  assert_request(&s, "GET /api/v1/namespaces/default/pods?watch=1&resourceVersion=8&");
  kyb_kube_client_free(c);
  fake_stop(&s);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lines_any_chunking),
      cmocka_unit_test(test_lines_limit_and_stop),
      cmocka_unit_test(test_event_parse),
      cmocka_unit_test(test_stream_mutations_never_crash),
      cmocka_unit_test(test_watch_stream),
      cmocka_unit_test(test_watch_endings),
      cmocka_unit_test(test_watch_cancel),
      cmocka_unit_test(test_watch_cancel_flag),
      cmocka_unit_test(test_informer_relist_and_resume),
      cmocka_unit_test(test_informer_backoff_and_give_up),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kybernate-agent's local API client (lib/agent/client.h) and
 * of restore's resolve through it (lib/ops/resolve.h), against a scripted
 * stand-in for the agent on a unix socket in a temp dir (libmicrohttpd):
 * the requests it sends; fetch and checkpoint answers parsed and
 * type-checked; the agent's error messages and errnos; no agent (no socket,
 * a stale socket); an answer too slow (ETIMEDOUT) or too big (EFBIG);
 * resolve of an oci:// reference through the agent, the image then read from
 * the node cache alone and verified here (a tampered file fails although the
 * agent said it fetched it), the agent's refusal and its absence named in
 * the error, $KYBERNATE_AGENT_SOCKET over the node config's agentSocket. */
#include <curl/curl.h>
#include <errno.h>
#include <microhttpd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/client.h"
#include "image/image.h"
#include "ops/nodeconf.h"
#include "ops/resolve.h"
#include "store/store.h"
#include "util/cleanup.h"
#include "util/fs.h"

#define REG "oci://reg.example:5000/kyb/x"

static char tmpdir[] = "/tmp/kyb-test-agcl-XXXXXX";
static char *sock, *cache, *oci_dir;
static struct MHD_Daemon *mhd;
static char last_method[16], last_url[64], last_body[1024];

typedef struct {
  char *buf;
  size_t len;
} body;

static void nap(long ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *text) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
  enum MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *msg) {
  char text[512];
  snprintf(text, sizeof(text), "{\"error\": {\"status\": %u, \"message\": \"%s\"}}", status, msg);
  return reply(c, status, text);
}

/* The image's name picks the answer. */
static enum MHD_Result fetch(struct MHD_Connection *c, const json_t *b) {
  const char *ref = json_string_value(json_object_get(b, "ref"));
  const char *name = ref ? strrchr(ref, ':') + 1 : "";
  if (strcmp(name, "missing") == 0)
    return reply_error(c, 404, "manifest unknown: image missing is not in " REG);
  if (strcmp(name, "nouploader") == 0)
    return reply_error(c, 503, "no uploader configured (KYBERNATE_UPLOADER_SOCKET)");
  if (strcmp(name, "garbage") == 0)
    return reply(c, 200, "not json at all");
  if (strcmp(name, "relpath") == 0)
    return reply(c, 200, "{\"ref\": \"x\", \"path\": \"cache/x\"}");
  if (strcmp(name, "plain") == 0)
    return reply(c, 502, "Bad Gateway");
  if (strcmp(name, "slow") == 0) {
    nap(1500);
    return reply(c, 200, "{\"ref\": \"x\", \"path\": \"/x\"}");
  }
  if (strcmp(name, "big") == 0) {
    size_t n = (2u << 20);
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    big[n] = '\0';
    enum MHD_Result r = reply(c, 200, big);
    free(big);
    return r;
  }
  char text[1024];
  snprintf(text, sizeof(text), "{\"ref\": \"%s\", \"path\": \"%s/%s\", \"digest\": \"sha256:ab\"}",
           ref, oci_dir ? oci_dir : "/cache", name);
  return reply(c, 200, text);
}

static enum MHD_Result checkpoint(struct MHD_Connection *c, const json_t *b) {
  const char *ctr = json_string_value(json_object_get(b, "container"));
  if (ctr != NULL && strcmp(ctr, "bad") == 0)
    return reply_error(c, 422, "checkpoint of bad: criu dump failed");
  if (ctr != NULL && strcmp(ctr, "partial") == 0)
    return reply(c, 200, "{\"container\": \"partial\", \"name\": \"n\", \"ref\": \"n\"}");
  return reply(c, 200,
               "{\"container\": \"c1\", \"name\": \"img1\", \"ref\": \"file:///s/img1\", "
               "\"digest\": \"sha256:cd\", \"size\": 4096, \"totalMs\": 12, \"timings\": {}}");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **con_cls) {
  (void)cls;
  (void)version;
  body *bd = *con_cls;
  if (bd == NULL) {
    *con_cls = calloc(1, sizeof(body));
    return *con_cls ? MHD_YES : MHD_NO;
  }
  if (*data_size > 0) {
    char *nb = realloc(bd->buf, bd->len + *data_size + 1);
    if (nb == NULL)
      return MHD_NO;
    memcpy(nb + bd->len, data, *data_size);
    bd->buf = nb;
    bd->len += *data_size;
    bd->buf[bd->len] = '\0';
    *data_size = 0;
    return MHD_YES;
  }
  snprintf(last_method, sizeof(last_method), "%s", method);
  snprintf(last_url, sizeof(last_url), "%s", url);
  snprintf(last_body, sizeof(last_body), "%s", bd->buf ? bd->buf : "");
  json_error_t je;
  cleanup_json json_t *b = bd->buf ? json_loadb(bd->buf, bd->len, 0, &je) : NULL;
  if (strcmp(url, "/v1/healthz") == 0)
    return reply(c, 200, "{\"status\": \"ok\", \"node\": \"n1\", \"mode\": \"standalone\"}");
  if (strcmp(url, "/v1/images/fetch") == 0)
    return fetch(c, b);
  if (strcmp(url, "/v1/checkpoint") == 0)
    return checkpoint(c, b);
  return reply_error(c, 404, "no such endpoint");
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)c;
  (void)toe;
  body *bd = *con_cls;
  if (bd != NULL) {
    free(bd->buf);
    free(bd);
  }
  *con_cls = NULL;
}

static int bind_unix(const char *path, bool do_listen) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
      (do_listen && listen(fd, 16) < 0)) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  return fd;
}

static int setup(void **state) {
  (void)state;
  if (mkdtemp(tmpdir) == NULL)
    return -1;
  if (asprintf(&sock, "%s/agent.sock", tmpdir) < 0 || asprintf(&cache, "%s/cache", tmpdir) < 0)
    return -1;
  setenv("KYBERNATE_IMAGE_CACHE", cache, 1);
  unsetenv(KYB_AGENT_SOCKET_ENV);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  cleanup_error kyb_error *err = NULL;
  kyb_store *s = NULL;
  if (kyb_store_open(REG, KYB_STORE_LOCAL_ONLY, &s, &err) < 0)
    return -1;
  oci_dir = strdup(kyb_store_local_dir(s));
  kyb_store_close(s);
  int fd = bind_unix(sock, true);
  if (fd < 0 || oci_dir == NULL)
    return -1;
  mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL,
                         NULL, on_request, NULL, MHD_OPTION_LISTEN_SOCKET, fd,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
  return mhd ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  MHD_stop_daemon(mhd);
  cleanup_error kyb_error *err = NULL;
  kyb_remove_tree(tmpdir, &err);
  free(sock);
  free(cache);
  free(oci_dir);
  curl_global_cleanup();
  return 0;
}

static kyb_agent_client *client(const char *path) {
  kyb_agent_client *c = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_agent_client_new(path, &c, &err), 0);
  return c;
}

/* ---- the client ------------------------------------------------------------------------ */

static void test_health_and_fetch(void **state) {
  (void)state;
  kyb_agent_client *c = client(sock);
  cleanup_error kyb_error *err = NULL;
  cleanup_json json_t *h = NULL;
  assert_int_equal(kyb_agent_client_health(c, &h, &err), 0);
  assert_string_equal(json_string_value(json_object_get(h, "node")), "n1");
  assert_string_equal(last_method, "GET");

  kyb_agent_fetched f = {0};
  assert_int_equal(kyb_agent_client_fetch(c, REG ":img-a", &f, &err), 0);
  assert_string_equal(last_method, "POST");
  assert_string_equal(last_url, "/v1/images/fetch");
  assert_string_equal(last_body, "{\"ref\":\"" REG ":img-a\"}");
  assert_string_equal(f.ref, REG ":img-a");
  assert_string_equal(f.digest, "sha256:ab");
  assert_non_null(strstr(f.path, "/img-a"));
  /* A second call replaces the answer (no leak: ASan). */
  assert_int_equal(kyb_agent_client_fetch(c, REG ":img-b", &f, &err), 0);
  assert_non_null(strstr(f.path, "/img-b"));
  kyb_agent_fetched_clear(&f);
  kyb_agent_client_free(c);
}

static void test_fetch_errors(void **state) {
  (void)state;
  kyb_agent_client *c = client(sock);
  static const struct {
    const char *name;
    int code;
    const char *msg;
  } cases[] = {
      {"missing", ENOENT, ": manifest unknown: image missing is not in " REG},
      {"nouploader", EAGAIN, ": no uploader configured"},
      {"garbage", EBADMSG, ": not a fetch answer"},
      {"relpath", EBADMSG, ": not a fetch answer"},
      {"plain", EIO, ": POST /v1/images/fetch: HTTP 502: Bad Gateway"},
      {"big", EFBIG, "(answer too large)"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    cleanup_error kyb_error *err = NULL;
    char ref[128];
    snprintf(ref, sizeof(ref), "%s:%s", REG, cases[i].name);
    kyb_agent_fetched f = {0};
    assert_int_equal(kyb_agent_client_fetch(c, ref, &f, &err), -1);
    assert_null(f.path);
    assert_int_equal(kyb_error_code(err), cases[i].code);
    const char *m = kyb_error_message(err);
    assert_non_null(strstr(m, "kybernate-agent at "));
    assert_non_null(strstr(m, sock));
    if (strstr(m, cases[i].msg) == NULL)
      fail_msg("%s: \"%s\" lacks \"%s\"", cases[i].name, m, cases[i].msg);
  }
  kyb_agent_client_free(c);
}

static void test_timeout(void **state) {
  (void)state;
  kyb_agent_client *c = client(sock);
  kyb_agent_client_set_timeout(c, 300);
  cleanup_error kyb_error *err = NULL;
  kyb_agent_fetched f = {0};
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(kyb_agent_client_fetch(c, REG ":slow", &f, &err), -1);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
  assert_true(ms < 1400);
  assert_int_equal(kyb_error_code(err), ETIMEDOUT);
  assert_non_null(strstr(kyb_error_message(err), "no answer within 0.3 s"));
  kyb_error_clear(&err);
  /* The defaults again: the slow answer comes. */
  kyb_agent_client_set_timeout(c, 0);
  assert_int_equal(kyb_agent_client_fetch(c, REG ":slow", &f, &err), 0);
  kyb_agent_fetched_clear(&f);
  kyb_agent_client_free(c);
}

static void test_no_agent(void **state) {
  (void)state;
  cleanup_free char *none = kyb_path_join(tmpdir, "none.sock");
  cleanup_free char *stale = kyb_path_join(tmpdir, "stale.sock");
  int fd = bind_unix(stale, false); /* bound, never listening: what a dead agent leaves */
  assert_true(fd >= 0);
  close(fd);
  const char *paths[] = {none, stale};
  const char *why[] = {"no socket there", "nobody answers"};
  for (int i = 0; i < 2; i++) {
    kyb_agent_client *c = client(paths[i]);
    cleanup_error kyb_error *err = NULL;
    kyb_agent_fetched f = {0};
    assert_int_equal(kyb_agent_client_fetch(c, REG ":img", &f, &err), -1);
    assert_int_equal(kyb_error_code(err), ECONNREFUSED);
    assert_non_null(strstr(kyb_error_message(err), paths[i]));
    assert_non_null(strstr(kyb_error_message(err), why[i]));
    assert_non_null(strstr(kyb_error_message(err), "is the agent running?"));
    kyb_agent_client_free(c);
  }
  kyb_agent_client *c = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_agent_client_new("", &c, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
}

static void test_checkpoint(void **state) {
  (void)state;
  kyb_agent_client *c = client(sock);
  cleanup_error kyb_error *err = NULL;
  cleanup_json json_t *b =
      json_pack("{s:s, s:s, s:b}", "container", "c1", "namespace", "default", "leaveRunning", 1);
  cleanup_json json_t *out = NULL;
  assert_int_equal(kyb_agent_client_checkpoint(c, b, &out, &err), 0);
  assert_string_equal(last_url, "/v1/checkpoint");
  assert_non_null(strstr(last_body, "\"leaveRunning\":true"));
  assert_string_equal(json_string_value(json_object_get(out, "ref")), "file:///s/img1");
  assert_int_equal(json_integer_value(json_object_get(out, "size")), 4096);

  json_object_set_new(b, "container", json_string("bad"));
  json_t *none = NULL;
  assert_int_equal(kyb_agent_client_checkpoint(c, b, &none, &err), -1);
  assert_null(none);
  assert_int_equal(kyb_error_code(err), EIO);
  assert_non_null(strstr(kyb_error_message(err), ": checkpoint of bad: criu dump failed"));
  kyb_error_clear(&err);
  json_object_set_new(b, "container", json_string("partial"));
  assert_int_equal(kyb_agent_client_checkpoint(c, b, &none, &err), -1);
  assert_int_equal(kyb_error_code(err), EBADMSG);
  assert_non_null(strstr(kyb_error_message(err), "without \"digest\""));
  kyb_agent_client_free(c);
}

static void test_fetched_parse(void **state) {
  (void)state;
  static const char *const good[] = {
      "{\"ref\": \"r\", \"path\": \"/p\"}", "{\"ref\": \"r\", \"path\": \"/p\", \"digest\": null}",
      "{\"ref\": \"r\", \"path\": \"/p\", \"digest\": \"sha256:1\"}"};
  static const char *const bad[] = {"",
                                    "[]",
                                    "{\"ref\": \"r\"}",
                                    "{\"path\": \"/p\"}",
                                    "{\"ref\": 1, \"path\": \"/p\"}",
                                    "{\"ref\": \"r\", \"path\": \"/p\", \"digest\": 5}"};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    cleanup_error kyb_error *err = NULL;
    kyb_agent_fetched f = {0};
    assert_int_equal(kyb_agent_fetched_parse(good[i], strlen(good[i]), &f, &err), 0);
    assert_string_equal(f.path, "/p");
    assert_true(i == 2 ? f.digest != NULL : f.digest == NULL);
    kyb_agent_fetched_clear(&f);
  }
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cleanup_error kyb_error *err = NULL;
    kyb_agent_fetched f = {0};
    assert_int_equal(kyb_agent_fetched_parse(bad[i], strlen(bad[i]), &f, &err), -1);
    assert_int_equal(kyb_error_code(err), EBADMSG);
  }
}

/* ---- resolve through the agent --------------------------------------------------------- */

static void write_file(const char *dir, const char *rel, const char *content) {
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *p = kyb_path_join(dir, rel);
  assert_int_equal(kyb_write_file_atomic(p, content, strlen(content), 0600, &err), 0);
}

/* A finished image in the node cache, where the uploader would put it. */
static void cached_image(const char *name) {
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *dir = kyb_path_join(oci_dir, name);
  cleanup_free char *criu = kyb_path_join(dir, "criu");
  assert_int_equal(kyb_mkdir_p(criu, 0700, &err), 0);
  write_file(criu, "pages-1.img", "0123456789abcdef");
  kyb_image_builder *b = kyb_image_builder_new(dir, name, &err);
  assert_non_null(b);
  kyb_image_source src = {.container_id = "3f2a",
                          .namespace_ = "default",
                          .image_ref = "busybox",
                          .snapshotter = "overlayfs"};
  assert_int_equal(kyb_image_builder_set_source(b, &src, &err), 0);
  cleanup_json json_t *spec = json_pack("{s:s}", "ociVersion", "1.0.2");
  assert_int_equal(kyb_image_builder_set_runtime(b, spec, "io.containerd.runc.v2", "runc", &err),
                   0);
  kyb_image_versions v = {.kybernate = "0.1.0", .criu = "4.1.1", .runc = "1.1.5"};
  assert_int_equal(kyb_image_builder_set_versions(b, &v, &err), 0);
  cleanup_free char *digest = NULL;
  assert_int_equal(kyb_image_builder_finish(b, &digest, &err), 0);
  kyb_image_builder_free(b);
}

static void load_conf(kyb_nodeconf *c, const char *agent) {
  cleanup_free char *text = NULL;
  assert_true(asprintf(&text,
                       "{\"defaultStore\": \"file://%s/local\", \"stores\": [\"" REG "\"]%s%s%s}",
                       tmpdir, agent ? ", \"agentSocket\": \"" : "", agent ? agent : "",
                       agent ? "\"" : "") > 0);
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_nodeconf_parse(text, strlen(text), c, &err), 0);
}

static void test_resolve_through_agent(void **state) {
  (void)state;
  kyb_nodeconf conf;
  load_conf(&conf, sock);
  assert_string_equal(conf.agent_socket, sock);
  cached_image("img-ok");
  cleanup_error kyb_error *err = NULL;
  kyb_resolved_image r;
  last_url[0] = '\0';
  if (kyb_resolve_image(&conf, REG ":img-ok", &r, &err) < 0)
    fail_msg("%s", kyb_error_message(err));
  assert_string_equal(last_url, "/v1/images/fetch");
  assert_string_equal(last_body, "{\"ref\":\"" REG ":img-ok\"}");
  assert_non_null(strstr(r.dir, "/img-ok"));
  assert_non_null(r.manifest);
  kyb_resolved_image_clear(&r);

  /* Verified here, whoever fetched: a changed byte fails. */
  cached_image("img-bad");
  cleanup_free char *crit = kyb_path_join(oci_dir, "img-bad");
  write_file(crit, "criu/pages-1.img", "0123456789abcdeX");
  assert_int_equal(kyb_resolve_image(&conf, REG ":img-bad", &r, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "pages-1.img has sha256"));
  kyb_error_clear(&err);

  /* The agent says fetched, this process's cache has nothing. */
  assert_int_equal(kyb_resolve_image(&conf, REG ":img-gone", &r, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
  assert_non_null(strstr(kyb_error_message(err), "not in this process's node cache"));
  kyb_error_clear(&err);

  /* The agent's refusal, in its words, naming it. */
  assert_int_equal(kyb_resolve_image(&conf, REG ":missing", &r, &err), -1);
  const char *m = kyb_error_message(err);
  assert_non_null(strstr(m, "checkpoint " REG ":missing: fetch through the agent: "
                            "kybernate-agent at "));
  assert_non_null(strstr(m, "image missing is not in"));
  kyb_error_clear(&err);
  kyb_nodeconf_clear(&conf);
}

static void test_resolve_agent_down_and_env(void **state) {
  (void)state;
  cleanup_free char *down = kyb_path_join(tmpdir, "down/agent.sock");
  kyb_nodeconf conf;
  load_conf(&conf, down);
  cached_image("img-env");
  cleanup_error kyb_error *err = NULL;
  kyb_resolved_image r;
  /* Even with the image cached: no agent, no restore of a remote ref. */
  assert_int_equal(kyb_resolve_image(&conf, REG ":img-env", &r, &err), -1);
  assert_int_equal(kyb_error_code(err), ECONNREFUSED);
  assert_non_null(strstr(kyb_error_message(err), down));
  assert_non_null(strstr(kyb_error_message(err), "is the agent running?"));
  kyb_error_clear(&err);
  /* $KYBERNATE_AGENT_SOCKET wins over the node config. */
  setenv(KYB_AGENT_SOCKET_ENV, sock, 1);
  assert_string_equal(kyb_resolve_agent_socket(&conf), sock);
  if (kyb_resolve_image(&conf, REG ":img-env", &r, &err) < 0)
    fail_msg("%s", kyb_error_message(err));
  kyb_resolved_image_clear(&r);
  setenv(KYB_AGENT_SOCKET_ENV, "", 1);
  assert_string_equal(kyb_resolve_agent_socket(&conf), down);
  unsetenv(KYB_AGENT_SOCKET_ENV);
  kyb_nodeconf_clear(&conf);
  load_conf(&conf, NULL);
  assert_null(kyb_resolve_agent_socket(&conf));
  kyb_nodeconf_clear(&conf);
}

static void test_nodeconf_agent_socket(void **state) {
  (void)state;
  static const char *const bad[] = {"{\"agentSocket\": \"run/agent.sock\"}", "{\"agentSocket\": 5}",
                                    "{\"agentSocket\": \"\"}"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cleanup_error kyb_error *err = NULL;
    kyb_nodeconf c;
    assert_int_equal(kyb_nodeconf_parse(bad[i], strlen(bad[i]), &c, &err), -1);
    assert_non_null(strstr(kyb_error_message(err), "agentSocket must be an absolute path"));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_health_and_fetch),
      cmocka_unit_test(test_fetch_errors),
      cmocka_unit_test(test_timeout),
      cmocka_unit_test(test_no_agent),
      cmocka_unit_test(test_checkpoint),
      cmocka_unit_test(test_fetched_parse),
      cmocka_unit_test(test_resolve_through_agent),
      cmocka_unit_test(test_resolve_agent_down_and_env),
      cmocka_unit_test(test_nodeconf_agent_socket),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

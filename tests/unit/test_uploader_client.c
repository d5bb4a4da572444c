/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the uploader's server and client together
 * (lib/uploader/server.h, client.h) on a unix socket in a temp dir, with a
 * scripted runner: the socket's mode and its directory, a live socket not
 * taken over, a stale one replaced, a file not a socket refused; submit and
 * wait with progress; errors with the daemon's message and errno;
 * cancel; stop waiting; raw HTTP: bodies over the limit (413, announced or
 * chunked), unknown paths and methods; images listed and deleted through
 * it; no daemon at the socket. */
#include <curl/curl.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "image/image.h"
#include "store/store.h"
#include "uploader/client.h"
#include "uploader/server.h"
#include "util/cleanup.h"
#include "util/fs.h"

static char tmpdir[] = "/tmp/kyb-test-uplcl-XXXXXX";
static char *sock, *local_uri;
static const char *locals[1];
static kyb_job_policy pol;
static kyb_uploader *svc;
static kyb_uploader_server *srv;

static void nap(long ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* "ok*": progress in 4 steps, then done; "bad*": HTTP 401 from storage;
 * "block*": progress until cancelled. */
static int run(void *ud, kyb_job_ctx *ctx, const kyb_job_request *req, kyb_job_result *res,
               kyb_error **err) {
  (void)ud;
  if (strncmp(req->name, "bad", 3) == 0)
    return kyb_error_set(err, EACCES, "registry h refused access: HTTP 401 Unauthorized");
  bool block = strncmp(req->name, "block", 5) == 0;
  for (uint64_t d = 0; block || d <= 400; d += 100) {
    if (kyb_job_ctx_progress(ctx, "criu/pages-1.img", d % 500, 400, err) < 0)
      return -1;
    nap(block ? 5 : 60);
  }
  res->ref = strdup(req->destination);
  res->digest = strdup("sha256:0123");
  res->size = 400;
  return 0;
}

static int setup(void **state) {
  (void)state;
  if (mkdtemp(tmpdir) == NULL)
    return -1;
  if (asprintf(&sock, "%s/run/sub/uploader.sock", tmpdir) < 0 ||
      asprintf(&local_uri, "file://%s/local", tmpdir) < 0)
    return -1;
  locals[0] = local_uri;
  pol = (kyb_job_policy){.default_store = local_uri, .locals = locals, .nlocals = 1};
  curl_global_init(CURL_GLOBAL_DEFAULT);
  kyb_uploader_opts o = {.workers = 2, .retries = -1, .run = run};
  kyb_error *err = NULL;
  if (kyb_uploader_new(&o, &svc, &err) < 0 ||
      kyb_uploader_server_start(sock, svc, &pol, &srv, &err) < 0) {
    fprintf(stderr, "setup: %s\n", kyb_error_message(err));
    kyb_error_free(err);
    return -1;
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  kyb_uploader_shutdown(svc, 0, 5000);
  kyb_uploader_server_stop(srv);
  kyb_uploader_free(svc);
  kyb_error *err = NULL;
  int r = kyb_remove_tree(tmpdir, &err);
  kyb_error_free(err);
  free(sock);
  free(local_uri);
  curl_global_cleanup();
  return r;
}

static kyb_uploader_client *client(void) {
  kyb_uploader_client *c = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_uploader_client_new(sock, &c, &err), 0);
  return c;
}

static void test_socket(void **state) {
  (void)state;
  struct stat sb;
  assert_int_equal(lstat(sock, &sb), 0);
  assert_true(S_ISSOCK(sb.st_mode));
  assert_int_equal(sb.st_mode & 0777, 0660);
  cleanup_free char *dir = strdup(sock);
  *strrchr(dir, '/') = '\0';
  assert_int_equal(stat(dir, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0750);
  /* a second server on a live socket: refused, the first keeps it */
  kyb_uploader_server *s2 = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_uploader_server_start(sock, svc, &pol, &s2, &err), -1);
  assert_int_equal(kyb_error_code(err), EADDRINUSE);
  kyb_error_clear(&err);
  kyb_uploader_client *c = client();
  assert_int_equal(kyb_uploader_client_health(c, &err), 0);
  /* a stale socket (nobody listens) is replaced */
  cleanup_free char *stale = kyb_path_join(tmpdir, "stale.sock");
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", stale);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  close(fd);
  assert_int_equal(kyb_uploader_server_start(stale, svc, &pol, &s2, &err), 0);
  kyb_uploader_server_stop(s2);
  assert_int_equal(lstat(stale, &sb), -1); /* removed at stop */
  /* anything else at the path is left alone */
  assert_int_equal(kyb_write_file_atomic(stale, "x", 1, 0600, &err), 0);
  assert_int_equal(kyb_uploader_server_start(stale, svc, &pol, &s2, &err), -1);
  assert_int_equal(kyb_error_code(err), EEXIST);
  assert_non_null(strstr(kyb_error_message(err), "is not a socket"));
  kyb_error_clear(&err);
  assert_int_equal(kyb_uploader_server_start("relative.sock", svc, &pol, &s2, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
  kyb_uploader_client_free(c);
}

typedef struct {
  int calls;
  uint64_t max_done;
  bool saw_running;
  int stop_after; /* stop waiting after this many calls; 0: never */
} watch;

static int on_progress(void *ud, const kyb_upload_job *j) {
  watch *w = ud;
  w->calls++;
  if (j->done > w->max_done)
    w->max_done = j->done;
  if (strcmp(j->state, "running") == 0)
    w->saw_running = true;
  return w->stop_after && w->calls >= w->stop_after;
}

static void test_submit_and_wait(void **state) {
  (void)state;
  kyb_uploader_client *c = client();
  kyb_upload_job j = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_uploader_client_upload(c, "ok-1", "oci://reg.example/team/ckpt", &j, &err),
                   0);
  assert_string_equal(j.op, "upload");
  assert_string_equal(j.destination, "oci://reg.example/team/ckpt:ok-1");
  assert_false(j.joined);
  watch w = {0};
  assert_int_equal(kyb_uploader_client_wait(c, j.id, 10, on_progress, &w, &j, &err), 0);
  assert_string_equal(j.state, "done");
  assert_string_equal(j.ref, "oci://reg.example/team/ckpt:ok-1");
  assert_string_equal(j.digest, "sha256:0123");
  assert_int_equal(j.size, 400);
  assert_int_equal(j.done, 400);
  assert_int_equal(j.total, 400);
  assert_true(w.calls >= 2);
  assert_true(w.saw_running);
  kyb_upload_job g = {0};
  assert_int_equal(kyb_uploader_client_get(c, j.id, &g, &err), 0);
  assert_string_equal(g.state, "done");
  kyb_upload_job_clear(&g);
  kyb_upload_job_clear(&j);
  kyb_uploader_client_free(c);
}

static void test_errors(void **state) {
  (void)state;
  kyb_uploader_client *c = client();
  kyb_upload_job j = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_uploader_client_upload(c, "ok-2", "oci://h/r:tag", &j, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
  assert_non_null(strstr(kyb_error_message(err), "kybernate-uploader: \"to\""));
  kyb_error_clear(&err);
  assert_int_equal(kyb_uploader_client_upload(c, "file:///etc/ok", "oci://h/r", &j, &err), -1);
  assert_int_equal(kyb_error_code(err), EPERM);
  kyb_error_clear(&err);
  assert_int_equal(kyb_uploader_client_fetch(c, "name-only", &j, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
  kyb_error_clear(&err);
  assert_int_equal(kyb_uploader_client_get(c, "0123456789abcdef0123456789abcdef", &j, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
  kyb_error_clear(&err);
  assert_int_equal(kyb_uploader_client_get(c, "../healthz", &j, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
  kyb_error_clear(&err);
  /* a job that fails: wait says why, with storage's errno */
  assert_int_equal(kyb_uploader_client_upload(c, "bad-1", "oci://h/r", &j, &err), 0);
  cleanup_free char *id = strdup(j.id);
  assert_int_equal(kyb_uploader_client_wait(c, id, 10, NULL, NULL, &j, &err), -1);
  assert_int_equal(kyb_error_code(err), EACCES);
  assert_non_null(strstr(kyb_error_message(err), "HTTP 401 Unauthorized"));
  assert_string_equal(j.state, "failed");
  kyb_error_clear(&err);
  kyb_upload_job_clear(&j);
  kyb_uploader_client_free(c);
}

static void test_cancel_and_stop_waiting(void **state) {
  (void)state;
  kyb_uploader_client *c = client();
  kyb_upload_job j = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_uploader_client_upload(c, "block-1", "s3://bkt/p", &j, &err), 0);
  cleanup_free char *id = strdup(j.id);
  /* the same destination from another caller: joined */
  kyb_upload_job j2 = {0};
  assert_int_equal(kyb_uploader_client_upload(c, "block-1", "s3://bkt/p/", &j2, &err), 0);
  assert_true(j2.joined);
  assert_string_equal(j2.id, id);
  kyb_upload_job_clear(&j2);
  watch w = {.stop_after = 3};
  assert_int_equal(kyb_uploader_client_wait(c, id, 10, on_progress, &w, &j, &err), -1);
  assert_int_equal(kyb_error_code(err), ECANCELED);
  assert_non_null(strstr(kyb_error_message(err), "stopped waiting"));
  kyb_error_clear(&err);
  assert_int_equal(kyb_uploader_client_cancel(c, id, &j, &err), 0);
  assert_int_equal(kyb_uploader_client_wait(c, id, 10, NULL, NULL, &j, &err), -1);
  assert_int_equal(kyb_error_code(err), ECANCELED);
  assert_string_equal(j.state, "cancelled");
  kyb_error_clear(&err);
  assert_int_equal(kyb_uploader_client_cancel(c, id, &j, &err), -1);
  assert_int_equal(kyb_error_code(err), EEXIST); /* 409: finished */
  assert_non_null(strstr(kyb_error_message(err), "has finished"));
  kyb_upload_job_clear(&j);
  kyb_uploader_client_free(c);
}

/* ---- raw HTTP -------------------------------------------------------------------------- */

typedef struct {
  char buf[4096];
  size_t len;
} sink;

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  sink *s = ud;
  size_t len = size * n;
  size_t k = len < sizeof(s->buf) - 1 - s->len ? len : sizeof(s->buf) - 1 - s->len;
  memcpy(s->buf + s->len, p, k);
  s->len += k;
  s->buf[s->len] = '\0';
  return len;
}

static long raw(const char *method, const char *path, const char *body, long len, bool chunked,
                sink *out, char *allow, size_t allow_len) {
  CURL *h = curl_easy_init();
  char url[256];
  snprintf(url, sizeof(url), "http://localhost%s", path);
  struct curl_slist *hdrs = NULL;
  if (chunked)
    hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
  curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, sock);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  if (body != NULL) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    if (!chunked)
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, len);
  }
  assert_int_equal(curl_easy_perform(h), CURLE_OK);
  long st = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
  if (allow != NULL) {
    struct curl_header *ah = NULL;
    allow[0] = '\0';
    if (curl_easy_header(h, "Allow", 0, CURLH_HEADER, -1, &ah) == CURLHE_OK)
      snprintf(allow, allow_len, "%s", ah->value);
  }
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);
  return st;
}

static void test_raw_http(void **state) {
  (void)state;
  size_t big = KYB_JOB_REQUEST_MAX + 10;
  cleanup_free char *body = malloc(big + 1);
  memset(body, ' ', big);
  body[0] = '{';
  body[big - 1] = '}';
  body[big] = '\0';
  sink s = {0};
  assert_int_equal(raw("POST", "/v1/jobs", body, (long)big, false, &s, NULL, 0), 413);
  assert_non_null(strstr(s.buf, "\"status\":413"));
  assert_non_null(strstr(s.buf, "larger than 65536 bytes"));
  sink s2 = {0};
  assert_int_equal(raw("POST", "/v1/jobs", body, -1, true, &s2, NULL, 0), 413);
  sink s3 = {0};
  char allow[64];
  assert_int_equal(raw("PATCH", "/v1/jobs", NULL, 0, false, &s3, allow, sizeof(allow)), 405);
  assert_string_equal(allow, "GET, POST");
  sink s4 = {0};
  assert_int_equal(raw("GET", "/v1/../../etc/passwd", NULL, 0, false, &s4, NULL, 0), 404);
  assert_non_null(strstr(s4.buf, "\"error\""));
  sink s5 = {0};
  assert_int_equal(raw("POST", "/v1/jobs", "{\"op\":\"fetch\"}", 14, false, &s5, NULL, 0), 400);
  assert_non_null(strstr(s5.buf, "field \\\"ref\\\" is missing"));
  sink s6 = {0};
  assert_int_equal(raw("GET", "/healthz", NULL, 0, false, &s6, NULL, 0), 200);
  assert_non_null(strstr(s6.buf, "\"status\":\"ok\""));
}

static void test_images(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  kyb_store *s = NULL;
  assert_int_equal(kyb_store_open(local_uri, KYB_STORE_CREATE, &s, &err), 0);
  kyb_staging *st = NULL;
  assert_int_equal(kyb_store_stage(s, "listed", &st, &err), 0);
  cleanup_free char *criu = kyb_path_join(kyb_staging_path(st), "criu");
  assert_int_equal(kyb_mkdir_p(criu, 0700, &err), 0);
  cleanup_free char *f = kyb_path_join(criu, "pages-1.img");
  assert_int_equal(kyb_write_file_atomic(f, "pages", 5, 0600, &err), 0);
  kyb_image_builder *b = kyb_image_builder_new(kyb_staging_path(st), "listed", &err);
  assert_non_null(b);
  kyb_image_source src = {.container_id = "c0ffee"};
  assert_int_equal(kyb_image_builder_set_source(b, &src, &err), 0);
  cleanup_json json_t *spec = json_object();
  assert_int_equal(kyb_image_builder_set_runtime(b, spec, "runc", "runc", &err), 0);
  assert_int_equal(kyb_image_builder_finish(b, NULL, &err), 0);
  kyb_image_builder_free(b);
  assert_int_equal(kyb_store_put(s, st, &err), 0);
  kyb_staging_free(st);
  kyb_store_close(s);

  kyb_uploader_client *c = client();
  json_t *ls = NULL;
  assert_int_equal(kyb_uploader_client_list(c, local_uri, &ls, &err), 0);
  const json_t *imgs = json_object_get(ls, "images");
  assert_int_equal(json_array_size(imgs), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(imgs, 0), "name")),
                      "listed");
  assert_string_equal(json_string_value(json_object_get(json_array_get(imgs, 0), "container")),
                      "c0ffee");
  json_decref(ls);
  assert_int_equal(kyb_uploader_client_list(c, "file:///etc", &ls, &err), -1);
  assert_int_equal(kyb_error_code(err), EPERM);
  kyb_error_clear(&err);
  cleanup_free char *ref = NULL, *deleted = NULL;
  assert_true(asprintf(&ref, "%s/listed", local_uri) > 0);
  assert_int_equal(kyb_uploader_client_delete(c, ref, &deleted, &err), 0);
  assert_string_equal(deleted, ref);
  assert_int_equal(kyb_uploader_client_delete(c, ref, NULL, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
  kyb_error_clear(&err);
  /* storage's failure is a 502 with storage's words */
  assert_int_equal(kyb_uploader_client_list(c, "oci://127.0.0.1:1/kyb/x", &ls, &err), -1);
  assert_int_equal(kyb_error_code(err), EIO);
  assert_non_null(strstr(kyb_error_message(err), "127.0.0.1:1"));
  kyb_uploader_client_free(c);
}

static void test_no_daemon(void **state) {
  (void)state;
  cleanup_free char *none = kyb_path_join(tmpdir, "none.sock");
  kyb_uploader_client *c = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_uploader_client_new(none, &c, &err), 0);
  assert_string_equal(kyb_uploader_client_socket(c), none);
  assert_int_equal(kyb_uploader_client_health(c, &err), -1);
  assert_int_equal(kyb_error_code(err), ECONNREFUSED);
  assert_non_null(strstr(kyb_error_message(err), none));
  kyb_uploader_client_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_socket),    cmocka_unit_test(test_submit_and_wait),
      cmocka_unit_test(test_errors),    cmocka_unit_test(test_cancel_and_stop_waiting),
      cmocka_unit_test(test_raw_http),  cmocka_unit_test(test_images),
      cmocka_unit_test(test_no_daemon),
  };
  return cmocka_run_group_tests_name("uploader_client", tests, setup, teardown);
}

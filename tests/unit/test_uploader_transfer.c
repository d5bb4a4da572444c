/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the uploader's real job runner (lib/uploader/transfer.h)
 * through its service, on file:// stores: an upload links the image into
 * the destination (copies across file systems, with progress: a tmpfs
 * mount, skipped where mounting is not permitted) and publishes it, the
 * source stays; a second upload of the name fails with EEXIST at once; a
 * fetch answers the local path; a missing image and an unreachable
 * registry fail clearly.  And the store pieces the runner relies on:
 * progress reports and their stop (ECANCELED), the pack loop's progress,
 * and KYB_STORE_LOCAL_ONLY for oci:// and s3:// (the node cache, no
 * request, no credentials). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "image/image.h"
#include "store/backend.h"
#include "store/http.h"
#include "store/pack.h"
#include "uploader/service.h"
#include "uploader/transfer.h"
#include "util/cleanup.h"
#include "util/fs.h"

static char tmpdir[] = "/tmp/kyb-test-upltx-XXXXXX";
static char *local_uri, *other_uri, *mnt_uri;

static int setup(void **state) {
  (void)state;
  if (mkdtemp(tmpdir) == NULL)
    return -1;
  cleanup_free char *cache = kyb_path_join(tmpdir, "cache");
  setenv("KYBERNATE_IMAGE_CACHE", cache, 1);
  if (asprintf(&local_uri, "file://%s/local", tmpdir) < 0 ||
      asprintf(&other_uri, "file://%s/other", tmpdir) < 0 ||
      asprintf(&mnt_uri, "file://%s/mnt/images", tmpdir) < 0)
    return -1;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  cleanup_free char *mnt = kyb_path_join(tmpdir, "mnt");
  umount2(mnt, MNT_DETACH);
  kyb_error *err = NULL;
  int r = kyb_remove_tree(tmpdir, &err);
  kyb_error_free(err);
  free(local_uri);
  free(other_uri);
  free(mnt_uri);
  return r;
}

/* A published image `name` in the store at uri, with a pages file of
 * `pages` bytes. */
static void make_image(const char *uri, const char *name, size_t pages) {
  cleanup_error kyb_error *err = NULL;
  kyb_store *s = NULL;
  assert_int_equal(kyb_store_open(uri, KYB_STORE_CREATE, &s, &err), 0);
  kyb_staging *st = NULL;
  assert_int_equal(kyb_store_stage(s, name, &st, &err), 0);
  const char *dir = kyb_staging_path(st);
  cleanup_free char *criu = kyb_path_join(dir, "criu");
  assert_int_equal(kyb_mkdir_p(criu, 0700, &err), 0);
  cleanup_free char *f = kyb_path_join(criu, "pages-1.img");
  cleanup_free char *data = malloc(pages);
  assert_non_null(data);
  for (size_t i = 0; i < pages; i++)
    data[i] = (char)(i * 7 + i / 4096);
  assert_int_equal(kyb_write_file_atomic(f, data, pages, 0600, &err), 0);
  kyb_image_builder *b = kyb_image_builder_new(dir, name, &err);
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
}

static kyb_uploader *service(const kyb_job_policy *pol) {
  (void)pol;
  kyb_uploader_opts o = {.workers = 2, .retries = -1, .run = kyb_transfer_run};
  kyb_uploader *u = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_uploader_new(&o, &u, &err), 0);
  return u;
}

/* Submits body and waits (deadline 120 s) for the job's end; its JSON. */
static json_t *run_job(kyb_uploader *u, const kyb_job_policy *pol, const char *body) {
  kyb_job_request rq = {0};
  cleanup_error kyb_error *err = NULL;
  if (kyb_job_request_parse(body, strlen(body), pol, &rq, &err) < 0)
    fail_msg("%s: %s", body, kyb_error_message(err));
  json_t *j = NULL;
  bool joined = false;
  assert_int_equal(kyb_uploader_submit(u, &rq, &j, &joined, &err), 0);
  kyb_job_request_clear(&rq);
  cleanup_free char *id = strdup(json_string_value(json_object_get(j, "id")));
  json_decref(j);
  for (int i = 0; i < 60000; i++) {
    j = kyb_uploader_get(u, id);
    const char *st = json_string_value(json_object_get(j, "state"));
    if (strcmp(st, "done") == 0 || strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0)
      return j;
    json_decref(j);
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
  fail_msg("job %s did not end", id);
  return NULL;
}

static const char *state_of(const json_t *j) {
  return json_string_value(json_object_get(j, "state"));
}

static const char *error_of(const json_t *j) {
  const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
  return m ? m : "";
}

static void test_upload_and_fetch_file_stores(void **state) {
  (void)state;
  make_image(local_uri, "img1", 300000);
  const char *const locals[] = {local_uri, other_uri};
  kyb_job_policy pol = {.default_store = local_uri, .locals = locals, .nlocals = 2};
  kyb_uploader *u = service(&pol);
  char body[1024];
  snprintf(body, sizeof(body), "{\"op\":\"upload\",\"image\":\"img1\",\"to\":\"%s\"}", other_uri);
  cleanup_json json_t *j = run_job(u, &pol, body);
  if (strcmp(state_of(j), "done") != 0)
    fail_msg("upload: %s: %s", state_of(j), error_of(j));
  const json_t *res = json_object_get(j, "result");
  cleanup_free char *want = NULL;
  assert_true(asprintf(&want, "%s/img1", other_uri) > 0);
  assert_string_equal(json_string_value(json_object_get(res, "ref")), want);
  assert_true(json_is_null(json_object_get(res, "path")));
  assert_true(json_integer_value(json_object_get(res, "size")) > 300000);
  const json_t *p = json_object_get(j, "progress");
  assert_int_equal(json_integer_value(json_object_get(p, "bytesDone")),
                   json_integer_value(json_object_get(res, "size")));
  /* published, verified, and the same bytes as the source (hard links) */
  cleanup_free char *dst = NULL, *src = NULL;
  assert_true(asprintf(&dst, "%s/other/img1", tmpdir) > 0);
  assert_true(asprintf(&src, "%s/local/img1/criu/pages-1.img", tmpdir) > 0);
  cleanup_error kyb_error *err = NULL;
  cleanup_json json_t *m = NULL;
  assert_int_equal(kyb_image_verify(dst, &m, &err), 0);
  struct stat a, b;
  cleanup_free char *dpages = kyb_path_join(dst, "criu/pages-1.img");
  assert_int_equal(stat(src, &a), 0);
  assert_int_equal(stat(dpages, &b), 0);
  assert_true(a.st_ino == b.st_ino);
  cleanup_free char *digest = NULL;
  assert_int_equal(kyb_image_digest(dst, &digest, &err), 0);
  assert_string_equal(json_string_value(json_object_get(res, "digest")), digest);

  /* a name is never overwritten: failed at once, not retried */
  cleanup_json json_t *again = run_job(u, &pol, body);
  assert_string_equal(state_of(again), "failed");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(again, "error"), "errno")),
                   EEXIST);
  assert_non_null(strstr(error_of(again), "img1"));

  /* fetch of a file:// image: its path */
  snprintf(body, sizeof(body), "{\"op\":\"fetch\",\"ref\":\"%s/img1\"}", other_uri);
  cleanup_json json_t *f = run_job(u, &pol, body);
  assert_string_equal(state_of(f), "done");
  assert_string_equal(json_string_value(json_object_get(json_object_get(f, "result"), "path")),
                      dst);

  /* a missing image */
  snprintf(body, sizeof(body), "{\"op\":\"upload\",\"image\":\"nope\",\"to\":\"%s\"}", other_uri);
  cleanup_json json_t *miss = run_job(u, &pol, body);
  assert_string_equal(state_of(miss), "failed");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(miss, "error"), "errno")),
                   ENOENT);
  assert_non_null(strstr(error_of(miss), "local image"));

  /* nobody listens at the registry: the transport error, named */
  cleanup_json json_t *down =
      run_job(u, &pol, "{\"op\":\"fetch\",\"ref\":\"oci://127.0.0.1:1/kyb/test:img1\"}");
  assert_string_equal(state_of(down), "failed");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(down, "error"), "errno")),
                   ECONNREFUSED);
  assert_non_null(strstr(error_of(down), "http://127.0.0.1:1/v2/kyb/test/manifests/img1"));
  assert_true(kyb_uploader_shutdown(u, 1000, 1000));
  kyb_uploader_free(u);
}

static void test_upload_across_file_systems(void **state) {
  (void)state;
  cleanup_free char *mnt = kyb_path_join(tmpdir, "mnt");
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_mkdir_p(mnt, 0700, &err), 0);
  if (mount("kyb-test", mnt, "tmpfs", 0, "size=64m") < 0) {
    skip(); /* not permitted here */
    return;
  }
  make_image(local_uri, "big", 12u << 20);
  const char *const locals[] = {local_uri, mnt_uri};
  kyb_job_policy pol = {.default_store = local_uri, .locals = locals, .nlocals = 2};
  kyb_uploader *u = service(&pol);
  char body[1024];
  snprintf(body, sizeof(body), "{\"op\":\"upload\",\"image\":\"big\",\"to\":\"%s\"}", mnt_uri);
  cleanup_json json_t *j = run_job(u, &pol, body);
  if (strcmp(state_of(j), "done") != 0)
    fail_msg("upload: %s: %s", state_of(j), error_of(j));
  cleanup_free char *dst = NULL;
  assert_true(asprintf(&dst, "%s/mnt/images/big", tmpdir) > 0);
  cleanup_json json_t *m = NULL;
  assert_int_equal(kyb_image_verify(dst, &m, &err), 0); /* a copy, every byte checked */
  assert_true(kyb_uploader_shutdown(u, 1000, 1000));
  kyb_uploader_free(u);
}

/* ---- the store pieces ---------------------------------------------------------------- */

typedef struct {
  int calls;
  uint64_t last_done, last_total;
  const char *last_part;
  int stop_at; /* answer "stop" on this call (1-based); 0: never */
} seen;

static int on_progress(void *ud, const kyb_store_progress *p) {
  seen *s = ud;
  s->calls++;
  s->last_done = p->done;
  s->last_total = p->total;
  s->last_part = p->part;
  return s->stop_at != 0 && s->calls >= s->stop_at;
}

static void test_store_progress(void **state) {
  (void)state;
  kyb_store s = {.uri = "oci://h/r"};
  seen sn = {0};
  cleanup_error kyb_error *err = NULL;
  kyb_store_progress_begin(&s, "img", 1000); /* no callback: nothing happens */
  assert_int_equal(kyb_store_progress_part(&s, "a", 10, &err), 0);
  kyb_store_set_progress(&s, on_progress, &sn);
  kyb_store_progress_begin(&s, "img", 1000);
  assert_int_equal(sn.calls, 1);
  assert_int_equal(sn.last_total, 1000);
  assert_int_equal(kyb_store_progress_part(&s, "criu/a", 100, &err), 0);
  assert_int_equal(kyb_store_progress_part(&s, "criu/a", 300, &err), 0);
  assert_int_equal(sn.last_done, 300);
  assert_int_equal(kyb_store_progress_part_end(&s, "criu/a", 400, &err), 0);
  assert_int_equal(sn.last_done, 400);
  assert_int_equal(kyb_store_progress_part(&s, "criu/b", 50, &err), 0);
  assert_int_equal(sn.last_done, 450);
  assert_string_equal(sn.last_part, "criu/b");
  assert_int_equal(kyb_store_progress_part(&s, "criu/b", 0, &err), 0); /* a restarted attempt */
  assert_int_equal(sn.last_done, 400);
  sn.stop_at = sn.calls + 1;
  assert_int_equal(kyb_store_progress_part(&s, "criu/b", 20, &err), -1);
  assert_int_equal(kyb_error_code(err), ECANCELED);
  assert_non_null(strstr(kyb_error_message(err), "transfer of img stopped"));
}

typedef struct {
  uint64_t last;
  int calls;
  int stop_at;
} pack_seen;

static int pack_cb(void *ud, uint64_t bytes, kyb_error **err) {
  pack_seen *p = ud;
  p->calls++;
  assert_true(bytes > p->last);
  p->last = bytes;
  if (p->stop_at && p->calls >= p->stop_at)
    return kyb_error_set(err, ECANCELED, "stop here");
  return 0;
}

static int null_sink(void *ud, const void *buf, size_t len, kyb_error **err) {
  (void)ud;
  (void)buf;
  (void)len;
  (void)err;
  return 0;
}

static void test_pack_progress(void **state) {
  (void)state;
  make_image(local_uri, "packed", 5u << 20);
  cleanup_free char *f = NULL;
  assert_true(asprintf(&f, "%s/local/packed/criu/pages-1.img", tmpdir) > 0);
  pack_seen ps = {0};
  kyb_pack_opts po = {.threads = 1, .progress = pack_cb, .progress_ud = &ps};
  kyb_pack_result res;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_pack_file(f, &po, null_sink, NULL, &res, &err), 0);
  assert_int_equal(ps.last, 5u << 20);
  assert_true(ps.calls >= 5);
  pack_seen stop = {.stop_at = 2};
  po.progress_ud = &stop;
  assert_int_equal(kyb_pack_file(f, &po, null_sink, NULL, &res, &err), -1);
  assert_int_equal(kyb_error_code(err), ECANCELED);
  assert_non_null(strstr(kyb_error_message(err), "stop here"));
}

/* A TCP port that takes connections (the kernel's backlog) and never
 * answers: a stalled server. */
static int stalled_port(int *fd) {
  *fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(*fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(listen(*fd, 16), 0);
  socklen_t len = sizeof(sa);
  assert_int_equal(getsockname(*fd, (struct sockaddr *)&sa, &len), 0);
  return ntohs(sa.sin_port);
}

static int stop_calls;

static int stop_after_a_while(void *ud) {
  (void)ud;
  return ++stop_calls >= 2; /* the transfer runs, then it is asked to stop */
}

static void test_stop_reaches_stalled_requests(void **state) {
  (void)state;
  int lfd = -1;
  int port = stalled_port(&lfd);
  cleanup_error kyb_error *err = NULL;
  /* the HTTP client: a request hanging on a silent server stops */
  kyb_http *h = NULL;
  assert_int_equal(kyb_http_new(NULL, &h, &err), 0);
  kyb_http_set_abort(h, stop_after_a_while, NULL);
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/v2/", port);
  kyb_http_req rq = {.method = "GET", .url = url};
  kyb_http_resp rs = {0};
  stop_calls = 0;
  assert_int_equal(kyb_http_do(h, &rq, &rs, &err), -1);
  assert_int_equal(kyb_error_code(err), ECANCELED);
  assert_non_null(strstr(kyb_error_message(err), "stopped"));
  kyb_error_clear(&err);
  kyb_http_resp_clear(&rs);
  kyb_http_free(h);
  /* the stores wire their stop callback to their HTTP clients */
  char oci[96], s3[32], ep[64];
  snprintf(oci, sizeof(oci), "oci://127.0.0.1:%d/kyb/test", port);
  snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", port);
  snprintf(s3, sizeof(s3), "s3://kyb-bucket/p");
  setenv("KYBERNATE_S3_ENDPOINT", ep, 1);
  setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
  const char *uris[] = {oci, s3};
  for (size_t i = 0; i < 2; i++) {
    kyb_store *st = NULL;
    assert_int_equal(kyb_store_open(uris[i], 0, &st, &err), 0);
    kyb_store_set_stop(st, stop_after_a_while, NULL);
    stop_calls = 0;
    cleanup_free char *path = NULL;
    assert_int_equal(kyb_store_get_path(st, "img", &path, &err), -1);
    if (kyb_error_code(err) != ECANCELED)
      fail_msg("%s: %s", uris[i], kyb_error_message(err));
    kyb_error_clear(&err);
    kyb_store_close(st);
  }
  unsetenv("KYBERNATE_S3_ENDPOINT");
  close(lfd);
}

static void test_local_only(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  /* no credentials anywhere: an s3:// store opens all the same */
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  unsetenv("KYBERNATE_S3_CREDENTIALS");
  struct {
    const char *uri, *cache_sub;
  } cases[] = {{"oci://127.0.0.1:1/kyb/test", "oci/127.0.0.1_1/kyb/test"},
               {"s3://kyb-bucket/a/b", "s3/kyb-bucket/@a+b"}};
  for (size_t i = 0; i < 2; i++) {
    kyb_store *s = NULL;
    assert_int_equal(kyb_store_open(cases[i].uri, 0, &s, &err), i == 0 ? 0 : -1);
    kyb_store_close(s);
    s = NULL;
    kyb_error_clear(&err);
    assert_int_equal(kyb_store_open(cases[i].uri, KYB_STORE_LOCAL_ONLY, &s, &err), 0);
    cleanup_free char *path = NULL;
    assert_int_equal(kyb_store_get_path(s, "img", &path, &err), -1); /* no request is made */
    assert_int_equal(kyb_error_code(err), ENOENT);
    assert_non_null(strstr(kyb_error_message(err), "is not in the node cache"));
    kyb_error_clear(&err);
    cleanup_free char *cached = NULL;
    assert_true(asprintf(&cached, "%s/cache/%s/img", tmpdir, cases[i].cache_sub) > 0);
    assert_int_equal(kyb_mkdir_p(cached, 0700, &err), 0);
    assert_int_equal(kyb_store_get_path(s, "img", &path, &err), 0);
    assert_string_equal(path, cached);
    kyb_image_summary *v = NULL;
    size_t n = 0;
    assert_int_equal(kyb_store_list(s, &v, &n, &err), -1);
    assert_int_equal(kyb_error_code(err), ENOTSUP);
    kyb_error_clear(&err);
    assert_int_equal(kyb_store_delete(s, "img", &err), -1);
    assert_int_equal(kyb_error_code(err), ENOTSUP);
    kyb_error_clear(&err);
    kyb_staging *st = NULL;
    assert_int_equal(kyb_store_stage(s, "img2", &st, &err), -1);
    assert_int_equal(kyb_error_code(err), ENOTSUP);
    kyb_error_clear(&err);
    kyb_store_close(s);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_upload_and_fetch_file_stores),
      cmocka_unit_test(test_upload_across_file_systems),
      cmocka_unit_test(test_store_progress),
      cmocka_unit_test(test_pack_progress),
      cmocka_unit_test(test_local_only),
      cmocka_unit_test(test_stop_reaches_stalled_requests),
  };
  return cmocka_run_group_tests_name("uploader_transfer", tests, setup, teardown);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of image format v1: the builder writes a manifest that loads and
 * verifies; verification names the first flipped, missing or extra file;
 * manifest validation refuses escaping paths, unknown versions, wrong types;
 * image names and timestamps. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "image/files.h"
#include "image/image.h"
#include "util/cleanup.h"
#include "util/fs.h"

static char tmpdir[] = "/tmp/kyb-test-image-XXXXXX";
static int counter;

static int setup(void **state) {
  (void)state;
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  kyb_error *err = NULL;
  int r = kyb_remove_tree(tmpdir, &err);
  kyb_error_free(err);
  return r;
}

static void write_file(const char *dir, const char *rel, const char *content) {
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *p = kyb_path_join(dir, rel);
  assert_int_equal(kyb_write_file_atomic(p, content, strlen(content), 0600, &err), 0);
}

/* A finished image in a fresh directory; returns its path. */
static char *make_image(const char *name) {
  cleanup_error kyb_error *err = NULL;
  char sub[32];
  snprintf(sub, sizeof(sub), "img%d", counter++);
  char *dir = kyb_path_join(tmpdir, sub);
  cleanup_free char *criu = kyb_path_join(dir, "criu");
  assert_int_equal(kyb_mkdir_p(criu, 0700, &err), 0);
  write_file(criu, "core-1.img", "core of process 1");
  write_file(criu, "pages-1.img", "0123456789abcdef0123456789abcdef");
  write_file(criu, "dump.log", "");
  kyb_image_builder *b = kyb_image_builder_new(dir, name, &err);
  assert_non_null(b);
  kyb_image_source src = {.container_id = "3f2a",
                          .namespace_ = "k8s.io",
                          .image_ref = "docker.io/library/busybox:1.36",
                          .snapshotter = "overlayfs",
                          .pod_name = "web-1",
                          .pod_namespace = "default",
                          .pod_uid = "u-1",
                          .container_name = "app"};
  assert_int_equal(kyb_image_builder_set_source(b, &src, &err), 0);
  cleanup_json json_t *spec =
      json_pack("{s:s,s:{s:[s]}}", "ociVersion", "1.0.2", "process", "args", "/bin/sh");
  assert_int_equal(kyb_image_builder_set_runtime(b, spec, "io.containerd.runc.v2", "runc", &err),
                   0);
  kyb_image_versions v = {.kybernate = "0.1.0", .criu = "4.1.1", .runc = "1.1.5"};
  assert_int_equal(kyb_image_builder_set_versions(b, &v, &err), 0);
  assert_int_equal(kyb_image_builder_set_timing(b, "criu_dump", 1200, &err), 0);
  kyb_image_options o = {.leave_running = true, .tcp_established = true};
  assert_int_equal(kyb_image_builder_set_options(b, &o, &err), 0);
  cleanup_free char *digest = NULL;
  assert_int_equal(kyb_image_builder_finish(b, &digest, &err), 0);
  kyb_image_builder_free(b);
  cleanup_free char *again = NULL;
  assert_int_equal(kyb_image_digest(dir, &again, &err), 0);
  assert_string_equal(digest, again);
  return dir;
}

static void test_build_load_verify(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *dir = make_image("web-1-20261128-134000");
  cleanup_json json_t *m = NULL;
  assert_int_equal(kyb_image_verify(dir, &m, &err), 0);
  assert_int_equal(json_integer_value(json_object_get(m, "kybernateImage")), 1);
  assert_string_equal(json_string_value(json_object_get(m, "name")), "web-1-20261128-134000");
  assert_true(kyb_image_time_valid(json_string_value(json_object_get(m, "created"))));
  json_t *files = json_object_get(m, "files");
  assert_int_equal(json_array_size(files), 3);
  /* sorted, relative to the image directory */
  assert_string_equal(json_string_value(json_object_get(json_array_get(files, 0), "path")),
                      "criu/core-1.img");
  assert_int_equal(json_integer_value(json_object_get(json_array_get(files, 2), "size")), 32);
  json_t *src = json_object_get(m, "source");
  assert_string_equal(json_string_value(json_object_get(json_object_get(src, "pod"), "uid")),
                      "u-1");
  assert_true(json_is_object(json_object_get(json_object_get(m, "runtime"), "spec")));
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(m, "versions"), "containerd")), "");
  assert_true(json_string_length(json_object_get(json_object_get(m, "versions"), "kernel")) > 0);
  json_t *t = json_object_get(m, "timings");
  assert_int_equal(json_integer_value(json_object_get(t, "criu_dump")), 1200);
  assert_non_null(json_object_get(t, "package"));
  assert_true(json_is_true(json_object_get(json_object_get(m, "options"), "leaveRunning")));
  assert_true(json_is_true(json_object_get(json_object_get(m, "options"), "tcpEstablished")));
  assert_true(json_is_false(json_object_get(json_object_get(m, "options"), "fileLocks")));
  assert_null(json_object_get(m, "rootfs"));
  cleanup_json json_t *m2 = NULL;
  assert_int_equal(kyb_image_load_manifest(dir, &m2, &err), 0);
  struct stat st;
  cleanup_free char *mp = kyb_path_join(dir, "manifest.json");
  assert_int_equal(stat(mp, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_verify_flipped_byte(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *dir = make_image("flip");
  cleanup_free char *p = kyb_path_join(dir, "criu/pages-1.img");
  cleanup_close int fd = open(p, O_RDWR);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, "X", 1, 7), 1);
  assert_int_equal(kyb_image_verify(dir, NULL, &err), -1);
  assert_int_equal(kyb_error_code(err), EBADMSG);
  assert_non_null(strstr(kyb_error_message(err), "criu/pages-1.img has sha256"));
}

/* An image whose criu/pages-1.img is `len` pseudo-random bytes, pinned in
 * chunks of 1 MiB. */
static char *make_chunked_image(const char *name, size_t len) {
  cleanup_error kyb_error *err = NULL;
  char sub[32];
  snprintf(sub, sizeof(sub), "img%d", counter++);
  char *dir = kyb_path_join(tmpdir, sub);
  cleanup_free char *criu = kyb_path_join(dir, "criu");
  assert_int_equal(kyb_mkdir_p(criu, 0700, &err), 0);
  write_file(criu, "core-1.img", "core of process 1");
  cleanup_free unsigned char *buf = malloc(len);
  assert_non_null(buf);
  for (size_t i = 0; i < len; i++)
    buf[i] = (unsigned char)((i * 2654435761u) >> 13);
  cleanup_free char *pages = kyb_path_join(criu, "pages-1.img");
  assert_int_equal(kyb_write_file_atomic(pages, (const char *)buf, len, 0600, &err), 0);
  kyb_image_builder *b = kyb_image_builder_new(dir, name, &err);
  assert_non_null(b);
  kyb_image_source src = {.container_id = "3f2a"};
  assert_int_equal(kyb_image_builder_set_source(b, &src, &err), 0);
  cleanup_json json_t *spec = json_pack("{s:s}", "ociVersion", "1.0.2");
  assert_int_equal(kyb_image_builder_set_runtime(b, spec, "io.containerd.runc.v2", "runc", &err),
                   0);
  assert_int_equal(kyb_image_builder_set_chunk_size(b, 1000000, &err), -1); /* not a power of 2 */
  assert_non_null(strstr(kyb_error_message(err), "power of two"));
  assert_int_equal(kyb_image_builder_set_chunk_size(b, 1u << 20, &err), 0);
  assert_int_equal(kyb_image_builder_finish(b, NULL, &err), 0);
  kyb_image_builder_free(b);
  return dir;
}

/* Files larger than a chunk carry one digest per chunk, each the sha256 of
 * its byte range; smaller files none.  Verification is the same on one
 * thread and on eight, and a flipped byte is reported with its chunk. */
static void test_chunk_digests(void **state) {
  (void)state;
  const size_t len = (3u << 20) + 4321;
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *dir = make_chunked_image("chunked", len);
  cleanup_json json_t *m = NULL;
  assert_int_equal(kyb_image_load_manifest(dir, &m, &err), 0);
  json_t *files = json_object_get(m, "files");
  json_t *core = json_array_get(files, 0), *pages = json_array_get(files, 1);
  assert_null(json_object_get(core, "chunks"));
  json_t *chunks = json_object_get(pages, "chunks");
  assert_int_equal(json_integer_value(json_object_get(chunks, "size")), 1u << 20);
  json_t *list = json_object_get(chunks, "sha256");
  assert_int_equal(json_array_size(list), 4);
  cleanup_free char *path = kyb_path_join(dir, "criu/pages-1.img");
  cleanup_free char *data = NULL;
  size_t got = 0;
  assert_int_equal(kyb_read_file(path, len + 1, &data, &got, &err), 0);
  assert_int_equal(got, len);
  char hex[KYB_SHA256_HEX_LEN + 1];
  kyb_sha256_buf(data, len, hex);
  assert_string_equal(json_string_value(json_object_get(pages, "sha256")), hex);
  for (size_t c = 0; c < 4; c++) {
    size_t off = c << 20, n = len - off < (1u << 20) ? len - off : (1u << 20);
    kyb_sha256_buf(data + off, n, hex);
    assert_string_equal(json_string_value(json_array_get(list, c)), hex);
  }
  const char *threads[] = {"1", "2", "8"};
  for (size_t t = 0; t < 3; t++) {
    setenv("KYBERNATE_HASH_THREADS", threads[t], 1);
    assert_int_equal(kyb_image_verify(dir, NULL, &err), 0);
  }
  cleanup_close int fd = open(path, O_RDWR);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, "X", 1, (2u << 20) + 5), 1);
  for (size_t t = 0; t < 3; t++) {
    setenv("KYBERNATE_HASH_THREADS", threads[t], 1);
    assert_int_equal(kyb_image_verify(dir, NULL, &err), -1);
    assert_int_equal(kyb_error_code(err), EBADMSG);
    assert_non_null(strstr(kyb_error_message(err),
                           "file criu/pages-1.img chunk 2 (bytes 2097152-3145727) has sha256"));
    kyb_error_clear(&err);
  }
  unsetenv("KYBERNATE_HASH_THREADS");
}

static void test_verify_missing_file(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *dir = make_image("missing");
  cleanup_free char *p = kyb_path_join(dir, "criu/core-1.img");
  assert_int_equal(unlink(p), 0);
  assert_int_equal(kyb_image_verify(dir, NULL, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
  assert_non_null(strstr(kyb_error_message(err), "criu/core-1.img listed in the manifest"));
}

static void test_verify_extra_file(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *dir = make_image("extra");
  write_file(dir, "criu/evil.img", "x");
  assert_int_equal(kyb_image_verify(dir, NULL, &err), -1);
  assert_int_equal(kyb_error_code(err), EBADMSG);
  assert_non_null(strstr(kyb_error_message(err), "criu/evil.img is not listed"));
}

static void test_verify_size_and_symlink(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *dir = make_image("size");
  write_file(dir, "criu/dump.log", "grown");
  assert_int_equal(kyb_image_verify(dir, NULL, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "criu/dump.log is 5 bytes, the manifest says 0"));
  kyb_error_clear(&err);
  /* A listed file replaced by a symlink to a file of the same content. */
  cleanup_free char *dir2 = make_image("symlink");
  cleanup_free char *p = kyb_path_join(dir2, "criu/core-1.img");
  cleanup_free char *q = kyb_path_join(tmpdir, "core-copy");
  write_file(tmpdir, "core-copy", "core of process 1");
  assert_int_equal(unlink(p), 0);
  assert_int_equal(symlink(q, p), 0);
  assert_int_equal(kyb_image_verify(dir2, NULL, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "criu/core-1.img is not a regular file"));
}

/* Loads the manifest of a fresh image, lets `edit` change it, and parses the
 * result again. */
static int parse_edited(void (*edit)(json_t *m), kyb_error **err) {
  cleanup_free char *dir = make_image("edit");
  cleanup_json json_t *m = NULL;
  assert_int_equal(kyb_image_load_manifest(dir, &m, err), 0);
  edit(m);
  cleanup_free char *text = json_dumps(m, 0);
  cleanup_json json_t *out = NULL;
  return kyb_image_manifest_parse(text, strlen(text), &out, err);
}

static void set_file0_path(json_t *m, const char *p) {
  json_object_set_new(json_array_get(json_object_get(m, "files"), 0), "path", json_string(p));
}
static void edit_dotdot(json_t *m) {
  set_file0_path(m, "../../etc/shadow");
}
static void edit_inner_dotdot(json_t *m) {
  set_file0_path(m, "criu/../../x");
}
static void edit_absolute(json_t *m) {
  set_file0_path(m, "/etc/shadow");
}
static void edit_empty_comp(json_t *m) {
  set_file0_path(m, "criu//core-1.img");
}
static void edit_version(json_t *m) {
  json_object_set_new(m, "kybernateImage", json_integer(2));
}
static void edit_name_type(json_t *m) {
  json_object_set_new(m, "name", json_integer(7));
}
static void edit_no_source(json_t *m) {
  json_object_del(m, "source");
}
static void edit_sha(json_t *m) {
  json_object_set_new(json_array_get(json_object_get(m, "files"), 0), "sha256", json_string("ABC"));
}
static void edit_neg_size(json_t *m) {
  json_object_set_new(json_array_get(json_object_get(m, "files"), 1), "size", json_integer(-1));
}
static void edit_dup_file(json_t *m) {
  json_t *files = json_object_get(m, "files");
  json_array_append_new(files, json_deep_copy(json_array_get(files, 0)));
}
/* "a" < "a-b" < "a/c": the file and the directory are not neighbours once
 * sorted (found by fuzz_image_manifest). */
static void edit_file_and_dir(json_t *m) {
  json_t *files = json_object_get(m, "files");
  const char *sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
  json_array_append_new(
      files, json_pack("{s:s,s:i,s:s}", "path", "criu/core-1.img-old", "size", 0, "sha256", sha));
  json_array_append_new(
      files, json_pack("{s:s,s:i,s:s}", "path", "criu/core-1.img/inner", "size", 0, "sha256", sha));
}
static void edit_diff_without_rootfs(json_t *m) {
  json_array_append_new(
      json_object_get(m, "files"),
      json_pack("{s:s,s:i,s:s}", "path", "rootfs-diff.tar", "size", 0, "sha256",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
}
static void edit_bad_time(json_t *m) {
  json_object_set_new(m, "created", json_string("yesterday"));
}
static void edit_timing(json_t *m) {
  json_object_set_new(json_object_get(m, "timings"), "Bad-Phase", json_integer(1));
}

/* Edits of a chunked manifest: files[1] is criu/pages-1.img in 4 chunks. */
static json_t *chunks_of(json_t *m) {
  return json_object_get(json_array_get(json_object_get(m, "files"), 1), "chunks");
}
static void edit_chunk_size(json_t *m) {
  json_object_set_new(chunks_of(m), "size", json_integer(3 << 20));
}
static void edit_chunk_small(json_t *m) {
  json_object_set_new(chunks_of(m), "size", json_integer(4096));
}
static void edit_chunk_count(json_t *m) {
  json_array_remove(json_object_get(chunks_of(m), "sha256"), 3);
}
static void edit_chunk_hex(json_t *m) {
  json_array_set_new(json_object_get(chunks_of(m), "sha256"), 1, json_integer(5));
}
static void edit_chunk_type(json_t *m) {
  json_object_set_new(json_array_get(json_object_get(m, "files"), 1), "chunks", json_string("x"));
}
static void edit_chunk_list(json_t *m) {
  json_object_del(chunks_of(m), "sha256");
}

static void expect_chunk_error(void (*edit)(json_t *), const char *text) {
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *dir = make_chunked_image("edit-chunks", (3u << 20) + 1);
  cleanup_json json_t *m = NULL;
  assert_int_equal(kyb_image_load_manifest(dir, &m, &err), 0);
  edit(m);
  cleanup_free char *text_out = json_dumps(m, 0);
  cleanup_json json_t *out = NULL;
  assert_int_equal(kyb_image_manifest_parse(text_out, strlen(text_out), &out, &err), -1);
  if (strstr(kyb_error_message(err), text) == NULL || kyb_error_code(err) != EINVAL)
    fail_msg("got \"%s\", wanted \"%s\"", kyb_error_message(err), text);
}

static void test_manifest_rejects_chunks(void **state) {
  (void)state;
  expect_chunk_error(edit_chunk_size, "files[1].chunks.size\" must be a power of two");
  expect_chunk_error(edit_chunk_small, "files[1].chunks.size\" must be a power of two");
  expect_chunk_error(edit_chunk_count, "has 3 digests, a file of 3145729 bytes in chunks of "
                                       "1048576 has 4");
  expect_chunk_error(edit_chunk_hex, "files[1].chunks.sha256[1]\" must be 64 lower-case hex");
  expect_chunk_error(edit_chunk_type, "files[1].chunks\" must be an object");
  expect_chunk_error(edit_chunk_list, "files[1].chunks.sha256\" is missing");
}

static void expect_parse_error(void (*edit)(json_t *), int code, const char *text) {
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(parse_edited(edit, &err), -1);
  if (strstr(kyb_error_message(err), text) == NULL || kyb_error_code(err) != code)
    fail_msg("got \"%s\" (errno %d), wanted \"%s\" (errno %d)", kyb_error_message(err),
             kyb_error_code(err), text, code);
}

static void test_manifest_rejects(void **state) {
  (void)state;
  expect_parse_error(edit_dotdot, EINVAL, "has a \"..\" component");
  expect_parse_error(edit_inner_dotdot, EINVAL, "has a \"..\" component");
  expect_parse_error(edit_absolute, EINVAL, "is absolute");
  expect_parse_error(edit_empty_comp, EINVAL, "empty component");
  expect_parse_error(edit_version, ENOTSUP, "image format version 2 is not supported");
  expect_parse_error(edit_name_type, EINVAL, "field \"name\" must be a string");
  expect_parse_error(edit_no_source, EINVAL, "field \"source\" is missing");
  expect_parse_error(edit_sha, EINVAL, "files[0].sha256\" must be 64 lower-case hex");
  expect_parse_error(edit_neg_size, EINVAL, "files[1].size\" must not be negative");
  expect_parse_error(edit_dup_file, EINVAL, "lists \"criu/core-1.img\" twice");
  expect_parse_error(edit_file_and_dir, EINVAL,
                     "lists \"criu/core-1.img\" as a file and a directory");
  expect_parse_error(edit_diff_without_rootfs, EINVAL, "no \"rootfs\" object");
  expect_parse_error(edit_bad_time, EINVAL, "RFC 3339");
  expect_parse_error(edit_timing, EINVAL, "phase name \"Bad-Phase\"");
}

static void test_manifest_raw_input(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_json json_t *m = NULL;
  const char *bad = "{\"kybernateImage\": 1,\n \"name\": }";
  assert_int_equal(kyb_image_manifest_parse(bad, strlen(bad), &m, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "invalid JSON at line 2"));
  kyb_error_clear(&err);
  const char *dup = "{\"kybernateImage\": 1, \"kybernateImage\": 1}";
  assert_int_equal(kyb_image_manifest_parse(dup, strlen(dup), &m, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "duplicate"));
  kyb_error_clear(&err);
  const char *other = "{\"ociVersion\": \"1.0\"}";
  assert_int_equal(kyb_image_manifest_parse(other, strlen(other), &m, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "not a Kybernate image"));
  kyb_error_clear(&err);
  const char *future = "{\"kybernateImage\": 99, \"whatever\": true}";
  assert_int_equal(kyb_image_manifest_parse(future, strlen(future), &m, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOTSUP);
  kyb_error_clear(&err);
  /* Over the size cap, on disk: refused before parsing. */
  cleanup_free char *dir = make_image("big");
  cleanup_free char *mp = kyb_path_join(dir, "manifest.json");
  assert_int_equal(truncate(mp, (off_t)KYB_IMAGE_MANIFEST_MAX_BYTES + 1), 0);
  assert_int_equal(kyb_image_load_manifest(dir, &m, &err), -1);
  assert_int_equal(kyb_error_code(err), EFBIG);
  kyb_error_clear(&err);
  /* A manifest that is a symlink is refused, even to a valid manifest. */
  cleanup_free char *dir2 = make_image("linked");
  cleanup_free char *mp2 = kyb_path_join(dir2, "manifest.json");
  cleanup_free char *dir3 = make_image("target");
  cleanup_free char *mp3 = kyb_path_join(dir3, "manifest.json");
  assert_int_equal(unlink(mp2), 0);
  assert_int_equal(symlink(mp3, mp2), 0);
  assert_int_equal(kyb_image_load_manifest(dir2, &m, &err), -1);
  assert_int_equal(kyb_error_code(err), ELOOP);
}

static void test_builder_checks(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  assert_null(kyb_image_builder_new(tmpdir, "Bad Name", &err));
  assert_int_equal(kyb_error_code(err), EINVAL);
  kyb_error_clear(&err);
  assert_null(kyb_image_builder_new("/nonexistent/kyb", "x", &err));
  assert_int_equal(kyb_error_code(err), ENOENT);
  kyb_error_clear(&err);
  cleanup_free char *dir = kyb_path_join(tmpdir, "nocriu");
  assert_int_equal(kyb_mkdir_p(dir, 0700, &err), 0);
  kyb_image_builder *b = kyb_image_builder_new(dir, "x", &err);
  assert_non_null(b);
  assert_int_equal(kyb_image_builder_finish(b, NULL, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "source not set"));
  kyb_error_clear(&err);
  kyb_image_source src = {.container_id = "c1"};
  assert_int_equal(kyb_image_builder_set_source(b, &src, &err), 0);
  cleanup_json json_t *spec = json_object();
  assert_int_equal(kyb_image_builder_set_runtime(b, spec, NULL, NULL, &err), 0);
  assert_int_equal(kyb_image_builder_set_timing(b, "no spaces", 1, &err), -1);
  kyb_error_clear(&err);
  assert_int_equal(kyb_image_builder_finish(b, NULL, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "has no criu/ directory"));
  kyb_error_clear(&err);
  /* Anything but regular files and directories in the staging dir: refused. */
  cleanup_free char *criu = kyb_path_join(dir, "criu");
  assert_int_equal(kyb_mkdir_p(criu, 0700, &err), 0);
  cleanup_free char *ln = kyb_path_join(criu, "link");
  assert_int_equal(symlink("/etc/passwd", ln), 0);
  assert_int_equal(kyb_image_builder_finish(b, NULL, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "criu/link is not a regular file"));
  kyb_error_clear(&err);
  assert_int_equal(unlink(ln), 0);
  assert_int_equal(kyb_image_builder_finish(b, NULL, &err), 0); /* an empty criu/ is fine */
  kyb_image_builder_free(b);
  cleanup_json json_t *m = NULL;
  assert_int_equal(kyb_image_verify(dir, &m, &err), 0);
  assert_null(json_object_get(json_object_get(m, "source"), "pod"));
}

static void test_names(void **state) {
  (void)state;
  const char *good[] = {"a", "web-1", "0day", "a.b_c-d", NULL};
  const char *bad[] = {"", "A", "-a", ".a", "_a", "a/b", "a b", "..", "é", NULL};
  for (const char **p = good; *p; p++)
    assert_true(kyb_image_name_valid(*p));
  for (const char **p = bad; *p; p++)
    assert_false(kyb_image_name_valid(*p));
  char longname[130];
  memset(longname, 'a', sizeof(longname) - 1);
  longname[129] = '\0';
  assert_false(kyb_image_name_valid(longname));
  longname[128] = '\0';
  assert_true(kyb_image_name_valid(longname));

  cleanup_error kyb_error *err = NULL;
  const time_t t = 1795873200; /* 2026-11-28T13:40:00Z */
  struct {
    const char *base, *want;
  } cases[] = {
      {"Web_App", "web_app-20261128-134000"},
      {"3f2a3f2a3f2a3f2a3f2a3f2a3f2a3f2a3f2a3f2a3f2a3f2a3f2a3f2a3f2a3f2a",
       "3f2a3f2a3f2a-20261128-134000"},
      {"", "checkpoint-20261128-134000"},
      {NULL, "checkpoint-20261128-134000"},
      {"..my pod/ctr", "my-pod-ctr-20261128-134000"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    cleanup_free char *n = NULL;
    assert_int_equal(kyb_image_name_default(cases[i].base, t, &n, &err), 0);
    assert_string_equal(n, cases[i].want);
  }
  cleanup_free char *n = NULL;
  assert_int_equal(kyb_image_name_default(longname, t, &n, &err), 0);
  assert_int_equal(strlen(n), 128);
  assert_true(kyb_image_name_valid(n));

  char buf[21];
  kyb_image_format_time(t, buf);
  assert_string_equal(buf, "2026-11-28T13:40:00Z");
  assert_true(kyb_image_time_valid("2026-11-28T13:40:00.123+01:00"));
  assert_false(kyb_image_time_valid("2026-13-28T13:40:00Z"));
  assert_false(kyb_image_time_valid("2026-11-28 13:40:00Z"));
  assert_false(kyb_image_time_valid("2026-11-28T13:40:00"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_build_load_verify),
      cmocka_unit_test(test_verify_flipped_byte),
      cmocka_unit_test(test_chunk_digests),
      cmocka_unit_test(test_manifest_rejects_chunks),
      cmocka_unit_test(test_verify_missing_file),
      cmocka_unit_test(test_verify_extra_file),
      cmocka_unit_test(test_verify_size_and_symlink),
      cmocka_unit_test(test_manifest_rejects),
      cmocka_unit_test(test_manifest_raw_input),
      cmocka_unit_test(test_builder_checks),
      cmocka_unit_test(test_names),
  };
  return cmocka_run_group_tests_name("image", tests, setup, teardown);
}

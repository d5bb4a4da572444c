/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the s3:// store's pieces that need no server: URIs and
 * image references, the credentials file, the configuration from the
 * environment, the XML scanner S3's answers go through, and index.json
 * (built from a real manifest, refused when malformed, matched against its
 * manifest).  The store against a server: tests/integration/test_store_s3.py. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "image/image.h"
#include "store/backend.h"
#include "store/s3.h"
#include "store/store.h"
#include "util/cleanup.h"
#include "util/fs.h"

#define HEX_A "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HEX_B "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static void test_uri_parse(void **state) {
  (void)state;
  struct {
    const char *in, *bucket, *prefix;
  } ok[] = {
      {"bkt", "bkt", ""},
      {"bkt/", "bkt", ""},
      {"my.bucket-1/kyb/images", "my.bucket-1", "kyb/images"},
      {"bkt//a/b//", "bkt", "a/b"},
      {"bkt/A_b.c-9", "bkt", "A_b.c-9"},
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    cleanup_free char *b = NULL, *p = NULL;
    cleanup_error kyb_error *err = NULL;
    if (kyb_s3_uri_parse(ok[i].in, &b, &p, &err) < 0)
      fail_msg("%s: %s", ok[i].in, kyb_error_message(err));
    assert_string_equal(b, ok[i].bucket);
    assert_string_equal(p, ok[i].prefix);
  }
  const char *bad[] = {"",        "ab",         "Bkt/x",       "-bkt",    "bkt-",
                       "b_kt/x",  "bkt/a/../b", "bkt/a/./b",   "bkt/a b", "bkt/a%20b",
                       "bkt/a?b", "bkt/a//..",  "bkt/\xc3\xa4"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cleanup_free char *b = NULL, *p = NULL;
    cleanup_error kyb_error *err = NULL;
    if (kyb_s3_uri_parse(bad[i], &b, &p, &err) == 0)
      fail_msg("\"%s\" accepted", bad[i]);
    assert_int_equal(kyb_error_code(err), EINVAL);
  }
}

static void test_refs(void **state) {
  (void)state;
  struct {
    const char *ref, *uri, *name;
  } ok[] = {
      {"s3://bkt/web-1", "s3://bkt", "web-1"},
      {"s3://bkt/kyb/images/web-1-20261128-134000", "s3://bkt/kyb/images", "web-1-20261128-134000"},
      {"s3://bkt//kyb//web.1", "s3://bkt/kyb", "web.1"},
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    cleanup_free char *uri = NULL, *name = NULL;
    cleanup_error kyb_error *err = NULL;
    if (kyb_image_ref_parse(ok[i].ref, NULL, &uri, &name, &err) < 0)
      fail_msg("%s: %s", ok[i].ref, kyb_error_message(err));
    assert_string_equal(uri, ok[i].uri);
    assert_string_equal(name, ok[i].name);
  }
  const char *bad[] = {"s3://bkt",      "s3://bkt/",    "s3://bkt/Web",
                       "s3://bkt/a/.x", "s3://x/web-1", "s3://bkt/a b/web"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cleanup_free char *uri = NULL, *name = NULL;
    cleanup_error kyb_error *err = NULL;
    if (kyb_image_ref_parse(bad[i], NULL, &uri, &name, &err) == 0)
      fail_msg("\"%s\" accepted as %s / %s", bad[i], uri, name);
    assert_int_equal(kyb_error_code(err), EINVAL);
  }
}

static void test_credentials_file(void **state) {
  (void)state;
  const char *text = "# a comment\n"
                     "[other]\n"
                     "aws_access_key_id = OTHER\n"
                     "aws_secret_access_key = othersecret\n"
                     "\n"
                     "[default]\r\n"
                     "region = eu-west-1\n"
                     "aws_access_key_id=AKIDEXAMPLE\n"
                     "  aws_secret_access_key =  wJalr/K7MDENG+bPxRfi  \n"
                     "aws_session_token = tok=en\n"
                     "[profile ci]\n"
                     "aws_access_key_id = CI\n"
                     "aws_secret_access_key = cisecret\n";
  kyb_s3_config c = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_s3_credentials_parse(text, "default", &c, &err), 0);
  assert_string_equal(c.access_key_id, "AKIDEXAMPLE");
  assert_string_equal(c.secret_access_key, "wJalr/K7MDENG+bPxRfi");
  assert_string_equal(c.session_token, "tok=en");
  kyb_s3_config_clear(&c);
  assert_int_equal(kyb_s3_credentials_parse(text, "ci", &c, &err), 0);
  assert_string_equal(c.access_key_id, "CI");
  assert_null(c.session_token);
  kyb_s3_config_clear(&c);
  assert_int_equal(kyb_s3_credentials_parse(text, "nope", &c, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
  kyb_error_clear(&err);
  assert_int_equal(
      kyb_s3_credentials_parse("[default]\naws_access_key_id = A\n", "default", &c, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
  kyb_error_clear(&err);
  assert_int_equal(kyb_s3_credentials_parse("[default]\njunk line\n", "default", &c, &err), -1);
  /* the secret is not echoed in the message */
  assert_null(strstr(kyb_error_message(err), "junk line"));
}

static void clear_env(void) {
  const char *vars[] = {"AWS_ACCESS_KEY_ID",   "AWS_SECRET_ACCESS_KEY",    "AWS_SESSION_TOKEN",
                        "AWS_PROFILE",         "KYBERNATE_S3_CREDENTIALS", "KYBERNATE_S3_ENDPOINT",
                        "KYBERNATE_S3_REGION", "KYBERNATE_S3_PART_SIZE",   "KYBERNATE_S3_COPY_MAX"};
  for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
    unsetenv(vars[i]);
}

static void test_config_env(void **state) {
  (void)state;
  kyb_s3_config c = {0};
  cleanup_error kyb_error *err = NULL;
  clear_env();
  assert_int_equal(kyb_s3_config_load(&c, &err), -1);
  assert_int_equal(kyb_error_code(err), EACCES);
  assert_non_null(strstr(kyb_error_message(err), "KYBERNATE_S3_CREDENTIALS"));
  kyb_error_clear(&err);

  setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
  setenv("KYBERNATE_S3_ENDPOINT", "http://127.0.0.1:9000/", 1);
  assert_int_equal(kyb_s3_config_load(&c, &err), 0);
  assert_string_equal(c.endpoint, "http://127.0.0.1:9000");
  assert_string_equal(c.region, "us-east-1");
  assert_int_equal(c.part_size, KYB_S3_PART_DEFAULT);
  assert_non_null(strstr(c.creds_source, "environment"));
  kyb_s3_config_clear(&c);

  unsetenv("KYBERNATE_S3_ENDPOINT");
  setenv("KYBERNATE_S3_REGION", "eu-central-1", 1);
  assert_int_equal(kyb_s3_config_load(&c, &err), 0);
  assert_string_equal(c.endpoint, "https://s3.eu-central-1.amazonaws.com");
  kyb_s3_config_clear(&c);

  const char *bad[][2] = {{"KYBERNATE_S3_ENDPOINT", "ftp://x"},
                          {"KYBERNATE_S3_ENDPOINT", "http://h/path"},
                          {"KYBERNATE_S3_ENDPOINT", "http://user@h"},
                          {"KYBERNATE_S3_REGION", "eu central"},
                          {"KYBERNATE_S3_PART_SIZE", "1000"},
                          {"KYBERNATE_S3_PART_SIZE", "16M"},
                          {"KYBERNATE_S3_COPY_MAX", "1"}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    clear_env();
    setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
    setenv(bad[i][0], bad[i][1], 1);
    if (kyb_s3_config_load(&c, &err) == 0)
      fail_msg("%s=%s accepted", bad[i][0], bad[i][1]);
    assert_int_equal(kyb_error_code(err), EINVAL);
    kyb_error_clear(&err);
  }

  /* a credentials file, as a Kubernetes secret mounts it */
  clear_env();
  char path[] = "/tmp/kyb-test-s3-creds-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  const char *text = "[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = filesecret\n";
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  setenv("KYBERNATE_S3_CREDENTIALS", path, 1);
  setenv("KYBERNATE_S3_PART_SIZE", "5242880", 1);
  assert_int_equal(kyb_s3_config_load(&c, &err), 0);
  assert_string_equal(c.access_key_id, "FILEKEY");
  assert_int_equal(c.part_size, 5242880);
  assert_non_null(strstr(c.creds_source, path));
  kyb_s3_config_clear(&c);
  unlink(path);
  assert_int_equal(kyb_s3_config_load(&c, &err), -1); /* named but gone */
  assert_int_equal(kyb_error_code(err), ENOENT);
  clear_env();
}

static void test_xml(void **state) {
  (void)state;
  const char *x = "<?xml version=\"1.0\"?><ListBucketResult xmlns=\"http://s3\">"
                  "<IsTruncated>false</IsTruncated><Contents><Key>a&amp;b&lt;c&#x41;&#66;</Key>"
                  "<Size>12</Size></Contents><Contents><Key>k2</Key><Size>3</Size></Contents>"
                  "<KeyCount/><Prefix></Prefix><Keyx>no</Keyx></ListBucketResult>";
  const char *end = x + strlen(x), *cs, *ce;
  assert_true(kyb_s3_xml_find(x, end, "Contents", &cs, &ce));
  const char *ks, *ke;
  assert_true(kyb_s3_xml_find(cs, ce, "Key", &ks, &ke));
  cleanup_free char *k = kyb_s3_xml_text(ks, ke);
  assert_string_equal(k, "a&b<cAB");
  assert_true(kyb_s3_xml_find(ce, end, "Contents", &cs, &ce)); /* the second */
  assert_true(kyb_s3_xml_find(cs, ce, "Key", &ks, &ke));
  assert_int_equal(ke - ks, 2);
  assert_true(kyb_s3_xml_find(x, end, "KeyCount", &cs, &ce)); /* <KeyCount/> */
  assert_true(cs == ce);
  assert_true(kyb_s3_xml_find(x, end, "Prefix", &cs, &ce));
  assert_true(cs == ce);
  assert_false(kyb_s3_xml_find(x, end, "Missing", &cs, &ce));
  assert_true(kyb_s3_xml_find(x, end, "ListBucketResult", &cs, &ce)); /* with attributes */
  /* truncated documents and bad entities */
  const char *t = "<Error><Code>Slow";
  assert_false(kyb_s3_xml_find(t, t + strlen(t), "Code", &cs, &ce));
  const char *bad[] = {"&bogus;", "&#0;", "&#x110000;", "&amp", "&#;", "&#x;"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_null(kyb_s3_xml_text(bad[i], bad[i] + strlen(bad[i])));
  const char *smile = "&#x1F600;";
  cleanup_free char *u = kyb_s3_xml_text(smile, smile + strlen(smile));
  assert_string_equal(u, "\xf0\x9f\x98\x80");

  assert_int_equal(kyb_s3_parse_time("2026-12-01T13:52:30.000Z"), 1796133150);
  assert_int_equal(kyb_s3_parse_time("2026-12-01T13:52:30Z"), 1796133150);
  assert_int_equal(kyb_s3_parse_time("2026-12-01 13:52:30"), -1);
  assert_int_equal(kyb_s3_parse_time("2026-12-01T13:52:30+02:00"), -1);
}

/* A small real image in a temp dir: its validated manifest. */
static json_t *real_manifest(char *dir) {
  cleanup_error kyb_error *err = NULL;
  assert_non_null(mkdtemp(dir));
  cleanup_free char *criu = kyb_path_join(dir, "criu");
  assert_int_equal(kyb_mkdir_p(criu, 0700, &err), 0);
  cleanup_free char *f1 = kyb_path_join(criu, "core-1.img");
  cleanup_free char *f2 = kyb_path_join(criu, "pages-1.img");
  assert_int_equal(kyb_write_file_atomic(f1, "core", 4, 0600, &err), 0);
  assert_int_equal(kyb_write_file_atomic(f2, "pagespages", 10, 0600, &err), 0);
  kyb_image_builder *b = kyb_image_builder_new(dir, "web-1", &err);
  assert_non_null(b);
  kyb_image_source src = {.container_id = "c0ffee", .pod_name = "web", .pod_namespace = "shop"};
  assert_int_equal(kyb_image_builder_set_source(b, &src, &err), 0);
  cleanup_json json_t *spec = json_object();
  assert_int_equal(kyb_image_builder_set_runtime(b, spec, "io.containerd.runc.v2", "runc", &err),
                   0);
  assert_int_equal(kyb_image_builder_finish(b, NULL, &err), 0);
  kyb_image_builder_free(b);
  json_t *m = NULL;
  assert_int_equal(kyb_image_verify(dir, &m, &err), 0);
  return m;
}

static json_t *built_index(const json_t *m) {
  cleanup_error kyb_error *err = NULL;
  json_t *ix = kyb_s3_index_new("web-1", m);
  assert_non_null(ix);
  size_t i;
  const json_t *f;
  json_array_foreach(json_object_get(m, "files"), i, f) {
    kyb_pack_result r = {.file_size = (uint64_t)json_integer_value(json_object_get(f, "size")),
                         .blob_size = 30};
    snprintf(r.file_digest, sizeof(r.file_digest), "sha256:%s",
             json_string_value(json_object_get(f, "sha256")));
    snprintf(r.blob_digest, sizeof(r.blob_digest), "%s", HEX_B);
    assert_int_equal(kyb_s3_index_add(ix, json_string_value(json_object_get(f, "path")), &r, &err),
                     0);
  }
  kyb_pack_result mr = {.file_size = 900, .blob_size = 400};
  snprintf(mr.file_digest, sizeof(mr.file_digest), "%s", HEX_A);
  snprintf(mr.blob_digest, sizeof(mr.blob_digest), "%s", HEX_B);
  assert_int_equal(kyb_s3_index_add(ix, NULL, &mr, &err), 0);
  return ix;
}

/* Parses text after applying `edit` to the index (a json_pack'd change). */
static int parse_edited(const json_t *ix, void (*edit)(json_t *), kyb_error **err) {
  cleanup_json json_t *c = json_deep_copy(ix);
  edit(c);
  cleanup_free char *text = json_dumps(c, 0);
  cleanup_json json_t *out = NULL;
  return kyb_s3_index_parse(text, strlen(text), "web-1", &out, err);
}

static void e_version(json_t *c) {
  json_object_set_new(c, "kybernateIndex", json_integer(2));
}
static void e_name(json_t *c) {
  json_object_set_new(c, "name", json_string("other"));
}
static void e_comp(json_t *c) {
  json_object_set_new(c, "compression", json_string("gzip"));
}
static void e_path(json_t *c) {
  json_object_set_new(json_array_get(json_object_get(c, "files"), 0), "path",
                      json_string("../etc/passwd"));
}
static void e_order(json_t *c) {
  json_t *f = json_object_get(c, "files");
  json_array_append(f, json_array_get(f, 0)); /* repeated and out of order */
}
static void e_digest(json_t *c) {
  json_object_set_new(json_array_get(json_object_get(c, "files"), 1), "blob",
                      json_string("sha256:XYZ"));
}
static void e_size(json_t *c) {
  json_object_set_new(json_array_get(json_object_get(c, "files"), 1), "size", json_integer(-1));
}
static void e_manifest(json_t *c) {
  json_object_del(c, "manifest");
}
static void e_mfpath(json_t *c) {
  json_object_set_new(json_array_get(json_object_get(c, "files"), 0), "path",
                      json_string("manifest.json"));
}
static void e_created(json_t *c) {
  json_object_set_new(c, "created", json_string("yesterday"));
}

static void test_index(void **state) {
  (void)state;
  char dir[] = "/tmp/kyb-test-s3-index-XXXXXX";
  cleanup_json json_t *m = real_manifest(dir);
  cleanup_json json_t *ix = built_index(m);
  cleanup_error kyb_error *err = NULL;

  /* round trip, and the summary a listing shows comes from the index alone */
  cleanup_free char *text = json_dumps(ix, JSON_SORT_KEYS | JSON_INDENT(1));
  cleanup_json json_t *back = NULL;
  if (kyb_s3_index_parse(text, strlen(text), "web-1", &back, &err) < 0)
    fail_msg("%s", kyb_error_message(err));
  assert_int_equal(kyb_s3_index_match_manifest(back, m, &err), 0);
  kyb_image_summary s = {0};
  assert_int_equal(kyb_image_summary_from_manifest("web-1", back, 900, &s), 0);
  assert_int_equal(s.size, 900 + 4 + 10);
  assert_string_equal(s.container_id, "c0ffee");
  assert_string_equal(s.pod_namespace, "shop");
  assert_string_equal(s.created, json_string_value(json_object_get(m, "created")));
  kyb_image_summary_release(&s);

  struct {
    void (*edit)(json_t *);
    int code;
  } bad[] = {{e_version, ENOTSUP}, {e_name, EINVAL},   {e_comp, ENOTSUP}, {e_path, EINVAL},
             {e_order, EINVAL},    {e_digest, EINVAL}, {e_size, EINVAL},  {e_manifest, EINVAL},
             {e_mfpath, EINVAL},   {e_created, EINVAL}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (parse_edited(ix, bad[i].edit, &err) == 0)
      fail_msg("edit %zu accepted", i);
    assert_int_equal(kyb_error_code(err), bad[i].code);
    assert_non_null(strstr(kyb_error_message(err), "index.json of web-1"));
    kyb_error_clear(&err);
  }
  assert_int_equal(kyb_s3_index_parse("{\"a\":1,\"a\":2}", 13, "web-1", &back, &err), -1);
  kyb_error_clear(&err);
  assert_int_equal(kyb_s3_index_parse("not json", 8, "web-1", &back, &err), -1);
  kyb_error_clear(&err);

  /* an index that does not match its manifest */
  cleanup_json json_t *lie = json_deep_copy(ix);
  json_object_set_new(json_array_get(json_object_get(lie, "files"), 1), "digest",
                      json_string(HEX_A));
  assert_int_equal(kyb_s3_index_match_manifest(lie, m, &err), -1);
  assert_int_equal(kyb_error_code(err), EBADMSG);
  assert_non_null(strstr(kyb_error_message(err), "criu/pages-1.img"));
  kyb_error_clear(&err);
  json_array_remove(json_object_get(lie, "files"), 1);
  assert_int_equal(kyb_s3_index_match_manifest(lie, m, &err), -1);
  kyb_error_clear(&err);
  assert_int_equal(kyb_remove_tree(dir, &err), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_uri_parse),
      cmocka_unit_test(test_refs),
      cmocka_unit_test(test_credentials_file),
      cmocka_unit_test(test_config_env),
      cmocka_unit_test(test_xml),
      cmocka_unit_test(test_index),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

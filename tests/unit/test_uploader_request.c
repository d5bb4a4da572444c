/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the uploader's job requests (lib/uploader/request.h): what
 * a valid upload and fetch become (normalised references, destination), and
 * every way a request is refused, with the errno the API turns into its
 * HTTP status. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "uploader/request.h"
#include "util/cleanup.h"

static const char *const locals[] = {"file:///var/lib/kybernate/images", "file:///mnt/shared"};
static const kyb_job_policy pol = {
    .default_store = "file:///var/lib/kybernate/images", .locals = locals, .nlocals = 2};

static int parse(const char *body, kyb_job_request *out, kyb_error **err) {
  return kyb_job_request_parse(body, strlen(body), &pol, out, err);
}

/* The request is refused with errno `code` and a message holding `needle`. */
static void refused(const char *body, int code, const char *needle) {
  kyb_job_request rq = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(parse(body, &rq, &err), -1);
  assert_non_null(err);
  if (kyb_error_code(err) != code || strstr(kyb_error_message(err), needle) == NULL)
    fail_msg("%s: got errno %d \"%s\", want %d and \"%s\"", body, kyb_error_code(err),
             kyb_error_message(err), code, needle);
  assert_null(rq.name);
  assert_null(rq.source);
}

static void test_upload(void **state) {
  (void)state;
  struct {
    const char *body, *name, *src_store, *source, *dest_store, *destination;
  } cases[] = {
      {"{\"op\":\"upload\",\"image\":\"web-1\",\"to\":\"oci://Reg.example:5000/team/ckpt\"}",
       "web-1", "file:///var/lib/kybernate/images", "file:///var/lib/kybernate/images/web-1",
       "oci://reg.example:5000/team/ckpt", "oci://reg.example:5000/team/ckpt:web-1"},
      {"{\"to\":\"s3://bkt/a/b/\",\"op\":\"upload\",\"image\":\"file:///mnt/shared/x.1\"}", "x.1",
       "file:///mnt/shared", "file:///mnt/shared/x.1", "s3://bkt/a/b", "s3://bkt/a/b/x.1"},
      {"{\"op\":\"upload\",\"image\":\"file:///mnt/shared/x\",\"to\":\"file:///var/lib/"
       "kybernate/images/\"}",
       "x", "file:///mnt/shared", "file:///mnt/shared/x", "file:///var/lib/kybernate/images",
       "file:///var/lib/kybernate/images/x"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    kyb_job_request rq = {0};
    cleanup_error kyb_error *err = NULL;
    if (parse(cases[i].body, &rq, &err) < 0)
      fail_msg("%s: %s", cases[i].body, kyb_error_message(err));
    assert_int_equal(rq.op, KYB_JOB_UPLOAD);
    assert_string_equal(rq.name, cases[i].name);
    assert_string_equal(rq.source_store, cases[i].src_store);
    assert_string_equal(rq.source, cases[i].source);
    assert_string_equal(rq.dest_store, cases[i].dest_store);
    assert_string_equal(rq.destination, cases[i].destination);
    kyb_job_request_clear(&rq);
  }
}

static void test_fetch(void **state) {
  (void)state;
  struct {
    const char *body, *name, *store, *ref;
  } cases[] = {
      {"{\"op\":\"fetch\",\"ref\":\"oci://127.0.0.1:5000/kyb/test:img1\"}", "img1",
       "oci://127.0.0.1:5000/kyb/test", "oci://127.0.0.1:5000/kyb/test:img1"},
      {"{\"op\":\"fetch\",\"ref\":\"s3://bkt//p/img-2\"}", "img-2", "s3://bkt/p",
       "s3://bkt/p/img-2"},
      {"{\"op\":\"fetch\",\"ref\":\"file:///mnt/shared/a\"}", "a", "file:///mnt/shared",
       "file:///mnt/shared/a"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    kyb_job_request rq = {0};
    cleanup_error kyb_error *err = NULL;
    if (parse(cases[i].body, &rq, &err) < 0)
      fail_msg("%s: %s", cases[i].body, kyb_error_message(err));
    assert_int_equal(rq.op, KYB_JOB_FETCH);
    assert_string_equal(rq.name, cases[i].name);
    assert_string_equal(rq.source_store, cases[i].store);
    assert_string_equal(rq.dest_store, cases[i].store);
    assert_string_equal(rq.source, cases[i].ref);
    assert_string_equal(rq.destination, cases[i].ref);
    kyb_job_request_clear(&rq);
  }
}

static void test_malformed(void **state) {
  (void)state;
  refused("", EINVAL, "empty request body");
  refused("{\"op\":", EINVAL, "invalid JSON at line 1");
  refused("[1,2]", EINVAL, "must be a JSON object");
  refused("{\"op\":\"fetch\",\"ref\":\"oci://h/r:t\",\"ref\":\"x\"}", EINVAL, "invalid JSON");
  refused("{}", EINVAL, "field \"op\" is missing");
  refused("{\"op\":7}", EINVAL, "\"op\" must be a non-empty string");
  refused("{\"op\":\"\"}", EINVAL, "\"op\" must be a non-empty string");
  refused("{\"op\":\"copy\"}", EINVAL, "unknown op \"copy\" (upload or fetch)");
  refused("{\"op\":\"upload\",\"image\":\"a\",\"to\":\"oci://h/r\",\"force\":true}", EINVAL,
          "unknown field \"force\" for op \"upload\"");
  refused("{\"op\":\"fetch\",\"ref\":\"oci://h/r:t\",\"to\":\"oci://h/r\"}", EINVAL,
          "unknown field \"to\" for op \"fetch\"");
  refused("{\"op\":\"upload\",\"to\":\"oci://h/r\"}", EINVAL, "field \"image\" is missing");
  refused("{\"op\":\"upload\",\"image\":\"a\"}", EINVAL, "field \"to\" is missing");
  refused("{\"op\":\"upload\",\"image\":\"a\",\"to\":null}", EINVAL,
          "\"to\" must be a non-empty string");
  refused("{\"op\":\"fetch\",\"ref\":\"oci://h/r:t\\u0001\"}", EINVAL, "control character");
  refused("{\"op\":\"fetch\",\"ref\":\"oci://h/r:t\\u0000\"}", EINVAL, "invalid JSON");
  /* longer than a URI may be */
  cleanup_free char *big = malloc(6000);
  assert_non_null(big);
  int n = snprintf(big, 6000, "{\"op\":\"fetch\",\"ref\":\"oci://h/r:");
  memset(big + n, 'a', 5000);
  strcpy(big + n + 5000, "\"}");
  refused(big, EINVAL, "longer than 4096 bytes");
  /* a body over the limit is refused before it is parsed */
  kyb_job_request rq = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_job_request_parse("{}", KYB_JOB_REQUEST_MAX + 1, &pol, &rq, &err), -1);
  assert_int_equal(kyb_error_code(err), EMSGSIZE);
}

static void test_references(void **state) {
  (void)state;
  /* image names and references go through kyb_image_ref_parse */
  refused("{\"op\":\"upload\",\"image\":\"Bad_Name\",\"to\":\"oci://h/r\"}", EINVAL, "\"image\"");
  refused("{\"op\":\"upload\",\"image\":\"../etc\",\"to\":\"oci://h/r\"}", EINVAL, "\"image\"");
  refused("{\"op\":\"upload\",\"image\":\"a\",\"to\":\"/var/lib/x\"}", EINVAL,
          "\"to\": \"/var/lib/x\" is not a store URI");
  refused("{\"op\":\"upload\",\"image\":\"a\",\"to\":\"oci://h/r:tag\"}", EINVAL, "\"to\"");
  refused("{\"op\":\"upload\",\"image\":\"a\",\"to\":\"oci://h/Upper\"}", EINVAL, "\"to\"");
  refused("{\"op\":\"upload\",\"image\":\"a\",\"to\":\"ftp://h/r\"}", ENOTSUP, "\"to\"");
  refused("{\"op\":\"upload\",\"image\":\"a\",\"to\":\"s3://Bucket/x\"}", EINVAL, "\"to\"");
  refused("{\"op\":\"fetch\",\"ref\":\"img1\"}", EINVAL, "is not a full reference");
  refused("{\"op\":\"fetch\",\"ref\":\"oci://h/r\"}", EINVAL, "\"ref\"");
  refused("{\"op\":\"fetch\",\"ref\":\"oci://h/r@sha256:"
          "0000000000000000000000000000000000000000000000000000000000000000\"}",
          ENOTSUP, "\"ref\"");
  refused("{\"op\":\"fetch\",\"ref\":\"file://remote/x/y\"}", EINVAL, "local absolute paths");
  /* an upload reads a local image; it is not a copy between remote stores */
  refused("{\"op\":\"upload\",\"image\":\"oci://h/r:a\",\"to\":\"s3://bkt\"}", ENOTSUP,
          "is not a local image");
  refused("{\"op\":\"upload\",\"image\":\"a\",\"to\":\"file:///var/lib/kybernate/images\"}", EINVAL,
          "is in file:///var/lib/kybernate/images already");
}

static void test_policy(void **state) {
  (void)state;
  refused("{\"op\":\"upload\",\"image\":\"file:///etc/x\",\"to\":\"oci://h/r\"}", EPERM,
          "\"image\": store file:///etc is not one of this node's stores");
  refused("{\"op\":\"upload\",\"image\":\"a\",\"to\":\"file:///root\"}", EPERM,
          "\"to\": store file:///root is not one of this node's stores");
  refused("{\"op\":\"fetch\",\"ref\":\"file:///home/u/x\"}", EPERM,
          "\"ref\": store file:///home/u is not one of this node's stores");
  /* the store parser on its own, as the image listing uses it */
  cleanup_free char *s = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_job_store_parse(&pol, "store", "file:///mnt/shared//", &s, &err), 0);
  assert_string_equal(s, "file:///mnt/shared");
  free(s);
  s = NULL;
  assert_int_equal(kyb_job_store_parse(&pol, "store", "oci://H:1/a/b", &s, &err), 0);
  assert_string_equal(s, "oci://h:1/a/b");
  assert_int_equal(kyb_job_store_parse(&pol, "store", "file:///tmp", &s, &err), -1);
  assert_int_equal(kyb_error_code(err), EPERM);
}

static void test_same(void **state) {
  (void)state;
  kyb_job_request a = {0}, b = {0}, c = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(parse("{\"op\":\"upload\",\"image\":\"x\",\"to\":\"oci://h/r\"}", &a, &err), 0);
  assert_int_equal(
      parse("{\"op\":\"upload\",\"image\":\"file:///var/lib/kybernate/images/x\",\"to\":"
            "\"oci://H/r/\"}",
            &b, &err),
      0);
  assert_int_equal(
      parse("{\"op\":\"upload\",\"image\":\"file:///mnt/shared/x\",\"to\":\"oci://h/r\"}", &c,
            &err),
      0);
  assert_true(kyb_job_request_same(&a, &b));  /* the same after normalising */
  assert_false(kyb_job_request_same(&a, &c)); /* same destination, other source */
  assert_string_equal(a.destination, c.destination);
  assert_string_equal(kyb_job_op_name(KYB_JOB_FETCH), "fetch");
  assert_null(kyb_job_op_name((kyb_job_op)0));
  kyb_job_request_clear(&a);
  kyb_job_request_clear(&b);
  kyb_job_request_clear(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_upload),    cmocka_unit_test(test_fetch),
      cmocka_unit_test(test_malformed), cmocka_unit_test(test_references),
      cmocka_unit_test(test_policy),    cmocka_unit_test(test_same),
  };
  return cmocka_run_group_tests_name("uploader_request", tests, NULL, NULL);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the SigV4 signer (lib/store/sigv4.c) against published
 * values only:
 *   - AWS's SigV4 test suite (sigv4_vectors.h, copied from aws-c-auth):
 *     canonical request and signature of every case;
 *   - the worked examples of AWS's S3 documentation, "Signature Calculations
 *     for the Authorization Header: Transferring Payload in a Single Chunk
 *     (AWS Signature Version 4)": GET Object, PUT Object, GET Bucket
 *     Lifecycle, GET Bucket (List Objects);
 * plus the signer's own rules: the lines it returns, refused inputs, URI
 * encoding. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store/sigv4.h"
#include "util/cleanup.h"

#include "sigv4_vectors.h"

#define SUITE_TIME 1440938160 /* 2015-08-30T12:36:00Z */
#define S3_TIME 1369353600    /* 2013-05-24T00:00:00Z */

static const kyb_sigv4_creds suite_creds = {
    .access_key_id = "AKIDEXAMPLE",
    .secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
};

/* The S3 documentation's example credentials (note "/bP", not "+bP"). */
static const kyb_sigv4_creds s3_creds = {
    .access_key_id = "AKIAIOSFODNN7EXAMPLE",
    .secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
};

/* A request.txt parsed: request line, "Name:value" headers (an indented
 * line continues the previous value), blank line, body. */
typedef struct {
  char method[16];
  char *path;
  char *query;
  kyb_sigv4_header headers[16];
  size_t nheaders;
  char *body;
  char *buf; /* owns everything */
} parsed_req;

static void parse_request(const char *text, parsed_req *p) {
  memset(p, 0, sizeof(*p));
  p->buf = strdup(text);
  assert_non_null(p->buf);
  char *line = p->buf;
  char *nl = strchr(line, '\n');
  assert_non_null(nl);
  *nl = '\0';
  char *sp = strchr(line, ' ');
  char *http = strstr(line, " HTTP/1.1");
  assert_non_null(sp);
  assert_non_null(http);
  assert_true((size_t)(sp - line) < sizeof(p->method));
  memcpy(p->method, line, (size_t)(sp - line));
  *http = '\0';
  p->path = sp + 1; /* may hold spaces: "GET /example space/ HTTP/1.1" */
  char *q = strchr(p->path, '?');
  if (q != NULL) {
    *q = '\0';
    p->query = q + 1;
  }
  char *s = nl + 1;
  char *last_value = NULL;
  while (*s != '\0') {
    nl = strchr(s, '\n');
    if (nl != NULL)
      *nl = '\0';
    if (*s == '\0') { /* blank line: the body follows */
      p->body = nl ? nl + 1 : s;
      return;
    }
    if (*s == ' ' || *s == '\t') { /* folded continuation */
      assert_non_null(last_value);
      /* the value and its continuation are adjacent in buf: rejoin them */
      s[-1] = '\n';
    } else {
      char *colon = strchr(s, ':');
      assert_non_null(colon);
      *colon = '\0';
      assert_true(p->nheaders < 16);
      p->headers[p->nheaders].name = s;
      p->headers[p->nheaders].value = last_value = colon + 1;
      p->nheaders++;
    }
    if (nl == NULL)
      break;
    s = nl + 1;
  }
  p->body = s + strlen(s);
}

static void test_aws_suite(void **state) {
  (void)state;
  size_t n = sizeof(sigv4_vectors) / sizeof(sigv4_vectors[0]);
  assert_true(n >= 35);
  for (size_t i = 0; i < n; i++) {
    const sigv4_vector *v = &sigv4_vectors[i];
    parsed_req p;
    parse_request(v->request, &p);
    char body_hash[65];
    kyb_sigv4_sha256_hex(p.body, strlen(p.body), body_hash);
    kyb_sigv4_creds creds = suite_creds;
    creds.session_token = v->token;
    kyb_sigv4_request rq = {
        .method = p.method,
        .path = p.path,
        .query = p.query,
        .headers = p.headers,
        .nheaders = p.nheaders,
        .payload_hash = body_hash,
        .region = "us-east-1",
        .service = "service",
        .keep_path = !v->normalize,
        .sign_content_sha256 = v->sign_body,
        .when = SUITE_TIME,
    };
    kyb_sigv4_result rs = {0};
    cleanup_error kyb_error *err = NULL;
    int r = kyb_sigv4_sign(&creds, &rq, &rs, &err);
    if (r < 0)
      fail_msg("%s: %s", v->name, kyb_error_message(err));
    if (strcmp(rs.canonical_request, v->canonical) != 0)
      fail_msg("%s: canonical request\n%s\nwant\n%s", v->name, rs.canonical_request, v->canonical);
    if (strcmp(rs.signature, v->signature) != 0)
      fail_msg("%s: signature %s, want %s", v->name, rs.signature, v->signature);
    assert_string_equal(rs.amz_date, "20150830T123600Z");
    kyb_sigv4_result_clear(&rs);
    free(p.buf);
  }
}

/* The suite's get-vanilla, whole: the Authorization value and the lines. */
static void test_result_lines(void **state) {
  (void)state;
  kyb_sigv4_header h[] = {{"Host", "example.amazonaws.com"}};
  kyb_sigv4_request rq = {.method = "GET",
                          .path = "/",
                          .headers = h,
                          .nheaders = 1,
                          .region = "us-east-1",
                          .service = "service",
                          .when = SUITE_TIME};
  kyb_sigv4_result rs = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_sigv4_sign(&suite_creds, &rq, &rs, &err), 0);
  const char *want = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
                     "aws4_request, SignedHeaders=host;x-amz-date, "
                     "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
  assert_string_equal(rs.authorization, want);
  assert_string_equal(
      rs.string_to_sign,
      "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
      "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
  assert_string_equal(rs.headers[0], "X-Amz-Date: 20150830T123600Z");
  assert_non_null(strstr(rs.headers[1], "Authorization: AWS4-HMAC-SHA256 Credential="));
  assert_null(rs.headers[2]);
  kyb_sigv4_result_clear(&rs);

  /* session credentials: the token is sent and signed (suite case
   * get-vanilla-with-session-token) */
  kyb_sigv4_creds c = suite_creds;
  c.session_token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
  assert_int_equal(kyb_sigv4_sign(&c, &rq, &rs, &err), 0);
  assert_string_equal(rs.signature,
                      "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8");
  assert_string_equal(rs.headers[1],
                      "X-Amz-Security-Token: "
                      "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267");
  assert_non_null(strstr(rs.headers[2], "Authorization: "));
  kyb_sigv4_result_clear(&rs);
}

static const char *s3_sign(kyb_sigv4_result *rs, const char *method, const char *path,
                           const char *query, const kyb_sigv4_header *extra, size_t nextra,
                           const char *payload_hash) {
  kyb_sigv4_header h[8] = {{"Host", "examplebucket.s3.amazonaws.com"}};
  for (size_t i = 0; i < nextra; i++)
    h[1 + i] = extra[i];
  kyb_sigv4_request rq = {.method = method,
                          .path = path,
                          .query = query,
                          .headers = h,
                          .nheaders = 1 + nextra,
                          .payload_hash = payload_hash,
                          .region = "us-east-1",
                          .service = "s3",
                          .s3 = true,
                          .when = S3_TIME};
  cleanup_error kyb_error *err = NULL;
  if (kyb_sigv4_sign(&s3_creds, &rq, rs, &err) < 0)
    fail_msg("%s", kyb_error_message(err));
  return rs->signature;
}

static void test_s3_documentation_examples(void **state) {
  (void)state;
  kyb_sigv4_result rs = {0};

  /* Example: GET Object (the first 10 bytes of test.txt) */
  kyb_sigv4_header range[] = {{"Range", "bytes=0-9"}};
  assert_string_equal(s3_sign(&rs, "GET", "/test.txt", NULL, range, 1, NULL),
                      "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  assert_string_equal(rs.canonical_request,
                      "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
                      "x-amz-content-sha256:" KYB_SIGV4_EMPTY_SHA256 "\n"
                      "x-amz-date:20130524T000000Z\n\n"
                      "host;range;x-amz-content-sha256;x-amz-date\n" KYB_SIGV4_EMPTY_SHA256);
  assert_string_equal(rs.headers[1], "x-amz-content-sha256: " KYB_SIGV4_EMPTY_SHA256);
  kyb_sigv4_result_clear(&rs);

  /* Example: PUT Object: key "test$file.text", body "Welcome to Amazon S3." */
  char hash[65];
  kyb_sigv4_sha256_hex("Welcome to Amazon S3.", 21, hash);
  assert_string_equal(hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  cleanup_free char *path = kyb_sigv4_uri_encode("/test$file.text", 15, true);
  assert_string_equal(path, "/test%24file.text");
  kyb_sigv4_header put[] = {{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                            {"x-amz-storage-class", "REDUCED_REDUNDANCY"}};
  assert_string_equal(s3_sign(&rs, "PUT", path, NULL, put, 2, hash),
                      "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
  kyb_sigv4_result_clear(&rs);
  /* the same key sent unencoded signs the same: S3 encodes the path once */
  assert_string_equal(s3_sign(&rs, "PUT", "/test$file.text", NULL, put, 2, hash),
                      "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
  kyb_sigv4_result_clear(&rs);

  /* Example: GET Bucket Lifecycle: a parameter without a value */
  assert_string_equal(s3_sign(&rs, "GET", "/", "lifecycle", NULL, 0, NULL),
                      "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
  kyb_sigv4_result_clear(&rs);

  /* Example: Get Bucket (List Objects): parameters sorted */
  assert_string_equal(s3_sign(&rs, "GET", "/", "prefix=J&max-keys=2", NULL, 0, NULL),
                      "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
  kyb_sigv4_result_clear(&rs);
}

/* S3 paths: encoded once, never normalised; queries decoded and re-encoded. */
static void test_s3_canonical_forms(void **state) {
  (void)state;
  kyb_sigv4_result rs = {0};
  s3_sign(&rs, "GET", "/bkt/a%20b//./c%2Bd", "prefix=kyb%2Fimg%2F&delimiter=/&list-type=2", NULL, 0,
          KYB_SIGV4_UNSIGNED_PAYLOAD);
  assert_non_null(
      strstr(rs.canonical_request,
             "GET\n/bkt/a%20b//./c%2Bd\ndelimiter=%2F&list-type=2&prefix=kyb%2Fimg%2F\n"));
  assert_non_null(strstr(rs.canonical_request, "\nUNSIGNED-PAYLOAD"));
  assert_string_equal(rs.headers[1], "x-amz-content-sha256: UNSIGNED-PAYLOAD");
  kyb_sigv4_result_clear(&rs);
  /* a raw space and '+' in the key encode like their escapes */
  s3_sign(&rs, "GET", "/bkt/a b/c+d", "uploadId=a+b", NULL, 0, NULL);
  assert_non_null(strstr(rs.canonical_request, "GET\n/bkt/a%20b/c%2Bd\nuploadId=a%2Bb\n"));
  kyb_sigv4_result_clear(&rs);
}

static void test_refused(void **state) {
  (void)state;
  kyb_sigv4_result rs = {0};
  kyb_sigv4_header host = {"Host", "h"};
  kyb_sigv4_header bad[][2] = {
      {{"Host", "h"}, {"X-Amz-Date", "20150830T123600Z"}}, /* the signer's own */
      {{"Host", "h"}, {"Authorization", "x"}},
      {{"Host", "h"}, {"x-amz-content-sha256", "x"}},
      {{"Host", "h"}, {"X-Evil", "a\r\nInjected: 1"}}, /* header injection */
      {{"Host", "h"}, {"Bad Name", "x"}},
      {{"Range", "bytes=0-1"}, {"X-A", "b"}}, /* no host */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    kyb_sigv4_request rq = {.method = "GET",
                            .path = "/",
                            .headers = bad[i],
                            .nheaders = 2,
                            .region = "us-east-1",
                            .service = "s3",
                            .s3 = true,
                            .when = S3_TIME};
    cleanup_error kyb_error *err = NULL;
    assert_int_equal(kyb_sigv4_sign(&s3_creds, &rq, &rs, &err), -1);
    assert_int_equal(kyb_error_code(err), EINVAL);
    assert_null(rs.authorization);
  }
  struct {
    kyb_sigv4_creds c;
    const char *region, *payload, *path;
  } cases[] = {
      {{"AKID/x", "s", NULL}, "us-east-1", NULL, "/"},
      {{"AKID", "", NULL}, "us-east-1", NULL, "/"},
      {{NULL, "s", NULL}, "us-east-1", NULL, "/"},
      {{"AKID", "s", "tok\nen"}, "us-east-1", NULL, "/"},
      {{"AKID", "s", NULL}, "us east", NULL, "/"},
      {{"AKID", "s", NULL}, "us-east-1", "not-a-hash", "/"},
      {{"AKID", "s", NULL}, "us-east-1", NULL, "/a\nb"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    kyb_sigv4_request rq = {.method = "GET",
                            .path = cases[i].path,
                            .headers = &host,
                            .nheaders = 1,
                            .payload_hash = cases[i].payload,
                            .region = cases[i].region,
                            .service = "s3",
                            .s3 = true,
                            .when = S3_TIME};
    cleanup_error kyb_error *err = NULL;
    assert_int_equal(kyb_sigv4_sign(&cases[i].c, &rq, &rs, &err), -1);
    assert_int_equal(kyb_error_code(err), EINVAL);
  }
}

static void test_uri_encode(void **state) {
  (void)state;
  const char all[] = "AZaz09-_.~ /!$&'()*+,;=:@%\xe1\x88\xb4";
  cleanup_free char *a = kyb_sigv4_uri_encode(all, sizeof(all) - 1, true);
  assert_string_equal(a, "AZaz09-_.~%20/%21%24%26%27%28%29%2A%2B%2C%3B%3D%3A%40%25%E1%88%B4");
  cleanup_free char *b = kyb_sigv4_uri_encode("a/b", 3, false);
  assert_string_equal(b, "a%2Fb");
  cleanup_free char *c = kyb_sigv4_uri_encode("", 0, false);
  assert_string_equal(c, "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_aws_suite),
      cmocka_unit_test(test_result_lines),
      cmocka_unit_test(test_s3_documentation_examples),
      cmocka_unit_test(test_s3_canonical_forms),
      cmocka_unit_test(test_refused),
      cmocka_unit_test(test_uri_encode),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

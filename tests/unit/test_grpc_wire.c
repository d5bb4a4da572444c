/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the gRPC wire helpers (lib/containerd/grpc_wire.c): message
 * framing and reassembly across chunks, the rejection of compressed,
 * over-long, cut and trailing input, header/trailer parsing (including
 * percent-decoding and Trailers-Only answers), and the status mappings. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "containerd/codec.h"
#include "containerd/grpc.h"
#include "util/cleanup.h"

/* ---- framing ---- */

static void test_frame_header_is_big_endian(void **state) {
  (void)state;
  uint8_t h[5];
  kyb_grpc_frame_header(h, 0x01020304u);
  const uint8_t want[] = {0x00, 0x01, 0x02, 0x03, 0x04};
  assert_memory_equal(h, want, 5);
}

/* Reference §1.8: Tasks/Get {container_id:"ctr1"} as a whole frame. */
static void test_tasks_get_frame_matches_reference(void **state) {
  (void)state;
  Containerd__Services__Tasks__V1__GetRequest req =
      CONTAINERD__SERVICES__TASKS__V1__GET_REQUEST__INIT;
  req.container_id = "ctr1";
  cleanup_free uint8_t *body = NULL;
  cleanup_free uint8_t *frame = NULL;
  size_t blen = 0;
  size_t flen = 0;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_ctd_pack(&req.base, &body, &blen, &err), 0);
  assert_int_equal(kyb_grpc_frame_encode(body, blen, KYB_GRPC_MAX_MESSAGE, &frame, &flen, &err), 0);
  const uint8_t want[] = {0x00, 0x00, 0x00, 0x00, 0x06, 0x0a, 0x04, 'c', 't', 'r', '1'};
  assert_int_equal(flen, sizeof(want));
  assert_memory_equal(frame, want, sizeof(want));
}

static void test_empty_message_frame(void **state) {
  (void)state;
  cleanup_free uint8_t *frame = NULL;
  size_t flen = 0;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_grpc_frame_encode(NULL, 0, 16, &frame, &flen, &err), 0);
  const uint8_t want[] = {0, 0, 0, 0, 0};
  assert_int_equal(flen, 5);
  assert_memory_equal(frame, want, 5);
}

static void test_frame_encode_rejects_oversize(void **state) {
  (void)state;
  uint8_t msg[17] = {0};
  uint8_t *frame = NULL;
  size_t flen = 0;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_grpc_frame_encode(msg, sizeof(msg), 16, &frame, &flen, &err), -1);
  assert_int_equal(kyb_error_code(err), EMSGSIZE);
  assert_null(frame);
}

/* Collects every message the decoder delivers. */
typedef struct {
  size_t n;
  size_t lens[8];
  uint8_t data[8][64];
} collected;

static int collect(void *ud, const uint8_t *msg, size_t len, kyb_error **err) {
  collected *c = ud;
  assert_non_null(msg);
  if (c->n >= 8 || len > 64)
    return kyb_error_set(err, E2BIG, "test collector full");
  memcpy(c->data[c->n], msg, len);
  c->lens[c->n++] = len;
  return 0;
}

static const uint8_t two_messages[] = {
    0x00, 0x00, 0x00, 0x00, 0x03, 'a', 'b', 'c', /* "abc" */
    0x00, 0x00, 0x00, 0x00, 0x00,                /* empty */
    0x00, 0x00, 0x00, 0x00, 0x02, 'x', 'y',      /* "xy" */
};

static void check_two_messages(const collected *c) {
  assert_int_equal(c->n, 3);
  assert_int_equal(c->lens[0], 3);
  assert_memory_equal(c->data[0], "abc", 3);
  assert_int_equal(c->lens[1], 0);
  assert_int_equal(c->lens[2], 2);
  assert_memory_equal(c->data[2], "xy", 2);
}

static void test_decoder_whole_buffer(void **state) {
  (void)state;
  kyb_grpc_decoder d;
  collected c = {0};
  cleanup_error kyb_error *err = NULL;
  kyb_grpc_decoder_init(&d, 64);
  assert_int_equal(kyb_grpc_decoder_feed(&d, two_messages, sizeof(two_messages), collect, &c, &err),
                   0);
  assert_int_equal(kyb_grpc_decoder_finish(&d, &err), 0);
  kyb_grpc_decoder_clear(&d);
  check_two_messages(&c);
}

/* HTTP/2 DATA frames cut messages anywhere: feed every possible split, and
 * byte by byte. */
static void test_decoder_reassembles_any_split(void **state) {
  (void)state;
  for (size_t cut = 0; cut <= sizeof(two_messages); cut++) {
    kyb_grpc_decoder d;
    collected c = {0};
    cleanup_error kyb_error *err = NULL;
    kyb_grpc_decoder_init(&d, 64);
    assert_int_equal(kyb_grpc_decoder_feed(&d, two_messages, cut, collect, &c, &err), 0);
    assert_int_equal(kyb_grpc_decoder_feed(&d, two_messages + cut, sizeof(two_messages) - cut,
                                           collect, &c, &err),
                     0);
    assert_int_equal(kyb_grpc_decoder_finish(&d, &err), 0);
    kyb_grpc_decoder_clear(&d);
    check_two_messages(&c);
  }
  kyb_grpc_decoder d;
  collected c = {0};
  cleanup_error kyb_error *err = NULL;
  kyb_grpc_decoder_init(&d, 64);
  for (size_t i = 0; i < sizeof(two_messages); i++)
    assert_int_equal(kyb_grpc_decoder_feed(&d, two_messages + i, 1, collect, &c, &err), 0);
  assert_int_equal(kyb_grpc_decoder_finish(&d, &err), 0);
  kyb_grpc_decoder_clear(&d);
  check_two_messages(&c);
}

static void test_decoder_rejects_compressed(void **state) {
  (void)state;
  const uint8_t in[] = {0x01, 0x00, 0x00, 0x00, 0x01, 'z'};
  kyb_grpc_decoder d;
  collected c = {0};
  cleanup_error kyb_error *err = NULL;
  kyb_grpc_decoder_init(&d, 64);
  assert_int_equal(kyb_grpc_decoder_feed(&d, in, sizeof(in), collect, &c, &err), -1);
  assert_int_equal(kyb_error_code(err), EPROTO);
  assert_non_null(strstr(kyb_error_message(err), "compressed"));
  assert_int_equal(c.n, 0);
  kyb_grpc_decoder_clear(&d);
}

/* A hostile length is refused from the prefix alone: nothing is buffered. */
static void test_decoder_rejects_overlong_before_buffering(void **state) {
  (void)state;
  const uint8_t in[] = {0x00, 0xff, 0xff, 0xff, 0xff};
  kyb_grpc_decoder d;
  collected c = {0};
  cleanup_error kyb_error *err = NULL;
  kyb_grpc_decoder_init(&d, KYB_GRPC_MAX_MESSAGE);
  assert_int_equal(kyb_grpc_decoder_feed(&d, in, sizeof(in), collect, &c, &err), -1);
  assert_int_equal(kyb_error_code(err), EMSGSIZE);
  assert_null(d.buf);
  kyb_grpc_decoder_clear(&d);

  /* One byte over the limit, one byte under is fine. */
  const uint8_t over[] = {0x00, 0x00, 0x00, 0x00, 0x41};
  kyb_error_clear(&err);
  kyb_grpc_decoder_init(&d, 0x40);
  assert_int_equal(kyb_grpc_decoder_feed(&d, over, sizeof(over), collect, &c, &err), -1);
  kyb_grpc_decoder_clear(&d);
}

static void test_decoder_reports_cut_message(void **state) {
  (void)state;
  kyb_grpc_decoder d;
  collected c = {0};
  cleanup_error kyb_error *err = NULL;
  kyb_grpc_decoder_init(&d, 64);
  assert_int_equal(kyb_grpc_decoder_feed(&d, two_messages, 3, collect, &c, &err), 0);
  assert_int_equal(kyb_grpc_decoder_finish(&d, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "prefix (3 of 5"));
  kyb_grpc_decoder_clear(&d);

  kyb_error_clear(&err);
  kyb_grpc_decoder_init(&d, 64);
  assert_int_equal(kyb_grpc_decoder_feed(&d, two_messages, 6, collect, &c, &err), 0);
  assert_int_equal(kyb_grpc_decoder_finish(&d, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "inside a message (1 of 3"));
  kyb_grpc_decoder_clear(&d);
}

static void test_decode_unary(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  uint8_t *msg = NULL;
  size_t len = 0;
  const uint8_t one[] = {0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x01};
  assert_int_equal(kyb_grpc_decode_unary(one, sizeof(one), 64, &msg, &len, &err), 0);
  assert_int_equal(len, 2);
  assert_memory_equal(msg, "\x08\x01", 2);
  free(msg);

  /* Empty reply message (google.protobuf.Empty): valid, length 0. */
  const uint8_t empty[] = {0, 0, 0, 0, 0};
  assert_int_equal(kyb_grpc_decode_unary(empty, sizeof(empty), 64, &msg, &len, &err), 0);
  assert_int_equal(len, 0);
  assert_non_null(msg);
  free(msg);

  /* Trailing garbage after the message. */
  const uint8_t trailing[] = {0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0xde, 0xad};
  assert_int_equal(kyb_grpc_decode_unary(trailing, sizeof(trailing), 64, &msg, &len, &err), -1);
  assert_int_equal(kyb_error_code(err), EPROTO);
  kyb_error_clear(&err);

  /* A second whole message is not allowed in a unary reply. */
  assert_int_equal(kyb_grpc_decode_unary(two_messages, sizeof(two_messages), 64, &msg, &len, &err),
                   -1);
  assert_non_null(strstr(kyb_error_message(err), "more than one"));
  kyb_error_clear(&err);

  /* No message at all. */
  assert_int_equal(kyb_grpc_decode_unary(empty, 0, 64, &msg, &len, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "no message"));
}

/* ---- headers, trailers, status ---- */

static void test_percent_decode(void **state) {
  (void)state;
  static const struct {
    const char *in;
    const char *out;
  } cases[] = {
      {"plain", "plain"},
      {"a%20b", "a b"},
      {"100%25", "100%"},
      {"caf%C3%A9", "caf\xc3\xa9"},
      {"%e2%9c%93", "\xe2\x9c\x93"}, /* lower-case hex too */
      {"50%", "50%"},                /* malformed sequences stay as they are */
      {"%4", "%4"},
      {"%zz1", "%zz1"},
      {"%%41", "%A"},
      {"", ""},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    cleanup_free char *s = kyb_grpc_percent_decode(cases[i].in, strlen(cases[i].in));
    assert_non_null(s);
    assert_string_equal(s, cases[i].out);
  }
}

static void test_parse_status(void **state) {
  (void)state;
  assert_int_equal(kyb_grpc_parse_status("0", 1), 0);
  assert_int_equal(kyb_grpc_parse_status("14", 2), 14);
  assert_int_equal(kyb_grpc_parse_status("", 0), -1);
  assert_int_equal(kyb_grpc_parse_status("5x", 2), -1);
  assert_int_equal(kyb_grpc_parse_status("-1", 2), -1);
  assert_int_equal(kyb_grpc_parse_status("1234567890", 10), -1);
}

static void feed(kyb_grpc_meta *m, const char *line) {
  assert_int_equal(kyb_grpc_meta_header(m, line, strlen(line)), 0);
}

/* A normal answer: headers, then the body, then trailers (libcurl hands
 * the trailers to the same header callback). */
static void test_meta_headers_then_trailers(void **state) {
  (void)state;
  kyb_grpc_meta m;
  kyb_grpc_meta_init(&m);
  feed(&m, "HTTP/2 200 \r\n");
  feed(&m, "content-type: application/grpc\r\n");
  feed(&m, "\r\n");
  assert_int_equal(m.http_status, 200);
  assert_true(m.content_type_grpc);
  assert_int_equal(m.grpc_status, KYB_GRPC_NO_STATUS);
  feed(&m, "grpc-status: 0\r\n");
  feed(&m, "grpc-message: \r\n");
  assert_int_equal(m.grpc_status, 0);
  assert_string_equal(m.grpc_message, "");
  kyb_grpc_meta_clear(&m);
}

/* Trailers-Only: the error comes in the first and only HEADERS block. */
static void test_meta_trailers_only(void **state) {
  (void)state;
  kyb_grpc_meta m;
  kyb_grpc_meta_init(&m);
  feed(&m, "HTTP/2 200 \r\n");
  feed(&m, "content-type: application/grpc+proto\r\n");
  feed(&m, "Grpc-Status: 5\r\n");
  feed(&m, "grpc-message: container \"web\" in namespace \"k8s.io\": not found\r\n");
  feed(&m, "\r\n");
  assert_int_equal(m.grpc_status, KYB_GRPC_NOT_FOUND);
  assert_true(m.content_type_grpc);
  assert_string_equal(m.grpc_message, "container \"web\" in namespace \"k8s.io\": not found");
  kyb_grpc_meta_clear(&m);
}

static void test_meta_percent_encoded_message(void **state) {
  (void)state;
  kyb_grpc_meta m;
  kyb_grpc_meta_init(&m);
  feed(&m, "grpc-status: 2\r\n");
  feed(&m, "grpc-message: criu failed: 50%25 done%0Asee dump.log\r\n");
  assert_int_equal(m.grpc_status, KYB_GRPC_UNKNOWN);
  assert_string_equal(m.grpc_message, "criu failed: 50% done\nsee dump.log");
  kyb_grpc_meta_clear(&m);
}

static void test_meta_odd_input(void **state) {
  (void)state;
  kyb_grpc_meta m;
  kyb_grpc_meta_init(&m);
  feed(&m, "HTTP/2 415\r\n");
  feed(&m, "content-type: text/plain\r\n");
  feed(&m, "no colon here\r\n");
  feed(&m, "grpc-status: banana\r\n");
  assert_int_equal(m.http_status, 415);
  assert_false(m.content_type_grpc);
  /* A malformed status must still read as a failure. */
  assert_int_equal(m.grpc_status, KYB_GRPC_UNKNOWN);
  kyb_grpc_meta_clear(&m);
}

static void test_status_errno_and_names(void **state) {
  (void)state;
  assert_int_equal(kyb_grpc_status_errno(KYB_GRPC_OK), 0);
  assert_int_equal(kyb_grpc_status_errno(KYB_GRPC_NOT_FOUND), ENOENT);
  assert_int_equal(kyb_grpc_status_errno(KYB_GRPC_ALREADY_EXISTS), EEXIST);
  assert_int_equal(kyb_grpc_status_errno(KYB_GRPC_INVALID_ARGUMENT), EINVAL);
  assert_int_equal(kyb_grpc_status_errno(KYB_GRPC_FAILED_PRECONDITION), EBUSY);
  assert_int_equal(kyb_grpc_status_errno(KYB_GRPC_UNAVAILABLE), EAGAIN);
  assert_int_equal(kyb_grpc_status_errno(KYB_GRPC_DEADLINE_EXCEEDED), ETIMEDOUT);
  assert_int_equal(kyb_grpc_status_errno(KYB_GRPC_UNIMPLEMENTED), ENOSYS);
  assert_int_equal(kyb_grpc_status_errno(KYB_GRPC_UNKNOWN), EIO);
  assert_int_equal(kyb_grpc_status_errno(KYB_GRPC_INTERNAL), EIO);
  assert_int_equal(kyb_grpc_status_errno(99), EIO);
  assert_string_equal(kyb_grpc_code_name(KYB_GRPC_NOT_FOUND), "NOT_FOUND");
  assert_string_equal(kyb_grpc_code_name(KYB_GRPC_UNAUTHENTICATED), "UNAUTHENTICATED");
  assert_string_equal(kyb_grpc_code_name(77), "UNKNOWN");
  assert_int_equal(kyb_grpc_http_to_status(404), KYB_GRPC_UNIMPLEMENTED);
  assert_int_equal(kyb_grpc_http_to_status(503), KYB_GRPC_UNAVAILABLE);
  assert_int_equal(kyb_grpc_http_to_status(415), KYB_GRPC_UNKNOWN);
}

/* The status survives context added by callers on the way up. */
static void test_status_of_error(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_grpc_status_of(NULL), KYB_GRPC_OK);
  kyb_error_set(&err, ENOENT, "containerd Tasks.Get: task x (grpc status X) (grpc status %s)",
                "NOT_FOUND");
  kyb_error_wrap(&err, "task x");
  kyb_error_wrap(&err, "checkpoint web");
  assert_int_equal(kyb_grpc_status_of(err), KYB_GRPC_NOT_FOUND);
  kyb_error_set(&err, EIO, "containerd Tasks.Get: transport failure");
  assert_int_equal(kyb_grpc_status_of(err), KYB_GRPC_NO_STATUS);
  kyb_error_set(&err, EIO, "x (grpc status BOGUS)");
  assert_int_equal(kyb_grpc_status_of(err), KYB_GRPC_NO_STATUS);
  kyb_error_set(&err, EIO, "x (grpc status UNAVAILABLE) trailing");
  assert_int_equal(kyb_grpc_status_of(err), KYB_GRPC_NO_STATUS);
}

static void test_method_name_and_timeout(void **state) {
  (void)state;
  char buf[64];
  kyb_grpc_method_name("/containerd.services.tasks.v1.Tasks/Checkpoint", buf, sizeof(buf));
  assert_string_equal(buf, "Tasks.Checkpoint");
  kyb_grpc_method_name("/runtime.v1.RuntimeService/Version", buf, sizeof(buf));
  assert_string_equal(buf, "RuntimeService.Version");
  kyb_grpc_method_name("odd", buf, sizeof(buf));
  assert_string_equal(buf, "odd");
  kyb_grpc_timeout_value(30000, buf, sizeof(buf));
  assert_string_equal(buf, "30000m");
  kyb_grpc_timeout_value(99999999, buf, sizeof(buf));
  assert_string_equal(buf, "99999999m");
  kyb_grpc_timeout_value(100000000, buf, sizeof(buf));
  assert_string_equal(buf, "100000S");
  kyb_grpc_timeout_value(100000001, buf, sizeof(buf));
  assert_string_equal(buf, "100001S"); /* rounded up, never shorter */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_frame_header_is_big_endian),
      cmocka_unit_test(test_tasks_get_frame_matches_reference),
      cmocka_unit_test(test_empty_message_frame),
      cmocka_unit_test(test_frame_encode_rejects_oversize),
      cmocka_unit_test(test_decoder_whole_buffer),
      cmocka_unit_test(test_decoder_reassembles_any_split),
      cmocka_unit_test(test_decoder_rejects_compressed),
      cmocka_unit_test(test_decoder_rejects_overlong_before_buffering),
      cmocka_unit_test(test_decoder_reports_cut_message),
      cmocka_unit_test(test_decode_unary),
      cmocka_unit_test(test_percent_decode),
      cmocka_unit_test(test_parse_status),
      cmocka_unit_test(test_meta_headers_then_trailers),
      cmocka_unit_test(test_meta_trailers_only),
      cmocka_unit_test(test_meta_percent_encoded_message),
      cmocka_unit_test(test_meta_odd_input),
      cmocka_unit_test(test_status_errno_and_names),
      cmocka_unit_test(test_status_of_error),
      cmocka_unit_test(test_method_name_and_timeout),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

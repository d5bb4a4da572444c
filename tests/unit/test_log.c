/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the logger: the text line shape, the JSON line shape (one
 * object per line, the documented fields), level filtering, error chains
 * as fields, and non-UTF-8 input. */
#define KYB_LOG_MODULE "testmod"

#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/cleanup.h"
#include "util/log.h"

/* Captures what the logger writes through a pipe. */
static int pipefd[2];

static int setup(void **state) {
  (void)state;
  return pipe(pipefd);
}

static int teardown(void **state) {
  (void)state;
  close(pipefd[0]);
  close(pipefd[1]);
  kyb_log_setup("kybernate", KYB_LOG_INFO, KYB_LOG_TEXT, 2);
  return 0;
}

static char *drain(void) {
  static char buf[8192];
  ssize_t n = read(pipefd[0], buf, sizeof(buf) - 1);
  assert_true(n > 0);
  buf[n] = '\0';
  return buf;
}

static void test_text_line(void **state) {
  (void)state;
  kyb_log_setup("kybernate", KYB_LOG_INFO, KYB_LOG_TEXT, pipefd[1]);
  log_warn("slow answer from %s", "Tasks.Checkpoint");
  assert_string_equal(drain(), "kybernate: [testmod] warning: slow answer from Tasks.Checkpoint\n");
}

static void test_json_line_shape(void **state) {
  (void)state;
  kyb_log_setup("kybernate-agent", KYB_LOG_INFO, KYB_LOG_JSON, pipefd[1]);
  log_info("took request %s \"quoted\"", "cr-1");
  char *line = drain();
  size_t len = strlen(line);
  assert_true(len > 2);
  assert_int_equal(line[len - 1], '\n');
  assert_ptr_equal(strchr(line, '\n'), line + len - 1); /* exactly one line */
  json_error_t jerr;
  cleanup_json json_t *o = json_loads(line, 0, &jerr);
  assert_non_null(o);
  assert_true(json_is_object(o));
  assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
  assert_string_equal(json_string_value(json_object_get(o, "program")), "kybernate-agent");
  assert_string_equal(json_string_value(json_object_get(o, "module")), "testmod");
  assert_string_equal(json_string_value(json_object_get(o, "msg")), "took request cr-1 \"quoted\"");
  const char *t = json_string_value(json_object_get(o, "time"));
  assert_non_null(t);
  /* RFC 3339 UTC with milliseconds: 2026-11-28T13:40:00.123Z */
  assert_int_equal(strlen(t), 24);
  assert_int_equal(t[10], 'T');
  assert_int_equal(t[23], 'Z');
}

static void test_level_filter(void **state) {
  (void)state;
  kyb_log_setup("kybernate", KYB_LOG_WARN, KYB_LOG_TEXT, pipefd[1]);
  log_info("dropped");
  log_debug("dropped too");
  log_error("kept");
  assert_string_equal(drain(), "kybernate: [testmod] error: kept\n");
  assert_false(kyb_log_enabled(KYB_LOG_INFO));
  assert_true(kyb_log_enabled(KYB_LOG_ERROR));
}

static void test_error_chain_json(void **state) {
  (void)state;
  kyb_log_setup("kybernate", KYB_LOG_INFO, KYB_LOG_JSON, pipefd[1]);
  cleanup_error kyb_error *err = NULL;
  kyb_error_set(&err, ENOENT, "container %s not found", "web");
  kyb_error_wrap(&err, "checkpoint");
  log_error_chain(err, "request %s failed", "cr-2");
  cleanup_json json_t *o = json_loads(drain(), 0, NULL);
  assert_non_null(o);
  assert_string_equal(json_string_value(json_object_get(o, "msg")),
                      "request cr-2 failed: checkpoint: container web not found (No such file or "
                      "directory)");
  assert_int_equal(json_integer_value(json_object_get(o, "errno")), ENOENT);
  json_t *chain = json_object_get(o, "error_chain");
  assert_int_equal(json_array_size(chain), 2);
  assert_string_equal(json_string_value(json_array_get(chain, 0)), "container web not found");
  assert_string_equal(json_string_value(json_array_get(chain, 1)), "checkpoint");
}

static void test_error_chain_text(void **state) {
  (void)state;
  kyb_log_setup("kybernate", KYB_LOG_INFO, KYB_LOG_TEXT, pipefd[1]);
  cleanup_error kyb_error *err = NULL;
  kyb_error_set(&err, 0, "criu dump failed");
  log_error_chain(err, "checkpoint %s", "web");
  assert_string_equal(drain(), "kybernate: [testmod] error: checkpoint web: criu dump failed\n");
}

static void test_json_survives_invalid_utf8(void **state) {
  (void)state;
  kyb_log_setup("kybernate", KYB_LOG_INFO, KYB_LOG_JSON, pipefd[1]);
  log_info("bad bytes: %s", "\xff\xfe ok \xc3\xa9");
  cleanup_json json_t *o = json_loads(drain(), 0, NULL);
  assert_non_null(o);
  assert_string_equal(json_string_value(json_object_get(o, "msg")), "bad bytes: ?? ok \xc3\xa9");
}

static void test_parse_levels_and_formats(void **state) {
  (void)state;
  kyb_log_level l;
  kyb_log_format f;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_log_level_parse("DEBUG", &l, &err), 0);
  assert_int_equal(l, KYB_LOG_DEBUG);
  assert_int_equal(kyb_log_level_parse("warning", &l, &err), 0);
  assert_int_equal(l, KYB_LOG_WARN);
  assert_int_equal(kyb_log_level_parse("loud", &l, &err), -1);
  assert_string_equal(kyb_error_message(err),
                      "unknown log level 'loud' (use error, warn, info, debug or trace) (Invalid "
                      "argument)");
  assert_int_equal(kyb_log_format_parse("json", &f, &err), 0);
  assert_int_equal(f, KYB_LOG_JSON);
  assert_int_equal(kyb_log_format_parse("xml", &f, &err), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_text_line, setup, teardown),
      cmocka_unit_test_setup_teardown(test_json_line_shape, setup, teardown),
      cmocka_unit_test_setup_teardown(test_level_filter, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_chain_json, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_chain_text, setup, teardown),
      cmocka_unit_test_setup_teardown(test_json_survives_invalid_utf8, setup, teardown),
      cmocka_unit_test(test_parse_levels_and_formats),
  };
  return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}

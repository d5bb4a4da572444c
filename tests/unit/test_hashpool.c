/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the parallel hasher (lib/image/hashpool): every thread count
 * gives the digests one sequential pass gives, ranges are exact, a range past
 * the end of its file or a wrong expected digest fails naming the job, and
 * the error returned is the failed job with the lowest index. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "image/files.h"
#include "image/hashpool.h"
#include "util/cleanup.h"

#define DATA_LEN ((size_t)5 * 1024 * 1024 + 12345) /* several 1 MiB read buffers, a ragged end */
#define NJOBS 8

static unsigned char *data;
static int data_fd = -1;

static int setup(void **state) {
  (void)state;
  char path[] = "/tmp/kyb-test-hashpool-XXXXXX";
  data_fd = mkstemp(path);
  if (data_fd < 0)
    return -1;
  unlink(path);
  data = malloc(DATA_LEN);
  if (data == NULL)
    return -1;
  uint32_t x = 2463534242u; /* xorshift: reproducible, not compressible-looking */
  for (size_t i = 0; i < DATA_LEN; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    data[i] = (unsigned char)x;
  }
  return write(data_fd, data, DATA_LEN) == (ssize_t)DATA_LEN ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  free(data);
  close(data_fd);
  return 0;
}

/* Whole file, then 1 MiB chunks (the last one short), then an empty range. */
static size_t make_jobs(kyb_hash_job *jobs) {
  size_t n = 0;
  jobs[n++] = (kyb_hash_job){.fd = data_fd, .off = 0, .len = KYB_HASH_TO_EOF, .what = "whole"};
  for (uint64_t off = 0; off < DATA_LEN; off += 1u << 20) {
    uint64_t len = DATA_LEN - off < (1u << 20) ? DATA_LEN - off : (1u << 20);
    jobs[n++] = (kyb_hash_job){.fd = data_fd, .off = off, .len = len, .what = "chunk"};
  }
  jobs[n++] = (kyb_hash_job){.fd = data_fd, .off = 17, .len = 0, .what = "empty"};
  assert_int_equal(n, NJOBS);
  return n;
}

static void test_every_thread_count_agrees(void **state) {
  (void)state;
  for (unsigned t = 1; t <= KYB_HASH_THREADS_MAX; t++) {
    kyb_hash_job jobs[NJOBS];
    size_t n = make_jobs(jobs);
    cleanup_error kyb_error *err = NULL;
    assert_int_equal(kyb_hash_jobs_run(jobs, n, t, &err), 0);
    char want[KYB_SHA256_HEX_LEN + 1];
    kyb_sha256_buf(data, DATA_LEN, want);
    assert_string_equal(jobs[0].hex, want);
    assert_int_equal(jobs[0].got, DATA_LEN);
    for (size_t i = 1; i + 1 < n; i++) {
      size_t off = (i - 1) << 20, len = DATA_LEN - off < (1u << 20) ? DATA_LEN - off : (1u << 20);
      kyb_sha256_buf(data + off, len, want);
      assert_string_equal(jobs[i].hex, want);
      assert_int_equal(jobs[i].got, len);
    }
    kyb_sha256_buf("", 0, want);
    assert_string_equal(jobs[n - 1].hex, want);
    kyb_hash_jobs_release(jobs, n);
  }
}

static void test_expected_digests(void **state) {
  (void)state;
  kyb_hash_job jobs[NJOBS];
  size_t n = make_jobs(jobs);
  char want[NJOBS][KYB_SHA256_HEX_LEN + 1];
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_hash_jobs_run(jobs, n, 4, &err), 0);
  for (size_t i = 0; i < n; i++) {
    memcpy(want[i], jobs[i].hex, sizeof(want[i]));
    jobs[i].want = want[i];
  }
  assert_int_equal(kyb_hash_jobs_run(jobs, n, 4, &err), 0); /* all as expected */
  want[3][0] = want[3][0] == '0' ? '1' : '0';
  assert_int_equal(kyb_hash_jobs_run(jobs, n, 4, &err), -1);
  assert_int_equal(kyb_error_code(err), EBADMSG);
  assert_non_null(strstr(kyb_error_message(err), "chunk has sha256"));
  assert_non_null(strstr(kyb_error_message(err), want[3]));
  kyb_hash_jobs_release(jobs, n);
}

static void test_range_past_end(void **state) {
  (void)state;
  kyb_hash_job jobs[2] = {
      {.fd = data_fd, .off = 0, .len = 4096, .what = "file a"},
      {.fd = data_fd, .off = DATA_LEN - 10, .len = 20, .what = "file b chunk 7"},
  };
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_hash_jobs_run(jobs, 2, 2, &err), -1);
  assert_int_equal(kyb_error_code(err), EBADMSG);
  assert_non_null(strstr(kyb_error_message(err), "file b chunk 7: file ended 10 bytes early"));
  kyb_hash_jobs_release(jobs, 2);
}

/* Failing jobs on one thread: the largest runs first and the failure stops
 * the rest; jobs of equal size run in the caller's order. */
static void test_lowest_index_reported(void **state) {
  (void)state;
  kyb_hash_job jobs[2] = {
      {.fd = -1, .off = 0, .len = 10, .what = "first"},
      {.fd = -1, .off = 0, .len = 1000, .what = "second"},
  };
  cleanup_error kyb_error *err = NULL;
  /* one thread and a stop after the first failure: only "second" runs */
  assert_int_equal(kyb_hash_jobs_run(jobs, 2, 1, &err), -1);
  assert_int_equal(kyb_error_code(err), EBADF);
  assert_non_null(strstr(kyb_error_message(err), "second: read at byte 0"));
  kyb_hash_jobs_release(jobs, 2);
  /* equal sizes: "first" runs first, so it is the one reported */
  kyb_hash_job both[2] = {
      {.fd = -1, .off = 0, .len = 10, .what = "first"},
      {.fd = -1, .off = 0, .len = 10, .what = "second"},
  };
  kyb_error_clear(&err);
  assert_int_equal(kyb_hash_jobs_run(both, 2, 1, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "first: read at byte 0"));
  kyb_hash_jobs_release(both, 2);
}

static void test_thread_count_setting(void **state) {
  (void)state;
  setenv("KYBERNATE_HASH_THREADS", "3", 1);
  assert_int_equal(kyb_hash_threads(), 3);
  setenv("KYBERNATE_HASH_THREADS", "0", 1); /* out of range: ignored, the default */
  unsigned d = kyb_hash_threads();
  assert_true(d >= 1 && d <= KYB_HASH_THREADS_MAX);
  setenv("KYBERNATE_HASH_THREADS", "4x", 1);
  assert_int_equal(kyb_hash_threads(), d);
  unsetenv("KYBERNATE_HASH_THREADS");
  assert_int_equal(kyb_hash_threads(), d);
  kyb_hash_job none[1];
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_hash_jobs_run(none, 0, 4, &err), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_thread_count_agrees),
      cmocka_unit_test(test_expected_digests),
      cmocka_unit_test(test_range_past_end),
      cmocka_unit_test(test_lowest_index_reported),
      cmocka_unit_test(test_thread_count_setting),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

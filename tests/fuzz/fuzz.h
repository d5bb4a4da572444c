/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What every libFuzzer target in tests/fuzz/ shares: the entry points'
 * prototypes, a quiet logger, an invariant check that aborts (so libFuzzer
 * records the input as a crash), and the error-convention check each parser
 * call goes through.
 *
 * A target feeds one parser entry point of libkybernate with the fuzzer's
 * bytes and asserts what its contract promises: failure is -1 with a
 * nonempty error message, success leaves no error and a well-formed result.
 * ASan and UBSan (scripts/fuzz) catch memory errors, undefined behaviour and
 * leaks.
 */
#ifndef KYB_TESTS_FUZZ_H
#define KYB_TESTS_FUZZ_H

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* UBSan findings stop the run (libFuzzer then keeps the input), also when
 * a target is run by hand on a crash file. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) {
  return "halt_on_error=1:print_stacktrace=1";
}

#define FUZZ_ASSERT(cond)                                                                          \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);                 \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

/* Log lines go to /dev/null: parsers warn on bad input, and libFuzzer's own
 * output is what a reader of a run needs. */
static inline void fuzz_quiet_log(void) {
  int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  kyb_log_setup("fuzz", KYB_LOG_ERROR, KYB_LOG_TEXT, fd >= 0 ? fd : 2);
}

/* The error convention (util/error.h): rc < 0 comes with an error whose
 * message is not empty; rc >= 0 with none.  Releases the error. */
static inline void fuzz_check_rc(int rc, kyb_error **err) {
  if (rc < 0) {
    FUZZ_ASSERT(*err != NULL);
    const char *msg = kyb_error_message(*err);
    FUZZ_ASSERT(msg != NULL && msg[0] != '\0');
    kyb_error_clear(err);
  } else {
    FUZZ_ASSERT(*err == NULL);
  }
}

/* The input as a NUL-terminated heap string (for APIs that take one). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  FUZZ_ASSERT(s != NULL);
  if (size > 0)
    memcpy(s, data, size);
  s[size] = '\0';
  return s;
}

#endif

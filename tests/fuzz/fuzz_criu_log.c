/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CRIU's dump.log / restore.log (lib/ops/criu_log.c): the version line and
 * the error lines quoted in a failed checkpoint's message.  Input: one byte
 * for max_lines (0..15), then the log.  The version found is one word; the
 * errors are at most max_lines lines of the log, each one CRIU's Error or
 * Warn line.
 */
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "ops/criu_log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet_log();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t max_lines = data[0] & 15;
  data++;
  size--;
  int fd = memfd_create("criu-log", MFD_CLOEXEC);
  FUZZ_ASSERT(fd >= 0);
  FUZZ_ASSERT(write(fd, data, size) == (ssize_t)size);
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

  char *v = kyb_criu_log_version(path);
  if (v != NULL) {
    FUZZ_ASSERT(v[0] != '\0' && strlen(v) < 512);
    FUZZ_ASSERT(strchr(v, ' ') == NULL && strchr(v, '\n') == NULL);
    free(v);
  }

  char *errors = kyb_criu_log_errors(path, max_lines);
  if (errors != NULL) {
    FUZZ_ASSERT(max_lines > 0 && strlen(errors) <= size);
    size_t lines = 1;
    for (char *line = errors;;) {
      char *nl = strchr(line, '\n');
      if (nl != NULL)
        *nl = '\0';
      FUZZ_ASSERT(strstr(line, "Error") != NULL || strstr(line, "Warn (") != NULL);
      if (nl == NULL)
        break;
      line = nl + 1;
      lines++;
    }
    FUZZ_ASSERT(lines <= max_lines);
    free(errors);
  }
  close(fd);
  return 0;
}

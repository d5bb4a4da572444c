/* SPDX-License-Identifier: Apache-2.0 */
#include "ops/criu_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/fs.h"

/* CRIU logs grow with the process tree; errors sit at the end, so the whole
 * file is read, up to a generous cap. */
#define CRIU_LOG_MAX (64u << 20)

char *kyb_criu_log_version(const char *log_path) {
  cleanup_file FILE *f = fopen(log_path, "re");
  if (f == NULL)
    return NULL;
  char line[512];
  /* "(00.000000) Version: 4.1.1 (gitid 0)" is among the first lines. */
  for (int i = 0; i < 20 && fgets(line, sizeof(line), f) != NULL; i++) {
    char *v = strstr(line, "Version: ");
    if (v == NULL)
      continue;
    v += strlen("Version: ");
    size_t n = strcspn(v, " \n");
    return n > 0 ? strndup(v, n) : NULL;
  }
  return NULL;
}

/* Lines CRIU marks as errors but that explain nothing: without
 * CAP_SYS_RESOURCE it cannot raise its own RLIMIT_NOFILE and says so in
 * every run, successful or not. */
static const char *const harmless[] = {"Can't setup RLIMIT_NOFILE"};

static int is_error_line(const char *line) {
  /* CRIU prefixes failures with "Error (file:line):" and warns with
   * "Warn"; both explain a failed dump. */
  if (strstr(line, "Error") == NULL && strstr(line, "Warn (") == NULL)
    return 0;
  for (size_t i = 0; i < sizeof(harmless) / sizeof(harmless[0]); i++)
    if (strstr(line, harmless[i]) != NULL)
      return 0;
  return 1;
}

char *kyb_criu_log_errors(const char *log_path, size_t max_lines) {
  cleanup_free char *buf = NULL;
  size_t len = 0;
  cleanup_error kyb_error *err = NULL;
  if (kyb_read_file(log_path, CRIU_LOG_MAX, &buf, &len, &err) < 0)
    return NULL;
  /* Keep the last max_lines error lines: the first failure cascades into
   * later ones, but with a small max the tail is where the cause is named. */
  const char **picked = calloc(max_lines ? max_lines : 1, sizeof(char *));
  size_t *lens = calloc(max_lines ? max_lines : 1, sizeof(size_t));
  if (picked == NULL || lens == NULL || max_lines == 0) {
    free(picked);
    free(lens);
    return NULL;
  }
  size_t n = 0, total = 0;
  for (char *p = buf; p < buf + len;) {
    char *eol = memchr(p, '\n', (size_t)(buf + len - p));
    size_t l = eol ? (size_t)(eol - p) : (size_t)(buf + len - p);
    char saved = p[l];
    p[l] = '\0';
    if (is_error_line(p)) {
      if (n == max_lines) {
        memmove(picked, picked + 1, (max_lines - 1) * sizeof(char *));
        memmove(lens, lens + 1, (max_lines - 1) * sizeof(size_t));
        n--;
      }
      picked[n] = p;
      lens[n++] = l;
    }
    p[l] = saved;
    p += l + 1;
  }
  char *out = NULL;
  if (n > 0) {
    for (size_t i = 0; i < n; i++)
      total += lens[i] + 1;
    out = malloc(total);
    if (out != NULL) {
      char *w = out;
      for (size_t i = 0; i < n; i++) {
        memcpy(w, picked[i], lens[i]);
        w += lens[i];
        *w++ = i + 1 < n ? '\n' : '\0';
      }
    }
  }
  free(picked);
  free(lens);
  return out;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Image names and timestamps.  A name becomes a directory in a store and
 * part of a reference a user types, so it is kept to a small alphabet with
 * no '/' and no leading '.', which also keeps it clear of the store's own
 * ".staging-*" and ".deleting-*" entries.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "util/cleanup.h"

static bool name_char(char c, bool first) {
  if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
    return true;
  return !first && (c == '.' || c == '_' || c == '-');
}

int kyb_image_name_check(const char *name, kyb_error **err) {
  if (name == NULL || name[0] == '\0')
    return kyb_error_set(err, EINVAL, "empty image name");
  size_t len = strlen(name);
  if (len > KYB_IMAGE_NAME_MAX)
    return kyb_error_set(err, EINVAL, "image name \"%.32s...\" is longer than %u characters", name,
                         KYB_IMAGE_NAME_MAX);
  for (size_t i = 0; i < len; i++)
    if (!name_char(name[i], i == 0))
      return kyb_error_set(err, EINVAL,
                           "image name \"%s\" is not valid: it must match "
                           "[a-z0-9][a-z0-9._-]{0,127}",
                           name);
  return 0;
}

bool kyb_image_name_valid(const char *name) {
  cleanup_error kyb_error *err = NULL;
  return kyb_image_name_check(name, &err) == 0;
}

static bool is_hex64(const char *s) {
  if (strlen(s) != 64)
    return false;
  for (const char *p = s; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
      return false;
  return true;
}

int kyb_image_name_default(const char *base, time_t when, char **out, kyb_error **err) {
  /* "-YYYYMMDD-HHMMSS" is 16 characters; the base gets what is left. */
  enum { STAMP = 16, BASE_MAX = KYB_IMAGE_NAME_MAX - STAMP };
  char b[BASE_MAX + 1];
  size_t n = 0;
  if (base == NULL)
    base = "";
  size_t blen = is_hex64(base) ? 12 : strlen(base);
  for (size_t i = 0; i < blen && n < BASE_MAX; i++) {
    char c = base[i];
    if (c >= 'A' && c <= 'Z')
      c = (char)(c - 'A' + 'a');
    if (!name_char(c, false))
      c = '-';
    if (n == 0 && !name_char(c, true))
      continue; /* a name starts with a letter or digit */
    b[n++] = c;
  }
  b[n] = '\0';
  if (n == 0)
    strcpy(b, "checkpoint");
  struct tm tm;
  if (gmtime_r(&when, &tm) == NULL)
    return kyb_error_set(err, EINVAL, "time %lld out of range", (long long)when);
  char *name = NULL;
  if (asprintf(&name, "%s-%04d%02d%02d-%02d%02d%02d", b, tm.tm_year + 1900, tm.tm_mon + 1,
               tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec) < 0)
    return kyb_error_set(err, ENOMEM, "image name");
  if (kyb_image_name_check(name, err) < 0) { /* e.g. a year past 9999 */
    free(name);
    return -1;
  }
  *out = name;
  return 0;
}

void kyb_image_format_time(time_t t, char buf[static 21]) {
  struct tm tm;
  if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0) {
    strcpy(buf, "1970-01-01T00:00:00Z");
    return;
  }
  if (strftime(buf, 21, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    strcpy(buf, "1970-01-01T00:00:00Z");
}

/* n digits at s, their value in *v. */
static bool digits(const char *s, int n, int *v) {
  *v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    *v = *v * 10 + (s[i] - '0');
  }
  return true;
}

bool kyb_image_time_valid(const char *s) {
  int year, mon, day, hour, min, sec, oh, om;
  if (strlen(s) < 20 || !digits(s, 4, &year) || s[4] != '-' || !digits(s + 5, 2, &mon) ||
      s[7] != '-' || !digits(s + 8, 2, &day) || (s[10] != 'T' && s[10] != 't') ||
      !digits(s + 11, 2, &hour) || s[13] != ':' || !digits(s + 14, 2, &min) || s[16] != ':' ||
      !digits(s + 17, 2, &sec))
    return false;
  (void)year;
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
    return false;
  const char *p = s + 19;
  if (*p == '.') {
    p++;
    if (*p < '0' || *p > '9')
      return false;
    while (*p >= '0' && *p <= '9')
      p++;
  }
  if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
    return true;
  if ((*p == '+' || *p == '-') && digits(p + 1, 2, &oh) && p[3] == ':' && digits(p + 4, 2, &om) &&
      p[6] == '\0')
    return oh <= 23 && om <= 59;
  return false;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Timestamps as Kubernetes writes them: metav1.Time is RFC 3339 in whole
 * seconds ("2006-01-02T15:04:05Z"), metav1.MicroTime has exactly six
 * fractional digits (Lease renewTime/acquireTime, Event eventTime).  Times
 * are microseconds since the epoch in an int64_t.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kube/client.h"

int64_t kyb_kube_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void kyb_kube_time_format(int64_t us, bool micro, char *buf, size_t size) {
  int64_t sec = us / 1000000, frac = us % 1000000;
  if (frac < 0) { /* before 1970: floor, not truncate */
    frac += 1000000;
    sec--;
  }
  time_t t = (time_t)sec;
  struct tm tm;
  gmtime_r(&t, &tm);
  char base[32];
  strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
  if (micro)
    snprintf(buf, size, "%s.%06lldZ", base, (long long)frac);
  else
    snprintf(buf, size, "%sZ", base);
}

static int digits(const char **p, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (!isdigit((unsigned char)(*p)[i]))
      return -1;
    v = v * 10 + ((*p)[i] - '0');
  }
  *p += n;
  *out = v;
  return 0;
}

static int expect(const char **p, const char *set) {
  if (**p == '\0' || strchr(set, **p) == NULL)
    return -1;
  (*p)++;
  return 0;
}

int kyb_kube_time_parse(const char *s, int64_t *us, kyb_error **err) {
  const char *p = s;
  int Y, M, D, h, m, sec;
  if (digits(&p, 4, &Y) < 0 || expect(&p, "-") < 0 || digits(&p, 2, &M) < 0 ||
      expect(&p, "-") < 0 || digits(&p, 2, &D) < 0 || expect(&p, "Tt") < 0 ||
      digits(&p, 2, &h) < 0 || expect(&p, ":") < 0 || digits(&p, 2, &m) < 0 ||
      expect(&p, ":") < 0 || digits(&p, 2, &sec) < 0)
    goto bad;
  int64_t frac = 0;
  if (*p == '.') {
    p++;
    int n = 0;
    for (; isdigit((unsigned char)*p); p++, n++)
      if (n < 6)
        frac = frac * 10 + (*p - '0');
    if (n == 0)
      goto bad;
    for (; n < 6; n++)
      frac *= 10;
  }
  int offset = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int sign = *p == '-' ? -1 : 1, oh, om;
    p++;
    if (digits(&p, 2, &oh) < 0 || expect(&p, ":") < 0 || digits(&p, 2, &om) < 0 || oh > 23 ||
        om > 59)
      goto bad;
    offset = sign * (oh * 3600 + om * 60);
  } else {
    goto bad;
  }
  if (*p != '\0' || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
    goto bad;
  struct tm tm = {
      .tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D, .tm_hour = h, .tm_min = m, .tm_sec = sec};
  time_t t = timegm(&tm);
  *us = ((int64_t)t - offset) * 1000000 + frac;
  return 0;
bad:
  return kyb_error_set(err, EINVAL, "'%.40s' is not an RFC 3339 time", s);
}

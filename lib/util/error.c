/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Error chain implementation.  See error.h for the contract.
 */
#include "util/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char oom_frame[] = "out of memory while reporting an error";
static char *oom_frames[] = {oom_frame};
/* Handed out when building an error fails: never freed, never modified. */
static kyb_error oom_error = {.errnum = ENOMEM, .nframes = 1, .frames = oom_frames, .text = NULL};

static int set_oom(kyb_error **err) {
  *err = &oom_error;
  return -1;
}

int kyb_error_setv(kyb_error **err, int errnum, const char *fmt, va_list ap) {
  if (err == NULL)
    return -1;
  kyb_error_clear(err);
  kyb_error *e = calloc(1, sizeof(*e));
  if (e == NULL)
    return set_oom(err);
  e->frames = calloc(1, sizeof(char *));
  if (e->frames == NULL || vasprintf(&e->frames[0], fmt, ap) < 0) {
    free(e->frames);
    free(e);
    return set_oom(err);
  }
  e->nframes = 1;
  e->errnum = errnum;
  *err = e;
  return -1;
}

int kyb_error_set(kyb_error **err, int errnum, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kyb_error_setv(err, errnum, fmt, ap);
  va_end(ap);
  return -1;
}

int kyb_error_errno(kyb_error **err, const char *fmt, ...) {
  int saved = errno;
  va_list ap;
  va_start(ap, fmt);
  kyb_error_setv(err, saved, fmt, ap);
  va_end(ap);
  return -1;
}

int kyb_error_wrap(kyb_error **err, const char *fmt, ...) {
  if (err == NULL)
    return -1;
  if (*err == NULL)
    kyb_error_set(err, 0, "unknown error (callee failed without reporting)");
  if (*err == &oom_error)
    return -1;
  kyb_error *e = *err;
  char *frame = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&frame, fmt, ap);
  va_end(ap);
  if (n < 0)
    return -1; /* keep the original error; losing context beats losing the cause */
  char **frames = realloc(e->frames, (e->nframes + 1) * sizeof(char *));
  if (frames == NULL) {
    free(frame);
    return -1;
  }
  e->frames = frames;
  e->frames[e->nframes++] = frame;
  free(e->text);
  e->text = NULL;
  return -1;
}

const char *kyb_error_message(kyb_error *err) {
  if (err == NULL)
    return "no error";
  if (err == &oom_error)
    return oom_frame;
  if (err->text != NULL)
    return err->text;
  size_t len = 1;
  for (size_t i = 0; i < err->nframes; i++)
    len += strlen(err->frames[i]) + 2;
  const char *cause = err->errnum ? strerror(err->errnum) : NULL;
  if (cause != NULL)
    len += strlen(cause) + 3;
  char *text = malloc(len);
  if (text == NULL)
    return err->frames[0];
  char *p = text;
  for (size_t i = err->nframes; i-- > 0;) {
    size_t l = strlen(err->frames[i]);
    memcpy(p, err->frames[i], l);
    p += l;
    if (i > 0) {
      memcpy(p, ": ", 2);
      p += 2;
    }
  }
  if (cause != NULL)
    p += sprintf(p, " (%s)", cause);
  *p = '\0';
  err->text = text;
  return text;
}

const char *kyb_error_root(const kyb_error *err) {
  if (err == NULL || err->nframes == 0)
    return "no error";
  return err->frames[0];
}

int kyb_error_code(const kyb_error *err) {
  return err ? err->errnum : 0;
}

void kyb_error_free(kyb_error *err) {
  if (err == NULL || err == &oom_error)
    return;
  for (size_t i = 0; i < err->nframes; i++)
    free(err->frames[i]);
  free(err->frames);
  free(err->text);
  free(err);
}

void kyb_error_clear(kyb_error **err) {
  if (err == NULL)
    return;
  kyb_error_free(*err);
  *err = NULL;
}

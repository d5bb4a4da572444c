/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A Kubernetes watch stream: the line splitter (kyb_kube_lines_*) and the
 * event parser (kyb_kube_event_parse) as kyb_kube_watch drives them.
 * Input: one byte that sets the chunk size, then the stream.  The lines
 * and events must not depend on the chunking; no line handed on holds a
 * '\n' or exceeds the limit; an event parsed is an object with a known type.
 */
#include <errno.h>
#include <jansson.h>

#include "fuzz.h"
#include "kube/watch.h"

#define MAX_LINE 1024

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet_log();
  return 0;
}

typedef struct {
  size_t lines, events, bad;
  unsigned long sum; /* of event types and line lengths: cheap fingerprint */
} tally;

static int on_line(void *ud, const char *line, size_t len, kyb_error **err) {
  (void)err;
  tally *t = ud;
  FUZZ_ASSERT(len <= MAX_LINE && memchr(line, '\n', len) == NULL);
  t->lines++;
  t->sum += len;
  kyb_kube_event_type type;
  json_t *obj = NULL;
  kyb_error *perr = NULL;
  int rc = kyb_kube_event_parse(line, len, &type, &obj, &perr);
  fuzz_check_rc(rc, &perr);
  if (rc < 0) {
    t->bad++;
    return 0;
  }
  FUZZ_ASSERT(json_is_object(obj));
  FUZZ_ASSERT(type <= KYB_KUBE_ERROR && kyb_kube_event_type_name(type) != NULL);
  t->events++;
  t->sum += (unsigned long)type * 7919u;
  json_decref(obj);
  return 0;
}

static int run(const char *data, size_t size, size_t chunk, tally *t) {
  kyb_error *err = NULL;
  kyb_kube_lines l;
  kyb_kube_lines_init(&l, MAX_LINE);
  int rc = 0;
  for (size_t off = 0; rc == 0 && off < size; off += chunk)
    rc = kyb_kube_lines_feed(&l, data + off, size - off < chunk ? size - off : chunk, on_line, t,
                             &err);
  if (rc == 0)
    rc = kyb_kube_lines_finish(&l, on_line, t, &err);
  FUZZ_ASSERT(rc <= 0);
  FUZZ_ASSERT(rc == 0 || kyb_error_code(err) == EMSGSIZE);
  fuzz_check_rc(rc, &err);
  FUZZ_ASSERT(l.nlines == t->lines);
  kyb_kube_lines_clear(&l);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t chunk = (size_t)data[0] + 1;
  const char *stream = (const char *)data + 1;
  size--;
  tally whole = {0}, parts = {0};
  int rw = run(stream, size, size ? size : 1, &whole);
  int rp = run(stream, size, chunk, &parts);
  /* Chunking may only change where an oversized line is noticed: what came
   * before it is the same. */
  if (rw == 0 && rp == 0)
    FUZZ_ASSERT(whole.lines == parts.lines && whole.events == parts.events &&
                whole.bad == parts.bad && whole.sum == parts.sum);
  else
    FUZZ_ASSERT(rw < 0 && rp < 0);
  return 0;
}

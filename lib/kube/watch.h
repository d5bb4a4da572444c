/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Watches and the informer-like loop on top of them.
 *
 * A watch is one long GET with ?watch=1: the API server streams one JSON
 * object per line, {"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR,
 * "object": {...}}.  kyb_kube_watch reads that stream, keeps the
 * resourceVersion of the last event (bookmarks only move it forward and are
 * not passed on), and hands every other event to a callback.  An ERROR event
 * ends the watch with its Status as the error: 410 (Expired/Gone) means
 * "the resourceVersion is too old, list again".
 *
 * kyb_kube_informer_run is the loop every controller needs: list (paged) →
 * on_sync with the full set → watch from the list's resourceVersion →
 * when the server ends the watch (timeoutSeconds), watch again from the last
 * resourceVersion; on a dropped connection or a server error, wait (backoff)
 * and resume from the last resourceVersion; on 410, list again.  It runs
 * until a callback returns 1 (done: returns 0), a callback fails (returns
 * its error), the client is cancelled (ECANCELED), or max_failures
 * consecutive failures (returns the last).  No threads; the caller's thread
 * runs the callbacks.
 */
#ifndef KYB_KUBE_WATCH_H
#define KYB_KUBE_WATCH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "kube/client.h"
#include "util/error.h"

typedef enum {
  KYB_KUBE_ADDED,
  KYB_KUBE_MODIFIED,
  KYB_KUBE_DELETED,
  KYB_KUBE_BOOKMARK,
  KYB_KUBE_ERROR,
} kyb_kube_event_type;

const char *kyb_kube_event_type_name(kyb_kube_event_type t);

/* One event.  obj is borrowed for the call (json_incref to keep it).
 * Return 0 to go on, 1 to stop the watch (the caller is done), -1 with err
 * to fail it. */
typedef int (*kyb_kube_watch_fn)(void *ud, kyb_kube_event_type type, json_t *obj, kyb_error **err);

typedef struct {
  const char *label_selector;
  const char *field_selector;
  const char *resource_version; /* NULL or "": start from the server's current state */
  bool no_bookmarks;            /* leave allowWatchBookmarks off */
  long timeout_seconds;         /* server ends the watch after this; 0: 300 */
  kyb_kube_watch_fn on_event;
  void *ud;
} kyb_kube_watch_opts;

/* Returns 0 when the server ended the stream cleanly, 1 when on_event
 * returned 1, -1 with err otherwise: an ERROR event (its Status: 410 for a
 * too-old resourceVersion), a dropped connection (ECONNRESET), a line over
 * max_line (EMSGSIZE), malformed JSON (EPROTO), cancellation (ECANCELED).
 * *last_rv (may be NULL; heap, NULL when no event carried one) is the
 * resourceVersion to resume from, set in every case. */
int kyb_kube_watch(kyb_kube_client *c, const kyb_kube_resource *res, const char *ns,
                   const kyb_kube_watch_opts *opts, char **last_rv, kyb_error **err);

typedef struct {
  const kyb_kube_resource *res;
  const char *ns; /* NULL: the default namespace; "": all namespaces */
  const char *label_selector;
  const char *field_selector;
  long page_limit;      /* list page size; 0: 500 */
  long watch_timeout_s; /* 0: 300 */
  long backoff_ms;      /* first wait after a failure, doubled up to max; 0: 200 */
  long max_backoff_ms;  /* 0: 30000 */
  int max_failures;     /* consecutive failed lists/watches before giving up; 0: never */
  /* After every (re)list: items is the full current set (borrowed), rv the
   * list's resourceVersion.  Same return convention as kyb_kube_watch_fn. */
  int (*on_sync)(void *ud, json_t *items, const char *rv, kyb_error **err);
  kyb_kube_watch_fn on_event; /* every watch event except BOOKMARK */
  void *ud;
} kyb_kube_informer_opts;

int kyb_kube_informer_run(kyb_kube_client *c, const kyb_kube_informer_opts *opts, kyb_error **err);

/* ---- the stream parser, pure (for tests and reuse) ---- */

/* Splits a byte stream into lines of at most max_line bytes, whatever the
 * chunking.  Called per complete line (without its '\n'); same return
 * convention as the watch callback. */
typedef int (*kyb_kube_line_fn)(void *ud, const char *line, size_t len, kyb_error **err);

typedef struct {
  size_t max_line;
  char *buf;
  size_t len, cap;
  size_t nlines;
} kyb_kube_lines;

void kyb_kube_lines_init(kyb_kube_lines *l, size_t max_line);
/* Returns 0, 1 (fn asked to stop), or -1 (EMSGSIZE for a line over
 * max_line, or fn's error). */
int kyb_kube_lines_feed(kyb_kube_lines *l, const char *data, size_t len, kyb_kube_line_fn fn,
                        void *ud, kyb_error **err);
/* End of stream: an unterminated last line is handed on if it is not blank
 * (the API server ends every event with '\n', but a proxy may not). */
int kyb_kube_lines_finish(kyb_kube_lines *l, kyb_kube_line_fn fn, void *ud, kyb_error **err);
void kyb_kube_lines_clear(kyb_kube_lines *l);

/* One watch line: *type, *obj (new reference).  For ERROR, obj is the
 * Status.  EPROTO when the line is not a watch event. */
int kyb_kube_event_parse(const char *line, size_t len, kyb_kube_event_type *type, json_t **obj,
                         kyb_error **err);

#endif

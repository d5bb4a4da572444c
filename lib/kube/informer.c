/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The list-then-watch loop (client-go's reflector, without its cache):
 * list → on_sync → watch from the list's resourceVersion → rewatch from the
 * last one when the server ends a watch → on a failure back off and resume
 * from the last resourceVersion → on 410 list again.  Contract in watch.h.
 */
#define KYB_LOG_MODULE "kube"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/internal.h"
#include "kube/watch.h"
#include "util/cleanup.h"
#include "util/log.h"

typedef struct {
  const kyb_kube_informer_opts *o;
  bool cb_failed; /* the caller's callback failed: that ends the loop */
  size_t nevents;
} istate;

static int pass_event(void *ud, kyb_kube_event_type type, json_t *obj, kyb_error **err) {
  istate *s = ud;
  s->nevents++;
  int r = s->o->on_event != NULL ? s->o->on_event(s->o->ud, type, obj, err) : 0;
  if (r < 0)
    s->cb_failed = true;
  return r;
}

/* List everything and hand it to on_sync.  0 done and *rv set, 1 on_sync
 * asked to stop, -1 failed (*fatal: do not retry). */
static int relist(kyb_kube_client *c, istate *s, char **rv, bool *fatal, kyb_error **err) {
  const kyb_kube_informer_opts *o = s->o;
  kyb_kube_list_opts lo = {.label_selector = o->label_selector,
                           .field_selector = o->field_selector,
                           .limit = o->page_limit};
  cleanup_json json_t *items = NULL;
  cleanup_free char *lrv = NULL;
  if (kyb_kube_list_all(c, o->res, o->ns, &lo, &items, &lrv, err) < 0)
    return -1;
  log_debug("informer: listed %zu %s at %s", json_array_size(items), o->res->plural, lrv);
  int r = o->on_sync != NULL ? o->on_sync(o->ud, items, lrv, err) : 0;
  if (r != 0) {
    *fatal = true;
    return r;
  }
  free(*rv);
  *rv = steal_ptr(lrv);
  return 0;
}

int kyb_kube_informer_run(kyb_kube_client *c, const kyb_kube_informer_opts *opts, kyb_error **err) {
  istate s = {.o = opts};
  long base = opts->backoff_ms > 0 ? opts->backoff_ms : 200;
  long cap = opts->max_backoff_ms > 0 ? opts->max_backoff_ms : 30000;
  cleanup_free char *rv = NULL;
  bool need_list = true;
  int failures = 0, gone = 0; /* gone: 410s in a row without an event between */
  for (;;) {
    bool fatal = false;
    int r;
    size_t before = s.nevents;
    if (need_list) {
      r = relist(c, &s, &rv, &fatal, err);
      if (r == 0) {
        need_list = false;
        failures = 0;
      }
    } else {
      kyb_kube_watch_opts wo = {.label_selector = opts->label_selector,
                                .field_selector = opts->field_selector,
                                .resource_version = rv,
                                .timeout_seconds = opts->watch_timeout_s,
                                .on_event = pass_event,
                                .ud = &s};
      char *last = NULL;
      r = kyb_kube_watch(c, opts->res, opts->ns, &wo, &last, err);
      if (last != NULL) {
        free(rv);
        rv = last;
      }
      fatal = s.cb_failed;
      if (r == 0 || (r < 0 && s.nevents > before))
        failures = 0; /* the watch worked for a while */
      if (r == 0)
        gone = 0;
      if (r < 0 && !fatal && kyb_kube_status_of(*err) == 410) {
        /* Our resourceVersion is too old to watch from: list again at once,
         * unless this keeps happening without a single event in between
         * (then back off like any failure). */
        log_info("informer: %s: %s, listing again", opts->res->plural, kyb_error_message(*err));
        need_list = true;
        gone = s.nevents > before ? 1 : gone + 1;
        if (gone <= 1) {
          kyb_error_clear(err);
          continue;
        }
      }
    }
    if (r > 0)
      return 0;
    if (r == 0)
      continue;
    if (fatal || kyb_error_code(*err) == ECANCELED)
      return -1;
    failures++;
    if (opts->max_failures > 0 && failures >= opts->max_failures)
      return kyb_error_wrap(err, "informer on %s gave up after %d failures in a row",
                            opts->res->plural, failures);
    long wait = kube_backoff_ms(c, base, cap, failures - 1);
    log_warn_chain(*err, "informer: %s failed (%d in a row), %s in %ld ms", opts->res->plural,
                   failures, need_list ? "listing again" : "resuming the watch", wait);
    kyb_error_clear(err);
    if (kyb_kube_sleep(c, wait, err) < 0)
      return -1;
  }
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Leader election on a Lease, following client-go's tryAcquireOrRenew and
 * release step by step (see lease.h for the rules and why they are so).
 */
#define KYB_LOG_MODULE "kube"

#include "kube/lease.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/internal.h"
#include "util/cleanup.h"
#include "util/log.h"

struct kyb_kube_elector {
  char *ns, *name, *identity;
  long duration_s;
  long renew_deadline_ms;
  int64_t (*now_us)(void *ud);
  void *clock_ud;
  json_t *lease;                  /* the last Lease read or written: its resourceVersion */
  json_t *observed_spec;          /* what we compare to notice a change */
  kyb_kube_lease_record observed; /* parsed observed_spec */
  int64_t observed_at_us;         /* our clock when observed_spec last changed */
  int64_t renewed_at_us;          /* our clock at our last successful write as holder */
};

void kyb_kube_lease_record_clear(kyb_kube_lease_record *r) {
  free(r->holder);
  memset(r, 0, sizeof(*r));
}

static int64_t time_field(const json_t *spec, const char *field) {
  const char *s = json_string_value(json_object_get(spec, field));
  int64_t us = 0;
  cleanup_error kyb_error *e = NULL;
  if (s == NULL || kyb_kube_time_parse(s, &us, &e) < 0)
    return 0;
  return us;
}

int kyb_kube_lease_record_parse(const json_t *spec, kyb_kube_lease_record *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  if (spec != NULL && !json_is_object(spec))
    return kyb_error_set(err, EPROTO, "lease spec is not an object");
  const char *h = json_string_value(json_object_get(spec, "holderIdentity"));
  out->holder = strdup(h != NULL ? h : "");
  if (out->holder == NULL)
    return kyb_error_set(err, ENOMEM, "lease record");
  json_t *d = json_object_get(spec, "leaseDurationSeconds");
  out->duration_s = json_is_integer(d) ? (long)json_integer_value(d) : 0;
  json_t *t = json_object_get(spec, "leaseTransitions");
  out->transitions = json_is_integer(t) ? (long)json_integer_value(t) : 0;
  out->acquire_us = time_field(spec, "acquireTime");
  out->renew_us = time_field(spec, "renewTime");
  return 0;
}

json_t *kyb_kube_lease_record_json(const kyb_kube_lease_record *r) {
  char acq[40], ren[40];
  kyb_kube_time_format(r->acquire_us, true, acq, sizeof(acq));
  kyb_kube_time_format(r->renew_us, true, ren, sizeof(ren));
  return json_pack("{s:s, s:I, s:s, s:s, s:I}", "holderIdentity", r->holder ? r->holder : "",
                   "leaseDurationSeconds", (json_int_t)r->duration_s, "acquireTime", acq,
                   "renewTime", ren, "leaseTransitions", (json_int_t)r->transitions);
}

bool kyb_kube_lease_may_take(const kyb_kube_lease_record *observed, int64_t observed_at_us,
                             const char *identity, int64_t now_us) {
  if (observed->holder == NULL || observed->holder[0] == '\0')
    return true; /* released or never held */
  if (strcmp(observed->holder, identity) == 0)
    return true; /* ours: renew */
  /* client-go: held and observedTime + leaseDuration is after now → wait. */
  return observed_at_us + (int64_t)observed->duration_s * 1000000 <= now_us;
}

int kyb_kube_elector_new(const kyb_kube_elector_opts *o, kyb_kube_elector **out, kyb_error **err) {
  if (o->name == NULL || o->identity == NULL || o->identity[0] == '\0')
    return kyb_error_set(err, EINVAL, "leader election needs a lease name and an identity");
  long dur = o->lease_duration_s > 0 ? o->lease_duration_s : 15;
  long dl = o->renew_deadline_ms > 0 ? o->renew_deadline_ms : 10000;
  if (dl >= dur * 1000)
    return kyb_error_set(err, EINVAL,
                         "leader election: renew deadline %ld ms must be shorter than the lease "
                         "duration %ld s",
                         dl, dur);
  kyb_kube_elector *el = calloc(1, sizeof(*el));
  if (el == NULL)
    return kyb_error_set(err, ENOMEM, "leader election");
  el->ns = o->ns != NULL ? strdup(o->ns) : NULL;
  el->name = strdup(o->name);
  el->identity = strdup(o->identity);
  el->duration_s = dur;
  el->renew_deadline_ms = dl;
  el->now_us = o->now_us;
  el->clock_ud = o->clock_ud;
  el->observed.holder = strdup("");
  if ((o->ns != NULL && el->ns == NULL) || el->name == NULL || el->identity == NULL ||
      el->observed.holder == NULL) {
    kyb_kube_elector_free(el);
    return kyb_error_set(err, ENOMEM, "leader election");
  }
  *out = el;
  return 0;
}

void kyb_kube_elector_free(kyb_kube_elector *el) {
  if (el == NULL)
    return;
  free(el->ns);
  free(el->name);
  free(el->identity);
  json_decref(el->lease);
  json_decref(el->observed_spec);
  kyb_kube_lease_record_clear(&el->observed);
  free(el);
}

static int64_t now(const kyb_kube_elector *el) {
  return el->now_us != NULL ? el->now_us(el->clock_ud) : kyb_kube_now_us();
}

/* Remember a lease (read or written) and, when its spec changed, when we
 * saw that happen. */
static int observe(kyb_kube_elector *el, json_t *lease, int64_t t, kyb_error **err) {
  json_t *spec = json_object_get(lease, "spec");
  if (spec == NULL || json_is_null(spec))
    spec = json_object();
  else
    json_incref(spec);
  if (!json_is_object(spec)) {
    json_decref(spec);
    return kyb_error_set(err, EPROTO, "lease %s: spec is not an object", el->name);
  }
  if (el->observed_spec == NULL || !json_equal(spec, el->observed_spec)) {
    kyb_kube_lease_record rec;
    if (kyb_kube_lease_record_parse(spec, &rec, err) < 0) {
      json_decref(spec);
      return -1;
    }
    kyb_kube_lease_record_clear(&el->observed);
    el->observed = rec;
    json_decref(el->observed_spec);
    el->observed_spec = json_incref(spec);
    el->observed_at_us = t;
  }
  json_decref(spec);
  json_decref(el->lease);
  el->lease = json_incref(lease);
  return 0;
}

static json_t *lease_object(const kyb_kube_elector *el, const char *ns, json_t *spec) {
  return json_pack("{s:s, s:s, s:{s:s, s:s}, s:o}", "apiVersion", "coordination.k8s.io/v1", "kind",
                   "Lease", "metadata", "name", el->name, "namespace", ns, "spec", spec);
}

static int create_lease(kyb_kube_client *c, kyb_kube_elector *el, const char *ns, int64_t t,
                        bool *leader, kyb_error **err) {
  kyb_kube_lease_record rec = {
      .holder = el->identity, .duration_s = el->duration_s, .acquire_us = t, .renew_us = t};
  cleanup_json json_t *obj = lease_object(el, ns, kyb_kube_lease_record_json(&rec));
  cleanup_json json_t *made = NULL;
  if (obj == NULL)
    return kyb_error_set(err, ENOMEM, "lease %s", el->name);
  if (kyb_kube_create(c, &kyb_kube_res_leases, ns, obj, &made, err) < 0) {
    if (kyb_kube_status_of(*err) != 409)
      return -1;
    kyb_error_clear(err); /* another candidate created it first */
    log_debug("lease %s/%s: created by someone else first", ns, el->name);
    return 0;
  }
  if (observe(el, made, t, err) < 0)
    return -1;
  el->renewed_at_us = t;
  *leader = true;
  log_info("lease %s/%s: acquired (new lease) as %s", ns, el->name, el->identity);
  return 0;
}

int kyb_kube_elector_try(kyb_kube_client *c, kyb_kube_elector *el, bool *leader, kyb_error **err) {
  const char *ns = el->ns != NULL ? el->ns : kyb_kube_client_config(c)->ns;
  int64_t t = now(el);
  *leader = false;
  cleanup_json json_t *lease = NULL;
  if (kyb_kube_get(c, &kyb_kube_res_leases, ns, el->name, &lease, err) < 0) {
    if (kyb_kube_status_of(*err) != 404)
      return kyb_error_wrap(err, "leader election");
    kyb_error_clear(err);
    return create_lease(c, el, ns, t, leader, err);
  }
  if (observe(el, lease, t, err) < 0)
    return -1;
  bool was_holder = strcmp(el->observed.holder, el->identity) == 0;
  if (!kyb_kube_lease_may_take(&el->observed, el->observed_at_us, el->identity, t)) {
    log_trace("lease %s/%s held by %s", ns, el->name, el->observed.holder);
    return 0;
  }
  kyb_kube_lease_record rec = {.holder = el->identity,
                               .duration_s = el->duration_s,
                               .acquire_us = was_holder ? el->observed.acquire_us : t,
                               .renew_us = t,
                               .transitions = el->observed.transitions + (was_holder ? 0 : 1)};
  json_t *spec = kyb_kube_lease_record_json(&rec);
  if (spec == NULL || json_object_set_new(lease, "spec", spec) < 0)
    return kyb_error_set(err, ENOMEM, "lease %s", el->name);
  cleanup_json json_t *written = NULL;
  if (kyb_kube_update(c, &kyb_kube_res_leases, lease, NULL, &written, err) < 0) {
    if (kyb_kube_status_of(*err) != 409)
      return kyb_error_wrap(err, "leader election");
    kyb_error_clear(err); /* someone else wrote first: we stay (or become) a follower */
    log_debug("lease %s/%s: lost the race to write it", ns, el->name);
    return 0;
  }
  if (observe(el, written, t, err) < 0)
    return -1;
  el->renewed_at_us = t;
  *leader = true;
  if (!was_holder)
    log_info("lease %s/%s: acquired as %s (transition %ld)", ns, el->name, el->identity,
             rec.transitions);
  return 0;
}

bool kyb_kube_elector_is_leader(const kyb_kube_elector *el) {
  return strcmp(el->observed.holder, el->identity) == 0 && el->renewed_at_us != 0 &&
         now(el) < el->renewed_at_us + (int64_t)el->renew_deadline_ms * 1000;
}

const char *kyb_kube_elector_holder(const kyb_kube_elector *el) {
  return el->observed.holder;
}

long kyb_kube_elector_transitions(const kyb_kube_elector *el) {
  return el->observed.transitions;
}

int kyb_kube_elector_release(kyb_kube_client *c, kyb_kube_elector *el, kyb_error **err) {
  if (el->lease == NULL || strcmp(el->observed.holder, el->identity) != 0)
    return 0;
  int64_t t = now(el);
  kyb_kube_lease_record rec = {.holder = "",
                               .duration_s = 1,
                               .acquire_us = t,
                               .renew_us = t,
                               .transitions = el->observed.transitions};
  cleanup_json json_t *lease = json_deep_copy(el->lease);
  json_t *spec = kyb_kube_lease_record_json(&rec);
  if (lease == NULL || spec == NULL || json_object_set_new(lease, "spec", spec) < 0)
    return kyb_error_set(err, ENOMEM, "lease %s", el->name);
  cleanup_json json_t *written = NULL;
  if (kyb_kube_update(c, &kyb_kube_res_leases, lease, NULL, &written, err) < 0) {
    if (kyb_kube_status_of(*err) != 409)
      return kyb_error_wrap(err, "release lease %s", el->name);
    kyb_error_clear(err);
    el->renewed_at_us = 0;
    return 0;
  }
  el->renewed_at_us = 0;
  log_info("lease %s: released by %s", el->name, el->identity);
  return observe(el, written, t, err);
}

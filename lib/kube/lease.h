/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules
 * (leaderelection.go, tryAcquireOrRenew and release):
 *
 *  - A lease held by someone else may be taken over only when it has not
 *    changed for leaseDurationSeconds as measured on OUR clock since we
 *    first saw its current content ("observed time"), never by comparing
 *    its renewTime with our clock: clocks of two machines need not agree.
 *  - A lease with an empty holderIdentity (released) may be taken at once.
 *  - Taking over adds one to leaseTransitions; renewing keeps it and keeps
 *    acquireTime.  Every write is a PUT carrying the resourceVersion we
 *    read, so of two candidates only one wins (the other gets 409 and stays
 *    a follower).
 *  - A leader that could not renew for renew_deadline stops being leader
 *    (kyb_kube_elector_is_leader turns false) before anyone else may take
 *    over (lease_duration > renew_deadline).
 *  - Release writes holderIdentity "" and leaseDurationSeconds 1.
 *
 * The caller runs the loop: kyb_kube_elector_try every retry period (2 s
 * in client-go) and acts on kyb_kube_elector_is_leader.  The clock is
 * injectable for tests.
 */
#ifndef KYB_KUBE_LEASE_H
#define KYB_KUBE_LEASE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "kube/client.h"
#include "util/error.h"

typedef struct {
  char *holder; /* "" when nobody holds it */
  long duration_s;
  int64_t acquire_us; /* 0 when absent or malformed */
  int64_t renew_us;
  long transitions;
} kyb_kube_lease_record;

void kyb_kube_lease_record_clear(kyb_kube_lease_record *r);
/* From a Lease's spec (missing fields: empty/zero, as the Go struct). */
int kyb_kube_lease_record_parse(const json_t *spec, kyb_kube_lease_record *out, kyb_error **err);
/* The Lease spec for a record (times as MicroTime). */
json_t *kyb_kube_lease_record_json(const kyb_kube_lease_record *r);

/* The takeover rule, pure: may `identity` write a lease whose content it has
 * seen unchanged since observed_at_us (its own clock)? */
bool kyb_kube_lease_may_take(const kyb_kube_lease_record *observed, int64_t observed_at_us,
                             const char *identity, int64_t now_us);

typedef struct {
  const char *ns; /* NULL: the client's default namespace */
  const char *name;
  const char *identity;        /* unique per candidate: e.g. pod name + random suffix */
  long lease_duration_s;       /* 0: 15 */
  long renew_deadline_ms;      /* 0: 10000; must be under lease_duration */
  int64_t (*now_us)(void *ud); /* NULL: kyb_kube_now_us */
  void *clock_ud;
} kyb_kube_elector_opts;

typedef struct kyb_kube_elector kyb_kube_elector;

int kyb_kube_elector_new(const kyb_kube_elector_opts *opts, kyb_kube_elector **out,
                         kyb_error **err);
void kyb_kube_elector_free(kyb_kube_elector *el);

/* One attempt to acquire or renew (get, and create or update).  Returns 0
 * whether or not we are leader afterwards (*leader says; losing a race is
 * not an error), -1 when the API server could not be asked or answered
 * with an error. */
int kyb_kube_elector_try(kyb_kube_client *c, kyb_kube_elector *el, bool *leader, kyb_error **err);

/* Leader now: we hold the lease as last observed and renewed it less than
 * renew_deadline ago. */
bool kyb_kube_elector_is_leader(const kyb_kube_elector *el);

/* The holder as last observed ("" when none). */
const char *kyb_kube_elector_holder(const kyb_kube_elector *el);
long kyb_kube_elector_transitions(const kyb_kube_elector *el);

/* Gives the lease up when we hold it (no-op otherwise); a 409 (someone
 * else wrote meanwhile) is not an error. */
int kyb_kube_elector_release(kyb_kube_client *c, kyb_kube_elector *el, kyb_error **err);

#endif

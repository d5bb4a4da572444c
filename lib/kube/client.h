/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kubernetes API client: generic calls over any resource (core types and
 * CRDs alike) described by a kyb_kube_resource; objects are jansson values.
 *
 *     kyb_kube_config cfg;
 *     kyb_kube_config_load(NULL, NULL, &cfg, err);          // config.h
 *     kyb_kube_client *c = NULL;
 *     kyb_kube_client_new(&cfg, NULL, &c, err);
 *     kyb_kube_config_clear(&cfg);                           // the client keeps a copy
 *     static const kyb_kube_resource checkpoints = {"kybernate.io", "v1alpha1", "checkpoints",
 *                                                   true};
 *     json_t *obj = NULL;
 *     if (kyb_kube_get(c, &checkpoints, "default", "x", &obj, err) < 0 &&
 *         kyb_kube_status_of(*err) == 404) ...
 *
 * Contract:
 *  - One client = one libcurl handle = one connection at a time (HTTP/1.1,
 *    kept alive): use a client from one thread at a time; a watch occupies
 *    its client for as long as it runs, so a program that watches and writes
 *    at once uses two clients.
 *  - ns NULL means the configuration's default namespace; "" (namespaced
 *    resources, list and watch only) means all namespaces.  Cluster-scoped
 *    resources ignore ns.
 *  - Results are new references (json_decref); inputs are only read.
 *  - A failed call returns -1 with err.  When the API server answered with an
 *    error status, the root message reads
 *        kube: create kybernate.io/v1alpha1 checkpoints default/x: 409 AlreadyExists: <message>
 *    and kyb_kube_status_of(err) / kyb_kube_reason_of(err) give the HTTP code
 *    and the Status reason back (they survive kyb_error_wrap).  Transport
 *    failures read "kube: <verb> <what>: <why> (server <url>)" and carry no
 *    code (kyb_kube_status_of answers 0).
 *  - Everything from the server is untrusted: bodies are size-limited
 *    (max_body), must be JSON objects, and Status fields are sanitised
 *    before they reach a message.
 *  - Cancellation: kyb_kube_client_set_cancel gives the client an fd (e.g.
 *    the read end of a pipe or an eventfd) and/or a flag; once the fd is
 *    readable or the flag non-zero, the call in progress and every later one
 *    (and every backoff wait) fails with ECANCELED within ~100 ms.  No
 *    threads are started.
 */
#ifndef KYB_KUBE_CLIENT_H
#define KYB_KUBE_CLIENT_H

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kube/config.h"
#include "util/error.h"

#define KYB_KUBE_DEFAULT_TIMEOUT_MS 30000
#define KYB_KUBE_DEFAULT_MAX_BODY (32u << 20)
#define KYB_KUBE_DEFAULT_MAX_LINE (8u << 20)

/* A resource: group "" is the core group (/api/v1), anything else /apis/<group>/<version>. */
typedef struct {
  const char *group;
  const char *version;
  const char *plural;
  bool namespaced;
} kyb_kube_resource;

extern const kyb_kube_resource kyb_kube_res_pods;
extern const kyb_kube_resource kyb_kube_res_nodes;
extern const kyb_kube_resource kyb_kube_res_namespaces;
extern const kyb_kube_resource kyb_kube_res_events;
extern const kyb_kube_resource kyb_kube_res_leases;

typedef struct kyb_kube_client kyb_kube_client;

typedef struct {
  long timeout_ms;        /* per request except watches; 0: KYB_KUBE_DEFAULT_TIMEOUT_MS */
  size_t max_body;        /* response body limit; 0: KYB_KUBE_DEFAULT_MAX_BODY */
  size_t max_line;        /* one watch event line; 0: KYB_KUBE_DEFAULT_MAX_LINE */
  const char *user_agent; /* NULL: "kybernate/<version>" */
} kyb_kube_client_opts;

/* Copies cfg (validated first); opts may be NULL. */
int kyb_kube_client_new(const kyb_kube_config *cfg, const kyb_kube_client_opts *opts,
                        kyb_kube_client **out, kyb_error **err);
void kyb_kube_client_free(kyb_kube_client *c);

const kyb_kube_config *kyb_kube_client_config(const kyb_kube_client *c);

/* fd < 0: none; flag NULL: none.  Neither is owned. */
void kyb_kube_client_set_cancel(kyb_kube_client *c, int fd, const volatile sig_atomic_t *flag);
bool kyb_kube_client_cancelled(const kyb_kube_client *c);

/* Waits ms milliseconds unless cancelled (then -1, ECANCELED). */
int kyb_kube_sleep(kyb_kube_client *c, long ms, kyb_error **err);

/* ---- calls ---- */

int kyb_kube_get(kyb_kube_client *c, const kyb_kube_resource *res, const char *ns, const char *name,
                 json_t **out, kyb_error **err);

typedef struct {
  const char *label_selector;   /* "app=web,tier in (a,b)"; see kyb_kube_label_selector */
  const char *field_selector;   /* "spec.nodeName=n1"; see kyb_kube_field_selector */
  long limit;                   /* page size; 0: no paging */
  const char *continue_token;   /* from the previous page's metadata.continue */
  const char *resource_version; /* NULL: most recent (quorum read) */
} kyb_kube_list_opts;

/* One page: the List object as the server sent it (items checked to be an
 * array of objects, metadata.resourceVersion to be a string). */
int kyb_kube_list(kyb_kube_client *c, const kyb_kube_resource *res, const char *ns,
                  const kyb_kube_list_opts *opts, json_t **out, kyb_error **err);

/* Every page (opts->limit per page, 0: 500, negative: one request), items
 * joined: *items is an array, *rv (heap) the resourceVersion of the list to
 * watch from.  A continue token that expired mid-way (410) restarts the list
 * once without paging, as client-go's pager does. */
int kyb_kube_list_all(kyb_kube_client *c, const kyb_kube_resource *res, const char *ns,
                      const kyb_kube_list_opts *opts, json_t **items, char **rv, kyb_error **err);

/* ns NULL: the object's metadata.namespace, else the default namespace. */
int kyb_kube_create(kyb_kube_client *c, const kyb_kube_resource *res, const char *ns,
                    const json_t *obj, json_t **out, kyb_error **err);

/* PUT of the whole object (metadata.name, .namespace and .resourceVersion
 * from obj; a stale resourceVersion is 409 Conflict).  subresource NULL or
 * "status". */
int kyb_kube_update(kyb_kube_client *c, const kyb_kube_resource *res, const json_t *obj,
                    const char *subresource, json_t **out, kyb_error **err);

/* JSON merge patch (RFC 7386, application/merge-patch+json).  subresource
 * NULL or "status".  A metadata.resourceVersion in the patch makes it
 * conditional (409 when stale). */
int kyb_kube_patch(kyb_kube_client *c, const kyb_kube_resource *res, const char *ns,
                   const char *name, const json_t *patch, const char *subresource, json_t **out,
                   kyb_error **err);

typedef struct {
  const char *propagation_policy; /* "Foreground", "Background", "Orphan"; NULL: server default */
  const char *precondition_uid;   /* delete only this incarnation */
  const char *precondition_rv;    /* delete only at this resourceVersion */
  long grace_period_seconds;      /* < 0: server default; 0 and up sent as is */
} kyb_kube_delete_opts;

/* opts NULL: server defaults.  *out (may be NULL): what the server answered
 * (the object with deletionTimestamp while finalizers remain, or a Status). */
int kyb_kube_delete(kyb_kube_client *c, const kyb_kube_resource *res, const char *ns,
                    const char *name, const kyb_kube_delete_opts *opts, json_t **out,
                    kyb_error **err);

/* Changes obj in place for a read-modify-write.  0: write it; 1: nothing to
 * change (no write, the call succeeds with the object as read); -1: fail. */
typedef int (*kyb_kube_mutate_fn)(void *ud, json_t *obj, kyb_error **err);

typedef struct {
  int attempts;        /* 0: 5 */
  long backoff_ms;     /* first wait, doubled each time with up to 10% jitter; 0: 10 ms */
  long max_backoff_ms; /* 0: 1000 ms */
} kyb_kube_retry;

/* Get, mutate, PUT (subresource NULL or "status"); on 409 Conflict wait and
 * do it all again, up to retry->attempts times (retry NULL: defaults).  The
 * mutate callback must be repeatable: it gets a fresh copy of the object each
 * time.  *out (may be NULL): the object as written.  *attempts_made (may be
 * NULL): how many PUTs were tried. */
int kyb_kube_modify(kyb_kube_client *c, const kyb_kube_resource *res, const char *ns,
                    const char *name, const char *subresource, kyb_kube_mutate_fn mutate, void *ud,
                    const kyb_kube_retry *retry, json_t **out, int *attempts_made, kyb_error **err);

/* ---- errors ---- */

/* The HTTP status the API server answered with, read back from the root of
 * an error from this client; 0 for NULL or a failure that came without one. */
int kyb_kube_status_of(const kyb_error *err);

/* The Status reason ("NotFound", "AlreadyExists", "Conflict", "Expired", …)
 * into buf; "" when none.  Returns buf. */
const char *kyb_kube_reason_of(const kyb_error *err, char *buf, size_t size);

/* The errno an HTTP status maps to (404 ENOENT, 409 EEXIST or EBUSY by
 * reason, 410 ESTALE, 401/403 EACCES, 422/400 EINVAL, 429/503 EAGAIN, 504
 * ETIMEDOUT, other EIO). */
int kyb_kube_status_errno(long code, const char *reason);

/* Turns an API answer into err: body (may be NULL) is parsed as a Status
 * when it is one; otherwise the HTTP code's standard reason and the start of
 * the body.  Always returns -1. */
int kyb_kube_status_error(const char *what, long code, const char *body, size_t len,
                          kyb_error **err);

/* ---- URLs and selectors (pure) ---- */

/* "/apis/<g>/<v>[/namespaces/<ns>]/<plural>[/<name>[/<sub>]]"; ns NULL or ""
 * leaves out the namespace; segments are checked and percent-encoded. */
int kyb_kube_path(const kyb_kube_resource *res, const char *ns, const char *name,
                  const char *subresource, char **out, kyb_error **err);

/* Percent-encoding for a query value (RFC 3986 unreserved stay).  NULL on
 * ENOMEM. */
char *kyb_kube_escape(const char *s);

/* "k=v,k2=v2" from NULL-terminated key, value pairs, each key and value
 * checked against Kubernetes' label syntax (so no selector can be smuggled
 * in through a value). */
int kyb_kube_label_selector(const char *const *pairs, char **out, kyb_error **err);

/* "f=v,f2=v2" with values escaped the way fields.EscapeValue does (\\ \, \=). */
int kyb_kube_field_selector(const char *const *pairs, char **out, kyb_error **err);

/* ---- time (RFC 3339 as Kubernetes writes it) ---- */

int64_t kyb_kube_now_us(void);
/* micro: "2006-01-02T15:04:05.000000Z" (MicroTime), else "2006-01-02T15:04:05Z" (Time). */
void kyb_kube_time_format(int64_t us, bool micro, char *buf, size_t size);
/* Any RFC 3339 date-time (fraction optional, Z or ±hh:mm). */
int kyb_kube_time_parse(const char *s, int64_t *us, kyb_error **err);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A CheckpointRequest (kybernate.io/v1alpha1, docs/api.md) as the agent reads
 * it: spec and the status fields the claim protocol looks at, parsed from the
 * API server's JSON and checked again here.
 *
 * The API server validates against the CRD, but the agent is privileged and
 * the object is outside input: a cluster without the CRD's schema (or an
 * older one) must not make it checkpoint a pod of another node, write to an
 * arbitrary host path or loop on a malformed field.  So every field the
 * agent acts on is type-, pattern- and size-checked; defaults are the CRD's
 * (action Checkpoint, leaveRunning true, gpuLockTimeoutSeconds 10,
 * deadlineSeconds 3600) for servers that do not apply them.
 *
 * Pure: no I/O, no clock.
 */
#ifndef KYB_AGENT_REQUEST_H
#define KYB_AGENT_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define KYB_AGENT_GROUP_VERSION "kybernate.io/v1alpha1"
#define KYB_AGENT_KIND "CheckpointRequest"
#define KYB_AGENT_NODE_LABEL "kybernate.io/node"
#define KYB_AGENT_MAX_ITEMS 64 /* containers, imageRefs (the CRD's maxItems) */
#define KYB_AGENT_DEFAULT_LOCK_TIMEOUT_S 10
#define KYB_AGENT_DEFAULT_DEADLINE_S 3600

typedef enum {
  KYB_AGENT_ACTION_CHECKPOINT,
  KYB_AGENT_ACTION_DELETE_IMAGE,
} kyb_agent_action;

typedef enum {
  KYB_AGENT_PHASE_PENDING, /* also: no status yet */
  KYB_AGENT_PHASE_RUNNING,
  KYB_AGENT_PHASE_COMPLETED,
  KYB_AGENT_PHASE_FAILED,
} kyb_agent_phase;

const char *kyb_agent_phase_name(kyb_agent_phase p);

typedef struct {
  /* metadata */
  char *ns, *name, *uid, *resource_version;
  int64_t generation;
  char *node_label; /* kybernate.io/node, NULL when absent */
  /* spec */
  kyb_agent_action action;
  char *node;
  char *pod_ns, *pod_name, *pod_uid; /* Checkpoint only */
  char **containers;                 /* NULL-terminated; Checkpoint only */
  size_t ncontainers;
  char *storage; /* NULL: the node's default store */
  bool leave_running;
  unsigned gpu_lock_timeout_s;
  long deadline_s;
  char **image_refs; /* NULL-terminated; DeleteImage only */
  size_t nimage_refs;
  char *checkpoint_name, *checkpoint_uid;
  /* status (what the claim protocol needs) */
  kyb_agent_phase phase;
  char *step;
  long attempts;
  char *holder_pod, *holder_uid; /* status.agent, NULL when unclaimed */
  int64_t started_us;            /* status.startedAt; 0 when unset */
  int64_t renew_us;              /* status.agent.renewTime; 0 when unset */
} kyb_agent_request;

/* Parses and checks obj (a CheckpointRequest as the API server returns it).
 * EINVAL with a message naming the field when something is malformed; the
 * partial *out is released on failure.  When the metadata is usable but the
 * spec is not, *out keeps ns/name/uid/resource_version/generation and the
 * status fields so the caller can still fail the request (the return value
 * is then -1 and out->name is set). */
int kyb_agent_request_parse(const json_t *obj, kyb_agent_request *out, kyb_error **err);
void kyb_agent_request_clear(kyb_agent_request *r);

/* True for Completed and Failed: nothing may change it any more. */
bool kyb_agent_request_final(const kyb_agent_request *r);

/* The image name of one container's checkpoint, fixed by the request alone
 * so that an agent restarted mid-checkpoint knows what the previous one was
 * publishing:  <pod>-<container>-<YYYYMMDD>-<HHMMSS>-<uid5>,  the time being
 * status.startedAt (set at the first claim, kept by takeovers) and uid5 the
 * first five alphanumerics of the request's uid (two requests of one pod in
 * the same second do not collide).  The pod part is shortened to keep the
 * name within KYB_IMAGE_NAME_MAX. */
int kyb_agent_image_name(const kyb_agent_request *r, const char *container, char **out,
                         kyb_error **err);

/* Syntax checks shared with the local API (pure). */
bool kyb_agent_dns_label_valid(const char *s);     /* RFC 1123 label, <= 63 */
bool kyb_agent_dns_subdomain_valid(const char *s); /* RFC 1123 subdomain, <= 253 */
/* A store URI as the CRD allows it (file://, oci://, s3://; no blank, ',', '='). */
bool kyb_agent_store_uri_valid(const char *s);
/* An image reference: a bare image name, or <store-uri>/<name>. */
bool kyb_agent_image_ref_valid(const char *s);

#endif

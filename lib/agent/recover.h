/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Recovery from the node's own state, for a checkpoint that did not end in
 * its own process: the worker was killed (deadline, shutdown, the request
 * deleted), crashed, or the whole agent died and a new one took the request
 * over (docs/api.md, claim protocol step 4).
 *
 * lib/ops/checkpoint rolls back within its process; these functions redo the
 * same rollback from outside, from what containerd, the CUDA driver and the
 * store say now:
 *   - the container's task PAUSED (or PAUSING) -> Tasks.Resume.  containerd's
 *     runc shim serialises Resume behind a Checkpoint still in flight, so a
 *     dump that outlived its worker finishes (or fails) first;
 *   - then, with the task running, every CUDA process of the task that is
 *     LOCKED or CHECKPOINTED -> restore + unlock (lib/cuda group);
 *   - staging directories of dead processes removed from the store;
 *   - "was the image published?": the store has it under the request's name
 *     with a readable manifest (publishing is atomic, so present = complete).
 */
#ifndef KYB_AGENT_RECOVER_H
#define KYB_AGENT_RECOVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

/* Which container: a Kubernetes one (pod_* set; namespace k8s.io) or a
 * containerd container id in a namespace. */
typedef struct {
  const char *address; /* containerd socket; NULL: the default */
  const char *namespace_;
  const char *container_id;
  const char *pod_namespace, *pod_name, *container_name;
  /* The checkpoint was a hibernation whose image is published: end the task
   * (as the checkpoint would have) instead of resuming it. */
  bool stop;
} kyb_agent_recover_target;

typedef struct {
  bool found;            /* the container exists (else nothing was done) */
  bool had_task;         /* it has a task */
  bool resumed;          /* the task was paused: resumed */
  bool stopped;          /* stop: the task was killed */
  size_t gpu_processes;  /* CUDA processes found */
  size_t gpu_restored;   /* of those, brought back to RUNNING */
  char status_after[16]; /* task status afterwards, "" when no task */
} kyb_agent_recover_report;

/* Brings the container back to running (or stopped, with t->stop).  A
 * container or task that is gone is not an error (nothing to bring back).
 * -1 when a step failed: the error names what is left (e.g. "still paused"). */
int kyb_agent_recover_container(const kyb_agent_recover_target *t, kyb_agent_recover_report *out,
                                kyb_error **err);

/* One line for logs, events and condition messages, e.g. "container main:
 * task was PAUSED, resumed; 1 CUDA process restored and unlocked". */
void kyb_agent_recover_describe(const kyb_agent_recover_report *r, const char *what, char *buf,
                                size_t size);

/* What a published image says about itself. */
typedef struct {
  char *ref;    /* <store>/<name> */
  char *digest; /* sha256 of manifest.json */
  uint64_t size;
  json_t *gpus; /* the manifest's gpus (array), NULL when none */
  json_t *timings;
} kyb_agent_image_info;

void kyb_agent_image_info_clear(kyb_agent_image_info *i);

/* 1 when store `store_uri` holds image `name` with a valid manifest (info
 * filled when not NULL), 0 when it does not hold it, -1 on error. */
int kyb_agent_image_published(const char *store_uri, const char *name, kyb_agent_image_info *info,
                              kyb_error **err);

/* Removes staging leftovers (of processes that are gone: no live process
 * holds their flock) from a file:// store; remote stores are left to the
 * uploader.  Returns how many were removed.  Failures are logged, not
 * returned: they cost disk, not correctness. */
size_t kyb_agent_store_cleanup(const char *store_uri);

/* Deletes image `name` from the store; an image that is not there is no
 * error (*existed says). */
int kyb_agent_image_delete(const char *store_uri, const char *name, bool *existed, kyb_error **err);

#endif

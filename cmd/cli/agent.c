/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CLI through kybernate-agent's local API (--agent or
 * $KYBERNATE_AGENT_SOCKET): a checkpoint runs in the agent's worker queue
 * (one at a time on the node, with CheckpointRequests), a remote image is
 * fetched into the node cache by the agent's uploader.  This process then
 * needs neither containerd nor storage access for those steps.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/client.h"
#include "cli.h"
#include "util/cleanup.h"

#define AGENT_LOCK_MAX_S 600 /* what the agent accepts as gpuLockTimeoutSeconds */

static json_t *checkpoint_body(const kyb_cli *cli, const kyb_checkpoint_opts *o, bool store_given,
                               kyb_error **err) {
  json_t *b = json_pack("{s:b}", "leaveRunning", o->leave_running);
  if (b == NULL) {
    kyb_error_set(err, ENOMEM, "agent request");
    return NULL;
  }
  if (o->pod_name != NULL) {
    cleanup_free char *pod = NULL;
    if (asprintf(&pod, "%s/%s", o->pod_namespace, o->pod_name) < 0)
      pod = NULL;
    json_object_set_new(b, "pod", json_string(pod ? pod : ""));
    json_object_set_new(b, "container", json_string(o->container_name));
  } else {
    json_object_set_new(b, "container", json_string(o->container));
    json_object_set_new(b, "namespace", json_string(cli->namespace_));
  }
  if (store_given)
    json_object_set_new(b, "store", json_string(o->store_uri));
  if (o->name != NULL)
    json_object_set_new(b, "name", json_string(o->name));
  if (o->open_tcp)
    json_object_set_new(b, "tcpEstablished", json_true());
  if (o->file_locks)
    json_object_set_new(b, "fileLocks", json_true());
  if (o->external_unix_sockets)
    json_object_set_new(b, "extUnixSk", json_true());
  if (o->gpu_lock_timeout_ms > 0) {
    unsigned s = (o->gpu_lock_timeout_ms + 999) / 1000;
    if (s > AGENT_LOCK_MAX_S) {
      json_decref(b);
      kyb_error_set(err, EINVAL, "through the agent --gpu-lock-timeout is at most %d seconds",
                    AGENT_LOCK_MAX_S);
      return NULL;
    }
    json_object_set_new(b, "gpuLockTimeoutSeconds", json_integer(s));
  }
  return b;
}

static char *dup_field(const json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return strdup(s ? s : "");
}

int cli_agent_checkpoint(const kyb_cli *cli, const kyb_checkpoint_opts *o, bool store_given,
                         kyb_checkpoint_result *out, kyb_error **err) {
  cleanup_json json_t *b = checkpoint_body(cli, o, store_given, err);
  if (b == NULL)
    return -1;
  if (cli->progress)
    fprintf(stderr, "kybernate: checkpoint through kybernate-agent at %s ...\n", cli->agent);
  kyb_agent_client *c = NULL;
  cleanup_json json_t *a = NULL;
  int r = kyb_agent_client_new(cli->agent, &c, err);
  if (r == 0)
    r = kyb_agent_client_checkpoint(c, b, &a, err);
  kyb_agent_client_free(c);
  if (r < 0)
    return -1;
  kyb_checkpoint_result res = {
      .container_id = dup_field(a, "container"),
      .name = dup_field(a, "name"),
      .ref = dup_field(a, "ref"),
      .digest = dup_field(a, "digest"),
      .size = (uint64_t)json_integer_value(json_object_get(a, "size")),
      .total_ms = (uint64_t)json_integer_value(json_object_get(a, "totalMs")),
  };
  if (res.container_id == NULL || res.name == NULL || res.ref == NULL || res.digest == NULL) {
    kyb_checkpoint_result_clear(&res);
    return kyb_error_set(err, ENOMEM, "checkpoint result");
  }
  *out = res;
  return 0;
}

int cli_agent_fetch(const kyb_cli *cli, const char *ref, kyb_error **err) {
  if (cli->progress)
    fprintf(stderr, "kybernate: fetching %s through kybernate-agent at %s ...\n", ref, cli->agent);
  kyb_agent_client *c = NULL;
  kyb_agent_fetched f = {0};
  int r = kyb_agent_client_new(cli->agent, &c, err);
  if (r == 0)
    r = kyb_agent_client_fetch(c, ref, &f, err);
  kyb_agent_client_free(c);
  kyb_agent_fetched_clear(&f);
  return r;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kybernate-agent: the node agent (docs/agent.md).
 *
 *     kyb_agent_config cfg = {.node = "gpu-node-a", ...};
 *     kyb_agent_config_from_env(&cfg);        // NODE_NAME, POD_NAME, ... (flags win)
 *     return kyb_agent_run(&cfg, stop_fd, &stop_flag, err);
 *
 * One process per node (host flock on <state-dir>/agent.lock, taken before
 * anything else).  Three threads:
 *   - main: the informer on CheckpointRequests labelled kybernate.io/node=<node>
 *     (all namespaces); it only queues request names;
 *   - worker: takes queued items one at a time (one checkpoint at a time per
 *     node), re-reads each request, claims/takes over/skips it (claim.h),
 *     runs the checkpoint in a child process (worker.h) with renewals, the
 *     deadline and the final status; also runs the local API's checkpoints;
 *   - libmicrohttpd's: the local unix-socket API (api.h).
 * Stopping (stop_fd readable or *stop_flag set, i.e. SIGTERM): no new claims;
 * a checkpoint in progress may finish for `shutdown_grace_s`, after that its
 * worker is killed, the container brought back and the request failed
 * (AgentRestarted); then everything is released and kyb_agent_run returns 0.
 */
#ifndef KYB_AGENT_AGENT_H
#define KYB_AGENT_AGENT_H

#include <signal.h>
#include <stdbool.h>

#include "util/error.h"

#define KYB_AGENT_DEFAULT_STATE_DIR "/var/lib/kybernate"
#define KYB_AGENT_DEFAULT_SOCKET "/run/kybernate/agent.sock"
#define KYB_AGENT_LOCK_NAME "agent.lock"
#define KYB_AGENT_DEFAULT_GRACE_S 90

typedef struct {
  const char *node;        /* --node / NODE_NAME (required unless standalone) */
  const char *pod_name;    /* POD_NAME: status.agent.podName (default: the host name) */
  const char *pod_uid;     /* POD_UID: status.agent.podUID (default: "pid-<pid>") */
  const char *kubeconfig;  /* --kubeconfig; NULL: in-cluster, $KUBECONFIG, ~/.kube/config */
  const char *containerd;  /* --containerd / KYBERNATE_CONTAINERD_ADDRESS */
  const char *store;       /* --store: default store; NULL: the node config's defaultStore */
  const char *config_path; /* --config / KYBERNATE_CONFIG: node config (nodeconf.h) */
  const char *state_dir;   /* --state-dir; NULL: KYB_AGENT_DEFAULT_STATE_DIR */
  const char *socket;      /* --socket / KYBERNATE_AGENT_SOCKET; "" or "none": no local API */
  const char *uploader;    /* KYBERNATE_UPLOADER_SOCKET; NULL: remote stores written directly */
  const char *exe;         /* this binary, for the checkpoint worker; NULL: /proc/self/exe */
  const char *log_level;   /* handed to the worker (NULL: the worker's default) */
  const char *log_format;
  bool standalone;       /* no Kubernetes: the local API only */
  long shutdown_grace_s; /* 0: KYB_AGENT_DEFAULT_GRACE_S */
} kyb_agent_config;

/* Fills unset fields from the environment (the DaemonSet's contract:
 * NODE_NAME, POD_NAME, POD_UID, KYBERNATE_CONTAINERD_ADDRESS,
 * KYBERNATE_AGENT_SOCKET, KYBERNATE_UPLOADER_SOCKET, KYBERNATE_CONFIG,
 * KYBERNATE_STORE).  Strings point into the environment. */
void kyb_agent_config_from_env(kyb_agent_config *cfg);

/* Checks the configuration (node name syntax, absolute paths). */
int kyb_agent_config_check(const kyb_agent_config *cfg, kyb_error **err);

/* Runs the agent until stopped.  stop_fd (< 0: none) and stop_flag (may be
 * NULL) are set by the caller's signal handler.  Fails at once with
 * EWOULDBLOCK when another agent holds the node's lock. */
int kyb_agent_run(const kyb_agent_config *cfg, int stop_fd, volatile sig_atomic_t *stop_flag,
                  kyb_error **err);

/* The host lock: an open fd holding flock(LOCK_EX) on <dir>/agent.lock, or
 * -1 with EWOULDBLOCK naming the holder's pid when another agent has it. */
int kyb_agent_lock(const char *state_dir, kyb_error **err);

#endif

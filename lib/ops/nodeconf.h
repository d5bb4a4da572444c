/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node's Kybernate configuration: which stores this node may restore
 * from, which is the default, and which OCI runtime kybernate-runc delegates
 * to.  Read from /etc/kybernate/config.json (or $KYBERNATE_CONFIG); a missing
 * file means the built-in defaults.
 *
 *     {
 *       "defaultStore": "file:///var/lib/kybernate/images",
 *       "stores": ["file:///mnt/shared/images"],
 *       "runtime": {"delegate": "runc"},
 *       "agentSocket": "/run/kybernate/agent.sock"
 *     }
 *
 * agentSocket (optional): kybernate-agent's local API; kybernate-runc then
 * has the agent fetch remote (oci://, s3://) images instead of reading
 * storage itself (ops/resolve.h).  The default store is always allowed.  The file is outside input:
 * size- limited, every field type-checked, unknown fields rejected so a typo is reported instead of
 * silently ignored.
 */
#ifndef KYB_OPS_NODECONF_H
#define KYB_OPS_NODECONF_H

#include <stddef.h>

#include "util/error.h"

#define KYB_NODECONF_DEFAULT_PATH "/etc/kybernate/config.json"

typedef struct {
  char *path;          /* the file read, or NULL when defaults were used */
  char *default_store; /* a store URI */
  char **stores;       /* every allowed store URI, default first */
  size_t nstores;
  char *delegate;     /* runtime kybernate-runc delegates to */
  char *agent_socket; /* kybernate-agent's socket, or NULL */
} kyb_nodeconf;

/* path NULL: $KYBERNATE_CONFIG, else KYB_NODECONF_DEFAULT_PATH.  A missing
 * file at the default path gives the defaults; a missing file named
 * explicitly is an error. */
int kyb_nodeconf_load(const char *path, kyb_nodeconf *out, kyb_error **err);

/* Parses configuration JSON held in memory (the loader's core; tests use it). */
int kyb_nodeconf_parse(const char *data, size_t len, kyb_nodeconf *out, kyb_error **err);

void kyb_nodeconf_clear(kyb_nodeconf *c);

#endif

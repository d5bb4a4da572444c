/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where the Kubernetes API server is and how to authenticate to it.
 *
 * Four sources, each filling the same kyb_kube_config:
 *  - in-cluster: KUBERNETES_SERVICE_HOST/PORT and the service account's
 *    token, ca.crt and namespace files (the token file is re-read by the
 *    client whenever it changes: projected tokens rotate);
 *  - kubeconfig: $KUBECONFIG (a ':'-separated list, merged the way kubectl
 *    does: the first file that names a cluster/user/context wins) or
 *    ~/.kube/config, YAML (the subset in yaml.h) or JSON;
 *  - explicit: server URL + token + CA file, for tests and tools;
 *  - auto (kyb_kube_config_load): the first that applies, see below.
 *
 * Every string field is owned by the config (heap, NULL when unset);
 * callers may replace one with a strdup'ed value (e.g. unix_socket in
 * tests).  kyb_kube_config_clear releases them all.
 */
#ifndef KYB_KUBE_CONFIG_H
#define KYB_KUBE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

#define KYB_KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define KYB_KUBE_MAX_CONFIG_FILE (4u << 20) /* a kubeconfig, a CA bundle, a certificate */
#define KYB_KUBE_MAX_TOKEN (64u << 10)

typedef struct {
  char *server;     /* "https://host:port[/prefix]"; http:// is accepted (tests) */
  char *ns;         /* default namespace: the context's, the service account's, or "default" */
  char *token;      /* static bearer token */
  char *token_file; /* bearer token file, re-read when it changes; wins over token */
  char *ca_file;    /* PEM CA bundle that verifies the server */
  char *ca_data;    /* PEM bytes (certificate-authority-data, decoded) */
  size_t ca_data_len;
  char *cert_file; /* client certificate (PEM) */
  char *cert_data;
  size_t cert_data_len;
  char *key_file; /* client key (PEM) */
  char *key_data;
  size_t key_data_len;
  bool insecure;     /* insecure-skip-tls-verify: no server verification at all */
  char *unix_socket; /* connect to this unix socket instead of the server's host (tests) */
  char *source;      /* where this came from, for messages: "in-cluster", "kubeconfig …" */
} kyb_kube_config;

void kyb_kube_config_clear(kyb_kube_config *cfg);

/* Deep copy; dst is overwritten (not cleared first). */
int kyb_kube_config_copy(kyb_kube_config *dst, const kyb_kube_config *src, kyb_error **err);

/* In-cluster: server https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
 * (an IPv6 host gets brackets), token_file and ca_file in sa_dir (NULL:
 * KYB_KUBE_SA_DIR), namespace from sa_dir/namespace ("default" when that
 * file is absent).  Fails with ENOENT when the variables are unset, and when
 * the token or the CA file is missing or unreadable (no fallback to the
 * system CAs: in a pod, a missing ca.crt is a broken mount). */
int kyb_kube_config_in_cluster(const char *sa_dir, kyb_kube_config *out, kyb_error **err);

/* kubeconfig: paths is one file or a ':'-separated list (NULL: $KUBECONFIG,
 * else ~/.kube/config).  In a list, missing files are skipped (kubectl does
 * the same); a single named file must exist.  context NULL: current-context.
 * Supported per cluster: server, certificate-authority(-data),
 * insecure-skip-tls-verify; per user: token, tokenFile,
 * client-certificate(-data), client-key(-data); per context: cluster, user,
 * namespace.  Relative file paths are relative to the kubeconfig file that
 * names them.  Fields that change how to connect or authenticate and that
 * are not supported (exec, auth-provider, username/password, impersonation,
 * proxy-url, tls-server-name, …) are errors that name the field; only
 * `extensions`, `preferences`, `disable-compression` and `location-of-origin`
 * are ignored. */
int kyb_kube_config_kubeconfig(const char *paths, const char *context, kyb_kube_config *out,
                               kyb_error **err);

/* The same from text already in memory (tests; `what` names it in messages,
 * and relative paths are relative to `dir`, NULL: the working directory). */
int kyb_kube_config_kubeconfig_text(const char *text, size_t len, const char *what, const char *dir,
                                    const char *context, kyb_kube_config *out, kyb_error **err);

/* Explicit: server (required), token and ca_file optional. */
int kyb_kube_config_explicit(const char *server, const char *token, const char *ca_file,
                             kyb_kube_config *out, kyb_error **err);

/* Auto, in this order: an explicit kubeconfig path (non-NULL `kubeconfig`);
 * $KUBECONFIG when set and not empty; in-cluster when
 * KUBERNETES_SERVICE_HOST is set; ~/.kube/config when it exists.  Nothing
 * found: ENOENT naming every place looked at. */
int kyb_kube_config_load(const char *kubeconfig, const char *context, kyb_kube_config *out,
                         kyb_error **err);

/* Checks what the client relies on: a server URL with http(s)://, a host,
 * and no query or fragment; cert and key given together.  Every loader
 * calls it; call it after changing fields by hand. */
int kyb_kube_config_validate(const kyb_kube_config *cfg, kyb_error **err);

/* Strict base64 (RFC 4648 standard alphabet, padding required); CR and LF
 * are skipped as Go's decoder does, any other stray byte is an error.  *out
 * is heap and NUL-terminated. */
int kyb_kube_base64_decode(const char *in, size_t len, char **out, size_t *out_len,
                           kyb_error **err);

#endif

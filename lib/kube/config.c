/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Configuration sources other than kubeconfig (kubeconfig.c): in-cluster,
 * explicit, the auto order, and the checks every source shares.  Contract in
 * config.h.
 */
#include "kube/config.h"

#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kube/internal.h"
#include "util/cleanup.h"
#include "util/fs.h"

void kyb_kube_config_clear(kyb_kube_config *cfg) {
  if (cfg == NULL)
    return;
  free(cfg->server);
  free(cfg->ns);
  free(cfg->token);
  free(cfg->token_file);
  free(cfg->ca_file);
  free(cfg->ca_data);
  free(cfg->cert_file);
  free(cfg->cert_data);
  free(cfg->key_file);
  free(cfg->key_data);
  free(cfg->unix_socket);
  free(cfg->source);
  memset(cfg, 0, sizeof(*cfg));
}

static int dup_str(char **dst, const char *src) {
  *dst = NULL;
  if (src == NULL)
    return 0;
  *dst = strdup(src);
  return *dst == NULL ? -1 : 0;
}

static int dup_bytes(char **dst, size_t *dlen, const char *src, size_t len) {
  *dst = NULL;
  *dlen = 0;
  if (src == NULL)
    return 0;
  *dst = malloc(len + 1);
  if (*dst == NULL)
    return -1;
  memcpy(*dst, src, len);
  (*dst)[len] = '\0';
  *dlen = len;
  return 0;
}

int kyb_kube_config_copy(kyb_kube_config *dst, const kyb_kube_config *src, kyb_error **err) {
  memset(dst, 0, sizeof(*dst));
  int bad = 0;
  bad |= dup_str(&dst->server, src->server);
  bad |= dup_str(&dst->ns, src->ns);
  bad |= dup_str(&dst->token, src->token);
  bad |= dup_str(&dst->token_file, src->token_file);
  bad |= dup_str(&dst->ca_file, src->ca_file);
  bad |= dup_bytes(&dst->ca_data, &dst->ca_data_len, src->ca_data, src->ca_data_len);
  bad |= dup_str(&dst->cert_file, src->cert_file);
  bad |= dup_bytes(&dst->cert_data, &dst->cert_data_len, src->cert_data, src->cert_data_len);
  bad |= dup_str(&dst->key_file, src->key_file);
  bad |= dup_bytes(&dst->key_data, &dst->key_data_len, src->key_data, src->key_data_len);
  bad |= dup_str(&dst->unix_socket, src->unix_socket);
  bad |= dup_str(&dst->source, src->source);
  dst->insecure = src->insecure;
  if (bad) {
    kyb_kube_config_clear(dst);
    return kyb_error_set(err, ENOMEM, "copy Kubernetes configuration");
  }
  return 0;
}

int kyb_kube_config_validate(const kyb_kube_config *cfg, kyb_error **err) {
  const char *s = cfg->server;
  if (s == NULL || s[0] == '\0')
    return kyb_error_set(err, EINVAL, "no API server URL");
  const char *host = NULL;
  if (strncmp(s, "https://", 8) == 0)
    host = s + 8;
  else if (strncmp(s, "http://", 7) == 0)
    host = s + 7;
  else
    return kyb_error_set(err, EINVAL, "API server URL '%s' is neither http:// nor https://", s);
  if (host[0] == '\0' || host[0] == '/')
    return kyb_error_set(err, EINVAL, "API server URL '%s' has no host", s);
  for (const char *c = s; *c != '\0'; c++)
    if (*c == '?' || *c == '#' || (unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
      return kyb_error_set(err, EINVAL,
                           "API server URL '%s' may not carry a query, a fragment, blanks or "
                           "control characters",
                           s);
  if ((cfg->cert_file != NULL || cfg->cert_data != NULL) !=
      (cfg->key_file != NULL || cfg->key_data != NULL))
    return kyb_error_set(err, EINVAL,
                         "a client certificate needs its key and the key its "
                         "certificate");
  if (cfg->ns == NULL || kube_check_name(cfg->ns, "namespace", err) < 0)
    return cfg->ns == NULL ? kyb_error_set(err, EINVAL, "no default namespace") : -1;
  return 0;
}

/* The server URL without trailing slashes: paths are appended to it. */
int kube_config_set_server(kyb_kube_config *cfg, const char *server, kyb_error **err) {
  size_t n = strlen(server);
  while (n > 0 && server[n - 1] == '/')
    n--;
  free(cfg->server);
  cfg->server = strndup(server, n);
  if (cfg->server == NULL)
    return kyb_error_set(err, ENOMEM, "API server URL");
  return 0;
}

static bool valid_port(const char *p) {
  if (p[0] == '\0' || strlen(p) > 5)
    return false;
  for (const char *c = p; *c != '\0'; c++)
    if (!isdigit((unsigned char)*c))
      return false;
  long v = strtol(p, NULL, 10);
  return v >= 1 && v <= 65535;
}

static bool valid_host(const char *h) {
  for (const char *c = h; *c != '\0'; c++)
    if (!(isalnum((unsigned char)*c) || *c == '.' || *c == '-' || *c == ':' || *c == '_'))
      return false;
  return h[0] != '\0';
}

/* The namespace file: trimmed, "default" when absent. */
static int read_sa_namespace(const char *dir, char **out, kyb_error **err) {
  cleanup_free char *path = kyb_path_join(dir, "namespace");
  cleanup_free char *buf = NULL;
  size_t len = 0;
  if (path == NULL)
    return kyb_error_set(err, ENOMEM, "in-cluster namespace");
  if (kyb_read_file(path, 4096, &buf, &len, err) < 0) {
    if (kyb_error_code(*err) != ENOENT)
      return -1;
    kyb_error_clear(err);
    *out = strdup("default");
    return *out == NULL ? kyb_error_set(err, ENOMEM, "in-cluster namespace") : 0;
  }
  while (len > 0 && isspace((unsigned char)buf[len - 1]))
    buf[--len] = '\0';
  if (kube_check_name(buf, "namespace", err) < 0)
    return kyb_error_wrap(err, "%s", path);
  *out = steal_ptr(buf);
  return 0;
}

static int in_cluster(const char *dir, kyb_kube_config *out, kyb_error **err) {
  const char *host = getenv("KUBERNETES_SERVICE_HOST");
  const char *port = getenv("KUBERNETES_SERVICE_PORT");
  if (host == NULL || host[0] == '\0' || port == NULL || port[0] == '\0')
    return kyb_error_set(err, ENOENT,
                         "not running in a cluster: KUBERNETES_SERVICE_HOST and "
                         "KUBERNETES_SERVICE_PORT are not both set");
  if (!valid_host(host))
    return kyb_error_set(err, EINVAL, "KUBERNETES_SERVICE_HOST '%s' is not a host name or address",
                         host);
  if (!valid_port(port))
    return kyb_error_set(err, EINVAL, "KUBERNETES_SERVICE_PORT '%s' is not a port", port);
  cleanup_free char *server = NULL;
  /* An IPv6 address needs brackets in a URL (net.JoinHostPort in client-go). */
  if (asprintf(&server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host, port) < 0)
    return kyb_error_set(err, ENOMEM, "in-cluster configuration");
  out->server = steal_ptr(server);
  out->token_file = kyb_path_join(dir, "token");
  out->ca_file = kyb_path_join(dir, "ca.crt");
  if (out->token_file == NULL || out->ca_file == NULL)
    return kyb_error_set(err, ENOMEM, "in-cluster configuration");
  /* Read both once now, so a broken mount fails here and not at the first
   * request; the client reads the token again whenever it changes. */
  cleanup_free char *tok = NULL;
  size_t len = 0;
  if (kyb_read_file(out->token_file, KYB_KUBE_MAX_TOKEN, &tok, &len, err) < 0)
    return kyb_error_wrap(err, "service account token");
  if (kube_token_trim(tok, &len) == 0)
    return kyb_error_set(err, EINVAL, "service account token %s is empty", out->token_file);
  if (access(out->ca_file, R_OK) < 0)
    return kyb_error_errno(err, "service account CA %s", out->ca_file);
  if (read_sa_namespace(dir, &out->ns, err) < 0)
    return -1;
  if (asprintf(&out->source, "in-cluster (%s:%s, service account in %s)", host, port, dir) < 0) {
    out->source = NULL;
    return kyb_error_set(err, ENOMEM, "in-cluster configuration");
  }
  return kyb_kube_config_validate(out, err);
}

int kyb_kube_config_in_cluster(const char *sa_dir, kyb_kube_config *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  if (in_cluster(sa_dir != NULL ? sa_dir : KYB_KUBE_SA_DIR, out, err) < 0) {
    kyb_kube_config_clear(out);
    return kyb_error_wrap(err, "in-cluster Kubernetes configuration");
  }
  return 0;
}

int kyb_kube_config_explicit(const char *server, const char *token, const char *ca_file,
                             kyb_kube_config *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  if (server == NULL)
    return kyb_error_set(err, EINVAL, "explicit Kubernetes configuration needs a server URL");
  int bad = kube_config_set_server(out, server, err);
  if (bad == 0 && (dup_str(&out->token, token) < 0 || dup_str(&out->ca_file, ca_file) < 0 ||
                   dup_str(&out->ns, "default") < 0 || dup_str(&out->source, "explicit") < 0))
    bad = kyb_error_set(err, ENOMEM, "explicit Kubernetes configuration");
  if (bad == 0)
    bad = kyb_kube_config_validate(out, err);
  if (bad < 0) {
    kyb_kube_config_clear(out);
    return kyb_error_wrap(err, "explicit Kubernetes configuration");
  }
  return 0;
}

static char *home_kubeconfig(void) {
  const char *home = getenv("HOME");
  if (home == NULL || home[0] == '\0') {
    struct passwd *pw = getpwuid(getuid());
    home = pw != NULL ? pw->pw_dir : "/";
  }
  char *p = NULL;
  return asprintf(&p, "%s/.kube/config", home) < 0 ? NULL : p;
}

int kyb_kube_config_load(const char *kubeconfig, const char *context, kyb_kube_config *out,
                         kyb_error **err) {
  if (kubeconfig != NULL)
    return kyb_kube_config_kubeconfig(kubeconfig, context, out, err);
  const char *env = getenv("KUBECONFIG");
  if (env != NULL && env[0] != '\0')
    return kyb_kube_config_kubeconfig(env, context, out, err);
  const char *host = getenv("KUBERNETES_SERVICE_HOST");
  if (host != NULL && host[0] != '\0') {
    if (context != NULL)
      return kyb_error_set(err, EINVAL,
                           "context '%s' asked for, but the configuration is in-cluster (no "
                           "kubeconfig given and $KUBECONFIG not set)",
                           context);
    return kyb_kube_config_in_cluster(NULL, out, err);
  }
  cleanup_free char *home = home_kubeconfig();
  if (home == NULL)
    return kyb_error_set(err, ENOMEM, "Kubernetes configuration");
  struct stat sb;
  if (stat(home, &sb) == 0)
    return kyb_kube_config_kubeconfig(home, context, out, err);
  memset(out, 0, sizeof(*out));
  return kyb_error_set(err, ENOENT,
                       "no Kubernetes configuration: no kubeconfig given, $KUBECONFIG not set, "
                       "not in a cluster (KUBERNETES_SERVICE_HOST not set), and %s does not "
                       "exist",
                       home);
}

static int b64val(unsigned char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  return -1;
}

int kyb_kube_base64_decode(const char *in, size_t len, char **out, size_t *out_len,
                           kyb_error **err) {
  cleanup_free char *buf = malloc(len / 4 * 3 + 4);
  if (buf == NULL)
    return kyb_error_set(err, ENOMEM, "base64 decode");
  size_t n = 0, quad = 0, pad = 0;
  uint32_t acc = 0;
  for (size_t k = 0; k < len; k++) {
    unsigned char c = (unsigned char)in[k];
    if (c == '\r' || c == '\n')
      continue;
    if (c == '=') {
      pad++;
      acc <<= 6;
    } else {
      int v = b64val(c);
      if (v < 0 || pad > 0)
        return kyb_error_set(err, EINVAL, "invalid base64: unexpected byte 0x%02x at offset %zu", c,
                             k);
      acc = acc << 6 | (uint32_t)v;
    }
    if (++quad == 4) {
      if (pad > 2)
        return kyb_error_set(err, EINVAL, "invalid base64: too much padding");
      buf[n++] = (char)(acc >> 16);
      if (pad < 2)
        buf[n++] = (char)(acc >> 8);
      if (pad < 1)
        buf[n++] = (char)acc;
      quad = 0;
      acc = 0;
      if (pad > 0) {
        /* Padding ends the data: only line breaks may follow. */
        for (size_t j = k + 1; j < len; j++)
          if (in[j] != '\r' && in[j] != '\n')
            return kyb_error_set(err, EINVAL, "invalid base64: data after the padding");
        break;
      }
    }
  }
  if (quad != 0)
    return kyb_error_set(err, EINVAL, "invalid base64: length is not a multiple of 4");
  buf[n] = '\0';
  *out = steal_ptr(buf);
  *out_len = n;
  return 0;
}

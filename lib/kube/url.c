/* SPDX-License-Identifier: Apache-2.0 */
/*
 * URL paths, query strings and selectors, pure.  Names and namespaces come
 * from objects and users: they are checked (no '/', no "..", no blanks) and
 * percent-encoded, so a name can never reach another path.  Label selectors
 * built here accept only Kubernetes label syntax, so a value cannot smuggle
 * in a second requirement; field selector values are escaped as
 * fields.EscapeValue does.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/internal.h"
#include "util/cleanup.h"

static bool unreserved(unsigned char c) {
  return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

char *kyb_kube_escape(const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(s);
  char *out = malloc(n * 3 + 1);
  if (out == NULL)
    return NULL;
  size_t o = 0;
  for (size_t k = 0; k < n; k++) {
    unsigned char c = (unsigned char)s[k];
    if (unreserved(c)) {
      out[o++] = (char)c;
    } else {
      out[o++] = '%';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    }
  }
  out[o] = '\0';
  return out;
}

int kube_check_name(const char *s, const char *what, kyb_error **err) {
  size_t n = strlen(s);
  if (n == 0)
    return kyb_error_set(err, EINVAL, "empty %s", what);
  if (n > 253)
    return kyb_error_set(err, EINVAL, "%s of %zu bytes is longer than 253", what, n);
  if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
    return kyb_error_set(err, EINVAL, "%s '%s' is not a name", what, s);
  for (size_t k = 0; k < n; k++) {
    unsigned char c = (unsigned char)s[k];
    if (c <= 0x20 || c >= 0x7f || c == '/' || c == '%')
      return kyb_error_set(err, EINVAL, "%s '%.64s' contains '%s'", what, s,
                           c == '/'   ? "/"
                           : c == '%' ? "%"
                                      : "a blank or non-ASCII byte");
  }
  return 0;
}

/* group, version, plural, subresource: lowercase DNS-style words. */
static bool word_ok(const char *s, bool dots, bool allow_empty) {
  if (s == NULL)
    return allow_empty;
  if (s[0] == '\0')
    return allow_empty;
  for (const char *c = s; *c != '\0'; c++)
    if (!(islower((unsigned char)*c) || isdigit((unsigned char)*c) || *c == '-' ||
          (dots && *c == '.')))
      return false;
  return strlen(s) <= 253;
}

static int check_resource(const kyb_kube_resource *res, kyb_error **err) {
  if (res == NULL || !word_ok(res->group, true, true) || !word_ok(res->version, false, false) ||
      !word_ok(res->plural, true, false))
    return kyb_error_set(err, EINVAL, "malformed resource descriptor %s/%s/%s",
                         res && res->group ? res->group : "", res ? res->version : "",
                         res ? res->plural : "");
  return 0;
}

int kyb_kube_path(const kyb_kube_resource *res, const char *ns, const char *name,
                  const char *subresource, char **out, kyb_error **err) {
  if (check_resource(res, err) < 0)
    return -1;
  if (ns != NULL && ns[0] != '\0' && kube_check_name(ns, "namespace", err) < 0)
    return -1;
  if (name != NULL && kube_check_name(name, "name", err) < 0)
    return -1;
  if (subresource != NULL && (name == NULL || !word_ok(subresource, false, false)))
    return kyb_error_set(err, EINVAL, "malformed subresource '%s'", subresource);
  cleanup_free char *ens =
      ns != NULL && ns[0] != '\0' && res->namespaced ? kyb_kube_escape(ns) : NULL;
  cleanup_free char *ename = name != NULL ? kyb_kube_escape(name) : NULL;
  if ((ns != NULL && ns[0] != '\0' && res->namespaced && ens == NULL) ||
      (name != NULL && ename == NULL))
    return kyb_error_set(err, ENOMEM, "URL path");
  bool core = res->group == NULL || res->group[0] == '\0';
  char *p = NULL;
  int r = asprintf(&p, "/%s%s/%s%s%s/%s%s%s%s%s", core ? "api" : "apis/", core ? "" : res->group,
                   res->version, ens ? "/namespaces/" : "", ens ? ens : "", res->plural,
                   ename ? "/" : "", ename ? ename : "", subresource ? "/" : "",
                   subresource ? subresource : "");
  if (r < 0)
    return kyb_error_set(err, ENOMEM, "URL path");
  *out = p;
  return 0;
}

int kube_query_add(char **url, const char *key, const char *value, kyb_error **err) {
  cleanup_free char *v = kyb_kube_escape(value);
  char *n = NULL;
  if (v == NULL ||
      asprintf(&n, "%s%c%s=%s", *url, strchr(*url, '?') != NULL ? '&' : '?', key, v) < 0)
    return kyb_error_set(err, ENOMEM, "URL query");
  free(*url);
  *url = n;
  return 0;
}

/* name part of a label key, and a label value: at most 63 of [A-Za-z0-9._-],
 * alphanumeric at both ends. */
static bool label_word(const char *s, size_t n, bool allow_empty) {
  if (n == 0)
    return allow_empty;
  if (n > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
    return false;
  for (size_t k = 0; k < n; k++)
    if (!(isalnum((unsigned char)s[k]) || s[k] == '-' || s[k] == '_' || s[k] == '.'))
      return false;
  return true;
}

/* A DNS-1123 subdomain: the optional prefix of a label key. */
static bool dns_subdomain(const char *s, size_t n) {
  if (n == 0 || n > 253 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
    return false;
  for (size_t k = 0; k < n; k++)
    if (!(islower((unsigned char)s[k]) || isdigit((unsigned char)s[k]) || s[k] == '-' ||
          s[k] == '.'))
      return false;
  return true;
}

static bool label_key(const char *k) {
  const char *slash = strchr(k, '/');
  if (slash == NULL)
    return label_word(k, strlen(k), false);
  return dns_subdomain(k, (size_t)(slash - k)) && label_word(slash + 1, strlen(slash + 1), false);
}

static int join_pairs(const char *const *pairs, bool field, char **out, kyb_error **err) {
  size_t cap = 1;
  for (const char *const *p = pairs; p[0] != NULL; p += 2) {
    if (p[1] == NULL)
      return kyb_error_set(err, EINVAL, "selector key '%s' has no value", p[0]);
    cap += 2 * strlen(p[0]) + 2 * strlen(p[1]) + 2;
  }
  cleanup_free char *s = malloc(cap);
  if (s == NULL)
    return kyb_error_set(err, ENOMEM, "selector");
  size_t o = 0;
  for (const char *const *p = pairs; p[0] != NULL; p += 2) {
    if (!field && !label_key(p[0]))
      return kyb_error_set(err, EINVAL, "'%.100s' is not a label key", p[0]);
    if (!field && !label_word(p[1], strlen(p[1]), true))
      return kyb_error_set(err, EINVAL, "'%.100s' is not a label value", p[1]);
    if (field) {
      for (const char *c = p[0]; *c != '\0'; c++)
        if (!(isalnum((unsigned char)*c) || *c == '.' || *c == '-' || *c == '_'))
          return kyb_error_set(err, EINVAL, "'%.100s' is not a field path", p[0]);
      if (p[0][0] == '\0')
        return kyb_error_set(err, EINVAL, "empty field path");
    }
    if (o > 0)
      s[o++] = ',';
    size_t kl = strlen(p[0]);
    memcpy(s + o, p[0], kl);
    o += kl;
    s[o++] = '=';
    for (const char *c = p[1]; *c != '\0'; c++) {
      if (field && (*c == '\\' || *c == ',' || *c == '='))
        s[o++] = '\\';
      s[o++] = *c;
    }
  }
  s[o] = '\0';
  *out = steal_ptr(s);
  return 0;
}

int kyb_kube_label_selector(const char *const *pairs, char **out, kyb_error **err) {
  return join_pairs(pairs, false, out, err);
}

int kyb_kube_field_selector(const char *const *pairs, char **out, kyb_error **err) {
  return join_pairs(pairs, true, out, err);
}

const char *kube_ns(const kyb_kube_client *c, const kyb_kube_resource *res, const char *ns) {
  if (!res->namespaced)
    return "";
  return ns != NULL ? ns : c->cfg.ns;
}

void kube_what(char *buf, size_t size, const char *verb, const kyb_kube_resource *res,
               const char *ns, const char *name) {
  bool core = res->group == NULL || res->group[0] == '\0';
  char where[320];
  if (!res->namespaced)
    snprintf(where, sizeof(where), "%s", name != NULL ? name : "");
  else if (ns == NULL || ns[0] == '\0')
    snprintf(where, sizeof(where), "%s", name != NULL ? name : "(all namespaces)");
  else
    snprintf(where, sizeof(where), "%s%s%s", ns, name != NULL ? "/" : "", name != NULL ? name : "");
  snprintf(buf, size, "%s %s%s%s %s%s%s", verb, core ? "" : res->group, core ? "" : "/",
           res->version, res->plural, where[0] != '\0' ? " " : "", where);
}

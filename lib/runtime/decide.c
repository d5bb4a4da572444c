/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The restore decision and the namespace rule (decide.h).
 */
#include "runtime/decide.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"

void kyb_rt_decision_clear(kyb_rt_decision *d) {
  if (d == NULL)
    return;
  free(d->ref);
  memset(d, 0, sizeof(*d));
}

static const char *ann(const json_t *annotations, const char *key) {
  return annotations ? json_string_value(json_object_get(annotations, key)) : NULL;
}

static bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* [s, e) with surrounding blanks trimmed. */
static void trim(const char **s, const char **e) {
  while (*s < *e && is_space(**s))
    (*s)++;
  while (*e > *s && is_space((*e)[-1]))
    (*e)--;
}

/* A reference: non-empty, printable, no blanks and no ',' or '='. */
static int check_ref(const char *s, size_t n, kyb_error **err) {
  if (n == 0)
    return kyb_error_set(err, EINVAL, "empty checkpoint reference");
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= 0x20 || c == 0x7f || c == ',' || c == '=')
      return kyb_error_set(err, EINVAL,
                           "checkpoint reference \"%.*s\" has a character not "
                           "allowed in a reference (blank, control, ',' or '=')",
                           (int)n, s);
  }
  return 0;
}

/* A container name of the map form: [A-Za-z0-9._-]{1,253}. */
static int check_name(const char *s, size_t n, kyb_error **err) {
  if (n == 0 || n > 253)
    return kyb_error_set(err, EINVAL, "container name of %zu bytes in the map form", n);
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok)
      return kyb_error_set(err, EINVAL, "\"%.*s\" is not a container name", (int)n, s);
  }
  return 0;
}

/* One "name=ref" entry of the map form, as spans of the value. */
typedef struct {
  const char *name, *ref;
  size_t name_len, ref_len;
} map_entry;

/* Splits a map value "n1=r1,n2=r2" into entries and checks all of them
 * (syntax, duplicate names), so a typo fails every container alike. */
static int map_parse(const char *value, map_entry *ents, size_t max, size_t *n, kyb_error **err) {
  *n = 0;
  const char *end = value + strlen(value);
  for (const char *p = value;;) {
    const char *comma = memchr(p, ',', (size_t)(end - p));
    const char *is = p, *ie = comma ? comma : end;
    trim(&is, &ie);
    const char *eq = memchr(is, '=', (size_t)(ie - is));
    if (eq == NULL)
      return kyb_error_set(err, EINVAL,
                           "entry \"%.*s\" of the map form is not <container-name>=<reference>",
                           (int)(ie - is), is);
    if (*n == max)
      return kyb_error_set(err, EINVAL, "more than %zu entries in the map form", max);
    map_entry *e = &ents[*n];
    const char *ns = is, *ne = eq, *rs = eq + 1, *re = ie;
    trim(&ns, &ne);
    trim(&rs, &re);
    *e = (map_entry){ns, rs, (size_t)(ne - ns), (size_t)(re - rs)};
    if (check_name(e->name, e->name_len, err) < 0 || check_ref(e->ref, e->ref_len, err) < 0)
      return -1;
    for (size_t i = 0; i < *n; i++)
      if (ents[i].name_len == e->name_len && memcmp(ents[i].name, e->name, e->name_len) == 0)
        return kyb_error_set(err, EINVAL, "container \"%.*s\" is named twice in the map form",
                             (int)e->name_len, e->name);
    (*n)++;
    if (comma == NULL)
      return 0;
    p = comma + 1;
  }
}

/* The reference the map gives container `name`: *ref NULL when the map does
 * not name it. */
static int map_lookup(const char *value, const char *name, char **ref, kyb_error **err) {
  *ref = NULL;
  map_entry ents[256];
  size_t n = 0;
  if (map_parse(value, ents, sizeof(ents) / sizeof(ents[0]), &n, err) < 0)
    return -1;
  for (size_t i = 0; name != NULL && i < n; i++) {
    if (strlen(name) != ents[i].name_len || memcmp(name, ents[i].name, ents[i].name_len) != 0)
      continue;
    if ((*ref = strndup(ents[i].ref, ents[i].ref_len)) == NULL)
      return kyb_error_set(err, ENOMEM, "checkpoint reference");
    return 0;
  }
  return 0;
}

static int parse_fallback(const json_t *annotations, kyb_rt_fallback *out, kyb_error **err) {
  *out = KYB_RT_FALLBACK_NONE;
  const json_t *v = annotations ? json_object_get(annotations, KYB_ANN_RESTORE_FALLBACK) : NULL;
  if (v == NULL)
    return 0;
  const char *s = json_string_value(v);
  if (s == NULL)
    return kyb_error_set(err, EINVAL, "annotation %s is not a string", KYB_ANN_RESTORE_FALLBACK);
  if (strcmp(s, "cold") == 0)
    *out = KYB_RT_FALLBACK_COLD;
  else if (strcmp(s, "none") != 0 && *s != '\0')
    return kyb_error_set(err, EINVAL, "annotation %s=\"%.64s\": expected \"cold\" or \"none\"",
                         KYB_ANN_RESTORE_FALLBACK, s);
  return 0;
}

int kyb_rt_decide(const json_t *annotations, kyb_rt_decision *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  out->action = KYB_RT_CREATE;
  if (annotations != NULL && !json_is_object(annotations))
    return kyb_error_set(err, EINVAL, "the spec's \"annotations\" is not an object");
  const json_t *rf = annotations ? json_object_get(annotations, KYB_ANN_RESTORE_FROM) : NULL;
  if (rf == NULL) {
    out->reason = "no " KYB_ANN_RESTORE_FROM " annotation";
    return 0;
  }
  const char *type = ann(annotations, KYB_ANN_CRI_CONTAINER_TYPE);
  if (type != NULL && strcmp(type, "container") != 0) {
    /* The sandbox ("pause") gets the pod's annotations too. */
    out->reason = strcmp(type, "sandbox") == 0 ? "a pod sandbox, not an application container"
                                               : "not an application container";
    return 0;
  }
  cleanup_error kyb_error *ferr = NULL;
  int fr = parse_fallback(annotations, &out->fallback, &ferr);
  const char *value = json_string_value(rf);
  if (value == NULL)
    return kyb_error_set(err, EINVAL, "annotation %s is not a string", KYB_ANN_RESTORE_FROM);
  size_t len = strlen(value);
  if (len > KYB_ANN_VALUE_MAX)
    return kyb_error_set(err, EINVAL, "annotation %s is %zu bytes long (at most %u)",
                         KYB_ANN_RESTORE_FROM, len, KYB_ANN_VALUE_MAX);
  if (fr < 0) {
    /* restore-from is there but the fallback is unreadable: do not guess. */
    *err = steal_ptr(ferr);
    return -1;
  }
  if (strchr(value, '=') != NULL) {
    const char *name = ann(annotations, KYB_ANN_CRI_CONTAINER_NAME);
    char *ref = NULL;
    if (map_lookup(value, name, &ref, err) < 0)
      return kyb_error_wrap(err, "annotation %s", KYB_ANN_RESTORE_FROM);
    if (name == NULL)
      return kyb_error_set(err, EINVAL,
                           "annotation %s has the map form <name>=<reference>, but this "
                           "container has no %s annotation (not made through CRI)",
                           KYB_ANN_RESTORE_FROM, KYB_ANN_CRI_CONTAINER_NAME);
    if (ref == NULL) {
      out->reason = "container not named in the restore-from map";
      return 0;
    }
    out->ref = ref;
  } else {
    const char *s = value, *e = value + len;
    trim(&s, &e);
    if (check_ref(s, (size_t)(e - s), err) < 0)
      return kyb_error_wrap(err, "annotation %s", KYB_ANN_RESTORE_FROM);
    out->ref = strndup(s, (size_t)(e - s));
    if (out->ref == NULL)
      return kyb_error_set(err, ENOMEM, "checkpoint reference");
  }
  out->action = KYB_RT_RESTORE;
  return 0;
}

int kyb_rt_check_namespace(const json_t *manifest, const json_t *annotations, kyb_error **err) {
  const json_t *pod = json_object_get(json_object_get(manifest, "source"), "pod");
  const char *img_ns = json_string_value(json_object_get(pod, "namespace"));
  const char *img_pod = json_string_value(json_object_get(pod, "name"));
  const char *ns = ann(annotations, KYB_ANN_CRI_SANDBOX_NAMESPACE);
  if (img_ns != NULL) {
    if (ns == NULL)
      return kyb_error_set(err, EPERM,
                           "the checkpoint was taken from pod %s/%s of Kubernetes namespace "
                           "\"%s\"; this container is not a Kubernetes pod's (no %s annotation) "
                           "and may not restore it",
                           img_ns, img_pod ? img_pod : "?", img_ns, KYB_ANN_CRI_SANDBOX_NAMESPACE);
    if (strcmp(ns, img_ns) != 0)
      return kyb_error_set(err, EPERM,
                           "wrong namespace: the checkpoint belongs to Kubernetes namespace "
                           "\"%s\" (pod %s), this pod is in namespace \"%s\"; a pod restores "
                           "only checkpoints of its own namespace",
                           img_ns, img_pod ? img_pod : "?", ns);
    return 0;
  }
  if (ns != NULL)
    return kyb_error_set(err, EPERM,
                         "the checkpoint was taken outside Kubernetes (no source pod); a pod "
                         "(namespace \"%s\") may restore only checkpoints of a pod of its own "
                         "namespace",
                         ns);
  return 0;
}

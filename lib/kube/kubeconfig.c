/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kubeconfig files: read (YAML subset or JSON, yaml.h), merge a list the
 * way kubectl does (first file to name a cluster/user/context wins, first
 * current-context wins), pick the context, and turn cluster + user into a
 * kyb_kube_config.  Unsupported fields that would change how we connect or
 * authenticate are errors naming the field: connecting differently from
 * kubectl without a word would be worse than refusing.
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/config.h"
#include "kube/internal.h"
#include "kube/yaml.h"
#include "util/cleanup.h"
#include "util/fs.h"

typedef struct {
  json_t *clusters; /* name -> cluster object (relative paths already resolved) */
  json_t *users;
  json_t *contexts;
  char *current;
  char *files; /* the files read, for messages */
} merged;

static void merged_clear(merged *m) {
  json_decref(m->clusters);
  json_decref(m->users);
  json_decref(m->contexts);
  free(m->current);
  free(m->files);
}

static const char *const top_fields[] = {"apiVersion",  "kind",       "clusters",
                                         "users",       "contexts",   "current-context",
                                         "preferences", "extensions", NULL};

static bool in_list(const char *key, const char *const *list) {
  for (; *list != NULL; list++)
    if (strcmp(key, *list) == 0)
      return true;
  return false;
}

/* A relative path in a kubeconfig is relative to that file's directory. */
static int resolve_path(json_t *obj, const char *field, const char *dir, const char *what,
                        kyb_error **err) {
  json_t *v = json_object_get(obj, field);
  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_string(v))
    return kyb_error_set(err, EINVAL, "%s: field '%s' is not a string", what, field);
  const char *p = json_string_value(v);
  if (p[0] == '\0' || p[0] == '/' || dir == NULL)
    return 0;
  cleanup_free char *abs = kyb_path_join(dir, p);
  if (abs == NULL || json_object_set_new(obj, field, json_string(abs)) < 0)
    return kyb_error_set(err, ENOMEM, "%s", what);
  return 0;
}

/* Adds the named entries of one section ("clusters", …) of one file. */
static int merge_section(json_t *root, const char *section, const char *inner, json_t *into,
                         const char *file, const char *dir, kyb_error **err) {
  json_t *list = json_object_get(root, section);
  if (list == NULL || json_is_null(list))
    return 0;
  if (!json_is_array(list))
    return kyb_error_set(err, EINVAL, "%s: '%s' is not a list", file, section);
  cleanup_json json_t *seen = json_object();
  if (seen == NULL)
    return kyb_error_set(err, ENOMEM, "%s", file);
  size_t i;
  json_t *item;
  json_array_foreach(list, i, item) {
    json_t *name = json_object_get(item, "name");
    if (!json_is_object(item) || !json_is_string(name) || json_string_length(name) == 0)
      return kyb_error_set(err, EINVAL, "%s: %s[%zu] has no name", file, section, i);
    const char *n = json_string_value(name);
    const char *key;
    json_t *v;
    json_object_foreach(item, key, v) {
      if (strcmp(key, "name") != 0 && strcmp(key, inner) != 0 && strcmp(key, "extensions") != 0)
        return kyb_error_set(err, EINVAL, "%s: %s '%s': unknown field '%s'", file, section, n, key);
    }
    if (json_object_get(seen, n) != NULL)
      return kyb_error_set(err, EINVAL, "%s: %s '%s' is named twice", file, section, n);
    json_object_set(seen, n, json_true());
    if (json_object_get(into, n) != NULL)
      continue; /* an earlier file named it: that one wins */
    json_t *body = json_object_get(item, inner);
    cleanup_json json_t *copy =
        body == NULL || json_is_null(body) ? json_object() : json_deep_copy(body);
    if (copy == NULL)
      return kyb_error_set(err, ENOMEM, "%s", file);
    if (!json_is_object(copy))
      return kyb_error_set(err, EINVAL, "%s: %s '%s': '%s' is not a mapping", file, section, n,
                           inner);
    char what[512];
    snprintf(what, sizeof(what), "%s: %s '%s'", file, section, n);
    static const char *const paths[] = {"certificate-authority", "client-certificate", "client-key",
                                        "tokenFile", NULL};
    for (const char *const *f = paths; *f != NULL; f++)
      if (resolve_path(copy, *f, dir, what, err) < 0)
        return -1;
    if (json_object_set(into, n, copy) < 0)
      return kyb_error_set(err, ENOMEM, "%s", file);
  }
  return 0;
}

static int merge_root(merged *m, json_t *root, const char *file, const char *dir, kyb_error **err) {
  if (json_is_null(root))
    return 0; /* an empty file is an empty config, as for kubectl */
  if (!json_is_object(root))
    return kyb_error_set(err, EINVAL, "%s: a kubeconfig is a mapping at the top", file);
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    if (!in_list(key, top_fields))
      return kyb_error_set(err, EINVAL, "%s: unknown top-level field '%s'", file, key);
  }
  json_t *kind = json_object_get(root, "kind");
  if (kind != NULL && !json_is_null(kind) &&
      (!json_is_string(kind) || strcmp(json_string_value(kind), "Config") != 0))
    return kyb_error_set(err, EINVAL, "%s: kind is not 'Config'", file);
  if (merge_section(root, "clusters", "cluster", m->clusters, file, dir, err) < 0 ||
      merge_section(root, "users", "user", m->users, file, dir, err) < 0 ||
      merge_section(root, "contexts", "context", m->contexts, file, dir, err) < 0)
    return -1;
  json_t *cur = json_object_get(root, "current-context");
  if (cur != NULL && !json_is_null(cur) && !json_is_string(cur))
    return kyb_error_set(err, EINVAL, "%s: current-context is not a string", file);
  if (m->current == NULL && json_is_string(cur) && json_string_length(cur) > 0) {
    m->current = strdup(json_string_value(cur));
    if (m->current == NULL)
      return kyb_error_set(err, ENOMEM, "%s", file);
  }
  return 0;
}

static int add_file_name(merged *m, const char *file) {
  char *s = NULL;
  if (asprintf(&s, "%s%s%s", m->files ? m->files : "", m->files ? ":" : "", file) < 0)
    return -1;
  free(m->files);
  m->files = s;
  return 0;
}

static int merge_text(merged *m, const char *text, size_t len, const char *what, const char *dir,
                      kyb_error **err) {
  cleanup_json json_t *root = kyb_yaml_load(text, len, what, err);
  if (root == NULL)
    return -1;
  if (add_file_name(m, what) < 0)
    return kyb_error_set(err, ENOMEM, "%s", what);
  return merge_root(m, root, what, dir, err);
}

static int merge_file(merged *m, const char *path, bool skip_missing, kyb_error **err) {
  cleanup_free char *text = NULL;
  size_t len = 0;
  if (kyb_read_file(path, KYB_KUBE_MAX_CONFIG_FILE, &text, &len, err) < 0) {
    if (skip_missing && kyb_error_code(*err) == ENOENT) {
      kyb_error_clear(err);
      return 0;
    }
    return kyb_error_wrap(err, "kubeconfig");
  }
  cleanup_free char *copy = strdup(path);
  if (copy == NULL)
    return kyb_error_set(err, ENOMEM, "kubeconfig %s", path);
  return merge_text(m, text, len, path, dirname(copy), err);
}

/* A string field: NULL when absent, null or empty; error when not a string. */
static int str_field(json_t *obj, const char *field, const char *what, const char **out,
                     kyb_error **err) {
  json_t *v = json_object_get(obj, field);
  *out = NULL;
  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_string(v))
    return kyb_error_set(err, EINVAL, "%s: field '%s' is not a string", what, field);
  if (json_string_length(v) > 0)
    *out = json_string_value(v);
  return 0;
}

static int set_str(char **dst, const char *v, kyb_error **err) {
  if (v == NULL)
    return 0;
  *dst = strdup(v);
  return *dst == NULL ? kyb_error_set(err, ENOMEM, "kubeconfig") : 0;
}

/* Fields we do not read but that would change the connection or the
 * identity: refuse them by name. */
static int check_fields(json_t *obj, const char *what, const char *const *supported,
                        kyb_error **err) {
  static const char *const ignored[] = {"extensions", "disable-compression", "location-of-origin",
                                        NULL};
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    if (in_list(key, supported) || in_list(key, ignored) || json_is_null(v))
      continue;
    const char *why = "is not supported";
    if (strcmp(key, "exec") == 0)
      why = "(exec credential plugin) is not supported: use a token, a tokenFile or a client "
            "certificate";
    else if (strcmp(key, "auth-provider") == 0)
      why = "(auth provider plugin) is not supported: use a token, a tokenFile or a client "
            "certificate";
    else if (strcmp(key, "username") == 0 || strcmp(key, "password") == 0)
      why = "(basic authentication) is not supported";
    else if (strncmp(key, "as", 2) == 0 && (key[2] == '\0' || key[2] == '-'))
      why = "(impersonation) is not supported";
    return kyb_error_set(err, ENOTSUP, "%s: field '%s' %s", what, key, why);
  }
  return 0;
}

static int fill_cluster(json_t *c, const char *what, kyb_kube_config *out, kyb_error **err) {
  static const char *const ok[] = {"server", "certificate-authority", "certificate-authority-data",
                                   "insecure-skip-tls-verify", NULL};
  if (check_fields(c, what, ok, err) < 0)
    return -1;
  const char *server, *ca, *ca_data;
  if (str_field(c, "server", what, &server, err) < 0 ||
      str_field(c, "certificate-authority", what, &ca, err) < 0 ||
      str_field(c, "certificate-authority-data", what, &ca_data, err) < 0)
    return -1;
  if (server == NULL)
    return kyb_error_set(err, EINVAL, "%s: no server", what);
  if (kube_config_set_server(out, server, err) < 0)
    return -1;
  json_t *ins = json_object_get(c, "insecure-skip-tls-verify");
  if (ins != NULL && !json_is_null(ins) && !json_is_boolean(ins))
    return kyb_error_set(err, EINVAL, "%s: insecure-skip-tls-verify is not true or false", what);
  out->insecure = json_is_true(ins);
  if (out->insecure && (ca != NULL || ca_data != NULL))
    return kyb_error_set(err, EINVAL,
                         "%s: a certificate authority and insecure-skip-tls-verify together "
                         "make no sense (kubectl refuses it too)",
                         what);
  /* The data overrides the file, as in client-go. */
  if (ca_data != NULL) {
    if (kyb_kube_base64_decode(ca_data, strlen(ca_data), &out->ca_data, &out->ca_data_len, err) < 0)
      return kyb_error_wrap(err, "%s: certificate-authority-data", what);
  } else if (set_str(&out->ca_file, ca, err) < 0) {
    return -1;
  }
  return 0;
}

static int fill_user(json_t *u, const char *what, kyb_kube_config *out, kyb_error **err) {
  static const char *const ok[] = {
      "token",           "tokenFile", "client-certificate", "client-certificate-data", "client-key",
      "client-key-data", NULL};
  if (check_fields(u, what, ok, err) < 0)
    return -1;
  const char *token, *token_file, *cert, *cert_data, *key, *key_data;
  if (str_field(u, "token", what, &token, err) < 0 ||
      str_field(u, "tokenFile", what, &token_file, err) < 0 ||
      str_field(u, "client-certificate", what, &cert, err) < 0 ||
      str_field(u, "client-certificate-data", what, &cert_data, err) < 0 ||
      str_field(u, "client-key", what, &key, err) < 0 ||
      str_field(u, "client-key-data", what, &key_data, err) < 0)
    return -1;
  if (set_str(&out->token, token, err) < 0 || set_str(&out->token_file, token_file, err) < 0)
    return -1;
  if (cert_data != NULL) {
    if (kyb_kube_base64_decode(cert_data, strlen(cert_data), &out->cert_data, &out->cert_data_len,
                               err) < 0)
      return kyb_error_wrap(err, "%s: client-certificate-data", what);
  } else if (set_str(&out->cert_file, cert, err) < 0) {
    return -1;
  }
  if (key_data != NULL) {
    if (kyb_kube_base64_decode(key_data, strlen(key_data), &out->key_data, &out->key_data_len,
                               err) < 0)
      return kyb_error_wrap(err, "%s: client-key-data", what);
  } else if (set_str(&out->key_file, key, err) < 0) {
    return -1;
  }
  return 0;
}

static int select_context(merged *m, const char *context, kyb_kube_config *out, kyb_error **err) {
  const char *files = m->files != NULL ? m->files : "(no file)";
  const char *name = context != NULL ? context : m->current;
  if (name == NULL || name[0] == '\0')
    return kyb_error_set(err, EINVAL, "kubeconfig %s sets no current-context; name a context",
                         files);
  json_t *ctx = json_object_get(m->contexts, name);
  if (ctx == NULL)
    return kyb_error_set(err, ENOENT, "kubeconfig %s has no context '%s'", files, name);
  char what[512];
  snprintf(what, sizeof(what), "kubeconfig %s: context '%s'", files, name);
  static const char *const ok[] = {"cluster", "user", "namespace", NULL};
  const char *cluster, *user, *ns;
  if (check_fields(ctx, what, ok, err) < 0 || str_field(ctx, "cluster", what, &cluster, err) < 0 ||
      str_field(ctx, "user", what, &user, err) < 0 ||
      str_field(ctx, "namespace", what, &ns, err) < 0)
    return -1;
  if (cluster == NULL)
    return kyb_error_set(err, EINVAL, "%s names no cluster", what);
  json_t *c = json_object_get(m->clusters, cluster);
  if (c == NULL)
    return kyb_error_set(err, ENOENT, "%s: no cluster '%s'", what, cluster);
  snprintf(what, sizeof(what), "kubeconfig %s: cluster '%s'", files, cluster);
  if (fill_cluster(c, what, out, err) < 0)
    return -1;
  if (user != NULL) {
    json_t *u = json_object_get(m->users, user);
    if (u == NULL)
      return kyb_error_set(err, ENOENT, "kubeconfig %s: context '%s': no user '%s'", files, name,
                           user);
    snprintf(what, sizeof(what), "kubeconfig %s: user '%s'", files, user);
    if (fill_user(u, what, out, err) < 0)
      return -1;
  }
  if (set_str(&out->ns, ns != NULL ? ns : "default", err) < 0)
    return -1;
  if (asprintf(&out->source, "kubeconfig %s (context %s)", files, name) < 0) {
    out->source = NULL;
    return kyb_error_set(err, ENOMEM, "kubeconfig");
  }
  return kyb_kube_config_validate(out, err);
}

static int merged_init(merged *m, kyb_error **err) {
  memset(m, 0, sizeof(*m));
  m->clusters = json_object();
  m->users = json_object();
  m->contexts = json_object();
  if (m->clusters == NULL || m->users == NULL || m->contexts == NULL)
    return kyb_error_set(err, ENOMEM, "kubeconfig");
  return 0;
}

int kyb_kube_config_kubeconfig(const char *paths, const char *context, kyb_kube_config *out,
                               kyb_error **err) {
  memset(out, 0, sizeof(*out));
  cleanup_free char *home = NULL;
  if (paths == NULL || paths[0] == '\0') {
    paths = getenv("KUBECONFIG");
    if (paths == NULL || paths[0] == '\0') {
      const char *h = getenv("HOME");
      if (asprintf(&home, "%s/.kube/config", h != NULL ? h : "") < 0)
        return kyb_error_set(err, ENOMEM, "kubeconfig");
      paths = home;
    }
  }
  merged m;
  if (merged_init(&m, err) < 0) {
    merged_clear(&m);
    return -1;
  }
  cleanup_free char *list = strdup(paths);
  int r = list == NULL ? kyb_error_set(err, ENOMEM, "kubeconfig") : 0;
  bool several = list != NULL && strchr(list, ':') != NULL;
  char *save = NULL;
  for (char *p = list != NULL ? strtok_r(list, ":", &save) : NULL; r == 0 && p != NULL;
       p = strtok_r(NULL, ":", &save))
    r = merge_file(&m, p, several, err);
  if (r == 0 && m.files == NULL)
    r = kyb_error_set(err, ENOENT, "kubeconfig: none of %s exists", paths);
  if (r == 0)
    r = select_context(&m, context, out, err);
  merged_clear(&m);
  if (r < 0)
    kyb_kube_config_clear(out);
  return r;
}

int kyb_kube_config_kubeconfig_text(const char *text, size_t len, const char *what, const char *dir,
                                    const char *context, kyb_kube_config *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  merged m;
  int r = merged_init(&m, err);
  if (r == 0)
    r = merge_text(&m, text, len, what != NULL ? what : "kubeconfig", dir, err);
  if (r == 0)
    r = select_context(&m, context, out, err);
  merged_clear(&m);
  if (r < 0)
    kyb_kube_config_clear(out);
  return r;
}

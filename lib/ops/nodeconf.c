/* SPDX-License-Identifier: Apache-2.0 */
#include "ops/nodeconf.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/oci.h"
#include "store/s3.h"
#include "store/store.h"
#include "util/cleanup.h"
#include "util/fs.h"

#define NODECONF_MAX_BYTES (1u << 20)
#define NODECONF_MAX_STORES 64

void kyb_nodeconf_clear(kyb_nodeconf *c) {
  if (c == NULL)
    return;
  free(c->path);
  free(c->default_store);
  for (size_t i = 0; i < c->nstores; i++)
    free(c->stores[i]);
  free(c->stores);
  free(c->delegate);
  free(c->agent_socket);
  memset(c, 0, sizeof(*c));
}

static int add_store(kyb_nodeconf *c, const char *uri, kyb_error **err) {
  /* Normalise through the store layer so "file:///x/" and "file:///x" are one. */
  cleanup_free char *norm = NULL;
  if (strncmp(uri, "oci://", 6) == 0) {
    /* "oci://Host:5000/repo/" -> "oci://host:5000/repo", as the store names itself */
    cleanup_free char *host = NULL, *repo = NULL;
    if (kyb_oci_uri_parse(uri + 6, &host, &repo, err) < 0)
      return kyb_error_wrap(err, "store %s", uri);
    if (asprintf(&norm, "oci://%s/%s", host, repo) < 0)
      return kyb_error_set(err, ENOMEM, "store list");
  } else if (strncmp(uri, "s3://", 5) == 0) {
    /* "s3://bkt//a/b/" -> "s3://bkt/a/b", as the store names itself */
    cleanup_free char *bucket = NULL, *prefix = NULL;
    if (kyb_s3_uri_parse(uri + 5, &bucket, &prefix, err) < 0)
      return kyb_error_wrap(err, "store %s", uri);
    if (asprintf(&norm, "s3://%s%s%s", bucket, *prefix ? "/" : "", prefix) < 0)
      return kyb_error_set(err, ENOMEM, "store list");
  } else if (strncmp(uri, "file://", 7) != 0) {
    return kyb_error_set(err, ENOTSUP,
                         "store %s: only file://, oci:// and s3:// stores are supported", uri);
  } else if (uri[7] != '/') {
    return kyb_error_set(err, EINVAL, "store %s: a file:// store needs an absolute path", uri);
  } else if ((norm = strdup(uri)) == NULL) {
    return kyb_error_set(err, ENOMEM, "store list");
  }
  size_t l = strlen(norm);
  while (l > 8 && norm[l - 1] == '/')
    norm[--l] = '\0';
  for (size_t i = 0; i < c->nstores; i++)
    if (strcmp(c->stores[i], norm) == 0)
      return 0;
  if (c->nstores >= NODECONF_MAX_STORES)
    return kyb_error_set(err, E2BIG, "more than %d stores", NODECONF_MAX_STORES);
  char **v = realloc(c->stores, (c->nstores + 1) * sizeof(char *));
  if (v == NULL)
    return kyb_error_set(err, ENOMEM, "store list");
  c->stores = v;
  c->stores[c->nstores++] = steal_ptr(norm);
  return 0;
}

static int set_defaults(kyb_nodeconf *c, kyb_error **err) {
  if (c->default_store == NULL && (c->default_store = strdup(KYB_STORE_DEFAULT_URI)) == NULL)
    return kyb_error_set(err, ENOMEM, "configuration");
  if (c->delegate == NULL && (c->delegate = strdup("runc")) == NULL)
    return kyb_error_set(err, ENOMEM, "configuration");
  return 0;
}

static int parse(const char *data, size_t len, kyb_nodeconf *out, kyb_error **err) {
  json_error_t jerr;
  cleanup_json json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL)
    return kyb_error_set(err, EINVAL, "invalid JSON at line %d column %d: %s", jerr.line,
                         jerr.column, jerr.text);
  if (!json_is_object(root))
    return kyb_error_set(err, EINVAL, "the configuration must be a JSON object");
  const char *key;
  json_t *val;
  json_object_foreach(root, key, val) {
    if (strcmp(key, "defaultStore") == 0) {
      if (!json_is_string(val))
        return kyb_error_set(err, EINVAL, "defaultStore must be a string");
      free(out->default_store);
      out->default_store = strdup(json_string_value(val));
    } else if (strcmp(key, "stores") == 0) {
      if (!json_is_array(val))
        return kyb_error_set(err, EINVAL, "stores must be an array of store URIs");
    } else if (strcmp(key, "runtime") == 0) {
      if (!json_is_object(val))
        return kyb_error_set(err, EINVAL, "runtime must be an object");
      const char *rk;
      json_t *rv;
      json_object_foreach(val, rk, rv) {
        if (strcmp(rk, "delegate") != 0)
          return kyb_error_set(err, EINVAL, "unknown field runtime.%s", rk);
        if (!json_is_string(rv) || json_string_length(rv) == 0)
          return kyb_error_set(err, EINVAL, "runtime.delegate must be a non-empty string");
        free(out->delegate);
        out->delegate = strdup(json_string_value(rv));
      }
    } else if (strcmp(key, "agentSocket") == 0) {
      if (!json_is_string(val) || json_string_value(val)[0] != '/')
        return kyb_error_set(err, EINVAL, "agentSocket must be an absolute path");
      free(out->agent_socket);
      out->agent_socket = strdup(json_string_value(val));
    } else {
      return kyb_error_set(err, EINVAL, "unknown field %s", key);
    }
  }
  if (set_defaults(out, err) < 0 || add_store(out, out->default_store, err) < 0)
    return kyb_error_wrap(err, "defaultStore");
  size_t i;
  json_t *s;
  json_array_foreach(json_object_get(root, "stores"), i, s) {
    if (!json_is_string(s))
      return kyb_error_set(err, EINVAL, "stores[%zu] must be a string", i);
    if (add_store(out, json_string_value(s), err) < 0)
      return kyb_error_wrap(err, "stores[%zu]", i);
  }
  return 0;
}

int kyb_nodeconf_parse(const char *data, size_t len, kyb_nodeconf *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  if (parse(data, len, out, err) < 0) {
    kyb_nodeconf_clear(out);
    return -1;
  }
  return 0;
}

int kyb_nodeconf_load(const char *path, kyb_nodeconf *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  bool explicit_path = path != NULL;
  if (path == NULL) {
    const char *env = getenv("KYBERNATE_CONFIG");
    explicit_path = env != NULL && *env != '\0';
    path = explicit_path ? env : KYB_NODECONF_DEFAULT_PATH;
  }
  cleanup_free char *buf = NULL;
  size_t len = 0;
  if (kyb_read_file(path, NODECONF_MAX_BYTES, &buf, &len, err) < 0) {
    if (kyb_error_code(*err) == ENOENT && !explicit_path) {
      kyb_error_clear(err);
      if (set_defaults(out, err) < 0 || add_store(out, out->default_store, err) < 0)
        return -1;
      return 0;
    }
    return kyb_error_wrap(err, "read Kybernate configuration");
  }
  if (kyb_nodeconf_parse(buf, len, out, err) < 0)
    return kyb_error_wrap(err, "Kybernate configuration %s", path);
  out->path = strdup(path);
  return 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CheckpointRequest parsing and checks (request.h).
 */
#include "agent/request.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image/image.h"
#include "kube/client.h"
#include "util/cleanup.h"

#define MAX_URI 4096
#define MAX_UID 128

const char *kyb_agent_phase_name(kyb_agent_phase p) {
  switch (p) {
  case KYB_AGENT_PHASE_PENDING:
    return "Pending";
  case KYB_AGENT_PHASE_RUNNING:
    return "Running";
  case KYB_AGENT_PHASE_COMPLETED:
    return "Completed";
  case KYB_AGENT_PHASE_FAILED:
    return "Failed";
  }
  return "Unknown";
}

/* ---- syntax ---------------------------------------------------------------------------- */

static bool label_ok(const char *s, size_t len) {
  if (len == 0 || len > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[len - 1]))
    return false;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(islower(c) || isdigit(c) || c == '-'))
      return false;
  }
  return true;
}

bool kyb_agent_dns_label_valid(const char *s) {
  return s != NULL && label_ok(s, strlen(s));
}

bool kyb_agent_dns_subdomain_valid(const char *s) {
  if (s == NULL)
    return false;
  size_t len = strlen(s);
  if (len == 0 || len > 253)
    return false;
  const char *p = s;
  while (true) {
    const char *dot = strchr(p, '.');
    size_t n = dot ? (size_t)(dot - p) : strlen(p);
    if (!label_ok(p, n))
      return false;
    if (dot == NULL)
      return true;
    p = dot + 1;
  }
}

/* No blank, ',' or '=' (they would split the restore-from annotation), no
 * control character. */
static bool plain_chars(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p <= ' ' || *p == ',' || *p == '=' || *p == 0x7f)
      return false;
  return true;
}

/* A ".." path segment: never let a request name a directory above the one
 * it names. */
static bool has_dotdot(const char *path) {
  for (const char *p = path; (p = strstr(p, "..")) != NULL; p += 2) {
    bool start = p == path || p[-1] == '/';
    bool end = p[2] == '\0' || p[2] == '/';
    if (start && end)
      return true;
  }
  return false;
}

static bool s3_bucket_ok(const char *b, size_t n) {
  if (n < 3 || n > 63 || !isalnum((unsigned char)b[0]) || !isalnum((unsigned char)b[n - 1]))
    return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)b[i];
    if (!(islower(c) || isdigit(c) || c == '.' || c == '-'))
      return false;
  }
  return true;
}

bool kyb_agent_store_uri_valid(const char *s) {
  if (s == NULL || strlen(s) > MAX_URI || !plain_chars(s))
    return false;
  if (strncmp(s, "file://", 7) == 0) {
    const char *path = s + 7;
    if (strncmp(path, "localhost", 9) == 0)
      path += 9;
    return path[0] == '/' && !has_dotdot(path);
  }
  if (strncmp(s, "oci://", 6) == 0) {
    const char *host = s + 6;
    const char *slash = strchr(host, '/');
    return slash != NULL && slash != host && slash[1] != '\0';
  }
  if (strncmp(s, "s3://", 5) == 0) {
    const char *b = s + 5;
    const char *slash = strchr(b, '/');
    size_t n = slash ? (size_t)(slash - b) : strlen(b);
    return s3_bucket_ok(b, n) && (slash == NULL || !has_dotdot(slash));
  }
  return false;
}

bool kyb_agent_image_ref_valid(const char *s) {
  if (s == NULL || strlen(s) > MAX_URI || !plain_chars(s))
    return false;
  if (kyb_image_name_valid(s))
    return true;
  bool scheme =
      strncmp(s, "file://", 7) == 0 || strncmp(s, "oci://", 6) == 0 || strncmp(s, "s3://", 5) == 0;
  const char *rest = strstr(s, "://");
  return scheme && rest != NULL && rest[3] != '\0' && !has_dotdot(rest + 3);
}

/* ---- fields ---------------------------------------------------------------------------- */

/* An optional string field: NULL when absent; EINVAL when not a string or
 * over max bytes. */
static int opt_string(const json_t *o, const char *key, size_t max, const char *where, char **out,
                      kyb_error **err) {
  *out = NULL;
  const json_t *v = json_object_get(o, key);
  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_string(v))
    return kyb_error_set(err, EINVAL, "%s.%s is not a string", where, key);
  if (json_string_length(v) > max || strlen(json_string_value(v)) != json_string_length(v))
    return kyb_error_set(err, EINVAL, "%s.%s is longer than %zu bytes or holds a NUL", where, key,
                         max);
  *out = strdup(json_string_value(v));
  return *out ? 0 : kyb_error_set(err, ENOMEM, "%s.%s", where, key);
}

static int req_string(const json_t *o, const char *key, size_t max, const char *where, char **out,
                      kyb_error **err) {
  if (opt_string(o, key, max, where, out, err) < 0)
    return -1;
  if (*out == NULL || **out == '\0')
    return kyb_error_set(err, EINVAL, "%s.%s is missing", where, key);
  return 0;
}

/* An optional integer within [lo, hi]; dflt when absent. */
static int opt_int(const json_t *o, const char *key, long lo, long hi, long dflt, const char *where,
                   long *out, kyb_error **err) {
  const json_t *v = json_object_get(o, key);
  *out = dflt;
  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
    return kyb_error_set(err, EINVAL, "%s.%s must be an integer from %ld to %ld", where, key, lo,
                         hi);
  *out = (long)json_integer_value(v);
  return 0;
}

static int opt_bool(const json_t *o, const char *key, bool dflt, const char *where, bool *out,
                    kyb_error **err) {
  const json_t *v = json_object_get(o, key);
  *out = dflt;
  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_boolean(v))
    return kyb_error_set(err, EINVAL, "%s.%s is not a boolean", where, key);
  *out = json_is_true(v);
  return 0;
}

/* A list of distinct strings, each accepted by ok(); at most
 * KYB_AGENT_MAX_ITEMS; NULL-terminated. */
static int string_list(const json_t *o, const char *key, bool (*ok)(const char *), const char *what,
                       char ***out, size_t *n, kyb_error **err) {
  *out = NULL;
  *n = 0;
  const json_t *v = json_object_get(o, key);
  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_array(v))
    return kyb_error_set(err, EINVAL, "spec.%s is not a list", key);
  size_t len = json_array_size(v);
  if (len > KYB_AGENT_MAX_ITEMS)
    return kyb_error_set(err, EINVAL, "spec.%s has %zu entries (at most %d)", key, len,
                         KYB_AGENT_MAX_ITEMS);
  cleanup_strv char **list = calloc(len + 1, sizeof(char *));
  if (list == NULL)
    return kyb_error_set(err, ENOMEM, "spec.%s", key);
  for (size_t i = 0; i < len; i++) {
    const char *s = json_string_value(json_array_get(v, i));
    if (s == NULL || !ok(s))
      return kyb_error_set(err, EINVAL, "spec.%s[%zu] is not a valid %s", key, i, what);
    for (size_t j = 0; j < i; j++)
      if (strcmp(list[j], s) == 0)
        return kyb_error_set(err, EINVAL, "spec.%s names %s twice", key, s);
    if ((list[i] = strdup(s)) == NULL)
      return kyb_error_set(err, ENOMEM, "spec.%s", key);
  }
  *out = steal_ptr(list);
  *n = len;
  return 0;
}

static int parse_time(const json_t *o, const char *key, const char *where, int64_t *out,
                      kyb_error **err) {
  *out = 0;
  const char *s = json_string_value(json_object_get(o, key));
  if (s == NULL)
    return 0;
  if (kyb_kube_time_parse(s, out, err) < 0)
    return kyb_error_wrap(err, "%s.%s", where, key);
  return 0;
}

static int parse_metadata(const json_t *obj, kyb_agent_request *r, kyb_error **err) {
  const json_t *m = json_object_get(obj, "metadata");
  if (!json_is_object(m))
    return kyb_error_set(err, EINVAL, "the object has no metadata");
  if (req_string(m, "namespace", 63, "metadata", &r->ns, err) < 0 ||
      req_string(m, "name", 253, "metadata", &r->name, err) < 0 ||
      req_string(m, "uid", MAX_UID, "metadata", &r->uid, err) < 0 ||
      req_string(m, "resourceVersion", 64, "metadata", &r->resource_version, err) < 0)
    return -1;
  const json_t *g = json_object_get(m, "generation");
  r->generation = json_is_integer(g) && json_integer_value(g) > 0 ? json_integer_value(g) : 0;
  const json_t *labels = json_object_get(m, "labels");
  return opt_string(labels, KYB_AGENT_NODE_LABEL, 253, "metadata.labels", &r->node_label, err);
}

static int parse_status(const json_t *obj, kyb_agent_request *r, kyb_error **err) {
  const json_t *st = json_object_get(obj, "status");
  r->phase = KYB_AGENT_PHASE_PENDING;
  if (st == NULL || json_is_null(st))
    return 0;
  if (!json_is_object(st))
    return kyb_error_set(err, EINVAL, "status is not an object");
  const char *phase = json_string_value(json_object_get(st, "phase"));
  if (phase == NULL || strcmp(phase, "Pending") == 0)
    r->phase = KYB_AGENT_PHASE_PENDING;
  else if (strcmp(phase, "Running") == 0)
    r->phase = KYB_AGENT_PHASE_RUNNING;
  else if (strcmp(phase, "Completed") == 0)
    r->phase = KYB_AGENT_PHASE_COMPLETED;
  else if (strcmp(phase, "Failed") == 0)
    r->phase = KYB_AGENT_PHASE_FAILED;
  else
    return kyb_error_set(err, EINVAL,
                         "status.phase \"%.32s\" is not one of Pending, Running, "
                         "Completed, Failed",
                         phase);
  if (opt_string(st, "step", 64, "status", &r->step, err) < 0 ||
      opt_int(st, "attempts", 0, 100, 0, "status", &r->attempts, err) < 0 ||
      parse_time(st, "startedAt", "status", &r->started_us, err) < 0)
    return -1;
  const json_t *a = json_object_get(st, "agent");
  if (json_is_object(a) &&
      (opt_string(a, "podName", 253, "status.agent", &r->holder_pod, err) < 0 ||
       opt_string(a, "podUID", MAX_UID, "status.agent", &r->holder_uid, err) < 0 ||
       parse_time(a, "renewTime", "status.agent", &r->renew_us, err) < 0))
    return -1;
  return 0;
}

static bool container_name_ok(const char *s) {
  return kyb_agent_dns_label_valid(s);
}

static int parse_spec(const json_t *obj, kyb_agent_request *r, kyb_error **err) {
  const json_t *spec = json_object_get(obj, "spec");
  if (!json_is_object(spec))
    return kyb_error_set(err, EINVAL, "the request has no spec");
  cleanup_free char *action = NULL;
  if (opt_string(spec, "action", 32, "spec", &action, err) < 0)
    return -1;
  if (action == NULL || strcmp(action, "Checkpoint") == 0)
    r->action = KYB_AGENT_ACTION_CHECKPOINT;
  else if (strcmp(action, "DeleteImage") == 0)
    r->action = KYB_AGENT_ACTION_DELETE_IMAGE;
  else
    return kyb_error_set(err, EINVAL, "spec.action \"%s\" is not Checkpoint or DeleteImage",
                         action);
  if (req_string(spec, "nodeName", 253, "spec", &r->node, err) < 0)
    return -1;
  if (!kyb_agent_dns_subdomain_valid(r->node))
    return kyb_error_set(err, EINVAL, "spec.nodeName \"%s\" is not a node name", r->node);
  const json_t *ref = json_object_get(spec, "checkpointRef");
  if (!json_is_object(ref) ||
      req_string(ref, "name", 253, "spec.checkpointRef", &r->checkpoint_name, err) < 0 ||
      req_string(ref, "uid", MAX_UID, "spec.checkpointRef", &r->checkpoint_uid, err) < 0)
    return ref ? -1 : kyb_error_set(err, EINVAL, "spec.checkpointRef is missing");
  if (opt_string(spec, "storage", MAX_URI, "spec", &r->storage, err) < 0)
    return -1;
  if (r->storage != NULL && !kyb_agent_store_uri_valid(r->storage))
    return kyb_error_set(err, EINVAL, "spec.storage \"%s\" is not a store URI", r->storage);
  long lock = 0;
  if (opt_bool(spec, "leaveRunning", true, "spec", &r->leave_running, err) < 0 ||
      opt_int(spec, "gpuLockTimeoutSeconds", 1, 600, KYB_AGENT_DEFAULT_LOCK_TIMEOUT_S, "spec",
              &lock, err) < 0 ||
      opt_int(spec, "deadlineSeconds", 10, 86400, KYB_AGENT_DEFAULT_DEADLINE_S, "spec",
              &r->deadline_s, err) < 0)
    return -1;
  r->gpu_lock_timeout_s = (unsigned)lock;

  if (r->action == KYB_AGENT_ACTION_DELETE_IMAGE) {
    if (string_list(spec, "imageRefs", kyb_agent_image_ref_valid, "image reference", &r->image_refs,
                    &r->nimage_refs, err) < 0)
      return -1;
    if (r->nimage_refs == 0)
      return kyb_error_set(err, EINVAL, "spec.imageRefs is empty (DeleteImage needs images)");
    return 0;
  }
  if (req_string(spec, "podNamespace", 63, "spec", &r->pod_ns, err) < 0 ||
      req_string(spec, "podName", 253, "spec", &r->pod_name, err) < 0 ||
      req_string(spec, "podUID", MAX_UID, "spec", &r->pod_uid, err) < 0)
    return -1;
  if (!kyb_agent_dns_label_valid(r->pod_ns) || !kyb_agent_dns_subdomain_valid(r->pod_name))
    return kyb_error_set(err, EINVAL, "spec.podNamespace/podName \"%s/%s\" is not a pod name",
                         r->pod_ns, r->pod_name);
  /* A pod is looked up in the request's own namespace only (docs/api.md). */
  if (strcmp(r->pod_ns, r->ns) != 0)
    return kyb_error_set(err, EINVAL,
                         "spec.podNamespace %s is not the request's namespace %s: a request "
                         "may only name a pod of its own namespace",
                         r->pod_ns, r->ns);
  if (string_list(spec, "containers", container_name_ok, "container name", &r->containers,
                  &r->ncontainers, err) < 0)
    return -1;
  if (r->ncontainers == 0)
    return kyb_error_set(err, EINVAL, "spec.containers is empty (the operator resolves them)");
  return 0;
}

int kyb_agent_request_parse(const json_t *obj, kyb_agent_request *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  if (!json_is_object(obj))
    return kyb_error_set(err, EINVAL, "a CheckpointRequest must be a JSON object");
  if (parse_metadata(obj, out, err) < 0 || parse_status(obj, out, err) < 0) {
    kyb_agent_request_clear(out);
    return kyb_error_wrap(err, "CheckpointRequest");
  }
  if (parse_spec(obj, out, err) < 0)
    return kyb_error_wrap(err, "CheckpointRequest %s/%s", out->ns, out->name);
  if (out->node_label != NULL && out->node != NULL && strcmp(out->node_label, out->node) != 0)
    return kyb_error_set(err, EINVAL,
                         "CheckpointRequest %s/%s: label %s=%s differs from spec.nodeName %s",
                         out->ns, out->name, KYB_AGENT_NODE_LABEL, out->node_label, out->node);
  return 0;
}

void kyb_agent_request_clear(kyb_agent_request *r) {
  if (r == NULL)
    return;
  char **strv[] = {r->containers, r->image_refs};
  for (size_t k = 0; k < 2; k++)
    if (strv[k] != NULL) {
      for (char **p = strv[k]; *p; p++)
        free(*p);
      free(strv[k]);
    }
  char *strs[] = {r->ns,
                  r->name,
                  r->uid,
                  r->resource_version,
                  r->node_label,
                  r->node,
                  r->pod_ns,
                  r->pod_name,
                  r->pod_uid,
                  r->storage,
                  r->checkpoint_name,
                  r->checkpoint_uid,
                  r->step,
                  r->holder_pod,
                  r->holder_uid};
  for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
    free(strs[i]);
  memset(r, 0, sizeof(*r));
}

bool kyb_agent_request_final(const kyb_agent_request *r) {
  return r->phase == KYB_AGENT_PHASE_COMPLETED || r->phase == KYB_AGENT_PHASE_FAILED;
}

/* ---- image names ----------------------------------------------------------------------- */

int kyb_agent_image_name(const kyb_agent_request *r, const char *container, char **out,
                         kyb_error **err) {
  *out = NULL;
  if (r->started_us <= 0)
    return kyb_error_set(err, EINVAL, "the request has no startedAt: it was never claimed");
  char uid5[6] = "";
  size_t k = 0;
  for (const char *p = r->uid; p && *p && k < 5; p++)
    if (isalnum((unsigned char)*p))
      uid5[k++] = (char)tolower((unsigned char)*p);
  uid5[k] = '\0';
  time_t t = (time_t)(r->started_us / 1000000);
  struct tm tm;
  char stamp[32];
  if (gmtime_r(&t, &tm) == NULL || strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm) == 0)
    return kyb_error_set(err, EINVAL, "startedAt out of range");
  /* "-<container>-<stamp>-<uid5>" after the pod part. */
  size_t tail = 1 + strlen(container) + 1 + strlen(stamp) + (k ? 1 + k : 0);
  size_t pod_len = strlen(r->pod_name);
  if (tail + 1 > KYB_IMAGE_NAME_MAX)
    return kyb_error_set(err, EINVAL, "container name %s too long for an image name", container);
  if (pod_len + tail > KYB_IMAGE_NAME_MAX)
    pod_len = KYB_IMAGE_NAME_MAX - tail;
  char *name = NULL;
  if (asprintf(&name, "%.*s-%s-%s%s%s", (int)pod_len, r->pod_name, container, stamp, k ? "-" : "",
               uid5) < 0)
    return kyb_error_set(err, ENOMEM, "image name");
  /* A shortened pod part may end in '.' or '-': still a valid name, but
   * check it all once more rather than trust the arithmetic. */
  if (kyb_image_name_check(name, err) < 0) {
    free(name);
    return -1;
  }
  *out = name;
  return 0;
}

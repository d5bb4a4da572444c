/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The local unix-socket API (api.h) on libmicrohttpd: one thread per
 * connection, so a handler may wait for a checkpoint to finish.
 */
#define KYB_LOG_MODULE "api"

#include "agent/api.h"

#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/internal.h"
#include "agent/recover.h"
#include "agent/report.h"
#include "image/image.h"
#include "store/store.h"
#include "uploader/client.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/unix_server.h"

#define CONNECTION_LIMIT 32
#define CONNECTION_TIMEOUT_S 0 /* a checkpoint answer may take minutes */

struct kyb_agent_api {
  struct MHD_Daemon *mhd;
  kyb_agent *a;
  char *path;
};

typedef kyb_http_body body;

/* ---- the socket ------------------------------------------------------------------------ */

/* ---- answers --------------------------------------------------------------------------- */

static json_t *error_bodyv(int status, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static json_t *error_bodyv(int status, const char *fmt, va_list ap) {
  char *msg = NULL;
  if (vasprintf(&msg, fmt, ap) < 0)
    msg = NULL;
  json_t *b = json_pack("{s:{s:i, s:s}}", "error", "status", status, "message",
                        msg ? msg : "out of memory");
  free(msg);
  return b;
}

static json_t *error_body(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static json_t *error_body(int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  json_t *b = error_bodyv(status, fmt, ap);
  va_end(ap);
  return b;
}

static enum MHD_Result send_json(struct MHD_Connection *c, int status, json_t *b) {
  char *text = b ? json_dumps(b, JSON_COMPACT) : NULL;
  json_decref(b);
  if (text == NULL)
    text = strdup("{}");
  if (text == NULL)
    return MHD_NO;
  size_t n = strlen(text);
  char *payload = realloc(text, n + 2);
  if (payload == NULL) {
    free(text);
    return MHD_NO;
  }
  payload[n++] = '\n';
  payload[n] = '\0';
  struct MHD_Response *r = MHD_create_response_from_buffer(n, payload, MHD_RESPMEM_MUST_FREE);
  if (r == NULL) {
    free(payload);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
  enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
  MHD_destroy_response(r);
  return ret;
}

/* ---- /v1/checkpoint -------------------------------------------------------------------- */

json_t *kyb_agent_api_checkpoint_job(const json_t *b, const char *address,
                                     const char *default_store, int *status, char *message,
                                     size_t size) {
  *status = 400;
  static const char *const known[] = {"container",
                                      "namespace",
                                      "pod",
                                      "store",
                                      "name",
                                      "leaveRunning",
                                      "gpuLockTimeoutSeconds",
                                      "tcpEstablished",
                                      "fileLocks",
                                      "extUnixSk"};
  const char *key;
  json_t *v;
  if (!json_is_object(b)) {
    snprintf(message, size, "the body must be a JSON object");
    return NULL;
  }
  json_object_foreach((json_t *)b, key, v) {
    bool ok = false;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
      ok |= strcmp(known[i], key) == 0;
    if (!ok) {
      snprintf(message, size, "unknown field \"%.64s\"", key);
      return NULL;
    }
  }
  const char *container = json_string_value(json_object_get(b, "container"));
  const char *ns = json_string_value(json_object_get(b, "namespace"));
  const char *pod = json_string_value(json_object_get(b, "pod"));
  const char *store = json_string_value(json_object_get(b, "store"));
  const char *name = json_string_value(json_object_get(b, "name"));
  const json_t *lock = json_object_get(b, "gpuLockTimeoutSeconds");
  if (container == NULL || *container == '\0' || strlen(container) > 256) {
    snprintf(message, size,
             "\"container\" is required (a container id, or with \"pod\" the "
             "container's name)");
    return NULL;
  }
  if (store != NULL && !kyb_agent_store_uri_valid(store)) {
    snprintf(message, size, "\"store\" is not a store URI");
    return NULL;
  }
  if (name != NULL && !kyb_image_name_valid(name)) {
    snprintf(message, size, "\"name\" is not an image name ([a-z0-9][a-z0-9._-]{0,127})");
    return NULL;
  }
  if (lock != NULL &&
      (!json_is_integer(lock) || json_integer_value(lock) < 1 || json_integer_value(lock) > 600)) {
    snprintf(message, size, "\"gpuLockTimeoutSeconds\" must be an integer from 1 to 600");
    return NULL;
  }
  json_t *job = json_pack("{s:s?, s:s, s:b, s:b, s:b, s:b, s:I}", "address", address, "store",
                          store ? store : default_store, "leaveRunning",
                          json_is_true(json_object_get(b, "leaveRunning")), "tcpEstablished",
                          json_is_true(json_object_get(b, "tcpEstablished")), "fileLocks",
                          json_is_true(json_object_get(b, "fileLocks")), "extUnixSk",
                          json_is_true(json_object_get(b, "extUnixSk")), "gpuLockTimeoutMs",
                          (json_int_t)(lock ? json_integer_value(lock) : 10) * 1000);
  if (job == NULL) {
    *status = 500;
    snprintf(message, size, "out of memory");
    return NULL;
  }
  if (name != NULL)
    json_object_set_new(job, "name", json_string(name));
  if (pod != NULL) {
    const char *slash = strchr(pod, '/');
    char pns[64];
    if (slash == NULL || (size_t)(slash - pod) >= sizeof(pns)) {
      json_decref(job);
      snprintf(message, size, "\"pod\" must be NAMESPACE/NAME");
      return NULL;
    }
    snprintf(pns, sizeof(pns), "%.*s", (int)(slash - pod), pod);
    if (!kyb_agent_dns_label_valid(pns) || !kyb_agent_dns_subdomain_valid(slash + 1) ||
        !kyb_agent_dns_label_valid(container)) {
      json_decref(job);
      snprintf(message, size, "\"pod\"/\"container\" are not Kubernetes names");
      return NULL;
    }
    json_object_set_new(job, "podNamespace", json_string(pns));
    json_object_set_new(job, "podName", json_string(slash + 1));
    json_object_set_new(job, "container", json_string(container));
  } else {
    json_object_set_new(job, "containerId", json_string(container));
    json_object_set_new(job, "namespace", json_string(ns ? ns : "default"));
  }
  *status = 200;
  return job;
}

void kyb_agent_local_finish(kyb_agent_local *l, int status, json_t *answer) {
  pthread_mutex_lock(&l->mu);
  l->status = status;
  l->answer = answer;
  l->done = true;
  pthread_cond_signal(&l->cv);
  pthread_mutex_unlock(&l->mu);
}

/* A remote store's checkpoint was made in the node's local store: the
 * uploader pushes it (the agent holds no credentials), then the local copy
 * goes either way.  The answer names the remote image. */
static json_t *push_local(kyb_agent *a, const char *remote, kyb_agent_progress *p,
                          const json_t *result, int *status) {
  const char *local = json_string_value(json_object_get(result, "ref"));
  const char *name = json_string_value(json_object_get(result, "name"));
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *ref = NULL;
  json_t *answer = NULL;
  if (local == NULL || name == NULL) {
    *status = 500;
    answer = error_body(500, "the checkpoint worker named no image");
  } else if (kyb_agent_upload(a, local, remote, p, &ref, &err) < 0) {
    *status = 422;
    answer = error_body(422, "%s", kyb_error_message(err));
  } else {
    answer = json_deep_copy(result);
    json_object_set_new(answer, "ref", json_string(ref));
  }
  bool existed = false;
  kyb_error_clear(&err);
  if (name != NULL && kyb_agent_image_delete(a->local_uri, name, &existed, &err) < 0)
    log_warn_chain(err, "local copy %s left behind", name);
  return answer;
}

/* The worker thread's side. */
void kyb_agent_handle_local(kyb_agent *a, kyb_agent_local *l) {
  kyb_agent_progress p = {.a = a, .timings = json_object()};
  kyb_agent_run_outcome o = {0};
  cleanup_error kyb_error *err = NULL;
  const char *store = json_string_value(json_object_get(l->job, "store"));
  /* Like a CheckpointRequest: a remote store through the uploader. */
  cleanup_free char *remote =
      kyb_agent_store_remote(store) && a->cfg->uploader != NULL ? strdup(store) : NULL;
  json_t *answer = NULL;
  int status = 200;
  if (remote != NULL && a->local_uri == NULL) {
    status = 403;
    answer = error_body(403,
                        "store %s goes through the uploader, which reads only from a file:// "
                        "store of the node: the node config names none",
                        remote);
  } else if (remote != NULL &&
             json_object_set_new(l->job, "store", json_string(a->local_uri)) < 0) {
    status = 500;
    answer = error_body(500, "out of memory");
  } else if (kyb_agent_store_allowed(a, remote ? remote : store, &err) < 0) {
    status = 403;
    answer = error_body(403, "%s", kyb_error_message(err));
  } else if (kyb_agent_run_worker(a, l->job, &p, &o, &err) < 0) {
    status = 500;
    answer = error_body(500, "%s", kyb_error_message(err));
  } else if (o.result != NULL) {
    answer = remote ? push_local(a, remote, &p, o.result, &status) : json_deep_copy(o.result);
    json_object_set(answer, "timings", p.timings);
  } else if (o.error != NULL) {
    status = 422;
    const char *msg = json_string_value(json_object_get(o.error, "message"));
    answer = error_body(422, "%s", msg ? msg : "checkpoint failed");
  } else {
    /* The worker died or was stopped: nothing may stay frozen. */
    kyb_agent_recover_target t = {
        .address = a->cfg->containerd,
        .namespace_ = json_string_value(json_object_get(l->job, "namespace")),
        .container_id = json_string_value(json_object_get(l->job, "containerId")),
        .pod_namespace = json_string_value(json_object_get(l->job, "podNamespace")),
        .pod_name = json_string_value(json_object_get(l->job, "podName")),
        .container_name = json_string_value(json_object_get(l->job, "container"))};
    kyb_agent_recover_report rep;
    char line[512] = "";
    if (kyb_agent_recover_container(&t, &rep, &err) < 0)
      snprintf(line, sizeof(line), "recovery failed: %s", kyb_error_message(err));
    else
      kyb_agent_recover_describe(&rep, "container", line, sizeof(line));
    kyb_agent_store_cleanup(json_string_value(json_object_get(l->job, "store")));
    status = 500;
    answer = error_body(500, "the checkpoint worker did not finish (%s, during %s); %s",
                        o.end == KYB_AGENT_RUN_SHUTDOWN ? "agent stopping" : "it died",
                        o.phase ? o.phase : "start", line);
  }
  kyb_agent_run_outcome_clear(&o);
  json_decref(p.timings);
  kyb_agent_local_finish(l, status, answer);
}

static enum MHD_Result post_checkpoint(kyb_agent_api *api, struct MHD_Connection *c,
                                       const json_t *b) {
  int status = 0;
  char msg[512];
  json_t *job = kyb_agent_api_checkpoint_job(b, api->a->cfg->containerd, api->a->default_store,
                                             &status, msg, sizeof(msg));
  if (job == NULL)
    return send_json(c, status, error_body(status, "%s", msg));
  kyb_agent_local l = {.job = job};
  pthread_mutex_init(&l.mu, NULL);
  pthread_cond_init(&l.cv, NULL);
  if (kyb_agent_enqueue_local(api->a, &l) < 0) {
    json_decref(job);
    pthread_mutex_destroy(&l.mu);
    pthread_cond_destroy(&l.cv);
    return send_json(c, 503, error_body(503, "the agent is stopping"));
  }
  pthread_mutex_lock(&l.mu);
  while (!l.done)
    pthread_cond_wait(&l.cv, &l.mu);
  pthread_mutex_unlock(&l.mu);
  pthread_mutex_destroy(&l.mu);
  pthread_cond_destroy(&l.cv);
  json_decref(job);
  return send_json(c, l.status, l.answer);
}

/* ---- /v1/images/fetch ------------------------------------------------------------------ */

static json_t *fetch_local(kyb_agent *a, const char *ref, const char *uri, const char *name,
                           int *status) {
  cleanup_error kyb_error *err = NULL;
  if (kyb_agent_store_allowed(a, uri, &err) < 0) {
    *status = 403;
    return error_body(403, "%s", kyb_error_message(err));
  }
  kyb_store *s = NULL;
  cleanup_free char *path = NULL;
  if (kyb_store_open(uri, 0, &s, &err) < 0 || kyb_store_get_path(s, name, &path, &err) < 0) {
    kyb_store_close(s);
    *status = kyb_error_code(err) == ENOENT ? 404 : 500;
    return error_body(*status, "%s", kyb_error_message(err));
  }
  kyb_store_close(s);
  *status = 200;
  return json_pack("{s:s, s:s}", "ref", ref, "path", path);
}

static json_t *fetch_remote(kyb_agent *a, const char *ref, int *status) {
  if (a->cfg->uploader == NULL) {
    *status = 503;
    return error_body(503, "no uploader configured (KYBERNATE_UPLOADER_SOCKET): remote images "
                           "cannot be fetched on this node");
  }
  cleanup_error kyb_error *err = NULL;
  kyb_uploader_client *c = NULL;
  kyb_upload_job job = {0};
  int r = kyb_uploader_client_new(a->cfg->uploader, &c, &err);
  if (r == 0)
    r = kyb_uploader_client_fetch(c, ref, &job, &err);
  if (r == 0)
    r = kyb_uploader_client_wait(c, job.id, 200, NULL, NULL, &job, &err);
  json_t *answer;
  if (r < 0) {
    int e = kyb_error_code(err);
    *status = e == ENOENT ? 404 : e == EPERM ? 403 : e == EINVAL ? 400 : 502;
    answer = error_body(*status, "%s", kyb_error_message(err));
  } else {
    *status = 200;
    answer = json_pack("{s:s, s:s?, s:s?}", "ref", job.ref ? job.ref : ref, "path", job.path,
                       "digest", job.digest);
  }
  kyb_upload_job_clear(&job);
  kyb_uploader_client_free(c);
  return answer;
}

static enum MHD_Result post_fetch(kyb_agent_api *api, struct MHD_Connection *c, const json_t *b) {
  const char *ref = json_string_value(json_object_get(b, "ref"));
  if (ref == NULL || json_object_size(b) != 1 || !kyb_agent_image_ref_valid(ref))
    return send_json(c, 400, error_body(400, "the body must be {\"ref\": <image reference>}"));
  cleanup_free char *uri = NULL;
  cleanup_free char *name = NULL;
  cleanup_error kyb_error *err = NULL;
  if (kyb_image_ref_parse(ref, api->a->default_store, &uri, &name, &err) < 0)
    return send_json(c, 400, error_body(400, "%s", kyb_error_message(err)));
  int status = 500;
  json_t *answer = kyb_agent_store_remote(uri) ? fetch_remote(api->a, ref, &status)
                                               : fetch_local(api->a, ref, uri, name, &status);
  return send_json(c, status, answer);
}

/* ---- /v1/restore-outcome --------------------------------------------------------------- */

static enum MHD_Result post_outcome(kyb_agent_api *api, struct MHD_Connection *c, const json_t *b) {
  cleanup_error kyb_error *err = NULL;
  kyb_agent_restore_report r = {0};
  if (kyb_agent_restore_report_parse(b, &r, &err) < 0)
    return send_json(c, 400, error_body(400, "%s", kyb_error_message(err)));
  int status = 500;
  json_t *answer = NULL;
  if (kyb_agent_record_outcome(api->a, &r, &status, &err) < 0) {
    log_warn_chain(err, "restore outcome not recorded");
    answer = error_body(status, "%s", kyb_error_message(err));
  } else {
    answer = json_pack("{s:s, s:s}", "annotation", KYB_AGENT_OUTCOME_ANNOTATION, "outcome",
                       r.cold ? "cold" : "restored");
  }
  kyb_agent_restore_report_clear(&r);
  return send_json(c, status, answer);
}

/* ---- routing --------------------------------------------------------------------------- */

static enum MHD_Result healthz(kyb_agent_api *api, struct MHD_Connection *c) {
  kyb_agent *a = api->a;
  pthread_mutex_lock(&a->mu);
  json_t *b = json_pack("{s:s, s:s?, s:s, s:b, s:b, s:s?, s:I, s:I}", "status",
                        kyb_agent_stopping(a) ? "stopping" : "ok", "node", a->cfg->node, "mode",
                        a->cfg->standalone ? "standalone" : "kubernetes", "watching", a->watching,
                        "busy", a->current != NULL, "current", a->current, "queued",
                        (json_int_t)a->queued, "completed", (json_int_t)a->done_requests);
  pthread_mutex_unlock(&a->mu);
  return send_json(c, kyb_agent_stopping(a) ? 503 : 200, b);
}

static enum MHD_Result route(kyb_agent_api *api, struct MHD_Connection *c, const char *url,
                             const char *method, body *bd) {
  bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
  if (strcmp(url, "/v1/healthz") == 0 || strcmp(url, "/healthz") == 0)
    return get ? healthz(api, c) : send_json(c, 405, error_body(405, "GET only"));
  bool ckpt = strcmp(url, "/v1/checkpoint") == 0, fetch = strcmp(url, "/v1/images/fetch") == 0;
  bool outcome = strcmp(url, "/v1/restore-outcome") == 0;
  if (!ckpt && !fetch && !outcome)
    return send_json(c, 404, error_body(404, "no such endpoint: %.100s", url));
  if (!post)
    return send_json(c, 405, error_body(405, "POST only"));
  if (bd->too_large)
    return send_json(c, 413, error_body(413, "body over %u bytes", KYB_AGENT_API_MAX_BODY));
  json_error_t jerr;
  cleanup_json json_t *b =
      json_loadb(bd->buf ? bd->buf : "", bd->len, JSON_REJECT_DUPLICATES, &jerr);
  if (!json_is_object(b))
    return send_json(c, 400, error_body(400, "the body is not a JSON object: %s", jerr.text));
  log_info("%s %s", method, url);
  if (outcome)
    return post_outcome(api, c, b);
  return ckpt ? post_checkpoint(api, c, b) : post_fetch(api, c, b);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **con_cls) {
  (void)version;
  body *b = *con_cls;
  if (b == NULL) {
    b = calloc(1, sizeof(*b));
    if (b == NULL)
      return MHD_NO;
    *con_cls = b;
    return MHD_YES;
  }
  if (*data_size > 0) {
    if (!kyb_http_body_add(b, data, *data_size, KYB_AGENT_API_MAX_BODY))
      return MHD_NO;
    *data_size = 0;
    return MHD_YES;
  }
  return route(cls, c, url, method, b);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)c;
  (void)toe;
  kyb_http_body_free(*con_cls);
  *con_cls = NULL;
}

int kyb_agent_api_start(kyb_agent *a, const char *socket_path, kyb_agent_api **out,
                        kyb_error **err) {
  kyb_agent_api *api = calloc(1, sizeof(*api));
  if (api == NULL || (api->path = strdup(socket_path)) == NULL) {
    free(api);
    return kyb_error_set(err, ENOMEM, "local API");
  }
  api->a = a;
  int fd = kyb_unix_listen(socket_path, 32, NULL, err);
  if (fd < 0) {
    free(api->path);
    free(api);
    return kyb_error_wrap(err, "local API socket");
  }
  api->mhd = MHD_start_daemon(
      MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL,
      NULL, on_request, api, MHD_OPTION_EXTERNAL_LOGGER, kyb_mhd_log, api, MHD_OPTION_LISTEN_SOCKET,
      fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)CONNECTION_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED, on_completed, api,
      MHD_OPTION_END);
  if (api->mhd == NULL) {
    close(fd);
    unlink(api->path);
    free(api->path);
    free(api);
    return kyb_error_set(err, EIO, "libmicrohttpd did not start on %s", socket_path);
  }
  log_info("local API on %s", socket_path);
  *out = api;
  return 0;
}

void kyb_agent_api_stop(kyb_agent_api *api) {
  if (api == NULL)
    return;
  MHD_stop_daemon(api->mhd);
  if (unlink(api->path) < 0 && errno != ENOENT)
    log_warn("remove socket %s: %s", api->path, strerror(errno));
  free(api->path);
  free(api);
}

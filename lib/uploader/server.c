/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libmicrohttpd glue for the uploader's API (server.h).
 */
#define KYB_LOG_MODULE "server"

#include "uploader/server.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "uploader/api.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/unix_server.h"

#define CONNECTION_LIMIT 64
#define CONNECTION_TIMEOUT_S 30

struct kyb_uploader_server {
  struct MHD_Daemon *mhd;
  kyb_uploader *u;
  const kyb_job_policy *pol;
  char *path;
  int fd;
};

/* One request's body, collected up to the limit. */
typedef kyb_http_body body;

/* ---- the socket ------------------------------------------------------------------- */

static int listen_unix(const char *path, kyb_error **err) {
  const size_t max = sizeof(((struct sockaddr_un *)NULL)->sun_path);
  if (path[0] != '/' || strlen(path) >= max)
    return kyb_error_set(err, EINVAL, "socket path \"%s\": absolute and under %zu bytes", path,
                         max);
  return kyb_unix_listen(path, 64, "an uploader runs", err);
}

/* ---- requests ---------------------------------------------------------------------- */

static void peer(struct MHD_Connection *c, char *buf, size_t len) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  struct ucred cr;
  socklen_t cl = sizeof(cr);
  if (ci != NULL && getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0)
    snprintf(buf, len, "pid %d uid %u", (int)cr.pid, (unsigned)cr.uid);
  else
    snprintf(buf, len, "unknown peer");
}

static enum MHD_Result send_response(struct MHD_Connection *c, kyb_api_response *r) {
  cleanup_free char *text = r->body ? json_dumps(r->body, JSON_COMPACT) : NULL;
  size_t n = text ? strlen(text) : 0;
  char *payload = malloc(n + 2);
  if (payload == NULL)
    return MHD_NO;
  if (text != NULL)
    memcpy(payload, text, n);
  payload[n++] = '\n';
  payload[n] = '\0';
  struct MHD_Response *resp = MHD_create_response_from_buffer(n, payload, MHD_RESPMEM_MUST_FREE);
  if (resp == NULL) {
    free(payload);
    return MHD_NO;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (r->location[0] != '\0')
    MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
  if (r->allow != NULL)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
  char ra[16];
  if (r->retry_after_s > 0) {
    snprintf(ra, sizeof(ra), "%d", r->retry_after_s);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
  }
  enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->status, resp);
  MHD_destroy_response(resp);
  return ret;
}

static enum MHD_Result answer(kyb_uploader_server *s, struct MHD_Connection *c, const char *url,
                              const char *method, body *b) {
  kyb_api_response r = {0};
  kyb_api_request rq = {
      .method = method,
      .path = url,
      .body = b->buf,
      .len = b->len,
      .store = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "store"),
      .ref = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "ref"),
  };
  if (b->too_large)
    kyb_api_error(&r, 413, "request body larger than %u bytes", KYB_JOB_REQUEST_MAX);
  else
    kyb_uploader_api(s->u, s->pol, &rq, &r);
  char who[64];
  peer(c, who, sizeof(who));
  if (strcmp(method, "GET") == 0 && r.status < 400)
    log_debug("%s %s: %d (%s)", method, url, r.status, who);
  else
    log_info("%s %s: %d (%s)", method, url, r.status, who);
  enum MHD_Result ret = send_response(c, &r);
  kyb_api_response_clear(&r);
  return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **con_cls) {
  (void)version;
  kyb_uploader_server *s = cls;
  body *b = *con_cls;
  if (b == NULL) { /* the headers: refuse an announced oversize body before reading it */
    b = calloc(1, sizeof(*b));
    if (b == NULL)
      return MHD_NO;
    *con_cls = b;
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl != NULL && strtoull(cl, NULL, 10) > KYB_JOB_REQUEST_MAX) {
      b->too_large = true;
      return answer(s, c, url, method, b);
    }
    return MHD_YES;
  }
  if (*data_size > 0) {
    if (!kyb_http_body_add(b, data, *data_size, KYB_JOB_REQUEST_MAX))
      return MHD_NO;
    *data_size = 0;
    return MHD_YES;
  }
  return answer(s, c, url, method, b);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)c;
  (void)toe;
  kyb_http_body_free(*con_cls);
  *con_cls = NULL;
}

int kyb_uploader_server_start(const char *socket_path, kyb_uploader *u, const kyb_job_policy *pol,
                              kyb_uploader_server **out, kyb_error **err) {
  kyb_uploader_server *s = calloc(1, sizeof(*s));
  if (s == NULL || (s->path = strdup(socket_path)) == NULL) {
    free(s);
    return kyb_error_set(err, ENOMEM, "server");
  }
  s->u = u;
  s->pol = pol;
  s->fd = listen_unix(socket_path, err);
  if (s->fd < 0) {
    free(s->path);
    free(s);
    return kyb_error_wrap(err, "uploader socket");
  }
  s->mhd = MHD_start_daemon(
      MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL,
      NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, kyb_mhd_log, s, MHD_OPTION_LISTEN_SOCKET,
      s->fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)CONNECTION_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
  if (s->mhd == NULL) {
    kyb_error_set(err, EIO, "libmicrohttpd did not start on %s", socket_path);
    close(s->fd);
    unlink(s->path);
    free(s->path);
    free(s);
    return -1;
  }
  log_info("serving the uploader API on %s", socket_path);
  *out = s;
  return 0;
}

void kyb_uploader_server_stop(kyb_uploader_server *s) {
  if (s == NULL)
    return;
  MHD_stop_daemon(s->mhd); /* closes the listening socket it was given */
  if (unlink(s->path) < 0 && errno != ENOENT)
    log_warn("remove socket %s: %s", s->path, strerror(errno));
  free(s->path);
  free(s);
}

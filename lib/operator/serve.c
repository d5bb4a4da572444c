/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The operator's HTTP port (contract in metrics.h): libmicrohttpd with its
 * own thread, GET only, three paths.  It never touches the API server: a
 * scrape or a probe cannot slow the reconcilers down.
 */
#define KYB_LOG_MODULE "operator"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "operator/metrics.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/unix_server.h"

struct kyb_op_http {
  struct MHD_Daemon *mhd;
  kyb_op_metrics *m;
};

int kyb_op_parse_bind(const char *addr, void *ss, unsigned *len, uint16_t *port_out,
                      kyb_error **err) {
  memset(ss, 0, sizeof(struct sockaddr_storage));
  const char *colon = strrchr(addr, ':');
  if (colon == NULL)
    return kyb_error_set(err, EINVAL, "bind address %s: want [host]:port", addr);
  char *end = NULL;
  errno = 0;
  long port = strtol(colon + 1, &end, 10);
  if (colon[1] == '\0' || *end != '\0' || errno != 0 || port < 0 || port > 65535)
    return kyb_error_set(err, EINVAL, "bind address %s: bad port", addr);
  char host[64];
  size_t hl = (size_t)(colon - addr);
  if (hl >= sizeof(host))
    return kyb_error_set(err, EINVAL, "bind address %s: host too long", addr);
  memcpy(host, addr, hl);
  host[hl] = '\0';
  *port_out = (uint16_t)port;
  if (host[0] == '[') {
    if (hl < 2 || host[hl - 1] != ']')
      return kyb_error_set(err, EINVAL, "bind address %s: unclosed [", addr);
    host[hl - 1] = '\0';
    struct sockaddr_in6 *s6 = ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
      return kyb_error_set(err, EINVAL, "bind address %s: bad IPv6 address", addr);
    *len = sizeof(*s6);
    return 0;
  }
  struct sockaddr_in *s4 = ss;
  s4->sin_family = AF_INET;
  s4->sin_port = htons((uint16_t)port);
  if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0)
    s4->sin_addr.s_addr = htonl(INADDR_ANY);
  else if (strcmp(host, "localhost") == 0)
    s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  else if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
    return kyb_error_set(err, EINVAL, "bind address %s: bad IPv4 address", addr);
  *len = sizeof(*s4);
  return 0;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *type,
                             char *body) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
  if (r == NULL) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", type);
  enum MHD_Result ret = MHD_queue_response(conn, code, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls) {
  (void)version;
  (void)upload_data;
  kyb_op_http *h = cls;
  if (*con_cls == NULL) { /* first call: headers only */
    *con_cls = h;
    return MHD_YES;
  }
  *upload_size = 0;
  static const char text[] = "text/plain; charset=utf-8";
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, text, strdup("method not allowed\n"));
  if (strcmp(url, "/metrics") == 0) {
    char *body = kyb_op_metrics_render(h->m);
    if (body == NULL)
      return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, text, strdup("out of memory\n"));
    return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body);
  }
  if (strcmp(url, "/healthz") == 0 || strcmp(url, "/livez") == 0)
    return reply(conn, MHD_HTTP_OK, text, strdup("ok\n"));
  if (strcmp(url, "/readyz") == 0) {
    char why[256] = "";
    bool ok = h->m->ready == NULL || h->m->ready(h->m->ready_ud, why, sizeof(why));
    char *body = NULL;
    if (asprintf(&body, "%s%s\n", ok ? "ok" : "not ready: ", ok ? "" : why) < 0)
      body = NULL;
    if (body == NULL)
      return MHD_NO;
    return reply(conn, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, text, body);
  }
  return reply(conn, MHD_HTTP_NOT_FOUND, text, strdup("not found\n"));
}

int kyb_op_http_start(const char *addr, kyb_op_metrics *m, kyb_op_http **out, kyb_error **err) {
  struct sockaddr_storage ss;
  unsigned len = 0;
  uint16_t port = 0;
  if (kyb_op_parse_bind(addr, &ss, &len, &port, err) < 0)
    return -1;
  kyb_op_http *h = calloc(1, sizeof(*h));
  if (h == NULL)
    return kyb_error_set(err, ENOMEM, "metrics server");
  h->m = m;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
  if (ss.ss_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  /* The logger first, or libmicrohttpd prints its own lines before it. */
  h->mhd = MHD_start_daemon(flags, port, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
                            kyb_mhd_log, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_CONNECTION_LIMIT, 32u, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                            MHD_OPTION_END);
  if (h->mhd == NULL) {
    free(h);
    return kyb_error_set(err, EADDRINUSE, "metrics server on %s did not start", addr);
  }
  log_info("serving /metrics, /healthz and /readyz on %s (port %d)", addr, kyb_op_http_port(h));
  *out = h;
  return 0;
}

int kyb_op_http_port(const kyb_op_http *h) {
  const union MHD_DaemonInfo *i = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
  return i != NULL ? (int)i->port : -1;
}

void kyb_op_http_stop(kyb_op_http *h) {
  if (h == NULL)
    return;
  MHD_stop_daemon(h->mhd);
  free(h);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Listening unix sockets and request bodies for local APIs (unix_server.h). */
#define KYB_LOG_MODULE "http"

#include "util/unix_server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"

/* True when something listens at path. */
static bool live_socket(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
  cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  return fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
}

static int prepare_path(const char *path, const char *who_runs, kyb_error **err) {
  cleanup_free char *dir = strdup(path);
  if (dir == NULL)
    return kyb_error_set(err, ENOMEM, "socket path");
  char *slash = strrchr(dir, '/');
  if (slash != NULL && slash != dir) {
    *slash = '\0';
    if (kyb_mkdir_p(dir, 0750, err) < 0)
      return kyb_error_wrap(err, "socket directory");
  }
  struct stat sb;
  if (lstat(path, &sb) < 0)
    return errno == ENOENT ? 0 : kyb_error_errno(err, "%s", path);
  if (!S_ISSOCK(sb.st_mode))
    return kyb_error_set(err, EEXIST, "%s exists and is not a socket: refusing to replace it",
                         path);
  if (live_socket(path))
    return kyb_error_set(err, EADDRINUSE, "%s: another process answers there%s%s%s", path,
                         who_runs ? " (" : "", who_runs ? who_runs : "", who_runs ? ")" : "");
  if (unlink(path) < 0 && errno != ENOENT)
    return kyb_error_errno(err, "remove the stale socket %s", path);
  log_info("replaced the stale socket %s", path);
  return 0;
}

int kyb_unix_listen(const char *path, int backlog, const char *who_runs, kyb_error **err) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(sa.sun_path))
    return kyb_error_set(err, ENAMETOOLONG, "socket path %s is over %zu bytes", path,
                         sizeof(sa.sun_path) - 1);
  if (prepare_path(path, who_runs, err) < 0)
    return -1;
  memcpy(sa.sun_path, path, strlen(path) + 1);
  cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return kyb_error_errno(err, "socket");
  if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
    return kyb_error_errno(err, "bind %s", path);
  /* Mode before listen: nobody connects before the mode is right. */
  if (chmod(path, 0660) < 0 || listen(fd, backlog) < 0) {
    kyb_error_errno(err, "listen on %s", path);
    unlink(path);
    return -1;
  }
  return steal_fd(&fd);
}

bool kyb_http_body_add(kyb_http_body *b, const char *data, size_t len, size_t max) {
  if (b->too_large || b->len + len > max) {
    b->too_large = true;
    return true;
  }
  char *nb = realloc(b->buf, b->len + len + 1);
  if (nb == NULL)
    return false;
  memcpy(nb + b->len, data, len);
  b->buf = nb;
  b->len += len;
  b->buf[b->len] = '\0';
  return true;
}

void kyb_http_body_free(kyb_http_body *b) {
  if (b == NULL)
    return;
  free(b->buf);
  free(b);
}

void kyb_mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char msg[512];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  size_t n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
    msg[--n] = '\0';
  log_warn("libmicrohttpd: %s", msg);
}

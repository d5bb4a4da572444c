/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TEST DOUBLE for the kube unit tests: a canned HTTP/1.1 server on a unix
 * socket, in a forked child.  Connection i gets replies[i] (raw bytes,
 * written in the given pieces so a test controls the chunking) and is
 * closed; every request it read (head and body) goes back to the test
 * through a pipe, so the test can check method, path, headers and body.
 * The client reaches it through kyb_kube_config.unix_socket.  Faithfulness
 * to the API server is the job of tests/doubles/kube_apiserver.py; this one
 * only makes the client's wire behaviour observable in a unit test.
 */
#ifndef KYB_TEST_KUBE_FAKE_SERVER_H
#define KYB_TEST_KUBE_FAKE_SERVER_H

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kube/client.h"

#define FAKE_MAX_PIECES 16
#define FAKE_MAX_REPLIES 16

typedef struct {
  const char *pieces[FAKE_MAX_PIECES]; /* NULL-terminated; written one write(2) each */
  bool hang;                           /* after the pieces: keep the connection open until killed */
  bool poke; /* after the pieces: write one byte to poke_fd (a test's cancel fd) */
  int poke_fd;
} fake_reply;

typedef struct {
  char dir[64];
  char sock[108];
  pid_t pid;
  int req_fd; /* read end: "<len>\n<request bytes>" per request */
} fake_server;

static inline void fake_write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return;
    p += w;
    n -= (size_t)w;
  }
}

/* Reads one request (head + Content-Length body) into buf; returns its length. */
static inline size_t fake_read_request(int fd, char *buf, size_t cap) {
  size_t len = 0, need = 0;
  char *end = NULL;
  while (len + 1 < cap) {
    ssize_t r = read(fd, buf + len, cap - 1 - len);
    if (r <= 0)
      break;
    len += (size_t)r;
    buf[len] = '\0';
    if (end == NULL && (end = strstr(buf, "\r\n\r\n")) != NULL) {
      size_t head = (size_t)(end - buf) + 4;
      const char *cl = strcasestr(buf, "\r\ncontent-length:");
      need = head + (cl != NULL && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
    }
    if (end != NULL && len >= need)
      break;
  }
  buf[len] = '\0';
  return len;
}

static inline void fake_serve(int lfd, int req_w, const fake_reply *replies, size_t n) {
  static char buf[1 << 20];
  for (size_t i = 0; i < n; i++) {
    int c = accept(lfd, NULL, NULL);
    if (c < 0)
      _exit(1);
    size_t len = fake_read_request(c, buf, sizeof(buf));
    char hdr[32];
    int hl = snprintf(hdr, sizeof(hdr), "%zu\n", len);
    fake_write_all(req_w, hdr, (size_t)hl);
    fake_write_all(req_w, buf, len);
    for (size_t k = 0; k < FAKE_MAX_PIECES && replies[i].pieces[k] != NULL; k++) {
      fake_write_all(c, replies[i].pieces[k], strlen(replies[i].pieces[k]));
      usleep(2000); /* let the client see the pieces apart */
    }
    if (replies[i].poke)
      fake_write_all(replies[i].poke_fd, "x", 1);
    if (replies[i].hang)
      pause();
    shutdown(c, SHUT_WR);
    close(c);
  }
  _exit(0);
}

/* Starts the child serving replies[0..n-1], one connection each. */
static inline int fake_start(fake_server *s, const fake_reply *replies, size_t n) {
  memset(s, 0, sizeof(*s));
  snprintf(s->dir, sizeof(s->dir), "/tmp/kyb-kube-test.XXXXXX");
  if (mkdtemp(s->dir) == NULL)
    return -1;
  snprintf(s->sock, sizeof(s->sock), "%s/api.sock", s->dir);
  int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof(a.sun_path), "%s", s->sock);
  int p[2];
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 16) < 0 ||
      pipe(p) < 0)
    return -1;
  s->pid = fork();
  if (s->pid < 0)
    return -1;
  if (s->pid == 0) {
    /* A failed assertion longjmps past fake_stop: do not outlive the test. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(p[0]);
    fake_serve(lfd, p[1], replies, n);
  }
  close(lfd);
  close(p[1]);
  s->req_fd = p[0];
  return 0;
}

/* The next request the server read, as one heap string (free()); NULL when
 * the server ended without another. */
static inline char *fake_next_request(fake_server *s) {
  char hdr[32];
  size_t k = 0;
  while (k + 1 < sizeof(hdr) && read(s->req_fd, hdr + k, 1) == 1 && hdr[k] != '\n')
    k++;
  if (k == 0)
    return NULL;
  hdr[k] = '\0';
  size_t len = strtoul(hdr, NULL, 10), got = 0;
  char *buf = malloc(len + 1);
  while (buf != NULL && got < len) {
    ssize_t r = read(s->req_fd, buf + got, len - got);
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  if (buf != NULL)
    buf[got] = '\0';
  return buf;
}

static inline void fake_stop(fake_server *s) {
  if (s->pid > 0) {
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
  }
  if (s->req_fd > 0)
    close(s->req_fd);
  unlink(s->sock);
  rmdir(s->dir);
  s->pid = 0;
}

/* Does s start with prefix? */
static inline bool fake_starts(const char *s, const char *prefix) {
  return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The body of a recorded request (after the blank line). */
static inline const char *fake_body(const char *req) {
  const char *b = strstr(req, "\r\n\r\n");
  return b != NULL ? b + 4 : "";
}

/* A complete JSON answer with Connection: close; static storage per slot. */
static inline const char *fake_json(int status, const char *body) {
  static char bufs[FAKE_MAX_REPLIES * 2][8192];
  static int next;
  char *b = bufs[next++ % (FAKE_MAX_REPLIES * 2)];
  snprintf(b, sizeof(bufs[0]),
           "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
           "Connection: close\r\n\r\n%s",
           status, strlen(body), body);
  return b;
}

#define FAKE_CHUNKED_HEAD                                                                          \
  "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"            \
  "Connection: close\r\n\r\n"

/* One HTTP chunk holding s; static storage per slot. */
static inline const char *fake_chunk(const char *s) {
  static char bufs[64][4096];
  static int next;
  char *b = bufs[next++ % 64];
  snprintf(b, sizeof(bufs[0]), "%zx\r\n%s\r\n", strlen(s), s);
  return b;
}

#define FAKE_CHUNKED_END "0\r\n\r\n"

/* A client for the fake server: bearer token "tok", namespace "default". */
static inline kyb_kube_client *fake_client(const fake_server *s, const kyb_kube_client_opts *opts) {
  kyb_kube_config cfg;
  kyb_error *err = NULL;
  kyb_kube_client *c = NULL;
  if (kyb_kube_config_explicit("http://localhost", "tok", NULL, &cfg, &err) < 0) {
    kyb_error_free(err);
    return NULL;
  }
  cfg.unix_socket = strdup(s->sock);
  if (kyb_kube_client_new(&cfg, opts, &c, &err) < 0) {
    fprintf(stderr, "fake_client: %s\n", kyb_error_message(err));
    kyb_error_free(err);
  }
  kyb_kube_config_clear(&cfg);
  return c;
}

#endif

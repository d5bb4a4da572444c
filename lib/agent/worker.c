/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint worker: child process management and the child's main
 * (worker.h).
 */
#define KYB_LOG_MODULE "worker"

#include "agent/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ops/checkpoint.h"
#include "ops/interrupt.h"
#include "util/cleanup.h"
#include "util/log.h"

struct kyb_agent_worker {
  pid_t pid;
  int out_fd;
  bool reaped;
  char *buf; /* a partial line */
  size_t len, cap;
  char *phase;
  json_t *timings;
  json_t *result;
  json_t *error;
};

/* ---- parent side ----------------------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* In the child between fork and exec: async-signal-safe calls only. */
static void exec_child(int in_fd, int out_fd, pid_t parent, const char *exe, char *const *argv) {
  /* Die with the agent: the next agent recovers from the node's state and
   * must not race a dump still going on. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
    _exit(127);
  if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0)
    _exit(127);
  /* Nothing of the agent's but stdio: not the host lock, not API sockets. */
  close_range(3, ~0U, 0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  execv(exe, argv);
  _exit(127);
}

int kyb_agent_worker_start(const char *exe, const char *const *args, const json_t *job,
                           kyb_agent_worker **out, kyb_error **err) {
  *out = NULL;
  cleanup_free char *text = json_dumps(job, JSON_COMPACT);
  if (text == NULL)
    return kyb_error_set(err, ENOMEM, "worker job");
  size_t nargs = 0;
  while (args != NULL && args[nargs] != NULL)
    nargs++;
  cleanup_free char **argv = calloc(nargs + 3, sizeof(char *));
  if (argv == NULL)
    return kyb_error_set(err, ENOMEM, "worker argv");
  argv[0] = (char *)"kybernate-agent";
  argv[1] = (char *)KYB_AGENT_WORKER_FLAG;
  for (size_t i = 0; i < nargs; i++)
    argv[2 + i] = (char *)args[i];

  int in[2] = {-1, -1}, outp[2] = {-1, -1};
  if (pipe2(in, O_CLOEXEC) < 0)
    return kyb_error_errno(err, "worker pipe");
  if (pipe2(outp, O_CLOEXEC) < 0) {
    kyb_error_errno(err, "worker pipe");
    close(in[0]);
    close(in[1]);
    return -1;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    kyb_error_errno(err, "fork the checkpoint worker");
    close(in[0]);
    close(in[1]);
    close(outp[0]);
    close(outp[1]);
    return -1;
  }
  if (pid == 0)
    exec_child(in[0], outp[1], parent, exe, argv);
  close(in[0]);
  close(outp[1]);
  kyb_agent_worker *w = calloc(1, sizeof(*w));
  if (w == NULL) {
    close(in[1]);
    close(outp[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return kyb_error_set(err, ENOMEM, "worker");
  }
  w->pid = pid;
  w->out_fd = outp[0];
  w->timings = json_object();
  /* The job is small (KYB_AGENT_WORKER_MAX_JOB): one write into the pipe's
   * buffer.  A child that died at once gives EPIPE here (SIGPIPE is
   * ignored in the agent), and its exit status tells why. */
  int wr = write_all(in[1], text, strlen(text));
  close(in[1]);
  if (wr < 0)
    log_warn("worker %d did not take its job: %s", (int)pid, strerror(errno));
  if (fcntl(w->out_fd, F_SETFL, O_NONBLOCK) < 0)
    log_warn("worker pipe: %s", strerror(errno));
  log_debug("checkpoint worker %d started", (int)pid);
  *out = w;
  return 0;
}

int kyb_agent_worker_fd(const kyb_agent_worker *w) {
  return w->out_fd;
}

static void handle_line(kyb_agent_worker *w, const char *line, size_t len,
                        kyb_agent_worker_phase_fn fn, void *ud) {
  json_error_t jerr;
  cleanup_json json_t *o = json_loadb(line, len, 0, &jerr);
  if (!json_is_object(o)) {
    log_warn("worker %d: not a JSON object: %.200s", (int)w->pid, line);
    return;
  }
  const char *phase = json_string_value(json_object_get(o, "phase"));
  if (phase != NULL) {
    bool done = json_is_true(json_object_get(o, "done"));
    json_int_t ms = json_integer_value(json_object_get(o, "ms"));
    if (!done) {
      free(w->phase);
      w->phase = strdup(phase);
    } else if (ms >= 0) {
      /* Several containers or retries of a phase add up. */
      json_int_t prev = json_integer_value(json_object_get(w->timings, phase));
      json_object_set_new(w->timings, phase, json_integer(prev + ms));
    }
    if (fn != NULL)
      fn(ud, phase, done, (long)ms);
    return;
  }
  json_t *res = json_object_get(o, "result");
  json_t *e = json_object_get(o, "error");
  if (json_is_object(res)) {
    json_decref(w->result);
    w->result = json_incref(res);
  } else if (json_is_object(e)) {
    json_decref(w->error);
    w->error = json_incref(e);
  } else {
    log_warn("worker %d: unknown line: %.200s", (int)w->pid, line);
  }
}

int kyb_agent_worker_read(kyb_agent_worker *w, kyb_agent_worker_phase_fn fn, void *ud,
                          kyb_error **err) {
  while (true) {
    if (w->cap - w->len < 4096) {
      size_t ncap = w->cap ? w->cap * 2 : 8192;
      char *nb = realloc(w->buf, ncap);
      if (nb == NULL)
        return kyb_error_set(err, ENOMEM, "worker output");
      w->buf = nb;
      w->cap = ncap;
    }
    ssize_t n = read(w->out_fd, w->buf + w->len, w->cap - w->len - 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return 0;
    if (n < 0)
      return kyb_error_errno(err, "read from worker %d", (int)w->pid);
    if (n == 0)
      return 1;
    w->len += (size_t)n;
    char *start = w->buf, *nl;
    while ((nl = memchr(start, '\n', w->len - (size_t)(start - w->buf))) != NULL) {
      *nl = '\0';
      handle_line(w, start, (size_t)(nl - start), fn, ud);
      start = nl + 1;
    }
    w->len -= (size_t)(start - w->buf);
    memmove(w->buf, start, w->len);
    if (w->len > KYB_AGENT_WORKER_MAX_LINE)
      return kyb_error_set(err, EMSGSIZE, "worker %d wrote a line over %u bytes", (int)w->pid,
                           KYB_AGENT_WORKER_MAX_LINE);
  }
}

void kyb_agent_worker_kill(kyb_agent_worker *w) {
  if (w != NULL && !w->reaped && w->pid > 0)
    kill(w->pid, SIGKILL);
}

int kyb_agent_worker_wait(kyb_agent_worker *w, int *status, kyb_error **err) {
  int st = 0;
  if (!w->reaped) {
    pid_t r;
    while ((r = waitpid(w->pid, &st, 0)) < 0 && errno == EINTR)
      ;
    if (r < 0)
      return kyb_error_errno(err, "wait for worker %d", (int)w->pid);
    w->reaped = true;
  }
  if (status != NULL)
    *status = st;
  return 0;
}

const json_t *kyb_agent_worker_result(const kyb_agent_worker *w) {
  return w->result;
}
const json_t *kyb_agent_worker_error(const kyb_agent_worker *w) {
  return w->error;
}
const char *kyb_agent_worker_phase(const kyb_agent_worker *w) {
  return w->phase;
}
const json_t *kyb_agent_worker_timings(const kyb_agent_worker *w) {
  return w->timings;
}
pid_t kyb_agent_worker_pid(const kyb_agent_worker *w) {
  return w->pid;
}

void kyb_agent_worker_free(kyb_agent_worker *w) {
  if (w == NULL)
    return;
  if (!w->reaped) {
    kill(w->pid, SIGKILL);
    while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
      ;
  }
  if (w->out_fd >= 0)
    close(w->out_fd);
  free(w->buf);
  free(w->phase);
  json_decref(w->timings);
  json_decref(w->result);
  json_decref(w->error);
  free(w);
}

/* ---- child side ------------------------------------------------------------------------ */

/* One JSON line on stdout, in one write (the parent reads lines). */
static void emit(json_t *o) {
  if (o == NULL)
    return;
  char *s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  if (s == NULL)
    return;
  size_t n = strlen(s);
  char *line = realloc(s, n + 2);
  if (line == NULL) {
    free(s);
    return;
  }
  line[n] = '\n';
  line[n + 1] = '\0';
  if (write_all(1, line, n + 1) < 0)
    log_warn("the agent stopped listening: %s", strerror(errno));
  free(line);
}

static void on_phase(void *ud, const char *phase, bool done, uint64_t ms) {
  (void)ud;
  if (done)
    emit(json_pack("{s:s, s:b, s:I}", "phase", phase, "done", 1, "ms", (json_int_t)ms));
  else
    emit(json_pack("{s:s, s:b}", "phase", phase, "done", 0));
}

static const char *jstr(const json_t *job, const char *key) {
  return json_string_value(json_object_get(job, key));
}

static int read_job(json_t **out, kyb_error **err) {
  size_t cap = KYB_AGENT_WORKER_MAX_JOB + 1, len = 0;
  cleanup_free char *buf = malloc(cap);
  if (buf == NULL)
    return kyb_error_set(err, ENOMEM, "job");
  while (len < cap) {
    ssize_t n = read(0, buf + len, cap - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return kyb_error_errno(err, "read the job");
    if (n == 0)
      break;
    len += (size_t)n;
  }
  if (len >= cap)
    return kyb_error_set(err, EMSGSIZE, "job over %u bytes", KYB_AGENT_WORKER_MAX_JOB);
  json_error_t jerr;
  *out = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!json_is_object(*out)) {
    json_decref(*out);
    *out = NULL;
    return kyb_error_set(err, EINVAL, "job is not a JSON object: %s", jerr.text);
  }
  return 0;
}

int kyb_agent_worker_main(void) {
  cleanup_error kyb_error *err = NULL;
  cleanup_json json_t *job = NULL;
  if (read_job(&job, &err) < 0) {
    emit(json_pack("{s:{s:i, s:s}}", "error", "errno", kyb_error_code(err), "message",
                   kyb_error_message(err)));
    return 2;
  }
  json_int_t lock_ms = json_integer_value(json_object_get(job, "gpuLockTimeoutMs"));
  kyb_checkpoint_opts o = {
      .address = jstr(job, "address"),
      .namespace_ = jstr(job, "namespace"),
      .container = jstr(job, "containerId"),
      .pod_namespace = jstr(job, "podNamespace"),
      .pod_name = jstr(job, "podName"),
      .container_name = jstr(job, "container"),
      .store_uri = jstr(job, "store"),
      .name = jstr(job, "name"),
      .leave_running = json_is_true(json_object_get(job, "leaveRunning")),
      .open_tcp = json_is_true(json_object_get(job, "tcpEstablished")),
      .file_locks = json_is_true(json_object_get(job, "fileLocks")),
      .external_unix_sockets = json_is_true(json_object_get(job, "extUnixSk")),
      .timeout_ms = json_integer_value(json_object_get(job, "timeoutMs")),
      .gpu_lock_timeout_ms = lock_ms > 0 && lock_ms < 3600000 ? (unsigned)lock_ms : 0,
      .progress = on_phase,
  };
  /* A SIGTERM/SIGINT/SIGHUP sent to the worker itself (the agent stops it
   * with SIGKILL, which recover.h follows up) rolls the checkpoint back here
   * and ends in an error line.  No notice on a second signal: stderr carries
   * the agent's JSON log lines. */
  kyb_interrupt intr = {0};
  cleanup_error kyb_error *ierr = NULL;
  if (kyb_interrupt_catch(&intr, NULL, &ierr) < 0)
    log_warn_chain(ierr, "a signal will end this worker without a rollback");
  else
    o.interrupted = kyb_interrupt_flag();
  kyb_checkpoint_result r = {0};
  int rc = kyb_checkpoint(&o, &r, &err);
  kyb_interrupt_release(&intr);
  if (rc == 0) {
    emit(json_pack("{s:{s:s, s:s, s:s, s:s?, s:I, s:I}}", "result", "container", r.container_id,
                   "name", r.name, "ref", r.ref, "digest", r.digest, "size", (json_int_t)r.size,
                   "totalMs", (json_int_t)r.total_ms));
  } else {
    json_t *e =
        json_pack("{s:i, s:s}", "errno", kyb_error_code(err), "message", kyb_error_message(err));
    if (e != NULL && r.ref != NULL) {
      json_object_set_new(e, "ref", json_string(r.ref));
      if (r.name != NULL)
        json_object_set_new(e, "name", json_string(r.name));
      if (r.digest != NULL)
        json_object_set_new(e, "digest", json_string(r.digest));
      json_object_set_new(e, "size", json_integer((json_int_t)r.size));
    }
    emit(json_pack("{s:o}", "error", e));
  }
  kyb_checkpoint_result_clear(&r);
  return rc == 0 ? 0 : 1;
}

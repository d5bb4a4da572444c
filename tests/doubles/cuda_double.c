/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcuda-double.so -- a TEST DOUBLE of the CUDA driver (libcuda.so.1), for
 * tests only; it drives no GPU.  It exports the entry points lib/cuda binds
 * (cuInit, cuDriverGetVersion, cuGetErrorName/String, cuDevice*,
 * cuCheckpointProcess*) with the real ABI, so tests load it through the
 * library's own dlopen path (KYBERNATE_LIBCUDA or the path argument).
 *
 * Faithful to what the real driver did on the H200 (driver 580.159.04,
 * CUDA 13.0; docs/gpu.md): per-process states RUNNING -> LOCKED ->
 * CHECKPOINTED -> LOCKED (restore) -> RUNNING; any call in the wrong state
 * answers CUDA_ERROR_ILLEGAL_STATE and changes nothing; a process that never
 * initialised CUDA answers CUDA_ERROR_NOT_INITIALIZED; a pid that does not
 * exist answers CUDA_ERROR_OPERATING_SYSTEM; a lock that times out answers
 * CUDA_ERROR_NOT_READY and leaves the process RUNNING; non-zero reserved
 * bytes and a restore map that does not pair every GPU of the process
 * answer CUDA_ERROR_INVALID_VALUE and leave it CHECKPOINTED.
 *
 * Configuration, read on every call (so several processes -- the code under
 * test and a checker -- share one world):
 *   KYB_CUDA_DOUBLE_STATE  path of the state file (text, see below); it is
 *                          read and rewritten under flock(LOCK_EX).
 *   KYB_CUDA_DOUBLE_FAIL   faults, comma-separated, each
 *                          OP[:pid=N][:delay=MS][:RESULT]
 *                          OP: init getstate restoretid lock checkpoint
 *                              restore unlock; RESULT: a CUDA_ERROR_* name, a
 *                          number, or "timeout" (= what a timed-out lock
 *                          answers).  A matching call sleeps `delay`, then
 *                          fails with RESULT and changes no state; without
 *                          RESULT it only sleeps `delay`, then does its
 *                          work (a slow driver call; signals do not cut
 *                          the sleep short).
 *   KYB_CUDA_DOUBLE_VERSION  overrides cuDriverGetVersion.
 *   KYB_CUDA_DOUBLE_LOG    file to append one line per call to, e.g.
 *                          "checkpoint 1234 CUDA_SUCCESS" (also: log line).
 * State file lines ('#' starts a comment):
 *   version 13000
 *   log /tmp/calls.log
 *   gpu GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx <memory bytes> <model...>
 *   proc <pid> <RUNNING|LOCKED|CHECKPOINTED|FAILED> [uuid,uuid,...]
 *       (a CUDA process; without a list it sees every gpu line)
 *   restored <comm> [uuid,uuid,...]
 *       (a CUDA process that CRIU brought back: see below)
 *   fail <fault as above>
 *
 * Restored processes.  CRIU restores a process under a NEW host pid, and the
 * real driver answers for it from the driver state that came back in its
 * memory: CHECKPOINTED, seeing the GPUs it saw when it was checkpointed.  A
 * double keyed by host pid cannot know that pid in advance, so a `restored`
 * rule stands in for the memory: a live pid that has no `proc` line and
 * whose /proc/<pid>/comm is <comm> (1..15 bytes, no blanks; CRIU restores
 * the name) is adopted the first time any checkpoint call names it, as
 * `proc <pid> CHECKPOINTED <uuids>` -- the listed GPUs (those of the
 * checkpoint, which may be absent here: a restore must then remap them), or
 * every gpu line when there is no list -- and the adoption is written back
 * to the state file at once, whatever the call answers.  The rule stays and
 * adopts every further such process; a pid with a `proc` line is never
 * re-adopted.
 * Built with KYB_CUDA_DOUBLE_NO_CHECKPOINT_API it is a driver older than
 * CUDA 12.8: no cuCheckpointProcess* symbols, version 12040.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "cuda/abi.h"

#define D_MAX_GPUS 16
#define D_MAX_PROCS 256
#define D_MAX_FAULTS 32
#define D_MAX_RULES 16
#define D_COMM_MAX 15 /* TASK_COMM_LEN - 1 */
#define D_MAX_FILE (1u << 20)

/* The exported ABI, declared here because the double has no header. */
kyb_curesult cuInit(unsigned int flags);
kyb_curesult cuDriverGetVersion(int *version);
kyb_curesult cuGetErrorName(kyb_curesult error, const char **name);
kyb_curesult cuGetErrorString(kyb_curesult error, const char **text);
kyb_curesult cuDeviceGetCount(int *count);
kyb_curesult cuDeviceGet(kyb_cu_device *dev, int ordinal);
kyb_curesult cuDeviceGetUuid(kyb_cu_uuid *uuid, kyb_cu_device dev);
kyb_curesult cuDeviceGetUuid_v2(kyb_cu_uuid *uuid, kyb_cu_device dev);
kyb_curesult cuDeviceGetName(char *name, int len, kyb_cu_device dev);
kyb_curesult cuDeviceTotalMem_v2(size_t *bytes, kyb_cu_device dev);
#ifndef KYB_CUDA_DOUBLE_NO_CHECKPOINT_API
kyb_curesult cuCheckpointProcessGetState(int pid, kyb_cu_process_state *state);
kyb_curesult cuCheckpointProcessGetRestoreThreadId(int pid, int *tid);
kyb_curesult cuCheckpointProcessLock(int pid, kyb_cu_lock_args *args);
kyb_curesult cuCheckpointProcessCheckpoint(int pid, kyb_cu_checkpoint_args *args);
kyb_curesult cuCheckpointProcessRestore(int pid, kyb_cu_restore_args *args);
kyb_curesult cuCheckpointProcessUnlock(int pid, kyb_cu_unlock_args *args);
#endif

typedef struct {
  kyb_cu_uuid uuid;
  uint64_t memory;
  char model[96];
} d_gpu;

typedef struct {
  int pid;
  kyb_cu_process_state state;
  size_t ngpus;
  kyb_cu_uuid gpus[D_MAX_GPUS]; /* every GPU the process could see */
} d_proc;

/* `restored <comm> [uuids]`: adopts a restored process (header comment). */
typedef struct {
  char comm[D_COMM_MAX + 1];
  bool all_gpus; /* no list: every gpu line at adoption time */
  size_t ngpus;
  kyb_cu_uuid gpus[D_MAX_GPUS];
} d_rule;

typedef struct {
  char op[16];
  int pid; /* 0: any */
  int delay_ms;
  bool has_result;
  kyb_curesult result;
} d_fault;

typedef struct {
  int version;
  char log[1024];
  size_t ngpus;
  d_gpu gpus[D_MAX_GPUS];
  size_t nprocs;
  d_proc procs[D_MAX_PROCS];
  size_t nfaults;
  d_fault faults[D_MAX_FAULTS];
  size_t nrules;
  d_rule rules[D_MAX_RULES];
} d_state;

/* cuInit of this process; the real driver keeps the same per-process flag. */
static bool d_initialized;

static const struct {
  kyb_curesult code;
  const char *name;
  const char *text;
} d_results[] = {
    {KYB_CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {KYB_CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {KYB_CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {KYB_CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {KYB_CUDA_ERROR_DEINITIALIZED, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
    {KYB_CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {KYB_CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {KYB_CUDA_ERROR_OPERATING_SYSTEM, "CUDA_ERROR_OPERATING_SYSTEM",
     "OS call failed or operation not supported on this OS"},
    {KYB_CUDA_ERROR_ILLEGAL_STATE, "CUDA_ERROR_ILLEGAL_STATE",
     "the operation cannot be performed in the present state"},
    {KYB_CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready"},
    {KYB_CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {KYB_CUDA_ERROR_TIMEOUT, "CUDA_ERROR_TIMEOUT", "the operation timed out"},
    {KYB_CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};
#define D_NRESULTS (sizeof(d_results) / sizeof(d_results[0]))

static const char *d_result_name(kyb_curesult r) {
  for (size_t i = 0; i < D_NRESULTS; i++)
    if (d_results[i].code == r)
      return d_results[i].name;
  return "CUDA_ERROR_?";
}

static void d_complain(const char *what, const char *detail) {
  fprintf(stderr, "libcuda-double (test double): %s%s\n", what, detail);
}

/* The whole of `s` as a decimal integer in [lo, hi]; the double is strict
 * about its configuration so a typo in a test fails loudly. */
static bool d_int(const char *s, long lo, long hi, long *out) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (end == s || *end != '\0' || errno != 0 || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

/* ---- text forms ---- */

static int d_hex(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = (char)tolower((unsigned char)c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx; our own parser on purpose, so a
 * bug in the library's gpumap.c is not mirrored here. */
static bool d_uuid_parse(const char *s, size_t len, kyb_cu_uuid *u) {
  if (len != 40 || strncmp(s, "GPU-", 4) != 0)
    return false;
  size_t pos = 4;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) {
      if (s[pos++] != '-')
        return false;
    }
    int hi = d_hex(s[pos]), lo = d_hex(s[pos + 1]);
    if (hi < 0 || lo < 0)
      return false;
    u->bytes[i] = (unsigned char)(hi << 4 | lo);
    pos += 2;
  }
  return true;
}

static void d_uuid_format(const kyb_cu_uuid *u, char out[41]) {
  int n = snprintf(out, 41, "GPU-");
  for (int i = 0; i < 16; i++)
    n += snprintf(out + n, (size_t)(41 - n), "%s%02x",
                  (i == 4 || i == 6 || i == 8 || i == 10) ? "-" : "", u->bytes[i]);
}

static const char *const d_state_names[] = {"RUNNING", "LOCKED", "CHECKPOINTED", "FAILED"};

static bool d_parse_state(const char *s, kyb_cu_process_state *out) {
  for (int i = 0; i < 4; i++)
    if (strcasecmp(s, d_state_names[i]) == 0) {
      *out = (kyb_cu_process_state)i;
      return true;
    }
  return false;
}

static bool d_parse_result(const char *s, kyb_curesult *out) {
  if (strcmp(s, "timeout") == 0) {
    *out = KYB_CUDA_ERROR_NOT_READY; /* what a real timed-out lock answered */
    return true;
  }
  for (size_t i = 0; i < D_NRESULTS; i++)
    if (strcmp(s, d_results[i].name) == 0) {
      *out = d_results[i].code;
      return true;
    }
  long v = 0;
  if (!d_int(s, INT32_MIN, INT32_MAX, &v))
    return false;
  *out = (kyb_curesult)v;
  return true;
}

/* One fault: OP[:pid=N][:delay=MS][:RESULT]. */
static bool d_parse_fault(char *spec, d_fault *f) {
  memset(f, 0, sizeof(*f));
  char *save = NULL;
  char *tok = strtok_r(spec, ":", &save);
  if (tok == NULL || strlen(tok) >= sizeof(f->op))
    return false;
  strcpy(f->op, tok);
  while ((tok = strtok_r(NULL, ":", &save)) != NULL) {
    long v = 0;
    if (strncmp(tok, "pid=", 4) == 0 && d_int(tok + 4, 1, INT32_MAX, &v))
      f->pid = (int)v;
    else if (strncmp(tok, "delay=", 6) == 0 && d_int(tok + 6, 0, 600000, &v))
      f->delay_ms = (int)v;
    else if (d_parse_result(tok, &f->result))
      f->has_result = true;
    else
      return false;
  }
  return true;
}

/* ---- the state file ---- */

static bool d_parse_line(d_state *s, char *line, int lineno) {
  while (isspace((unsigned char)*line))
    line++;
  if (*line == '\0' || *line == '#')
    return true;
  char *rest = line + strcspn(line, " \t");
  if (*rest != '\0')
    *rest++ = '\0';
  while (isspace((unsigned char)*rest))
    rest++;
  long v = 0;
  if (strcmp(line, "version") == 0) {
    if (!d_int(rest, 1000, 99999, &v))
      goto bad;
    s->version = (int)v;
  } else if (strcmp(line, "log") == 0) {
    snprintf(s->log, sizeof(s->log), "%s", rest);
  } else if (strcmp(line, "gpu") == 0 && s->ngpus < D_MAX_GPUS) {
    d_gpu *g = &s->gpus[s->ngpus];
    size_t ulen = strcspn(rest, " \t");
    char *mem = rest + ulen;
    char *model = NULL;
    unsigned long long bytes = strtoull(mem, &model, 10);
    if (!d_uuid_parse(rest, ulen, &g->uuid) || model == mem)
      goto bad;
    while (isspace((unsigned char)*model))
      model++;
    g->memory = bytes;
    snprintf(g->model, sizeof(g->model), "%s", model);
    s->ngpus++;
  } else if (strcmp(line, "proc") == 0 && s->nprocs < D_MAX_PROCS) {
    d_proc *p = &s->procs[s->nprocs];
    char *save = NULL;
    char *pid = strtok_r(rest, " \t", &save);
    char *state = strtok_r(NULL, " \t", &save);
    char *list = strtok_r(NULL, " \t", &save);
    if (pid == NULL || state == NULL || !d_int(pid, 1, INT32_MAX, &v) ||
        !d_parse_state(state, &p->state))
      goto bad;
    p->pid = (int)v;
    if (list == NULL) { /* sees every GPU of the machine */
      for (size_t i = 0; i < s->ngpus; i++)
        p->gpus[i] = s->gpus[i].uuid;
      p->ngpus = s->ngpus;
    }
    for (char *u = list; u != NULL && *u != '\0' && p->ngpus < D_MAX_GPUS;) {
      size_t len = strcspn(u, ",");
      if (!d_uuid_parse(u, len, &p->gpus[p->ngpus++]))
        goto bad;
      u += len + (u[len] == ',');
    }
    s->nprocs++;
  } else if (strcmp(line, "restored") == 0 && s->nrules < D_MAX_RULES) {
    d_rule *rule = &s->rules[s->nrules];
    char *save = NULL;
    char *comm = strtok_r(rest, " \t", &save);
    char *list = strtok_r(NULL, " \t", &save);
    if (comm == NULL || strlen(comm) > D_COMM_MAX || strtok_r(NULL, " \t", &save) != NULL)
      goto bad;
    snprintf(rule->comm, sizeof(rule->comm), "%s", comm);
    rule->all_gpus = list == NULL;
    for (char *u = list; u != NULL && *u != '\0';) {
      size_t len = strcspn(u, ",");
      if (rule->ngpus == D_MAX_GPUS || !d_uuid_parse(u, len, &rule->gpus[rule->ngpus++]))
        goto bad;
      u += len + (u[len] == ',');
    }
    s->nrules++;
  } else if (strcmp(line, "fail") == 0 && s->nfaults < D_MAX_FAULTS) {
    if (!d_parse_fault(rest, &s->faults[s->nfaults++]))
      goto bad;
  } else {
    goto bad;
  }
  return true;
bad:
  fprintf(stderr, "libcuda-double (test double): state file line %d not understood: %s\n", lineno,
          line);
  return false;
}

static bool d_parse(d_state *s, char *text) {
  int lineno = 0;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
    if (!d_parse_line(s, line, ++lineno))
      return false;
  return true;
}

static char *d_serialize(const d_state *s, size_t *len) {
  char *buf = NULL;
  FILE *f = open_memstream(&buf, len);
  if (f == NULL)
    return NULL;
  fprintf(f, "# libcuda-double (TEST DOUBLE of the CUDA driver) state; see docs/gpu.md\n");
  fprintf(f, "version %d\n", s->version);
  if (s->log[0] != '\0')
    fprintf(f, "log %s\n", s->log);
  for (size_t i = 0; i < s->ngpus; i++) {
    char u[41];
    d_uuid_format(&s->gpus[i].uuid, u);
    fprintf(f, "gpu %s %" PRIu64 " %s\n", u, s->gpus[i].memory, s->gpus[i].model);
  }
  for (size_t i = 0; i < s->nprocs; i++) {
    const d_proc *p = &s->procs[i];
    fprintf(f, "proc %d %s ", p->pid, d_state_names[p->state]);
    for (size_t j = 0; j < p->ngpus; j++) {
      char u[41];
      d_uuid_format(&p->gpus[j], u);
      fprintf(f, "%s%s", j > 0 ? "," : "", u);
    }
    fputc('\n', f);
  }
  for (size_t i = 0; i < s->nrules; i++) {
    const d_rule *rule = &s->rules[i];
    fprintf(f, "restored %s", rule->comm);
    for (size_t j = 0; j < rule->ngpus; j++) {
      char u[41];
      d_uuid_format(&rule->gpus[j], u);
      fprintf(f, "%c%s", j > 0 ? ',' : ' ', u);
    }
    fputc('\n', f);
  }
  for (size_t i = 0; i < s->nfaults; i++) {
    const d_fault *x = &s->faults[i];
    fprintf(f, "fail %s", x->op);
    if (x->pid != 0)
      fprintf(f, ":pid=%d", x->pid);
    if (x->delay_ms != 0)
      fprintf(f, ":delay=%d", x->delay_ms);
    if (x->has_result)
      fprintf(f, ":%d", x->result);
    fputc('\n', f);
  }
  fclose(f);
  return buf;
}

typedef struct {
  int fd;
  d_state *s;
  bool dirty; /* changed beyond the call's own transition (an adoption) */
} d_session;

/* Opens and locks the shared state; false when there is none (no
 * KYB_CUDA_DOUBLE_STATE) or it cannot be read. */
static bool d_open(d_session *ss) {
  ss->fd = -1;
  ss->s = NULL;
  ss->dirty = false;
  const char *path = getenv("KYB_CUDA_DOUBLE_STATE");
  if (path == NULL || path[0] == '\0')
    return false;
  ss->fd = open(path, O_RDWR | O_CLOEXEC);
  if (ss->fd < 0) {
    d_complain("cannot open the state file named by KYB_CUDA_DOUBLE_STATE: ", strerror(errno));
    return false;
  }
  while (flock(ss->fd, LOCK_EX) < 0 && errno == EINTR)
    ;
  char *text = calloc(1, D_MAX_FILE + 1);
  ss->s = calloc(1, sizeof(d_state));
  ssize_t n = text != NULL ? pread(ss->fd, text, D_MAX_FILE, 0) : -1;
  if (ss->s == NULL || n < 0 || !d_parse(ss->s, text)) {
    free(text);
    free(ss->s);
    ss->s = NULL;
    close(ss->fd);
    ss->fd = -1;
    return false;
  }
  free(text);
  return true;
}

static void d_close(d_session *ss, bool write_back) {
  if (ss->s != NULL && write_back) {
    size_t len = 0;
    char *buf = d_serialize(ss->s, &len);
    if (buf == NULL || ftruncate(ss->fd, 0) < 0 || pwrite(ss->fd, buf, len, 0) != (ssize_t)len)
      d_complain("cannot rewrite the state file: ", strerror(errno));
    free(buf);
  }
  free(ss->s);
  ss->s = NULL;
  if (ss->fd >= 0)
    close(ss->fd); /* releases the flock */
  ss->fd = -1;
}

/* Appends "op pid RESULT[ extra]" to the call log; callers hold the state
 * lock, so lines from several processes never interleave. */
static void d_log(const d_state *s, const char *op, int pid, kyb_curesult r, const char *extra) {
  const char *path = getenv("KYB_CUDA_DOUBLE_LOG");
  if ((path == NULL || path[0] == '\0') && s != NULL && s->log[0] != '\0')
    path = s->log;
  if (path == NULL || path[0] == '\0')
    return;
  char line[256];
  int n = snprintf(line, sizeof(line), "%s %d %s%s%s\n", op, pid, d_result_name(r),
                   extra[0] ? " " : "", extra);
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return;
  if (write(fd, line, (size_t)n) < 0)
    d_complain("cannot write the call log: ", strerror(errno));
  close(fd);
}

/* The first fault for (op, pid), from the environment, then the state file.
 * Its delay is served here; returns true when it also carries a result. */
static bool d_fault_hit(const d_state *s, const char *op, int pid, kyb_curesult *r) {
  d_fault found = {0};
  bool hit = false;
  const char *env = getenv("KYB_CUDA_DOUBLE_FAIL");
  if (env != NULL && env[0] != '\0') {
    char *copy = strdup(env), *save = NULL;
    for (char *it = copy ? strtok_r(copy, ",", &save) : NULL; it && !hit;
         it = strtok_r(NULL, ",", &save)) {
      d_fault f;
      if (!d_parse_fault(it, &f)) {
        /* A typo in a test's fault must not pass as "no fault". */
        d_complain("KYB_CUDA_DOUBLE_FAIL item not understood, want ",
                   "OP[:pid=N][:delay=MS][:RESULT]; failing the call");
        memset(&f, 0, sizeof(f));
        f.has_result = true;
        f.result = KYB_CUDA_ERROR_UNKNOWN;
        found = f;
        hit = true;
        continue;
      }
      if (strcmp(f.op, op) == 0 && (f.pid == 0 || f.pid == pid)) {
        found = f;
        hit = true;
      }
    }
    free(copy);
  }
  for (size_t i = 0; s != NULL && !hit && i < s->nfaults; i++)
    if (strcmp(s->faults[i].op, op) == 0 && (s->faults[i].pid == 0 || s->faults[i].pid == pid)) {
      found = s->faults[i];
      hit = true;
    }
  if (!hit)
    return false;
  if (found.delay_ms > 0) {
    struct timespec ts = {found.delay_ms / 1000, (long)(found.delay_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
      ;
  }
  *r = found.result;
  return found.has_result;
}

/* ---- driver basics ---- */

kyb_curesult cuDriverGetVersion(int *version) {
  if (version == NULL)
    return KYB_CUDA_ERROR_INVALID_VALUE;
#ifdef KYB_CUDA_DOUBLE_NO_CHECKPOINT_API
  int v = 12040;
#else
  int v = 13000;
#endif
  d_session ss;
  if (d_open(&ss) && ss.s->version > 0)
    v = ss.s->version;
  d_close(&ss, false);
  const char *env = getenv("KYB_CUDA_DOUBLE_VERSION");
  long ev = 0;
  if (env != NULL && env[0] != '\0' && d_int(env, 1000, 99999, &ev))
    v = (int)ev;
  *version = v;
  return KYB_CUDA_SUCCESS;
}

kyb_curesult cuInit(unsigned int flags) {
  if (flags != 0)
    return KYB_CUDA_ERROR_INVALID_VALUE;
  d_session ss;
  kyb_curesult r = KYB_CUDA_SUCCESS;
  if (!d_open(&ss) || ss.s->ngpus == 0)
    r = KYB_CUDA_ERROR_NO_DEVICE; /* what the real driver says without a GPU */
  else if (!d_fault_hit(ss.s, "init", getpid(), &r))
    d_initialized = true;
  d_log(ss.s, "init", getpid(), r, "");
  d_close(&ss, false);
  return r;
}

kyb_curesult cuGetErrorName(kyb_curesult error, const char **name) {
  for (size_t i = 0; i < D_NRESULTS; i++)
    if (d_results[i].code == error) {
      *name = d_results[i].name;
      return KYB_CUDA_SUCCESS;
    }
  *name = NULL;
  return KYB_CUDA_ERROR_INVALID_VALUE;
}

kyb_curesult cuGetErrorString(kyb_curesult error, const char **text) {
  for (size_t i = 0; i < D_NRESULTS; i++)
    if (d_results[i].code == error) {
      *text = d_results[i].text;
      return KYB_CUDA_SUCCESS;
    }
  *text = NULL;
  return KYB_CUDA_ERROR_INVALID_VALUE;
}

/* Runs `fn` on GPU `dev` under the state lock, after the checks every
 * cuDevice* call makes. */
static kyb_curesult d_with_gpu(kyb_cu_device dev, const void *out,
                               void (*fn)(const d_gpu *g, void *arg), void *arg) {
  if (!d_initialized)
    return KYB_CUDA_ERROR_NOT_INITIALIZED;
  if (out == NULL)
    return KYB_CUDA_ERROR_INVALID_VALUE;
  d_session ss;
  kyb_curesult r = KYB_CUDA_ERROR_INVALID_DEVICE;
  if (d_open(&ss) && dev >= 0 && (size_t)dev < ss.s->ngpus) {
    fn(&ss.s->gpus[dev], arg);
    r = KYB_CUDA_SUCCESS;
  }
  d_close(&ss, false);
  return r;
}

kyb_curesult cuDeviceGetCount(int *count) {
  if (!d_initialized)
    return KYB_CUDA_ERROR_NOT_INITIALIZED;
  if (count == NULL)
    return KYB_CUDA_ERROR_INVALID_VALUE;
  d_session ss;
  *count = d_open(&ss) ? (int)ss.s->ngpus : 0;
  d_close(&ss, false);
  return KYB_CUDA_SUCCESS;
}

static void d_noop(const d_gpu *g, void *arg) {
  (void)g;
  (void)arg;
}

kyb_curesult cuDeviceGet(kyb_cu_device *dev, int ordinal) {
  kyb_curesult r = d_with_gpu(ordinal, dev, d_noop, NULL);
  if (r == KYB_CUDA_SUCCESS)
    *dev = ordinal;
  return r;
}

static void d_copy_uuid(const d_gpu *g, void *arg) {
  *(kyb_cu_uuid *)arg = g->uuid;
}

kyb_curesult cuDeviceGetUuid_v2(kyb_cu_uuid *uuid, kyb_cu_device dev) {
  return d_with_gpu(dev, uuid, d_copy_uuid, uuid);
}

kyb_curesult cuDeviceGetUuid(kyb_cu_uuid *uuid, kyb_cu_device dev) {
  return cuDeviceGetUuid_v2(uuid, dev);
}

typedef struct {
  char *buf;
  int len;
} d_name_arg;

static void d_copy_name(const d_gpu *g, void *arg) {
  d_name_arg *a = arg;
  snprintf(a->buf, (size_t)a->len, "%s", g->model);
}

kyb_curesult cuDeviceGetName(char *name, int len, kyb_cu_device dev) {
  if (len <= 0)
    return KYB_CUDA_ERROR_INVALID_VALUE;
  d_name_arg a = {name, len};
  return d_with_gpu(dev, name, d_copy_name, &a);
}

static void d_copy_mem(const d_gpu *g, void *arg) {
  *(size_t *)arg = (size_t)g->memory;
}

kyb_curesult cuDeviceTotalMem_v2(size_t *bytes, kyb_cu_device dev) {
  return d_with_gpu(dev, bytes, d_copy_mem, bytes);
}

#ifndef KYB_CUDA_DOUBLE_NO_CHECKPOINT_API
/* ---- the checkpoint API ---- */

static bool d_all_zero(const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != 0)
      return false;
  return true;
}

static const d_gpu *d_find_gpu(const d_state *s, const kyb_cu_uuid *u) {
  for (size_t i = 0; i < s->ngpus; i++)
    if (memcmp(&s->gpus[i].uuid, u, sizeof(*u)) == 0)
      return &s->gpus[i];
  return NULL;
}

static int d_version(const d_state *s) {
  long v = s->version > 0 ? s->version : 13000;
  const char *env = getenv("KYB_CUDA_DOUBLE_VERSION");
  if (env != NULL && env[0] != '\0')
    (void)d_int(env, 1000, 99999, &v); /* unchanged when malformed */
  return (int)v;
}

/* A live pid without a `proc` line whose comm a `restored` rule names
 * becomes a CHECKPOINTED CUDA process (header comment); NULL otherwise. */
static d_proc *d_adopt(d_session *ss, int pid) {
  d_state *s = ss->s;
  if (s->nrules == 0 || s->nprocs == D_MAX_PROCS)
    return NULL;
  char path[64], comm[64] = "";
  snprintf(path, sizeof(path), "/proc/%d/comm", pid);
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return NULL;
  bool got = fgets(comm, sizeof(comm), f) != NULL;
  fclose(f);
  comm[strcspn(comm, "\n")] = '\0';
  for (size_t i = 0; got && i < s->nrules; i++) {
    const d_rule *rule = &s->rules[i];
    if (strcmp(rule->comm, comm) != 0)
      continue;
    d_proc *p = &s->procs[s->nprocs++];
    memset(p, 0, sizeof(*p));
    p->pid = pid;
    p->state = KYB_CU_PROCESS_STATE_CHECKPOINTED;
    if (rule->all_gpus) {
      for (size_t j = 0; j < s->ngpus; j++)
        p->gpus[j] = s->gpus[j].uuid;
      p->ngpus = s->ngpus;
    } else {
      memcpy(p->gpus, rule->gpus, sizeof(p->gpus));
      p->ngpus = rule->ngpus;
    }
    ss->dirty = true;
    return p;
  }
  return NULL;
}

/* Opens the state and finds the process (adopting a restored one); answers
 * as the real driver did for pids it has no CUDA state for.  Faults apply
 * to known processes only. */
static kyb_curesult d_begin(d_session *ss, const char *op, int pid, d_proc **proc) {
  *proc = NULL;
  if (!d_open(ss))
    return KYB_CUDA_ERROR_NOT_INITIALIZED;
  if (pid <= 0)
    return KYB_CUDA_ERROR_INVALID_VALUE;
  if (kill(pid, 0) < 0 && errno == ESRCH)
    return KYB_CUDA_ERROR_OPERATING_SYSTEM; /* seen for a pid that does not exist */
  for (size_t i = 0; i < ss->s->nprocs && *proc == NULL; i++)
    if (ss->s->procs[i].pid == pid)
      *proc = &ss->s->procs[i];
  if (*proc == NULL)
    *proc = d_adopt(ss, pid);
  if (*proc == NULL)
    return KYB_CUDA_ERROR_NOT_INITIALIZED; /* never called cuInit */
  kyb_curesult r = KYB_CUDA_SUCCESS;
  if (d_fault_hit(ss->s, op, pid, &r))
    return r;
  return KYB_CUDA_SUCCESS;
}

static kyb_curesult d_end(d_session *ss, const char *op, int pid, kyb_curesult r, const char *extra,
                          bool changed) {
  d_log(ss->s, op, pid, r, extra);
  /* A failed call changes no state, but an adoption stays. */
  d_close(ss, (changed && r == KYB_CUDA_SUCCESS) || ss->dirty);
  return r;
}

kyb_curesult cuCheckpointProcessGetState(int pid, kyb_cu_process_state *state) {
  d_session ss;
  d_proc *p = NULL;
  kyb_curesult r = state == NULL ? KYB_CUDA_ERROR_INVALID_VALUE : d_begin(&ss, "getstate", pid, &p);
  if (state == NULL)
    return r;
  if (r == KYB_CUDA_SUCCESS)
    *state = p->state;
  return d_end(&ss, "getstate", pid, r, "", false);
}

kyb_curesult cuCheckpointProcessGetRestoreThreadId(int pid, int *tid) {
  d_session ss;
  d_proc *p = NULL;
  kyb_curesult r = tid == NULL ? KYB_CUDA_ERROR_INVALID_VALUE : d_begin(&ss, "restoretid", pid, &p);
  if (tid == NULL)
    return r;
  if (r == KYB_CUDA_SUCCESS)
    *tid = pid; /* the real driver names a thread of its own inside the process */
  return d_end(&ss, "restoretid", pid, r, "", false);
}

/* A state transition from `from` to `to`, for lock, checkpoint and unlock. */
static kyb_curesult d_step(const char *op, int pid, bool args_ok, kyb_cu_process_state from,
                           kyb_cu_process_state to, const char *extra) {
  d_session ss;
  d_proc *p = NULL;
  kyb_curesult r = d_begin(&ss, op, pid, &p);
  if (r == KYB_CUDA_SUCCESS && !args_ok)
    r = KYB_CUDA_ERROR_INVALID_VALUE; /* reserved bytes must be zero */
  else if (r == KYB_CUDA_SUCCESS && p->state != from)
    r = KYB_CUDA_ERROR_ILLEGAL_STATE;
  else if (r == KYB_CUDA_SUCCESS)
    p->state = to;
  return d_end(&ss, op, pid, r, extra, true);
}

kyb_curesult cuCheckpointProcessLock(int pid, kyb_cu_lock_args *args) {
  bool ok = args == NULL ||
            (args->reserved0 == 0 && d_all_zero(args->reserved1, sizeof(args->reserved1)));
  char extra[48];
  snprintf(extra, sizeof(extra), "timeout=%u", args != NULL ? args->timeout_ms : 0);
  return d_step("lock", pid, ok, KYB_CU_PROCESS_STATE_RUNNING, KYB_CU_PROCESS_STATE_LOCKED, extra);
}

kyb_curesult cuCheckpointProcessCheckpoint(int pid, kyb_cu_checkpoint_args *args) {
  bool ok = args == NULL || d_all_zero(args, sizeof(*args));
  return d_step("checkpoint", pid, ok, KYB_CU_PROCESS_STATE_LOCKED,
                KYB_CU_PROCESS_STATE_CHECKPOINTED, "");
}

kyb_curesult cuCheckpointProcessUnlock(int pid, kyb_cu_unlock_args *args) {
  bool ok = args == NULL || d_all_zero(args, sizeof(*args));
  return d_step("unlock", pid, ok, KYB_CU_PROCESS_STATE_LOCKED, KYB_CU_PROCESS_STATE_RUNNING, "");
}

/* The driver's rule (cuda.h): a map "must contain every checkpointed GPU";
 * measured: leaving one out is CUDA_ERROR_INVALID_VALUE.  The double is
 * stricter than what was measured where the real answer is unknown: pairs
 * for GPUs the process never saw, a GPU used twice, a target that is not
 * present or of another model are refused the same way. */
static bool d_map_ok(const d_state *s, const d_proc *p, const kyb_cu_gpu_pair *pairs, size_t n) {
  if (pairs == NULL || n != p->ngpus)
    return false;
  for (size_t i = 0; i < n; i++) {
    bool seen = false;
    for (size_t j = 0; j < p->ngpus; j++)
      seen = seen || memcmp(&pairs[i].old_uuid, &p->gpus[j], sizeof(kyb_cu_uuid)) == 0;
    const d_gpu *to = d_find_gpu(s, &pairs[i].new_uuid);
    const d_gpu *from = d_find_gpu(s, &pairs[i].old_uuid);
    if (!seen || to == NULL || (from != NULL && strcmp(from->model, to->model) != 0))
      return false;
    for (size_t j = 0; j < i; j++)
      if (memcmp(&pairs[i].old_uuid, &pairs[j].old_uuid, sizeof(kyb_cu_uuid)) == 0 ||
          memcmp(&pairs[i].new_uuid, &pairs[j].new_uuid, sizeof(kyb_cu_uuid)) == 0)
        return false;
  }
  return true;
}

kyb_curesult cuCheckpointProcessRestore(int pid, kyb_cu_restore_args *args) {
  d_session ss;
  d_proc *p = NULL;
  kyb_curesult r = d_begin(&ss, "restore", pid, &p);
  size_t n = args != NULL ? args->gpu_pairs_count : 0;
  char extra[48];
  snprintf(extra, sizeof(extra), "pairs=%zu", n);
  if (r != KYB_CUDA_SUCCESS)
    return d_end(&ss, "restore", pid, r, extra, false);
  bool reserved_ok = args == NULL ||
                     (args->reserved0 == 0 && d_all_zero(args->reserved1, sizeof(args->reserved1)));
  /* Before CUDA 13.0 the whole structure is reserved. */
  if (reserved_ok && args != NULL && d_version(ss.s) < KYB_CUDA_VERSION_GPU_PAIRS)
    reserved_ok = args->gpu_pairs == NULL && args->gpu_pairs_count == 0;
  if (!reserved_ok)
    return d_end(&ss, "restore", pid, KYB_CUDA_ERROR_INVALID_VALUE, extra, false);
  if (p->state != KYB_CU_PROCESS_STATE_CHECKPOINTED)
    return d_end(&ss, "restore", pid, KYB_CUDA_ERROR_ILLEGAL_STATE, extra, false);
  if (n > 0) {
    if (!d_map_ok(ss.s, p, args->gpu_pairs, n))
      return d_end(&ss, "restore", pid, KYB_CUDA_ERROR_INVALID_VALUE, extra, false);
    kyb_cu_uuid before[D_MAX_GPUS]; /* a swap (A->B, B->A) must read the old list */
    memcpy(before, p->gpus, sizeof(before));
    for (size_t i = 0; i < n; i++)
      for (size_t j = 0; j < p->ngpus; j++)
        if (memcmp(&args->gpu_pairs[i].old_uuid, &before[j], sizeof(kyb_cu_uuid)) == 0)
          p->gpus[j] = args->gpu_pairs[i].new_uuid;
  } else {
    /* In place: every GPU it had must still be here.  The real driver's
     * answer when one is missing is not known; INVALID_DEVICE is a guess. */
    for (size_t j = 0; j < p->ngpus; j++)
      if (d_find_gpu(ss.s, &p->gpus[j]) == NULL)
        return d_end(&ss, "restore", pid, KYB_CUDA_ERROR_INVALID_DEVICE, extra, false);
  }
  p->state = KYB_CU_PROCESS_STATE_LOCKED;
  return d_end(&ss, "restore", pid, KYB_CUDA_SUCCESS, extra, true);
}
#endif

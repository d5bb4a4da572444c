/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Parallel hashing of file ranges.  See hashpool.h for the contract.
 *
 * Jobs are handed out largest first from one atomic counter, so the long
 * ones start at once and the short ones fill the gaps at the end.  The
 * calling thread works too: one thread means no thread is created at all.
 * Ranges are read with pread, so jobs on one fd never share a file offset.
 */
#define KYB_LOG_MODULE "image"

#include "image/hashpool.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/log.h"

#define BUF_SIZE (1u << 20)

unsigned kyb_hash_threads(void) {
  const char *env = getenv("KYBERNATE_HASH_THREADS");
  if (env != NULL && *env != '\0') {
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(env, &end, 10);
    if (errno == 0 && *end == '\0' && v >= 1 && v <= KYB_HASH_THREADS_MAX)
      return (unsigned)v;
    log_warn("KYBERNATE_HASH_THREADS=\"%s\" ignored: not a number from 1 to %u", env,
             KYB_HASH_THREADS_MAX);
  }
  cpu_set_t set;
  unsigned n = 1;
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
    n = (unsigned)CPU_COUNT(&set);
  return n < KYB_HASH_THREADS_MAX ? n : KYB_HASH_THREADS_MAX;
}

static void md_ctx_freep(EVP_MD_CTX **c) {
  EVP_MD_CTX_free(*c);
}

/* Hashes one job's range into j->hex / j->got; failures go to j->err. */
static void run_job(kyb_hash_job *j, unsigned char *buf, const atomic_bool *stop) {
  __attribute__((cleanup(md_ctx_freep))) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
    kyb_error_set(&j->err, ENOMEM, "%s: sha256 init failed", j->what);
    return;
  }
  uint64_t off = j->off, left = j->len;
  j->got = 0;
  while (left > 0) {
    /* Another job failed: its error is what the caller reports. */
    if (atomic_load_explicit(stop, memory_order_relaxed))
      return;
    size_t want = left < BUF_SIZE ? (size_t)left : BUF_SIZE;
    ssize_t n = pread(j->fd, buf, want, (off_t)off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      kyb_error_errno(&j->err, "%s: read at byte %llu", j->what, (unsigned long long)off);
      return;
    }
    if (n == 0)
      break;
    if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1) {
      kyb_error_set(&j->err, EIO, "%s: sha256: OpenSSL digest update failed", j->what);
      return;
    }
    off += (uint64_t)n;
    j->got += (uint64_t)n;
    if (j->len != KYB_HASH_TO_EOF)
      left -= (uint64_t)n;
  }
  if (j->len != KYB_HASH_TO_EOF && left > 0) {
    kyb_error_set(&j->err, EBADMSG, "%s: file ended %llu bytes early (it changed while hashed)",
                  j->what, (unsigned long long)left);
    return;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != KYB_SHA256_HEX_LEN / 2) {
    kyb_error_set(&j->err, EIO, "%s: sha256: OpenSSL digest final failed", j->what);
    return;
  }
  kyb_hex_lower(md, mdlen, j->hex);
  if (j->fsync && fsync(j->fd) < 0) {
    kyb_error_errno(&j->err, "%s: fsync", j->what);
    return;
  }
  if (j->want != NULL && strcmp(j->hex, j->want) != 0)
    kyb_error_set(&j->err, EBADMSG, "%s has sha256 %s, the manifest says %s", j->what, j->hex,
                  j->want);
}

typedef struct {
  kyb_hash_job *jobs;
  const size_t *order;
  size_t n;
  atomic_size_t next;
  atomic_bool stop;
} pool;

static void *worker(void *arg) {
  pool *p = arg;
  cleanup_free unsigned char *buf = malloc(BUF_SIZE);
  for (;;) {
    if (atomic_load(&p->stop))
      break;
    size_t i = atomic_fetch_add(&p->next, 1);
    if (i >= p->n)
      break;
    kyb_hash_job *j = &p->jobs[p->order[i]];
    if (buf == NULL)
      kyb_error_set(&j->err, ENOMEM, "%s: hash buffer", j->what);
    else
      run_job(j, buf, &p->stop);
    if (j->err != NULL)
      atomic_store(&p->stop, true);
  }
  return NULL;
}

/* Bytes a job will read, for ordering only. */
static uint64_t job_size(const kyb_hash_job *j) {
  if (j->len != KYB_HASH_TO_EOF)
    return j->len;
  struct stat st;
  if (fstat(j->fd, &st) < 0 || (uint64_t)st.st_size < j->off)
    return 0;
  return (uint64_t)st.st_size - j->off;
}

typedef struct {
  size_t index;
  uint64_t size;
} sized;

static int cmp_size_desc(const void *a, const void *b) {
  const sized *x = a, *y = b;
  if (x->size != y->size)
    return x->size < y->size ? 1 : -1;
  return x->index < y->index ? -1 : x->index > y->index; /* stable: the caller's order */
}

int kyb_hash_jobs_run(kyb_hash_job *jobs, size_t n, unsigned threads, kyb_error **err) {
  if (n == 0)
    return 0;
  cleanup_free sized *by_size = calloc(n, sizeof(*by_size));
  cleanup_free size_t *order = calloc(n, sizeof(*order));
  if (by_size == NULL || order == NULL)
    return kyb_error_set(err, ENOMEM, "hash jobs");
  for (size_t i = 0; i < n; i++) {
    jobs[i].hex[0] = '\0';
    jobs[i].got = 0;
    kyb_error_clear(&jobs[i].err);
    by_size[i] = (sized){i, job_size(&jobs[i])};
  }
  qsort(by_size, n, sizeof(*by_size), cmp_size_desc);
  for (size_t i = 0; i < n; i++)
    order[i] = by_size[i].index;

  pool p = {.jobs = jobs, .order = order, .n = n};
  atomic_init(&p.next, 0);
  atomic_init(&p.stop, false);
  if (threads < 1)
    threads = 1;
  if (threads > KYB_HASH_THREADS_MAX)
    threads = KYB_HASH_THREADS_MAX;
  if ((size_t)threads > n)
    threads = (unsigned)n;
  pthread_t tids[KYB_HASH_THREADS_MAX];
  unsigned started = 0;
  for (unsigned t = 1; t < threads; t++) {
    int r = pthread_create(&tids[started], NULL, worker, &p);
    if (r != 0) { /* fewer threads is slower, not wrong */
      log_debug("hash thread %u not started: %s; going on with %u", t, strerror(r), started + 1);
      break;
    }
    started++;
  }
  worker(&p);
  for (unsigned t = 0; t < started; t++)
    pthread_join(tids[t], NULL);

  for (size_t i = 0; i < n; i++)
    if (jobs[i].err != NULL) {
      kyb_error_clear(err);
      if (err != NULL)
        *err = jobs[i].err;
      else
        kyb_error_free(jobs[i].err);
      jobs[i].err = NULL;
      return -1;
    }
  return 0;
}

void kyb_hash_jobs_release(kyb_hash_job *jobs, size_t n) {
  for (size_t i = 0; jobs != NULL && i < n; i++)
    kyb_error_clear(&jobs[i].err);
}

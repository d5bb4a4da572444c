/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CLI's transfers of remote images: through kybernate-uploader when the
 * CLI is given its socket (--uploader or $KYBERNATE_UPLOADER_SOCKET: then
 * this process needs no storage credentials), and the progress bar both
 * ways show on a terminal.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "util/cleanup.h"

#define BAR_WIDTH 24
#define BAR_DELAY_MS 500
#define BAR_EVERY_MS 100

bool cli_remote_uri(const char *uri) {
  return uri != NULL && (strncmp(uri, "oci://", 6) == 0 || strncmp(uri, "s3://", 5) == 0);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void cli_bar_update(cli_bar *b, const char *part, uint64_t done, uint64_t total) {
  uint64_t now = now_ms();
  if (b->start_ms == 0)
    b->start_ms = now;
  bool last = total > 0 && done >= total;
  if (total == 0 || now - b->start_ms < BAR_DELAY_MS || (!last && now - b->last_ms < BAR_EVERY_MS))
    return;
  b->last_ms = now;
  b->shown = true;
  char d[32], t[32], r[32];
  cli_format_size(done, d, sizeof(d));
  cli_format_size(total, t, sizeof(t));
  double secs = (double)(now - b->start_ms) / 1000;
  cli_format_size((unsigned long long)((double)done / (secs > 0 ? secs : 1)), r, sizeof(r));
  char bar[BAR_WIDTH + 1];
  unsigned fill = total ? (unsigned)((double)done * BAR_WIDTH / (double)total) : 0;
  for (unsigned i = 0; i < BAR_WIDTH; i++)
    bar[i] = i < fill ? '#' : '.';
  bar[BAR_WIDTH] = '\0';
  unsigned pct = total ? (unsigned)((double)done * 100 / (double)total) : 0;
  fprintf(stderr, "\r%s %s [%s] %3u%%  %s / %s  %s/s  %.40s\033[K", b->verb, b->name, bar,
          pct > 100 ? 100 : pct, d, t, r, part ? part : "");
  fflush(stderr);
}

void cli_bar_end(cli_bar *b) {
  if (b->shown)
    fputc('\n', stderr);
  b->shown = false;
}

int cli_bar_store_progress(void *ud, const kyb_store_progress *p) {
  cli_bar *b = ud;
  if (b->name == NULL)
    b->name = p->name;
  cli_bar_update(b, p->part, p->done, p->total);
  return 0;
}

/* ---- through the uploader ---------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig) {
  (void)sig;
  interrupted = 1;
}

typedef struct {
  const kyb_cli *cli;
  cli_bar bar;
} follow;

static int on_job(void *ud, const kyb_upload_job *j) {
  follow *f = ud;
  if (f->cli->progress)
    cli_bar_update(&f->bar, j->part, j->done, j->total);
  return interrupted ? 1 : 0;
}

/* Follows a submitted job to its end; Ctrl-C cancels it. */
static int follow_job(const kyb_cli *cli, kyb_uploader_client *c, const char *verb,
                      const char *name, kyb_upload_job *job, kyb_error **err) {
  follow f = {.cli = cli, .bar = {.verb = verb, .name = name}};
  struct sigaction sa = {.sa_handler = on_interrupt}, old_int, old_term;
  sigemptyset(&sa.sa_mask);
  interrupted = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  cleanup_free char *id = strdup(job->id);
  int r = id ? kyb_uploader_client_wait(c, id, 0, on_job, &f, job, err)
             : kyb_error_set(err, ENOMEM, "job");
  cli_bar_end(&f.bar);
  if (r < 0 && interrupted) {
    kyb_upload_job after = {0};
    cleanup_error kyb_error *cerr = NULL;
    if (kyb_uploader_client_cancel(c, id, &after, &cerr) == 0)
      fprintf(stderr, "kybernate: job %s cancelled\n", id);
    kyb_upload_job_clear(&after);
  }
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  return r;
}

static int run_job(const kyb_cli *cli, const char *verb, const char *name, const char *image,
                   const char *to, const char *ref, kyb_upload_job *out, kyb_error **err) {
  kyb_uploader_client *c = NULL;
  if (kyb_uploader_client_new(cli->uploader, &c, err) < 0)
    return -1;
  int r = ref ? kyb_uploader_client_fetch(c, ref, out, err)
              : kyb_uploader_client_upload(c, image, to, out, err);
  if (r == 0)
    r = follow_job(cli, c, verb, name, out, err);
  kyb_uploader_client_free(c);
  return r;
}

int cli_upload(const kyb_cli *cli, const char *image, const char *to, kyb_upload_job *out,
               kyb_error **err) {
  const char *slash = strrchr(image, '/');
  return run_job(cli, "pushing", slash ? slash + 1 : image, image, to, NULL, out, err);
}

int cli_fetch(const kyb_cli *cli, const char *ref, kyb_upload_job *out, kyb_error **err) {
  cleanup_free char *store = NULL, *name = NULL;
  cleanup_error kyb_error *perr = NULL;
  const char *shown = ref;
  if (kyb_image_ref_parse(ref, NULL, &store, &name, &perr) == 0)
    shown = name;
  return run_job(cli, "fetching", shown, NULL, NULL, ref, out, err);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared state of the kybernate CLI's commands: the global options, parsed
 * once in main.c and handed to each command.
 */
#ifndef KYB_CLI_CLI_H
#define KYB_CLI_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "ops/checkpoint.h"
#include "store/store.h"
#include "uploader/client.h"

typedef struct {
  const char *address;    /* containerd socket */
  const char *namespace_; /* containerd namespace */
  const char *store;      /* default store URI */
  bool json;              /* machine-readable output on stdout */
  bool progress;          /* phase progress on stderr (a terminal, not --json) */
  const char *uploader;   /* kybernate-uploader's socket for remote stores; NULL: in-process */
  const char *agent;      /* kybernate-agent's socket: checkpoint and fetch through it; NULL: not */
  bool store_given;       /* --store or $KYBERNATE_STORE (else the agent's default applies) */
} kyb_cli;

#define CLI_PROGRAM "kybernate"

/* Exit codes: 0 done, 1 the operation failed, 2 the command line is wrong. */
enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

int cmd_checkpoint(const kyb_cli *cli, int argc, char **argv);
int cmd_images(const kyb_cli *cli, int argc, char **argv);
int cmd_restore(const kyb_cli *cli, int argc, char **argv);
int cmd_recover(const kyb_cli *cli, int argc, char **argv);

/* "1.5 GiB" style sizes for people. */
void cli_format_size(unsigned long long bytes, char *buf, unsigned long size);

/* transfer.c: remote stores, through kybernate-uploader or in-process, and
 * the progress bar of their transfers (stderr, a terminal only). */
bool cli_remote_uri(const char *uri);

typedef struct {
  const char *verb; /* "pushing", "fetching" */
  const char *name;
  uint64_t start_ms, last_ms;
  bool shown;
} cli_bar;

/* Draws the bar (at most 10 times a second, once a transfer runs 0.5 s). */
void cli_bar_update(cli_bar *b, const char *part, uint64_t done, uint64_t total);
/* Ends the line of a bar that was drawn. */
void cli_bar_end(cli_bar *b);
/* kyb_store_progress_fn over a cli_bar. */
int cli_bar_store_progress(void *ud, const kyb_store_progress *p);

/* An upload (image: a local reference; to: a store URI) or a fetch job
 * through the uploader at cli->uploader, followed to its end with the bar
 * when cli->progress.  Ctrl-C cancels the job. */
int cli_upload(const kyb_cli *cli, const char *image, const char *to, kyb_upload_job *out,
               kyb_error **err);
int cli_fetch(const kyb_cli *cli, const char *ref, kyb_upload_job *out, kyb_error **err);

/* agent.c: through kybernate-agent's local API at cli->agent (lib/agent/client.h).
 * A checkpoint by the agent's worker (POST /v1/checkpoint): o's container or
 * pod, name, store (sent when `store_given`), leave_running, CRIU flags and
 * GPU lock timeout (whole seconds, at most 600). */
int cli_agent_checkpoint(const kyb_cli *cli, const kyb_checkpoint_opts *o, bool store_given,
                         kyb_checkpoint_result *out, kyb_error **err);
/* A remote image into the node cache by the agent (POST /v1/images/fetch). */
int cli_agent_fetch(const kyb_cli *cli, const char *ref, kyb_error **err);

#endif

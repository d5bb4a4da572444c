/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared state of the kybernate CLI's commands: the global options, parsed
 * once in main.c and handed to each command.
 */
#ifndef KYB_CLI_CLI_H
#define KYB_CLI_CLI_H

#include <stdbool.h>

typedef struct {
  const char *address;    /* containerd socket */
  const char *namespace_; /* containerd namespace */
  const char *store;      /* default store URI */
  bool json;              /* machine-readable output on stdout */
  bool progress;          /* phase progress on stderr (a terminal, not --json) */
} kyb_cli;

#define CLI_PROGRAM "kybernate"

/* Exit codes: 0 done, 1 the operation failed, 2 the command line is wrong. */
enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

int cmd_checkpoint(const kyb_cli *cli, int argc, char **argv);
int cmd_images(const kyb_cli *cli, int argc, char **argv);
int cmd_restore(const kyb_cli *cli, int argc, char **argv);

/* "1.5 GiB" style sizes for people. */
void cli_format_size(unsigned long long bytes, char *buf, unsigned long size);

#endif

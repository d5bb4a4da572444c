/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kybernate: the command-line interface.  A thin front-end: each command
 * parses its flags and calls one libkybernate operation.
 *
 * NOT IMPLEMENTED YET: checkpoint, restore and images land with their issues;
 * they say so when called.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cli.h"

static const char *const program = "kybernate";

static void usage(FILE *out) {
  fprintf(out,
          "Usage: %s [GLOBAL OPTIONS] COMMAND [ARGS...]\n"
          "\n"
          "Checkpoint running (GPU) containers and restore them into new ones.\n"
          "\n"
          "Commands:\n"
          "  checkpoint CONTAINER   checkpoint a container into an image (not implemented yet)\n"
          "  restore REF            restore an image into a new container (not implemented yet)\n"
          "  images                 list, inspect and remove images (not implemented yet)\n"
          "  version                show the version\n"
          "\n"
          "Global options:\n"
          "  --log-level LEVEL      error, warn, info (default), debug, trace\n"
          "  --log-format FORMAT    text (default) or json\n"
          "  -h, --help             show this help\n"
          "  -V, --version          show the version\n",
          program);
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                       {"version", no_argument, NULL, 'V'},
                                       {"log-level", required_argument, NULL, 'l'},
                                       {"log-format", required_argument, NULL, 'f'},
                                       {NULL, 0, NULL, 0}};
  const char *level = NULL, *format = NULL;
  int c;
  /* '+': stop at the first non-option, which is the command. */
  while ((c = getopt_long(argc, argv, "+hV", opts, NULL)) != -1) {
    switch (c) {
    case 'h':
      usage(stdout);
      return 0;
    case 'V':
      kyb_cli_print_version(stdout, program);
      return 0;
    case 'l':
      level = optarg;
      break;
    case 'f':
      format = optarg;
      break;
    default:
      usage(stderr);
      return 2;
    }
  }
  kyb_error *err = NULL;
  if (kyb_cli_setup_logging(program, KYB_LOG_TEXT, level, format, &err) < 0) {
    kyb_cli_report(program, err);
    kyb_error_free(err);
    return 2;
  }
  if (optind >= argc) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[optind];
  if (strcmp(cmd, "version") == 0) {
    kyb_cli_print_version(stdout, program);
    return 0;
  }
  if (strcmp(cmd, "help") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(cmd, "checkpoint") == 0 || strcmp(cmd, "restore") == 0 || strcmp(cmd, "images") == 0) {
    fprintf(stderr, "%s: %s is not implemented yet\n", program, cmd);
    return 1;
  }
  fprintf(stderr, "%s: unknown command '%s' (see %s --help)\n", program, cmd, program);
  return 2;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kybernate-operator: the operator: reconciles Checkpoint and Restore objects, creates
 * CheckpointRequests for node agents and restore pods.
 *
 * NOT IMPLEMENTED YET: this main only answers --help and --version; the
 * operator's work lands with the Kubernetes control-plane issue.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/cli.h"

static const char *const program = "kybernate-operator";

static void usage(FILE *out) {
  fprintf(out,
          "Usage: %s [OPTIONS]\n"
          "\n"
          "Kybernate operator: reconciles Checkpoint and Restore objects.\n"
          "\n"
          "Options:\n"
          "  --log-level LEVEL    error, warn, info (default), debug, trace\n"
          "  --log-format FORMAT  json (default for daemons) or text\n"
          "  -h, --help           show this help\n"
          "  -V, --version        show the version\n"
          "\n"
          "Status: not implemented yet; only --help and --version work.\n",
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
  while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
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
  if (kyb_cli_setup_logging(program, KYB_LOG_JSON, level, format, &err) < 0) {
    kyb_cli_report(program, err);
    kyb_error_free(err);
    return 2;
  }
  log_error("the operator is not implemented yet");
  return 1;
}

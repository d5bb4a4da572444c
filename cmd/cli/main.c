/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kybernate: the command-line interface.  A thin front-end: main() parses the
 * global options, each command (checkpoint.c, images.c, ...) parses its own
 * and calls one libkybernate operation.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "containerd/client.h"
#include "store/store.h"
#include "util/cli.h"

static void usage(FILE *out) {
  fprintf(out,
          "Usage: kybernate [GLOBAL OPTIONS] COMMAND [ARGS...]\n"
          "\n"
          "Checkpoint running (GPU) containers and restore them into new ones.\n"
          "\n"
          "Commands:\n"
          "  checkpoint CONTAINER   checkpoint a container into an image in a store\n"
          "  images ls|inspect|verify|rm\n"
          "                         list, inspect, verify and remove images\n"
          "  restore REF --name NEW restore an image into a new container\n"
          "  recover CONTAINER      undo what a killed checkpoint left: resume the\n"
          "                         container, restore its GPU state, clean the store\n"
          "  version                show the version\n"
          "\n"
          "Global options:\n"
          "  -a, --address SOCK     containerd socket (default %s,\n"
          "                         or $KYBERNATE_CONTAINERD_ADDRESS)\n"
          "  -n, --namespace NS     containerd namespace (default \"default\",\n"
          "                         or $KYBERNATE_NAMESPACE)\n"
          "      --store URI        image store (default %s,\n"
          "                         or $KYBERNATE_STORE)\n"
          "      --uploader SOCK    move images of oci:// and s3:// stores through\n"
          "                         kybernate-uploader at SOCK (or $KYBERNATE_UPLOADER_SOCKET):\n"
          "                         this process then needs no storage credentials\n"
          "      --agent SOCK       checkpoint through kybernate-agent at SOCK (or\n"
          "                         $KYBERNATE_AGENT_SOCKET), and have it fetch the images of\n"
          "                         remote stores that restore uses\n"
          "      --json             machine-readable output\n"
          "      --log-level LEVEL  error, warn, info, debug, trace (default warn)\n"
          "      --log-format FMT   text (default) or json\n"
          "  -h, --help             show this help\n"
          "  -V, --version          show the version\n"
          "\n"
          "Run 'kybernate COMMAND --help' for a command's options.\n",
          KYB_CTD_DEFAULT_SOCKET, KYB_STORE_DEFAULT_URI);
}

static const char *env_or(const char *name, const char *dflt) {
  const char *v = getenv(name);
  return (v != NULL && *v != '\0') ? v : dflt;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                       {"version", no_argument, NULL, 'V'},
                                       {"address", required_argument, NULL, 'a'},
                                       {"namespace", required_argument, NULL, 'n'},
                                       {"store", required_argument, NULL, 's'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"log-level", required_argument, NULL, 'l'},
                                       {"log-format", required_argument, NULL, 'f'},
                                       {"uploader", required_argument, NULL, 'u'},
                                       {"agent", required_argument, NULL, 'g'},
                                       {NULL, 0, NULL, 0}};
  kyb_cli cli = {
      .address = env_or("KYBERNATE_CONTAINERD_ADDRESS", KYB_CTD_DEFAULT_SOCKET),
      .namespace_ = env_or("KYBERNATE_NAMESPACE", "default"),
      .store = env_or("KYBERNATE_STORE", KYB_STORE_DEFAULT_URI),
      .uploader = env_or("KYBERNATE_UPLOADER_SOCKET", NULL),
      .agent = env_or("KYBERNATE_AGENT_SOCKET", NULL),
      .store_given = env_or("KYBERNATE_STORE", NULL) != NULL,
  };
  const char *level = NULL, *format = NULL;
  int c;
  /* '+': stop at the first non-option, which is the command. */
  while ((c = getopt_long(argc, argv, "+hVa:n:", opts, NULL)) != -1) {
    switch (c) {
    case 'h':
      usage(stdout);
      return CLI_OK;
    case 'V':
      kyb_cli_print_version(stdout, CLI_PROGRAM);
      return CLI_OK;
    case 'a':
      cli.address = optarg;
      break;
    case 'n':
      cli.namespace_ = optarg;
      break;
    case 's':
      cli.store = optarg;
      cli.store_given = true;
      break;
    case 'j':
      cli.json = true;
      break;
    case 'l':
      level = optarg;
      break;
    case 'f':
      format = optarg;
      break;
    case 'u':
      cli.uploader = *optarg ? optarg : NULL;
      break;
    case 'g':
      cli.agent = *optarg ? optarg : NULL;
      break;
    default:
      usage(stderr);
      return CLI_USAGE;
    }
  }
  kyb_error *err = NULL;
  /* A CLI shows warnings and errors unless asked; progress has its own output. */
  if (level == NULL && getenv("KYBERNATE_LOG_LEVEL") == NULL)
    level = "warn";
  if (kyb_cli_setup_logging(CLI_PROGRAM, KYB_LOG_TEXT, level, format, &err) < 0) {
    kyb_cli_report(CLI_PROGRAM, err);
    kyb_error_free(err);
    return CLI_USAGE;
  }
  cli.progress = !cli.json && isatty(STDERR_FILENO);
  if (optind >= argc) {
    usage(stderr);
    return CLI_USAGE;
  }
  const char *cmd = argv[optind];
  int cargc = argc - optind;
  char **cargv = argv + optind;
  optind = 0; /* each command parses its own options from its argv (0: reinitialise getopt) */
  if (strcmp(cmd, "checkpoint") == 0)
    return cmd_checkpoint(&cli, cargc, cargv);
  if (strcmp(cmd, "images") == 0 || strcmp(cmd, "image") == 0)
    return cmd_images(&cli, cargc, cargv);
  if (strcmp(cmd, "version") == 0) {
    kyb_cli_print_version(stdout, CLI_PROGRAM);
    return CLI_OK;
  }
  if (strcmp(cmd, "help") == 0) {
    usage(stdout);
    return CLI_OK;
  }
  if (strcmp(cmd, "restore") == 0)
    return cmd_restore(&cli, cargc, cargv);
  if (strcmp(cmd, "recover") == 0)
    return cmd_recover(&cli, cargc, cargv);
  fprintf(stderr, "kybernate: unknown command '%s' (see kybernate --help)\n", cmd);
  return CLI_USAGE;
}

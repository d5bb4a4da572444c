/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kybernate-runc: the OCI runtime binary containerd's runc shim calls
 * (runtime option BinaryName).  Every command is handed unchanged to the
 * delegate runtime (runc on PATH, or $KYBERNATE_RUNTIME_DELEGATE), the way
 * the shim itself would have run it.
 *
 * NOT IMPLEMENTED YET: turning `create` of a container annotated with
 * kybernate.io/restore-from into a restore; that lands with the restore
 * issue.  Today this binary is a faithful pass-through.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/cli.h"

static const char *const program = "kybernate-runc";

static void usage(FILE *out) {
  fprintf(out,
          "Usage: %s [RUNC GLOBAL OPTIONS] COMMAND [ARGS...]\n"
          "\n"
          "Kybernate's OCI runtime wrapper, named as BinaryName of containerd's runc shim.\n"
          "Every command is passed unchanged to the delegate runtime.\n"
          "\n"
          "Environment:\n"
          "  KYBERNATE_RUNTIME_DELEGATE  runtime to delegate to (default: runc on PATH)\n"
          "\n"
          "Options handled here (only as the sole argument):\n"
          "  --help       show this help\n"
          "  --version    show this version and the delegate's\n"
          "\n"
          "Status: restore on create (kybernate.io/restore-from) is not implemented yet.\n",
          program);
}

static const char *delegate(void) {
  const char *d = getenv("KYBERNATE_RUNTIME_DELEGATE");
  return (d != NULL && *d != '\0') ? d : "runc";
}

int main(int argc, char **argv) {
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    usage(stdout);
    return 0;
  }
  if (argc == 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-v") == 0)) {
    kyb_cli_print_version(stdout, program);
    printf("delegate: %s\n", delegate());
    fflush(stdout);
  }
  const char *d = delegate();
  argv[0] = (char *)d;
  execvp(d, argv);
  fprintf(stderr, "%s: cannot run delegate runtime '%s': %s\n", program, d, strerror(errno));
  return 127;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * runc command lines, as containerd's runc shim (and people) write them:
 *
 *     runc [GLOBAL FLAGS] COMMAND [COMMAND FLAGS] ARGS
 *
 * kybernate-runc must understand just enough of them to find the command,
 * the container id and the few values it uses (--root, --log,
 * --log-format, create's --bundle, --pid-file, --console-socket ...), while
 * handing everything else on unchanged.  Parsing follows runc's CLI library
 * (urfave/cli over Go's flag package):
 *
 *   - a flag is written with one or two dashes: -root, --root;
 *   - a value flag takes its value as "--flag value" or "--flag=value";
 *   - a boolean flag is "--flag", "--flag=true" or "--flag=false";
 *   - "--" ends the flags;
 *   - a command's flags may come before or after its arguments (urfave/cli
 *     reorders them); global flags come before the command.
 *
 * Unknown flags are kept verbatim.  An unknown "--flag=value" is one
 * token; an unknown "--flag" without "=" is taken as a boolean (its value,
 * if it had one, would be taken as an argument: runc itself would refuse
 * such a line, so nothing that works is misread).
 *
 * Nothing here allocates copies of the strings: every pointer borrows from
 * the argv given, which must outlive the parsed structures.
 */
#ifndef KYB_RUNTIME_RUNC_ARGS_H
#define KYB_RUNTIME_RUNC_ARGS_H

#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

/* runc's own default --root when run as root. */
#define KYB_RUNC_DEFAULT_ROOT "/run/runc"

/* The global part of a command line. */
typedef struct {
  int argc;
  char *const *argv;      /* borrowed: the whole command line, argv[0] = our name */
  int cmd;                /* index of the command in argv; argc when there is none */
  const char *root;       /* --root, NULL when not given */
  const char *log;        /* --log, NULL when not given */
  const char *log_format; /* --log-format, NULL when not given (runc: "text") */
  bool systemd_cgroup;
  bool debug;
  bool help_or_version; /* -h/--help/-v/--version among the global flags */
} kyb_runc_cmdline;

/* Parses the global flags and finds the command.  Fails (EINVAL) only when
 * a known value flag lacks its value; a line without a command is not an
 * error (cmd == argc). */
int kyb_runc_cmdline_parse(int argc, char *const *argv, kyb_runc_cmdline *out, kyb_error **err);

/* The command ("create", "start", ...) or NULL. */
const char *kyb_runc_command(const kyb_runc_cmdline *c);

/* The global flags exactly as given: argv[1] .. argv[cmd-1]. */
static inline int kyb_runc_nglobal(const kyb_runc_cmdline *c) {
  return c->cmd > 1 ? c->cmd - 1 : 0;
}

/* --root, or runc's default when not given. */
const char *kyb_runc_root(const kyb_runc_cmdline *c);

/* Whether --log-format asks for JSON lines. */
bool kyb_runc_log_is_json(const kyb_runc_cmdline *c);

/* `create` (or `run`-like) arguments. */
typedef struct {
  const char *bundle; /* --bundle/-b, NULL: the working directory */
  const char *pid_file;
  const char *console_socket;
  const char *preserve_fds; /* as given; restore has no such flag */
  bool no_pivot;
  bool no_new_keyring;
  const char *id;
  const char **unknown; /* unknown flags, verbatim, NULL-terminated (heap array) */
  size_t nunknown;
} kyb_runc_create_args;

/* Parses the arguments after "create" (argv[0] is the first one after the
 * command).  Exactly one container id is required. */
int kyb_runc_create_parse(int argc, char *const *argv, kyb_runc_create_args *out, kyb_error **err);
void kyb_runc_create_args_clear(kyb_runc_create_args *a);

/* `start`, `delete`, `state` and the like: a container id and boolean
 * flags (delete's --force).  *force is set when --force/-f is given. */
int kyb_runc_id_parse(int argc, char *const *argv, const char **id, bool *force, kyb_error **err);

/* runc's own rule for container ids: [A-Za-z0-9_+.-]+, not "." or "..",
 * at most 1024 bytes. */
bool kyb_runc_id_valid(const char *id);

/* argv (NULL-terminated, heap array of borrowed strings) of
 *   <delegate> <global flags> restore --detach --bundle B [--pid-file P]
 *   [--console-socket S] [--no-pivot] --no-subreaper --image-path I
 *   --work-path W [unknown create flags] ID
 * --no-new-keyring and --preserve-fds are dropped: restore has neither. */
typedef struct {
  const char *delegate;
  const char *bundle; /* absolute */
  const char *image_path;
  const char *work_path;
  /* the dump's CRIU options (manifest "options"), repeated on restore */
  bool tcp_established;
  bool ext_unix_sk;
  bool file_locks;
} kyb_runc_restore_paths;

int kyb_runc_restore_argv(const kyb_runc_cmdline *g, const kyb_runc_create_args *c,
                          const kyb_runc_restore_paths *p, const char ***out, kyb_error **err);

/* argv of <delegate> <global flags> delete --force ID (heap array). */
int kyb_runc_delete_argv(const kyb_runc_cmdline *g, const char *delegate, const char *id,
                         const char ***out, kyb_error **err);

#endif

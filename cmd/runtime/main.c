/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kybernate-runc: the OCI runtime binary containerd's runc shim calls
 * (runtime option BinaryName).  Every command is handed unchanged to the
 * delegate runtime (runc), the way the shim itself would have run it, except:
 *
 *   create  of an application container whose spec carries
 *           kybernate.io/restore-from: the container is restored from that
 *           checkpoint instead (`runc restore --detach`, lib/runtime/), and
 *           a marker remembers it;
 *   start   of a restored container: success without calling runc (the
 *           restored process already runs);
 *   delete  removes the marker, then passes through.
 *
 * Errors reach containerd through runc's --log file (runc's own format; the
 * shim reports the last "error" line) and stderr.  docs/runtime.md is the
 * user-facing description.
 */
#define KYB_LOG_MODULE "runtime"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/client.h"
#include "ops/nodeconf.h"
#include "ops/resolve.h"
#include "runtime/decide.h"
#include "runtime/delegate.h"
#include "runtime/marker.h"
#include "runtime/report.h"
#include "runtime/restore.h"
#include "runtime/runc_args.h"
#include "runtime/runc_log.h"
#include "util/cleanup.h"
#include "util/cli.h"
#include "util/fs.h"
#include "util/log.h"

static const char *const program = "kybernate-runc";

static void usage(FILE *out) {
  fprintf(out,
          "Usage: %s [RUNC GLOBAL OPTIONS] COMMAND [ARGS...]\n"
          "\n"
          "Kybernate's OCI runtime wrapper, named as BinaryName of containerd's runc shim.\n"
          "Every command is passed unchanged to the delegate runtime, except `create` of a\n"
          "container annotated kybernate.io/restore-from, which restores the checkpoint\n"
          "(runc restore --detach) instead, and the `start` that follows it.\n"
          "\n"
          "Annotations (OCI spec of the container):\n"
          "  kybernate.io/restore-from      REF, or NAME=REF,NAME=REF by container name\n"
          "  kybernate.io/restore-fallback  cold: a failed restore creates the container\n"
          "                                 normally; none (default): the create fails\n"
          "\n"
          "Environment:\n"
          "  KYBERNATE_RUNTIME_DELEGATE   runtime to delegate to (default: runtime.delegate\n"
          "                               of the node config, else runc on PATH)\n"
          "  KYBERNATE_CONFIG             node config (default %s)\n"
          "  KYBERNATE_RUNTIME_STATE_DIR  restore markers (default %s)\n"
          "  KYBERNATE_AGENT_SOCKET       the node agent (default: agentSocket of the node\n"
          "                               config): remote images, restore outcomes\n"
          "  KYBERNATE_LOG_LEVEL          level of our lines in runc's --log (default warn)\n"
          "\n"
          "Options handled here (only as the sole argument):\n"
          "  --help       show this help\n"
          "  --version    show this version and the delegate's\n",
          program, KYB_NODECONF_DEFAULT_PATH, KYB_RT_STATE_DIR_DEFAULT);
}

/* What one invocation knows: the command line and the node config, which
 * is loaded only when needed (a pass-through with $KYBERNATE_RUNTIME_DELEGATE
 * set never reads it). */
typedef struct {
  int argc;
  char **argv;
  kyb_runc_cmdline g;
  kyb_nodeconf conf;
  bool conf_loaded;
} rt_ctx;

static int load_conf(rt_ctx *c, kyb_error **err) {
  if (c->conf_loaded)
    return 0;
  if (kyb_nodeconf_load(NULL, &c->conf, err) < 0)
    return kyb_error_wrap(err, "node configuration");
  c->conf_loaded = true;
  return 0;
}

static int get_delegate(rt_ctx *c, const char **out, kyb_error **err) {
  const char *env = getenv(KYB_RT_DELEGATE_ENV);
  if ((env == NULL || *env == '\0') && load_conf(c, err) < 0)
    return -1;
  *out = kyb_rt_delegate(c->conf_loaded ? &c->conf : NULL);
  return 0;
}

/* Our lines go where runc's go: the --log file, in runc's format, so the
 * shim shows them; to stderr when there is no --log. */
static void setup_logging(const kyb_runc_cmdline *g) {
  int fd = 2;
  if (g->log != NULL) {
    int lfd = open(g->log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
    if (lfd >= 0)
      fd = lfd; /* kept open for the process's life; O_CLOEXEC keeps it from runc */
  }
  kyb_log_format fmt = kyb_runc_log_is_json(g) ? KYB_LOG_JSON : KYB_LOG_TEXT;
  kyb_log_setup(program, KYB_LOG_WARN, fmt, fd);
  cleanup_error kyb_error *err = NULL;
  (void)kyb_log_setup_from_env(&err);
  kyb_log_setup(program, kyb_log_get_level(), fmt, fd); /* the format is runc's */
}

/* A message for containerd: a runc-format line "kybernate-runc: <msg>" in
 * --log (level "error" or "warning"; the shim quotes the last error line)
 * and "kybernate-runc: <level>: <msg>" on stderr. */
static void tell(const kyb_runc_cmdline *g, const char *level, const char *msg) {
  if (g->log != NULL) {
    cleanup_error kyb_error *err = NULL;
    cleanup_free char *line = NULL;
    if (asprintf(&line, "%s: %s", program, msg) < 0)
      line = NULL;
    if (kyb_runc_log_append(g->log, kyb_runc_log_is_json(g), level, line ? line : msg, &err) < 0)
      fprintf(stderr, "%s: cannot write the runtime log: %s\n", program, kyb_error_message(err));
  }
  fprintf(stderr, "%s: %s: %s\n", program, level, msg);
}

static int fail(const kyb_runc_cmdline *g, kyb_error *err) {
  tell(g, "error", kyb_error_message(err));
  return 1;
}

/* Replaces this process with the delegate, argv unchanged but argv[0]. */
static int pass_through(rt_ctx *c) {
  const char *d = NULL;
  cleanup_error kyb_error *err = NULL;
  if (get_delegate(c, &d, &err) < 0)
    return fail(&c->g, err);
  c->argv[0] = (char *)d;
  execvp(d, c->argv);
  kyb_error_errno(&err, "cannot run delegate runtime '%s'", d);
  fail(&c->g, err);
  return 127;
}

static int cmd_start(rt_ctx *c) {
  const char *id = NULL;
  cleanup_error kyb_error *err = NULL;
  if (kyb_runc_id_parse(c->argc - c->g.cmd - 1, c->argv + c->g.cmd + 1, &id, NULL, &err) < 0)
    return pass_through(c); /* runc says what is wrong with the line */
  bool restored = false;
  if (kyb_rt_marker_check(kyb_rt_state_dir(), kyb_runc_root(&c->g), id, &restored, &err) < 0)
    log_warn_chain(err, "start %s: cannot read the restore marker", id);
  if (!restored)
    return pass_through(c);
  log_info("start %s: restored container, already running", id);
  return 0;
}

static int cmd_delete(rt_ctx *c) {
  const char *id = NULL;
  cleanup_error kyb_error *err = NULL;
  if (kyb_runc_id_parse(c->argc - c->g.cmd - 1, c->argv + c->g.cmd + 1, &id, NULL, &err) == 0 &&
      kyb_rt_marker_remove(kyb_rt_state_dir(), kyb_runc_root(&c->g), id, &err) < 0)
    log_warn_chain(err, "delete %s: restore marker", id);
  return pass_through(c);
}

/* The bundle as an absolute path (runc's default is the working dir). */
static char *absolute_bundle(const char *bundle) {
  char cwd[PATH_MAX];
  if (bundle != NULL && bundle[0] == '/')
    return strdup(bundle);
  if (getcwd(cwd, sizeof(cwd)) == NULL)
    return NULL;
  return bundle != NULL && *bundle != '\0' ? kyb_path_join(cwd, bundle) : strdup(cwd);
}

/* The agent's socket for a restore outcome: $KYBERNATE_AGENT_SOCKET, else
 * the node config's agentSocket (a config that cannot be read: none). */
static const char *report_socket(rt_ctx *c) {
  cleanup_error kyb_error *err = NULL;
  if (getenv(KYB_AGENT_SOCKET_ENV) == NULL && load_conf(c, &err) < 0)
    log_debug("no agent socket for the restore outcome: %s", kyb_error_message(err));
  return kyb_resolve_agent_socket(c->conf_loaded ? &c->conf : NULL);
}

/* A restore that cannot happen: with kybernate.io/restore-fallback: cold
 * (and a rootfs that is not half-written) the container is created
 * normally, and the agent is told so; else the create fails. */
static int restore_failed(rt_ctx *c, kyb_rt_fallback fallback, bool rootfs_partial,
                          const json_t *annotations, const char *ref, kyb_error *cause) {
  cleanup_error kyb_error *err = cause;
  if (fallback != KYB_RT_FALLBACK_COLD)
    return fail(&c->g, err);
  if (rootfs_partial) {
    kyb_error_wrap(&err, "no cold fallback: the rootfs is half-restored");
    return fail(&c->g, err);
  }
  cleanup_free char *msg = NULL;
  if (asprintf(&msg, "restore failed, creating the container normally (%s: cold): %s",
               KYB_ANN_RESTORE_FALLBACK, kyb_error_message(err)) < 0)
    msg = NULL;
  tell(&c->g, "warning", msg ? msg : kyb_error_message(err));
  kyb_rt_report_outcome(report_socket(c), annotations, true, kyb_error_message(err), ref);
  return pass_through(c);
}

static int cmd_create(rt_ctx *c) {
  kyb_runc_create_args a = {0};
  cleanup_error kyb_error *err = NULL;
  if (kyb_runc_create_parse(c->argc - c->g.cmd - 1, c->argv + c->g.cmd + 1, &a, &err) < 0)
    return pass_through(c); /* runc reports the bad line itself */
  const char *root = kyb_runc_root(&c->g);
  /* A marker left by an earlier container of this id is stale now. */
  if (kyb_rt_marker_remove(kyb_rt_state_dir(), root, a.id, &err) < 0)
    log_warn_chain(err, "create %s: stale restore marker", a.id);
  kyb_error_clear(&err);

  cleanup_free char *bundle = absolute_bundle(a.bundle);
  cleanup_json json_t *spec = NULL;
  if (bundle == NULL || kyb_rt_load_spec(bundle, &spec, &err) < 0) {
    log_debug("create %s: no readable spec, passing through", a.id);
    kyb_runc_create_args_clear(&a);
    return pass_through(c); /* runc reports a missing or broken spec itself */
  }
  kyb_rt_decision d = {0};
  if (kyb_rt_decide(kyb_rt_spec_annotations(spec), &d, &err) < 0) {
    kyb_error_wrap(&err, "restore container %s", a.id);
    kyb_rt_fallback fb = d.fallback;
    kyb_rt_decision_clear(&d);
    kyb_runc_create_args_clear(&a);
    return restore_failed(c, fb, false, kyb_rt_spec_annotations(spec), NULL, steal_ptr(err));
  }
  if (d.action != KYB_RT_RESTORE) {
    log_debug("create %s: %s", a.id, d.reason);
    kyb_runc_create_args_clear(&a);
    return pass_through(c);
  }

  const char *delegate = NULL;
  kyb_rt_restore_result res = {0};
  int r = get_delegate(c, &delegate, &err);
  if (r == 0)
    r = load_conf(c, &err);
  if (r == 0) {
    kyb_rt_restore_req req = {.global = &c->g,
                              .create = &a,
                              .conf = &c->conf,
                              .delegate = delegate,
                              .bundle = bundle,
                              .spec = spec,
                              .ref = d.ref,
                              .state_dir = kyb_rt_state_dir()};
    r = kyb_rt_restore(&req, &res, &err);
  } else {
    kyb_error_wrap(&err, "restore container %s from checkpoint \"%s\"", a.id, d.ref);
  }
  if (r == 0)
    log_info(
        "create %s: restored from %s (%s) in %llu ms: resolve+verify %llu ms, rootfs %llu "
        "ms, runc restore %llu ms, GPU restore %.0f ms (%zu CUDA process(es), %zu GPU(s) "
        "remapped)",
        a.id, d.ref, res.image_dir,
        (unsigned long long)(res.resolve_ms + res.rootfs_ms + res.criu_ms + (uint64_t)res.gpu_ms),
        (unsigned long long)res.resolve_ms, (unsigned long long)res.rootfs_ms,
        (unsigned long long)res.criu_ms, res.gpu_ms, res.gpu_procs, res.gpu_remapped);
  bool partial = res.rootfs_partial;
  kyb_rt_restore_result_clear(&res);
  kyb_runc_create_args_clear(&a);
  if (r == 0)
    kyb_rt_report_outcome(report_socket(c), kyb_rt_spec_annotations(spec), false, NULL, d.ref);
  else
    r = restore_failed(c, d.fallback, partial, kyb_rt_spec_annotations(spec), d.ref,
                       steal_ptr(err));
  kyb_rt_decision_clear(&d);
  return r;
}

int main(int argc, char **argv) {
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    usage(stdout);
    return 0;
  }
  rt_ctx c = {.argc = argc, .argv = argv};
  cleanup_error kyb_error *err = NULL;
  if (kyb_runc_cmdline_parse(argc, argv, &c.g, &err) < 0)
    c.g.cmd = argc; /* not ours to judge: runc reports it */
  setup_logging(&c.g);
  if (argc == 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-v") == 0)) {
    const char *d = NULL;
    kyb_cli_print_version(stdout, program);
    if (get_delegate(&c, &d, &err) == 0)
      printf("delegate: %s\n", d);
    fflush(stdout);
  }
  const char *cmd = c.g.help_or_version ? NULL : kyb_runc_command(&c.g);
  int r;
  if (cmd != NULL && strcmp(cmd, "create") == 0)
    r = cmd_create(&c);
  else if (cmd != NULL && strcmp(cmd, "start") == 0)
    r = cmd_start(&c);
  else if (cmd != NULL && strcmp(cmd, "delete") == 0)
    r = cmd_delete(&c);
  else
    r = pass_through(&c);
  if (c.conf_loaded)
    kyb_nodeconf_clear(&c.conf);
  return r;
}

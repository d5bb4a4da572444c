/* SPDX-License-Identifier: Apache-2.0 */
/*
 * runc command lines (runc_args.h): a small Go-flag-compatible scanner, the
 * global/create/id parsers on top of it, and the argv builders for the
 * commands kybernate-runc runs itself (restore, delete --force).
 */
#include "runtime/runc_args.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *name;
  const char *alias; /* one-letter form, or NULL */
  bool value;        /* takes a value (else boolean) */
} flag_def;

enum { MATCH_ERROR = -2, MATCH_UNKNOWN = -1 };

/* A flag token: "-x..." or "--x...", but neither "-" nor "--". */
static bool is_flag(const char *s) {
  return s[0] == '-' && s[1] != '\0' && !(s[1] == '-' && s[2] == '\0');
}

/* Go's strconv.ParseBool. */
static int parse_bool(const char *s, bool *out) {
  static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
  static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    if (strcmp(s, t[i]) == 0) {
      *out = true;
      return 0;
    }
    if (strcmp(s, f[i]) == 0) {
      *out = false;
      return 0;
    }
  }
  return -1;
}

/* Matches argv[i] (a flag token) against defs.  Returns the index of the
 * definition, MATCH_UNKNOWN, or MATCH_ERROR (err filled).  *val receives the
 * value ("=value", the next argument for a value flag, or NULL for a plain
 * boolean); *used how many arguments the flag took (1 or 2). */
static int match_flag(const flag_def *defs, size_t ndefs, int argc, char *const *argv, int i,
                      const char **val, int *used, kyb_error **err) {
  const char *tok = argv[i];
  const char *name = tok + (tok[1] == '-' ? 2 : 1);
  const char *eq = strchr(name, '=');
  size_t len = eq ? (size_t)(eq - name) : strlen(name);
  *val = eq ? eq + 1 : NULL;
  *used = 1;
  for (size_t d = 0; d < ndefs; d++) {
    bool hit = (strlen(defs[d].name) == len && strncmp(defs[d].name, name, len) == 0) ||
               (defs[d].alias != NULL && strlen(defs[d].alias) == len &&
                strncmp(defs[d].alias, name, len) == 0);
    if (!hit)
      continue;
    if (defs[d].value && eq == NULL) {
      if (i + 1 >= argc)
        return kyb_error_set(err, EINVAL, "flag %s needs a value", tok), MATCH_ERROR;
      *val = argv[i + 1];
      *used = 2;
    }
    return (int)d;
  }
  return MATCH_UNKNOWN;
}

/* A boolean flag's state from its value (NULL = plain flag = true). */
static int bool_value(const char *tok, const char *val, bool *out, kyb_error **err) {
  if (val == NULL) {
    *out = true;
    return 0;
  }
  if (parse_bool(val, out) < 0)
    return kyb_error_set(err, EINVAL, "flag %s: \"%s\" is not a boolean", tok, val);
  return 0;
}

/* ---- global flags -------------------------------------------------------- */

enum { G_ROOT, G_LOG, G_LOG_FORMAT, G_CRIU, G_ROOTLESS, G_DEBUG, G_SYSTEMD, G_HELP, G_VERSION };
static const flag_def global_defs[] = {
    [G_ROOT] = {"root", NULL, true},
    [G_LOG] = {"log", NULL, true},
    [G_LOG_FORMAT] = {"log-format", NULL, true},
    [G_CRIU] = {"criu", NULL, true},
    [G_ROOTLESS] = {"rootless", NULL, true},
    [G_DEBUG] = {"debug", NULL, false},
    [G_SYSTEMD] = {"systemd-cgroup", NULL, false},
    [G_HELP] = {"help", "h", false},
    [G_VERSION] = {"version", "v", false},
};

int kyb_runc_cmdline_parse(int argc, char *const *argv, kyb_runc_cmdline *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  out->argc = argc;
  out->argv = argv;
  out->cmd = argc;
  int i = 1;
  while (i < argc) {
    const char *tok = argv[i];
    if (strcmp(tok, "--") == 0) {
      /* The command follows; "--" itself stays among the global flags. */
      out->cmd = i + 1 < argc ? i + 1 : argc;
      return 0;
    }
    if (!is_flag(tok)) {
      out->cmd = i;
      return 0;
    }
    const char *val = NULL;
    int used = 1;
    int d = match_flag(global_defs, sizeof(global_defs) / sizeof(global_defs[0]), argc, argv, i,
                       &val, &used, err);
    if (d == MATCH_ERROR)
      return -1;
    bool b = false;
    switch (d) {
    case G_ROOT:
      out->root = val;
      break;
    case G_LOG:
      out->log = val;
      break;
    case G_LOG_FORMAT:
      out->log_format = val;
      break;
    case G_DEBUG:
    case G_SYSTEMD:
    case G_HELP:
    case G_VERSION:
      if (bool_value(tok, val, &b, err) < 0)
        return -1;
      if (d == G_DEBUG)
        out->debug = b;
      else if (d == G_SYSTEMD)
        out->systemd_cgroup = b;
      else
        out->help_or_version = out->help_or_version || b;
      break;
    default: /* --criu, --rootless, unknown: passed on as they are */
      break;
    }
    i += used;
  }
  return 0;
}

const char *kyb_runc_command(const kyb_runc_cmdline *c) {
  return c->cmd < c->argc ? c->argv[c->cmd] : NULL;
}

const char *kyb_runc_root(const kyb_runc_cmdline *c) {
  return c->root != NULL && *c->root != '\0' ? c->root : KYB_RUNC_DEFAULT_ROOT;
}

bool kyb_runc_log_is_json(const kyb_runc_cmdline *c) {
  return c->log_format != NULL && strcmp(c->log_format, "json") == 0;
}

/* ---- create -------------------------------------------------------------- */

enum { C_BUNDLE, C_CONSOLE, C_PIDFILE, C_PRESERVE, C_NOPIVOT, C_NOKEYRING };
static const flag_def create_defs[] = {
    [C_BUNDLE] = {"bundle", "b", true},      [C_CONSOLE] = {"console-socket", NULL, true},
    [C_PIDFILE] = {"pid-file", NULL, true},  [C_PRESERVE] = {"preserve-fds", NULL, true},
    [C_NOPIVOT] = {"no-pivot", NULL, false}, [C_NOKEYRING] = {"no-new-keyring", NULL, false},
};

void kyb_runc_create_args_clear(kyb_runc_create_args *a) {
  if (a == NULL)
    return;
  free((void *)a->unknown);
  memset(a, 0, sizeof(*a));
}

/* One create flag into *a; returns -1 on a bad value. */
static int create_set(kyb_runc_create_args *a, int d, const char *tok, const char *val,
                      kyb_error **err) {
  switch (d) {
  case C_BUNDLE:
    a->bundle = val;
    return 0;
  case C_CONSOLE:
    a->console_socket = val;
    return 0;
  case C_PIDFILE:
    a->pid_file = val;
    return 0;
  case C_PRESERVE:
    a->preserve_fds = val;
    return 0;
  case C_NOPIVOT:
    return bool_value(tok, val, &a->no_pivot, err);
  case C_NOKEYRING:
    return bool_value(tok, val, &a->no_new_keyring, err);
  default:
    return kyb_error_set(err, EINVAL, "flag %s: internal error", tok);
  }
}

int kyb_runc_create_parse(int argc, char *const *argv, kyb_runc_create_args *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  out->unknown = calloc((size_t)(argc > 0 ? argc : 0) + 1, sizeof(char *));
  if (out->unknown == NULL)
    return kyb_error_set(err, ENOMEM, "create arguments");
  size_t npos = 0;
  bool flags_done = false;
  for (int i = 0; i < argc;) {
    const char *tok = argv[i];
    if (!flags_done && strcmp(tok, "--") == 0) {
      flags_done = true;
      i++;
      continue;
    }
    if (flags_done || !is_flag(tok)) {
      if (npos++ == 0)
        out->id = tok;
      i++;
      continue;
    }
    const char *val = NULL;
    int used = 1;
    int d = match_flag(create_defs, sizeof(create_defs) / sizeof(create_defs[0]), argc, argv, i,
                       &val, &used, err);
    if (d == MATCH_ERROR)
      goto fail;
    if (d == MATCH_UNKNOWN)
      out->unknown[out->nunknown++] = tok;
    else if (create_set(out, d, tok, val, err) < 0)
      goto fail;
    i += used;
  }
  if (npos != 1) {
    kyb_error_set(err, EINVAL, "create expects exactly one container id, got %zu arguments", npos);
    goto fail;
  }
  return 0;
fail:
  kyb_runc_create_args_clear(out);
  return -1;
}

/* ---- start / delete / state ---------------------------------------------- */

static const flag_def id_defs[] = {{"force", "f", false}};

int kyb_runc_id_parse(int argc, char *const *argv, const char **id, bool *force, kyb_error **err) {
  *id = NULL;
  if (force != NULL)
    *force = false;
  size_t npos = 0;
  bool flags_done = false;
  for (int i = 0; i < argc;) {
    const char *tok = argv[i];
    if (!flags_done && strcmp(tok, "--") == 0) {
      flags_done = true;
      i++;
      continue;
    }
    if (flags_done || !is_flag(tok)) {
      if (npos++ == 0)
        *id = tok;
      i++;
      continue;
    }
    const char *val = NULL;
    int used = 1;
    int d = match_flag(id_defs, 1, argc, argv, i, &val, &used, err);
    if (d == MATCH_ERROR)
      return -1;
    bool b = false;
    if (d == 0 && bool_value(tok, val, &b, err) < 0)
      return -1;
    if (d == 0 && force != NULL)
      *force = b;
    i += used;
  }
  if (npos != 1) {
    *id = NULL;
    return kyb_error_set(err, EINVAL, "expected exactly one container id, got %zu arguments", npos);
  }
  return 0;
}

bool kyb_runc_id_valid(const char *id) {
  if (id == NULL || *id == '\0' || strlen(id) > 1024 || strcmp(id, ".") == 0 ||
      strcmp(id, "..") == 0)
    return false;
  for (const char *p = id; *p; p++) {
    char c = *p;
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '+' || c == '-' || c == '.';
    if (!ok)
      return false;
  }
  return true;
}

/* ---- argv builders ------------------------------------------------------- */

typedef struct {
  const char **v;
  size_t n, cap;
} argv_buf;

static void push(argv_buf *b, const char *s) {
  if (b->n + 1 < b->cap) /* room for the NULL terminator is kept */
    b->v[b->n++] = s;
}

static int argv_start(argv_buf *b, const kyb_runc_cmdline *g, const char *delegate, size_t extra,
                      kyb_error **err) {
  b->cap = 1 + (size_t)kyb_runc_nglobal(g) + extra + 1;
  b->n = 0;
  b->v = calloc(b->cap, sizeof(char *));
  if (b->v == NULL)
    return kyb_error_set(err, ENOMEM, "runtime command line");
  push(b, delegate);
  for (int i = 1; i < g->cmd; i++)
    push(b, g->argv[i]);
  return 0;
}

int kyb_runc_restore_argv(const kyb_runc_cmdline *g, const kyb_runc_create_args *c,
                          const kyb_runc_restore_paths *p, const char ***out, kyb_error **err) {
  *out = NULL;
  argv_buf b;
  /* restore --detach --bundle B --pid-file P --console-socket S --no-pivot
   * --no-subreaper --image-path I --work-path W unknown... ID */
  if (argv_start(&b, g, p->delegate, 16 + c->nunknown, err) < 0)
    return -1;
  push(&b, "restore");
  push(&b, "--detach");
  push(&b, "--bundle");
  push(&b, p->bundle);
  if (c->pid_file != NULL) {
    push(&b, "--pid-file");
    push(&b, c->pid_file);
  }
  if (c->console_socket != NULL) {
    push(&b, "--console-socket");
    push(&b, c->console_socket);
  }
  if (c->no_pivot)
    push(&b, "--no-pivot");
  /* As the shim's own restore: the shim, a subreaper, adopts the init. */
  push(&b, "--no-subreaper");
  push(&b, "--image-path");
  push(&b, p->image_path);
  push(&b, "--work-path");
  push(&b, p->work_path);
  if (p->tcp_established)
    push(&b, "--tcp-established");
  if (p->ext_unix_sk)
    push(&b, "--ext-unix-sk");
  if (p->file_locks)
    push(&b, "--file-locks");
  for (size_t i = 0; i < c->nunknown; i++)
    push(&b, c->unknown[i]);
  push(&b, c->id);
  *out = b.v;
  return 0;
}

int kyb_runc_delete_argv(const kyb_runc_cmdline *g, const char *delegate, const char *id,
                         const char ***out, kyb_error **err) {
  *out = NULL;
  argv_buf b;
  if (argv_start(&b, g, delegate, 3, err) < 0)
    return -1;
  push(&b, "delete");
  push(&b, "--force");
  push(&b, id);
  *out = b.v;
  return 0;
}

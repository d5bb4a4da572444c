/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kube_probe: a TEST-ONLY command line over lib/kube, so that
 * tests/integration/test_kube_client.py can drive the Kubernetes client
 * against the API server double.  Not a product binary; never installed.
 *
 *   kube_probe [connection] [--res [GROUP/]VERSION/PLURAL] [--cluster-scoped] CMD ARGS
 *
 * connection (one of): --server URL [--token T] [--ca FILE] [--unix-socket PATH]
 *                      --kubeconfig PATH [--context NAME]
 *                      --in-cluster SA_DIR       (with KUBERNETES_SERVICE_HOST/PORT set)
 *                      nothing: kyb_kube_config_load's auto order
 *
 * Objects go out as JSON on stdout, one per line; errors as
 * "kube_probe: error: <chain>" on stderr plus a last stdout line
 * "ERROR status=<code> reason=<reason> errno=<errno>", exit 1.  Streams
 * (watch, informer, elect) print one line per happening and flush it.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kube/client.h"
#include "kube/config.h"
#include "kube/events.h"
#include "kube/lease.h"
#include "kube/watch.h"
#include "util/cleanup.h"
#include "util/cli.h"

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) {
  (void)sig;
  stop_flag = 1;
}

typedef struct {
  const char *server, *token, *ca, *unix_socket, *kubeconfig, *context, *in_cluster;
  kyb_kube_resource res;
  char *res_buf;
  /* command options */
  const char *selector, *field, *rv, *propagation, *uid;
  long limit, count, timeout, max_failures, duration, deadline_ms, retry_ms, for_ms, repeat;
  bool all, status, release;
} probe;

static int usage(void) {
  fprintf(stderr, "usage: kube_probe [--server URL --token T --ca F --unix-socket P | "
                  "--kubeconfig F --context C | --in-cluster DIR] [--res G/V/P] CMD ...\n"
                  "commands: config | get NS NAME | list NS | create NS FILE | update FILE |\n"
                  "  patch NS NAME JSON | delete NS NAME | increment NS NAME FIELD |\n"
                  "  watch NS | informer NS | event NS NAME TYPE REASON MESSAGE |\n"
                  "  elect NS LEASE IDENTITY\n");
  return 2;
}

static void print_json(const json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
  printf("%s\n", s ? s : "null");
  free(s);
  fflush(stdout);
}

static int report(kyb_error *err) {
  char reason[64];
  kyb_cli_report("kube_probe", err);
  printf("ERROR status=%d reason=%s errno=%d\n", kyb_kube_status_of(err),
         kyb_kube_reason_of(err, reason, sizeof(reason)), kyb_error_code(err));
  fflush(stdout);
  return 1;
}

/* "[group/]version/plural" */
static int parse_res(probe *p, const char *s) {
  free(p->res_buf);
  p->res_buf = strdup(s);
  char *a = p->res_buf, *b = strchr(a, '/'), *c = b ? strchr(b + 1, '/') : NULL;
  if (b == NULL)
    return -1;
  *b = '\0';
  if (c != NULL) {
    *c = '\0';
    p->res.group = a;
    p->res.version = b + 1;
    p->res.plural = c + 1;
  } else {
    p->res.group = "";
    p->res.version = a;
    p->res.plural = b + 1;
  }
  return 0;
}

static const char *meta(const json_t *o, const char *f) {
  const char *v = json_string_value(json_object_get(json_object_get(o, "metadata"), f));
  return v ? v : "";
}

static json_t *load_json_arg(const char *arg, kyb_error **err) {
  json_error_t jerr;
  json_t *j = strcmp(arg, "-") == 0 ? json_loadf(stdin, 0, &jerr)
              : arg[0] == '{'       ? json_loads(arg, 0, &jerr)
                                    : json_load_file(arg, 0, &jerr);
  if (j == NULL)
    kyb_error_set(err, EINVAL, "%s: %s", arg, jerr.text);
  return j;
}

static int connect_client(const probe *p, kyb_kube_client **c, kyb_error **err) {
  kyb_kube_config cfg;
  int r;
  if (p->server != NULL)
    r = kyb_kube_config_explicit(p->server, p->token, p->ca, &cfg, err);
  else if (p->in_cluster != NULL)
    r = kyb_kube_config_in_cluster(p->in_cluster, &cfg, err);
  else
    r = kyb_kube_config_load(p->kubeconfig, p->context, &cfg, err);
  if (r < 0)
    return -1;
  if (p->unix_socket != NULL)
    cfg.unix_socket = strdup(p->unix_socket);
  r = kyb_kube_client_new(&cfg, NULL, c, err);
  kyb_kube_config_clear(&cfg);
  if (r == 0)
    kyb_kube_client_set_cancel(*c, -1, &stop_flag);
  return r;
}

static int cmd_config(kyb_kube_client *c) {
  const kyb_kube_config *k = kyb_kube_client_config(c);
  cleanup_json json_t *j =
      json_pack("{s:s, s:s, s:s?, s:b, s:b, s:b, s:b, s:b, s:s?, s:s?}", "server", k->server,
                "namespace", k->ns, "source", k->source, "token", k->token != NULL, "token_file",
                k->token_file != NULL, "ca", k->ca_file != NULL || k->ca_data != NULL,
                "client_cert", k->cert_file != NULL || k->cert_data != NULL, "insecure",
                k->insecure, "ca_file", k->ca_file, "token_file_path", k->token_file);
  print_json(j);
  return 0;
}

/* increment: status.<field> += 1, through kyb_kube_modify. */
static int add_one(void *ud, json_t *obj, kyb_error **err) {
  const char *field = ud;
  json_t *st = json_object_get(obj, "status");
  if (!json_is_object(st)) {
    st = json_object();
    if (json_object_set_new(obj, "status", st) < 0)
      return kyb_error_set(err, ENOMEM, "status");
  }
  json_int_t v = json_integer_value(json_object_get(st, field));
  return json_object_set_new(st, field, json_integer(v + 1)) < 0
             ? kyb_error_set(err, ENOMEM, "status")
             : 0;
}

typedef struct {
  long want, seen;
} counter;

static int print_event(void *ud, kyb_kube_event_type t, json_t *obj, kyb_error **err) {
  (void)err;
  counter *n = ud;
  printf("EVENT %s %s %s\n", kyb_kube_event_type_name(t), meta(obj, "name"),
         meta(obj, "resourceVersion"));
  fflush(stdout);
  n->seen++;
  return n->want > 0 && n->seen >= n->want ? 1 : 0;
}

static int print_sync(void *ud, json_t *items, const char *rv, kyb_error **err) {
  (void)ud;
  (void)err;
  printf("SYNC %zu %s", json_array_size(items), rv);
  size_t i;
  json_t *it;
  json_array_foreach(items, i, it) printf(" %s", meta(it, "name"));
  printf("\n");
  fflush(stdout);
  return 0;
}

static int cmd_watch(kyb_kube_client *c, probe *p, const char *ns, kyb_error **err) {
  counter n = {.want = p->count};
  kyb_kube_watch_opts wo = {.label_selector = p->selector,
                            .field_selector = p->field,
                            .resource_version = p->rv,
                            .timeout_seconds = p->timeout,
                            .on_event = print_event,
                            .ud = &n};
  cleanup_free char *last = NULL;
  int r = kyb_kube_watch(c, &p->res, ns, &wo, &last, err);
  printf("END rc=%d rv=%s\n", r, last ? last : "");
  fflush(stdout);
  return r < 0 ? -1 : 0;
}

static int cmd_informer(kyb_kube_client *c, probe *p, const char *ns, kyb_error **err) {
  counter n = {.want = p->count};
  kyb_kube_informer_opts io = {.res = &p->res,
                               .ns = ns,
                               .label_selector = p->selector,
                               .field_selector = p->field,
                               .page_limit = p->limit,
                               .watch_timeout_s = p->timeout,
                               .backoff_ms = 50,
                               .max_backoff_ms = 500,
                               .max_failures = (int)p->max_failures,
                               .on_sync = print_sync,
                               .on_event = print_event,
                               .ud = &n};
  int r = kyb_kube_informer_run(c, &io, err);
  printf("END rc=%d\n", r);
  fflush(stdout);
  return r;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The leader-election loop a controller runs: try every retry period, say
 * when leadership changes, release on the way out (with a fresh client:
 * the loop's is cancelled by the signal). */
static int cmd_elect(kyb_kube_client *c, probe *p, const char *ns, const char *lease,
                     const char *id, kyb_error **err) {
  kyb_kube_elector_opts eo = {.ns = ns,
                              .name = lease,
                              .identity = id,
                              .lease_duration_s = p->duration,
                              .renew_deadline_ms = p->deadline_ms};
  kyb_kube_elector *el = NULL;
  if (kyb_kube_elector_new(&eo, &el, err) < 0)
    return -1;
  int was = -1;
  int64_t end = p->for_ms > 0 ? mono_ms() + p->for_ms : INT64_MAX;
  while (!stop_flag && mono_ms() < end) {
    bool leader = false;
    cleanup_error kyb_error *e = NULL;
    if (kyb_kube_elector_try(c, el, &leader, &e) < 0 && !stop_flag)
      fprintf(stderr, "kube_probe: elect: %s\n", kyb_error_message(e));
    int now = kyb_kube_elector_is_leader(el) ? 1 : 0;
    if (now != was) {
      if (now)
        printf("LEADER %s transitions=%ld\n", id, kyb_kube_elector_transitions(el));
      else
        printf("FOLLOWER %s holder=%s\n", id, kyb_kube_elector_holder(el));
      fflush(stdout);
      was = now;
    }
    sleep_ms(p->retry_ms);
  }
  int r = 0;
  if (p->release && kyb_kube_elector_is_leader(el)) {
    kyb_kube_client *c2 = NULL;
    if (connect_client(p, &c2, err) == 0) {
      kyb_kube_client_set_cancel(c2, -1, NULL);
      r = kyb_kube_elector_release(c2, el, err);
      if (r == 0)
        printf("RELEASED %s\n", id);
    } else {
      r = -1;
    }
    kyb_kube_client_free(c2);
  }
  printf("END %s\n", id);
  fflush(stdout);
  kyb_kube_elector_free(el);
  return r;
}

static int cmd_event(kyb_kube_client *c, probe *p, char **a, kyb_error **err) {
  cleanup_json json_t *obj = NULL;
  if (kyb_kube_get(c, &p->res, a[0], a[1], &obj, err) < 0)
    return -1;
  /* Items and custom objects may lack these; the recorder needs them. */
  char av[300];
  snprintf(av, sizeof(av), "%s%s%s", p->res.group[0] ? p->res.group : "",
           p->res.group[0] ? "/" : "", p->res.version);
  if (json_object_get(obj, "apiVersion") == NULL)
    json_object_set_new(obj, "apiVersion", json_string(av));
  kyb_kube_recorder_opts ro = {.component = "kube-probe", .instance = "probe-host"};
  kyb_kube_recorder *rec = NULL;
  if (kyb_kube_recorder_new(&ro, &rec, err) < 0)
    return -1;
  int r = 0;
  for (long i = 0; i < (p->repeat > 0 ? p->repeat : 1) && r == 0; i++)
    r = kyb_kube_event(c, rec, obj, a[2], a[3], err, "%s", a[4]);
  kyb_kube_recorder_free(rec);
  return r;
}

static int run(kyb_kube_client *c, probe *p, const char *cmd, char **a, int n, kyb_error **err) {
  cleanup_json json_t *out = NULL;
#define NEED(k)                                                                                    \
  do {                                                                                             \
    if (n < (k))                                                                                   \
      return kyb_error_set(err, EINVAL, "%s needs %d arguments", cmd, k);                          \
  } while (0)
  if (strcmp(cmd, "config") == 0)
    return cmd_config(c);
  if (strcmp(cmd, "get") == 0) {
    NEED(2);
    if (kyb_kube_get(c, &p->res, a[0], a[1], &out, err) < 0)
      return -1;
  } else if (strcmp(cmd, "list") == 0) {
    NEED(1);
    kyb_kube_list_opts lo = {.label_selector = p->selector,
                             .field_selector = p->field,
                             .limit = p->limit,
                             .resource_version = p->rv};
    if (p->all) {
      json_t *items = NULL;
      cleanup_free char *rv = NULL;
      if (kyb_kube_list_all(c, &p->res, a[0], &lo, &items, &rv, err) < 0)
        return -1;
      out = json_pack("{s:o, s:s}", "items", items, "resourceVersion", rv);
    } else if (kyb_kube_list(c, &p->res, a[0], &lo, &out, err) < 0) {
      return -1;
    }
  } else if (strcmp(cmd, "create") == 0) {
    NEED(2);
    cleanup_json json_t *obj = load_json_arg(a[1], err);
    if (obj == NULL || kyb_kube_create(c, &p->res, a[0], obj, &out, err) < 0)
      return -1;
  } else if (strcmp(cmd, "update") == 0) {
    NEED(1);
    cleanup_json json_t *obj = load_json_arg(a[0], err);
    if (obj == NULL || kyb_kube_update(c, &p->res, obj, p->status ? "status" : NULL, &out, err) < 0)
      return -1;
  } else if (strcmp(cmd, "patch") == 0) {
    NEED(3);
    cleanup_json json_t *patch = load_json_arg(a[2], err);
    if (patch == NULL ||
        kyb_kube_patch(c, &p->res, a[0], a[1], patch, p->status ? "status" : NULL, &out, err) < 0)
      return -1;
  } else if (strcmp(cmd, "delete") == 0) {
    NEED(2);
    kyb_kube_delete_opts d = {.propagation_policy = p->propagation,
                              .precondition_uid = p->uid,
                              .grace_period_seconds = -1};
    if (kyb_kube_delete(c, &p->res, a[0], a[1], &d, &out, err) < 0)
      return -1;
  } else if (strcmp(cmd, "increment") == 0) {
    NEED(3);
    int attempts = 0;
    json_t *obj = NULL;
    kyb_kube_retry rt = {.attempts = (int)(p->count > 0 ? p->count : 0)};
    if (kyb_kube_modify(c, &p->res, a[0], a[1], p->status ? "status" : NULL, add_one, a[2], &rt,
                        &obj, &attempts, err) < 0) {
      printf("ATTEMPTS %d\n", attempts);
      return -1;
    }
    out = json_pack("{s:i, s:o}", "attempts", attempts, "object", obj);
  } else if (strcmp(cmd, "watch") == 0) {
    NEED(1);
    return cmd_watch(c, p, a[0], err);
  } else if (strcmp(cmd, "informer") == 0) {
    NEED(1);
    return cmd_informer(c, p, a[0], err);
  } else if (strcmp(cmd, "event") == 0) {
    NEED(5);
    return cmd_event(c, p, a, err);
  } else if (strcmp(cmd, "elect") == 0) {
    NEED(3);
    return cmd_elect(c, p, a[0], a[1], a[2], err);
  } else {
    return kyb_error_set(err, EINVAL, "unknown command %s", cmd);
  }
  print_json(out);
  return 0;
}

int main(int argc, char **argv) {
  probe p = {.res = {"", "v1", "pods", true},
             .duration = 15,
             .deadline_ms = 10000,
             .retry_ms = 2000,
             .max_failures = 0};
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  cleanup_error kyb_error *err = NULL;
  if (kyb_cli_setup_logging("kube_probe", KYB_LOG_TEXT, NULL, NULL, &err) < 0)
    return report(err);
  /* Options may come anywhere; everything else is the command and its
   * arguments, in order. */
  char **pos = calloc((size_t)argc + 1, sizeof(*pos));
  int npos = 0;
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strncmp(o, "--", 2) != 0) {
      /* "_" means NULL: for a namespace, the configuration's default. */
      pos[npos++] = strcmp(o, "_") == 0 ? NULL : argv[i];
      continue;
    }
#define STR(name, field)                                                                           \
  if (strcmp(o, name) == 0 && v != NULL) {                                                         \
    p.field = v;                                                                                   \
    i++;                                                                                           \
    continue;                                                                                      \
  }
#define NUM(name, field)                                                                           \
  if (strcmp(o, name) == 0 && v != NULL) {                                                         \
    p.field = strtol(v, NULL, 10);                                                                 \
    i++;                                                                                           \
    continue;                                                                                      \
  }
    STR("--server", server) STR("--token", token) STR("--ca", ca);
    STR("--unix-socket", unix_socket) STR("--kubeconfig", kubeconfig) STR("--context", context);
    STR("--in-cluster", in_cluster) STR("--selector", selector) STR("--field", field);
    STR("--rv", rv) STR("--propagation", propagation) STR("--uid", uid);
    NUM("--limit", limit) NUM("--count", count) NUM("--timeout", timeout);
    NUM("--max-failures", max_failures) NUM("--duration", duration);
    NUM("--deadline-ms", deadline_ms) NUM("--retry-ms", retry_ms) NUM("--for-ms", for_ms);
    NUM("--repeat", repeat);
    if (strcmp(o, "--res") == 0 && v != NULL && parse_res(&p, v) == 0) {
      i++;
      continue;
    }
    if (strcmp(o, "--cluster-scoped") == 0)
      p.res.namespaced = false;
    else if (strcmp(o, "--all") == 0)
      p.all = true;
    else if (strcmp(o, "--status") == 0)
      p.status = true;
    else if (strcmp(o, "--release") == 0)
      p.release = true;
    else
      return usage();
  }
  if (npos == 0 || pos[0] == NULL)
    return usage();
  kyb_kube_client *c = NULL;
  int r = connect_client(&p, &c, &err);
  if (r == 0)
    r = run(c, &p, pos[0], pos + 1, npos - 1, &err);
  kyb_kube_client_free(c);
  free(p.res_buf);
  free(pos);
  return r < 0 ? report(err) : 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kybernate-operator: reconciles Checkpoint and Restore objects, creates
 * CheckpointRequests for the node agents and restore pods (docs/operator.md).
 * This main parses flags, sets up logging and signals, and runs
 * lib/operator.  SIGTERM/SIGINT stop it cleanly: the controller stops, then
 * the leader lease is released.
 */
#define KYB_LOG_MODULE "operator"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "operator/operator.h"
#include "util/cli.h"

static const char *const program = "kybernate-operator";

static void usage(FILE *out) {
  fprintf(out,
          "Usage: %s [OPTIONS]\n"
          "\n"
          "Kybernate operator: reconciles Checkpoint and Restore objects (kybernate.io/v1alpha1),\n"
          "creates CheckpointRequests for the node agents and restore pods.\n"
          "\n"
          "Options:\n"
          "  --kubeconfig PATH             kubeconfig file (default: in-cluster, $KUBECONFIG,\n"
          "                                ~/.kube/config)\n"
          "  --context NAME                kubeconfig context (default: current-context)\n"
          "  --namespace NS                watch only this namespace (default: all)\n"
          "  --leader-elect                run only while holding the leader Lease\n"
          "  --lease-name NAME             the Lease (default kybernate-operator)\n"
          "  --lease-namespace NS          its namespace (default $POD_NAMESPACE, else the\n"
          "                                configuration's namespace)\n"
          "  --identity ID                 this replica's holder identity (default\n"
          "                                $POD_NAME_<random>)\n"
          "  --lease-duration D            how long a lease holds without renewal (default 15s)\n"
          "  --renew-deadline D            a leader that could not renew this long stops (10s)\n"
          "  --retry-period D              how often to try/renew the lease (default 2s)\n"
          "  --metrics-bind-address ADDR   [host]:port for /metrics, /healthz, /readyz\n"
          "                                (default :8080; 0 turns the port off)\n"
          "  --keep-last N                 Checkpoints kept per pod when a Checkpoint does not\n"
          "                                say (spec.retention.keepLast; default 5, 0: all)\n"
          "  --node-lost-after D           a checkpoint request not renewed (or not claimed)\n"
          "                                this long fails its Checkpoint, NodeLost (default 2m)\n"
          "  --resync-period D             look at every unfinished object this often (30s)\n"
          "  --log-level LEVEL             error, warn, info (default), debug, trace\n"
          "  --log-format FORMAT           json (default for daemons) or text\n"
          "  -h, --help                    show this help\n"
          "  -V, --version                 show the version\n"
          "\n"
          "Durations: a number with ms, s, m or h (a bare number is seconds).\n",
          program);
}

/* "15s", "500ms", "2m", "1h", "15" → milliseconds; -1 when malformed. */
static long parse_duration_ms(const char *s) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || errno != 0 || v < 0)
    return -1;
  double mult = 1000;
  if (strcmp(end, "ms") == 0)
    mult = 1;
  else if (strcmp(end, "m") == 0)
    mult = 60000;
  else if (strcmp(end, "h") == 0)
    mult = 3600000;
  else if (strcmp(end, "s") != 0 && *end != '\0')
    return -1;
  double ms = v * mult;
  return ms > 1e12 ? -1 : (long)ms;
}

static int bad(const char *flag, const char *val) {
  fprintf(stderr, "%s: error: %s: bad value \"%s\"\n", program, flag, val);
  return 2;
}

int main(int argc, char **argv) {
  enum {
    O_KUBECONFIG = 256,
    O_CONTEXT,
    O_NAMESPACE,
    O_LEADER,
    O_LEASE_NAME,
    O_LEASE_NS,
    O_IDENTITY,
    O_LEASE_DURATION,
    O_RENEW,
    O_RETRY,
    O_METRICS,
    O_KEEP,
    O_LOST,
    O_RESYNC,
    O_LEVEL,
    O_FORMAT,
  };
  static const struct option opts[] = {
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {"kubeconfig", required_argument, NULL, O_KUBECONFIG},
      {"context", required_argument, NULL, O_CONTEXT},
      {"namespace", required_argument, NULL, O_NAMESPACE},
      {"leader-elect", no_argument, NULL, O_LEADER},
      {"lease-name", required_argument, NULL, O_LEASE_NAME},
      {"lease-namespace", required_argument, NULL, O_LEASE_NS},
      {"identity", required_argument, NULL, O_IDENTITY},
      {"lease-duration", required_argument, NULL, O_LEASE_DURATION},
      {"renew-deadline", required_argument, NULL, O_RENEW},
      {"retry-period", required_argument, NULL, O_RETRY},
      {"metrics-bind-address", required_argument, NULL, O_METRICS},
      {"keep-last", required_argument, NULL, O_KEEP},
      {"node-lost-after", required_argument, NULL, O_LOST},
      {"resync-period", required_argument, NULL, O_RESYNC},
      {"log-level", required_argument, NULL, O_LEVEL},
      {"log-format", required_argument, NULL, O_FORMAT},
      {NULL, 0, NULL, 0}};
  kyb_operator_config cfg = {.metrics_addr = ":8080", .keep_last = 5, .stop_fd = -1};
  const char *level = NULL, *format = NULL;
  long lease_ms = 15000, renew_ms = 10000;
  int c;
  while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
    long v;
    char *end = NULL;
    switch (c) {
    case 'h':
      usage(stdout);
      return 0;
    case 'V':
      kyb_cli_print_version(stdout, program);
      return 0;
    case O_KUBECONFIG:
      cfg.kubeconfig = optarg;
      break;
    case O_CONTEXT:
      cfg.context = optarg;
      break;
    case O_NAMESPACE:
      cfg.watch_namespace = optarg;
      break;
    case O_LEADER:
      cfg.leader_elect = true;
      break;
    case O_LEASE_NAME:
      cfg.lease_name = optarg;
      break;
    case O_LEASE_NS:
      cfg.lease_namespace = optarg;
      break;
    case O_IDENTITY:
      cfg.identity = optarg;
      break;
    case O_LEASE_DURATION:
      if ((lease_ms = parse_duration_ms(optarg)) < 1000)
        return bad("--lease-duration", optarg);
      break;
    case O_RENEW:
      if ((renew_ms = parse_duration_ms(optarg)) < 1000)
        return bad("--renew-deadline", optarg);
      break;
    case O_RETRY:
      if ((v = parse_duration_ms(optarg)) < 100)
        return bad("--retry-period", optarg);
      cfg.retry_period_ms = v;
      break;
    case O_METRICS:
      cfg.metrics_addr = optarg;
      break;
    case O_KEEP:
      errno = 0;
      v = strtol(optarg, &end, 10);
      if (*optarg == '\0' || *end != '\0' || errno != 0 || v < 0 || v > 1000)
        return bad("--keep-last", optarg);
      cfg.keep_last = v;
      break;
    case O_LOST:
      if ((v = parse_duration_ms(optarg)) < 1000)
        return bad("--node-lost-after", optarg);
      cfg.node_lost_s = v / 1000;
      break;
    case O_RESYNC:
      if ((v = parse_duration_ms(optarg)) < 1000)
        return bad("--resync-period", optarg);
      cfg.resync_s = v / 1000;
      break;
    case O_LEVEL:
      level = optarg;
      break;
    case O_FORMAT:
      format = optarg;
      break;
    default:
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "%s: error: unexpected argument \"%s\"\n", program, argv[optind]);
    return 2;
  }
  /* The lease works in whole seconds; the renew deadline must end before
   * anyone else may take over. */
  cfg.lease_duration_s = lease_ms / 1000;
  cfg.renew_deadline_s = renew_ms / 1000;
  if (cfg.renew_deadline_s >= cfg.lease_duration_s) {
    fprintf(stderr, "%s: error: --renew-deadline must be shorter than --lease-duration\n", program);
    return 2;
  }
  kyb_error *err = NULL;
  if (kyb_cli_setup_logging(program, KYB_LOG_JSON, level, format, &err) < 0) {
    kyb_cli_report(program, err);
    kyb_error_free(err);
    return 2;
  }
  /* Signals arrive on a descriptor the library polls: blocked before any
   * thread starts, so every thread inherits the mask. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  signal(SIGPIPE, SIG_IGN);
  if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0 ||
      (cfg.stop_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
    fprintf(stderr, "%s: error: signalfd: %s\n", program, strerror(errno));
    return 1;
  }
  int rc = kyb_operator_run(&cfg, &err);
  close(cfg.stop_fd);
  if (rc < 0) {
    log_error_chain(err, "operator stopped");
    kyb_error_free(err);
    return 1;
  }
  return 0;
}

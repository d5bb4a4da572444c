/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kybernate-agent: the node agent (DaemonSet).  Runs the CheckpointRequests
 * of its node and serves the local API; the logic is lib/agent
 * (docs/agent.md).  This main parses flags, sets up logging and signals.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/worker.h"
#include "util/cli.h"

static const char *const program = "kybernate-agent";

static void usage(FILE *out) {
  fprintf(out,
          "Usage: %s [OPTIONS]\n"
          "\n"
          "Kybernate node agent: runs the CheckpointRequests of this node (claim, checkpoint\n"
          "through containerd, status) and serves the local API to the kybernate CLI and\n"
          "kybernate-runc on a unix socket. One agent per node (a host lock).\n"
          "\n"
          "Options (environment in brackets; flags win):\n"
          "  --node NAME            this node's name [NODE_NAME]\n"
          "  --kubeconfig FILE      kubeconfig (default: in-cluster, $KUBECONFIG, ~/.kube/config)\n"
          "  --containerd SOCKET    containerd's socket [KYBERNATE_CONTAINERD_ADDRESS]\n"
          "                         (default /run/containerd/containerd.sock)\n"
          "  --store URI            default store [KYBERNATE_STORE] (default: the node config's\n"
          "                         defaultStore, file:///var/lib/kybernate/images)\n"
          "  --config FILE          node config [KYBERNATE_CONFIG] (/etc/kybernate/config.json)\n"
          "  --state-dir DIR        where the host lock is (default /var/lib/kybernate)\n"
          "  --socket PATH          local API socket, \"none\" for none [KYBERNATE_AGENT_SOCKET]\n"
          "                         (default /run/kybernate/agent.sock)\n"
          "  --uploader SOCKET      kybernate-uploader's socket [KYBERNATE_UPLOADER_SOCKET];\n"
          "                         without it remote stores are written directly\n"
          "  --standalone           no Kubernetes: serve the local API only\n"
          "  --shutdown-grace SECS  on SIGTERM, let a checkpoint in progress finish this long\n"
          "                         (default 90)\n"
          "  --log-level LEVEL      error, warn, info (default), debug, trace\n"
          "  --log-format FORMAT    json (default) or text\n"
          "  -h, --help             show this help\n"
          "  -V, --version          show the version\n"
          "\n"
          "Also read: POD_NAME and POD_UID (who claims requests: status.agent).\n",
          program);
}

static volatile sig_atomic_t stop_flag;
static int stop_pipe[2] = {-1, -1};

static void on_signal(int sig) {
  (void)sig;
  int saved = errno;
  stop_flag = 1;
  if (stop_pipe[1] >= 0) {
    ssize_t n = write(stop_pipe[1], "x", 1);
    (void)n;
  }
  errno = saved;
}

static int setup_signals(void) {
  if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
    return -1;
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
    return -1;
  signal(SIGPIPE, SIG_IGN);
  return 0;
}

static int worker_main(int argc, char **argv) {
  const char *level = NULL, *format = NULL;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--log-level") == 0)
      level = argv[i + 1];
    else if (strcmp(argv[i], "--log-format") == 0)
      format = argv[i + 1];
  }
  kyb_error *err = NULL;
  if (kyb_cli_setup_logging("kybernate-agent-worker", KYB_LOG_JSON, level, format, &err) < 0) {
    kyb_cli_report(program, err);
    kyb_error_free(err);
    return 2;
  }
  return kyb_agent_worker_main();
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], KYB_AGENT_WORKER_FLAG) == 0)
    return worker_main(argc, argv);
  enum {
    O_NODE = 256,
    O_KUBECONFIG,
    O_CONTAINERD,
    O_STORE,
    O_CONFIG,
    O_STATE,
    O_SOCKET,
    O_UPLOADER,
    O_STANDALONE,
    O_GRACE,
    O_LEVEL,
    O_FORMAT
  };
  static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                       {"version", no_argument, NULL, 'V'},
                                       {"node", required_argument, NULL, O_NODE},
                                       {"kubeconfig", required_argument, NULL, O_KUBECONFIG},
                                       {"containerd", required_argument, NULL, O_CONTAINERD},
                                       {"store", required_argument, NULL, O_STORE},
                                       {"config", required_argument, NULL, O_CONFIG},
                                       {"state-dir", required_argument, NULL, O_STATE},
                                       {"socket", required_argument, NULL, O_SOCKET},
                                       {"uploader", required_argument, NULL, O_UPLOADER},
                                       {"standalone", no_argument, NULL, O_STANDALONE},
                                       {"shutdown-grace", required_argument, NULL, O_GRACE},
                                       {"log-level", required_argument, NULL, O_LEVEL},
                                       {"log-format", required_argument, NULL, O_FORMAT},
                                       {NULL, 0, NULL, 0}};
  kyb_agent_config cfg = {0};
  int c;
  char *end = NULL;
  while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
    switch (c) {
    case 'h':
      usage(stdout);
      return 0;
    case 'V':
      kyb_cli_print_version(stdout, program);
      return 0;
    case O_NODE:
      cfg.node = optarg;
      break;
    case O_KUBECONFIG:
      cfg.kubeconfig = optarg;
      break;
    case O_CONTAINERD:
      cfg.containerd = optarg;
      break;
    case O_STORE:
      cfg.store = optarg;
      break;
    case O_CONFIG:
      cfg.config_path = optarg;
      break;
    case O_STATE:
      cfg.state_dir = optarg;
      break;
    case O_SOCKET:
      cfg.socket = optarg;
      break;
    case O_UPLOADER:
      cfg.uploader = optarg;
      break;
    case O_STANDALONE:
      cfg.standalone = true;
      break;
    case O_GRACE:
      errno = 0;
      cfg.shutdown_grace_s = strtol(optarg, &end, 10);
      if (errno != 0 || *end != '\0' || cfg.shutdown_grace_s < 1 || cfg.shutdown_grace_s > 3600) {
        fprintf(stderr, "%s: --shutdown-grace: seconds from 1 to 3600\n", program);
        return 2;
      }
      break;
    case O_LEVEL:
      cfg.log_level = optarg;
      break;
    case O_FORMAT:
      cfg.log_format = optarg;
      break;
    default:
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "%s: unexpected argument %s\n", program, argv[optind]);
    return 2;
  }
  kyb_error *err = NULL;
  if (kyb_cli_setup_logging(program, KYB_LOG_JSON, cfg.log_level, cfg.log_format, &err) < 0) {
    kyb_cli_report(program, err);
    kyb_error_free(err);
    return 2;
  }
  kyb_agent_config_from_env(&cfg);
  if (setup_signals() < 0) {
    perror("kybernate-agent: signals");
    return 1;
  }
  int r = kyb_agent_run(&cfg, stop_pipe[0], &stop_flag, &err);
  if (r < 0) {
    log_error_chain(err, "kybernate-agent failed");
    int code = kyb_error_code(err) == EWOULDBLOCK ? 3 : 1;
    kyb_error_free(err);
    return code;
  }
  return 0;
}

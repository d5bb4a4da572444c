/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint worker: one checkpoint (lib/ops/checkpoint) in a child
 * process of the agent.
 *
 * Why a child process and not a thread:
 *  - the agent must be able to stop a checkpoint (deadline, shutdown, the
 *    request deleted): kyb_checkpoint has no cancellation, a process can be
 *    killed;
 *  - a crash inside the checkpoint (a driver, CRIU's output, a bug) ends the
 *    worker only: the agent sees it, brings the container back (resume, GPU
 *    restore + unlock: recover.h) and fails the request with a reason,
 *    instead of leaving it to the next incarnation;
 *  - the child is a fresh exec of the agent binary (`--checkpoint-worker`),
 *    not a bare fork of a process with threads: no lock of another thread
 *    (libcurl, OpenSSL, the logger) is inherited in a held state.
 *
 * The child dies with the agent (PR_SET_PDEATHSIG SIGKILL): a worker must
 * never go on checkpointing after its agent is gone, because the next agent
 * recovers the request from the node's state and must not race a live dump.
 * SIGTERM, SIGINT or SIGHUP sent to the child itself (e.g. Ctrl-C on an agent
 * run in a terminal reaches its whole process group) roll the checkpoint
 * back in the child (ops/interrupt.h), which then writes its error line
 * ("interrupted by SIGINT (...): rolled back, ...") and exits 1.
 *
 * Protocol: the agent writes one JSON job object on the child's stdin and
 * closes it; the child writes JSON lines on its stdout:
 *     {"phase": "criu_dump", "done": false}
 *     {"phase": "criu_dump", "done": true, "ms": 812}
 *     {"result": {"container", "name", "ref", "digest", "size", "totalMs"}}
 *  or {"error": {"errno", "message", "ref", "name", "digest", "size"}}
 *     (ref, name, digest, size when the image was published before the
 *     failure; the parent knows the phase from the lines before);
 * its logs go to the agent's stderr (same format).  Job fields: address,
 * namespace, containerId | podNamespace + podName + container, store, name,
 * leaveRunning, gpuLockTimeoutMs, timeoutMs, tcpEstablished, fileLocks,
 * extUnixSk.
 */
#ifndef KYB_AGENT_WORKER_H
#define KYB_AGENT_WORKER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util/error.h"

#define KYB_AGENT_WORKER_FLAG "--checkpoint-worker"
#define KYB_AGENT_WORKER_MAX_JOB (64u << 10)
#define KYB_AGENT_WORKER_MAX_LINE (256u << 10)

typedef struct kyb_agent_worker kyb_agent_worker;

/* Called for each phase line: phase started (done false) or ended. */
typedef void (*kyb_agent_worker_phase_fn)(void *ud, const char *phase, bool done, long ms);

/* Starts `exe KYB_AGENT_WORKER_FLAG args...` (args NULL-terminated, may be
 * NULL) and hands it `job`. */
int kyb_agent_worker_start(const char *exe, const char *const *args, const json_t *job,
                           kyb_agent_worker **out, kyb_error **err);

/* The fd to poll for input (readable: call kyb_agent_worker_read). */
int kyb_agent_worker_fd(const kyb_agent_worker *w);

/* Reads what is there without blocking and handles each complete line.
 * Returns 0 (more to come) or 1 (the child closed its stdout: it is ending;
 * reap it with kyb_agent_worker_wait). */
int kyb_agent_worker_read(kyb_agent_worker *w, kyb_agent_worker_phase_fn fn, void *ud,
                          kyb_error **err);

/* SIGKILL (the caller then recovers the container: recover.h). */
void kyb_agent_worker_kill(kyb_agent_worker *w);

/* Waits for the child to exit; *status its wait status (may be NULL). */
int kyb_agent_worker_wait(kyb_agent_worker *w, int *status, kyb_error **err);

/* What the child said at the end; borrowed, NULL when it said nothing. */
const json_t *kyb_agent_worker_result(const kyb_agent_worker *w);
const json_t *kyb_agent_worker_error(const kyb_agent_worker *w);
/* The last phase the child started (NULL: none). */
const char *kyb_agent_worker_phase(const kyb_agent_worker *w);
/* Phase durations reported so far: {phase: ms}; borrowed. */
const json_t *kyb_agent_worker_timings(const kyb_agent_worker *w);
pid_t kyb_agent_worker_pid(const kyb_agent_worker *w);

/* Kills and reaps a child still running, then frees. NULL is ignored. */
void kyb_agent_worker_free(kyb_agent_worker *w);

/* The child's side: reads the job from stdin, runs it, writes the lines.
 * Returns the exit code (0: checkpoint published, 1: failed, 2: bad job). */
int kyb_agent_worker_main(void);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SIGINT, SIGTERM and SIGHUP for a process that runs one checkpoint in the
 * foreground (the CLI, the agent's worker): instead of dying with the
 * container paused and its CUDA processes locked, the process notes the
 * signal, and the operation (kyb_checkpoint_opts.interrupted) stops at its
 * next phase boundary and rolls back like after any other failure.
 *
 * Contract:
 *  - the handler only stores the first signal's number in a
 *    volatile sig_atomic_t, and on any further signal writes one fixed
 *    notice line with write(2) (async-signal-safe, nothing else);
 *  - the handlers go in without SA_RESTART, so a blocking call returns
 *    EINTR (the project's read/write loops retry on it; libcurl treats it
 *    as "nothing happened yet"); a containerd call in flight, such as the
 *    CRIU dump, is not cut short: it ends first, then the rollback runs;
 *  - the signals stay caught until kyb_interrupt_release(), so a second
 *    Ctrl-C cannot kill a rollback half-way;
 *  - process-wide by nature (signal dispositions are): one catch at a time.
 */
#ifndef KYB_OPS_INTERRUPT_H
#define KYB_OPS_INTERRUPT_H

#include <signal.h>
#include <stdbool.h>

#include "util/error.h"

typedef struct {
  struct sigaction old[3]; /* SIGINT, SIGTERM, SIGHUP as they were */
  bool active;
} kyb_interrupt;

/* Catches SIGINT, SIGTERM and SIGHUP from now on; the flag starts at 0.
 * `program` non-NULL: a second signal writes "<program>: rollback in
 * progress, please wait" on stderr (NULL: nothing, e.g. where stderr
 * carries JSON log lines). */
int kyb_interrupt_catch(kyb_interrupt *g, const char *program, kyb_error **err);

/* The flag the operation reads: 0, or the number of the first signal
 * caught.  Valid for the whole process lifetime. */
const volatile sig_atomic_t *kyb_interrupt_flag(void);

/* The first signal caught since kyb_interrupt_catch (0: none). */
int kyb_interrupt_signal(void);

/* Puts the dispositions back as they were.  The flag keeps its value. */
void kyb_interrupt_release(kyb_interrupt *g);

/* "SIGINT" for SIGINT, ...; "signal N" otherwise.  Static storage. */
const char *kyb_interrupt_name(int sig);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What every binary's thin main() shares: --version text and logging set-up
 * from flags and environment, so all five binaries behave alike.
 */
#ifndef KYB_UTIL_CLI_H
#define KYB_UTIL_CLI_H

#include <stdio.h>

#include "util/error.h"
#include "util/log.h"

/* "kybernate-agent 0.1.0 (libkybernate 0.1.0-3-gabcdef)" */
void kyb_cli_print_version(FILE *out, const char *program);

/* Configures the logger for `program`: default level info, default format
 * `dflt_format`; then KYBERNATE_LOG_LEVEL / KYBERNATE_LOG_FORMAT; then the
 * flag values when non-NULL (flags win). */
int kyb_cli_setup_logging(const char *program, kyb_log_format dflt_format, const char *level_flag,
                          const char *format_flag, kyb_error **err);

/* Prints "program: error: <chain>" to stderr, the way every binary reports a
 * failure to a person. */
void kyb_cli_report(const char *program, kyb_error *err);

#endif

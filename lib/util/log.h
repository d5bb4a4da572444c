/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one logger.
 *
 * Each source file names its module before including this header:
 *
 *     #define KYB_LOG_MODULE "containerd"
 *     #include "util/log.h"
 *     ...
 *     log_info("connected to %s", addr);
 *     log_error_chain(err, "checkpoint of %s failed", id);
 *
 * Two formats: TEXT for people (CLI on a terminal):
 *     kybernate: [containerd] warning: slow answer from Tasks.Checkpoint
 * and JSON lines for daemons and log collectors, one object per line:
 *     {"time":"2026-11-28T13:40:00.123Z","level":"info","program":"kybernate-agent",
 *      "module":"containerd","msg":"..."}
 *
 * The logger's settings are the one piece of process-wide state: set once in
 * main() (kyb_log_setup) before threads start, read-only afterwards.  Each
 * line goes out in a single write(2) so concurrent writers do not interleave.
 */
#ifndef KYB_UTIL_LOG_H
#define KYB_UTIL_LOG_H

#include <stdarg.h>
#include <stdbool.h>

#include "util/error.h"

typedef enum {
  KYB_LOG_ERROR = 0,
  KYB_LOG_WARN = 1,
  KYB_LOG_INFO = 2,
  KYB_LOG_DEBUG = 3,
  KYB_LOG_TRACE = 4,
} kyb_log_level;

typedef enum {
  KYB_LOG_TEXT = 0,
  KYB_LOG_JSON = 1,
} kyb_log_format;

/* program: short name shown in every line; fd: where lines go (2 by default). */
void kyb_log_setup(const char *program, kyb_log_level level, kyb_log_format format, int fd);

/* Parses "error", "warn"/"warning", "info", "debug", "trace".  Returns -1 on
 * anything else and fills err. */
int kyb_log_level_parse(const char *s, kyb_log_level *out, kyb_error **err);
int kyb_log_format_parse(const char *s, kyb_log_format *out, kyb_error **err);

/* Applies KYBERNATE_LOG_LEVEL and KYBERNATE_LOG_FORMAT when set; a bad value
 * is reported through err and leaves the setting unchanged. */
int kyb_log_setup_from_env(kyb_error **err);

bool kyb_log_enabled(kyb_log_level level);
kyb_log_level kyb_log_get_level(void);

void kyb_log_write(kyb_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void kyb_log_writev(kyb_log_level level, const char *module, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Logs "<message>: <error chain>" at `level`; in JSON the errno and the chain
 * (root cause first) are separate fields "errno" and "error_chain". */
void kyb_log_error_chain(kyb_log_level level, const char *module, kyb_error *err, const char *fmt,
                         ...) __attribute__((format(printf, 4, 5)));

#ifndef KYB_LOG_MODULE
#define KYB_LOG_MODULE "kybernate"
#endif

#define log_error(...) kyb_log_write(KYB_LOG_ERROR, KYB_LOG_MODULE, __VA_ARGS__)
#define log_warn(...) kyb_log_write(KYB_LOG_WARN, KYB_LOG_MODULE, __VA_ARGS__)
#define log_info(...) kyb_log_write(KYB_LOG_INFO, KYB_LOG_MODULE, __VA_ARGS__)
#define log_debug(...)                                                                             \
  do {                                                                                             \
    if (kyb_log_enabled(KYB_LOG_DEBUG))                                                            \
      kyb_log_write(KYB_LOG_DEBUG, KYB_LOG_MODULE, __VA_ARGS__);                                   \
  } while (0)
#define log_trace(...)                                                                             \
  do {                                                                                             \
    if (kyb_log_enabled(KYB_LOG_TRACE))                                                            \
      kyb_log_write(KYB_LOG_TRACE, KYB_LOG_MODULE, __VA_ARGS__);                                   \
  } while (0)
#define log_error_chain(e, ...) kyb_log_error_chain(KYB_LOG_ERROR, KYB_LOG_MODULE, (e), __VA_ARGS__)
#define log_warn_chain(e, ...) kyb_log_error_chain(KYB_LOG_WARN, KYB_LOG_MODULE, (e), __VA_ARGS__)

#endif

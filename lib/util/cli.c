/* SPDX-License-Identifier: Apache-2.0 */
#include "util/cli.h"

#include <stdlib.h>

#include "version.h"

void kyb_cli_print_version(FILE *out, const char *program) {
  fprintf(out, "%s %s\n", program, KYB_VERSION);
}

int kyb_cli_setup_logging(const char *program, kyb_log_format dflt_format, const char *level_flag,
                          const char *format_flag, kyb_error **err) {
  kyb_log_setup(program, KYB_LOG_INFO, dflt_format, 2);
  if (kyb_log_setup_from_env(err) < 0)
    return -1;
  kyb_log_level level = kyb_log_get_level();
  if (level_flag != NULL && kyb_log_level_parse(level_flag, &level, err) < 0)
    return kyb_error_wrap(err, "--log-level");
  kyb_log_format format = dflt_format;
  const char *env_format = getenv("KYBERNATE_LOG_FORMAT");
  if (env_format != NULL && *env_format != '\0')
    (void)kyb_log_format_parse(env_format, &format, NULL);
  if (format_flag != NULL && kyb_log_format_parse(format_flag, &format, err) < 0)
    return kyb_error_wrap(err, "--log-format");
  kyb_log_setup(program, level, format, 2);
  return 0;
}

void kyb_cli_report(const char *program, kyb_error *err) {
  fprintf(stderr, "%s: error: %s\n", program, kyb_error_message(err));
}

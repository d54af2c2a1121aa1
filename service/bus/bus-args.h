/* SPDX-License-Identifier: Apache-2.0 */
/* Reading caller arguments from a message: every string and array is bounded by the limits of
 * kiln.conf and checked by a rule that names the argument in its error. */
#pragma once

#include <systemd/sd-bus.h>

#include "base/config.h"
#include "base/errors.h"

/* Checks one string and returns what is stored (a new string), or NULL with @error set. */
typedef char *(*KilnStringCheck)(const char *arg, const char *value, GError **error);

/* A KilnStringCheck that stores the value unchanged when @validator (arg, value, error) accepts it. */
#define KILN_DEFINE_STRING_CHECK(name, validator)                                                           \
        static char *name(const char *arg, const char *value, GError **error)                               \
        {                                                                                                   \
                return validator(arg, value, error) ? g_strdup(value) : NULL;                               \
        }

gboolean kiln_check_string_limit(const char *arg, const char *value, const KilnConfig *limits,
                                 GError **error);
gboolean kiln_check_array_limit(const char *arg, size_t n, const KilnConfig *limits, GError **error);

/* InvalidArgument "Invalid ARG: cannot read it: ..." for a message that does not parse. */
gboolean kiln_bus_read_failed(int r, const char *arg, GError **error);

/* Enters the variant at the current position if its contents are @signature; otherwise
 * InvalidArgument "expected a value of type ...". */
gboolean kiln_bus_enter_variant(sd_bus_message *m, const char *arg, const char *signature, GError **error);
gboolean kiln_bus_exit_variant(sd_bus_message *m, const char *arg, GError **error);

/* "s" and "as" at the current position; @check may be NULL (any string). */
gboolean kiln_bus_read_string(sd_bus_message *m, const char *arg, KilnStringCheck check,
                              const KilnConfig *limits, char **ret, GError **error);
gboolean kiln_bus_read_strv(sd_bus_message *m, const char *arg, KilnStringCheck check,
                            const KilnConfig *limits, char ***ret, GError **error);

/* SPDX-License-Identifier: Apache-2.0 */
/* The service's error domain. Its mapping to D-Bus error names is errors-bus.c: kiln-isolate links the
 * core's helpers that fail with these errors, and would otherwise load sd-bus for nothing. */
#include "base/errors.h"

G_DEFINE_QUARK(kiln - error - quark, kiln_error)

gboolean kiln_fail(GError **error, KilnErrorCode code, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        g_propagate_error(error, g_error_new_valist(KILN_ERROR, code, fmt, ap));
        va_end(ap);
        return FALSE;
}

gboolean kiln_invalid(GError **error, const char *arg, const char *fmt, ...)
{
        g_autofree char *reason = NULL;
        va_list ap;

        va_start(ap, fmt);
        reason = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT, "Invalid %s: %s", arg, reason);
        return FALSE;
}

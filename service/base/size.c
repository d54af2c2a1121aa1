/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "base/size.h"

gboolean kiln_parse_size(const char *value, guint64 *ret)
{
        static const char units[] = "bkmg";
        const char *unit;
        guint64 n = 0;
        guint shift;

        if (!value || !g_ascii_isdigit(*value))
                return FALSE;
        for (; g_ascii_isdigit(*value); value++) {
                guint digit = (guint)(*value - '0');
                /* n * 10 + digit must not pass G_MAXUINT64. */
                if (n > (G_MAXUINT64 - digit) / 10)
                        return FALSE;
                n = n * 10 + digit;
        }
        if (!*value) {
                *ret = n;
                return TRUE;
        }
        unit = strchr(units, g_ascii_tolower(*value));
        if (!unit || value[1])
                return FALSE;
        shift = 10 * (guint)(unit - units);
        if (n > (G_MAXUINT64 >> shift))
                return FALSE;
        *ret = n << shift;
        return TRUE;
}

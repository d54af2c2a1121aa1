/* SPDX-License-Identifier: Apache-2.0 */
/* The pure parts of a copy: the caller's mode and the names in its tar stream (fuzzed). */
#include <limits.h>
#include <string.h>

#include "copy/copy.h"

gboolean kiln_copy_parse_mode(const char *arg, const char *s, guint32 *mode, GError **error)
{
        guint32 value = 0;
        size_t n = strlen(s);

        if (n == 0 || n > 5)
                return kiln_invalid(error, arg, "expected an octal mode such as 0644, not '%.32s'", s);
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '7')
                        return kiln_invalid(error, arg, "expected an octal mode such as 0644, not '%.32s'",
                                            s);
                value = value * 8 + (guint32)(s[i] - '0');
        }
        if (value > 07777)
                return kiln_invalid(error, arg, "%.32s is more than 07777", s);
        *mode = value;
        return TRUE;
}

char *kiln_copy_entry_path(const char *name, GError **error)
{
        g_autoptr(GString) out = NULL;
        const char *p = name;
        g_autofree char *shown = NULL;

        if (!name || !*name) {
                kiln_invalid(error, "source", "an entry of the stream has an empty name");
                return NULL;
        }
        if (strlen(name) >= PATH_MAX) {
                kiln_invalid(error, "source", "an entry's name is longer than %d bytes", PATH_MAX - 1);
                return NULL;
        }
        out = g_string_new(NULL);
        while (*p) {
                const char *end = strchr(p, '/');
                size_t len = end ? (size_t)(end - p) : strlen(p);

                if (len == 2 && p[0] == '.' && p[1] == '.') {
                        /* Never resolved, not even when it would stay beneath: a name that climbs is
                         * the sign of an archive made to escape. */
                        shown = g_strescape(name, NULL);
                        kiln_invalid(error, "source", "entry '%.256s' has a '..' component", shown);
                        return NULL;
                }
                if (len > NAME_MAX) {
                        shown = g_strescape(name, NULL);
                        kiln_invalid(error, "source", "entry '%.256s' has a component longer than %d bytes",
                                     shown, NAME_MAX);
                        return NULL;
                }
                /* Absolute names are taken from the destination, as tar does; "." and empty components
                 * are nothing. */
                if (len > 0 && !(len == 1 && p[0] == '.')) {
                        if (out->len > 0)
                                g_string_append_c(out, '/');
                        g_string_append_len(out, p, (gssize)len);
                }
                p += len;
                if (*p == '/')
                        p++;
        }
        return g_string_free(g_steal_pointer(&out), FALSE);
}

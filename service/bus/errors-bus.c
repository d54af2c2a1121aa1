/* SPDX-License-Identifier: Apache-2.0 */
/* KILN_ERROR and G_IO_ERROR codes as D-Bus error names, where a method replies. */
#include <stdio.h>
#include <string.h>

#include "base/errors.h"

typedef struct {
        char *prefix;
        gboolean roots; /* PREFIX/NAME is a container's root: what follows is a path inside it */
} Hidden;

static GPtrArray *hidden;

static void hide(const char *dir, gboolean roots)
{
        g_autofree char *prefix = g_strdup(dir);
        size_t n = strlen(prefix);
        Hidden *h;

        /* "/var/lib/kiln/" names the same paths as "/var/lib/kiln"; "/" would hide every path. */
        while (n > 1 && prefix[n - 1] == '/')
                prefix[--n] = '\0';
        if (n <= 1)
                return;
        h = g_new0(Hidden, 1);
        h->prefix = g_steal_pointer(&prefix);
        h->roots = roots;
        if (!hidden)
                hidden = g_ptr_array_new();
        g_ptr_array_add(hidden, h);
}

void kiln_error_hide_paths_under(const char *dir)
{
        hide(dir, FALSE);
}

void kiln_error_show_roots_under(const char *dir)
{
        hide(dir, TRUE);
}

static gboolean is_path_end(char c)
{
        return c == '\0' || g_ascii_isspace(c) || strchr("'\":;,()[]{}<>", c);
}

/* The longest hidden prefix that names a path at @p. */
static const Hidden *hidden_at(const char *p)
{
        const Hidden *best = NULL;

        for (guint i = 0; hidden && i < hidden->len; i++) {
                const Hidden *h = hidden->pdata[i];
                size_t n = strlen(h->prefix);

                if (strncmp(p, h->prefix, n) == 0 && (p[n] == '/' || is_path_end(p[n])) &&
                    (!best || n > strlen(best->prefix)))
                        best = h;
        }
        return best;
}

/* @message without kilnd's own paths: a path in a container's root becomes the path inside it (what the
 * caller knows it as), any other becomes a placeholder. NULL when there is none. */
static char *redact(const char *message)
{
        g_autoptr(GString) out = g_string_new(NULL);
        gboolean changed = FALSE;

        for (const char *p = message; *p;) {
                const Hidden *h = hidden_at(p);

                if (!h) {
                        g_string_append_c(out, *p++);
                        continue;
                }
                changed = TRUE;
                p += strlen(h->prefix);
                if (h->roots) {
                        if (*p == '/')
                                for (p++; !is_path_end(*p) && *p != '/'; p++)
                                        ;
                        if (is_path_end(*p))
                                g_string_append_c(out, '/');
                } else {
                        while (!is_path_end(*p))
                                p++;
                        g_string_append(out, "(kilnd's own file)");
                }
        }
        return changed ? g_string_free(g_steal_pointer(&out), FALSE) : NULL;
}

/* NULL: an internal failure (see kiln_error_to_bus). */
static const char *const kiln_error_names[] = {
        [KILN_ERROR_CODE_FAILED] = NULL,
        [KILN_ERROR_CODE_INVALID_ARGUMENT] = KILN_ERROR_INVALID_ARGUMENT,
        [KILN_ERROR_CODE_LIMIT_EXCEEDED] = KILN_ERROR_LIMIT_EXCEEDED,
        [KILN_ERROR_CODE_NOT_FOUND] = KILN_ERROR_NOT_FOUND,
        [KILN_ERROR_CODE_EXISTS] = KILN_ERROR_EXISTS,
        [KILN_ERROR_CODE_BUSY] = KILN_ERROR_BUSY,
        [KILN_ERROR_CODE_RUNTIME_FAILED] = KILN_ERROR_RUNTIME_FAILED,
        [KILN_ERROR_CODE_ACCESS_DENIED] = SD_BUS_ERROR_ACCESS_DENIED,
};

static const char *io_error_name(int code)
{
        switch (code) {
        case G_IO_ERROR_NOT_FOUND:
                return KILN_ERROR_NOT_FOUND;
        case G_IO_ERROR_EXISTS:
                return KILN_ERROR_EXISTS;
        case G_IO_ERROR_PERMISSION_DENIED:
                return SD_BUS_ERROR_ACCESS_DENIED;
        case G_IO_ERROR_NOT_DIRECTORY:
        case G_IO_ERROR_INVALID_ARGUMENT:
        case G_IO_ERROR_INVALID_FILENAME:
                return KILN_ERROR_INVALID_ARGUMENT;
        case G_IO_ERROR_BUSY:
                return KILN_ERROR_BUSY;
        case G_IO_ERROR_NO_SPACE:
        case G_IO_ERROR_TOO_MANY_OPEN_FILES:
                return KILN_ERROR_LIMIT_EXCEEDED;
        default:
                return NULL;
        }
}

/* An internal failure's message is about kilnd, not the call: it names kilnd's own files (state paths,
 * mount points) that are nobody else's business. The caller gets an id to quote; the log has the rest. */
static int internal_to_bus(const GError *error, sd_bus_error *bus_error)
{
        char id[17];

        snprintf(id, sizeof(id), "%08" G_GINT32_MODIFIER "x%08" G_GINT32_MODIFIER "x", g_random_int(),
                 g_random_int());
        g_warning("Internal error %s: %s (%s %d)", id, error->message, g_quark_to_string(error->domain),
                  error->code);
        return sd_bus_error_setf(bus_error, KILN_ERROR_FAILED,
                                 "Internal error in kilnd (id %s; the service's log has the details)", id);
}

int kiln_error_to_bus(const GError *error, sd_bus_error *bus_error)
{
        const char *name = NULL;
        g_autofree char *redacted = NULL;

        if (error->domain == KILN_ERROR && error->code >= 0 &&
            (size_t)error->code < G_N_ELEMENTS(kiln_error_names))
                name = kiln_error_names[error->code];
        else if (error->domain == G_IO_ERROR)
                name = io_error_name(error->code);
        if (!name)
                return internal_to_bus(error, bus_error);
        redacted = redact(error->message);
        if (!redacted)
                return sd_bus_error_set(bus_error, name, error->message);
        /* A system call's failure on kilnd's own files is about kilnd, not the call. A failure kilnd
         * classified (the runtime's refusal, say) keeps its name and what it says about the container. */
        if (error->domain != KILN_ERROR)
                return internal_to_bus(error, bus_error);
        g_debug("Answering without kilnd's paths: %s", error->message);
        return sd_bus_error_set(bus_error, name, redacted);
}

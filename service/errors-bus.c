/* SPDX-License-Identifier: Apache-2.0 */
/* KILN_ERROR and G_IO_ERROR codes as D-Bus error names, where a method replies. */
#include <stdio.h>
#include <string.h>

#include "errors.h"

static GPtrArray *hidden_dirs;

void kiln_error_hide_paths_under(const char *dir)
{
        if (!hidden_dirs)
                hidden_dirs = g_ptr_array_new_with_free_func(g_free);
        g_ptr_array_add(hidden_dirs, g_strdup(dir));
}

static gboolean names_hidden_path(const char *message)
{
        for (guint i = 0; hidden_dirs && i < hidden_dirs->len; i++)
                if (strstr(message, hidden_dirs->pdata[i]))
                        return TRUE;
        return FALSE;
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

        if (error->domain == KILN_ERROR && error->code >= 0 &&
            (size_t)error->code < G_N_ELEMENTS(kiln_error_names))
                name = kiln_error_names[error->code];
        else if (error->domain == G_IO_ERROR)
                name = io_error_name(error->code);
        if (!name || names_hidden_path(error->message))
                return internal_to_bus(error, bus_error);
        return sd_bus_error_set(bus_error, name, error->message);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* kiln containers: Manager.ListBuilders as a table, ids or JSON.
 *
 * The service returns every builder the caller may see: its own, or everyone's for root and
 * holders of org.kiln.builder1.manage-all. Like `buildah containers` run by that user, the client
 * shows the caller's own builders by default (owner == getuid()), and all visible ones with --all.
 * So an administrator's listing is not flooded with other users' builders unless asked. */
#include <pwd.h>
#include <stdio.h>

#include "bus-client.h"
#include "json-module.h"
#include "cli-util.h"
#include "verbs.h"

/* buildah shows ids shortened to this many characters. */
#define SHORT_ID_LENGTH 12

enum { COLUMN_ID, COLUMN_OWNER, COLUMN_FROM, COLUMN_NAME, N_COLUMNS };

static const char *const column_titles[N_COLUMNS] = {"BUILDER ID", "OWNER", "FROM", "NAME"};

static char *owner_name(uid_t uid)
{
        struct passwd *pw = getpwuid(uid);

        return pw ? g_strdup(pw->pw_name) : g_strdup_printf("%u", (unsigned)uid);
}

static void print_cell(const char *text, size_t width, bool last)
{
        if (last) {
                printf("%s\n", text);
                return;
        }
        /* Pad by characters, not bytes, so that UTF-8 names keep the columns straight. */
        printf("%s%*s", text, (int)(width - g_utf8_strlen(text, -1) + 2), "");
}

static void print_table(GPtrArray *builders)
{
        g_autoptr(GPtrArray) rows = g_ptr_array_new_with_free_func((GDestroyNotify)g_strfreev);
        size_t widths[N_COLUMNS];

        for (size_t c = 0; c < N_COLUMNS; c++)
                widths[c] = g_utf8_strlen(column_titles[c], -1);

        for (guint i = 0; i < builders->len; i++) {
                KilnBuilderInfo *info = g_ptr_array_index(builders, i);
                char **row = g_new0(char *, N_COLUMNS + 1);

                row[COLUMN_ID] = g_strndup(info->id, SHORT_ID_LENGTH);
                row[COLUMN_OWNER] = owner_name(info->owner);
                row[COLUMN_FROM] = g_strdup(info->from);
                row[COLUMN_NAME] = g_strdup(info->name);
                for (size_t c = 0; c < N_COLUMNS; c++)
                        widths[c] = MAX(widths[c], (size_t)g_utf8_strlen(row[c], -1));
                g_ptr_array_add(rows, row);
        }

        for (size_t c = 0; c < N_COLUMNS; c++)
                print_cell(column_titles[c], widths[c], c == N_COLUMNS - 1);
        for (guint i = 0; i < rows->len; i++) {
                char **row = g_ptr_array_index(rows, i);

                for (size_t c = 0; c < N_COLUMNS; c++)
                        print_cell(row[c], widths[c], c == N_COLUMNS - 1);
        }
}

static void print_ids(GPtrArray *builders)
{
        for (guint i = 0; i < builders->len; i++) {
                KilnBuilderInfo *info = g_ptr_array_index(builders, i);

                printf("%.*s\n", SHORT_ID_LENGTH, info->id);
        }
}

int kiln_verb_containers(int argc, char **argv)
{
        gboolean json = FALSE, quiet = FALSE, all = FALSE;
        g_autoptr(sd_bus) bus = NULL;
        g_autoptr(GPtrArray) builders = NULL;
        int r;

        const GOptionEntry entries[] = {
                {"all", 'a', 0, G_OPTION_ARG_NONE, &all,
                 "Also show other users' builders (those you may see)", NULL},
                {"json", 0, 0, G_OPTION_ARG_NONE, &json, "Print a JSON array", NULL},
                {"quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "Print only the builders' ids", NULL},
                {NULL},
        };

        if (!kiln_parse_options("containers", "", "List your builders.", entries, &argc, &argv))
                return KILN_EXIT_FAILURE;
        if (argc != 1)
                return kiln_usage_error("containers", "unexpected argument '%s'", argv[1]);
        if (json && quiet)
                return kiln_usage_error("containers", "--json and --quiet cannot be used together");

        r = kiln_bus_open(&bus);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = kiln_bus_list_builders(bus, !all, &builders);
        if (r < 0)
                return KILN_EXIT_FAILURE;

        if (json) {
                const KilnCliJson *module = kiln_cli_json();
                if (!module)
                        return KILN_EXIT_FAILURE;
                module->print_builders(builders);
        } else if (quiet)
                print_ids(builders);
        else
                print_table(builders);
        return KILN_EXIT_SUCCESS;
}

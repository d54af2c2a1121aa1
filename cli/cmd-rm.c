/* SPDX-License-Identifier: Apache-2.0 */
/* kiln rm: Builder.Remove for each builder named, or for all the caller's own with --all. Prints
 * each removed builder's id, goes on past a failure and exits 125 at the end if any failed, as
 * `buildah rm` does. */
#include <stdio.h>

#include "bus-client.h"
#include "cli-util.h"
#include "verbs.h"

/* id may be NULL: it is then read from the object first, since afterwards there is none. */
static int remove_builder(sd_bus *bus, const char *path, const char *id, bool force)
{
        g_autoptr(sd_bus_message) m = NULL, reply = NULL;
        g_autofree char *read_id = NULL;
        int r;

        if (!id) {
                r = kiln_bus_get_builder_string(bus, path, "Id", &read_id);
                if (r < 0)
                        return r;
                id = read_id;
        }

        r = kiln_bus_new_call(bus, path, KILN_BUILDER_INTERFACE, "Remove", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "a{sv}", 1, "force", "b", force);
        if (r < 0)
                return kiln_bus_log_error(NULL, r, "Remove");
        r = kiln_bus_call(bus, m, 0, &reply);
        if (r < 0)
                return r;

        printf("%s\n", id);
        return 0;
}

int kiln_verb_rm(int argc, char **argv)
{
        gboolean all = FALSE, force = FALSE;
        g_autoptr(sd_bus) bus = NULL;
        bool failed = false;
        int r;

        const GOptionEntry entries[] = {
                {"all", 'a', 0, G_OPTION_ARG_NONE, &all, "Remove all your builders", NULL},
                {"force", 'f', 0, G_OPTION_ARG_NONE, &force, "Kill the builders' running processes first",
                 NULL},
                {NULL},
        };

        if (!kiln_parse_options("rm", "BUILDER…", "Remove builders.", entries, &argc, &argv))
                return KILN_EXIT_FAILURE;
        if (all && argc > 1)
                return kiln_usage_error("rm", "--all cannot be combined with BUILDER arguments");
        if (!all && argc < 2)
                return kiln_usage_error("rm", "expected at least one BUILDER, or --all");

        r = kiln_bus_open(&bus);
        if (r < 0)
                return KILN_EXIT_FAILURE;

        if (all) {
                g_autoptr(GPtrArray) builders = NULL;

                /* Only the caller's own, even for root or manage-all: --all is not "everyone's". */
                r = kiln_bus_list_builders(bus, true, &builders);
                if (r < 0)
                        return KILN_EXIT_FAILURE;
                for (guint i = 0; i < builders->len; i++) {
                        KilnBuilderInfo *info = g_ptr_array_index(builders, i);

                        if (remove_builder(bus, info->path, info->id, force) < 0)
                                failed = true;
                }
        } else
                for (int i = 1; i < argc; i++) {
                        g_autofree char *path = NULL;

                        if (kiln_bus_resolve_builder(bus, argv[i], &path) < 0 ||
                            remove_builder(bus, path, NULL, force) < 0)
                                failed = true;
                }

        return failed ? KILN_EXIT_FAILURE : KILN_EXIT_SUCCESS;
}

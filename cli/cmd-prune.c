/* SPDX-License-Identifier: Apache-2.0 */
/* kiln prune --cache [ID…]: Manager.RemoveCaches, the caller's own type=cache caches (all of them, or
 * those named). Prints each removed id; a cache a run uses now is kept and named on stderr, and the
 * exit status is then 125, as for any other part that could not be done. */
#include <stdio.h>

#include "bus-client.h"
#include "cli-util.h"
#include "verbs.h"

int kiln_verb_prune(int argc, char **argv)
{
        gboolean cache = FALSE;
        g_autoptr(sd_bus) bus = NULL;
        g_autoptr(sd_bus_message) m = NULL, reply = NULL;
        g_auto(GStrv) removed = NULL, busy = NULL;
        int r;

        const GOptionEntry entries[] = {
                {"cache", 0, 0, G_OPTION_ARG_NONE, &cache,
                 "Remove your --mount type=cache caches (all, or the IDs given)", NULL},
                {NULL},
        };

        if (!kiln_parse_options("prune", "--cache [ID…]", "Remove what kilnd keeps for you between runs.",
                                entries, &argc, &argv))
                return KILN_EXIT_FAILURE;
        if (!cache)
                return kiln_usage_error("prune", "expected --cache (the only thing there is to prune)");

        r = kiln_bus_open(&bus);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = kiln_bus_new_call(bus, KILN_MANAGER_PATH, KILN_MANAGER_INTERFACE, "RemoveCaches", &m);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = sd_bus_message_append_strv(m, argv + 1);
        if (r < 0)
                return kiln_bus_log_error(NULL, r, "RemoveCaches"), KILN_EXIT_FAILURE;
        r = kiln_bus_call(bus, m, 0, &reply);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = sd_bus_message_read_strv(reply, &removed);
        if (r >= 0)
                r = sd_bus_message_read_strv(reply, &busy);
        if (r < 0) {
                kiln_bus_log_parse_error(r);
                return KILN_EXIT_FAILURE;
        }
        for (char **id = removed; id && *id; id++)
                printf("%s\n", *id);
        for (char **id = busy; id && *id; id++)
                kiln_log("cache %s is in use by a run: kept", *id);
        return busy && *busy ? KILN_EXIT_FAILURE : KILN_EXIT_SUCCESS;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* kiln inspect: every property of a builder, as a JSON object keyed by property name. The
 * conversion is generic, so a property added to the service shows up without a client change. */
#include "bus-client.h"
#include "json-module.h"
#include "cli-util.h"
#include "verbs.h"

int kiln_verb_inspect(int argc, char **argv)
{
        g_autoptr(sd_bus) bus = NULL;
        g_autoptr(sd_bus_message) m = NULL, reply = NULL;
        const KilnCliJson *json;
        g_autofree char *path = NULL;
        int r;

        if (!kiln_parse_options("inspect", "BUILDER", "Show a builder's properties as JSON.", NULL, &argc,
                                &argv))
                return KILN_EXIT_FAILURE;
        if (argc != 2)
                return kiln_usage_error("inspect", "expected exactly one BUILDER");

        r = kiln_bus_open_builder(argv[1], &bus, &path);
        if (r < 0)
                return KILN_EXIT_FAILURE;

        r = kiln_bus_new_call(bus, path, KILN_PROPERTIES_INTERFACE, "GetAll", &m);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = sd_bus_message_append(m, "s", KILN_BUILDER_INTERFACE);
        if (r < 0) {
                kiln_bus_log_error(NULL, r, "GetAll");
                return KILN_EXIT_FAILURE;
        }
        r = kiln_bus_call(bus, m, 0, &reply);
        if (r < 0)
                return KILN_EXIT_FAILURE;

        /* The reply is a{sv}: it becomes an object, each variant its contents. */
        json = kiln_cli_json();
        if (!json)
                return KILN_EXIT_FAILURE;
        r = json->print_message(reply);
        if (r < 0) {
                kiln_bus_log_parse_error(r);
                return KILN_EXIT_FAILURE;
        }
        return KILN_EXIT_SUCCESS;
}

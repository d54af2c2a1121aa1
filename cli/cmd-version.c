/* SPDX-License-Identifier: Apache-2.0 */
/* kiln version: the client's version and kilnd's (Manager's Version property), as two lines or (--json)
 * a JSON object {"client", "service"}. Unlike `kiln --version` it asks the service. */
#include <errno.h>
#include <stdio.h>

#include "bus-client.h"
#include "cli-util.h"
#include "json-module.h"
#include "kiln-build-config.h"
#include "verbs.h"

/* Both versions as an a{sv} message, so that the JSON module writes the object (and escapes the
 * service's string) as it writes every other reply. */
static int print_json(sd_bus *bus, const char *service)
{
        g_autoptr(sd_bus_message) m = NULL;
        int r;

        r = kiln_cli_json_new_message(bus, &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "a{sv}", 2, "client", "s", KILN_VERSION, "service", "s", service);
        return kiln_cli_json_print_built(m, r);
}

int kiln_verb_version(int argc, char **argv)
{
        gboolean json = FALSE;
        g_autoptr(sd_bus) bus = NULL;
        g_autoptr(sd_bus_message) m = NULL, reply = NULL;
        const char *service;
        int r;

        const GOptionEntry entries[] = {
                {"json", 0, 0, G_OPTION_ARG_NONE, &json, "Print a JSON object", NULL},
                {NULL},
        };

        if (!kiln_parse_options("version", "", "Show the versions of kiln and of kilnd.", entries, &argc,
                                &argv))
                return KILN_EXIT_FAILURE;
        if (argc != 1)
                return kiln_usage_error("version", "unexpected argument '%s'", argv[1]);

        /* The client's own version first: it is worth having when kilnd cannot be reached. */
        if (!json)
                printf("Client: kiln %s\n", KILN_VERSION);
        fflush(stdout);

        r = kiln_bus_open(&bus);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = kiln_bus_new_call(bus, KILN_MANAGER_PATH, KILN_PROPERTIES_INTERFACE, "Get", &m);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = sd_bus_message_append(m, "ss", KILN_MANAGER_INTERFACE, "Version");
        if (r < 0) {
                kiln_bus_log_error(NULL, r, "Get");
                return KILN_EXIT_FAILURE;
        }
        r = kiln_bus_call(bus, m, 0, &reply);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = sd_bus_message_read(reply, "v", "s", &service);
        if (r < 0) {
                kiln_bus_log_parse_error(r);
                return KILN_EXIT_FAILURE;
        }

        if (json)
                return print_json(bus, service) < 0 ? KILN_EXIT_FAILURE : KILN_EXIT_SUCCESS;
        printf("Service: kilnd %s\n", service);
        return KILN_EXIT_SUCCESS;
}

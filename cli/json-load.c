/* SPDX-License-Identifier: Apache-2.0 */
/* Printing messages the client builds itself through kiln-cli-json.so (loaded by module-load.c). */
#include <errno.h>
#include <stdio.h>

#include "bus-client.h"
#include "json-module.h"

int kiln_cli_json_new_message(sd_bus *bus, sd_bus_message **ret)
{
        int r = sd_bus_message_new_method_call(bus, ret, KILN_BUS_NAME, KILN_MANAGER_PATH,
                                               KILN_MANAGER_INTERFACE, "Print");
        return r < 0 ? kiln_bus_log_parse_error(r) : r;
}

int kiln_cli_json_print_built(sd_bus_message *m, int r)
{
        const KilnCliJson *module = kiln_cli_json();

        if (r >= 0 && !module)
                return -ENOENT;
        /* Sealed (never sent), so that it can be read from the start. */
        if (r >= 0)
                r = sd_bus_message_seal(m, 1, 0);
        if (r >= 0)
                r = sd_bus_message_rewind(m, true);
        if (r >= 0)
                r = module->print_message(m);
        if (r < 0)
                kiln_bus_log_parse_error(r);
        return r;
}

/* SPDX-License-Identifier: Apache-2.0 */
#include "bus/bus-properties.h"

int kiln_bus_property_get_strv(G_GNUC_UNUSED sd_bus *bus, G_GNUC_UNUSED const char *path,
                               G_GNUC_UNUSED const char *interface, G_GNUC_UNUSED const char *property,
                               sd_bus_message *reply, void *userdata, G_GNUC_UNUSED sd_bus_error *error)
{
        char **const *member = userdata;

        return sd_bus_message_append_strv(reply, *member);
}

int kiln_bus_property_get_string(G_GNUC_UNUSED sd_bus *bus, G_GNUC_UNUSED const char *path,
                                 G_GNUC_UNUSED const char *interface, G_GNUC_UNUSED const char *property,
                                 sd_bus_message *reply, void *userdata, G_GNUC_UNUSED sd_bus_error *error)
{
        char *const *member = userdata;

        return sd_bus_message_append_basic(reply, 's', *member ? *member : "");
}

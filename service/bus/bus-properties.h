/* SPDX-License-Identifier: Apache-2.0 */
/* Property getters shared by the objects' vtables, and the size every reply must stay under. */
#pragma once

#include <systemd/sd-bus.h>

#include <glib.h>

/* No reply may be larger than the bus accepts: dbus-daemon's max_message_size is 32 MiB unless the bus
 * configuration lowers it (Debian's system.conf does not), and a connection that sends a larger message is
 * dropped, with it every run of every user. Listings that grow with what users keep are estimated against
 * this before they are built, with room for the header (docs/decisions.md has the arithmetic). */
#define KILN_BUS_REPLY_BYTES_MAX ((guint64)32 * 1024 * 1024 - 64 * 1024)

/* Getters for SD_BUS_PROPERTY with the member's offsetof(): sd-bus hands a getter the object's userdata
 * plus that offset. */
/* "as" of a char ** member (NULL: empty). */
int kiln_bus_property_get_strv(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error);
/* "s" of a char * member (NULL: ""); sd-bus's own getter refuses a NULL string. */
int kiln_bus_property_get_string(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error);

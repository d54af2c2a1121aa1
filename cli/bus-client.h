/* SPDX-License-Identifier: Apache-2.0 */
/* The client side of the bus: connecting, calling kilnd, reporting its errors, finding builders.
 * Every function here that fails has already printed the one "kiln: ..." line the user sees;
 * callers only return KILN_EXIT_FAILURE. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <glib.h>
#include <systemd/sd-bus.h>

#include "base/kiln-common.h"

#define KILN_PROPERTIES_INTERFACE "org.freedesktop.DBus.Properties"
#ifndef KILN_PROCESS_INTERFACE
#define KILN_PROCESS_INTERFACE "org.kiln.Builder1.Process"
#endif

/* Creating a builder imports its base tree, which can take long for big trees. */
#define KILN_TIMEOUT_CREATE_USEC (30ULL * 60 * 1000 * 1000)
/* Calls may wait for a polkit password dialog when we allow interaction: give the user time. */
#define KILN_TIMEOUT_INTERACTIVE_USEC (5ULL * 60 * 1000 * 1000)

G_DEFINE_AUTOPTR_CLEANUP_FUNC(sd_bus, sd_bus_flush_close_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(sd_bus_message, sd_bus_message_unref)
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(sd_bus_error, sd_bus_error_free)

/* One row of Manager.ListBuilders. */
typedef struct {
        char *id;
        char *name;
        uid_t owner;
        char *from;
        char *path;
} KilnBuilderInfo;

void kiln_builder_info_free(KilnBuilderInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnBuilderInfo, kiln_builder_info_free)

/* Connects to the system bus (DBUS_SYSTEM_BUS_ADDRESS is honoured). Calls on it allow interactive
 * authorization when kiln_may_ask_password(). */
int kiln_bus_open(sd_bus **ret);

/* Prints the error of a failed call: its message, or its name if the message is empty, or the
 * errno text with what we were doing. Returns r (negative). */
int kiln_bus_log_error(const sd_bus_error *error, int r, const char *what);

/* A method call to kilnd at path; the caller appends the arguments. When the connection allows
 * interactive authorization and the call may need it, the polkit agent is started first (once). */
int kiln_bus_new_call(sd_bus *bus, const char *path, const char *interface, const char *member,
                      sd_bus_message **ret);

/* Sends m and waits for the reply; timeout_usec 0 means the connection's default. */
int kiln_bus_call(sd_bus *bus, sd_bus_message *m, uint64_t timeout_usec, sd_bus_message **ret_reply);

/* Manager.METHOD(name_or_id) to an object path: GetBuilder (a builder's name, id or unique id
 * prefix), GetImage; errors are logged. */
int kiln_bus_resolve(sd_bus *bus, const char *method, const char *name_or_id, char **ret_path);
int kiln_bus_resolve_builder(sd_bus *bus, const char *name_or_id, char **ret_path);

/* Connects and resolves @name_or_id: what every verb on one builder starts with. */
int kiln_bus_open_builder(const char *name_or_id, sd_bus **ret_bus, char **ret_path);

/* Manager.ListBuilders; with only_own, just the builders the calling user owns. */
int kiln_bus_list_builders(sd_bus *bus, bool only_own, GPtrArray **ret);

/* Properties.Get of INTERFACE.PROPERTY; the reply is left positioned inside the variant, whose
 * contents must be `type`. The _builder_ forms are on the Builder interface. */
int kiln_bus_get_property(sd_bus *bus, const char *path, const char *interface, const char *property,
                          const char *type, sd_bus_message **ret_reply);
int kiln_bus_get_string(sd_bus *bus, const char *path, const char *interface, const char *property,
                        char **ret);
int kiln_bus_get_builder_property(sd_bus *bus, const char *path, const char *property, const char *type,
                                  sd_bus_message **ret_reply);
int kiln_bus_get_builder_string(sd_bus *bus, const char *path, const char *property, char **ret);
int kiln_bus_get_builder_strv(sd_bus *bus, const char *path, const char *property, char ***ret);

/* Prints that a reply did not have the expected shape. Returns r (negative). */
int kiln_bus_log_parse_error(int r);

/* Appends one {sv} entry to an open a{sv} container. */
int kiln_bus_append_option_string(sd_bus_message *m, const char *key, const char *value);
int kiln_bus_append_option_strv(sd_bus_message *m, const char *key, char **value);

/* SPDX-License-Identifier: Apache-2.0 */
/* org.kiln.Builder1.Builder on the bus: vtable, object lookup, node enumeration, and the signals
 * about builders (sent only to the clients that may see them). */
#pragma once

#include "objects/manager.h"

extern const sd_bus_vtable kiln_builder_vtable[];

int kiln_builder_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                             void **found, sd_bus_error *error);
int kiln_builder_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                                 sd_bus_error *error);

void kiln_builder_emit_added(KilnManager *manager, KilnBuilder *builder);
void kiln_builder_emit_removed(KilnManager *manager, KilnBuilder *builder);
void kiln_builder_emit_changed(KilnManager *manager, KilnBuilder *builder, KilnFieldMask fields);
/* A process of @builder started or ended: Processes changed; a Remove(force) waiting for the last
 * one completes. */
void kiln_builder_processes_changed(KilnManager *manager, KilnBuilder *builder);

/* Copy/CopyOut: Builder methods implemented in objects/copy-dbus.c (declared here, so that this face
 * does not include that file's: it uses the Manager, which uses this face). userdata is the
 * KilnBuilder. */
int kiln_copy_method_copy(sd_bus_message *m, void *userdata, sd_bus_error *error);
int kiln_copy_method_copy_out(sd_bus_message *m, void *userdata, sd_bus_error *error);
/* Copies in progress into or out of the builder @id: while there are any, it cannot be removed. */
guint kiln_copy_count_for_builder(const char *id);

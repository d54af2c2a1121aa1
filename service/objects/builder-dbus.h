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

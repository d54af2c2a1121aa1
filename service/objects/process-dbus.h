/* SPDX-License-Identifier: Apache-2.0 */
/* org.kiln.Builder1.Process on the bus: vtable, lookup and enumeration (a caller sees only its own
 * processes, as with builders), Wait/Kill/Resize, and the signals about processes. */
#pragma once

#include "objects/process.h"

#define KILN_PROCESS_PATH_PREFIX "/org/kiln/Builder1/process"
#define KILN_PROCESS_INTERFACE "org.kiln.Builder1.Process"

void kiln_process_manager_init(KilnManager *manager);
int kiln_process_register(KilnManager *manager);

void kiln_process_emit_added(KilnProcess *process);
void kiln_process_emit_removed(KilnProcess *process);
void kiln_process_emit_changed(KilnProcess *process);
/* Exited(i), after the properties changed. */
void kiln_process_emit_exited(KilnProcess *process);

/* The object paths of a builder's processes that have not exited, for Builder.Processes. */
char **kiln_process_paths_of(KilnManager *manager, const char *builder_id);

/* An upper bound of the bytes the processes @caller may see add to a GetManagedObjects reply. */
guint64 kiln_process_listing_bytes(KilnManager *manager, sd_bus_message *caller);

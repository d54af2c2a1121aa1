/* SPDX-License-Identifier: Apache-2.0 */
/* Builder.Copy and Builder.CopyOut on the bus: arguments, authorization (org.kiln.builder1.run, on the
 * caller's own builder), the builder's root file system held while the copy's thread works (copy.h),
 * the reply when it ends. */
#pragma once

#include <glib.h>
#include <systemd/sd-bus.h>

/* sd-bus method handlers; userdata is the KilnBuilder. */
int kiln_copy_method_copy(sd_bus_message *m, void *userdata, sd_bus_error *error);
int kiln_copy_method_copy_out(sd_bus_message *m, void *userdata, sd_bus_error *error);

/* Copies in progress into or out of the builder @id: while there are any, it cannot be removed. */
guint kiln_copy_count_for_builder(const char *id);

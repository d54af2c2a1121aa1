/* SPDX-License-Identifier: Apache-2.0 */
/* D-Bus values to JSON, generically, so a new property needs no change in the client. */
#pragma once

#include <json-glib/json-glib.h>
#include <systemd/sd-bus.h>

/* Reads one complete value at the current position of m and converts it:
 * strings, object paths and signatures → string; booleans → boolean; integers → number;
 * doubles → number; arrays and structs → array; dictionaries → object (keys as strings);
 * variants → their contents; file descriptors → null (a number means nothing to a reader). */
int kiln_bus_read_json(sd_bus_message *m, JsonNode **ret);

/* Prints node as indented JSON followed by a newline on stdout. */
void kiln_print_json(JsonNode *node);

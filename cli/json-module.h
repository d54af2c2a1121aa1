/* SPDX-License-Identifier: Apache-2.0 */
/* The client's JSON, in a module of its own (kiln-cli-json.so, json-module.c) that is loaded when a
 * verb reads or prints JSON. json-glib and the gio it brings would cost every other verb — `kiln run`
 * first — about a millisecond of loading. */
#pragma once

#include <glib.h>
#include <systemd/sd-bus.h>

#define KILN_CLI_JSON_MODULE "kiln-cli-json.so"
#define KILN_CLI_JSON_SYMBOL "kiln_cli_json_module"

typedef struct KilnCliJson {
        /* Reads one complete value at m's position and prints it as indented JSON on stdout:
         * strings, object paths and signatures → string; booleans → boolean; integers and doubles →
         * number; arrays and structs → array; dictionaries → object (keys as strings); variants →
         * their contents; file descriptors → null (a number means nothing to a reader). A new
         * property needs no change in the client. Returns a negative errno on a malformed message. */
        int (*print_message)(sd_bus_message *m);
        /* builders (KilnBuilderInfo) as an array of {id, name, owner, from, path} on stdout. */
        void (*print_builders)(GPtrArray *builders);
        /* @text as a JSON array of strings, or NULL if it is anything else. */
        char **(*parse_string_array)(const char *text);
} KilnCliJson;

/* The module, loaded on first use (module-load.c); NULL (and a message on stderr) when it cannot be. */
const KilnCliJson *kiln_cli_json(void);

/* A message built here only to be printed by the module as JSON (a reply's shape for data the client
 * put together), and its printing: sealed, rewound, printed. print_built takes the result of the
 * appends (a negative r is logged and returned as is). */
int kiln_cli_json_new_message(sd_bus *bus, sd_bus_message **ret);
int kiln_cli_json_print_built(sd_bus_message *m, int r);

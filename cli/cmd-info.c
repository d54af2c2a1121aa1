/* SPDX-License-Identifier: Apache-2.0 */
/* kiln info: Manager.GetInfo, as "Label: value" lines or (--json) a JSON object. The text form is
 * generic over the reply's a{sv} (strings, string lists, numbers, and dictionaries of numbers, one per
 * line below their key), so a key kilnd adds shows up without a client change, as in `inspect`. */
#include <inttypes.h>
#include <stdio.h>

#include "bus-client.h"
#include "cli-util.h"
#include "json-module.h"
#include "verbs.h"

/* "default_isolation" → "Default isolation". */
static char *label_of(const char *key)
{
        char *label = g_strdup(key);

        g_strdelimit(label, "_", ' ');
        if (*label)
                *label = g_ascii_toupper(*label);
        return label;
}

/* The value of one entry, the message inside its variant (of type @type). */
static int print_value(sd_bus_message *reply, const char *label, const char *type)
{
        int r;

        if (g_str_equal(type, "s")) {
                const char *s;

                r = sd_bus_message_read(reply, "s", &s);
                if (r >= 0)
                        printf("%s: %s\n", label, s);
        } else if (g_str_equal(type, "t")) {
                uint64_t t;

                r = sd_bus_message_read(reply, "t", &t);
                if (r >= 0)
                        printf("%s: %" PRIu64 "\n", label, t);
        } else if (g_str_equal(type, "as")) {
                g_auto(GStrv) strv = NULL;
                g_autofree char *joined = NULL;

                r = sd_bus_message_read_strv(reply, &strv);
                if (r >= 0) {
                        joined = g_strjoinv(", ", strv);
                        printf("%s: %s\n", label, joined);
                }
        } else if (g_str_equal(type, "a{st}")) {
                const char *name;
                uint64_t t;

                printf("%s:\n", label);
                r = sd_bus_message_enter_container(reply, 'a', "{st}");
                while (r >= 0 && (r = sd_bus_message_read(reply, "{st}", &name, &t)) > 0)
                        printf("  %s: %" PRIu64 "\n", name, t);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        } else /* a kind of value this client does not know: left out of the text form */
                r = sd_bus_message_skip(reply, type);
        return r;
}

static int print_text(sd_bus_message *reply)
{
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                g_autofree char *label = NULL;
                const char *key, *type;

                r = sd_bus_message_read(reply, "s", &key);
                if (r >= 0)
                        r = sd_bus_message_peek_type(reply, NULL, &type);
                if (r < 0)
                        break;
                label = label_of(key);
                r = sd_bus_message_enter_container(reply, 'v', type);
                if (r >= 0)
                        r = print_value(reply, label, type);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        return r;
}

int kiln_verb_info(int argc, char **argv)
{
        gboolean json = FALSE;
        g_autoptr(sd_bus) bus = NULL;
        g_autoptr(sd_bus_message) m = NULL, reply = NULL;
        int r;

        const GOptionEntry entries[] = {
                {"json", 0, 0, G_OPTION_ARG_NONE, &json, "Print a JSON object", NULL},
                {NULL},
        };

        if (!kiln_parse_options("info", "", "Show kilnd's runtimes, defaults, your storage and your limits.",
                                entries, &argc, &argv))
                return KILN_EXIT_FAILURE;
        if (argc != 1)
                return kiln_usage_error("info", "unexpected argument '%s'", argv[1]);

        r = kiln_bus_open(&bus);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = kiln_bus_new_call(bus, KILN_MANAGER_PATH, KILN_MANAGER_INTERFACE, "GetInfo", &m);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = kiln_bus_call(bus, m, 0, &reply);
        if (r < 0)
                return KILN_EXIT_FAILURE;

        if (json) {
                const KilnCliJson *module = kiln_cli_json();

                if (!module)
                        return KILN_EXIT_FAILURE;
                r = module->print_message(reply);
        } else
                r = print_text(reply);
        if (r < 0) {
                kiln_bus_log_parse_error(r);
                return KILN_EXIT_FAILURE;
        }
        return KILN_EXIT_SUCCESS;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* kiln mount / kiln umount: Builder.Mount and Builder.Unmount. */
#include <stdio.h>

#include "bus-client.h"
#include "cli-util.h"
#include "verbs.h"

/* Resolves the one BUILDER argument and calls a method without arguments on it. */
static int call_on_builder(const char *verb, const char *summary, const char *member, int argc, char **argv,
                           sd_bus_message **ret_reply)
{
        g_autoptr(sd_bus) bus = NULL;
        g_autoptr(sd_bus_message) m = NULL;
        g_autofree char *path = NULL;
        int r;

        if (!kiln_parse_options(verb, "BUILDER", summary, NULL, &argc, &argv))
                return -EINVAL;
        if (argc != 2) {
                kiln_usage_error(verb, "expected exactly one BUILDER");
                return -EINVAL;
        }

        r = kiln_bus_open_builder(argv[1], &bus, &path);
        if (r < 0)
                return r;
        r = kiln_bus_new_call(bus, path, KILN_BUILDER_INTERFACE, member, &m);
        if (r < 0)
                return r;
        return kiln_bus_call(bus, m, 0, ret_reply);
}

int kiln_verb_mount(int argc, char **argv)
{
        g_autoptr(sd_bus_message) reply = NULL;
        const char *mountpoint;
        int r;

        r = call_on_builder("mount", "Mount a builder's root file system on the host and print where.",
                            "Mount", argc, argv, &reply);
        if (r < 0)
                return KILN_EXIT_FAILURE;

        r = sd_bus_message_read(reply, "s", &mountpoint);
        if (r < 0) {
                kiln_bus_log_parse_error(r);
                return KILN_EXIT_FAILURE;
        }

        printf("%s\n", mountpoint);
        return KILN_EXIT_SUCCESS;
}

int kiln_verb_umount(int argc, char **argv)
{
        g_autoptr(sd_bus_message) reply = NULL;

        if (call_on_builder("umount", "Unmount a builder's root file system from the host.", "Unmount", argc,
                            argv, &reply) < 0)
                return KILN_EXIT_FAILURE;
        return KILN_EXIT_SUCCESS;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Loads kiln-cli-json.so: beside the kiln executable (the build tree, a copy of kiln with its module),
 * else from kiln's library directory. By full path, not through a run path: a sanitizer's dlopen
 * interceptor would make the run path its own. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>

#include "bus-client.h"
#include "kiln-build-config.h"
#include "json-module.h"

static void *open_module(GString *errors)
{
        g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);
        g_autofree char *exe_dir = exe ? g_path_get_dirname(exe) : NULL;
        const char *dirs[] = {exe_dir, KILN_LIBDIR};

        for (size_t i = 0; i < G_N_ELEMENTS(dirs); i++) {
                g_autofree char *path = NULL;
                void *module;
                if (!dirs[i])
                        continue;
                path = g_build_filename(dirs[i], KILN_CLI_JSON_MODULE, NULL);
                module = dlopen(path, RTLD_NOW | RTLD_LOCAL);
                if (module)
                        return module;
                g_string_append_printf(errors, "%s%s", errors->len ? "; " : "", dlerror());
        }
        return NULL;
}

const KilnCliJson *kiln_cli_json(void)
{
        static const KilnCliJson *json;
        g_autoptr(GString) errors = NULL;
        void *module;

        if (json)
                return json;
        errors = g_string_new(NULL);
        module = open_module(errors);
        if (module && !(json = dlsym(module, KILN_CLI_JSON_SYMBOL)))
                g_string_append(errors, dlerror());
        if (!json)
                fprintf(stderr, "kiln: JSON support is missing: %s\n", errors->str);
        return json;
}

int kiln_cli_json_new_message(sd_bus *bus, sd_bus_message **ret)
{
        int r = sd_bus_message_new_method_call(bus, ret, KILN_BUS_NAME, KILN_MANAGER_PATH,
                                               KILN_MANAGER_INTERFACE, "Print");
        return r < 0 ? kiln_bus_log_parse_error(r) : r;
}

int kiln_cli_json_print_built(sd_bus_message *m, int r)
{
        const KilnCliJson *module = kiln_cli_json();

        if (r >= 0 && !module)
                return -ENOENT;
        /* Sealed (never sent), so that it can be read from the start. */
        if (r >= 0)
                r = sd_bus_message_seal(m, 1, 0);
        if (r >= 0)
                r = sd_bus_message_rewind(m, true);
        if (r >= 0)
                r = module->print_message(m);
        if (r < 0)
                kiln_bus_log_parse_error(r);
        return r;
}

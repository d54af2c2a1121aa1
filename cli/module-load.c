/* SPDX-License-Identifier: Apache-2.0 */
/* Loads the client's modules (kiln-cli-json.so, kiln-cli-tar.so): beside the kiln executable (the build
 * tree, a copy of kiln with its modules), else from kiln's library directory. By full path, not through a
 * run path: a sanitizer's dlopen interceptor would make the run path its own. */
#include <dlfcn.h>
#include <stdio.h>

#include "kiln-build-config.h"
#include "json-module.h"
#include "tar-module.h"

static void *open_module(const char *file, GString *errors)
{
        g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);
        g_autofree char *exe_dir = exe ? g_path_get_dirname(exe) : NULL;
        const char *dirs[] = {exe_dir, KILN_LIBDIR};

        for (size_t i = 0; i < G_N_ELEMENTS(dirs); i++) {
                g_autofree char *path = NULL;
                void *module;
                if (!dirs[i])
                        continue;
                path = g_build_filename(dirs[i], file, NULL);
                module = dlopen(path, RTLD_NOW | RTLD_LOCAL);
                if (module)
                        return module;
                g_string_append_printf(errors, "%s%s", errors->len ? "; " : "", dlerror());
        }
        return NULL;
}

/* @symbol of module @file, or NULL after "kiln: @what support is missing: ..." on stderr. */
static const void *module_symbol(const char *file, const char *symbol, const char *what)
{
        g_autoptr(GString) errors = g_string_new(NULL);
        void *module = open_module(file, errors);
        const void *found = NULL;

        if (module && !(found = dlsym(module, symbol)))
                g_string_append(errors, dlerror());
        if (!found)
                fprintf(stderr, "kiln: %s support is missing: %s\n", what, errors->str);
        return found;
}

const KilnCliJson *kiln_cli_json(void)
{
        static const KilnCliJson *json;

        if (!json)
                json = module_symbol(KILN_CLI_JSON_MODULE, KILN_CLI_JSON_SYMBOL, "JSON");
        return json;
}

const KilnCliTar *kiln_cli_tar(void)
{
        static const KilnCliTar *tar;

        if (!tar)
                tar = module_symbol(KILN_CLI_TAR_MODULE, KILN_CLI_TAR_SYMBOL, "Tar");
        return tar;
}

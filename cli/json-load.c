/* SPDX-License-Identifier: Apache-2.0 */
/* Loads kiln-cli-json.so: found through kiln's run path (next to the executable in the build tree,
 * kiln's library directory once installed). */
#include <dlfcn.h>
#include <stdio.h>

#include "json-module.h"

const KilnCliJson *kiln_cli_json(void)
{
        static const KilnCliJson *json;
        void *module;

        if (json)
                return json;
        module = dlopen(KILN_CLI_JSON_MODULE, RTLD_NOW | RTLD_LOCAL);
        if (module)
                json = dlsym(module, KILN_CLI_JSON_SYMBOL);
        if (!json)
                fprintf(stderr, "kiln: JSON support is missing: %s\n", dlerror());
        return json;
}

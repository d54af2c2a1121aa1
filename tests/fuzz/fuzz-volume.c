/* SPDX-License-Identifier: Apache-2.0 */
/* One volume, "SRC:DST[:OPTIONS]" (-v, a builder's volumes): kiln_validate_volume() (validate.c), and
 * a volume it accepts through the spec generator as service/run.c's add_volume() would
 * (kiln_spec_generate(), spec-mounts.c). The input is the value itself. */
#include "fuzz-common.h"
#include "fuzz-spec.h"
#include "validate.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        fuzz_setup_logging();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autofree char *value = fuzz_string(data, size);
        g_autoptr(GError) error = NULL;
        g_autoptr(GPtrArray) keep = g_ptr_array_new_with_free_func((GDestroyNotify)g_strfreev);
        g_auto(GStrv) parts = NULL;
        KilnMount mount;

        if (!kiln_validate_volume("volumes[0]", value, &error)) {
                if (!error || !strstr(error->message, "volumes[0]"))
                        abort(); /* a refusal names the argument */
                return 0;
        }
        parts = g_strsplit(value, ":", 3);
        mount = fuzz_bind_mount(keep, parts[0], parts[1], parts[2]);
        fuzz_generate(&mount, 1);
        return 0;
}

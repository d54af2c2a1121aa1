/* SPDX-License-Identifier: Apache-2.0 */
/* One volume, "SRC:DST[:OPTIONS]" (-v, a builder's volumes): kiln_validate_volume() (validate.c, what
 * Configure checks) and kiln_run_volume_parse() (run-volumes.c, what a run binds), and a volume the
 * run's parser accepts through the spec generator as service/run/run.c's add_volume() would
 * (kiln_spec_generate(), spec-mounts.c). A refusal names the argument. The input is the value. */
#include "fuzz-common.h"
#include "fuzz-spec.h"
#include "base/validate.h"

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
        g_autoptr(KilnRunVolume) v = NULL;
        KilnMount mount;

        if (!kiln_validate_volume("volumes[0]", value, &error) &&
            (!error || !strstr(error->message, "volumes[0]")))
                abort(); /* a refusal names the argument */
        g_clear_error(&error);
        v = kiln_run_volume_parse("volumes[0]", value, &error);
        if (!v) {
                if (!error || !strstr(error->message, "volumes[0]"))
                        abort();
                return 0;
        }
        mount = fuzz_volume_mount(keep, v);
        fuzz_generate(&mount, 1);
        return 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* One --mount value ("type=bind,src=S,dst=D,ro,..."): kiln_run_mount_parse() (run-volumes.c), the
 * one parser of mounts for authorization and preparation; a value it accepts goes, as
 * service/run/run.c's add_volume() does, through the spec generator, whose allow-list checks each option
 * (kiln_spec_generate(), spec-mounts.c). A refusal must name the argument; an accepted mount must
 * carry none of the overlay keys a caller could use to name other directories. The input is the
 * value itself. */
#include "fuzz-common.h"
#include "fuzz-spec.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        fuzz_setup_logging();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autofree char *value = fuzz_string(data, size);
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnRunVolume) v = kiln_run_mount_parse("mounts[0]", value, &error);
        g_autoptr(GPtrArray) keep = g_ptr_array_new_with_free_func((GDestroyNotify)g_strfreev);
        KilnMount mount;

        if (!v) {
                if (!error || !strstr(error->message, "mounts[0]"))
                        abort(); /* a refusal names the argument */
                return 0;
        }
        if (!v->destination || !g_path_is_absolute(v->destination))
                abort();
        for (char **p = v->options; p && *p; p++)
                if (g_str_has_prefix(*p, "lowerdir=") || g_str_has_prefix(*p, "upperdir=") ||
                    g_str_has_prefix(*p, "workdir="))
                        abort();
        mount = fuzz_volume_mount(keep, v);
        fuzz_generate(&mount, 1);
        return 0;
}

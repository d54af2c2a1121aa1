/* SPDX-License-Identifier: Apache-2.0 */
/* One --mount value ("type=bind,src=S,dst=D,ro,..."): kiln_mount_option_parse() (run-options.c),
 * then, as service/run.c's add_mount_option() does, the parsed mount through the spec generator,
 * whose allow-list checks each option (kiln_spec_generate(), spec-mounts.c). The input is the value
 * itself. */
#include "fuzz-common.h"
#include "fuzz-spec.h"
#include "run-options.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        fuzz_setup_logging();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autofree char *value = fuzz_string(data, size);
        g_auto(KilnMountOption) m = {0};
        g_autoptr(GPtrArray) keep = g_ptr_array_new_with_free_func((GDestroyNotify)g_strfreev);
        KilnMount mount;

        kiln_mount_option_parse(value, &m);
        if (!m.type || !m.options)
                abort();
        if (!m.destination || !g_path_is_absolute(m.destination))
                return 0;
        if (g_str_equal(m.type, "tmpfs")) {
                mount = (KilnMount){.type = KILN_MOUNT_TMPFS,
                                    .destination = m.destination,
                                    .arg = "mounts[0]",
                                    .options = (const char *const *)m.options};
        } else if (g_str_equal(m.type, "bind") && m.source && g_path_is_absolute(m.source)) {
                g_autofree char *joined = g_strjoinv(",", m.options);
                mount = fuzz_bind_mount(keep, m.source, m.destination, joined);
        } else {
                return 0;
        }
        fuzz_generate(&mount, 1);
        return 0;
}

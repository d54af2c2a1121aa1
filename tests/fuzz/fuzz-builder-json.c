/* SPDX-License-Identifier: Apache-2.0 */
/* builder.json, a builder's metadata: kiln_builder_from_json() (builder.c, with
 * kiln_builder_config_from_json() of builder-config.c). kilnd writes it, from values a caller set
 * (name, from, the whole configuration), and reads it back at every start; a document it accepts
 * must also survive being written and read again unchanged, or a caller's value would change or be
 * lost across a restart. The input is the file. */
#include "objects/builder.h"
#include "fuzz-common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        fuzz_setup_logging();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autofree char *json = fuzz_string(data, size);
        g_autoptr(KilnBuilder) b = NULL, again = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *first = NULL, *second = NULL;

        b = kiln_builder_from_json(json, &error);
        if (!b) {
                if (!error || !*error->message)
                        abort();
                return 0;
        }
        first = kiln_builder_to_json(b);
        again = kiln_builder_from_json(first, &error);
        if (!again) {
                fprintf(stderr, "written metadata does not read back: %s\n", error->message);
                abort();
        }
        second = kiln_builder_to_json(again);
        if (!g_str_equal(first, second)) {
                fprintf(stderr, "metadata changed across a write and a read:\n%s\n---\n%s\n", first, second);
                abort();
        }
        return 0;
}

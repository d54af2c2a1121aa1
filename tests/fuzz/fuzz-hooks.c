/* SPDX-License-Identifier: Apache-2.0 */
/* A hooks.d file (spec/hooks.h): kiln_hook_file_parse(). A refusal carries a message; an accepted
 * file is matched against a run whose annotations and command come from the input too, and its hooks
 * go through kiln_spec_generate(), which must take them (stage known, absolute path). The input is
 * the file's bytes, then optionally 0x1d and "command NEWLINE annotation NEWLINE ...". */
#include "fuzz-common.h"
#include "fuzz-spec.h"
#include "spec/hooks.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        fuzz_setup_logging();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const uint8_t *sep = memchr(data, 0x1d, size);
        gsize file_size = sep ? (gsize)(sep - data) : size;
        g_autofree char *target_text =
                sep ? g_strndup((const char *)sep + 1, size - file_size - 1) : g_strdup("/bin/sh");
        g_auto(GStrv) lines = g_strsplit(target_text, "\n", 64);
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnHookFile) f = NULL;
        g_autoptr(GArray) hooks = g_array_new(FALSE, TRUE, sizeof(KilnHook));
        g_autoptr(JsonNode) spec = NULL;
        KilnHookTarget target = {.command = lines[0], .has_bind_mounts = size % 2};
        KilnSpecInput in;

        /* The bytes before 0x1d, NULs included: a file is read whole. */
        f = kiln_hook_file_parse((const char *)data, file_size, &error);
        if (!f) {
                if (!error || !error->message || !*error->message)
                        abort();
                return 0;
        }
        target.annotations = lines[0] ? (const char *const *)lines + 1 : NULL;
        if (kiln_hook_file_matches(f, &target))
                kiln_hook_file_add(f, hooks);
        /* Whatever matched or not, the file's hooks must be acceptable to the generator. */
        if (hooks->len == 0)
                kiln_hook_file_add(f, hooks);
        if (hooks->len == 0)
                abort(); /* an accepted file has at least one stage */
        fuzz_spec_input(&in);
        in.hooks = (const KilnHook *)hooks->data;
        in.n_hooks = hooks->len;
        spec = kiln_spec_generate(&in, &error);
        if (!spec) {
                fprintf(stderr, "accepted hooks refused by the spec: %s\n", error->message);
                abort();
        }
        return 0;
}

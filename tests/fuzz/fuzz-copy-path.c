/* SPDX-License-Identifier: Apache-2.0 */
/* The names and the mode of a copy: kiln_copy_entry_path() on a tar entry's name and
 * kiln_copy_parse_mode() on a --chmod value (service/copy/copy-path.c). An accepted name must be
 * relative, with no "..", "." or empty component, no component longer than NAME_MAX; a refusal
 * names the argument ("source", "chmod"). An accepted mode is at most 07777. The input is the name
 * and the mode at once. */
#include <limits.h>

#include "copy/copy.h"
#include "fuzz-common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        fuzz_setup_logging();
        return 0;
}

static void check_path(const char *value)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *rel = kiln_copy_entry_path(value, &error);
        g_auto(GStrv) parts = NULL;

        if (!rel) {
                if (!error || !strstr(error->message, "source"))
                        abort(); /* a refusal names the argument */
                return;
        }
        if (error || rel[0] == '/' || strstr(rel, "//") || g_str_has_suffix(rel, "/"))
                abort();
        if (!*rel)
                return; /* the destination itself */
        parts = g_strsplit(rel, "/", -1);
        for (char **p = parts; *p; p++)
                if (!**p || g_str_equal(*p, ".") || g_str_equal(*p, "..") || strlen(*p) > NAME_MAX)
                        abort();
}

static void check_mode(const char *value)
{
        g_autoptr(GError) error = NULL;
        guint32 mode = 0xffffffffu;

        if (!kiln_copy_parse_mode("chmod", value, &mode, &error)) {
                if (!error || !strstr(error->message, "chmod"))
                        abort();
                return;
        }
        if (error || mode > 07777)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autofree char *value = fuzz_string(data, size);

        check_path(value);
        check_mode(value);
        return 0;
}

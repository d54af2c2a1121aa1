/* SPDX-License-Identifier: Apache-2.0 */
/* A run's user against the image's /etc/passwd and /etc/group, both the caller's files:
 * kiln_resolve_user() (passwd.c), which calls every lookup of that parser. The input is
 * "SPEC\nPASSWD-CONTENT\x1dGROUP-CONTENT" (0x1d, the group separator, does not occur in either
 * file; without it there is no /etc/group). The group of SPEC (after ':'), or SPEC itself, then goes
 * through kiln_group_add_resolve() as a group_add entry (run parity). */
#include <stdio.h>
#include <string.h>

#include "fuzz-common.h"
#include "base/passwd.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        fuzz_setup_logging();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const uint8_t *files, *group;
        size_t files_size, group_size;
        g_autofree char *spec = fuzz_cut(data, size, '\n', &files, &files_size);
        g_autofree char *passwd_copy = NULL, *group_copy = NULL;
        g_autoptr(GArray) gids = NULL;
        g_autofree char *home = NULL;
        g_autoptr(GError) error = NULL;
        guint32 uid, gid;
        gsize passwd_len;

        if (!files)
                return 0;
        /* The files may hold NUL bytes: the parser gets their exact bytes and lengths, in copies of
         * exactly that size, so that AddressSanitizer sees a read past the end. */
        group = memchr(files, '\x1d', files_size);
        passwd_len = group ? (gsize)(group - files) : files_size;
        passwd_copy = g_memdup2(files, passwd_len);
        if (group) {
                group++;
                group_size = files_size - passwd_len - 1;
                group_copy = g_memdup2(group, group_size);
        } else {
                group_size = 0;
        }
        if (!kiln_resolve_user(spec, passwd_copy, passwd_len, group_copy, group_size, &uid, &gid, &gids,
                               &home, &error)) {
                if (!error || !*error->message)
                        abort();
                return 0;
        }
        /* The contract: the primary gid first, a home always. */
        if (!gids || gids->len < 1 || g_array_index(gids, guint32, 0) != gid || !home)
                abort();
        {
                const char *colon = strchr(spec, ':');
                guint before = gids->len;

                if (kiln_group_add_resolve(group_copy, group_size, "group_add[0]", colon ? colon + 1 : spec,
                                           gids, &error)) {
                        /* At most one gid more, never a duplicate. */
                        if (gids->len > before + 1)
                                abort();
                        for (guint i = 0; gids->len > before && i < before; i++)
                                if (g_array_index(gids, guint32, i) == g_array_index(gids, guint32, before))
                                        abort();
                } else if (!error || !strstr(error->message, "group_add[0]")) {
                        abort();
                }
        }
        return 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* A run's user against the image's /etc/passwd and /etc/group, both the caller's files:
 * kiln_resolve_user() (passwd.c), which calls every lookup of that parser. The input is
 * "SPEC\nPASSWD-CONTENT\x1dGROUP-CONTENT" (0x1d, the group separator, does not occur in either
 * file; without it there is no /etc/group). */
#include <stdio.h>

#include "fuzz-common.h"
#include "passwd.h"

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
        g_autofree char *passwd = files ? fuzz_cut(files, files_size, '\x1d', &group, &group_size) : NULL;
        g_autofree char *group_copy = NULL;
        g_autoptr(GArray) gids = NULL;
        g_autofree char *home = NULL;
        g_autoptr(GError) error = NULL;
        guint32 uid, gid;
        gsize passwd_len;

        if (!files)
                return 0;
        /* The files may hold NUL bytes: hand over the exact bytes, in exact-size copies so that
         * AddressSanitizer sees any read past their end. */
        passwd_len = group ? (gsize)(group - 1 - files) : files_size;
        g_free(passwd);
        passwd = g_memdup2(files, passwd_len);
        if (group)
                group_copy = g_memdup2(group, group_size);
        if (!kiln_resolve_user(spec, passwd, passwd_len, group_copy, group_copy ? group_size : 0, &uid, &gid,
                               &gids, &home, &error)) {
                if (!error || !*error->message)
                        abort();
                return 0;
        }
        /* The contract: the primary gid first, a home always. */
        if (!gids || gids->len < 1 || g_array_index(gids, guint32, 0) != gid || !home)
                abort();
        return 0;
}

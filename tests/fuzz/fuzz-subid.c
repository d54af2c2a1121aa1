/* SPDX-License-Identifier: Apache-2.0 */
/* /etc/subuid and /etc/subgid contents ("NAME_OR_UID:START:COUNT" lines): kiln_subid_ranges_for()
 * and kiln_subid_ranges_all() (userns.c). The files are the administrator's, but a user's own entry
 * is what the ids of that user's runs come from, so a range must never be empty or reach
 * 4294967295. The input is the file's contents. */
#include "fuzz-common.h"
#include "storage/userns.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        fuzz_setup_logging();
        return 0;
}

static void check_ranges(GArray *ranges)
{
        for (guint i = 0; ranges && i < ranges->len; i++) {
                const KilnIdRange *r = &g_array_index(ranges, KilnIdRange, i);
                if (r->count == 0 || (guint64)r->start + r->count > G_MAXUINT32)
                        abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* An exact-size copy: the parser takes a length, and must not read past it. */
        g_autofree char *contents = g_memdup2(data, size);
        g_autoptr(GArray) mine = kiln_subid_ranges_for(contents, size, "kiln-alice", 1000);
        g_autoptr(GArray) all = kiln_subid_ranges_all(contents, size);

        check_ranges(mine);
        check_ranges(all);
        return 0;
}

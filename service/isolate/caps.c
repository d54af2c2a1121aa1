/* SPDX-License-Identifier: Apache-2.0 */
/* Capabilities, in the order the kernel needs: the bounding set shrinks first (that needs CAP_SETPCAP,
 * still held), then — after the user switch, see user.c — effective and permitted are set with libcap,
 * the inheritable set is emptied and the ambient set cleared. Nothing here can raise a capability the
 * process does not hold: capset(2) only ever narrows. */
#include <sys/capability.h>
#include <sys/prctl.h>

#include "isolate.h"

gboolean iso_cap_from_name(const char *name, int *cap)
{
        cap_value_t v;

        /* libcap takes "CAP_CHOWN" and "cap_chown"; a bare number is not a name. */
        if (g_ascii_strncasecmp(name, "CAP_", 4) != 0 || cap_from_name(name, &v) < 0)
                return FALSE;
        *cap = v;
        return TRUE;
}

int iso_cap_last(void)
{
        static int last = -1;

        if (last < 0)
                last = (int)cap_max_bits() - 1;
        return last;
}

gboolean iso_caps_drop_bounding(guint64 keep, GError **error)
{
        for (int cap = 0; cap <= iso_cap_last(); cap++) {
                if (keep & ((guint64)1 << cap))
                        continue;
                /* Safe: PR_CAPBSET_DROP can only remove a capability, for this process and whatever it
                 * execs; a capability dropped here can never come back. */
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
                        int saved = errno;
                        char *name = cap_to_name(cap);
                        /* libcap's strings carry a header of its own: cap_free, never free/g_free. */
                        iso_fail_errno(error, saved, "prctl PR_CAPBSET_DROP %s", name ? name : "?");
                        cap_free(name);
                        return FALSE;
                }
        }
        return TRUE;
}

static gboolean set_flag(cap_t caps, cap_flag_t flag, guint64 mask, GError **error)
{
        cap_value_t list[64];
        int n = 0;

        for (int cap = 0; cap <= iso_cap_last() && cap < 64; cap++)
                if (mask & ((guint64)1 << cap))
                        list[n++] = cap;
        if (n > 0 && cap_set_flag(caps, flag, n, list, CAP_SET) < 0)
                return iso_fail_errno(error, errno, "cap_set_flag");
        return TRUE;
}

gboolean iso_caps_apply(const IsoSpec *spec, GError **error)
{
        cap_t caps = cap_init(); /* all clear: the inheritable set stays empty */
        gboolean ok;

        if (!caps)
                return iso_fail_errno(error, errno, "cap_init");
        ok = set_flag(caps, CAP_PERMITTED, spec->cap_permitted, error) &&
             set_flag(caps, CAP_EFFECTIVE, spec->cap_effective, error);
        /* Safe: the sets asked for lie within the bounding set already applied, and capset cannot add to
         * the permitted set; it fails rather than grant. */
        if (ok && cap_set_proc(caps) < 0) {
                int saved = errno;
                char *text = cap_to_text(caps, NULL);
                /* libcap's strings carry a header of its own: cap_free, never free/g_free. */
                ok = iso_fail_errno(error, saved, "capset '%s'", text ? text : "?");
                cap_free(text);
        }
        cap_free(caps);
        if (!ok)
                return FALSE;
        /* No ambient capability may survive into the command (spec-read.c refuses asking for one). */
        if (cap_reset_ambient() < 0 && errno != EINVAL)
                return iso_fail_errno(error, errno, "prctl PR_CAP_AMBIENT_CLEAR_ALL");
        return TRUE;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* The process user: the user namespace maps (written by the parent, from outside), becoming root of a
 * new user namespace, and the switch to process.user with its groups. */
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "isolate.h"

static char *format_map(const IsoIdMap *maps, gsize n)
{
        GString *s = g_string_new(NULL);

        for (gsize i = 0; i < n; i++)
                g_string_append_printf(s, "%u %u %u\n", maps[i].container_id, maps[i].host_id, maps[i].size);
        return g_string_free(s, FALSE);
}

gboolean iso_user_write_maps(pid_t pid, const IsoSpec *spec, GError **error)
{
        g_autofree char *dir = g_strdup_printf("/proc/%d", (int)pid);
        g_autofree char *uid_map = format_map(spec->uid_maps, spec->n_uid_maps);
        g_autofree char *gid_map = format_map(spec->gid_maps, spec->n_gid_maps);
        _cleanup_close_ int dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        g_autoptr(GError) local = NULL;

        if (dirfd < 0)
                return iso_fail_errno(error, errno, "open '%s'", dir);
        /* Safe: the parent writes the maps of its own child, which waits for them; the kernel checks that
         * the parent holds CAP_SETUID / CAP_SETGID over every host id it maps. The init never writes its
         * own maps. "setgroups" stays "allow" so that additionalGids can be set: the map is written by a
         * privileged parent, the case the kernel allows it for. */
        if (!iso_write_file(dirfd, "uid_map", uid_map, &local) ||
            !iso_write_file(dirfd, "gid_map", gid_map, &local))
                return iso_fail(error, "user namespace of process %d: %s", (int)pid, local->message);
        return TRUE;
}

static bool maps_root(const IsoIdMap *maps, gsize n)
{
        for (gsize i = 0; i < n; i++)
                if (maps[i].container_id == 0)
                        return true;
        return false;
}

gboolean iso_user_become_ns_root(const IsoSpec *spec, GError **error)
{
        if (!spec->ns[ISO_NS_USER].present || spec->ns[ISO_NS_USER].path)
                return TRUE;
        /* In the new user namespace the init holds every capability, but its ids are still the host's
         * (unmapped: they show as the overflow id). Becoming the namespace's root gives what it creates
         * (the /dev tmpfs, device files) a mapped owner. Nothing is gained: the ids are the ones the
         * parent mapped for the container. */
        if (maps_root(spec->gid_maps, spec->n_gid_maps) && setresgid(0, 0, 0) < 0)
                return iso_fail_errno(error, errno, "setresgid 0 in the user namespace");
        if (maps_root(spec->uid_maps, spec->n_uid_maps) && setresuid(0, 0, 0) < 0)
                return iso_fail_errno(error, errno, "setresuid 0 in the user namespace");
        return TRUE;
}

gboolean iso_user_switch(const IsoSpec *spec, GError **error)
{
        /* Keep the permitted set across the switch to a non-zero uid: caps.c narrows it right after
         * to exactly the spec's sets (and the kernel recomputes them at execve for a non-root user). */
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
                return iso_fail_errno(error, errno, "prctl PR_SET_KEEPCAPS");
        /* Safe: the supplementary groups are replaced, never added to: none of the parent's groups
         * survives, with or without additionalGids. */
        if (setgroups(spec->n_groups, spec->groups) < 0) {
                g_autoptr(GString) list = g_string_new(NULL);
                for (gsize i = 0; i < spec->n_groups; i++)
                        g_string_append_printf(list, "%s%u", i ? "," : "", (unsigned)spec->groups[i]);
                return iso_fail_errno(error, errno, "setgroups [%s]", list->str);
        }
        if (setresgid(spec->gid, spec->gid, spec->gid) < 0)
                return iso_fail_errno(error, errno, "setresgid %u", (unsigned)spec->gid);
        if (setresuid(spec->uid, spec->uid, spec->uid) < 0)
                return iso_fail_errno(error, errno, "setresuid %u", (unsigned)spec->uid);
        if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
                return iso_fail_errno(error, errno, "prctl PR_SET_KEEPCAPS");
        return TRUE;
}

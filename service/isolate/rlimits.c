/* SPDX-License-Identifier: Apache-2.0 */
/* process.rlimits, set by the parent on the init with prlimit(2) before the init goes on: the parent
 * still has CAP_SYS_RESOURCE in the initial user namespace, so a hard limit can be raised even when the
 * init lives in a user namespace of its own (as runc does it). */
#include <sys/resource.h>

#include "isolate.h"

static const struct {
        const char *name;
        int resource;
} rlimit_table[] = {
        {"RLIMIT_AS", RLIMIT_AS},
        {"RLIMIT_CORE", RLIMIT_CORE},
        {"RLIMIT_CPU", RLIMIT_CPU},
        {"RLIMIT_DATA", RLIMIT_DATA},
        {"RLIMIT_FSIZE", RLIMIT_FSIZE},
        {"RLIMIT_LOCKS", RLIMIT_LOCKS},
        {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},
        {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE},
        {"RLIMIT_NICE", RLIMIT_NICE},
        {"RLIMIT_NOFILE", RLIMIT_NOFILE},
        {"RLIMIT_NPROC", RLIMIT_NPROC},
        {"RLIMIT_RSS", RLIMIT_RSS},
        {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},
        {"RLIMIT_RTTIME", RLIMIT_RTTIME},
        {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
        {"RLIMIT_STACK", RLIMIT_STACK},
};

gboolean iso_rlimit_from_name(const char *name, const char **static_name, int *resource)
{
        for (size_t i = 0; i < G_N_ELEMENTS(rlimit_table); i++)
                if (g_str_equal(name, rlimit_table[i].name)) {
                        *static_name = rlimit_table[i].name;
                        *resource = rlimit_table[i].resource;
                        return TRUE;
                }
        return FALSE;
}

gboolean iso_rlimits_apply(pid_t pid, const IsoSpec *spec, GError **error)
{
        for (gsize i = 0; i < spec->n_rlimits; i++) {
                const IsoRlimit *r = &spec->rlimits[i];
                struct rlimit limit = {.rlim_cur = r->soft, .rlim_max = r->hard};

                /* Safe: a limit only constrains the init and what it execs; the spec is kilnd's. */
                if (prlimit(pid, (__rlimit_resource_t)r->resource, &limit, NULL) < 0)
                        return iso_fail_errno(error, errno,
                                              "prlimit %s=%" G_GUINT64_FORMAT ":%" G_GUINT64_FORMAT
                                              " on process %d",
                                              r->name, r->soft, r->hard, (int)pid);
        }
        return TRUE;
}

/* SPDX-License-Identifier: Apache-2.0 */
#include <sys/resource.h>

#include "base/fd-limit.h"

/* Written once before any thread or child exists, read only afterwards (also in children). */
static struct rlimit original = {RLIM_INFINITY, RLIM_INFINITY};
static gboolean raised;

void kiln_fd_limit_raise(void)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
                g_warning("Cannot read the descriptor limit: %s", g_strerror(errno));
                return;
        }
        original = rl;
        if (rl.rlim_cur == rl.rlim_max)
                return;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
                g_warning("Cannot raise the descriptor limit to %llu: %s", (unsigned long long)rl.rlim_max,
                          g_strerror(errno));
                return;
        }
        raised = TRUE;
        g_debug("Descriptor limit raised from %llu to %llu", (unsigned long long)original.rlim_cur,
                (unsigned long long)rl.rlim_max);
}

void kiln_fd_limit_child_setup(G_GNUC_UNUSED gpointer data)
{
        /* Nothing to undo when it was not raised; the hard limit stays as it was (never lowered). */
        if (raised)
                (void)setrlimit(RLIMIT_NOFILE, &original);
}

void kiln_fd_limit_apply(GSubprocessLauncher *launcher)
{
        if (raised)
                g_subprocess_launcher_set_child_setup(launcher, kiln_fd_limit_child_setup, NULL, NULL);
}

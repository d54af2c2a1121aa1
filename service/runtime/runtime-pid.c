/* SPDX-License-Identifier: Apache-2.0 */
/* Waiting for a container's process: a pidfd on the GLib loop, reaped with waitid(P_PIDFD) — never by
 * polling the runtime's `state`. */
#include <poll.h>
#include <signal.h>
#include <sys/pidfd.h>
#include <sys/wait.h>

#include <glib-unix.h>

#include "base/kiln-common.h"
#include "base/reaper.h"
#include "runtime/runtime-private.h"

struct KilnPidWatch {
        pid_t pid;
        char *what;
        int pidfd; /* -1 without pidfd support */
        GSource *source;
        gboolean alive;   /* not reaped yet */
        gboolean claimed; /* with the reaper, which must leave the pid to us */
        KilnPidExited exited;
        gpointer data;
};

static int status_from_wait(int wait_status)
{
        if (WIFEXITED(wait_status))
                return WEXITSTATUS(wait_status);
        if (WIFSIGNALED(wait_status))
                return 128 + WTERMSIG(wait_status);
        return -1;
}

static void unwatch(KilnPidWatch *w)
{
        if (w->source) {
                g_source_destroy(w->source);
                g_source_unref(w->source);
                w->source = NULL;
        }
        kiln_close_fdp(&w->pidfd);
        w->pidfd = -1;
        w->alive = FALSE;
        /* Reaped by us (or GLib), or left: an orphan the reaper may reap when it exits. */
        if (w->claimed)
                kiln_reaper_unclaim(w->pid);
        w->claimed = FALSE;
}

/* Reaps the process if it exited: 1 with *status (or *error), 0 while it runs. */
static int reap(KilnPidWatch *w, int *status, GError **error)
{
        siginfo_t info = {0};
        int r, wait_status = 0;

        if (w->pidfd >= 0) {
                r = waitid((idtype_t)P_PIDFD, (id_t)w->pidfd, &info, WEXITED | WNOHANG);
                if (r == 0 && info.si_pid == 0)
                        return 0;
                if (r == 0)
                        *status = info.si_code == CLD_EXITED ? info.si_status : 128 + info.si_status;
        } else {
                r = waitpid(w->pid, &wait_status, WNOHANG);
                if (r == 0)
                        return 0;
                if (r > 0)
                        *status = status_from_wait(wait_status);
        }
        if (r < 0 && errno == EINTR)
                return 0;
        if (r < 0) {
                *status = -1;
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "wait for process %d of %s: %s",
                            (int)w->pid, w->what, g_strerror(errno));
        }
        unwatch(w);
        return 1;
}

static gboolean on_pidfd_ready(G_GNUC_UNUSED int fd, G_GNUC_UNUSED GIOCondition condition, gpointer data)
{
        KilnPidWatch *w = data;
        g_autoptr(GError) error = NULL;
        int status = -1;

        if (reap(w, &status, &error) == 0)
                return G_SOURCE_CONTINUE;
        w->exited(w->data, status, error); /* last: it may free the watch */
        return G_SOURCE_REMOVE;
}

static void on_child_exited(G_GNUC_UNUSED GPid pid, gint wait_status, gpointer data)
{
        KilnPidWatch *w = data;

        unwatch(w); /* GLib reaped it */
        w->exited(w->data, status_from_wait(wait_status), NULL);
}

KilnPidWatch *kiln_pid_watch_new(pid_t pid, const char *what, GMainContext *context, KilnPidExited exited,
                                 gpointer data, GError **error)
{
        KilnPidWatch *w = g_new0(KilnPidWatch, 1);

        w->pid = pid;
        w->what = g_strdup(what);
        w->exited = exited;
        w->data = data;
        kiln_reaper_claim(pid);
        w->claimed = TRUE;
        w->pidfd = pidfd_open(pid, 0); /* always close-on-exec */
        if (w->pidfd >= 0) {
                w->source = g_unix_fd_source_new(w->pidfd, G_IO_IN);
                g_source_set_callback(w->source, (GSourceFunc)(void (*)(void))on_pidfd_ready, w, NULL);
        } else if (errno == ENOSYS) {
                /* GLib's child watch waits for this pid only; it is ours as long as we do not reap it. */
                w->source = g_child_watch_source_new(pid);
                g_source_set_callback(w->source, (GSourceFunc)(void (*)(void))on_child_exited, w, NULL);
        } else {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "pidfd_open %d (%s): %s",
                            (int)pid, what, g_strerror(errno));
                kiln_pid_watch_free(w);
                return NULL;
        }
        g_source_set_static_name(w->source, "kiln container process");
        g_source_attach(w->source, context);
        w->alive = TRUE;
        return w;
}

gboolean kiln_pid_watch_is_alive(KilnPidWatch *watch)
{
        return watch && watch->alive;
}

void kiln_pid_watch_kill(KilnPidWatch *watch, int signal)
{
        int r;

        if (!kiln_pid_watch_is_alive(watch))
                return;
        r = watch->pidfd >= 0 ? pidfd_send_signal(watch->pidfd, signal, NULL, 0) : kill(watch->pid, signal);
        if (r < 0 && errno != ESRCH)
                g_warning("Cannot send signal %d to process %d of %s: %s", signal, (int)watch->pid,
                          watch->what, g_strerror(errno));
}

gboolean kiln_pid_watch_reap_sync(KilnPidWatch *watch, guint timeout_ms)
{
        gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
        g_autoptr(GError) error = NULL;
        int status;

        if (!kiln_pid_watch_is_alive(watch))
                return TRUE;
        /* We reap it here: GLib's child watch must not any more. */
        if (watch->source) {
                g_source_destroy(watch->source);
                g_clear_pointer(&watch->source, g_source_unref);
        }
        if (watch->pidfd >= 0) {
                struct pollfd p = {.fd = watch->pidfd, .events = POLLIN};
                (void)poll(&p, 1, (int)timeout_ms);
        }
        while (reap(watch, &status, &error) == 0) {
                if (g_get_monotonic_time() >= deadline)
                        return FALSE;
                g_usleep(10000); /* only without a pidfd: nothing to poll */
        }
        return TRUE;
}

void kiln_pid_watch_free(KilnPidWatch *watch)
{
        if (!watch)
                return;
        unwatch(watch);
        g_free(watch->what);
        g_free(watch);
}

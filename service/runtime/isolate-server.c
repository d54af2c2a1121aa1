/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-isolate's server, kilnd's end (isolate-server.h). The server is a GSubprocess (GLib reaps it);
 * each request has a socket of its own for its two replies, so a request needs no bookkeeping here
 * beyond its own descriptor, and a server that dies shows as an end of file on every request. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib-unix.h>

#include "base/fd-passing.h"
#include "base/fd-limit.h"
#include "runtime/isolate-server.h"
#include "isolate/serve-protocol.h"
#include "base/kiln-common.h"
#include "base/reaper.h"
#include "runtime/runtime-child.h"

#define SERVER_EXIT_TIMEOUT_MS 5000
#define STATUS_LOST 255
/* A command whose server died is reaped by kilnd: checked this often, and given this long to be
 * handed over (the server's descriptors close before its children are re-parented). */
#define ORPHAN_POLL_MS 5
#define ORPHAN_HANDOVER_US (2 * G_USEC_PER_SEC)

struct KilnIsolateServer {
        GMutex lock;
        char **argv; /* kiln-isolate, the global options, "serve" */
        guint n_globals;
        char *runtime_ns; /* the kiln-runtime-ns next to that kiln-isolate */
        GSubprocess *process;
        int fd; /* our end of its stdin */
};

struct KilnIsolateRequest {
        int ref_count;
        int fd;    /* the replies */
        int pidfd; /* the command, once started */
        pid_t pid;
        gboolean exited;
        int status;
        gboolean orphaned; /* the server went away after starting it: we reap it */
        gint64 handover_deadline;
        GSource *source;
        GMainContext *context;
        KilnIsolateRequestDone done;
        gpointer data;
};

static void server_stop_locked(KilnIsolateServer *s)
{
        kiln_close_fdp(&s->fd);
        if (s->process) {
                kiln_runtime_wait_bounded(s->process, SERVER_EXIT_TIMEOUT_MS);
                g_clear_object(&s->process);
        }
}

static gboolean server_start_locked(KilnIsolateServer *s, GError **error)
{
        g_autoptr(GSubprocessLauncher) launcher =
                g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                                   "socketpair for kiln-isolate's server: %s", g_strerror(errno)),
                       FALSE;
        g_subprocess_launcher_take_stdin_fd(launcher, sv[1]);
        g_subprocess_launcher_set_environ(launcher, (char **)kiln_runtime_environ);
        g_subprocess_launcher_set_cwd(launcher, "/");
        kiln_fd_limit_apply(launcher);
        s->process = g_subprocess_launcher_spawnv(launcher, (const char *const *)s->argv, error);
        g_subprocess_launcher_close(launcher);
        if (!s->process) {
                close(sv[0]);
                g_prefix_error(error, "kiln-isolate's server: ");
                return FALSE;
        }
        kiln_reaper_claim_subprocess(s->process); /* GLib's child watch reaps it */
        s->fd = sv[0];
        g_debug("kiln-isolate's server started: pid %s", g_subprocess_get_identifier(s->process));
        return TRUE;
}

KilnIsolateServer *kiln_isolate_server_new(const char *const *argv)
{
        KilnIsolateServer *s = g_new0(KilnIsolateServer, 1);
        g_autoptr(GStrvBuilder) b = g_strv_builder_new();
        g_autoptr(GError) error = NULL;

        g_mutex_init(&s->lock);
        g_strv_builder_addv(b, (const char **)argv);
        g_strv_builder_add(b, "serve");
        s->argv = g_strv_builder_end(b);
        s->n_globals = g_strv_length(s->argv) - 1;
        if (argv[0]) {
                g_autofree char *dir = g_path_get_dirname(argv[0]);
                s->runtime_ns = g_build_filename(dir, "kiln-runtime-ns", NULL);
        }
        s->fd = -1;
        if (!server_start_locked(s, &error))
                g_warning("%s; the next chroot run tries again", error->message);
        return s;
}

void kiln_isolate_server_free(KilnIsolateServer *s)
{
        if (!s)
                return;
        server_stop_locked(s);
        g_strfreev(s->argv);
        g_free(s->runtime_ns);
        g_mutex_clear(&s->lock);
        g_free(s);
}

gboolean kiln_isolate_server_serves(KilnIsolateServer *s, const char *const *argv, guint n, guint *n_wrap)
{
        guint w = 0;

        if (!s || n == 0)
                return FALSE;
        /* kiln-runtime-ns COVER KEEP... --: the server's child makes that namespace itself (serve.c). */
        if (s->runtime_ns && g_str_equal(argv[0], s->runtime_ns)) {
                for (w = 1; w < n && !g_str_equal(argv[w], "--"); w++)
                        ;
                if (w == 1 || w == n)
                        return FALSE;
                w++;
        }
        if (n - w != s->n_globals)
                return FALSE;
        for (guint i = 0; i < s->n_globals; i++)
                if (g_strcmp0(argv[w + i], s->argv[i]) != 0)
                        return FALSE;
        if (n_wrap)
                *n_wrap = w;
        return TRUE;
}

pid_t kiln_isolate_server_get_pid(KilnIsolateServer *s)
{
        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock); /* held to the end */
        const char *id = s->process ? g_subprocess_get_identifier(s->process) : NULL;

        return id ? (pid_t)g_ascii_strtoll(id, NULL, 10) : 0;
}

KilnIsolateRequest *kiln_isolate_server_request(KilnIsolateServer *s, const char *cwd, const char *const *ns,
                                                guint n_ns, const char *const *args, int stdio[3],
                                                GError **error)
{
        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock); /* held to the end */
        g_autoptr(GString) payload = g_string_new(NULL);
        KilnIsolateRequest *r;
        int replies[2] = {-1, -1};
        gboolean sent = FALSE;

        for (int i = 0; i < 3; i++)
                if (stdio[i] < 0) {
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                    "kiln-isolate's server needs all three standard descriptors");
                        goto out;
                }
        g_string_append_len(payload, cwd, (gssize)strlen(cwd) + 1);
        for (guint i = 0; i < n_ns; i++)
                g_string_append_len(payload, ns[i], (gssize)strlen(ns[i]) + 1);
        g_string_append_len(payload, "--", 3);
        for (const char *const *a = args; *a; a++)
                g_string_append_len(payload, *a, (gssize)strlen(*a) + 1);
        if (payload->len > KILN_SERVE_REQUEST_MAX) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "kiln-isolate's command line is too long for its server (%zu bytes, at most %d)",
                            payload->len, KILN_SERVE_REQUEST_MAX);
                goto out;
        }
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, replies) < 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                            "socketpair for kiln-isolate's server: %s", g_strerror(errno));
                goto out;
        }
        /* A server that went away since the last request is started again, once. */
        for (int attempt = 0; attempt < 2 && !sent; attempt++) {
                const int fds[KILN_SERVE_REQUEST_FDS] = {replies[1], stdio[0], stdio[1], stdio[2]};
                gboolean gone;
                int errsv;

                if (s->fd < 0 && !server_start_locked(s, error))
                        break;
                sent = kiln_send_fds(s->fd, payload->str, payload->len, fds, KILN_SERVE_REQUEST_FDS) ==
                       (ssize_t)payload->len;
                if (sent)
                        break;
                errsv = errno;
                gone = errsv == EPIPE || errsv == ECONNRESET || errsv == ENOTCONN;
                if (!gone || attempt == 1) {
                        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errsv),
                                    "sending a command to kiln-isolate's server: %s", g_strerror(errsv));
                        break;
                }
                g_message("kiln-isolate's server went away (%s); starting it again", g_strerror(errsv));
                server_stop_locked(s);
        }
out:
        for (int i = 0; i < 3; i++)
                kiln_close_fdp(&stdio[i]);
        kiln_close_fdp(&replies[1]);
        if (!sent) {
                kiln_close_fdp(&replies[0]);
                return NULL;
        }
        r = g_new0(KilnIsolateRequest, 1);
        r->ref_count = 1;
        r->fd = replies[0];
        r->pidfd = -1;
        r->status = -1;
        return r;
}

static void request_lost(KilnIsolateRequest *r)
{
        r->exited = TRUE;
        r->status = STATUS_LOST;
        g_warning("kiln-isolate's server went away: how command %d ended is unknown", (int)r->pid);
}

static void request_close(KilnIsolateRequest *r)
{
        kiln_close_fdp(&r->fd);
        kiln_close_fdp(&r->pidfd);
}

/* The server went away after it started the command: the command is kilnd's child now (kilnd is a
 * child subreaper), or about to be, and kilnd reaps it. TRUE once its status is known (or lost). */
static gboolean reap_orphan(KilnIsolateRequest *r)
{
        siginfo_t info = {0};

        if (waitid((idtype_t)P_PIDFD, (id_t)r->pidfd, &info, WEXITED | WNOHANG) == 0) {
                if (info.si_pid == 0)
                        return FALSE; /* ours, still running */
                r->exited = TRUE;
                r->status = info.si_code == CLD_EXITED ? info.si_status : 128 + info.si_status;
                request_close(r);
                return TRUE;
        }
        if (errno == ECHILD && g_get_monotonic_time() < r->handover_deadline)
                return FALSE; /* still the dead server's */
        request_lost(r);
        request_close(r);
        return TRUE;
}

/* Takes what the server said so far. TRUE once the command's end is known (or lost). */
static gboolean read_replies(KilnIsolateRequest *r)
{
        if (r->orphaned)
                return reap_orphan(r);
        while (!r->exited) {
                KilnServeReply reply;
                int pidfd = -1;
                size_t n_fds;
                ssize_t n =
                        kiln_recv_fds(r->fd, &reply, sizeof(reply), &pidfd, 1, &n_fds, MSG_DONTWAIT, NULL);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return FALSE;
                if (n <= 0 && r->pidfd >= 0) {
                        g_message("kiln-isolate's server went away while command %d ran; reaping it",
                                  (int)r->pid);
                        r->orphaned = TRUE;
                        r->handover_deadline = g_get_monotonic_time() + ORPHAN_HANDOVER_US;
                        kiln_close_fdp(&r->fd);
                        return reap_orphan(r);
                }
                if (n <= 0) {
                        request_lost(r);
                        break;
                }
                if (n == sizeof(reply) && reply.kind == KILN_SERVE_STARTED && r->pidfd < 0) {
                        r->pid = reply.value;
                        r->pidfd = kiln_steal_fd(&pidfd);
                } else if (n == sizeof(reply) && reply.kind == KILN_SERVE_EXITED) {
                        r->exited = TRUE;
                        r->status = reply.value;
                }
                kiln_close_fdp(&pidfd);
        }
        request_close(r);
        return TRUE;
}

static gboolean on_orphan_poll(gpointer data);

/* The watch's source: the reply socket, or once orphaned a timer. */
static gboolean request_progress(KilnIsolateRequest *r)
{
        gboolean was_orphaned = r->orphaned;

        if (!read_replies(r)) {
                if (r->orphaned == was_orphaned)
                        return G_SOURCE_CONTINUE;
                g_clear_pointer(&r->source, g_source_unref);
                r->source = g_timeout_source_new(ORPHAN_POLL_MS);
                g_source_set_callback(r->source, on_orphan_poll, r, NULL);
                g_source_set_static_name(r->source, "kiln-isolate orphan");
                g_source_attach(r->source, r->context);
                return G_SOURCE_REMOVE;
        }
        g_clear_pointer(&r->source, g_source_unref);
        r->done(r->data, r->status);
        return G_SOURCE_REMOVE;
}

static gboolean on_orphan_poll(gpointer data)
{
        return request_progress(data);
}

static gboolean on_replies(G_GNUC_UNUSED int fd, G_GNUC_UNUSED GIOCondition condition, gpointer data)
{
        return request_progress(data);
}

void kiln_isolate_request_watch(KilnIsolateRequest *r, GMainContext *context, KilnIsolateRequestDone done,
                                gpointer data)
{
        g_return_if_fail(!r->source && !r->exited);
        r->done = done;
        r->data = data;
        r->context = g_main_context_ref(context);
        r->source = g_unix_fd_source_new(r->fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
        g_source_set_callback(r->source, (GSourceFunc)(void (*)(void))on_replies, r, NULL);
        g_source_set_static_name(r->source, "kiln-isolate server replies");
        g_source_attach(r->source, context);
}

static gboolean on_done_later(gpointer data)
{
        KilnIsolateRequest *r = data;

        r->done(r->data, r->status);
        return G_SOURCE_REMOVE;
}

int kiln_isolate_request_wait_bounded(KilnIsolateRequest *r, guint timeout_ms)
{
        gboolean killed = FALSE, watched = r->source != NULL;
        gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

        /* The watch hears of the end from here, on its own context, as it would have. */
        if (watched) {
                g_source_destroy(r->source);
                g_clear_pointer(&r->source, g_source_unref);
        }
        while (!read_replies(r)) {
                struct pollfd p = {.fd = r->orphaned ? r->pidfd : r->fd, .events = POLLIN};
                gint64 left = (deadline - g_get_monotonic_time()) / 1000;
                if (left > 0) {
                        (void)poll(&p, 1, (int)MIN(left, r->orphaned ? ORPHAN_POLL_MS : G_MAXINT));
                        continue;
                }
                if (killed) {
                        request_lost(r);
                        request_close(r);
                        break;
                }
                g_warning("kiln-isolate command %d did not exit within %u ms; killing it", (int)r->pid,
                          timeout_ms);
                if (r->pidfd >= 0)
                        (void)syscall(SYS_pidfd_send_signal, r->pidfd, SIGKILL, NULL, 0);
                killed = TRUE;
                deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
        }
        if (watched) {
                GSource *idle = g_idle_source_new();
                g_source_set_callback(idle, on_done_later, kiln_isolate_request_ref(r),
                                      (GDestroyNotify)kiln_isolate_request_unref);
                g_source_set_static_name(idle, "kiln-isolate server request done");
                g_source_attach(idle, r->context);
                g_source_unref(idle);
        }
        return r->status;
}

pid_t kiln_isolate_request_get_pid(KilnIsolateRequest *r)
{
        return r->pid;
}

KilnIsolateRequest *kiln_isolate_request_ref(KilnIsolateRequest *r)
{
        r->ref_count++;
        return r;
}

void kiln_isolate_request_unref(KilnIsolateRequest *r)
{
        if (!r || --r->ref_count > 0)
                return;
        if (r->source) {
                g_source_destroy(r->source);
                g_source_unref(r->source);
        }
        if (r->context)
                g_main_context_unref(r->context);
        request_close(r);
        g_free(r);
}

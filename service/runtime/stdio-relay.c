/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <linux/major.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>

#include <glib-unix.h>

#include "base/kiln-common.h"
#include "runtime/stdio-relay.h"
#include "runtime/stdio-relay-testing.h"

struct KilnRelay {
        char *name;
        int in_fd;
        int out_fd; /* -1 for a capture */
        gboolean in_socket;
        gboolean out_socket;
        KilnRelayFlags flags;

        GMainContext *context;
        GSource *in_source;
        GSource *out_source;
        guint8 *buffer; /* buffer_size bytes while running */
        gsize buffer_size;
        gsize buffered; /* bytes in the buffer */
        gsize written;  /* of which already written */
        int last_byte;  /* the last byte written, -1 before any */
        gboolean eof;
        gboolean started;
        gboolean finished;

        GByteArray *captured; /* capture relays only */
        gsize limit;
        gboolean overflow_is_error;
        gboolean truncated;

        KilnRelayDoneFunc done;
        gpointer user_data;
};

static GMutex stats_lock;
static gsize stats_in_use, stats_peak;

static void stats_account(gssize delta)
{
        g_mutex_lock(&stats_lock);
        stats_in_use += delta;
        stats_peak = MAX(stats_peak, stats_in_use);
        g_mutex_unlock(&stats_lock);
}

void kiln_relay_get_buffer_stats(gsize *in_use, gsize *peak)
{
        g_mutex_lock(&stats_lock);
        if (in_use)
                *in_use = stats_in_use;
        if (peak)
                *peak = stats_peak;
        g_mutex_unlock(&stats_lock);
}

void kiln_relay_reset_buffer_peak(void)
{
        g_mutex_lock(&stats_lock);
        stats_peak = stats_in_use;
        g_mutex_unlock(&stats_lock);
}

static void on_sigpipe(G_GNUC_UNUSED int sig)
{
}

/* A write to a pipe whose reader left raises SIGPIPE, which would end the service. Relays want EPIPE
 * instead. A handler that does nothing (rather than SIG_IGN) gives that, and unlike SIG_IGN it is reset
 * by execve, so runtimes and container processes still start with the default SIGPIPE. Installed once,
 * and only over the default disposition: a program that chose its own keeps it. */
static void ensure_sigpipe_handled(void)
{
        static gsize done = 0;

        if (g_once_init_enter(&done)) {
                struct sigaction old, sa = {.sa_handler = on_sigpipe, .sa_flags = SA_RESTART};

                if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL &&
                    !(old.sa_flags & SA_SIGINFO)) {
                        sigemptyset(&sa.sa_mask);
                        (void)sigaction(SIGPIPE, &sa, NULL);
                }
                g_once_init_leave(&done, 1);
        }
}

int kiln_relay_open_endpoint(int fd, gboolean for_reading, const char *what, GError **error)
{
        g_autofree char *path = NULL;
        struct stat st;
        int flags, accmode, r;

        if (fstat(fd, &st) < 0)
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "fstat %s (fd %d): %s",
                                   what, fd, g_strerror(errno)),
                       -1;
        flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "fcntl %s (fd %d): %s",
                                   what, fd, g_strerror(errno)),
                       -1;
        accmode = flags & O_ACCMODE;
        if (for_reading ? accmode == O_WRONLY : accmode == O_RDONLY)
                return g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "%s is not open for %s",
                                   what, for_reading ? "reading" : "writing"),
                       -1;

        /* Files and the memory devices (/dev/null, /dev/zero...) never make a reader or writer wait for
         * long, and sockets are driven with MSG_DONTWAIT: for these a plain duplicate will do, shared
         * offset and flags included. */
        if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) || S_ISSOCK(st.st_mode) ||
            (S_ISCHR(st.st_mode) && major(st.st_rdev) == MEM_MAJOR)) {
                r = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (r < 0)
                        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "dup %s: %s", what,
                                    g_strerror(errno));
                return r;
        }
        if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode))
                return g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                   "%s is neither a file, a pipe, a socket nor a terminal", what),
                       -1;

        /* Other devices are not reopened: an open can have effects of its own (a watchdog, a tape). And
         * reopening a pty master would allocate a new, unrelated pty. */
        if (S_ISCHR(st.st_mode)) {
                unsigned int ptn;
                if (!isatty(fd))
                        return g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                           "%s is a device other than a terminal", what),
                               -1;
                if (ioctl(fd, TIOCGPTN, &ptn) == 0)
                        return g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                           "%s is the master side of a pseudo-terminal; pass its other side",
                                           what),
                               -1;
        }

        /* A new open file description of the same pipe or terminal, non-blocking, so the caller's own
         * description (and its O_NONBLOCK flag) is left alone. Safe for a root service: it asks for the
         * direction the caller's descriptor already grants and nothing more (checked above), O_NOCTTY
         * keeps us from acquiring a controlling terminal, and the magic link names exactly the object
         * the caller handed us, wherever it lives. */
        path = g_strdup_printf("/proc/self/fd/%d", fd);
        r = open(path, (for_reading ? O_RDONLY : O_WRONLY) | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (r < 0)
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "reopen %s (%s): %s", what,
                            path, g_strerror(errno));
        return r;
}

static gboolean fd_is_socket(int fd)
{
        struct stat st;

        return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

static KilnRelay *relay_new(const char *name, int in_fd)
{
        KilnRelay *r = g_new0(KilnRelay, 1);

        r->name = g_strdup(name);
        r->in_fd = in_fd;
        r->out_fd = -1;
        r->in_socket = fd_is_socket(in_fd);
        r->last_byte = -1;
        r->buffer_size = KILN_RELAY_CHUNK;
        return r;
}

KilnRelay *kiln_relay_new(const char *name, int in_fd, int out_fd, KilnRelayFlags flags)
{
        KilnRelay *r = relay_new(name, in_fd);

        r->out_fd = out_fd;
        r->out_socket = fd_is_socket(out_fd);
        r->flags = flags;
        return r;
}

KilnRelay *kiln_relay_new_capture(const char *name, int in_fd, gsize limit, gboolean overflow_is_error)
{
        KilnRelay *r = relay_new(name, in_fd);

        r->captured = g_byte_array_new();
        r->limit = limit;
        /* Reading in smaller bites costs nothing when little is kept (a runtime's messages). */
        r->buffer_size = CLAMP(limit, 4096, KILN_RELAY_CHUNK);
        r->overflow_is_error = overflow_is_error;
        return r;
}

static void unwatch(GSource **source)
{
        if (*source) {
                g_source_destroy(*source);
                g_source_unref(*source);
                *source = NULL;
        }
}

static void relay_release(KilnRelay *r)
{
        unwatch(&r->in_source);
        unwatch(&r->out_source);
        kiln_close_fdp(&r->in_fd);
        r->in_fd = -1;
        kiln_close_fdp(&r->out_fd);
        r->out_fd = -1;
        if (r->buffer) {
                g_free(r->buffer);
                r->buffer = NULL;
                stats_account(-(gssize)r->buffer_size);
        }
        r->buffered = r->written = 0;
}

/* The last thing a handler does: after the callback the relay may be gone. */
static void relay_finish(KilnRelay *r, GError *error)
{
        g_autoptr(GError) owned = error;

        relay_release(r);
        r->finished = TRUE;
        if (r->done)
                r->done(r, owned, r->user_data);
}

static gboolean on_readable(int fd, GIOCondition condition, gpointer data);
static gboolean on_writable(int fd, GIOCondition condition, gpointer data);

static void watch(KilnRelay *r, gboolean output)
{
        GSource **slot = output ? &r->out_source : &r->in_source;
        GSource *source;

        if (*slot)
                return;
        source = g_unix_fd_source_new(output ? r->out_fd : r->in_fd,
                                      (output ? G_IO_OUT : G_IO_IN) | G_IO_HUP | G_IO_ERR);
        g_source_set_callback(source, (GSourceFunc)(void (*)(void))(output ? on_writable : on_readable), r,
                              NULL);
        g_source_set_static_name(source, output ? "kiln relay output" : "kiln relay input");
        g_source_attach(source, r->context);
        *slot = source;
}

/* Writes what is buffered. Returns 1 when all of it is out, 0 when the output is full, -1 on error. */
static int relay_flush(KilnRelay *r, GError **error)
{
        while (r->written < r->buffered) {
                const guint8 *p = r->buffer + r->written;
                gsize n = r->buffered - r->written;
                ssize_t k = r->out_socket ? send(r->out_fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL)
                                          : write(r->out_fd, p, n);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        return 0;
                if (k < 0) {
                        int e = errno;
                        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "write %s: %s", r->name,
                                    g_strerror(e));
                        return -1;
                }
                r->written += (gsize)k;
        }
        if (r->buffered > 0)
                r->last_byte = r->buffer[r->buffered - 1];
        r->buffered = r->written = 0;
        return 1;
}

/* A terminal in canonical mode turns VEOF into end of file for its reader; a pending partial line needs
 * one VEOF to be delivered and another for the EOF. In raw mode there is no such thing: just stop. */
static gsize terminal_eof_bytes(KilnRelay *r, guint8 out[2])
{
        struct termios t;

        if (tcgetattr(r->out_fd, &t) < 0 || !(t.c_lflag & ICANON) || t.c_cc[VEOF] == _POSIX_VDISABLE)
                return 0;
        out[0] = out[1] = t.c_cc[VEOF];
        return r->last_byte < 0 || r->last_byte == '\n' ? 1 : 2;
}

static void relay_capture(KilnRelay *r, gsize n)
{
        gsize room = r->limit - MIN(r->limit, r->captured->len);

        g_byte_array_append(r->captured, r->buffer, (guint)MIN(n, room));
        if (n > room)
                r->truncated = TRUE;
}

/* Input ended: pass EOF on (or the terminal's EOF character) once the buffer is out. */
static gboolean relay_input_ended(KilnRelay *r)
{
        guint8 eof[2];
        gsize n;
        GError *error = NULL;

        r->eof = TRUE;
        unwatch(&r->in_source);
        if ((r->flags & KILN_RELAY_TERMINAL_EOF) && r->out_fd >= 0 && (n = terminal_eof_bytes(r, eof)) > 0) {
                memcpy(r->buffer, eof, n);
                r->buffered = n;
                r->written = 0;
                switch (relay_flush(r, &error)) {
                case 0:
                        watch(r, TRUE);
                        return G_SOURCE_REMOVE;
                case -1:
                        relay_finish(r, error);
                        return G_SOURCE_REMOVE;
                }
        }
        relay_finish(r, NULL);
        return G_SOURCE_REMOVE;
}

static gboolean on_readable(G_GNUC_UNUSED int fd, G_GNUC_UNUSED GIOCondition condition, gpointer data)
{
        KilnRelay *r = data;
        GError *error = NULL;
        ssize_t n;

        n = r->in_socket ? recv(r->in_fd, r->buffer, r->buffer_size, MSG_DONTWAIT)
                         : read(r->in_fd, r->buffer, r->buffer_size);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
                return G_SOURCE_CONTINUE;
        /* A pty master reads EIO once no process holds the terminal any more: that is its EOF. */
        if (n == 0 || (n < 0 && errno == EIO))
                return relay_input_ended(r);
        if (n < 0) {
                int e = errno;
                relay_finish(r, g_error_new(G_IO_ERROR, g_io_error_from_errno(e), "read %s: %s", r->name,
                                            g_strerror(e)));
                return G_SOURCE_REMOVE;
        }

        if (r->captured) {
                relay_capture(r, (gsize)n);
                if (r->truncated && r->overflow_is_error) {
                        relay_finish(r, g_error_new(G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                                                    "%s exceeded %" G_GSIZE_FORMAT " bytes", r->name,
                                                    r->limit));
                        return G_SOURCE_REMOVE;
                }
                return G_SOURCE_CONTINUE;
        }

        r->buffered = (gsize)n;
        r->written = 0;
        switch (relay_flush(r, &error)) {
        case 1:
                return G_SOURCE_CONTINUE; /* all out: read on */
        case 0:
                /* Back-pressure: no more reading until the reader took what we have. */
                unwatch(&r->in_source);
                watch(r, TRUE);
                return G_SOURCE_REMOVE;
        default:
                unwatch(&r->in_source);
                relay_finish(r, error);
                return G_SOURCE_REMOVE;
        }
}

static gboolean on_writable(G_GNUC_UNUSED int fd, G_GNUC_UNUSED GIOCondition condition, gpointer data)
{
        KilnRelay *r = data;
        GError *error = NULL;

        switch (relay_flush(r, &error)) {
        case 0:
                return G_SOURCE_CONTINUE;
        case -1:
                unwatch(&r->out_source);
                relay_finish(r, error);
                return G_SOURCE_REMOVE;
        }
        unwatch(&r->out_source);
        if (r->eof)
                relay_finish(r, NULL);
        else
                watch(r, FALSE);
        return G_SOURCE_REMOVE;
}

void kiln_relay_start(KilnRelay *relay, GMainContext *context, KilnRelayDoneFunc done, gpointer user_data)
{
        g_return_if_fail(relay && !relay->started && relay->in_fd >= 0);

        ensure_sigpipe_handled();
        relay->started = TRUE;
        relay->context = context;
        relay->done = done;
        relay->user_data = user_data;
        relay->buffer = g_malloc(relay->buffer_size);
        stats_account((gssize)relay->buffer_size);
        watch(relay, FALSE);
}

void kiln_relay_stop(KilnRelay *relay)
{
        if (!relay || relay->finished)
                return;
        relay_release(relay);
        relay->finished = TRUE;
}

gboolean kiln_relay_is_running(KilnRelay *relay)
{
        return relay && relay->started && !relay->finished;
}

GBytes *kiln_relay_get_captured(KilnRelay *relay)
{
        g_return_val_if_fail(relay && relay->captured, NULL);
        return g_bytes_new(relay->captured->data, relay->captured->len);
}

void kiln_relay_free(KilnRelay *relay)
{
        if (!relay)
                return;
        relay_release(relay);
        if (relay->captured)
                g_byte_array_unref(relay->captured);
        g_free(relay->name);
        g_free(relay);
}

/* ---- the three streams of one container run ---- */

static const char *const stream_names[] = {"stdin", "stdout", "stderr"};

static int open_null(int flags, GError **error)
{
        int fd = open("/dev/null", flags | O_CLOEXEC | O_NOCTTY);

        if (fd < 0)
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "open /dev/null: %s",
                            g_strerror(errno));
        return fd;
}

/* A pipe for stream @i: the runtime's end is returned, ours goes into a relay to or from @ours (the
 * caller's endpoint, taken), or into a capture when @ours is -1. */
static int stdio_pipe(KilnStdio *stdio, int i, int ours, gsize capture_limit, const char *name,
                      GError **error)
{
        g_autofree char *relay_name = g_strdup_printf("%s of %s", stream_names[i], name);
        int p[2], runtime_end, our_end;

        /* Both ends close-on-exec: the runtime's end reaches it only as its stdio (dup2 clears the flag). */
        if (pipe2(p, O_CLOEXEC) < 0) {
                kiln_close_fdp(&ours);
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "pipe for %s: %s",
                                   relay_name, g_strerror(errno)),
                       -1;
        }
        runtime_end = i == 0 ? p[0] : p[1];
        our_end = i == 0 ? p[1] : p[0];
        /* Non-blocking only on our end: the container gets an ordinary blocking pipe. */
        (void)g_unix_set_fd_nonblocking(our_end, TRUE, NULL);
        if (ours < 0) {
                stdio->relays[i] = kiln_relay_new_capture(relay_name, our_end, capture_limit, TRUE);
                stdio->capture[i] = TRUE;
        } else {
                stdio->relays[i] = i == 0 ? kiln_relay_new(relay_name, ours, our_end, KILN_RELAY_FLAGS_NONE)
                                          : kiln_relay_new(relay_name, our_end, ours, KILN_RELAY_FLAGS_NONE);
        }
        return runtime_end;
}

gboolean kiln_stdio_prepare(KilnStdio *stdio, const int caller_fd[3], gboolean terminal, gsize capture_limit,
                            const char *name, int runtime_fds[3], GError **error)
{
        for (int i = 0; i < 3; i++) {
                int fd = capture_limit > 0 ? -1 : caller_fd[i];

                if (terminal || (fd < 0 && (i == 0 || capture_limit == 0)))
                        runtime_fds[i] = open_null(i == 0 ? O_RDONLY : O_WRONLY, error);
                else if (capture_limit > 0)
                        runtime_fds[i] = stdio_pipe(stdio, i, -1, capture_limit, name, error);
                else if (isatty(fd)) {
                        int ours = kiln_relay_open_endpoint(fd, i == 0, stream_names[i], error);
                        runtime_fds[i] = ours < 0 ? -1 : stdio_pipe(stdio, i, ours, 0, name, error);
                } else {
                        runtime_fds[i] = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                        if (runtime_fds[i] < 0)
                                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "dup %s: %s",
                                            stream_names[i], g_strerror(errno));
                }
                if (runtime_fds[i] < 0) {
                        for (int j = 0; j < i; j++)
                                kiln_close_fdp(&runtime_fds[j]);
                        kiln_stdio_clear(stdio);
                        return FALSE;
                }
        }
        return TRUE;
}

gboolean kiln_stdio_attach_terminal(KilnStdio *stdio, int master, const int caller_fd[3],
                                    gsize capture_limit, const char *name, GError **error)
{
        g_autofree char *in_name = g_strdup_printf("terminal input of %s", name);
        g_autofree char *out_name = g_strdup_printf("terminal of %s", name);
        _cleanup_close_ int in = -1, m_in = -1, m_out = -1, out = -1;

        /* Each relay gets its own duplicate of the master, to close when it is done. */
        if (caller_fd[0] >= 0 && capture_limit == 0) {
                in = kiln_relay_open_endpoint(caller_fd[0], TRUE, "stdin", error);
                if (in < 0)
                        return FALSE;
                m_in = fcntl(master, F_DUPFD_CLOEXEC, 3);
                if (m_in < 0)
                        goto dup_failed;
        }
        m_out = fcntl(master, F_DUPFD_CLOEXEC, 3);
        if (m_out < 0)
                goto dup_failed;
        if (capture_limit == 0) {
                out = caller_fd[1] >= 0 ? kiln_relay_open_endpoint(caller_fd[1], FALSE, "stdout", error)
                                        : open_null(O_WRONLY | O_NONBLOCK, error);
                if (out < 0)
                        return FALSE;
        }

        if (in >= 0)
                stdio->relays[0] = kiln_relay_new(in_name, kiln_steal_fd(&in), kiln_steal_fd(&m_in),
                                                  KILN_RELAY_TERMINAL_EOF);
        if (capture_limit > 0) {
                stdio->relays[1] =
                        kiln_relay_new_capture(out_name, kiln_steal_fd(&m_out), capture_limit, TRUE);
                stdio->capture[1] = TRUE;
        } else {
                stdio->relays[1] = kiln_relay_new(out_name, kiln_steal_fd(&m_out), kiln_steal_fd(&out),
                                                  KILN_RELAY_FLAGS_NONE);
        }
        return TRUE;

dup_failed:
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "dup the terminal of %s: %s", name,
                    g_strerror(errno));
        return FALSE;
}

void kiln_stdio_clear(KilnStdio *stdio)
{
        for (int i = 0; i < 3; i++) {
                g_clear_pointer(&stdio->relays[i], kiln_relay_free);
                stdio->capture[i] = FALSE;
        }
}

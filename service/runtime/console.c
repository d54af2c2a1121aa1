/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>

#include <glib-unix.h>

#include "runtime/console.h"
#include "base/fd-passing.h"
#include "base/kiln-common.h"

/* runc and crun send one descriptor; room for a few more so that extra ones are seen and closed. */
#define CONSOLE_MAX_FDS 4

struct KilnConsole {
        char *path;
        int listen_fd;
        int conn_fd;
        int master_fd;
        GMainContext *context;
        GSource *source; /* on listen_fd, then on conn_fd */
        guint16 rows, cols;
        GError *error; /* why no master will come */
};

static void console_unwatch(KilnConsole *c)
{
        if (c->source) {
                g_source_destroy(c->source);
                g_source_unref(c->source);
                c->source = NULL;
        }
}

/* Once the master is here (or will never come) the socket has done its job. */
static void console_close_socket(KilnConsole *c)
{
        console_unwatch(c);
        kiln_close_fdp(&c->conn_fd);
        c->conn_fd = -1;
        if (c->listen_fd >= 0) {
                kiln_close_fdp(&c->listen_fd);
                c->listen_fd = -1;
                if (unlink(c->path) < 0 && errno != ENOENT)
                        g_debug("unlink %s: %s", c->path, g_strerror(errno));
        }
}

static gboolean apply_size(KilnConsole *c, GError **error)
{
        struct winsize ws = {.ws_row = c->rows, .ws_col = c->cols};

        if (c->master_fd < 0 || c->rows == 0 || c->cols == 0)
                return TRUE;
        if (ioctl(c->master_fd, TIOCSWINSZ, &ws) < 0)
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                                   "ioctl TIOCSWINSZ %ux%u on the terminal of %s: %s", c->rows, c->cols,
                                   c->path, g_strerror(errno)),
                       FALSE;
        return TRUE;
}

/* Takes the first descriptor of the message as the master (closing any others) and checks that it is
 * one: only root can connect to the socket (it lives in kilnd's own 0700 bundle directory), but a
 * confused runtime must not make us relay some other file. */
static gboolean take_master(KilnConsole *c, int *fds, size_t n_fds, int msg_flags, ssize_t n, GError **error)
{
        unsigned int ptn;
        gboolean ok = TRUE;

        if (msg_flags & MSG_CTRUNC) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                            "recvmsg %s: more descriptors than expected (control data truncated)", c->path);
                ok = FALSE;
        } else if (n_fds == 0) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                            n == 0 ? "The runtime closed %s without sending the terminal"
                                   : "The runtime sent no descriptor over %s",
                            c->path);
                ok = FALSE;
        } else if (!isatty(fds[0]) || ioctl(fds[0], TIOCGPTN, &ptn) < 0) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                            "The descriptor received over %s is not a pseudo-terminal master", c->path);
                ok = FALSE;
        }
        for (size_t i = ok ? 1 : 0; i < n_fds; i++)
                close(fds[i]);
        if (!ok)
                return FALSE;

        /* Non-blocking so relays never stall the main loop. The description is ours alone once the
         * runtime's create exited (it only passes the master on). */
        if (!g_unix_set_fd_nonblocking(fds[0], TRUE, NULL)) {
                int e = errno;
                close(fds[0]);
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e),
                                   "fcntl O_NONBLOCK on %s's pty: %s", c->path, g_strerror(e)),
                       FALSE;
        }
        c->master_fd = fds[0];
        return apply_size(c, error);
}

/* Returns 1 with the master, 0 when nothing is queued yet, -1 on error (also set in c->error). */
static int console_receive(KilnConsole *c)
{
        char data[256];
        int fds[CONSOLE_MAX_FDS], msg_flags = 0;
        size_t n_fds;
        ssize_t n;

        if (c->master_fd >= 0)
                return 1;
        if (c->error)
                return -1;

        if (c->conn_fd < 0) {
                c->conn_fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (c->conn_fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                        return 0;
                if (c->conn_fd < 0) {
                        g_set_error(&c->error, G_IO_ERROR, g_io_error_from_errno(errno), "accept %s: %s",
                                    c->path, g_strerror(errno));
                        console_close_socket(c);
                        return -1;
                }
        }

        /* Close-on-exec: the master must not leak into runtimes spawned by other runs meanwhile. */
        n = kiln_recv_fds(c->conn_fd, data, sizeof(data), fds, CONSOLE_MAX_FDS, &n_fds, MSG_DONTWAIT,
                          &msg_flags);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                return 0;
        if (n < 0)
                g_set_error(&c->error, G_IO_ERROR, g_io_error_from_errno(errno), "recvmsg %s: %s", c->path,
                            g_strerror(errno));
        else
                (void)take_master(c, fds, n_fds, msg_flags, n, &c->error);
        console_close_socket(c);
        return c->master_fd >= 0 ? 1 : -1;
}

static gboolean on_socket_ready(int fd, GIOCondition condition, gpointer data);

static void console_watch(KilnConsole *c)
{
        int fd = c->conn_fd >= 0 ? c->conn_fd : c->listen_fd;

        console_unwatch(c);
        if (fd < 0)
                return;
        c->source = g_unix_fd_source_new(fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
        g_source_set_callback(c->source, (GSourceFunc)(void (*)(void))on_socket_ready, c, NULL);
        g_source_set_static_name(c->source, "kiln console socket");
        g_source_attach(c->source, c->context);
}

static gboolean on_socket_ready(G_GNUC_UNUSED int fd, G_GNUC_UNUSED GIOCondition condition, gpointer data)
{
        KilnConsole *c = data;
        gboolean was_listening = c->conn_fd < 0;

        if (console_receive(c) != 0)
                return G_SOURCE_REMOVE; /* done either way; the socket is closed */
        if (was_listening && c->conn_fd >= 0) {
                console_watch(c); /* accepted: now wait for the message on the connection */
                return G_SOURCE_REMOVE;
        }
        return G_SOURCE_CONTINUE;
}

KilnConsole *kiln_console_new(const char *socket_path, GMainContext *context, GError **error)
{
        g_autoptr(KilnConsole) c = g_new0(KilnConsole, 1);
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        size_t len = strlen(socket_path);

        c->path = g_strdup(socket_path);
        c->listen_fd = c->conn_fd = c->master_fd = -1;
        c->context = context;
        if (len >= sizeof(addr.sun_path))
                return g_set_error(error, G_IO_ERROR, G_IO_ERROR_FILENAME_TOO_LONG,
                                   "Console socket path %s is longer than a unix socket allows (%zu bytes)",
                                   socket_path, sizeof(addr.sun_path) - 1),
                       NULL;
        memcpy(addr.sun_path, socket_path, len);

        c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (c->listen_fd < 0)
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "socket for %s: %s",
                                   socket_path, g_strerror(errno)),
                       NULL;
        /* The path is in a bundle directory only kilnd writes to: whatever is there is ours from an
         * earlier attempt. */
        if (unlink(socket_path) < 0 && errno != ENOENT)
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "unlink %s: %s",
                                   socket_path, g_strerror(errno)),
                       NULL;
        if (bind(c->listen_fd, (struct sockaddr *)&addr, offsetof(struct sockaddr_un, sun_path) + len + 1) <
            0) {
                int e = errno;
                kiln_close_fdp(&c->listen_fd);
                c->listen_fd = -1; /* nothing bound: nothing to unlink */
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "bind %s: %s", socket_path,
                                   g_strerror(e)),
                       NULL;
        }
        /* Only root (the runtime) may connect; the directory is 0700 too. */
        if (chmod(socket_path, 0600) < 0 || listen(c->listen_fd, 1) < 0)
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "listen on %s: %s",
                                   socket_path, g_strerror(errno)),
                       NULL;
        console_watch(c);
        return g_steal_pointer(&c);
}

gboolean kiln_console_receive_now(KilnConsole *console, GError **error)
{
        switch (console_receive(console)) {
        case 1:
                return TRUE;
        case 0:
                console_close_socket(console);
                g_set_error(&console->error, G_IO_ERROR, G_IO_ERROR_FAILED,
                            "The runtime did not send the terminal over %s", console->path);
                break;
        }
        if (error)
                *error = g_error_copy(console->error);
        return FALSE;
}

int kiln_console_get_master(KilnConsole *console)
{
        return console->master_fd;
}

gboolean kiln_console_set_size(KilnConsole *console, guint16 rows, guint16 cols, GError **error)
{
        if (rows == 0 || cols == 0)
                return TRUE;
        console->rows = rows;
        console->cols = cols;
        return apply_size(console, error);
}

void kiln_console_free(KilnConsole *console)
{
        if (!console)
                return;
        console_close_socket(console);
        kiln_close_fdp(&console->master_fd);
        g_clear_error(&console->error);
        g_free(console->path);
        g_free(console);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* process.terminal: a pty made inside the container (its own devpts instance), whose master is sent
 * over the console socket as runc sends it — one SCM_RIGHTS descriptor, the pty's name as data — and
 * whose slave becomes the command's controlling terminal and stdio. */
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "base/fd-passing.h"
#include "isolate.h"

int iso_console_connect(const char *path, GError **error)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;

        if (strlen(path) >= sizeof(addr.sun_path)) {
                iso_fail(error, "console socket '%s': path too long", path);
                return -1;
        }
        strcpy(addr.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
                iso_fail_errno(error, errno, "connect to console socket '%s'", path);
                return -1;
        }
        return kiln_steal_fd(&fd);
}

static gboolean send_master(int console_fd, int master, const char *name, GError **error)
{
        if (kiln_send_fds(console_fd, name, strlen(name), &master, 1) < 0)
                return iso_fail_errno(error, errno, "send the terminal to the console socket");
        return TRUE;
}

gboolean iso_terminal_setup(const IsoSpec *spec, int console_fd, GError **error)
{
        _cleanup_close_ int master = -1, slave = -1;
        unsigned int n = 0;
        int unlock = 0;
        char name[32];

        if (!spec->terminal)
                return TRUE;
        if (console_fd < 0)
                return iso_fail(error, "process.terminal is set, but no --console-socket was given");
        /* The container's own /dev/ptmx (after the pivot): the pty belongs to its devpts instance. */
        master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0)
                return iso_fail_errno(error, errno, "open '/dev/ptmx' in the container");
        if (ioctl(master, TIOCSPTLCK, &unlock) < 0 || ioctl(master, TIOCGPTN, &n) < 0)
                return iso_fail_errno(error, errno, "unlock the pty");
        /* The slave through the master, not by its name: nothing can stand in for it. */
        slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (slave < 0)
                return iso_fail_errno(error, errno, "open the pty's slave");
        if (spec->rows && spec->cols) {
                struct winsize ws = {.ws_row = spec->rows, .ws_col = spec->cols};
                if (ioctl(slave, TIOCSWINSZ, &ws) < 0)
                        return iso_fail_errno(error, errno, "set the terminal size %ux%u", spec->rows,
                                              spec->cols);
        }
        g_snprintf(name, sizeof(name), "/dev/pts/%u", n);
        if (!send_master(console_fd, master, name, error))
                return FALSE;
        kiln_close_fdp(&master);
        master = -1;
        /* A session of its own with the pty as its controlling terminal, which is also its stdio. */
        if (setsid() < 0 && errno != EPERM)
                return iso_fail_errno(error, errno, "setsid");
        if (ioctl(slave, TIOCSCTTY, 0) < 0)
                return iso_fail_errno(error, errno, "make '%s' the controlling terminal", name);
        for (int fd = 0; fd < 3; fd++)
                if (dup2(slave, fd) < 0)
                        return iso_fail_errno(error, errno, "dup2 the terminal to %d", fd);
        return TRUE;
}

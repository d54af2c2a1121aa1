/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-net-gate: the first createRuntime hook of a run with pasta or slirp4netns (docs/network.md).
 *
 *   kiln-net-gate FIFO
 *
 * The runtime (runc, crun, kiln-isolate) runs it once the container's namespaces exist and before the
 * command's exec; it returns when kilnd has said, through FIFO (in the run's bundle, root's, 0600),
 * whether the network's helper is ready: a byte 'r' is success (exit 0), anything else, or the end of the
 * FIFO's last writer (kilnd failed the helper, or died), is failure (exit 1), which fails the runtime's
 * start. kilnd decides readiness and its timeout; this program only waits for the word. kilnd holds the
 * FIFO's only writer from before the runtime starts, so a kilnd that dies is seen here as an end of file:
 * the wait is bounded by kilnd's life (and by the hook's own timeout in config.json).
 *
 * The state JSON on stdin is not needed (the FIFO's path is the argument) and is not read: runc and
 * kiln-isolate both write it without waiting for a reader. No GLib, no allocation: this runs on every
 * such run, on the runtime's path. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
        int fd;

        if (argc != 2 || argv[1][0] != '/') {
                fputs("usage: kiln-net-gate /ABSOLUTE/FIFO\n", stderr);
                return 2;
        }
        /* O_NONBLOCK: an open that would wait for a writer returns at once, and the read below then sees
         * the end of file that a FIFO without writers gives. */
        fd = open(argv[1], O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                fprintf(stderr, "kiln-net-gate: %s: %s\n", argv[1], strerror(errno));
                return 1;
        }
        for (;;) {
                char c;
                ssize_t r = read(fd, &c, 1);
                struct pollfd p = {.fd = fd, .events = POLLIN};

                if (r == 1) {
                        if (c == 'r')
                                return 0;
                        /* The runtime reports this hook's failure first; kilnd's error, which follows, says
                         * why. */
                        fputs("kiln-net-gate: the run's network helper failed (kiln's error says why)\n",
                              stderr);
                        return 1;
                }
                if (r == 0) {
                        fputs("kiln-net-gate: kilnd ended the wait for the network\n", stderr);
                        return 1;
                }
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN) {
                        fprintf(stderr, "kiln-net-gate: read: %s\n", strerror(errno));
                        return 1;
                }
                /* POLLIN or POLLHUP: either way the next read says which. */
                if (poll(&p, 1, -1) < 0 && errno != EINTR) {
                        fprintf(stderr, "kiln-net-gate: poll: %s\n", strerror(errno));
                        return 1;
                }
        }
}

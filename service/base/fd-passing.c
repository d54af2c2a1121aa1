/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib.h>

#include "base/fd-passing.h"

typedef union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * KILN_FDS_MAX)];
} Control;

ssize_t kiln_send_fds(int sock, const void *data, size_t len, const int *fds, size_t n_fds)
{
        struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
        Control control;
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n;

        if (n_fds > KILN_FDS_MAX) {
                errno = EINVAL;
                return -1;
        }
        if (n_fds > 0) {
                struct cmsghdr *c;
                memset(&control, 0, sizeof(control));
                msg.msg_control = control.buf;
                msg.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                c = CMSG_FIRSTHDR(&msg);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
        }
        do
                n = sendmsg(sock, &msg, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        return n;
}

ssize_t kiln_recv_fds(int sock, void *buf, size_t len, int *fds, size_t max_fds, size_t *n_fds, int flags,
                      int *msg_flags)
{
        struct iovec iov = {.iov_base = buf, .iov_len = len};
        Control control;
        struct msghdr msg = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = control.buf,
                .msg_controllen = sizeof(control.buf),
        };
        gboolean dropped = FALSE;
        ssize_t n;

        *n_fds = 0;
        n = recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
        if (n < 0)
                return n;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
                size_t count;
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < count; i++) {
                        int fd;
                        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                        if (*n_fds < max_fds && *n_fds < KILN_FDS_MAX) {
                                fds[(*n_fds)++] = fd;
                        } else {
                                close(fd);
                                dropped = TRUE;
                        }
                }
        }
        if (msg_flags)
                *msg_flags = msg.msg_flags | (dropped ? MSG_CTRUNC : 0);
        return n;
}

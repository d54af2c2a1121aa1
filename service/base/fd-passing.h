/* SPDX-License-Identifier: Apache-2.0 */
/* Descriptors over a Unix socket (SCM_RIGHTS), one message at a time: the console socket, kiln-import's
 * reader, kiln-isolate's server. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

#define KILN_FDS_MAX 8 /* descriptors in one message */

/* Sends @len bytes of @data with @n_fds descriptors (at most KILN_FDS_MAX) in one message, with
 * MSG_NOSIGNAL, again after EINTR. Returns sendmsg's result: -1 and errno on failure. */
ssize_t kiln_send_fds(int sock, const void *data, size_t len, const int *fds, size_t n_fds);

/* Receives one message: up to @len bytes into @buf, and its descriptors close-on-exec, the first
 * @max_fds (at most KILN_FDS_MAX) into @fds, *@n_fds of them; any others are closed, whatever else is
 * wrong, so that none leaks, and reported as MSG_CTRUNC. @flags go to recvmsg; *@msg_flags (may be
 * NULL) gets the message's (MSG_TRUNC, MSG_CTRUNC). Returns recvmsg's result: -1 and errno on failure (EINTR
 * included, for callers with their own reasons to stop), *@n_fds 0. */
ssize_t kiln_recv_fds(int sock, void *buf, size_t len, int *fds, size_t max_fds, size_t *n_fds, int flags,
                      int *msg_flags);

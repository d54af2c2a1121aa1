/* SPDX-License-Identifier: Apache-2.0 */
/* `kiln-isolate serve`: what kilnd (service/runtime/isolate-server.c) and kiln-isolate's server (serve.c)
 * say to each other. The server's stdin is a SOCK_SEQPACKET socket to kilnd.
 *
 * A request is one datagram of NUL-terminated strings: the command's working directory; for a run in a
 * user namespace the intermediate mount namespace to enter first, as kiln-runtime-ns takes it (COVER,
 * then the KEEP directories: service/runtime-ns/runtime-ns.h), or nothing; "--"; then the command line
 * after kiln-isolate's global options (e.g. "--log", LOG, "run", "--detach", ..., "--", ID). With it, as
 * SCM_RIGHTS, exactly KILN_SERVE_REQUEST_FDS descriptors: a socket for the replies to this request alone,
 * then the command's stdin, stdout and stderr.
 *
 * The replies go to that socket, each one KilnServeReply: KILN_SERVE_STARTED once the server forked
 * the command (value: its pid; a pidfd of it rides along), then KILN_SERVE_EXITED (value: its exit
 * code, 128+N when killed by signal N). The server closes the socket after the last reply, so an end
 * of file without KILN_SERVE_EXITED means the server is gone. */
#pragma once

#include <stdint.h>

#define KILN_SERVE_REQUEST_MAX 16384 /* bytes of one request */
#define KILN_SERVE_REQUEST_FDS 4

enum {
        KILN_SERVE_STARTED = 1,
        KILN_SERVE_EXITED = 2,
};

typedef struct KilnServeReply {
        int32_t kind;
        int32_t value;
} KilnServeReply;

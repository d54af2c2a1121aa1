/* SPDX-License-Identifier: Apache-2.0 */
/* Bounded relays between descriptors on the GLib main loop, and bounded capture buffers.
 *
 * A relay moves bytes from one descriptor to another through one buffer of KILN_RELAY_CHUNK bytes. It
 * reads only while that buffer is empty and then writes until it is empty again, so a slow reader slows
 * the writer down (back-pressure) and memory stays the same however much flows. At EOF it closes its
 * output, which is how EOF travels on.
 *
 * No read or write may block the main loop, whatever the caller handed us: every descriptor a relay
 * polls is either a non-blocking open file description of its own (kiln_relay_open_endpoint reopens the
 * caller's terminals and pipes rather than changing the caller's flags), a socket driven with
 * MSG_DONTWAIT, or a regular file (never "not ready"). GUnixOutputStream is not used for this on purpose:
 * its "non-blocking" write is poll() followed by a blocking write(), which stalls on a caller's socket with
 * a tiny send buffer or a terminal that stopped reading. */
#pragma once

#include <gio/gio.h>

#define KILN_RELAY_CHUNK (64 * 1024)

typedef enum {
        KILN_RELAY_FLAGS_NONE = 0,
        /* The output is a pty master: at EOF of the input, send the terminal's EOF character (VEOF) when
         * the terminal is in canonical mode, instead of closing (closing a master hangs nothing up while
         * another descriptor of it is open, and would say nothing to the reader). */
        KILN_RELAY_TERMINAL_EOF = 1 << 0,
} KilnRelayFlags;

typedef struct KilnRelay KilnRelay;

/* Called once, from the main loop, when the relay is done: EOF reached and everything written (error
 * NULL), the output went away (G_IO_ERROR_BROKEN_PIPE), a capture overflowed (G_IO_ERROR_NO_SPACE), or
 * an I/O error. The relay's descriptors are closed by then; the callback may free the relay. */
typedef void (*KilnRelayDoneFunc)(KilnRelay *relay, const GError *error, gpointer user_data);

/* A descriptor of our own for the caller's @fd that a relay may poll: regular files and memory devices
 * (/dev/null...) are dup'ed (reads and writes never wait), sockets dup'ed (driven with MSG_DONTWAIT),
 * pipes, FIFOs and terminals reopened through /proc/self/fd with O_NONBLOCK, a new open file description
 * with the same access, so the caller's own flags stay as they were. @for_reading says which direction is
 * needed; @what names the descriptor in errors ("stdin"). Pty masters, other devices and directories are
 * refused. Returns the descriptor (O_CLOEXEC) or -1. */
int kiln_relay_open_endpoint(int fd, gboolean for_reading, const char *what, GError **error);

/* Takes ownership of @in_fd and @out_fd (see kiln_relay_open_endpoint; our own pipe ends must be
 * O_NONBLOCK). @name is for messages. */
KilnRelay *kiln_relay_new(const char *name, int in_fd, int out_fd, KilnRelayFlags flags);

/* Reads @in_fd into a buffer of at most @limit bytes. Past it: with @overflow_is_error the relay stops
 * with G_IO_ERROR_NO_SPACE (what fitted is kept), otherwise the rest is read and dropped. */
KilnRelay *kiln_relay_new_capture(const char *name, int in_fd, gsize limit, gboolean overflow_is_error);

/* Starts moving bytes with sources on @context (NULL: the global default context). */
void kiln_relay_start(KilnRelay *relay, GMainContext *context, KilnRelayDoneFunc done, gpointer user_data);

/* Stops at once: sources removed, descriptors closed, whatever is buffered dropped; no callback. */
void kiln_relay_stop(KilnRelay *relay);

/* Whether the relay was started and has neither finished nor been stopped. */
gboolean kiln_relay_is_running(KilnRelay *relay);

/* What a capture relay collected so far (a new reference; never NULL for a capture relay). */
GBytes *kiln_relay_get_captured(KilnRelay *relay);

void kiln_relay_free(KilnRelay *relay);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnRelay, kiln_relay_free)

/* ---- the three streams of one container run ---- */

/* What a run does with its stdio: the descriptors the runtime gets (and hands to the container's
 * process) and the relays for our side, indexed 0 (stdin), 1 (stdout), 2 (stderr).
 * - No terminal: the caller's pipes, sockets and files go straight to the container; /dev/null where the
 *   caller gave nothing (-1); a terminal is relayed through a pipe, never handed over (the container could
 *   push input into the caller's session with TIOCSTI, or change its modes).
 * - Capture (@capture_limit > 0): stdout and stderr are pipes read into buffers of at most that many bytes
 *   (past it the relay fails with G_IO_ERROR_NO_SPACE); stdin is /dev/null; the caller's fds are ignored.
 * - Terminal: the runtime gets /dev/null; kiln_stdio_attach_terminal relays the pty master once it came. */
typedef struct KilnStdio {
        KilnRelay *relays[3]; /* NULL where nothing is relayed */
        gboolean capture[3];
} KilnStdio;

/* @name says whose streams these are ("container ID"). On success @runtime_fds holds three new
 * descriptors (O_CLOEXEC) for the runtime's stdin, stdout and stderr; the relays are not started. */
gboolean kiln_stdio_prepare(KilnStdio *stdio, const int caller_fd[3], gboolean terminal, gsize capture_limit,
                            const char *name, int runtime_fds[3], GError **error);

/* With a terminal: caller stdin → @master (the terminal's EOF character at its end), @master → caller
 * stdout (or the capture). The caller's stderr has nothing to carry: a pty merges both streams. */
gboolean kiln_stdio_attach_terminal(KilnStdio *stdio, int master, const int caller_fd[3],
                                    gsize capture_limit, const char *name, GError **error);

/* Stops and frees the relays. */
void kiln_stdio_clear(KilnStdio *stdio);

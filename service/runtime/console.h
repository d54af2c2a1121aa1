/* SPDX-License-Identifier: Apache-2.0 */
/* The console socket of a terminal run: the OCI runtime creates the pty inside the container and sends
 * its master over this unix socket (SCM_RIGHTS), as `--console-socket` asks. We keep the master: its
 * size is set here, and the runtime driver relays it to the caller's descriptors. */
#pragma once

#include <gio/gio.h>

typedef struct KilnConsole KilnConsole;

/* Binds and listens on @socket_path (mode 0600; a stale socket there is replaced). Whatever arrives is
 * received by sources on @context (NULL: the global default), as soon as the runtime sends it. The path
 * must fit in sockaddr_un (107 bytes). */
KilnConsole *kiln_console_new(const char *socket_path, GMainContext *context, GError **error);

/* Receives what the runtime has queued without waiting for more. Call it once the runtime's `create`
 * exited successfully: it sent the master before that, so the master is here or it never comes. Returns
 * TRUE once the master is here; FALSE with an error when the runtime sent none. */
gboolean kiln_console_receive_now(KilnConsole *console, GError **error);

/* The pty master (O_NONBLOCK, O_CLOEXEC) or -1 before it arrived. Owned by the console. */
int kiln_console_get_master(KilnConsole *console);

/* TIOCSWINSZ on the master; before the master arrived the size is remembered and set on arrival.
 * Zero rows or columns leave the size as it is. */
gboolean kiln_console_set_size(KilnConsole *console, guint16 rows, guint16 cols, GError **error);

/* Closes the socket (and unlinks it), the connection and the master. */
void kiln_console_free(KilnConsole *console);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnConsole, kiln_console_free)

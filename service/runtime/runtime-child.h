/* SPDX-License-Identifier: Apache-2.0 */
/* What every child the runtime driver starts shares, runtime commands (runtime-op.c) and kiln-isolate's
 * server (isolate-server.c) alike: the environment it gets and the bounded wait for its end. A header of
 * its own so that the server needs nothing else of the driver, which uses the server. */
#pragma once

#include <gio/gio.h>

/* The environment of every runtime command: nothing of kilnd's. */
extern const char *const kiln_runtime_environ[];

/* Waits for @process on a private main context, at most @timeout_ms before it is killed. */
void kiln_runtime_wait_bounded(GSubprocess *process, guint timeout_ms);

/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-isolate's server, seen from kilnd: one `kiln-isolate [GLOBAL...] serve` started with kilnd's own
 * global options, which forks a child per command instead of kilnd executing kiln-isolate for every run
 * (service/isolate/serve-protocol.h, docs/isolate.md). That includes a run in a user namespace, whose
 * command line has kiln-runtime-ns run kiln-isolate: the server's child makes kiln-runtime-ns's
 * namespace itself. A run whose kiln-isolate command line starts differently (the caller's
 * runtime_args) executes kiln-isolate as before.
 *
 * Part of the runtime driver: requests are made and watched on the container's main context. */
#pragma once

#include <gio/gio.h>

typedef struct KilnIsolateServer KilnIsolateServer;
typedef struct KilnIsolateRequest KilnIsolateRequest;

/* @argv: kiln-isolate and its global options ("serve" is added). The server is started now and again
 * by the next request after it went away; a start that fails is logged, and requests fail until one
 * succeeds. */
KilnIsolateServer *kiln_isolate_server_new(const char *const *argv);
/* Closes the socket (the server reaps what still runs and exits) and waits a bounded time for it. */
void kiln_isolate_server_free(KilnIsolateServer *server);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnIsolateServer, kiln_isolate_server_free)

/* Whether a command line that starts with @argv[0 .. @n) is one this server runs: kiln-isolate with the
 * server's global options, alone or after "kiln-runtime-ns COVER KEEP... --" (the kiln-runtime-ns next
 * to the server's kiln-isolate). *@n_wrap (may be NULL): how many strings that prefix takes, 0 without. */
gboolean kiln_isolate_server_serves(KilnIsolateServer *server, const char *const *argv, guint n,
                                    guint *n_wrap);
/* The server's pid, 0 while none runs (for tests and logs). */
pid_t kiln_isolate_server_get_pid(KilnIsolateServer *server);

/* Has the server run `kiln-isolate GLOBAL... @args` in @cwd with @stdio (taken, also on failure) as
 * its stdin, stdout and stderr; with @n_ns > 0 in the intermediate mount namespace @ns names (COVER
 * KEEP..., as kiln-runtime-ns takes them). */
KilnIsolateRequest *kiln_isolate_server_request(KilnIsolateServer *server, const char *cwd,
                                                const char *const *ns, guint n_ns, const char *const *args,
                                                int stdio[3], GError **error);

/* @status: the command's exit code, 128+N when killed by signal N, 255 when the server went away
 * before it told. */
typedef void (*KilnIsolateRequestDone)(gpointer data, int status);

/* Calls @done once, on @context, when the command has exited. */
void kiln_isolate_request_watch(KilnIsolateRequest *request, GMainContext *context,
                                KilnIsolateRequestDone done, gpointer data);
/* Waits at most @timeout_ms for the command to exit, then kills it and waits as long again. Returns
 * its status, 255 when it was lost. A watch still gets its call, from its context's main loop. */
int kiln_isolate_request_wait_bounded(KilnIsolateRequest *request, guint timeout_ms);
/* The command's pid once the server said it started it (read by the watch or the wait), else 0. */
pid_t kiln_isolate_request_get_pid(KilnIsolateRequest *request);

KilnIsolateRequest *kiln_isolate_request_ref(KilnIsolateRequest *request);
void kiln_isolate_request_unref(KilnIsolateRequest *request);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnIsolateRequest, kiln_isolate_request_unref)

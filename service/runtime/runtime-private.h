/* SPDX-License-Identifier: Apache-2.0 */
/* Inside the runtime driver: one runtime command (runc or crun) as a GSubprocess with its messages, shared
 * by runtime.c (the container's life cycle) and runtime-detect.c. Not for the rest of kilnd. */
#pragma once

#include <gio/gio.h>

#include "runtime/isolate-server.h"
#include "runtime/runtime-child.h"
#include "runtime/runtime.h"
#include "runtime/stdio-relay.h"

/* Files the driver keeps in the bundle directory while a container lives (removed after). */
#define KILN_RUNTIME_PID_FILE "pid"
#define KILN_RUNTIME_LOG_FILE "runtime.log"
#define KILN_RUNTIME_CONSOLE_SOCKET "console.sock"

/* What the runtime said, kept per command. */
#define KILN_RUNTIME_MESSAGE_LIMIT 8192

typedef struct KilnRuntimeOp KilnRuntimeOp;
typedef void (*KilnRuntimeOpDone)(gpointer data, KilnRuntimeOp *op);

struct KilnRuntimeOp {
        char *runtime_name; /* basename, for messages */
        char *verb;
        char *id;
        char *log_path; /* where the runtime logs when its stderr is the container's */
        int signal;     /* for kill: what was sent */
        GSubprocess *process;
        KilnIsolateRequest *request; /* instead of @process: run by kiln-isolate's server */
        KilnRelay *messages;         /* the runtime's stderr, bounded */
        gboolean exited;
        int status;    /* exit code, 128+N when killed by signal N */
        char *message; /* when status != 0: what failed, with the runtime's own words */

        KilnRuntimeOpDone done;
        gpointer data;
        GDestroyNotify destroy;
};

/* Spawns `RUNTIME [runtime_args] --root STATE --log-format json [--log LOG] VERB [verb_args] -- ID
 * [after_id]` with a clean environment, in @bundle_dir. With @stdio (taken, also on failure) the runtime
 * gets those descriptors as its stdin, stdout and stderr, and logs to the bundle's KILN_RUNTIME_LOG_FILE;
 * without, its stdin is /dev/null, stdout is dropped and stderr collected. */
KilnRuntimeOp *kiln_runtime_op_spawn(const char *runtime, const char *const *runtime_args,
                                     const char *state_root, const char *bundle_dir, const char *id,
                                     const char *verb, const char *const *verb_args, const char *after_id,
                                     int stdio[3], GError **error);

/* The same command run by kiln-isolate's @server (kiln_isolate_server_serves() must hold for the
 * global options), always with @stdio; no after_id. */
KilnRuntimeOp *kiln_runtime_op_request(KilnIsolateServer *server, const char *runtime,
                                       const char *const *runtime_args, const char *state_root,
                                       const char *bundle_dir, const char *id, const char *verb,
                                       const char *const *verb_args, int stdio[3], GError **error);

/* Waits on @context for the command to exit and its messages to be read, then calls @done, @destroy on
 * @data, and frees @op. */
void kiln_runtime_op_run(KilnRuntimeOp *op, GMainContext *context, KilnRuntimeOpDone done, gpointer data,
                         GDestroyNotify destroy);

/* The failure as an error: G_IO_ERROR_NOT_FOUND / G_IO_ERROR_PERMISSION_DENIED when the runtime could not
 * execute the command (as a shell's 127 / 126), otherwise G_IO_ERROR_FAILED. */
GError *kiln_runtime_op_error(KilnRuntimeOp *op);

/* What the runtime said about the command for the caller's stderr, one "NAME: LEVEL: MSG" line each
 * (its log, or its stderr when it had none), escaped and bounded; when the command failed without its
 * errors, which are in kiln_runtime_op_error()'s message. NULL: nothing. Only from the done callback. */
char *kiln_runtime_op_notes(KilnRuntimeOp *op);

/* Runs one command to its end on a private main context, at most @timeout_ms before it is killed. */
gboolean kiln_runtime_run_sync(const char *runtime, const char *const *runtime_args, const char *state_root,
                               const char *bundle_dir, const char *id, const char *verb,
                               const char *const *verb_args, guint timeout_ms, GError **error);

/* The runtime's messages from its stderr or log (JSON lines from runc and crun with --log-format json,
 * or plain text): the errors, escaped and bounded; NULL when there are none. */
char *kiln_runtime_parse_messages(const char *text, gsize len);

/* Frees @container and iterates @context until every callback that still held it has run: for a
 * private context that is about to go away. */
void kiln_container_free_draining(KilnContainer *container, GMainContext *context);

/* The container's own process, our child once the runtime's create exited (kilnd is a child subreaper).
 * Watched through a pidfd and reaped with waitid(P_PIDFD); without pidfds (kernels before 5.4, valgrind)
 * through GLib's child watch for this one pid. Nothing else in kilnd waits for pids it was not given, so
 * the pid stays ours until reaped here: a signal sent through the watch never hits a recycled pid. */
typedef struct KilnPidWatch KilnPidWatch;

/* @status: the exit code, or 128+N when killed by signal N; -1 with @error when the status was lost. */
typedef void (*KilnPidExited)(gpointer data, int status, const GError *error);

KilnPidWatch *kiln_pid_watch_new(pid_t pid, const char *what, GMainContext *context, KilnPidExited exited,
                                 gpointer data, GError **error);
gboolean kiln_pid_watch_is_alive(KilnPidWatch *watch);
void kiln_pid_watch_kill(KilnPidWatch *watch, int signal);
/* For freeing: waits at most @timeout_ms for the process to exit and reaps it, without the callback.
 * Returns FALSE when it is still there. */
gboolean kiln_pid_watch_reap_sync(KilnPidWatch *watch, guint timeout_ms);
void kiln_pid_watch_free(KilnPidWatch *watch);

/* SPDX-License-Identifier: Apache-2.0 */
/* The runtime driver: one container run through an OCI runtime (runc, crun) from a bundle that
 * already holds config.json. It does run --detach / wait / the state's removal, kill on request or
 * cancellation, stdio (passed through or relayed), the console socket and the pty for terminals,
 * and captured output for RunCaptured. It knows nothing of builders, D-Bus or polkit.
 *
 * Life cycle: kiln_container_new → kiln_container_start_async (the runtime's or kiln-isolate's
 * run --detach; finishes once the process runs) → kiln_container_wait_async (finishes after the process
 * exited, every relay has flushed, and the runtime's state was removed) → kiln_container_free. Kill and
 * Resize may be called between start and wait's completion. Freeing a container that still runs kills it and
 * cleans up (synchronously bounded); a start or wait still pending then never calls back. The finish
 * functions only read @result (the container may be NULL there).
 *
 * The process using this must be a child subreaper (PR_SET_CHILD_SUBREAPER; start fails with
 * G_IO_ERROR_NOT_SUPPORTED otherwise) and iterate the main context that was the thread default when
 * start was called: everything happens there. While a container lives the driver keeps three files in
 * the bundle dir: "pid", "runtime.log" (the runtime's log during create) and "console.sock" (terminal
 * runs only; its path must fit in a unix socket address, 107 bytes); they are gone once wait answers. */
#pragma once

#include <sys/types.h>

#include <gio/gio.h>

typedef struct KilnRuntimeSpec {
        const char *runtime;    /* absolute path of runc or crun */
        const char *state_root; /* the runtime's --root: kiln's private state dir */
        /* Holds config.json (process.terminal must match @terminal). A cgroup it names
         * (linux.cgroupsPath, cgroupfs) is the caller's to remove once the run is over: the driver removes
         * only the runtime's state, without the runtime's `delete`, for such a container. */
        const char *bundle_dir;
        const char *container_id; /* unique among live containers; [a-zA-Z0-9_-] */
        char **runtime_args;      /* extra global arguments for the runtime, or NULL */
        gboolean no_pivot;
        /* The runtime is kiln-isolate: signals through the process's pidfd instead of `kill`, and its
         * state (kept for a crash's clean-up) always removed by us once the process is reaped, never by
         * `delete` (docs/isolate.md). */
        gboolean isolate;
        /* With @isolate: kiln-isolate's server (isolate-server.h), which runs it without an execve when
         * the command line's global options are the server's own; NULL: always executed. */
        struct KilnIsolateServer *isolate_server;
        /* With @isolate: config.json has poststop hooks, which kiln-isolate's `delete` runs: it is called
         * once the process is reaped, instead of removing the state here. */
        gboolean isolate_delete;

        /* The caller's descriptors (-1: /dev/null). Pipes, sockets and regular files go to the
         * container as they are; a terminal is never handed to the container: its data is relayed
         * through a pipe (or, with @terminal, through the pty). The driver dups what it keeps. */
        int stdin_fd;
        int stdout_fd;
        int stderr_fd;

        gboolean terminal;  /* allocate a pty in the container via --console-socket */
        guint16 rows, cols; /* its initial size (0: leave as is) */

        /* RunCaptured: collect stdout and stderr (stdio fds above are ignored, stdin is /dev/null) up
         * to this many bytes each; past it the container is killed and wait fails with
         * G_IO_ERROR_NO_SPACE. 0: no capture. */
        gsize capture_limit;
} KilnRuntimeSpec;

/* RUNTIME [runtime_args] --root STATE_ROOT --log-format json: the global options of every runtime
 * command the driver runs (what kiln-isolate's server is started with). */
char **kiln_runtime_global_argv(const char *runtime, const char *const *runtime_args,
                                const char *state_root);

typedef struct KilnContainer KilnContainer;

KilnContainer *kiln_container_new(const KilnRuntimeSpec *spec);
void kiln_container_free(KilnContainer *container);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnContainer, kiln_container_free)

/* create + start. Fails with G_IO_ERROR_FAILED carrying the runtime's own message (its stderr or log,
 * trimmed and bounded) when the runtime refuses; with G_IO_ERROR_NOT_FOUND or
 * G_IO_ERROR_PERMISSION_DENIED (same message) when the runtime says it cannot execute the command — a
 * shell's 127 and 126 (runc checks at create). Whatever was set up is torn down before it answers. */
void kiln_container_start_async(KilnContainer *container, GCancellable *cancellable,
                                GAsyncReadyCallback callback, gpointer user_data);
gboolean kiln_container_start_finish(KilnContainer *container, GAsyncResult *result, GError **error);
pid_t kiln_container_get_pid(KilnContainer *container);

/* The process's exit code, 128+N when killed by signal N. Cancelling kills the container (SIGKILL)
 * and still waits for it and cleans up, then fails with G_IO_ERROR_CANCELLED. */
void kiln_container_wait_async(KilnContainer *container, GCancellable *cancellable,
                               GAsyncReadyCallback callback, gpointer user_data);
int kiln_container_wait_finish(KilnContainer *container, GAsyncResult *result, GError **error);

/* `RUNTIME kill -- ID SIGNAL` (kiln-isolate: the signal goes straight through the pidfd), without waiting
 * for it (a refusal is logged; for SIGKILL the process is then killed through its pidfd). While starting,
 * the signal is kept and sent once the process runs; after the process exited it is moot, but SIGKILL
 * still drops output held for a reader that stopped reading, so that wait answers. */
gboolean kiln_container_kill(KilnContainer *container, int signal, GError **error);
/* TIOCSWINSZ on the pty (G_IO_ERROR_NOT_SUPPORTED without a terminal); remembered until the pty
 * arrives; moot after exit. When the caller's stdin ends, the terminal gets its EOF character (VEOF,
 * twice after a partial line) if it is in canonical mode; in raw mode input just stops. */
gboolean kiln_container_resize(KilnContainer *container, guint16 rows, guint16 cols, GError **error);

/* After wait: what RunCaptured collected (never NULL when capture_limit > 0). */
GBytes *kiln_container_get_captured(KilnContainer *container, int stream /* 1 or 2 */);

/* Start-up detection: runs a trivial container from a tiny bundle under @scratch_dir with each
 * candidate and returns the first that works (e.g. crun refuses some cgroup v1 layouts). */
char *kiln_runtime_detect(char **candidates, const char *state_root, const char *scratch_dir,
                          GError **error);

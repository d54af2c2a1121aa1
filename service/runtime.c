/* SPDX-License-Identifier: Apache-2.0 */
/* The runtime driver: create / start / wait / delete of one container through runc or crun, its stdio,
 * its terminal and its captured output. Start-up detection is in runtime-detect.c.
 *
 * Everything runs on the main context that was the thread default when the container was started:
 * runtime commands are GSubprocesses (GLib reaps them), the container's own process is watched through a
 * pidfd and reaped with waitid(P_PIDFD) — kilnd is a child subreaper, so the process re-parents to us when
 * the runtime's `create` exits, and nothing else in kilnd waits for pids it was not given. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <glib-unix.h>

#include "console.h"
#include "kiln-common.h"
#include "runtime-private.h"
#include "runtime.h"
#include "stdio-relay.h"

#define SYNC_TIMEOUT_MS 10000 /* a runtime command while freeing a container */
#define REAP_TIMEOUT_MS 5000  /* the container's process after SIGKILL, while freeing */

enum { RELAY_STDIN, RELAY_STDOUT, RELAY_STDERR, N_RELAYS };

typedef struct TaskHook {
        GAsyncReadyCallback callback;
        gpointer user_data;
        gboolean dropped; /* the container was freed: the caller hears nothing more */
} TaskHook;

struct KilnContainer {
        int ref_count;
        gboolean disposed;

        char *runtime;
        char *state_root;
        char *bundle_dir;
        char *id;
        char **runtime_args;
        gboolean no_pivot;
        gboolean terminal;
        guint16 rows, cols;
        gsize capture_limit;
        int caller_fd[3]; /* our duplicates of the caller's descriptors, -1: /dev/null */
        GError *setup_error;

        GMainContext *context;

        GSubprocess *create_process;
        GSubprocess *start_process;
        GSubprocess *delete_process;
        gboolean created; /* the runtime has state for it: delete it */
        gboolean deleted;
        gboolean started;
        pid_t pid;
        gboolean pid_alive; /* watched, not reaped yet */
        int pidfd;          /* -1 without pidfd support */
        GSource *pid_source;
        gboolean exited;
        int exit_status;
        GError *exit_error;
        int pending_signal; /* Kill before the process ran */

        KilnConsole *console;
        KilnRelay *relays[N_RELAYS];
        gboolean relay_is_capture[N_RELAYS];
        GError *capture_error;

        GTask *start_task;
        TaskHook *start_hook;
        GError *start_error;
        GSource *start_cancel_source;
        gboolean start_cancelled;
        GTask *wait_task;
        TaskHook *wait_hook;
        GSource *wait_cancel_source;
        gboolean wait_cancelled;
        gboolean settled;
};

static KilnContainer *container_ref(KilnContainer *c)
{
        c->ref_count++;
        return c;
}

static void container_unref(KilnContainer *c);

static void container_unrefp(KilnContainer **c)
{
        if (*c)
                container_unref(*c);
}
#define _cleanup_container_unref_ _cleanup_(container_unrefp)

static char *bundle_path(KilnContainer *c, const char *name)
{
        return g_build_filename(c->bundle_dir, name, NULL);
}

KilnContainer *kiln_container_new(const KilnRuntimeSpec *spec)
{
        KilnContainer *c = g_new0(KilnContainer, 1);
        const int fds[3] = {spec->stdin_fd, spec->stdout_fd, spec->stderr_fd};

        c->ref_count = 1;
        c->runtime = g_strdup(spec->runtime);
        c->state_root = g_strdup(spec->state_root);
        c->bundle_dir = g_strdup(spec->bundle_dir);
        c->id = g_strdup(spec->container_id);
        c->runtime_args = g_strdupv(spec->runtime_args);
        c->no_pivot = spec->no_pivot;
        c->terminal = spec->terminal;
        c->rows = spec->rows;
        c->cols = spec->cols;
        c->capture_limit = spec->capture_limit;
        c->pidfd = -1;
        c->exit_status = -1;
        /* Our own duplicates: the caller may close theirs as soon as this returns. */
        for (int i = 0; i < 3; i++) {
                c->caller_fd[i] = -1;
                if (fds[i] < 0 || spec->capture_limit > 0)
                        continue;
                c->caller_fd[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
                if (c->caller_fd[i] < 0 && !c->setup_error)
                        g_set_error(&c->setup_error, G_IO_ERROR, g_io_error_from_errno(errno),
                                    "dup the caller's descriptor %d: %s", fds[i], g_strerror(errno));
        }
        return c;
}

pid_t kiln_container_get_pid(KilnContainer *container)
{
        return container->started ? container->pid : 0;
}

/* ---- tasks ---- */

static void task_trampoline(GObject *source, GAsyncResult *result, gpointer data)
{
        TaskHook *hook = data;

        if (!hook->dropped && hook->callback)
                hook->callback(NULL, result, hook->user_data);
        g_free(hook);
}

static GTask *task_new(GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data,
                       gpointer tag, TaskHook **hook_out)
{
        TaskHook *hook = g_new0(TaskHook, 1);
        GTask *task;

        hook->callback = callback;
        hook->user_data = user_data;
        task = g_task_new(NULL, cancellable, task_trampoline, hook);
        g_task_set_source_tag(task, tag);
        if (hook_out)
                *hook_out = hook;
        return task;
}

static void cancel_source_clear(GSource **source)
{
        if (*source) {
                g_source_destroy(*source);
                g_source_unref(*source);
                *source = NULL;
        }
}

/* Returns the start task (the last thing a handler does: the callback may free the container). */
static void start_task_return(KilnContainer *c, GError *error)
{
        g_autoptr(GTask) task = g_steal_pointer(&c->start_task);

        c->start_hook = NULL;
        cancel_source_clear(&c->start_cancel_source);
        if (error)
                g_task_return_error(task, error);
        else
                g_task_return_boolean(task, TRUE);
}

static void wait_task_return(KilnContainer *c)
{
        g_autoptr(GTask) task = g_steal_pointer(&c->wait_task);

        c->wait_hook = NULL;
        cancel_source_clear(&c->wait_cancel_source);
        if (c->wait_cancelled)
                g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_CANCELLED, "Waiting for container %s was cancelled; it was killed", c->id);
        else if (c->capture_error)
                g_task_return_error(task, g_error_copy(c->capture_error));
        else if (c->exit_error)
                g_task_return_error(task, g_error_copy(c->exit_error));
        else
                g_task_return_int(task, c->exit_status);
}

/* ---- the container's process ---- */

static gboolean on_pidfd_ready(int fd, GIOCondition condition, gpointer data);
static void container_settle(KilnContainer *c);
static void container_exited(KilnContainer *c);
static void container_kill_internal(KilnContainer *c);

static gboolean read_pid_file(KilnContainer *c, GError **error)
{
        g_autofree char *path = bundle_path(c, KILN_RUNTIME_PID_FILE);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        char buf[32];
        ssize_t n;
        guint64 pid;

        if (fd < 0)
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "open %s: %s", path,
                                   g_strerror(errno)),
                       FALSE;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n < 0)
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "read %s: %s", path,
                                   g_strerror(errno)),
                       FALSE;
        buf[n] = '\0';
        g_strstrip(buf);
        if (!g_ascii_string_to_unsigned(buf, 10, 2, G_MAXINT32, &pid, NULL))
                return g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s holds no process id", path),
                       FALSE;
        c->pid = (pid_t)pid;
        return TRUE;
}

static void exit_status_from_wait(KilnContainer *c, int wait_status)
{
        if (WIFEXITED(wait_status))
                c->exit_status = WEXITSTATUS(wait_status);
        else if (WIFSIGNALED(wait_status))
                c->exit_status = 128 + WTERMSIG(wait_status);
}

static void on_child_exited(GPid pid, gint wait_status, gpointer data);

/* The pid comes from the runtime's pid file and the process is our child by now (re-parented to the
 * subreaper, and nobody else waits for it), so it stays ours until we reap it: neither the pidfd nor,
 * without pidfds, the pid itself can name a recycled process. */
static gboolean watch_pid(KilnContainer *c, GError **error)
{
        c->pidfd = pidfd_open(c->pid, 0); /* always close-on-exec */
        if (c->pidfd >= 0) {
                c->pid_source = g_unix_fd_source_new(c->pidfd, G_IO_IN);
                g_source_set_callback(c->pid_source, (GSourceFunc)(void (*)(void))on_pidfd_ready, c, NULL);
        } else if (errno == ENOSYS) {
                /* Kernels before 5.3 and valgrind have no pidfds: GLib's child watch waits for this pid
                 * (and only this one) instead. */
                c->pid_source = g_child_watch_source_new(c->pid);
                g_source_set_callback(c->pid_source, (GSourceFunc)(void (*)(void))on_child_exited, c, NULL);
        } else {
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                                   "pidfd_open %d (container %s): %s", (int)c->pid, c->id, g_strerror(errno)),
                       FALSE;
        }
        g_source_set_static_name(c->pid_source, "kiln container process");
        g_source_attach(c->pid_source, c->context);
        c->pid_alive = TRUE;
        return TRUE;
}

static void unwatch_pid(KilnContainer *c)
{
        cancel_source_clear(&c->pid_source);
        kiln_close_fdp(&c->pidfd);
        c->pidfd = -1;
        c->pid_alive = FALSE;
}

/* Reaps the process if it exited. Returns TRUE when it is gone (reaped, or lost with an error). */
static gboolean reap(KilnContainer *c, int flags)
{
        siginfo_t info = {0};
        int r, wait_status = 0;

        if (c->pidfd < 0) {
                r = waitpid(c->pid, &wait_status, flags);
                if (r == 0 || (r < 0 && errno == EINTR))
                        return FALSE;
                if (r > 0)
                        exit_status_from_wait(c, wait_status);
        } else {
                r = waitid((idtype_t)P_PIDFD, (id_t)c->pidfd, &info, WEXITED | flags);
                if (r == 0 && info.si_pid == 0)
                        return FALSE; /* WNOHANG: still running */
                if (r < 0 && (errno == EINTR || errno == EAGAIN))
                        return FALSE;
                if (r == 0)
                        c->exit_status = info.si_code == CLD_EXITED ? info.si_status : 128 + info.si_status;
        }
        if (r < 0)
                g_set_error(&c->exit_error, G_IO_ERROR, g_io_error_from_errno(errno),
                            "wait for process %d of container %s: %s", (int)c->pid, c->id, g_strerror(errno));
        unwatch_pid(c);
        return TRUE;
}

static gboolean on_pidfd_ready(int fd, GIOCondition condition, gpointer data)
{
        _cleanup_container_unref_ KilnContainer *c = container_ref(data);

        if (!reap(c, WNOHANG))
                return G_SOURCE_CONTINUE;
        container_exited(c);
        return G_SOURCE_REMOVE;
}

static void on_child_exited(GPid pid, gint wait_status, gpointer data)
{
        _cleanup_container_unref_ KilnContainer *c = container_ref(data);

        exit_status_from_wait(c, wait_status); /* GLib reaped it */
        unwatch_pid(c);
        container_exited(c);
}

/* The fallback when the runtime cannot kill. Safe: the process is our unreaped child (see watch_pid). */
static void kill_directly(KilnContainer *c, int signal)
{
        int r;

        if (!c->pid_alive)
                return;
        r = c->pidfd >= 0 ? pidfd_send_signal(c->pidfd, signal, NULL, 0) : kill(c->pid, signal);
        if (r < 0 && errno != ESRCH)
                g_warning("Cannot send signal %d to process %d of container %s: %s", signal, (int)c->pid, c->id,
                          g_strerror(errno));
}

/* ---- runtime commands ---- */

static void on_kill_done(gpointer data, KilnRuntimeOp *op)
{
        KilnContainer *c = data;

        if (c->disposed || op->status == 0 || c->exited)
                return;
        /* The process must die on cancellation whatever the runtime thinks of it. */
        if (op->signal == SIGKILL && c->pid_alive) {
                g_message("%s; killing process %d directly", op->message, (int)c->pid);
                kill_directly(c, SIGKILL);
        } else {
                g_warning("%s", op->message);
        }
}

static gboolean runtime_kill(KilnContainer *c, int signal, GError **error)
{
        g_autofree char *sig = g_strdup_printf("%d", signal);
        KilnRuntimeOp *op = kiln_runtime_op_spawn(c->runtime, (const char *const *)c->runtime_args,
                                                  c->state_root, c->bundle_dir, c->id, "kill", NULL, sig, NULL,
                                                  error);

        if (!op) {
                if (signal == SIGKILL)
                        kill_directly(c, SIGKILL);
                return FALSE;
        }
        op->signal = signal;
        kiln_runtime_op_run(op, c->context, on_kill_done, container_ref(c),
                            (GDestroyNotify)container_unref);
        return TRUE;
}

static void on_delete_done(gpointer data, KilnRuntimeOp *op)
{
        KilnContainer *c = data;

        if (c->disposed)
                return;
        g_clear_object(&c->delete_process);
        c->deleted = TRUE;
        if (op->status != 0)
                g_warning("%s", op->message);
        container_settle(c);
}

/* delete --force: the runtime kills whatever is left of the container and forgets it. */
static void runtime_delete(KilnContainer *c)
{
        const char *const args[] = {"--force", NULL};
        g_autoptr(GError) error = NULL;
        KilnRuntimeOp *op;

        if (!c->created || c->deleted || c->delete_process)
                return;
        op = kiln_runtime_op_spawn(c->runtime, (const char *const *)c->runtime_args, c->state_root, c->bundle_dir,
                                   c->id, "delete", args, NULL, NULL, &error);
        if (!op) {
                g_warning("Cannot delete container %s: %s", c->id, error->message);
                c->deleted = TRUE;
                kill_directly(c, SIGKILL);
                return;
        }
        c->delete_process = g_object_ref(op->process);
        kiln_runtime_op_run(op, c->context, on_delete_done, container_ref(c),
                            (GDestroyNotify)container_unref);
}

/* ---- stdio ---- */

static void on_relay_done(KilnRelay *relay, const GError *error, gpointer data)
{
        _cleanup_container_unref_ KilnContainer *c = container_ref(data);

        if (c->disposed)
                return;
        if (error && g_error_matches(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE)) {
                if (!c->capture_error)
                        c->capture_error = g_error_new(G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                                                       "%s; the container was killed", error->message);
                container_kill_internal(c);
        } else if (error) {
                g_debug("Container %s: %s", c->id, error->message);
        }
        container_settle(c);
}

static void relays_start(KilnContainer *c)
{
        for (int i = 0; i < N_RELAYS; i++)
                if (c->relays[i] && !kiln_relay_is_running(c->relays[i]))
                        kiln_relay_start(c->relays[i], c->context, on_relay_done, c);
}

static int open_null(int flags, GError **error)
{
        int fd = open("/dev/null", flags | O_CLOEXEC | O_NOCTTY);

        if (fd < 0)
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "open /dev/null: %s", g_strerror(errno));
        return fd;
}

/* A pipe for the container's side of stream @i and a relay (or capture) for ours. @ours is the caller's
 * endpoint (see kiln_relay_open_endpoint), taken; -1 for a capture. Returns the container's end. */
static int pipe_for(KilnContainer *c, int i, int ours, GError **error)
{
        int p[2];
        char name[64];
        int container_end, our_end;

        /* Both ends close-on-exec: the container's end reaches the runtime only as its stdio (dup2). */
        if (pipe2(p, O_CLOEXEC) < 0) {
                kiln_close_fdp(&ours);
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "pipe for container %s: %s",
                                   c->id, g_strerror(errno)),
                       -1;
        }
        container_end = i == 0 ? p[0] : p[1];
        our_end = i == 0 ? p[1] : p[0];
        /* Non-blocking only on our end: the container gets an ordinary blocking pipe. */
        (void)g_unix_set_fd_nonblocking(our_end, TRUE, NULL);
        g_snprintf(name, sizeof(name), "%s of container %s", i == 0 ? "stdin" : i == 1 ? "stdout" : "stderr", c->id);
        if (ours < 0) {
                c->relays[i] = kiln_relay_new_capture(name, our_end, c->capture_limit, TRUE);
                c->relay_is_capture[i] = TRUE;
        } else {
                c->relays[i] = i == 0 ? kiln_relay_new(name, ours, our_end, KILN_RELAY_FLAGS_NONE)
                                      : kiln_relay_new(name, our_end, ours, KILN_RELAY_FLAGS_NONE);
        }
        return container_end;
}

/* The three descriptors `create` gets, which runc hands on to the container's process when there is no
 * terminal: /dev/null, the caller's own pipes, files and sockets, or pipes we relay or capture. */
static gboolean setup_stdio(KilnContainer *c, int out[3], GError **error)
{
        static const char *const names[] = {"stdin", "stdout", "stderr"};

        for (int i = 0; i < 3; i++) {
                int fd = c->caller_fd[i];

                if (c->terminal || (i == 0 && c->capture_limit > 0) || (fd < 0 && c->capture_limit == 0))
                        out[i] = open_null(i == 0 ? O_RDONLY : O_WRONLY, error);
                else if (c->capture_limit > 0)
                        out[i] = pipe_for(c, i, -1, error);
                else if (isatty(fd)) {
                        /* Never hand a terminal to the container: it could inject input into the caller's
                         * session (TIOCSTI) or change its modes. Relay it through a pipe instead. */
                        int ours = kiln_relay_open_endpoint(fd, i == 0, names[i], error);
                        out[i] = ours < 0 ? -1 : pipe_for(c, i, ours, error);
                } else
                        out[i] = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (out[i] < 0) {
                        if (error && !*error)
                                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "dup %s: %s", names[i],
                                            g_strerror(errno));
                        for (int j = 0; j < i; j++)
                                kiln_close_fdp(&out[j]);
                        return FALSE;
                }
        }
        return TRUE;
}

/* With a terminal: the pty master replaces the pipes. Caller stdin → master (VEOF at its EOF), master →
 * caller stdout (or the capture); the caller's stderr has nothing to carry, a pty merges both streams. */
static gboolean setup_terminal_relays(KilnContainer *c, GError **error)
{
        int master = kiln_console_get_master(c->console);
        g_autofree char *in_name = g_strdup_printf("terminal input of container %s", c->id);
        g_autofree char *out_name = g_strdup_printf("terminal of container %s", c->id);
        int in = -1, out = -1, m_in = -1, m_out = -1;

        if (c->caller_fd[0] >= 0 && c->capture_limit == 0) {
                in = kiln_relay_open_endpoint(c->caller_fd[0], TRUE, "stdin", error);
                m_in = in < 0 ? -1 : fcntl(master, F_DUPFD_CLOEXEC, 3);
                if (in < 0 || m_in < 0)
                        goto fail;
                c->relays[RELAY_STDIN] = kiln_relay_new(in_name, in, m_in, KILN_RELAY_TERMINAL_EOF);
                in = m_in = -1;
        }
        m_out = fcntl(master, F_DUPFD_CLOEXEC, 3);
        if (m_out < 0)
                goto fail;
        if (c->capture_limit > 0) {
                c->relays[RELAY_STDOUT] = kiln_relay_new_capture(out_name, m_out, c->capture_limit, TRUE);
                c->relay_is_capture[RELAY_STDOUT] = TRUE;
                return TRUE;
        }
        out = c->caller_fd[1] >= 0 ? kiln_relay_open_endpoint(c->caller_fd[1], FALSE, "stdout", error)
                                   : open_null(O_WRONLY | O_NONBLOCK, error);
        if (out < 0)
                goto fail;
        c->relays[RELAY_STDOUT] = kiln_relay_new(out_name, m_out, out, KILN_RELAY_FLAGS_NONE);
        return TRUE;
fail:
        if (error && !*error)
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "dup the terminal of container %s: %s",
                            c->id, g_strerror(errno));
        kiln_close_fdp(&in);
        kiln_close_fdp(&m_in);
        kiln_close_fdp(&m_out);
        return FALSE;
}

/* ---- the life cycle ---- */

static void remove_bundle_files(KilnContainer *c)
{
        static const char *const names[] = {KILN_RUNTIME_PID_FILE, KILN_RUNTIME_LOG_FILE};

        for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
                g_autofree char *path = bundle_path(c, names[i]);
                if (unlink(path) < 0 && errno != ENOENT)
                        g_debug("unlink %s: %s", path, g_strerror(errno));
        }
}

/* Called whenever something finished: once nothing is left (no runtime command running, the process
 * reaped, the runtime's state deleted, every output relay flushed) the waiting task gets its answer. */
static void container_settle(KilnContainer *c)
{
        if (c->disposed || c->settled)
                return;
        if (c->create_process || c->start_process || c->delete_process || c->pid_alive ||
            (c->created && !c->deleted))
                return;
        for (int i = RELAY_STDOUT; i < N_RELAYS; i++)
                if (kiln_relay_is_running(c->relays[i]))
                        return;

        c->settled = TRUE;
        kiln_relay_stop(c->relays[RELAY_STDIN]);
        g_clear_pointer(&c->console, kiln_console_free);
        remove_bundle_files(c);
        if (c->start_task)
                start_task_return(c, c->start_error ? g_steal_pointer(&c->start_error)
                                                    : g_error_new(G_IO_ERROR, G_IO_ERROR_FAILED,
                                                                  "Container %s ended before it started", c->id));
        else if (c->wait_task)
                wait_task_return(c);
}

static void container_exited(KilnContainer *c)
{
        c->exited = TRUE;
        /* Nobody reads the container's stdin any more: what the caller still sends goes nowhere. */
        kiln_relay_stop(c->relays[RELAY_STDIN]);
        runtime_delete(c);
        container_settle(c);
}

static void container_kill_internal(KilnContainer *c)
{
        if (c->exited)
                return;
        if (!c->started) {
                c->pending_signal = SIGKILL;
                return;
        }
        (void)runtime_kill(c, SIGKILL, NULL);
}

/* A start that cannot go on: tear down whatever exists, answer once everything is gone. */
static void start_fail(KilnContainer *c, GError *error)
{
        if (!c->start_error)
                c->start_error = error;
        else
                g_error_free(error);
        kiln_relay_stop(c->relays[RELAY_STDIN]);
        runtime_delete(c); /* also kills the process waiting to be started */
        container_settle(c);
}

static void on_start_done(gpointer data, KilnRuntimeOp *op)
{
        KilnContainer *c = data;
        int signal;

        if (c->disposed)
                return;
        g_clear_object(&c->start_process);
        if (op->status != 0) {
                start_fail(c, kiln_runtime_op_error(op));
                return;
        }
        c->started = TRUE;
        if (c->start_cancelled) {
                start_fail(c, g_error_new(G_IO_ERROR, G_IO_ERROR_CANCELLED, "Starting container %s was cancelled",
                                          c->id));
                return;
        }
        /* A Kill that came while starting applies now that there is a process to signal. */
        signal = c->pending_signal;
        c->pending_signal = 0;
        if (signal && !c->exited)
                (void)runtime_kill(c, signal, NULL);
        start_task_return(c, NULL);
}

static void on_create_done(gpointer data, KilnRuntimeOp *op)
{
        KilnContainer *c = data;
        GError *error = NULL;
        KilnRuntimeOp *start;

        if (c->disposed)
                return;
        g_clear_object(&c->create_process);
        if (op->status != 0) {
                /* The runtime cleans up after a failed create; deleting here could hit another container
                 * of the same name, the very conflict that may have made create fail. */
                start_fail(c, kiln_runtime_op_error(op));
                return;
        }
        c->created = TRUE;
        if (!read_pid_file(c, &error) || !watch_pid(c, &error) ||
            (c->terminal && (!kiln_console_receive_now(c->console, &error) || !setup_terminal_relays(c, &error)))) {
                start_fail(c, error);
                return;
        }
        relays_start(c);
        if (c->start_cancelled) {
                start_fail(c, g_error_new(G_IO_ERROR, G_IO_ERROR_CANCELLED, "Starting container %s was cancelled",
                                          c->id));
                return;
        }
        start = kiln_runtime_op_spawn(c->runtime, (const char *const *)c->runtime_args, c->state_root,
                                      c->bundle_dir, c->id, "start", NULL, NULL, NULL, &error);
        if (!start) {
                start_fail(c, error);
                return;
        }
        c->start_process = g_object_ref(start->process);
        kiln_runtime_op_run(start, c->context, on_start_done, container_ref(c),
                            (GDestroyNotify)container_unref);
}

static gboolean on_start_cancelled(GCancellable *cancellable, gpointer data)
{
        KilnContainer *c = data;

        c->start_cancelled = TRUE;
        cancel_source_clear(&c->start_cancel_source);
        return G_SOURCE_REMOVE; /* acted on between the steps: create is never interrupted */
}

static gboolean spec_check(KilnContainer *c, GError **error)
{
        size_t n = c->id ? strlen(c->id) : 0;
        int subreaper = 0;

        if (!c->runtime || !g_path_is_absolute(c->runtime) || !c->state_root || !g_path_is_absolute(c->state_root) ||
            !c->bundle_dir || !g_path_is_absolute(c->bundle_dir))
                return g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                   "The runtime, its state root and the bundle must be absolute paths"),
                       FALSE;
        if (n == 0 || n > 128 || c->id[0] == '-' || strspn(c->id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != n)
                return g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                   "Invalid container id '%s': 1 to 128 of [a-zA-Z0-9_-], not starting with '-'",
                                   c->id ? c->id : ""),
                       FALSE;
        if (prctl(PR_GET_CHILD_SUBREAPER, &subreaper) < 0 || !subreaper)
                return g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                                   "This process is not a child subreaper (PR_SET_CHILD_SUBREAPER): it could not "
                                   "wait for container processes"),
                       FALSE;
        return TRUE;
}

void kiln_container_start_async(KilnContainer *container, GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data)
{
        KilnContainer *c = container;
        g_autoptr(GTask) task = NULL;
        g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func(g_free);
        GError *error = NULL;
        TaskHook *hook;
        KilnRuntimeOp *create;
        int stdio[3] = {-1, -1, -1};

        task = task_new(cancellable, callback, user_data, kiln_container_start_async, &hook);
        if (c->start_task || c->created || c->settled || c->context) {
                g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_PENDING, "Container %s was started already",
                                        c->id);
                return;
        }
        if (c->setup_error || !spec_check(c, &error)) {
                g_task_return_error(task, error ? error : g_error_copy(c->setup_error));
                return;
        }
        c->context = g_main_context_ref_thread_default();
        c->start_task = g_steal_pointer(&task);
        c->start_hook = hook;
        if (cancellable) {
                c->start_cancel_source = g_cancellable_source_new(cancellable);
                g_source_set_callback(c->start_cancel_source, (GSourceFunc)(void (*)(void))on_start_cancelled, c,
                                      NULL);
                g_source_attach(c->start_cancel_source, c->context);
        }

        remove_bundle_files(c); /* stale ones would confuse us, not the runtime */
        if (!setup_stdio(c, stdio, &error))
                goto fail;
        if (c->terminal) {
                g_autofree char *socket = bundle_path(c, KILN_RUNTIME_CONSOLE_SOCKET);
                c->console = kiln_console_new(socket, c->context, &error);
                if (!c->console)
                        goto fail;
                (void)kiln_console_set_size(c->console, c->rows, c->cols, NULL);
                g_ptr_array_add(args, g_strdup("--console-socket"));
                g_ptr_array_add(args, g_steal_pointer(&socket));
        }
        g_ptr_array_add(args, g_strdup("--bundle"));
        g_ptr_array_add(args, g_strdup(c->bundle_dir));
        g_ptr_array_add(args, g_strdup("--pid-file"));
        g_ptr_array_add(args, bundle_path(c, KILN_RUNTIME_PID_FILE));
        if (c->no_pivot)
                g_ptr_array_add(args, g_strdup("--no-pivot"));
        g_ptr_array_add(args, NULL);

        create = kiln_runtime_op_spawn(c->runtime, (const char *const *)c->runtime_args, c->state_root,
                                       c->bundle_dir, c->id, "create", (const char *const *)args->pdata, NULL,
                                       stdio, &error);
        stdio[0] = stdio[1] = stdio[2] = -1; /* taken, also on failure */
        if (!create)
                goto fail;
        /* The container's ends of our pipes now live only in the runtime (closed by the launcher), so
         * EOF arrives when the container's processes are gone. */
        c->create_process = g_object_ref(create->process);
        kiln_runtime_op_run(create, c->context, on_create_done, container_ref(c),
                            (GDestroyNotify)container_unref);
        if (!c->terminal)
                relays_start(c);
        return;
fail:
        for (int i = 0; i < 3; i++)
                kiln_close_fdp(&stdio[i]);
        start_fail(c, error);
}

gboolean kiln_container_start_finish(KilnContainer *container, GAsyncResult *result, GError **error)
{
        g_return_val_if_fail(g_task_is_valid(result, NULL), FALSE);
        return g_task_propagate_boolean(G_TASK(result), error);
}

static gboolean on_wait_cancelled(GCancellable *cancellable, gpointer data)
{
        _cleanup_container_unref_ KilnContainer *c = container_ref(data);

        cancel_source_clear(&c->wait_cancel_source);
        if (c->settled)
                return G_SOURCE_REMOVE;
        c->wait_cancelled = TRUE;
        /* Whatever is still buffered for the caller is dropped: they asked to stop. */
        for (int i = 0; i < N_RELAYS; i++)
                kiln_relay_stop(c->relays[i]);
        container_kill_internal(c);
        container_settle(c);
        return G_SOURCE_REMOVE;
}

void kiln_container_wait_async(KilnContainer *container, GCancellable *cancellable, GAsyncReadyCallback callback,
                               gpointer user_data)
{
        KilnContainer *c = container;
        TaskHook *hook;
        g_autoptr(GTask) task = task_new(cancellable, callback, user_data, kiln_container_wait_async, &hook);

        if (!c->started || c->wait_task) {
                g_task_return_new_error(task, G_IO_ERROR, c->wait_task ? G_IO_ERROR_PENDING : G_IO_ERROR_FAILED,
                                        c->wait_task ? "Container %s is being waited for already"
                                                     : "Container %s was not started",
                                        c->id);
                return;
        }
        c->wait_task = g_steal_pointer(&task);
        c->wait_hook = hook;
        if (c->settled) {
                wait_task_return(c);
                return;
        }
        if (cancellable) {
                c->wait_cancel_source = g_cancellable_source_new(cancellable);
                g_source_set_callback(c->wait_cancel_source, (GSourceFunc)(void (*)(void))on_wait_cancelled, c,
                                      NULL);
                g_source_attach(c->wait_cancel_source, c->context);
        }
}

int kiln_container_wait_finish(KilnContainer *container, GAsyncResult *result, GError **error)
{
        GError *local = NULL;
        gssize status;

        g_return_val_if_fail(g_task_is_valid(result, NULL), -1);
        status = g_task_propagate_int(G_TASK(result), &local);
        if (local) {
                g_propagate_error(error, local);
                return -1;
        }
        return (int)status;
}

gboolean kiln_container_kill(KilnContainer *container, int signal, GError **error)
{
        KilnContainer *c = container;

        if (signal <= 0 || signal > SIGRTMAX)
                return g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "Invalid signal %d", signal),
                       FALSE;
        if (c->exited || c->settled)
                return TRUE; /* nothing left to signal */
        if (!c->start_task && !c->started)
                return g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "Container %s was not started", c->id),
                       FALSE;
        if (!c->started) {
                /* Starting: remember it (SIGKILL wins) and send it once the process runs. */
                if (c->pending_signal != SIGKILL)
                        c->pending_signal = signal;
                return TRUE;
        }
        return runtime_kill(c, signal, error);
}

gboolean kiln_container_resize(KilnContainer *container, guint16 rows, guint16 cols, GError **error)
{
        KilnContainer *c = container;

        if (!c->terminal)
                return g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "Container %s has no terminal",
                                   c->id),
                       FALSE;
        c->rows = rows;
        c->cols = cols;
        if (!c->console || c->exited)
                return TRUE; /* applied when the terminal arrives, or moot */
        return kiln_console_set_size(c->console, rows, cols, error);
}

GBytes *kiln_container_get_captured(KilnContainer *container, int stream)
{
        KilnContainer *c = container;

        g_return_val_if_fail(stream == 1 || stream == 2, NULL);
        if (c->capture_limit == 0)
                return NULL;
        if (!c->relays[stream] || !c->relay_is_capture[stream])
                return g_bytes_new(NULL, 0);
        return kiln_relay_get_captured(c->relays[stream]);
}

/* ---- freeing ---- */

static void drop_task(GTask **task, TaskHook **hook, GSource **cancel_source, const char *id)
{
        g_autoptr(GTask) t = g_steal_pointer(task);

        cancel_source_clear(cancel_source);
        if (!t)
                return;
        (*hook)->dropped = TRUE;
        *hook = NULL;
        g_task_return_new_error(t, G_IO_ERROR, G_IO_ERROR_CANCELLED, "Container %s was freed", id);
}

/* Synchronous and bounded: wait for runtime commands under way, kill the process, delete the runtime's
 * state, reap, close everything. Callbacks of commands still in flight find the container disposed. */
static void container_dispose(KilnContainer *c)
{
        g_autoptr(GError) error = NULL;

        c->disposed = TRUE;
        drop_task(&c->start_task, &c->start_hook, &c->start_cancel_source, c->id);
        drop_task(&c->wait_task, &c->wait_hook, &c->wait_cancel_source, c->id);
        g_clear_error(&c->start_error);

        /* A create is let finish rather than killed: killing it would orphan its half-made container. */
        if (c->create_process) {
                kiln_runtime_wait_bounded(c->create_process, SYNC_TIMEOUT_MS);
                if (g_subprocess_get_if_exited(c->create_process) && g_subprocess_get_exit_status(c->create_process) == 0) {
                        c->created = TRUE;
                        if (!read_pid_file(c, &error) || !watch_pid(c, &error))
                                g_warning("Container %s: %s", c->id, error->message);
                }
                g_clear_object(&c->create_process);
        }
        if (c->start_process) {
                kiln_runtime_wait_bounded(c->start_process, SYNC_TIMEOUT_MS);
                g_clear_object(&c->start_process);
        }
        kill_directly(c, SIGKILL); /* no time for the runtime's kill */
        if (c->delete_process) {
                kiln_runtime_wait_bounded(c->delete_process, SYNC_TIMEOUT_MS);
                g_clear_object(&c->delete_process);
                c->deleted = TRUE;
        }
        if (c->created && !c->deleted) {
                const char *const args[] = {"--force", NULL};
                if (!kiln_runtime_run_sync(c->runtime, (const char *const *)c->runtime_args, c->state_root,
                                           c->bundle_dir, c->id, "delete", args, SYNC_TIMEOUT_MS, &error))
                        g_warning("%s", error->message);
                c->deleted = TRUE;
        }
        if (c->pid_alive) {
                gint64 deadline = g_get_monotonic_time() + REAP_TIMEOUT_MS * 1000;
                struct pollfd p = {.fd = c->pidfd, .events = POLLIN};

                cancel_source_clear(&c->pid_source); /* we reap it here, GLib must not */
                if (c->pidfd >= 0)
                        (void)poll(&p, 1, REAP_TIMEOUT_MS);
                while (!reap(c, WNOHANG) && g_get_monotonic_time() < deadline)
                        g_usleep(10000); /* without a pidfd there is nothing to poll */
                if (c->pid_alive) {
                        g_warning("Process %d of container %s did not exit after SIGKILL", (int)c->pid, c->id);
                        unwatch_pid(c);
                }
        }
        for (int i = 0; i < N_RELAYS; i++)
                kiln_relay_stop(c->relays[i]);
        g_clear_pointer(&c->console, kiln_console_free);
        if (c->context)
                remove_bundle_files(c);
}

static void container_unref(KilnContainer *c)
{
        if (--c->ref_count > 0)
                return;
        for (int i = 0; i < N_RELAYS; i++)
                kiln_relay_free(c->relays[i]);
        for (int i = 0; i < 3; i++)
                kiln_close_fdp(&c->caller_fd[i]);
        g_clear_error(&c->setup_error);
        g_clear_error(&c->exit_error);
        g_clear_error(&c->capture_error);
        if (c->context)
                g_main_context_unref(c->context);
        g_strfreev(c->runtime_args);
        g_free(c->runtime);
        g_free(c->state_root);
        g_free(c->bundle_dir);
        g_free(c->id);
        g_free(c);
}

void kiln_container_free(KilnContainer *container)
{
        if (!container)
                return;
        container_dispose(container);
        container_unref(container);
}

void kiln_container_free_draining(KilnContainer *container, GMainContext *context)
{
        if (!container)
                return;
        container_dispose(container);
        while (container->ref_count > 1)
                g_main_context_iteration(context, TRUE);
        container_unref(container);
}

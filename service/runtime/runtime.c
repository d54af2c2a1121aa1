/* SPDX-License-Identifier: Apache-2.0 */
/* The runtime driver: run --detach / wait / delete of one container through runc or crun, its stdio,
 * its terminal and its captured output. The pieces: runtime-op.c (one runtime command), runtime-pid.c
 * (the container's process), stdio-relay.c (its streams), console.c (its terminal), runtime-detect.c.
 *
 * Everything runs on the main context that was the thread default when the container was started:
 * runtime commands are GSubprocesses (GLib reaps them), the container's own process is watched through a
 * pidfd — kilnd is a child subreaper, so the process re-parents to us when the runtime's `run --detach`
 * exits. One execution of the runtime runs a container: `run --detach` returns once the command runs
 * (create and start in one, each execution of runc costs Go's start-up); once the process is reaped the
 * runtime's state directory is removed here, which is all `delete` would do (state_is_ours()); `delete`
 * is executed only when it would do more (systemd's cgroup driver, poststop hooks) or to undo a start.
 *
 * kiln-isolate (isolation=chroot) also has its signals sent through the pidfd.
 *
 * A run is over ("settled") once no runtime command runs, the process is reaped, the runtime's state is
 * deleted and every output relay has flushed; only then does wait answer. */
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <glib-unix.h>
#include <json-glib/json-glib.h>

#include "runtime/console.h"
#include "base/fs-util.h"
#include "base/kiln-common.h"
#include "base/reaper.h"
#include "base/cgroup.h"
#include "runtime/runtime-private.h"
#include "runtime/runtime.h"
#include "runtime/stdio-relay.h"

#define SYNC_TIMEOUT_MS 10000 /* a runtime command while freeing a container */
#define REAP_TIMEOUT_MS 5000  /* the container's process after SIGKILL, while freeing */

enum { STDIN, STDOUT, STDERR };

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
        char *what; /* "container ID", for messages */
        char **runtime_args;
        gboolean no_pivot;
        gboolean isolate;
        gboolean isolate_delete; /* poststop hooks: kiln-isolate's delete runs them */
        /* Once the process is reaped, the runtime's state is removed by us instead of by `delete` (no
         * execution of the runtime on the reply path): see state_is_ours(). */
        gboolean forget_state;
        KilnIsolateServer *isolate_server;
        gboolean terminal;
        guint16 rows, cols;
        gsize capture_limit;
        int caller_fd[3]; /* our duplicates of the caller's descriptors, -1: /dev/null */
        GError *setup_error;

        GMainContext *context;

        GSubprocess *create_process;        /* run --detach (the runtime's or kiln-isolate's) */
        gboolean reaper_held;               /* from create until the process is watched */
        KilnIsolateRequest *create_request; /* instead: run --detach by kiln-isolate's server */
        GSubprocess *delete_process;
        gboolean created; /* the runtime has state for it: delete it */
        gboolean deleted;
        gboolean started;
        pid_t pid;
        KilnPidWatch *pid_watch; /* until reaped */
        gboolean exited;
        int exit_status;
        GError *exit_error;
        int pending_signal; /* Kill before the process ran */

        KilnConsole *console;
        KilnStdio stdio;
        /* What the runtime says about the run (its log of create, its stderr of start), for the caller's
         * stderr: written to @notes_fd, a non-blocking pipe whose other end @notes relays, closed once no
         * runtime command of the start is left. -1 / NULL: no stderr to tell (RunCaptured, /dev/null). */
        int notes_fd;
        KilnRelay *notes;
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
        guint settle_source;
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

/* The container's process re-parents to kilnd when create exits, before its pid file is read: the reaper
 * must not take it (and its status) in between. */
static void reaper_hold(KilnContainer *c)
{
        if (!c->reaper_held)
                kiln_reaper_hold();
        c->reaper_held = TRUE;
}

static void reaper_release(KilnContainer *c)
{
        if (c->reaper_held)
                kiln_reaper_release();
        c->reaper_held = FALSE;
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
        c->what = g_strdup_printf("container %s", c->id);
        c->runtime_args = g_strdupv(spec->runtime_args);
        c->no_pivot = spec->no_pivot;
        c->isolate = spec->isolate;
        c->isolate_server = spec->isolate ? spec->isolate_server : NULL;
        c->isolate_delete = spec->isolate && spec->isolate_delete;
        c->terminal = spec->terminal;
        c->rows = spec->rows;
        c->cols = spec->cols;
        c->capture_limit = spec->capture_limit;
        c->exit_status = -1;
        c->notes_fd = -1;
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

static void task_trampoline(G_GNUC_UNUSED GObject *source, GAsyncResult *result, gpointer data)
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

static void container_settle(KilnContainer *c);

/* Returns the start task (the last thing a handler does: the callback may free the container). */
static void start_task_return(KilnContainer *c, GError *error)
{
        g_autoptr(GTask) task = g_steal_pointer(&c->start_task);

        c->start_hook = NULL;
        cancel_source_clear(&c->start_cancel_source);
        if (error) {
                g_task_return_error(task, error);
                return;
        }
        /* The process may have exited, and everything else ended, while `start` was still running:
         * nothing else would notice that the run is over. */
        container_settle(c);
        g_task_return_boolean(task, TRUE);
}

static void wait_task_return(KilnContainer *c)
{
        g_autoptr(GTask) task = g_steal_pointer(&c->wait_task);

        c->wait_hook = NULL;
        cancel_source_clear(&c->wait_cancel_source);
        if (c->wait_cancelled)
                g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                        "Waiting for container %s was cancelled; it was killed", c->id);
        else if (c->capture_error)
                g_task_return_error(task, g_error_copy(c->capture_error));
        else if (c->exit_error)
                g_task_return_error(task, g_error_copy(c->exit_error));
        else
                g_task_return_int(task, c->exit_status);
}

/* ---- the container's process ---- */

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
                return g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s holds no process id",
                                   path),
                       FALSE;
        c->pid = (pid_t)pid;
        return TRUE;
}

static void on_process_exited(gpointer data, int status, const GError *error)
{
        _cleanup_container_unref_ KilnContainer *c = container_ref(data);

        g_clear_pointer(&c->pid_watch, kiln_pid_watch_free);
        c->exit_status = status;
        if (error)
                c->exit_error = g_error_copy(error);
        container_exited(c);
}

static gboolean watch_pid(KilnContainer *c, GError **error)
{
        c->pid_watch = kiln_pid_watch_new(c->pid, c->what, c->context, on_process_exited, c, error);
        return c->pid_watch != NULL;
}

/* ---- runtime commands ---- */

static void on_kill_done(gpointer data, KilnRuntimeOp *op)
{
        KilnContainer *c = data;

        if (c->disposed || op->status == 0 || c->exited)
                return;
        /* The process must die on cancellation whatever the runtime thinks of it. */
        if (op->signal == SIGKILL && kiln_pid_watch_is_alive(c->pid_watch)) {
                g_message("%s; killing process %d directly", op->message, (int)c->pid);
                kiln_pid_watch_kill(c->pid_watch, SIGKILL);
        } else {
                g_warning("%s", op->message);
        }
}

static gboolean runtime_kill(KilnContainer *c, int signal, GError **error)
{
        g_autofree char *sig = NULL;
        KilnRuntimeOp *op;

        /* kiln-isolate's kill would do just this, through a pidfd of its own, three milliseconds later:
         * the process is our child until we reap it, so its pid cannot have been recycled. */
        if (c->isolate) {
                kiln_pid_watch_kill(c->pid_watch, signal);
                return TRUE;
        }
        sig = g_strdup_printf("%d", signal);
        op = kiln_runtime_op_spawn(c->runtime, (const char *const *)c->runtime_args, c->state_root,
                                   c->bundle_dir, c->id, "kill", NULL, sig, NULL, error);
        if (!op) {
                if (signal == SIGKILL)
                        kiln_pid_watch_kill(c->pid_watch, SIGKILL);
                return FALSE;
        }
        op->signal = signal;
        kiln_runtime_op_run(op, c->context, on_kill_done, container_ref(c), (GDestroyNotify)container_unref);
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

/* The runtime's state of a container whose process was reaped, when state_is_ours(): nothing is left to
 * kill, and removing its directory under the --root we chose is all its `delete` would do. The id is ours
 * and checked ([a-zA-Z0-9_-]); the removal never follows a symlink nor leaves the state root's file
 * system. */
static void state_forget(KilnContainer *c)
{
        _cleanup_close_ int dirfd = open(c->state_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        g_autofree char *failed = NULL;
        int r = dirfd < 0 ? -errno : kiln_rm_rf_at(dirfd, c->id, &failed);

        if (r < 0 && r != -ENOENT)
                g_warning("Cannot remove the state of container %s: %s/%s: %s", c->id, c->state_root,
                          failed ? failed : c->id, g_strerror(-r));
        c->deleted = TRUE;
}

/* delete --force: the runtime kills whatever is left of the container and forgets it. */
static void runtime_delete(KilnContainer *c)
{
        const char *const args[] = {"--force", NULL};
        g_autoptr(GError) error = NULL;
        KilnRuntimeOp *op;

        if (!c->created || c->deleted || c->delete_process)
                return;
        if (c->forget_state && c->exited) {
                state_forget(c);
                return;
        }
        op = kiln_runtime_op_spawn(c->runtime, (const char *const *)c->runtime_args, c->state_root,
                                   c->bundle_dir, c->id, "delete", args, NULL, NULL, &error);
        if (!op) {
                g_warning("Cannot delete container %s: %s", c->id, error->message);
                c->deleted = TRUE;
                kiln_pid_watch_kill(c->pid_watch, SIGKILL);
                return;
        }
        c->delete_process = g_object_ref(op->process);
        kiln_runtime_op_run(op, c->context, on_delete_done, container_ref(c),
                            (GDestroyNotify)container_unref);
}

/* ---- stdio ---- */

static void on_relay_done(G_GNUC_UNUSED KilnRelay *relay, const GError *error, gpointer data)
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

static void on_notes_done(G_GNUC_UNUSED KilnRelay *relay, const GError *error, gpointer data)
{
        _cleanup_container_unref_ KilnContainer *c = container_ref(data);

        if (c->disposed)
                return;
        if (error)
                g_debug("Container %s: runtime messages: %s", c->id, error->message);
        container_settle(c);
}

static void relays_start(KilnContainer *c)
{
        for (int i = 0; i < 3; i++)
                if (c->stdio.relays[i] && !kiln_relay_is_running(c->stdio.relays[i]))
                        kiln_relay_start(c->stdio.relays[i], c->context, on_relay_done, c);
}

static void relays_stop(KilnContainer *c, gboolean output_too)
{
        for (int i = 0; i < (output_too ? 3 : 1); i++)
                kiln_relay_stop(c->stdio.relays[i]);
}

/* ---- what the runtime says ---- */

/* The caller's stderr gets the runtime's words through a relay of our own: a caller that does not read
 * its stderr can never block kilnd, and the pipe holds what one start says (bounded per command,
 * KILN_RUNTIME_MESSAGE_LIMIT); what does not fit is dropped. */
static gboolean notes_prepare(KilnContainer *c, GError **error)
{
        g_autoptr(GError) local = NULL;
        int p[2];
        int out;

        if (c->capture_limit > 0 || c->caller_fd[STDERR] < 0)
                return TRUE;
        /* A stderr no relay may write (a device other than a terminal or /dev/null) still goes to the
         * container as it is (stdio-relay.h); it just hears nothing from the runtime. */
        out = kiln_relay_open_endpoint(c->caller_fd[STDERR], FALSE, "stderr", &local);
        if (out < 0) {
                g_debug("Container %s: no runtime messages: %s", c->id, local->message);
                return TRUE;
        }
        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
                int errsv = errno;
                kiln_close_fdp(&out);
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errsv), "pipe: %s",
                                   g_strerror(errsv)),
                       FALSE;
        }
        c->notes_fd = p[1];
        c->notes = kiln_relay_new("runtime messages", p[0], out, KILN_RELAY_FLAGS_NONE);
        return TRUE;
}

static void on_notes_done(KilnRelay *relay, const GError *error, gpointer data);

static void notes_tell(KilnContainer *c, KilnRuntimeOp *op)
{
        g_autofree char *notes = NULL;
        const char *p;
        gsize left;

        if (c->notes_fd < 0)
                return;
        notes = kiln_runtime_op_notes(op);
        for (p = notes, left = notes ? strlen(notes) : 0; left > 0;) {
                ssize_t n = write(c->notes_fd, p, left);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break; /* full (EAGAIN) or the relay is gone: dropped, never waited for */
                p += n;
                left -= (gsize)n;
        }
}

/* No runtime command of the start is left: the relay ends once it wrote what it holds. */
static void notes_close(KilnContainer *c)
{
        kiln_close_fdp(&c->notes_fd);
        if (c->notes && !kiln_relay_is_running(c->notes) && c->context)
                kiln_relay_start(c->notes, c->context, on_notes_done, c);
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
        if (c->create_process || c->create_request || c->delete_process || c->pid_watch ||
            (c->created && !c->deleted) || kiln_relay_is_running(c->stdio.relays[STDOUT]) ||
            kiln_relay_is_running(c->stdio.relays[STDERR]) || c->notes_fd >= 0 ||
            kiln_relay_is_running(c->notes))
                return;

        c->settled = TRUE;
        relays_stop(c, FALSE);
        g_clear_pointer(&c->console, kiln_console_free);
        remove_bundle_files(c);
        if (c->start_task)
                start_task_return(c, c->start_error
                                             ? g_steal_pointer(&c->start_error)
                                             : g_error_new(G_IO_ERROR, G_IO_ERROR_FAILED,
                                                           "Container %s ended before it started", c->id));
        else if (c->wait_task)
                wait_task_return(c);
}

static void container_exited(KilnContainer *c)
{
        c->exited = TRUE;
        /* Nobody reads the container's stdin any more: what the caller still sends goes nowhere. */
        relays_stop(c, FALSE);
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
        notes_close(c);
        relays_stop(c, FALSE);
        runtime_delete(c); /* --force: also kills the container's process */
        container_settle(c);
}

/* The command runs: start answers. */
static void container_running(KilnContainer *c)
{
        int signal;

        c->started = TRUE;
        notes_close(c);
        if (c->start_cancelled) {
                start_fail(c, g_error_new(G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                          "Starting container %s was cancelled", c->id));
                return;
        }
        /* A Kill that came while starting applies now that there is a process to signal. */
        signal = c->pending_signal;
        c->pending_signal = 0;
        if (signal && !c->exited)
                (void)runtime_kill(c, signal, NULL);
        start_task_return(c, NULL);
}

/* Whether a cgroup of @pid is the container's (cgroup.h knows the names). */
static gboolean in_container_cgroup(pid_t pid, const char *id)
{
        g_autofree char *path = g_strdup_printf("/proc/%d/cgroup", (int)pid);
        g_autofree char *text = NULL;
        g_auto(GStrv) lines = NULL;

        if (!g_file_get_contents(path, &text, NULL, NULL))
                return FALSE;
        lines = g_strsplit(text, "\n", -1);
        for (char **l = lines; *l; l++) {
                const char *slash = strrchr(*l, '/');
                if (slash && kiln_cgroup_is_run(slash + 1, id))
                        return TRUE;
        }
        return FALSE;
}

/* A leftover of a failed create: an orphan of ours in the container's cgroup, or whose working directory
 * is the bundle (runc init and crun's children start there, with the runtime's). Its pid is ours until
 * the reaper reaps it (not during this), so the signal cannot hit a recycled pid. */
static void kill_if_leftover(pid_t pid, gpointer data)
{
        KilnContainer *c = data;
        struct stat cwd, bundle;
        g_autofree char *cwd_path = g_strdup_printf("/proc/%d/cwd", (int)pid);

        if ((stat(c->bundle_dir, &bundle) == 0 && stat(cwd_path, &cwd) == 0 && cwd.st_dev == bundle.st_dev &&
             cwd.st_ino == bundle.st_ino) ||
            in_container_cgroup(pid, c->id)) {
                g_message("Killing process %d left by the failed create of container %s", (int)pid, c->id);
                (void)kill(pid, SIGKILL);
        }
}

/* A create that failed (or was killed) may have left the runtime's state, its `init` waiting on the
 * container's exec fifo, and the cgroups that go with it: `delete --force` removes what the runtime knows
 * of; processes it no longer knows of are killed here; the reaper reaps them all. Container ids are unique
 * within one kilnd (start-up deletes what an earlier one left), so the state deleted is this run's. */
static void create_undo(KilnContainer *c)
{
        c->created = TRUE;
        runtime_delete(c);
        kiln_reaper_foreach_orphan(kill_if_leftover, c);
        kiln_reaper_kick();
}

static void on_create_done(gpointer data, KilnRuntimeOp *op)
{
        KilnContainer *c = data;
        GError *error = NULL;
        gboolean ok;

        if (c->disposed)
                return;
        g_clear_object(&c->create_process);
        g_clear_pointer(&c->create_request, kiln_isolate_request_unref);
        notes_tell(c, op);
        if (op->status != 0) {
                reaper_release(c); /* no process of the container's to wait for */
                create_undo(c);
                start_fail(c, kiln_runtime_op_error(op));
                return;
        }
        c->created = TRUE;
        ok = read_pid_file(c, &error) && watch_pid(c, &error);
        reaper_release(c); /* the process is ours (claimed), or there is none to wait for */
        if (!ok || (c->terminal &&
                    (!kiln_console_receive_now(c->console, &error) ||
                     !kiln_stdio_attach_terminal(&c->stdio, kiln_console_get_master(c->console),
                                                 c->caller_fd, c->capture_limit, c->what, &error)))) {
                start_fail(c, error);
                return;
        }
        /* The terminal's relays; the others run since the spawn, and may have finished already when the
         * command ran at once (run --detach) and ended. */
        if (c->terminal)
                relays_start(c);
        /* The runtime and the relays have their own descriptors of the caller's stdio now: ours would only
         * cost the run three descriptors until it ends (DescriptorsPerUser, process.c). */
        for (int i = 0; i < 3; i++)
                kiln_close_fdp(&c->caller_fd[i]);
        container_running(c); /* run --detach: the command runs already */
}

static gboolean on_start_cancelled(G_GNUC_UNUSED GCancellable *cancellable, gpointer data)
{
        KilnContainer *c = data;

        c->start_cancelled = TRUE;
        cancel_source_clear(&c->start_cancel_source);
        return G_SOURCE_REMOVE; /* acted on once run --detach returns: it is never interrupted */
}

/* kiln-isolate's server runs what kilnd would execute: the same program with the same global options,
 * also when kiln-runtime-ns would run it (a run in a user namespace). */
static gboolean served(KilnContainer *c)
{
        g_auto(GStrv) globals = NULL;

        if (!c->isolate_server)
                return FALSE;
        globals = kiln_runtime_global_argv(c->runtime, (const char *const *)c->runtime_args, c->state_root);
        return kiln_isolate_server_serves(c->isolate_server, (const char *const *)globals,
                                          g_strv_length(globals), NULL);
}

static gboolean spec_check(KilnContainer *c, GError **error)
{
        size_t n = c->id ? strlen(c->id) : 0;
        int subreaper = 0;

        if (!c->runtime || !g_path_is_absolute(c->runtime) || !c->state_root ||
            !g_path_is_absolute(c->state_root) || !c->bundle_dir || !g_path_is_absolute(c->bundle_dir))
                return g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                   "The runtime, its state root and the bundle must be absolute paths"),
                       FALSE;
        if (n == 0 || n > 128 || c->id[0] == '-' ||
            strspn(c->id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != n)
                return g_set_error(
                               error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                               "Invalid container id '%s': 1 to 128 of [a-zA-Z0-9_-], not starting with '-'",
                               c->id ? c->id : ""),
                       FALSE;
        if (prctl(PR_GET_CHILD_SUBREAPER, &subreaper) < 0 || !subreaper)
                return g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                                   "This process is not a child subreaper (PR_SET_CHILD_SUBREAPER): "
                                   "it could not wait for container processes"),
                       FALSE;
        return TRUE;
}

/* Whether removing the runtime's state directory is all its `delete` would do once the container's process
 * is reaped, so that no execution of the runtime (Go's start-up for runc) stands between the exit and the
 * caller's answer. For runc and crun, `delete` of a stopped container removes that directory, removes the
 * container's cgroup and runs the poststop hooks. A cgroup config.json names (linux.cgroupsPath) is the
 * caller's to remove (runtime.h; kilnd's runs: kiln_cgroup_remove(), which also kills what a pid=host run
 * left in it, as `delete --force` would). Not ours: without a cgroupsPath (the runtime's default cgroup,
 * which nobody else knows: the detection probe's), with the systemd cgroup driver (`delete` stops the
 * scope through systemd), with poststop hooks (only the runtime runs them), or a config.json we cannot
 * read. */
static gboolean state_is_ours(KilnContainer *c)
{
        g_autofree char *config = NULL;
        g_autoptr(JsonParser) parser = NULL;
        JsonNode *root, *platform, *hooks;

        if (c->isolate)
                return !c->isolate_delete; /* poststop hooks: kiln-isolate's delete runs them */
        for (char **a = c->runtime_args; a && *a; a++)
                if (g_str_has_prefix(*a, "--systemd-cgroup"))
                        return FALSE;
        config = bundle_path(c, "config.json");
        parser = json_parser_new_immutable();
        if (!json_parser_load_from_mapped_file(parser, config, NULL) ||
            !(root = json_parser_get_root(parser)) || !JSON_NODE_HOLDS_OBJECT(root))
                return FALSE;
        platform = json_object_get_member(json_node_get_object(root), "linux");
        if (!platform || !JSON_NODE_HOLDS_OBJECT(platform) ||
            !json_object_has_member(json_node_get_object(platform), "cgroupsPath"))
                return FALSE;
        hooks = json_object_get_member(json_node_get_object(root), "hooks");
        if (!hooks)
                return TRUE;
        return JSON_NODE_HOLDS_OBJECT(hooks) &&
               !json_object_has_member(json_node_get_object(hooks), "poststop");
}

void kiln_container_start_async(KilnContainer *container, GCancellable *cancellable,
                                GAsyncReadyCallback callback, gpointer user_data)
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
                g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_PENDING,
                                        "Container %s was started already", c->id);
                return;
        }
        if (c->setup_error || !spec_check(c, &error)) {
                g_task_return_error(task, error ? error : g_error_copy(c->setup_error));
                return;
        }
        c->forget_state = state_is_ours(c);
        c->context = g_main_context_ref_thread_default();
        c->start_task = g_steal_pointer(&task);
        c->start_hook = hook;
        if (cancellable) {
                c->start_cancel_source = g_cancellable_source_new(cancellable);
                g_source_set_callback(c->start_cancel_source,
                                      (GSourceFunc)(void (*)(void))on_start_cancelled, c, NULL);
                g_source_attach(c->start_cancel_source, c->context);
        }

        remove_bundle_files(c); /* stale ones would confuse us, not the runtime */
        if (!notes_prepare(c, &error))
                goto fail;
        if (!kiln_stdio_prepare(&c->stdio, c->caller_fd, c->terminal, c->capture_limit, c->what, stdio,
                                &error))
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
        /* run --detach: create and start in one execution of the runtime, which exits once the command
         * runs; the rest (the pid file, the pidfd, delete) is as after a create. */
        g_ptr_array_add(args, g_strdup("--detach"));
        g_ptr_array_add(args, g_strdup("--bundle"));
        g_ptr_array_add(args, g_strdup(c->bundle_dir));
        g_ptr_array_add(args, g_strdup("--pid-file"));
        g_ptr_array_add(args, bundle_path(c, KILN_RUNTIME_PID_FILE));
        if (c->no_pivot)
                g_ptr_array_add(args, g_strdup("--no-pivot"));
        g_ptr_array_add(args, NULL);

        reaper_hold(c);
        if (served(c))
                create = kiln_runtime_op_request(
                        c->isolate_server, c->runtime, (const char *const *)c->runtime_args, c->state_root,
                        c->bundle_dir, c->id, "run", (const char *const *)args->pdata, stdio, &error);
        else
                create = kiln_runtime_op_spawn(c->runtime, (const char *const *)c->runtime_args,
                                               c->state_root, c->bundle_dir, c->id, "run",
                                               (const char *const *)args->pdata, NULL, stdio, &error);
        stdio[0] = stdio[1] = stdio[2] = -1; /* taken, also on failure */
        if (!create)
                goto fail;
        /* The container's ends of our pipes now live only in the runtime (closed by the launcher, or
         * sent to kiln-isolate's server), so EOF arrives when the container's processes are gone. */
        if (create->request)
                c->create_request = kiln_isolate_request_ref(create->request);
        else
                c->create_process = g_object_ref(create->process);
        kiln_runtime_op_run(create, c->context, on_create_done, container_ref(c),
                            (GDestroyNotify)container_unref);
        if (!c->terminal)
                relays_start(c);
        return;
fail:
        reaper_release(c);
        for (int i = 0; i < 3; i++)
                kiln_close_fdp(&stdio[i]);
        start_fail(c, error);
}

gboolean kiln_container_start_finish(G_GNUC_UNUSED KilnContainer *container, GAsyncResult *result,
                                     GError **error)
{
        g_return_val_if_fail(g_task_is_valid(result, NULL), FALSE);
        return g_task_propagate_boolean(G_TASK(result), error);
}

static gboolean on_settle_later(gpointer data)
{
        _cleanup_container_unref_ KilnContainer *c = container_ref(data);

        c->settle_source = 0;
        container_settle(c);
        return G_SOURCE_REMOVE;
}

/* Stops every relay, dropping what they hold, and settles from the main loop: callers of the
 * synchronous API never see their callback run inside it. */
static void container_abandon_output(KilnContainer *c)
{
        GSource *idle;

        relays_stop(c, TRUE);
        if (c->settle_source)
                return;
        idle = g_idle_source_new();
        g_source_set_callback(idle, on_settle_later, container_ref(c), (GDestroyNotify)container_unref);
        g_source_set_static_name(idle, "kiln container settle");
        c->settle_source = g_source_attach(idle, c->context);
        g_source_unref(idle);
}

static gboolean on_wait_cancelled(G_GNUC_UNUSED GCancellable *cancellable, gpointer data)
{
        _cleanup_container_unref_ KilnContainer *c = container_ref(data);

        cancel_source_clear(&c->wait_cancel_source);
        if (c->settled)
                return G_SOURCE_REMOVE;
        c->wait_cancelled = TRUE;
        /* Whatever is still buffered for the caller is dropped: they asked to stop. */
        relays_stop(c, TRUE);
        container_kill_internal(c);
        container_settle(c);
        return G_SOURCE_REMOVE;
}

void kiln_container_wait_async(KilnContainer *container, GCancellable *cancellable,
                               GAsyncReadyCallback callback, gpointer user_data)
{
        KilnContainer *c = container;
        TaskHook *hook;
        g_autoptr(GTask) task = task_new(cancellable, callback, user_data, kiln_container_wait_async, &hook);

        if (!c->started || c->wait_task) {
                g_task_return_new_error(task, G_IO_ERROR,
                                        c->wait_task ? G_IO_ERROR_PENDING : G_IO_ERROR_FAILED,
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
                g_source_set_callback(c->wait_cancel_source, (GSourceFunc)(void (*)(void))on_wait_cancelled,
                                      c, NULL);
                g_source_attach(c->wait_cancel_source, c->context);
        }
}

int kiln_container_wait_finish(G_GNUC_UNUSED KilnContainer *container, GAsyncResult *result, GError **error)
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
                return g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "Invalid signal %d",
                                   signal),
                       FALSE;
        if (c->settled)
                return TRUE;
        if (c->exited) {
                /* Nothing left to signal; but SIGKILL means "stop now": drop what a reader that stopped
                 * reading (a terminal stopped with ^S) still holds up, rather than wait for it forever. */
                if (signal == SIGKILL)
                        container_abandon_output(c);
                return TRUE;
        }
        if (!c->start_task && !c->started)
                return g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "Container %s was not started",
                                   c->id),
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
                return g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                                   "Container %s has no terminal", c->id),
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
        if (!c->stdio.capture[stream])
                return g_bytes_new(NULL, 0);
        return kiln_relay_get_captured(c->stdio.relays[stream]);
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

/* Waits (bounded) for the create (or run --detach) under way: whether it succeeded. */
static gboolean create_finish_sync(KilnContainer *c)
{
        if (c->create_request)
                return kiln_isolate_request_wait_bounded(c->create_request, SYNC_TIMEOUT_MS) == 0;
        kiln_runtime_wait_bounded(c->create_process, SYNC_TIMEOUT_MS);
        return g_subprocess_get_if_exited(c->create_process) &&
               g_subprocess_get_exit_status(c->create_process) == 0;
}

/* Synchronous and bounded: wait for runtime commands under way, kill the process, delete the runtime's
 * state, reap, close everything. Callbacks of commands still in flight find the container disposed. */
static void container_dispose(KilnContainer *c)
{
        g_autoptr(GError) error = NULL;

        c->disposed = TRUE;
        if (c->settle_source) {
                GSource *idle = g_main_context_find_source_by_id(c->context, c->settle_source);
                if (idle)
                        g_source_destroy(idle);
                c->settle_source = 0;
        }
        drop_task(&c->start_task, &c->start_hook, &c->start_cancel_source, c->id);
        drop_task(&c->wait_task, &c->wait_hook, &c->wait_cancel_source, c->id);
        g_clear_error(&c->start_error);

        /* A create is let finish rather than killed: killing it would orphan its half-made container. */
        if (c->create_process || c->create_request) {
                gboolean ok = create_finish_sync(c);

                g_clear_object(&c->create_process);
                g_clear_pointer(&c->create_request, kiln_isolate_request_unref);
                if (ok) {
                        c->created = TRUE;
                        if (!read_pid_file(c, &error) || !watch_pid(c, &error)) {
                                g_warning("Container %s: %s", c->id, error->message);
                                g_clear_error(&error);
                        }
                } else {
                        create_undo(c);
                }
        }
        reaper_release(c);
        kiln_pid_watch_kill(c->pid_watch, SIGKILL); /* no time for the runtime's kill */
        if (c->delete_process) {
                kiln_runtime_wait_bounded(c->delete_process, SYNC_TIMEOUT_MS);
                g_clear_object(&c->delete_process);
                c->deleted = TRUE;
        }
        /* A process reaped leaves only the state to remove (state_is_ours()). */
        if (c->forget_state && c->created && !c->deleted &&
            (c->exited || (c->pid_watch && kiln_pid_watch_reap_sync(c->pid_watch, REAP_TIMEOUT_MS))))
                state_forget(c);
        if (c->created && !c->deleted) {
                const char *const args[] = {"--force", NULL};
                if (!kiln_runtime_run_sync(c->runtime, (const char *const *)c->runtime_args, c->state_root,
                                           c->bundle_dir, c->id, "delete", args, SYNC_TIMEOUT_MS, &error))
                        g_warning("%s", error->message);
                c->deleted = TRUE;
        }
        if (c->pid_watch && !kiln_pid_watch_reap_sync(c->pid_watch, REAP_TIMEOUT_MS))
                g_warning("Process %d of container %s did not exit after SIGKILL", (int)c->pid, c->id);
        g_clear_pointer(&c->pid_watch, kiln_pid_watch_free);
        relays_stop(c, TRUE);
        kiln_close_fdp(&c->notes_fd);
        kiln_relay_stop(c->notes);
        g_clear_pointer(&c->console, kiln_console_free);
        if (c->context)
                remove_bundle_files(c);
}

static void container_unref(KilnContainer *c)
{
        if (--c->ref_count > 0)
                return;
        reaper_release(c);
        kiln_stdio_clear(&c->stdio);
        kiln_close_fdp(&c->notes_fd);
        g_clear_pointer(&c->notes, kiln_relay_free);
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
        g_free(c->what);
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

/* SPDX-License-Identifier: Apache-2.0 */
#include <signal.h>
#include <sys/socket.h>

#include "objects/process-dbus.h"
#include "objects/process.h"
#include "runtime/stdio-relay.h"

const char *kiln_process_state_name(KilnProcessState state)
{
        static const char *const names[] = {
                [KILN_PROCESS_STARTING] = "starting",
                [KILN_PROCESS_RUNNING] = "running",
                [KILN_PROCESS_EXITED] = "exited",
        };
        return names[state];
}

static void message_unref(gpointer m)
{
        sd_bus_message_unref(m);
}

static void process_free(KilnProcess *p)
{
        if (p->caller_left_handler)
                g_cancellable_disconnect(p->caller_left, p->caller_left_handler);
        g_clear_object(&p->caller_left);
        if (p->timeout_source)
                g_source_remove(p->timeout_source);
        if (p->linger_source)
                g_source_remove(p->linger_source);
        g_clear_pointer(&p->container, kiln_container_free);
        g_clear_pointer(&p->plan, kiln_run_plan_free);
        kiln_run_options_clear(&p->options);
        if (p->waiters)
                g_ptr_array_unref(p->waiters);
        sd_bus_message_unref(p->call);
        g_strfreev(p->argv);
        g_free(p->builder_id);
        g_free(p->builder_path);
        g_free(p->object_path);
        g_free(p);
}

/* What one run may cost kilnd in descriptors besides those the caller handed over, at its peak while it
 * starts: the pidfd, relay pipes and their ends, the runtime's message pipe, a console socket and the
 * terminal, the run's own copies of the caller's stdio, and the relay of the runtime's words to the
 * caller's stderr (its pipe and the stderr reopened: 3, gone once the command runs). Once it runs it
 * keeps 1 with pipes and 6 with a terminal (measured; test_security_bus.py checks the first), so 15 is
 * a bound, not a measurement. */
#define PROCESS_OWN_DESCRIPTORS 15

static gsize strv_bytes(char *const *v)
{
        gsize n = 0;

        for (; v && *v; v++)
                n += strlen(*v) + 1;
        return n;
}

static guint strv_count(char *const *v)
{
        return v ? g_strv_length((char **)v) : 0;
}

/* What a run costs in descriptors, counted when it is admitted: each volume or mount may hold a source
 * opened for it until the container runs. */
static guint options_descriptors(const KilnRunOptions *o)
{
        return PROCESS_OWN_DESCRIPTORS + (o->stdin_fd >= 0) + (o->stdout_fd >= 0) + (o->stderr_fd >= 0) +
               (o->volume_fds ? o->volume_fds->len : 0) + strv_count(o->volumes) + strv_count(o->mounts) +
               (o->secrets ? o->secrets->len : 0); /* run parity */
}

typedef struct {
        gsize held_bytes; /* of processes not yet lingering */
        guint held_descriptors;
} UserUsage;

static void user_usage(KilnManager *m, uid_t uid, UserUsage *u)
{
        GHashTableIter iter;
        KilnProcess *p;

        *u = (UserUsage){0};
        g_hash_table_iter_init(&iter, m->processes);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&p))
                if (p->owner == uid && !p->lingering) {
                        u->held_bytes += p->argv_bytes + p->env_bytes;
                        u->held_descriptors += p->descriptors;
                }
}

gboolean kiln_process_check_limits(KilnManager *m, uid_t uid, char *const *argv,
                                   const KilnRunOptions *options, GError **error)
{
        const KilnConfig *c = m->config;
        gsize bytes = strv_bytes(argv) + strv_bytes(options->env);
        guint descriptors = options_descriptors(options);
        UserUsage u;

        if (bytes > c->argument_bytes)
                return kiln_fail(error, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                                 "argv and env are %" G_GSIZE_FORMAT
                                 " bytes together, more than the limit of %u bytes",
                                 bytes, c->argument_bytes);
        user_usage(m, uid, &u);
        if (u.held_bytes + bytes > c->process_bytes_per_user)
                return kiln_fail(error, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                                 "argv and env: the running processes of user %u keep %" G_GSIZE_FORMAT
                                 " bytes of them; %" G_GSIZE_FORMAT " more would pass the limit of %u bytes",
                                 (unsigned)uid, u.held_bytes, bytes, c->process_bytes_per_user);
        if (u.held_descriptors + descriptors > c->descriptors_per_user)
                return kiln_fail(error, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                                 "Descriptors: the running processes of user %u hold %u; this run's %u (its "
                                 "stdio, volume_fds, volumes and mounts) would pass the limit of %u",
                                 (unsigned)uid, u.held_descriptors, descriptors, c->descriptors_per_user);
        return TRUE;
}

static gboolean exited_before(const KilnProcess *a, const KilnProcess *b)
{
        return a->exited_at != b->exited_at ? a->exited_at < b->exited_at : a->started_at < b->started_at;
}

/* Drops @uid's oldest exited Process objects, early, until the user keeps at most LingeringProcessesPerUser
 * of them and, with @incoming more bytes, at most ProcessBytesPerUser in all. Lingering is a courtesy to
 * late Wait calls; it must not let one user grow what every listing carries. */
static void trim_lingering(KilnManager *m, uid_t uid, gsize incoming)
{
        const KilnConfig *c = m->config;

        for (;;) {
                KilnProcess *oldest = NULL, *p;
                GHashTableIter iter;
                gsize bytes = incoming;
                guint n = 0;

                g_hash_table_iter_init(&iter, m->processes);
                while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&p)) {
                        if (p->owner != uid)
                                continue;
                        bytes += p->argv_bytes + p->env_bytes;
                        if (p->lingering && (n++, !oldest || exited_before(p, oldest)))
                                oldest = p;
                }
                if (!oldest || (n <= c->lingering_per_user && bytes <= c->process_bytes_per_user))
                        return;
                g_debug("Dropping %s early: user %u keeps %u exited processes, %" G_GSIZE_FORMAT " bytes",
                        oldest->object_path, (unsigned)uid, n, bytes);
                kiln_process_emit_removed(oldest);
                g_hash_table_remove(m->processes, oldest->object_path);
        }
}

guint kiln_process_count_running(KilnManager *m, const char *builder_id, uid_t owner)
{
        GHashTableIter iter;
        KilnProcess *p;
        guint n = 0;

        g_hash_table_iter_init(&iter, m->processes);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&p))
                if (p->state != KILN_PROCESS_EXITED &&
                    (builder_id ? g_str_equal(p->builder_id, builder_id) : p->owner == owner))
                        n++;
        return n;
}

/* A shell-like message for the caller's stderr when no container ran. Never waits: a caller could hand
 * over a full pipe, and the main loop must not block on it; a message that does not fit is dropped. */
static void tell_caller(KilnProcess *p, const char *message)
{
        _cleanup_close_ int fd = -1;

        if (p->options.stderr_fd < 0 || p->mode == KILN_PROCESS_MODE_CAPTURED)
                return;
        fd = kiln_relay_open_endpoint(p->options.stderr_fd, FALSE, "stderr", NULL);
        if (fd < 0)
                return;
        /* Pipes and terminals come back O_NONBLOCK, files never wait; sockets need MSG_DONTWAIT. */
        if (send(fd, message, strlen(message), MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno == ENOTSOCK)
                (void)!write(fd, message, strlen(message));
}

static void process_exited(KilnProcess *p, int status, const GError *error, const char *early_stderr);

static void kill_process(KilnProcess *p, int signal)
{
        g_autoptr(GError) error = NULL;

        if (p->state == KILN_PROCESS_EXITED)
                return;
        /* Still waiting for the network's helper: no container yet, the run ends here (its helper goes with
         * the plan). */
        if (!p->container && p->plan && p->plan->network) {
                process_exited(p, 128 + signal, NULL, NULL);
                return;
        }
        if (!p->container)
                return;
        if (!kiln_container_kill(p->container, signal, &error))
                g_warning("Cannot kill %s: %s", p->object_path, error->message);
}

void kiln_process_kill_builder(KilnManager *m, const char *builder_id)
{
        GHashTableIter iter;
        KilnProcess *p;

        g_hash_table_iter_init(&iter, m->processes);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&p))
                if (g_str_equal(p->builder_id, builder_id))
                        kill_process(p, SIGKILL);
}

static void reply_error(sd_bus_message *call, const GError *error);
static char *captured_text(KilnContainer *container, int stream);

static gboolean on_linger_over(gpointer data)
{
        KilnProcess *p = data;

        p->linger_source = 0;
        kiln_process_emit_removed(p);
        g_hash_table_remove(p->manager->processes, p->object_path);
        return G_SOURCE_REMOVE;
}

static void reply_error(sd_bus_message *call, const GError *error)
{
        _cleanup_(sd_bus_error_free) sd_bus_error bus_error = SD_BUS_ERROR_NULL;

        kiln_error_to_bus(error, &bus_error);
        sd_bus_reply_method_error(call, &bus_error);
}

/* Captured output is text on the bus: invalid UTF-8 is replaced rather than refused. */
static char *captured_text(KilnContainer *container, int stream)
{
        g_autoptr(GBytes) bytes = container ? kiln_container_get_captured(container, stream) : NULL;
        gsize len = 0;
        const char *data = bytes ? g_bytes_get_data(bytes, &len) : NULL;

        return data ? g_utf8_make_valid(data, (gssize)len) : g_strdup("");
}

/* The end of a run, whatever ended it: undo the run's side effects first (so a caller that gets its
 * answer finds no bundle, runtime state or mount left), then answer everyone, then linger. Runs from
 * an idle callback, never inside one of the container's own callbacks, since it frees the container. */
typedef struct {
        KilnProcess *process;
        int status;
        GError *error;
        char *early_stderr;
} Ending;

static void ending_free(gpointer data)
{
        Ending *e = data;

        g_clear_error(&e->error);
        g_free(e->early_stderr);
        g_free(e);
}

static gboolean finish_exit(gpointer data)
{
        Ending *e = data;
        KilnProcess *p = e->process;
        KilnManager *m = p->manager;
        g_autofree char *out = NULL, *err = NULL;
        KilnBuilder *b;

        p->linger_source = 0; /* this idle source, ending now */
        if (p->mode == KILN_PROCESS_MODE_CAPTURED && !e->error) {
                out = captured_text(p->container, 1);
                err = e->early_stderr ? g_strdup(e->early_stderr) : captured_text(p->container, 2);
        }
        g_clear_pointer(&p->container, kiln_container_free);
        g_clear_pointer(&p->plan, kiln_run_plan_free);
        kiln_run_options_clear(&p->options);

        if (p->call && e->error)
                reply_error(p->call, e->error);
        else if (p->call && p->mode == KILN_PROCESS_MODE_CAPTURED)
                sd_bus_reply_method_return(p->call, "iss", e->status, out, err);
        else if (p->call && p->mode == KILN_PROCESS_MODE_RUN)
                sd_bus_reply_method_return(p->call, "i", e->status);
        else if (p->call)
                sd_bus_reply_method_return(p->call, "o", p->object_path);
        g_clear_pointer(&p->call, sd_bus_message_unref);
        for (guint i = 0; i < p->waiters->len; i++)
                sd_bus_reply_method_return(p->waiters->pdata[i], "i", e->status);
        g_ptr_array_set_size(p->waiters, 0);

        b = g_hash_table_lookup(m->builders, p->builder_id);
        if (e->error && p->pid == 0) {
                /* It never ran (the runtime refused): the caller has the error; drop the object. */
                kiln_process_emit_removed(p);
                g_hash_table_remove(m->processes, p->object_path);
        } else {
                kiln_process_emit_exited(p);
                p->linger_source =
                        g_timeout_add_seconds(m->config->process_linger_seconds, on_linger_over, p);
                p->lingering = TRUE;
                p->env_bytes = 0; /* the options went with the run */
                p->descriptors = 0;
                trim_lingering(m, p->owner, 0); /* may free @p */
        }
        if (b && m->hooks.builder_processes_changed)
                m->hooks.builder_processes_changed(m, b);
        return G_SOURCE_REMOVE;
}

static void process_exited(KilnProcess *p, int status, const GError *error, const char *early_stderr)
{
        Ending *e = g_new0(Ending, 1);

        p->state = KILN_PROCESS_EXITED;
        p->exit_status = status;
        p->exited_at = (guint64)g_get_real_time();
        if (p->timeout_source) {
                g_source_remove(p->timeout_source);
                p->timeout_source = 0;
        }
        e->process = p;
        e->status = status;
        e->error = error ? g_error_copy(error) : NULL;
        e->early_stderr = g_strdup(early_stderr);
        /* Held as linger_source until finish_exit runs, so process_free can cancel it (and free @e). */
        p->linger_source = g_idle_add_full(G_PRIORITY_DEFAULT, finish_exit, e, ending_free);
}

static void on_wait_done(G_GNUC_UNUSED GObject *source, GAsyncResult *result, gpointer data)
{
        KilnProcess *p = data;
        g_autoptr(GError) error = NULL;
        int status = kiln_container_wait_finish(p->container, result, &error);

        if (status < 0 && g_error_matches(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE)) {
                g_autoptr(GError) limit =
                        g_error_new(KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                                    "Output exceeded the limit of %u bytes per stream; the "
                                    "process was killed",
                                    p->manager->config->capture_bytes);
                process_exited(p, 128 + SIGKILL, limit, NULL);
        } else if (status < 0) {
                g_autoptr(GError) failed =
                        g_error_new(KILN_ERROR, KILN_ERROR_CODE_RUNTIME_FAILED, "%s", error->message);
                process_exited(p, 128 + SIGKILL, failed, NULL);
        } else {
                process_exited(p, status, NULL, NULL);
        }
}

/* Once the container runs, the caller's descriptors in the options have done their work: the runtime
 * and the container have their own copies of its stdio (kilnd's relays keep theirs in the container),
 * and every volume is mounted in the bundle. Holding them for the whole run would cost descriptors that
 * other users' runs need. The count admitted (p->descriptors) stays: it is a bound, not a measurement. */
static void release_caller_descriptors(KilnProcess *p)
{
        kiln_close_fdp(&p->options.stdin_fd);
        kiln_close_fdp(&p->options.stdout_fd);
        kiln_close_fdp(&p->options.stderr_fd);
        g_clear_pointer(&p->options.volume_fds, g_array_unref);
        g_clear_pointer(&p->options.resolved_volumes, g_ptr_array_unref); /* holds the sources open */
}

static void on_started(G_GNUC_UNUSED GObject *source, GAsyncResult *result, gpointer data)
{
        KilnProcess *p = data;
        g_autoptr(GError) error = NULL;
        KilnBuilder *b;

        if (!kiln_container_start_finish(p->container, result, &error)) {
                g_autoptr(GError) failed = NULL;
                const GError *network = p->plan->network ? kiln_network_failure(p->plan->network) : NULL;

                /* The network's helper failed, so its gate failed the runtime's start: the helper's error
                 * says why, the runtime's ("hook failed") would not. */
                if (network) {
                        process_exited(p, 125, network, NULL);
                        return;
                }
                /* The runtime checks the command at create: a shell's statuses, not a failure. */
                if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND) ||
                    g_error_matches(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED)) {
                        g_autofree char *message = g_strdup_printf("kiln: %s\n", error->message);
                        int status = error->code == G_IO_ERROR_NOT_FOUND ? 127 : 126;
                        tell_caller(p, message);
                        p->pid = 0;
                        process_exited(p, status, NULL, message);
                        return;
                }
                failed = g_error_new(KILN_ERROR, KILN_ERROR_CODE_RUNTIME_FAILED, "The runtime failed: %s",
                                     error->message);
                process_exited(p, 125, failed, NULL);
                return;
        }
        p->state = KILN_PROCESS_RUNNING;
        release_caller_descriptors(p);
        p->pid = (guint32)kiln_container_get_pid(p->container);
        kiln_process_emit_changed(p);
        b = g_hash_table_lookup(p->manager->builders, p->builder_id);
        if (b && p->manager->hooks.builder_processes_changed)
                p->manager->hooks.builder_processes_changed(p->manager, b);
        if (p->mode == KILN_PROCESS_MODE_START && p->call) {
                sd_bus_reply_method_return(p->call, "o", p->object_path);
                g_clear_pointer(&p->call, sd_bus_message_unref);
        }
        kiln_container_wait_async(p->container, NULL, on_wait_done, p);
}

static void on_caller_left(G_GNUC_UNUSED GCancellable *cancellable, gpointer data)
{
        KilnProcess *p = data;

        /* Runs from the GCancellable's "cancelled" emission, i.e. on the main loop here. */
        kill_process(p, SIGKILL);
}

static gboolean on_timeout(gpointer data)
{
        KilnProcess *p = data;

        p->timeout_source = 0;
        kill_process(p, SIGKILL);
        return G_SOURCE_REMOVE;
}

static KilnProcess *process_new(KilnManager *m, KilnBuilder *b, sd_bus_message *call, char **argv,
                                KilnRunOptions *options, KilnProcessMode mode)
{
        KilnProcess *p = g_new0(KilnProcess, 1);
        const KilnCreds *creds = NULL;

        p->manager = m;
        p->object_path = g_strdup_printf(KILN_PROCESS_PATH_PREFIX "/%" G_GUINT64_FORMAT, ++m->next_process);
        p->builder_id = g_strdup(b->id);
        p->builder_path = g_strdup(b->object_path);
        p->owner = kiln_auth_get_caller(m->auth, call, &creds, NULL) >= 0 ? creds->uid : b->owner;
        p->argv = g_strdupv(argv);
        p->mode = mode;
        p->state = KILN_PROCESS_STARTING;
        p->exit_status = -1;
        p->started_at = (guint64)g_get_real_time();
        p->call = sd_bus_message_ref(call);
        p->waiters = g_ptr_array_new_with_free_func(message_unref);
        p->argv_bytes = strv_bytes(p->argv);
        p->env_bytes = strv_bytes(options->env);
        p->descriptors = options_descriptors(options);
        p->options = *options;
        kiln_run_options_init(options); /* taken */
        g_hash_table_insert(m->processes, p->object_path, p);
        return p;
}

/* The runtime's part of a run, once whatever had to come first (the network's helper) is ready. */
static void start_container(KilnProcess *p)
{
        KilnManager *m = p->manager;
        KilnRuntimeSpec spec = {0};

        spec.runtime = p->plan->runtime;
        spec.isolate = p->plan->isolate;
        spec.isolate_server = m->isolate_server;
        spec.isolate_delete = p->plan->isolate_poststop;
        spec.state_root = p->plan->state_root;
        spec.bundle_dir = p->plan->bundle_dir;
        spec.container_id = p->plan->container_id;
        spec.runtime_args = p->plan->runtime_args;
        spec.no_pivot = p->options.no_pivot;
        spec.stdin_fd = p->options.stdin_fd;
        spec.stdout_fd = p->options.stdout_fd;
        spec.stderr_fd = p->options.stderr_fd;
        spec.terminal = p->options.terminal;
        spec.rows = p->options.rows;
        spec.cols = p->options.cols;
        spec.capture_limit = p->mode == KILN_PROCESS_MODE_CAPTURED ? m->config->capture_bytes : 0;
        p->container = kiln_container_new(&spec);
        kiln_container_start_async(p->container, NULL, on_started, p);
        /* Not for runc, which makes the cgroup itself (docs/decisions.md, "The run's cgroup made
         * alongside"). */
        if (p->plan->isolate)
                kiln_cgroup_make_early(&p->plan->resources);
}

void kiln_process_launch(KilnManager *m, KilnBuilder *b, sd_bus_message *call, uid_t caller_uid, char **argv,
                         KilnRunOptions *options, KilnProcessMode mode)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnRunPlan) plan = NULL;
        g_autofree char *container_id = kiln_manager_next_container_id(m, b);
        KilnRunInput input;
        KilnProcess *p;

        kiln_manager_run_input(m, b, &input);
        input.container_id = container_id;
        plan = kiln_run_prepare(&input, argv, options, &error);
        /* Checked before polkit was asked too; again now, on the command as resolved (an empty argv runs
         * the builder's Entrypoint and Cmd), and since other runs of the caller may have started meanwhile.
         * A run that cannot even be prepared, or is past a limit, leaves nothing behind: the plan undoes
         * itself, and there is no Process object. */
        if (!plan || !kiln_process_check_limits(m, caller_uid, plan->argv, options, &error)) {
                reply_error(call, error);
                return;
        }
        /* Room for it is made by dropping the caller's oldest exited processes. */
        trim_lingering(m, caller_uid, strv_bytes(plan->argv) + strv_bytes(options->env));
        p = process_new(m, b, call, plan->argv, options, mode);
        p->plan = g_steal_pointer(&plan);
        kiln_process_emit_added(p);
        if (p->plan->early_exit_status >= 0) {
                /* No container: the command cannot run. The caller sees what a shell would print. */
                tell_caller(p, p->plan->early_message);
                process_exited(p, p->plan->early_exit_status, NULL, p->plan->early_message);
                return;
        }

        /* The caller leaving kills what it did not detach (and a Run caller cannot detach: nobody would
         * be left to answer). */
        if (!p->options.detach || mode != KILN_PROCESS_MODE_START) {
                p->caller_left = kiln_auth_caller_cancellable(m->auth, call);
                p->caller_left_handler =
                        g_cancellable_connect(p->caller_left, G_CALLBACK(on_caller_left), p, NULL);
        }
        if (p->options.timeout_usec > 0)
                p->timeout_source = g_timeout_add(
                        (guint)MIN((p->options.timeout_usec + 999) / 1000, G_MAXUINT), on_timeout, p);
        /* network=pasta or slirp4netns: the helper is spawned right after the runtime, and both start up
         * together; the spec's gate holds the command's exec until the helper is ready (run/network.h).
         * The caller leaving stops it too. */
        start_container(p);
        if (p->plan->network)
                kiln_network_start(p->plan->network, p->caller_left);
}

void kiln_process_manager_init(KilnManager *m)
{
        m->processes = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)process_free);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* One runtime command: spawned with GSubprocess (kilnd is multi-threaded, so nothing of ours but one
 * setrlimit, fd-limit.h, runs between fork and exec, and GLib reaps what it spawned), its complaints
 * collected within a bound. */
#include <fcntl.h>
#include <sys/stat.h>

#include <glib-unix.h>
#include <json-glib/json-glib.h>

#include "base/fs-util.h"
#include "base/fd-limit.h"
#include "runtime/isolate-server.h"
#include "base/kiln-common.h"
#include "base/reaper.h"
#include "runtime/runtime-private.h"

#define MESSAGE_MAX_CHARS 1024 /* of the runtime's words in one error message */

/* A runtime inherits nothing from kilnd's environment: NOTIFY_SOCKET in particular would make runc pass
 * systemd's notification socket for kilnd's own unit into the container. */
const char *const kiln_runtime_environ[] = {
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LC_ALL=C",
        NULL,
};

static void op_free(KilnRuntimeOp *op)
{
        if (op->destroy)
                op->destroy(op->data);
        g_clear_object(&op->process);
        g_clear_pointer(&op->request, kiln_isolate_request_unref);
        kiln_relay_free(op->messages);
        g_free(op->runtime_name);
        g_free(op->verb);
        g_free(op->id);
        g_free(op->log_path);
        g_free(op->message);
        g_free(op);
}

static gboolean is_error_level(const char *level)
{
        static const char *const levels[] = {"error", "fatal", "panic"};

        for (size_t i = 0; i < G_N_ELEMENTS(levels); i++)
                if (g_ascii_strcasecmp(level, levels[i]) == 0)
                        return TRUE;
        return FALSE;
}

char *kiln_runtime_parse_messages(const char *text, gsize len)
{
        g_autofree char *copy = g_strndup(text, len);
        g_auto(GStrv) lines = g_strsplit(copy, "\n", 0);
        g_autoptr(GString) errors = g_string_new(NULL);
        g_autoptr(GString) others = g_string_new(NULL);
        GString *result;

        for (char **l = lines; *l; l++) {
                g_autoptr(JsonParser) parser = NULL;
                g_autofree char *escaped = NULL;
                const char *msg = g_strstrip(*l), *level = NULL;
                GString *into;

                if (*msg == '\0')
                        continue;
                if (*msg == '{') {
                        JsonNode *root;
                        parser = json_parser_new();
                        if (json_parser_load_from_data(parser, msg, -1, NULL) &&
                            (root = json_parser_get_root(parser)) && JSON_NODE_HOLDS_OBJECT(root)) {
                                JsonObject *o = json_node_get_object(root);
                                msg = json_object_get_string_member_with_default(o, "msg", msg);
                                level = json_object_get_string_member_with_default(o, "level", NULL);
                        }
                }
                into = !level || is_error_level(level) ? errors : others;
                escaped = kiln_escape_for_message(msg, strlen(msg));
                g_string_append_printf(into, "%s%s", into->len ? "; " : "", escaped);
        }
        result = errors->len ? errors : others;
        if (result->len == 0)
                return NULL;
        if (g_utf8_strlen(result->str, -1) > MESSAGE_MAX_CHARS) {
                g_autofree char *cut = g_utf8_substring(result->str, 0, MESSAGE_MAX_CHARS);
                return g_strconcat(cut, "…", NULL);
        }
        return g_strdup(result->str);
}

/* The end of the runtime's log: it only grows by what the runtime writes, but read a bounded tail. */
static char *read_log_tail(const char *path, gsize *ret_len)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        g_autofree char *buf = NULL;
        struct stat st;
        off_t offset;
        gsize len = 0;

        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return NULL;
        offset = st.st_size > KILN_RUNTIME_MESSAGE_LIMIT ? st.st_size - KILN_RUNTIME_MESSAGE_LIMIT : 0;
        buf = g_malloc(KILN_RUNTIME_MESSAGE_LIMIT + 1);
        while (len < KILN_RUNTIME_MESSAGE_LIMIT) {
                ssize_t n = pread(fd, buf + len, KILN_RUNTIME_MESSAGE_LIMIT - len, offset + (off_t)len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (gsize)n;
        }
        buf[len] = '\0';
        *ret_len = len;
        return g_steal_pointer(&buf);
}

static char *read_log_messages(const char *path)
{
        gsize len = 0;
        g_autofree char *buf = read_log_tail(path, &len);

        return buf ? kiln_runtime_parse_messages(buf, len) : NULL;
}

/* One line of the runtime's for the caller: "runc: debug: MSG". Control characters are escaped, so the
 * runtime (or a command name the caller chose, quoted in a message) cannot drive the caller's terminal. */
static void add_note(GString *notes, const char *runtime_name, const char *line, gboolean failed)
{
        g_autoptr(JsonParser) parser = NULL;
        g_autofree char *escaped = NULL;
        const char *msg = line, *level = NULL;
        JsonNode *root;

        if (*msg == '{') {
                parser = json_parser_new();
                if (json_parser_load_from_data(parser, msg, -1, NULL) &&
                    (root = json_parser_get_root(parser)) && JSON_NODE_HOLDS_OBJECT(root)) {
                        JsonObject *o = json_node_get_object(root);
                        msg = json_object_get_string_member_with_default(o, "msg", msg);
                        level = json_object_get_string_member_with_default(o, "level", NULL);
                }
        }
        /* A failure's errors are in the error the caller gets already: not twice. */
        if (failed && (!level || is_error_level(level)))
                return;
        escaped = kiln_escape_for_message(msg, strlen(msg));
        g_string_append_printf(notes, "%s: %s%s%s\n", runtime_name, level ? level : "", level ? ": " : "",
                               escaped);
}

char *kiln_runtime_op_notes(KilnRuntimeOp *op)
{
        g_autoptr(GString) notes = g_string_new(NULL);
        g_autofree char *text = NULL;
        g_auto(GStrv) lines = NULL;
        gsize len = 0;

        if (op->log_path)
                text = read_log_tail(op->log_path, &len);
        else if (op->messages) {
                g_autoptr(GBytes) bytes = kiln_relay_get_captured(op->messages);
                const char *data = g_bytes_get_data(bytes, &len);
                text = data ? g_strndup(data, len) : NULL;
        }
        if (!text)
                return NULL;
        lines = g_strsplit(text, "\n", 0);
        for (char **l = lines; *l && notes->len < KILN_RUNTIME_MESSAGE_LIMIT; l++) {
                g_strstrip(*l);
                if (**l)
                        add_note(notes, op->runtime_name, *l, op->status != 0);
        }
        return notes->len ? g_string_free(g_steal_pointer(&notes), FALSE) : NULL;
}

static void op_complete(KilnRuntimeOp *op)
{
        g_autofree char *words = NULL;

        if (!op->exited || kiln_relay_is_running(op->messages))
                return;
        if (op->status != 0) {
                if (op->log_path)
                        words = read_log_messages(op->log_path);
                else if (op->messages) {
                        g_autoptr(GBytes) bytes = kiln_relay_get_captured(op->messages);
                        gsize len;
                        const char *data = g_bytes_get_data(bytes, &len);
                        words = data ? kiln_runtime_parse_messages(data, len) : NULL;
                }
                op->message = g_strdup_printf("%s %s of container %s failed (%s %d)%s%s", op->runtime_name,
                                              op->verb, op->id, op->status > 128 ? "signal" : "exit status",
                                              op->status > 128 ? op->status - 128 : op->status,
                                              words ? ": " : "", words ? words : "");
        }
        if (op->done)
                op->done(op->data, op);
        op_free(op);
}

static void on_messages_done(G_GNUC_UNUSED KilnRelay *relay, G_GNUC_UNUSED const GError *error,
                             gpointer data)
{
        op_complete(data);
}

static void on_process_exited(GObject *source, GAsyncResult *result, gpointer data)
{
        KilnRuntimeOp *op = data;
        GSubprocess *p = G_SUBPROCESS(source);

        (void)g_subprocess_wait_finish(p, result, NULL);
        op->exited = TRUE;
        if (g_subprocess_get_if_exited(p))
                op->status = g_subprocess_get_exit_status(p);
        else if (g_subprocess_get_if_signaled(p))
                op->status = 128 + g_subprocess_get_term_sig(p);
        else
                op->status = 255;
        op_complete(op);
}

/* RUNTIME [runtime_args] --root STATE --log-format json: what comes before the verb (and --log). */
static void add_globals(GPtrArray *argv, const char *runtime, const char *const *runtime_args,
                        const char *state_root)
{
        /* The runtime's own --root comes after runtime_args so that ours is the one in force. */
        g_ptr_array_add(argv, (char *)runtime);
        for (const char *const *a = runtime_args; a && *a; a++)
                g_ptr_array_add(argv, (char *)*a);
        g_ptr_array_add(argv, "--root");
        g_ptr_array_add(argv, (char *)state_root);
        g_ptr_array_add(argv, "--log-format");
        g_ptr_array_add(argv, "json");
}

char **kiln_runtime_global_argv(const char *runtime, const char *const *runtime_args, const char *state_root)
{
        g_autoptr(GPtrArray) argv = g_ptr_array_new();

        add_globals(argv, runtime, runtime_args, state_root);
        g_ptr_array_add(argv, NULL);
        return g_strdupv((char **)argv->pdata);
}

/* The globals, then [--log LOG] VERB [verb_args] -- ID [after_id]; *@n_globals: how many globals. */
static GPtrArray *runtime_argv(const char *runtime, const char *const *runtime_args, const char *state_root,
                               const char *log_path, const char *verb, const char *const *verb_args,
                               const char *id, const char *after_id, guint *n_globals)
{
        GPtrArray *argv = g_ptr_array_new();

        add_globals(argv, runtime, runtime_args, state_root);
        *n_globals = argv->len;
        if (log_path) {
                g_ptr_array_add(argv, "--log");
                g_ptr_array_add(argv, (char *)log_path);
        }
        /* Names always after "--": an id can never be taken for an option. */
        g_ptr_array_add(argv, (char *)verb);
        for (const char *const *a = verb_args; a && *a; a++)
                g_ptr_array_add(argv, (char *)*a);
        g_ptr_array_add(argv, "--");
        g_ptr_array_add(argv, (char *)id);
        if (after_id)
                g_ptr_array_add(argv, (char *)after_id);
        g_ptr_array_add(argv, NULL);
        return argv;
}

/* For messages: the runtime's name, the real one's when kiln-runtime-ns runs it ("... -- RUNTIME ARGS"). */
static char *runtime_name(const char *runtime, const char *const *runtime_args)
{
        g_autofree char *name = g_path_get_basename(runtime);

        if (g_str_equal(name, "kiln-runtime-ns"))
                for (const char *const *a = runtime_args; a && *a; a++)
                        if (g_str_equal(*a, "--") && a[1])
                                return g_path_get_basename(a[1]);
        return g_steal_pointer(&name);
}

static KilnRuntimeOp *op_new(const char *runtime, const char *const *runtime_args, const char *verb,
                             const char *id, char *log_path)
{
        KilnRuntimeOp *op = g_new0(KilnRuntimeOp, 1);

        op->runtime_name = runtime_name(runtime, runtime_args);
        op->verb = g_strdup(verb);
        op->id = g_strdup(id);
        op->log_path = log_path;
        return op;
}

KilnRuntimeOp *kiln_runtime_op_request(KilnIsolateServer *server, const char *runtime,
                                       const char *const *runtime_args, const char *state_root,
                                       const char *bundle_dir, const char *id, const char *verb,
                                       const char *const *verb_args, int stdio[3], GError **error)
{
        g_autofree char *log_path = g_build_filename(bundle_dir, KILN_RUNTIME_LOG_FILE, NULL);
        g_autoptr(GPtrArray) argv = NULL;
        KilnIsolateRequest *request;
        KilnRuntimeOp *op;
        guint n_globals, n_wrap = 0;

        argv = runtime_argv(runtime, runtime_args, state_root, log_path, verb, verb_args, id, NULL,
                            &n_globals);
        g_return_val_if_fail(
                kiln_isolate_server_serves(server, (const char *const *)argv->pdata, n_globals, &n_wrap),
                NULL);
        /* "kiln-runtime-ns COVER KEEP... --": the request carries COVER KEEP... */
        request = kiln_isolate_server_request(server, bundle_dir, (const char *const *)argv->pdata + 1,
                                              n_wrap > 0 ? n_wrap - 2 : 0,
                                              (const char *const *)argv->pdata + n_globals, stdio, error);
        if (!request) {
                g_prefix_error(error, "%s %s of container %s: ", runtime, verb, id);
                return NULL;
        }
        op = op_new(runtime, runtime_args, verb, id, g_steal_pointer(&log_path));
        op->request = request;
        return op;
}

KilnRuntimeOp *kiln_runtime_op_spawn(const char *runtime, const char *const *runtime_args,
                                     const char *state_root, const char *bundle_dir, const char *id,
                                     const char *verb, const char *const *verb_args, const char *after_id,
                                     int stdio[3], GError **error)
{
        g_autoptr(GSubprocessLauncher) launcher = NULL;
        g_autoptr(GPtrArray) argv = NULL;
        g_autofree char *log_path = NULL;
        KilnRuntimeOp *op;
        GSubprocess *process;
        int messages_fd = -1;
        guint n_globals;

        if (stdio)
                log_path = g_build_filename(bundle_dir, KILN_RUNTIME_LOG_FILE, NULL);
        argv = runtime_argv(runtime, runtime_args, state_root, log_path, verb, verb_args, id, after_id,
                            &n_globals);

        if (stdio) {
                /* The runtime's stdio becomes the container's: create hands them on to its process. */
                launcher = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);
                g_subprocess_launcher_take_stdin_fd(launcher, stdio[0]);
                g_subprocess_launcher_take_stdout_fd(launcher, stdio[1]);
                g_subprocess_launcher_take_stderr_fd(launcher, stdio[2]);
        } else {
                int p[2];
                launcher = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
                if (pipe2(p, O_CLOEXEC) < 0)
                        return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                                           "pipe for %s %s: %s", runtime, verb, g_strerror(errno)),
                               NULL;
                (void)g_unix_set_fd_nonblocking(p[0], TRUE, NULL);
                g_subprocess_launcher_take_stderr_fd(launcher, p[1]);
                messages_fd = p[0];
        }
        g_subprocess_launcher_set_environ(launcher, (char **)kiln_runtime_environ);
        g_subprocess_launcher_set_cwd(launcher, bundle_dir);
        kiln_fd_limit_apply(launcher);

        process = g_subprocess_launcher_spawnv(launcher, (const char *const *)argv->pdata, error);
        /* Our copies of what the child got go now: a pipe's EOF must not wait for us. */
        g_subprocess_launcher_close(launcher);
        if (!process) {
                kiln_close_fdp(&messages_fd);
                g_prefix_error(error, "%s %s of container %s: ", runtime, verb, id);
                return NULL;
        }

        /* GLib's child watch reaps it: the reaper must not. */
        kiln_reaper_claim_subprocess(process);
        op = op_new(runtime, runtime_args, verb, id, g_steal_pointer(&log_path));
        op->process = process;
        if (messages_fd >= 0) {
                g_autofree char *name = g_strdup_printf("%s %s messages", op->runtime_name, verb);
                op->messages = kiln_relay_new_capture(name, messages_fd, KILN_RUNTIME_MESSAGE_LIMIT, FALSE);
        }
        return op;
}

static void on_request_done(gpointer data, int status)
{
        KilnRuntimeOp *op = data;

        op->exited = TRUE;
        op->status = status;
        op_complete(op);
}

void kiln_runtime_op_run(KilnRuntimeOp *op, GMainContext *context, KilnRuntimeOpDone done, gpointer data,
                         GDestroyNotify destroy)
{
        op->done = done;
        op->data = data;
        op->destroy = destroy;
        if (op->request) {
                kiln_isolate_request_watch(op->request, context, on_request_done, op);
                return;
        }
        if (op->messages)
                kiln_relay_start(op->messages, context, on_messages_done, op);
        /* GSubprocess answers on the thread-default context of the caller. */
        g_main_context_push_thread_default(context);
        g_subprocess_wait_async(op->process, NULL, on_process_exited, op);
        g_main_context_pop_thread_default(context);
}

GError *kiln_runtime_op_error(KilnRuntimeOp *op)
{
        /* How runc and crun say that the command cannot be executed, at create or start (and
         * kiln-isolate, in their words, at run). */
        static const struct {
                const char *first, *second;
                int code;
        } exec_failures[] = {
                {"exec: \"", "no such file or directory", G_IO_ERROR_NOT_FOUND},
                {"executable file", "not found", G_IO_ERROR_NOT_FOUND},
                {"exec: \"", "permission denied", G_IO_ERROR_PERMISSION_DENIED},
                {"executable", "permission denied", G_IO_ERROR_PERMISSION_DENIED},
        };
        g_autofree char *lower = g_ascii_strdown(op->message ? op->message : "", -1);
        int code = G_IO_ERROR_FAILED;

        if (g_str_equal(op->verb, "create") || g_str_equal(op->verb, "start") ||
            g_str_equal(op->verb, "run"))
                for (size_t i = 0; i < G_N_ELEMENTS(exec_failures); i++)
                        if (strstr(lower, exec_failures[i].first) &&
                            strstr(lower, exec_failures[i].second)) {
                                code = exec_failures[i].code;
                                break;
                        }
        return g_error_new(G_IO_ERROR, code, "%s", op->message ? op->message : "The runtime failed");
}

static gboolean on_flag_timeout(gpointer data)
{
        *(gboolean *)data = TRUE;
        return G_SOURCE_REMOVE;
}

static void on_sync_wait_done(GObject *source, GAsyncResult *result, gpointer data)
{
        (void)g_subprocess_wait_finish(G_SUBPROCESS(source), result, NULL);
        *(gboolean *)data = TRUE;
}

void kiln_runtime_wait_bounded(GSubprocess *process, guint timeout_ms)
{
        g_autoptr(GMainContext) context = g_main_context_new();
        gboolean done = FALSE, expired = FALSE;
        GSource *timer = g_timeout_source_new(timeout_ms);

        g_main_context_push_thread_default(context);
        g_source_set_callback(timer, on_flag_timeout, &expired, NULL);
        g_source_attach(timer, context);
        g_subprocess_wait_async(process, NULL, on_sync_wait_done, &done);
        while (!done) {
                if (expired) {
                        g_warning("%s did not exit within %u ms; killing it",
                                  g_subprocess_get_identifier(process), timeout_ms);
                        g_subprocess_force_exit(process);
                        expired = FALSE;
                }
                g_main_context_iteration(context, TRUE);
        }
        g_source_destroy(timer);
        g_source_unref(timer);
        g_main_context_pop_thread_default(context);
}

typedef struct {
        gboolean done;
        int status;
        char *message;
} SyncResult;

static void on_sync_op_done(gpointer data, KilnRuntimeOp *op)
{
        SyncResult *r = data;

        r->done = TRUE;
        r->status = op->status;
        r->message = g_steal_pointer(&op->message);
}

gboolean kiln_runtime_run_sync(const char *runtime, const char *const *runtime_args, const char *state_root,
                               const char *bundle_dir, const char *id, const char *verb,
                               const char *const *verb_args, guint timeout_ms, GError **error)
{
        g_autoptr(GMainContext) context = g_main_context_new();
        SyncResult r = {0};
        KilnRuntimeOp *op;
        GSubprocess *process;
        gboolean expired = FALSE;
        GSource *timer;

        op = kiln_runtime_op_spawn(runtime, runtime_args, state_root, bundle_dir, id, verb, verb_args, NULL,
                                   NULL, error);
        if (!op)
                return FALSE;
        process = g_object_ref(op->process);
        timer = g_timeout_source_new(timeout_ms);
        g_source_set_callback(timer, on_flag_timeout, &expired, NULL);
        g_source_attach(timer, context);
        g_main_context_push_thread_default(context);
        kiln_runtime_op_run(op, context, on_sync_op_done, &r, NULL);
        while (!r.done) {
                if (expired) {
                        g_warning("%s %s of container %s did not exit within %u ms; killing it", runtime,
                                  verb, id, timeout_ms);
                        g_subprocess_force_exit(process);
                        expired = FALSE;
                }
                g_main_context_iteration(context, TRUE);
        }
        g_main_context_pop_thread_default(context);
        g_source_destroy(timer);
        g_source_unref(timer);
        g_object_unref(process);
        if (r.status != 0) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", r.message);
                g_free(r.message);
                return FALSE;
        }
        g_free(r.message);
        return TRUE;
}

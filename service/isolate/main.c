/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-isolate: the command line (the subset of runc's that kilnd uses) and the commands.
 *
 *   kiln-isolate [--root DIR] [--cache-dir DIR|none] [--log FILE] [--log-format text|json] COMMAND ...
 *     run    --bundle DIR [--pid-file F] [--console-socket S] [--no-pivot] [--detach] [--] ID
 *     create --bundle DIR [--pid-file F] [--console-socket S] [--no-pivot] [--] ID
 *     start  [--] ID
 *     kill   [--] ID [SIGNAL]
 *     delete [--force] [--] ID
 *     state  [--] ID
 *     serve  (kilnd's: stdin is a socket of requests for the commands above, serve.c)
 *
 * --cache-dir keeps compiled seccomp filters (default /run/kiln-isolate-cache; "none": no cache).
 *
 * Exit codes: 0 success; for `run` the command's status (128+N when killed by signal N); 125 when
 * kiln-isolate itself failed (usage, config.json, any setup step); 126 / 127 when the command cannot
 * be executed / does not exist (run and create). */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "isolate.h"

#define DEFAULT_STATE_ROOT "/run/kiln-isolate"
#define DEFAULT_CACHE_DIR "/run/kiln-isolate-cache" /* compiled seccomp filters (seccomp.c) */
#define DELETE_WAIT_MS 10000

typedef struct Options {
        const char *root;
        const char *cache_dir;
        const char *log;
        bool log_json;
        bool debug;
        const char *command;
        int command_index; /* in argv: what comes before are the global options */
        const char *bundle;
        const char *pid_file;
        const char *console_socket;
        bool no_pivot;
        bool detach;
        bool force;
        const char *id;
        const char *extra; /* kill: the signal */
} Options;

static void usage(FILE *f)
{
        fputs("Usage: kiln-isolate [--root DIR] [--cache-dir DIR|none] [--log FILE] [--log-format "
              "text|json] "
              "COMMAND ...\n"
              "  run    --bundle DIR [--pid-file FILE] [--console-socket SOCKET] [--no-pivot] [--detach] "
              "[--] ID\n"
              "  create --bundle DIR [--pid-file FILE] [--console-socket SOCKET] [--no-pivot] [--] ID\n"
              "  start  [--] ID\n"
              "  kill   [--] ID [SIGNAL]\n"
              "  delete [--force] [--] ID\n"
              "  state  [--] ID\n",
              f);
}

/* "--name value" or "--name=value"; advances *i past what it took. */
static bool take_value(char **argv, int argc, int *i, const char *name, const char **value, GError **error)
{
        const char *a = argv[*i];
        size_t n = strlen(name);

        if (strncmp(a, name, n) != 0)
                return false;
        if (a[n] == '=') {
                *value = a + n + 1;
                return true;
        }
        if (a[n] != '\0')
                return false;
        if (*i + 1 >= argc) {
                iso_fail(error, "%s needs a value", name);
                *value = NULL;
                return true;
        }
        *value = argv[++*i];
        return true;
}

static gboolean parse(int argc, char **argv, Options *o, GError **error)
{
        int i = 1;
        bool dashdash = false;
        const char *positional[2] = {NULL, NULL};
        int n_positional = 0;

        for (; i < argc && argv[i][0] == '-'; i++) {
                const char *v = NULL;
                if (take_value(argv, argc, &i, "--root", &o->root, error) ||
                    take_value(argv, argc, &i, "--cache-dir", &o->cache_dir, error) ||
                    take_value(argv, argc, &i, "--log", &o->log, error)) {
                        if (error && *error)
                                return FALSE;
                } else if (take_value(argv, argc, &i, "--log-format", &v, error)) {
                        if (!v || (!g_str_equal(v, "json") && !g_str_equal(v, "text")))
                                return iso_fail(error, "--log-format must be text or json");
                        o->log_json = g_str_equal(v, "json");
                } else if (g_str_equal(argv[i], "--debug")) {
                        o->debug = true;
                } else if (g_str_equal(argv[i], "--systemd-cgroup")) {
                        continue; /* runc's; nothing to do here */
                } else if (g_str_equal(argv[i], "--help")) {
                        usage(stdout);
                        exit(0);
                } else {
                        return iso_fail(error, "unknown global option '%s'", argv[i]);
                }
        }
        if (i >= argc)
                return iso_fail(error, "no command given (run, create, start, kill, delete, state)");
        o->command_index = i;
        o->command = argv[i++];
        if (g_str_equal(o->command, "serve"))
                return i == argc ? TRUE : iso_fail(error, "serve: unexpected argument '%s'", argv[i]);
        for (; i < argc; i++) {
                const char *a = argv[i];
                if (!dashdash && a[0] == '-') {
                        if (g_str_equal(a, "--")) {
                                dashdash = true;
                        } else if (take_value(argv, argc, &i, "--bundle", &o->bundle, error) ||
                                   take_value(argv, argc, &i, "-b", &o->bundle, error) ||
                                   take_value(argv, argc, &i, "--pid-file", &o->pid_file, error) ||
                                   take_value(argv, argc, &i, "--console-socket", &o->console_socket,
                                              error)) {
                                if (error && *error)
                                        return FALSE;
                        } else if (g_str_equal(a, "--no-pivot")) {
                                o->no_pivot = true;
                        } else if (g_str_equal(a, "--detach") || g_str_equal(a, "-d")) {
                                o->detach = true;
                        } else if (g_str_equal(a, "--force") || g_str_equal(a, "-f")) {
                                o->force = true;
                        } else {
                                return iso_fail(error, "%s: unknown option '%s'", o->command, a);
                        }
                        continue;
                }
                if (n_positional == 2)
                        return iso_fail(error, "%s: unexpected argument '%s'", o->command, a);
                positional[n_positional++] = a;
        }
        o->id = positional[0];
        o->extra = positional[1];
        if (!o->id || !*o->id || strchr(o->id, '/') || g_str_equal(o->id, ".") || g_str_equal(o->id, ".."))
                return iso_fail(error, "%s: a container id is needed (no '/')", o->command);
        if (o->extra && !g_str_equal(o->command, "kill"))
                return iso_fail(error, "%s: unexpected argument '%s'", o->command, o->extra);
        return TRUE;
}

static gboolean write_pid_file(const char *path, pid_t pid, GError **error)
{
        g_autofree char *text = g_strdup_printf("%d", (int)pid);
        g_autofree char *tmp = NULL;
        _cleanup_close_ int fd = -1;
        size_t len = strlen(text);

        if (!path)
                return TRUE;
        /* Written whole and renamed into place: a reader never sees half of it. Not synced: it lives in
         * a runtime directory, means nothing after a reboot, and a detached run's caller waits for it. */
        tmp = g_strconcat(path, ".tmp", NULL);
        (void)unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
                return iso_fail_errno(error, errno, "write pid file '%s'", tmp);
        if (write(fd, text, len) != (ssize_t)len || rename(tmp, path) < 0) {
                int errsv = errno;
                (void)unlink(tmp);
                return iso_fail_errno(error, errsv, "write pid file '%s'", path);
        }
        return TRUE;
}

/* ---- run ---- */

static volatile sig_atomic_t forward_pid;

static void on_forwarded_signal(int sig)
{
        if (forward_pid > 0)
                kill((pid_t)forward_pid, sig);
}

static int wait_status(pid_t pid)
{
        static const int forwarded[] = {SIGINT,  SIGTERM, SIGHUP,   SIGQUIT,
                                        SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT};
        struct sigaction sa = {.sa_handler = on_forwarded_signal};
        int status = 0;

        /* Installed only now, in the parent alone: the init never runs these handlers. */
        forward_pid = pid;
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < G_N_ELEMENTS(forwarded); i++)
                sigaction(forwarded[i], &sa, NULL);
        while (waitpid(pid, &status, __WALL) < 0)
                if (errno != EINTR)
                        return ISO_EXIT_SETUP;
        return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

static int cmd_launch(const Options *o, IsoMode mode, GError **error)
{
        g_autoptr(IsoSpec) spec = NULL;
        g_autoptr(IsoSeccomp) seccomp = NULL;
        _cleanup_close_ int console_fd = -1, start_fd = -1, state_dir = -1;
        IsoLaunch launch = {
                .mode = mode, .id = o->id, .no_pivot = o->no_pivot, .console_fd = -1, .start_fd = -1};
        bool state_made = false;
        pid_t pid = 0;
        int code;

        if (!o->bundle)
                return iso_fail(error, "%s: --bundle is required", o->command), ISO_EXIT_SETUP;
        spec = iso_spec_read(o->bundle, error);
        if (!spec)
                return ISO_EXIT_SETUP;
        launch.spec = spec;
        iso_log_debug("bundle %s: the spec is read", o->bundle);
        if (spec->terminal && !o->console_socket)
                return iso_fail(error, "process.terminal needs --console-socket"), ISO_EXIT_SETUP;
        seccomp =
                iso_seccomp_prepare(spec, g_strcmp0(o->cache_dir, "none") == 0 ? NULL : o->cache_dir, error);
        if (spec->seccomp && !seccomp)
                return ISO_EXIT_SETUP;
        launch.seccomp = seccomp;
        if (spec->terminal) {
                console_fd = iso_console_connect(o->console_socket, error);
                if (console_fd < 0)
                        goto fail;
                launch.console_fd = console_fd;
        }
        /* A created container and a detached run outlive us: their state lets `kill`, `state` and
         * `delete --force` find the init (a caller that crashed cleans up by the id alone). */
        if (mode != ISO_MODE_RUN) {
                if (!iso_state_create(o->root, o->id, &state_dir, mode == ISO_MODE_CREATE ? &start_fd : NULL,
                                      error))
                        goto fail;
                state_made = true;
                launch.start_fd = start_fd;
        }
        if (!iso_container_launch(&launch, &pid, error))
                goto fail;
        iso_log_debug("container %s: process %d runs", o->id, (int)pid);
        kiln_close_fdp(&console_fd);
        console_fd = -1;
        if (mode != ISO_MODE_RUN) {
                if (!iso_state_write(state_dir, pid, spec->bundle, error) ||
                    !write_pid_file(o->pid_file, pid, error)) {
                        kill(pid, SIGKILL);
                        goto fail;
                }
                /* Detached: the command runs; its parent from now on is our parent, or the subreaper
                 * above, which reaps it and removes the state (or calls `delete`). */
                return 0;
        }
        if (!write_pid_file(o->pid_file, pid, error)) {
                kill(pid, SIGKILL);
                (void)wait_status(pid);
                goto fail;
        }
        code = wait_status(pid);
        /* A foreground run is deleted as it ends: its poststop hooks now, failures only logged. */
        iso_hooks_run_logged(spec, ISO_HOOK_POSTSTOP, o->id, "stopped", 0);
        return code;
fail:
        if (state_made)
                (void)iso_state_remove(o->root, o->id, NULL);
        return error && *error ? (*error)->code : ISO_EXIT_SETUP;
}

/* ---- start, kill, delete, state ---- */

static bool parse_signal(const char *s, int *sig)
{
        guint64 n;

        if (g_ascii_string_to_unsigned(s, 10, 1, SIGRTMAX, &n, NULL)) {
                *sig = (int)n;
                return true;
        }
        if (g_ascii_strncasecmp(s, "SIG", 3) == 0)
                s += 3;
        for (int i = 1; i < NSIG; i++) {
                const char *abbrev = sigabbrev_np(i);
                if (abbrev && g_ascii_strcasecmp(abbrev, s) == 0) {
                        *sig = i;
                        return true;
                }
        }
        return false;
}

/* start, then the poststart hooks (failures only logged). */
static int cmd_start(const Options *o, GError **error)
{
        g_auto(IsoState) state = {0};
        g_autoptr(IsoSpec) spec = NULL;

        if (!iso_state_start(o->root, o->id, error))
                return ISO_EXIT_SETUP;
        if (iso_state_read(o->root, o->id, &state, NULL) && state.bundle &&
            (spec = iso_spec_read(state.bundle, NULL)))
                iso_hooks_run_logged(spec, ISO_HOOK_POSTSTART, o->id, "running", state.pid);
        return 0;
}

static int cmd_kill(const Options *o, GError **error)
{
        g_auto(IsoState) state = {0};
        int sig = SIGTERM;
        bool gone;

        if (o->extra && !parse_signal(o->extra, &sig))
                return iso_fail(error, "kill: unknown signal '%s'", o->extra), ISO_EXIT_SETUP;
        if (!iso_state_read(o->root, o->id, &state, error) || !iso_state_signal(&state, sig, &gone, error))
                return ISO_EXIT_SETUP;
        if (gone)
                return iso_fail(error, "container '%s' is not running", o->id), ISO_EXIT_SETUP;
        return 0;
}

static int cmd_delete(const Options *o, GError **error)
{
        g_auto(IsoState) state = {0};
        g_autoptr(GError) local = NULL;
        g_autofree char *dir = g_build_filename(o->root, o->id, NULL);
        bool gone, have_state;

        if (!g_file_test(dir, G_FILE_TEST_IS_DIR)) {
                if (o->force)
                        return 0;
                return iso_fail(error, "container '%s' does not exist", o->id), ISO_EXIT_SETUP;
        }
        /* A state directory without a state file is what a failed create left: only files to remove. */
        have_state = iso_state_read(o->root, o->id, &state, &local);
        if (have_state && iso_state_running(&state)) {
                if (!o->force && state.started)
                        return iso_fail(error, "container '%s' is running: stop it first or use --force",
                                        o->id),
                               ISO_EXIT_SETUP;
                if (!iso_state_signal(&state, SIGKILL, &gone, error))
                        return ISO_EXIT_SETUP;
                if (!iso_state_wait_gone(&state, DELETE_WAIT_MS))
                        return iso_fail(error, "container '%s' did not exit after SIGKILL", o->id),
                               ISO_EXIT_SETUP;
        }
        if (!iso_state_remove(o->root, o->id, error))
                return ISO_EXIT_SETUP;
        /* runtime-spec: poststop hooks once the container is deleted, failures only logged. The bundle is
         * the one the container was made from (state.json, kiln-isolate's own). */
        if (have_state && state.bundle) {
                g_autoptr(GError) spec_error = NULL;
                g_autoptr(IsoSpec) spec = iso_spec_read(state.bundle, &spec_error);
                if (spec)
                        iso_hooks_run_logged(spec, ISO_HOOK_POSTSTOP, o->id, "stopped", 0);
                else if (spec_error)
                        iso_log_error(spec_error->message);
        }
        return 0;
}

static int cmd_state(const Options *o, GError **error)
{
        g_auto(IsoState) state = {0};
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = NULL;
        g_autofree char *text = NULL;
        bool running;

        if (!iso_state_read(o->root, o->id, &state, error))
                return ISO_EXIT_SETUP;
        running = iso_state_running(&state);
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "ociVersion");
        json_builder_add_string_value(b, "1.0.2");
        json_builder_set_member_name(b, "id");
        json_builder_add_string_value(b, o->id);
        json_builder_set_member_name(b, "status");
        json_builder_add_string_value(b, !running ? "stopped" : state.started ? "running" : "created");
        json_builder_set_member_name(b, "pid");
        json_builder_add_int_value(b, running ? state.pid : 0);
        json_builder_set_member_name(b, "bundle");
        json_builder_add_string_value(b, state.bundle);
        json_builder_end_object(b);
        root = json_builder_get_root(b);
        json_generator_set_root(gen, root);
        json_generator_set_pretty(gen, TRUE);
        text = json_generator_to_data(gen, NULL);
        printf("%s\n", text);
        return 0;
}

/* One command, as a fresh kiln-isolate or a child of `serve` runs it. */
static int run_command(int argc, char **argv)
{
        g_autoptr(GError) error = NULL;
        Options o = {.root = DEFAULT_STATE_ROOT, .cache_dir = DEFAULT_CACHE_DIR};
        int code;

        if (!parse(argc, argv, &o, &error)) {
                fprintf(stderr, "kiln-isolate: %s\n", error->message);
                usage(stderr);
                return ISO_EXIT_SETUP;
        }
        iso_log_setup(o.log, o.log_json);
        iso_log_set_debug(o.debug);
        iso_log_debug("%s of container %s", o.command, o.id ? o.id : "(none)");
        if (g_str_equal(o.command, "serve"))
                code = (iso_fail(&error, "serve: not a command a server runs"), ISO_EXIT_SETUP);
        else if (g_str_equal(o.command, "run"))
                code = cmd_launch(&o, o.detach ? ISO_MODE_RUN_DETACHED : ISO_MODE_RUN, &error);
        else if (g_str_equal(o.command, "create"))
                code = cmd_launch(&o, ISO_MODE_CREATE, &error);
        else if (g_str_equal(o.command, "start"))
                code = cmd_start(&o, &error);
        else if (g_str_equal(o.command, "kill"))
                code = cmd_kill(&o, &error);
        else if (g_str_equal(o.command, "delete"))
                code = cmd_delete(&o, &error);
        else if (g_str_equal(o.command, "state"))
                code = cmd_state(&o, &error);
        else
                code = (iso_fail(&error, "unknown command '%s'", o.command), ISO_EXIT_SETUP);
        if (error)
                iso_log_error(error->message);
        iso_log_close();
        fflush(stdout);
        return code;
}

int main(int argc, char **argv)
{
        g_autoptr(GError) error = NULL;
        Options o = {0};

        /* Not dumpable while privileged: no process of the container's user can ptrace us or open our
         * /proc files. The init inherits it; execve makes the command dumpable again. */
        (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        /* Nothing inherited beyond stdio may reach a container. */
        (void)close_range(3, ~0U, 0);

        /* "kiln-isolate [GLOBAL...] serve": each command it runs gets the same global options. */
        if (parse(argc, argv, &o, &error) && g_str_equal(o.command, "serve"))
                return iso_serve(argv, o.command_index, run_command);
        return run_command(argc, argv);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* kilnd's runtime driver (service/runtime/runtime.h) with kiln-isolate as its runtime, both ways it can
 * drive it: as runc (run --detach, wait, kill, delete) and as kilnd does (`isolate`: run --detach, wait,
 * signals through the pidfd, the state removed in-process). Stdio passed through or captured, the terminal
 * through the console socket, a command that cannot run reported as runc's would be, and nothing left in
 * the state root. Needs root and a static /bin/busybox; exits 77 (skipped) otherwise. */
#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <glib-unix.h>

#include "container-drive.h"
#include "runtime/isolate-server.h"
#include "isolate-testlib.h"
#include "runtime/runtime.h"

#define TIMEOUT_SECONDS 60

static const char *runtime_args[3];

/* The test's data: how the driver drives kiln-isolate. */
typedef struct {
        gboolean isolate; /* kilnd's driving of kiln-isolate (no kill, no delete), or runc's */
        gboolean served;  /* through kiln-isolate's server, as kilnd does, or executed */
} Mode;
static const Mode drive_as_runc = {FALSE, FALSE}, drive_as_isolate = {TRUE, FALSE},
                  drive_served = {TRUE, TRUE};

/* Started with the test's global options, as kilnd starts its own. */
static KilnIsolateServer *server;

static KilnRuntimeSpec spec_for(const char *bundle, const char *id, gconstpointer data)
{
        const Mode *mode = data;

        return (KilnRuntimeSpec){
                .runtime = test_env.isolate,
                .isolate = mode->isolate,
                .isolate_server = mode->served ? server : NULL,
                .state_root = test_env.state_root,
                .bundle_dir = bundle,
                .container_id = id,
                .runtime_args = (char **)runtime_args,
                .stdin_fd = -1,
                .stdout_fd = -1,
                .stderr_fd = -1,
        };
}

/* Start and wait; *error gets a start failure. Returns the exit status, or -1. */
static int drive(KilnContainer *c, GError **error)
{
        DriveResult r = {0};

        kiln_container_start_async(c, NULL, drive_on_started, &r);
        drive_iterate_until(&r.done, TIMEOUT_SECONDS);
        if (!r.ok) {
                g_propagate_error(error, r.error);
                return -1;
        }
        r = (DriveResult){0};
        kiln_container_wait_async(c, NULL, drive_on_waited, &r);
        drive_iterate_until(&r.done, TIMEOUT_SECONDS);
        g_assert_no_error(r.error);
        return r.status;
}

static guint count_dir(const char *path)
{
        g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
        guint n = 0;

        while (dir && g_dir_read_name(dir))
                n++;
        return n;
}

static void test_exit_status(gconstpointer data)
{
        static const char *const argv[] = {"/bin/sh", "-c", "exit 42", NULL};
        TestRun run = {.argv = argv, .seccomp = TRUE};
        g_autofree char *id = NULL, *bundle = test_make_bundle(&run, &id);
        KilnRuntimeSpec spec = spec_for(bundle, id, data);
        g_autoptr(KilnContainer) c = kiln_container_new(&spec);
        g_autoptr(GError) error = NULL;

        g_assert_cmpint(drive(c, &error), ==, 42);
        g_assert_no_error(error);
        g_assert_cmpuint(count_dir(test_env.state_root), ==, 0); /* deleted */
}

static void test_capture(gconstpointer data)
{
        static const char *const argv[] = {"/bin/sh", "-c", "echo out; echo err >&2; ls /proc/self/fd",
                                           NULL};
        TestRun run = {.argv = argv, .seccomp = TRUE, .no_new_privileges = TRUE};
        g_autofree char *id = NULL, *bundle = test_make_bundle(&run, &id);
        KilnRuntimeSpec spec = spec_for(bundle, id, data);
        g_autoptr(KilnContainer) c = NULL;
        g_autoptr(GBytes) out = NULL, err = NULL;
        g_autoptr(GError) error = NULL;

        spec.capture_limit = 4096;
        c = kiln_container_new(&spec);
        g_assert_cmpint(drive(c, &error), ==, 0);
        out = kiln_container_get_captured(c, 1);
        err = kiln_container_get_captured(c, 2);
        /* Nothing of kilnd's (here: the test's) descriptors reaches the command. */
        g_assert_cmpmem(g_bytes_get_data(out, NULL), g_bytes_get_size(out), "out\n0\n1\n2\n3\n", 12);
        g_assert_cmpmem(g_bytes_get_data(err, NULL), g_bytes_get_size(err), "err\n", 4);
}

static void test_kill(gconstpointer data)
{
        static const char *const argv[] = {"/bin/sleep", "30", NULL};
        TestRun run = {.argv = argv};
        g_autofree char *id = NULL, *bundle = test_make_bundle(&run, &id);
        KilnRuntimeSpec spec = spec_for(bundle, id, data);
        g_autoptr(KilnContainer) c = kiln_container_new(&spec);
        g_autoptr(GError) error = NULL;
        DriveResult r = {0};

        kiln_container_start_async(c, NULL, drive_on_started, &r);
        drive_iterate_until(&r.done, TIMEOUT_SECONDS);
        g_assert_no_error(r.error);
        g_assert_cmpint(kiln_container_get_pid(c), >, 1);
        g_assert_true(kiln_container_kill(c, SIGKILL, &error));
        g_assert_no_error(error);
        r = (DriveResult){0};
        kiln_container_wait_async(c, NULL, drive_on_waited, &r);
        drive_iterate_until(&r.done, TIMEOUT_SECONDS);
        g_assert_no_error(r.error);
        g_assert_cmpint(r.status, ==, 128 + SIGKILL);
        g_assert_cmpuint(count_dir(test_env.state_root), ==, 0);
}

/* Freeing a container that runs (kilnd stopping, a caller gone) kills it, reaps it and forgets it. */
static void test_free_running(gconstpointer data)
{
        static const char *const argv[] = {"/bin/sleep", "30", NULL};
        TestRun run = {.argv = argv};
        g_autofree char *id = NULL, *bundle = test_make_bundle(&run, &id);
        KilnRuntimeSpec spec = spec_for(bundle, id, data);
        KilnContainer *c = kiln_container_new(&spec);
        DriveResult r = {0};
        pid_t pid;

        kiln_container_start_async(c, NULL, drive_on_started, &r);
        drive_iterate_until(&r.done, TIMEOUT_SECONDS);
        g_assert_no_error(r.error);
        pid = kiln_container_get_pid(c);
        g_assert_cmpint(pid, >, 1);
        g_assert_cmpuint(count_dir(test_env.state_root), ==, 1);
        kiln_container_free(c);
        g_assert_cmpint(kill(pid, 0), <, 0); /* reaped: no such process */
        g_assert_cmpuint(count_dir(test_env.state_root), ==, 0);
}

static void test_not_found(gconstpointer data)
{
        static const char *const missing[] = {"/bin/no-such-command", NULL};
        static const char *const not_exec[] = {"/etc/not-executable", NULL};
        const char *const *cases[] = {missing, not_exec};
        const int codes[] = {G_IO_ERROR_NOT_FOUND, G_IO_ERROR_PERMISSION_DENIED};

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                TestRun run = {.argv = cases[i]};
                g_autofree char *id = NULL, *bundle = test_make_bundle(&run, &id);
                KilnRuntimeSpec spec = spec_for(bundle, id, data);
                g_autoptr(KilnContainer) c = kiln_container_new(&spec);
                g_autoptr(GError) error = NULL;

                /* Checked before it starts, in runc's words: the driver tells not found from not executable.
                 */
                g_assert_cmpint(drive(c, &error), ==, -1);
                g_assert_error(error, G_IO_ERROR, codes[i]);
                g_test_message("%s", error->message);
                g_assert_nonnull(strstr(error->message, "kiln-isolate run of container"));
                g_assert_nonnull(strstr(error->message, cases[i][0]));
        }
        g_assert_cmpuint(count_dir(test_env.state_root), ==, 0);
}

static void test_setup_failure(gconstpointer data)
{
        TestRun run = {0};
        g_autofree char *id = NULL, *bundle = test_make_bundle(&run, &id);
        g_autofree char *config = g_build_filename(bundle, "config.json", NULL);
        KilnRuntimeSpec spec = spec_for(bundle, id, data);
        g_autoptr(KilnContainer) c = kiln_container_new(&spec);
        g_autoptr(GError) error = NULL;

        g_assert_true(g_file_set_contents(
                config, "{\"ociVersion\": \"1.0.2\", \"root\": {\"path\": \"/r\"}, \"process\": 3}", -1,
                NULL));
        g_assert_cmpint(drive(c, &error), ==, -1);
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_FAILED);
        g_test_message("%s", error->message);
        /* kiln-isolate's own words, from its --log file. */
        g_assert_nonnull(strstr(error->message, "config.json: process is not an object"));
        g_assert_cmpuint(count_dir(test_env.state_root), ==, 0);
}

static void test_terminal(gconstpointer data)
{
        static const char *const argv[] = {"/bin/sh", "-c", "tty; stty size", NULL};
        TestRun run = {.argv = argv, .terminal = TRUE, .seccomp = TRUE};
        g_autofree char *id = NULL, *bundle = test_make_bundle(&run, &id);
        KilnRuntimeSpec spec = spec_for(bundle, id, data);
        g_autoptr(KilnContainer) c = NULL;
        g_autoptr(GBytes) out = NULL;
        g_autoptr(GError) error = NULL;

        spec.terminal = TRUE;
        spec.rows = 30;
        spec.cols = 90;
        spec.capture_limit = 4096;
        c = kiln_container_new(&spec);
        g_assert_cmpint(drive(c, &error), ==, 0);
        out = kiln_container_get_captured(c, 1);
        g_assert_cmpmem(g_bytes_get_data(out, NULL), g_bytes_get_size(out), "/dev/pts/0\r\n30 90\r\n", 19);
}

static int compare_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

/* What a chroot run costs the driver: run --detach, wait and delete, or run --detach and wait. */
static void test_timing(gconstpointer data)
{
        TestRun run = {.seccomp = TRUE};
        double times[20];

        if (test_env.wrapper) {
                g_test_skip("timing under a wrapper means nothing");
                return;
        }
        for (size_t i = 0; i < G_N_ELEMENTS(times); i++) {
                g_autofree char *id = NULL, *bundle = test_make_bundle(&run, &id);
                KilnRuntimeSpec spec = spec_for(bundle, id, data);
                g_autoptr(KilnContainer) c = kiln_container_new(&spec);
                g_autoptr(GError) error = NULL;
                gint64 t0 = g_get_monotonic_time();

                g_assert_cmpint(drive(c, &error), ==, 0);
                times[i] = (double)(g_get_monotonic_time() - t0) / 1000.0;
        }
        qsort(times, G_N_ELEMENTS(times), sizeof(double), compare_double);
        g_print("# driver %s of /bin/true with kiln-isolate: median %.2f ms of %zu\n",
                ((const Mode *)data)->served    ? "run --detach/wait, served"
                : ((const Mode *)data)->isolate ? "run --detach/wait"
                                                : "run --detach/wait/delete",
                (times[9] + times[10]) / 2, G_N_ELEMENTS(times));
}

/* A run in a user namespace is served too: kiln-runtime-ns (the one next to the server's kiln-isolate)
 * COVER KEEP... -- and then the server's globals; anything else is not. */
static void test_serves_wrapped(void)
{
        g_auto(GStrv) globals =
                kiln_runtime_global_argv(test_env.isolate, runtime_args, test_env.state_root);
        g_autofree char *dir = g_path_get_dirname(test_env.isolate);
        g_autofree char *ns = g_build_filename(dir, "kiln-runtime-ns", NULL);
        guint n = g_strv_length(globals), n_wrap = 99;
        g_autoptr(GPtrArray) a = g_ptr_array_new();

        g_assert_true(kiln_isolate_server_serves(server, (const char *const *)globals, n, &n_wrap));
        g_assert_cmpuint(n_wrap, ==, 0);
        g_ptr_array_add(a, ns);
        g_ptr_array_add(a, "/run/kiln");
        g_ptr_array_add(a, "/run/kiln/bundles/x");
        g_ptr_array_add(a, "--");
        for (guint i = 0; i < n; i++)
                g_ptr_array_add(a, globals[i]);
        g_assert_true(kiln_isolate_server_serves(server, (const char *const *)a->pdata, a->len, &n_wrap));
        g_assert_cmpuint(n_wrap, ==, 4);
        /* Not without "--", nor without COVER, nor another kiln-runtime-ns, nor other globals. */
        g_assert_false(
                kiln_isolate_server_serves(server, (const char *const *)a->pdata + 1, a->len - 1, NULL));
        a->pdata[3] = "/run/kiln/other";
        g_assert_false(kiln_isolate_server_serves(server, (const char *const *)a->pdata, a->len, NULL));
        a->pdata[3] = "--";
        a->pdata[0] = "/elsewhere/kiln-runtime-ns";
        g_assert_false(kiln_isolate_server_serves(server, (const char *const *)a->pdata, a->len, NULL));
        a->pdata[0] = ns;
        g_ptr_array_remove_range(a, 1, 2);
        g_assert_false(kiln_isolate_server_serves(server, (const char *const *)a->pdata, a->len, NULL));
        g_ptr_array_insert(a, 1, "/run/kiln");
        g_ptr_array_remove_index(a, a->len - 1);
        g_assert_false(kiln_isolate_server_serves(server, (const char *const *)a->pdata, a->len, NULL));
}

static void on_request_done(gpointer data, int status)
{
        *(int *)data = status;
}

/* The server dies while its child still runs a command (`run` without --detach waits for it): the child
 * is ours then, as kilnd's, and reaped through the pidfd the server sent, with the command's own status.
 * The next request gets a new server. */
static void test_server_death(void)
{
        static const char *const argv[] = {"/bin/sh", "-c", "sleep 1; exit 3", NULL};
        TestRun run = {.argv = argv};
        g_autofree char *id = NULL, *bundle = test_make_bundle(&run, &id);
        const char *const args[] = {"run", "--bundle", bundle, "--", id, NULL};
        int stdio[3], status = -1;
        g_autoptr(KilnIsolateRequest) request = NULL;
        g_autoptr(GError) error = NULL;
        pid_t first = kiln_isolate_server_get_pid(server);

        g_assert_cmpint(first, >, 0);
        for (int i = 0; i < 3; i++)
                g_assert_no_errno(stdio[i] = open("/dev/null", O_RDWR | O_CLOEXEC));
        request = kiln_isolate_server_request(server, bundle, NULL, 0, args, stdio, &error);
        g_assert_no_error(error);
        kiln_isolate_request_watch(request, g_main_context_default(), on_request_done, &status);
        while (kiln_isolate_request_get_pid(request) == 0)
                g_main_context_iteration(NULL, TRUE);
        g_assert_no_errno(kill(first, SIGKILL));
        while (status < 0)
                g_main_context_iteration(NULL, TRUE);
        g_assert_cmpint(status, ==, 3);

        /* Started again by the next run, which it serves. */
        {
                TestRun next = {.seccomp = TRUE};
                g_autofree char *next_id = NULL, *next_bundle = test_make_bundle(&next, &next_id);
                KilnRuntimeSpec spec = spec_for(next_bundle, next_id, &drive_served);
                g_autoptr(KilnContainer) c = kiln_container_new(&spec);

                g_assert_cmpint(drive(c, &error), ==, 0);
                g_assert_no_error(error);
        }
        g_assert_cmpint(kiln_isolate_server_get_pid(server), >, 0);
        g_assert_cmpint(kiln_isolate_server_get_pid(server), !=, first);
}

int main(int argc, char **argv)
{
        static const struct {
                const char *name;
                const Mode *data;
        } modes[] = {
                {"served", &drive_served}, {"isolate", &drive_as_isolate}, {"runc-verbs", &drive_as_runc}};
        g_auto(GStrv) globals = NULL;
        int r;

        test_env_init(&argc, &argv);
        /* As kilnd: the init re-parents to us when `run --detach` exits. */
        g_assert_no_errno(prctl(PR_SET_CHILD_SUBREAPER, 1));
        g_assert_no_errno(g_mkdir_with_parents(test_env.state_root, 0700));
        runtime_args[0] = "--cache-dir";
        runtime_args[1] = test_env.cache_dir;
        g_timeout_add_seconds(1, drive_on_tick, NULL);
        globals = kiln_runtime_global_argv(test_env.isolate, runtime_args, test_env.state_root);
        server = kiln_isolate_server_new((const char *const *)globals);
        g_test_add_func("/isolate-driver/served/server-death", test_server_death);
        g_test_add_func("/isolate-driver/served/wrapped", test_serves_wrapped);

        for (size_t i = 0; i < G_N_ELEMENTS(modes); i++) {
                static const struct {
                        const char *name;
                        GTestDataFunc func;
                } tests[] = {
                        {"exit-status", test_exit_status},
                        {"capture", test_capture},
                        {"kill", test_kill},
                        {"free-running", test_free_running},
                        {"not-found", test_not_found},
                        {"setup-failure", test_setup_failure},
                        {"terminal", test_terminal},
                        {"timing", test_timing},
                };
                for (size_t t = 0; t < G_N_ELEMENTS(tests); t++) {
                        g_autofree char *path =
                                g_strdup_printf("/isolate-driver/%s/%s", modes[i].name, tests[t].name);
                        g_test_add_data_func(path, modes[i].data, tests[t].func);
                }
        }
        r = g_test_run();
        kiln_isolate_server_free(server);
        test_env_cleanup();
        return r;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* The runtime driver against real runc: a busybox-static root file system and config.json files the
 * spec generator writes in a temp dir. Needs root, runc and a static /bin/busybox; exits 77 (skipped)
 * otherwise.
 *
 * After every test: no runtime state left under --root, no child process of ours left, and (checked over
 * many runs) no descriptor leaked. */
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>

#include <glib-unix.h>
#include <json-glib/json-glib.h>

#include "base/fs-util.h"
#include "base/kiln-common.h"
#include "base/reaper.h"
#include "runtime/runtime-private.h"
#include "busybox-rootfs.h"
#include "container-drive.h"
#include "runtime/runtime.h"
#include "runtime/stdio-relay.h"
#include "runtime/stdio-relay-testing.h"
#include "spec/spec.h"

#define RUN_TIMEOUT_SECONDS 300

static char *tmp_dir;
static char *rootfs_dir;
static char *state_dir;
static char *runc_path;
static unsigned int counter;

/* ---- fixtures ---- */

/* A bundle dir running @args, its config.json from the spec generator as a run's: root in the
 * busybox root file system, a tmpfs on /tmp. Returns its path; @id gets a fresh container id. */
static char *make_bundle(const char *const *args, gboolean terminal, char **id)
{
        static const char *const env[] = {"PATH=/bin", "TERM=xterm", NULL};
        static const char *const tmp_options[] = {"nosuid", "nodev", "mode=1777", NULL};
        const KilnMount tmp = {.type = KILN_MOUNT_TMPFS, .destination = "/tmp", .options = tmp_options};
        g_autofree char *bundle = g_strdup_printf("%s/bundle-%u", tmp_dir, ++counter);
        g_autofree char *config_path = g_build_filename(bundle, "config.json", NULL);
        g_autoptr(GError) error = NULL;
        g_autoptr(JsonNode) spec = NULL;
        g_autofree char *json = NULL;
        KilnSpecInput in = {.id = "kiln-test", .rootfs = rootfs_dir, .argv = args, .env = env};

        in.hostname = "kiln-test";
        in.terminal = terminal;
        in.no_new_privileges = TRUE;
        in.mounts = &tmp;
        in.n_mounts = 1;
        in.last_cap = -1; /* libcap's */
        g_assert_no_errno(mkdir(bundle, 0700));
        *id = g_strdup_printf("kiln-test-%d-%u", (int)getpid(), counter);
        spec = kiln_spec_generate(&in, &error);
        g_assert_no_error(error);
        json = kiln_spec_to_data(spec, FALSE, NULL);
        g_assert_true(g_file_set_contents(config_path, json, -1, NULL));
        return g_steal_pointer(&bundle);
}

static KilnRuntimeSpec spec_for(const char *bundle, const char *id)
{
        return (KilnRuntimeSpec){
                .runtime = runc_path,
                .state_root = state_dir,
                .bundle_dir = bundle,
                .container_id = id,
                .stdin_fd = -1,
                .stdout_fd = -1,
                .stderr_fd = -1,
        };
}

/* ---- driving the main loop ---- */

static gboolean on_expired(gpointer data)
{
        *(gboolean *)data = TRUE;
        return G_SOURCE_REMOVE;
}

static void iterate_for(guint ms)
{
        gboolean expired = FALSE;

        g_timeout_add(ms, on_expired, &expired);
        while (!expired)
                g_main_context_iteration(NULL, TRUE);
}

static gboolean start(KilnContainer *c, GCancellable *cancellable, GError **error)
{
        DriveResult r = {0};

        kiln_container_start_async(c, cancellable, drive_on_started, &r);
        drive_iterate_until(&r.done, RUN_TIMEOUT_SECONDS);
        if (r.error)
                g_propagate_error(error, r.error);
        return r.ok;
}

static int wait_for(KilnContainer *c, GCancellable *cancellable, GError **error)
{
        DriveResult r = {0};

        kiln_container_wait_async(c, cancellable, drive_on_waited, &r);
        drive_iterate_until(&r.done, RUN_TIMEOUT_SECONDS);
        if (r.error)
                g_propagate_error(error, r.error);
        return r.status;
}

/* Runs @args to the end with @spec's stdio; returns the exit status. */
static int run_with(const char *const *args, KilnRuntimeSpec *overrides)
{
        g_autofree char *id = NULL;
        g_autofree char *bundle = make_bundle(args, overrides ? overrides->terminal : FALSE, &id);
        KilnRuntimeSpec spec = overrides ? *overrides : spec_for(bundle, id);
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnContainer) c = NULL;
        int status;

        spec.runtime = runc_path;
        spec.state_root = state_dir;
        spec.bundle_dir = bundle;
        spec.container_id = id;
        c = kiln_container_new(&spec);
        (void)start(c, NULL, &error);
        g_assert_no_error(error);
        status = wait_for(c, NULL, &error);
        g_assert_no_error(error);
        return status;
}

static KilnRuntimeSpec stdio_spec(int in, int out, int err)
{
        KilnRuntimeSpec spec = {.stdin_fd = in, .stdout_fd = out, .stderr_fd = err};
        return spec;
}

/* ---- checks ---- */

static guint count_dir(const char *path)
{
        g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
        guint n = 0;

        while (dir && g_dir_read_name(dir))
                n++;
        return n;
}

static guint count_fds(void)
{
        return count_dir("/proc/self/fd") - 1; /* the GDir's own */
}

static guint count_children(void)
{
        g_autoptr(GDir) dir = g_dir_open("/proc", 0, NULL);
        const char *name;
        guint n = 0;

        while ((name = g_dir_read_name(dir))) {
                g_autofree char *path = NULL, *stat = NULL;
                const char *p;
                if (!g_ascii_isdigit(name[0]))
                        continue;
                path = g_strdup_printf("/proc/%s/stat", name);
                if (!g_file_get_contents(path, &stat, NULL, NULL) || !(p = strrchr(stat, ')')))
                        continue;
                /* ") S PPID ..." */
                if (atoi(p + 4) == (int)getpid())
                        n++;
        }
        return n;
}

/* Nothing of a finished container is left: no runc state, no process of ours. A helper the driver ran
 * last (runc kill, when a limit ended the run) may still be on its way out under load: it gets a few
 * seconds, with the main context running so that its child watch can reap it. */
static void assert_clean(void)
{
        gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;

        g_assert_cmpuint(count_dir(state_dir), ==, 0);
        while (count_children() > 0 && g_get_monotonic_time() < deadline) {
                g_main_context_iteration(NULL, FALSE);
                g_usleep(10 * 1000);
        }
        g_assert_cmpuint(count_children(), ==, 0);
}

static void make_pty(int *master, int *slave, gboolean raw)
{
        struct termios t;

        g_assert_no_errno(openpty(master, slave, NULL, NULL, NULL));
        g_assert_no_errno(fcntl(*master, F_SETFD, FD_CLOEXEC));
        g_assert_no_errno(fcntl(*slave, F_SETFD, FD_CLOEXEC));
        g_assert_true(g_unix_set_fd_nonblocking(*master, TRUE, NULL));
        g_assert_no_errno(tcgetattr(*slave, &t));
        if (raw)
                cfmakeraw(&t);
        else
                t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        g_assert_no_errno(tcsetattr(*slave, TCSANOW, &t));
}

static char *read_all(int fd)
{
        GString *s = g_string_new(NULL);
        char buf[4096];
        ssize_t n;

        while ((n = read(fd, buf, sizeof(buf))) > 0)
                g_string_append_len(s, buf, n);
        return g_string_free(s, FALSE);
}

/* Collects what arrives on a non-blocking descriptor (a pty master) from the main loop. */
typedef struct {
        int fd;
        GString *data;
        guint64 count;
        gboolean keep;
        guint source;
} Collector;

static void collector_drain(Collector *col)
{
        char buf[65536];
        ssize_t n;

        while ((n = read(col->fd, buf, sizeof(buf))) > 0) {
                col->count += (guint64)n;
                if (col->keep)
                        g_string_append_len(col->data, buf, n);
        }
}

static gboolean on_collect(G_GNUC_UNUSED int fd, G_GNUC_UNUSED GIOCondition condition, gpointer data)
{
        collector_drain(data);
        return G_SOURCE_CONTINUE;
}

static void collector_start(Collector *col, int fd, gboolean keep)
{
        col->fd = fd;
        col->keep = keep;
        col->data = g_string_new(NULL);
        col->source = g_unix_fd_add(fd, G_IO_IN, on_collect, col);
}

static char *collector_finish(Collector *col)
{
        collector_drain(col);
        g_source_remove(col->source);
        return g_string_free(col->data, FALSE);
}

static guint count_substrings(const char *s, const char *needle)
{
        guint n = 0;

        for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

static char *strip_cr(char *s)
{
        char *w = s;

        for (char *r = s; *r; r++)
                if (*r != '\r')
                        *w++ = *r;
        *w = '\0';
        return s;
}

/* ---- tests ---- */

static void test_exit_codes(void)
{
        const char *const t[] = {"/bin/true", NULL};
        const char *const e42[] = {"/bin/sh", "-c", "exit 42", NULL};

        g_assert_cmpint(run_with(t, NULL), ==, 0);
        g_assert_cmpint(run_with(e42, NULL), ==, 42);
        assert_clean();
}

static void test_kill(void)
{
        const char *const args[] = {"/bin/sleep", "100", NULL};
        g_autofree char *id = NULL, *bundle = make_bundle(args, FALSE, &id);
        KilnRuntimeSpec spec = spec_for(bundle, id);
        g_autoptr(KilnContainer) c = kiln_container_new(&spec);
        g_autoptr(GError) error = NULL;

        g_assert_true(start(c, NULL, &error));
        g_assert_cmpint(kiln_container_get_pid(c), >, 1);
        g_assert_true(kiln_container_kill(c, SIGKILL, &error));
        g_assert_cmpint(wait_for(c, NULL, &error), ==, 128 + SIGKILL);
        g_assert_no_error(error);
        g_assert_false(kiln_container_resize(c, 30, 100, &error)); /* no terminal */
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
        assert_clean();
}

/* A Kill while the container is being created is kept and sent once the process runs. */
static void test_kill_while_starting(void)
{
        const char *const args[] = {"/bin/sleep", "100", NULL};
        g_autofree char *id = NULL, *bundle = make_bundle(args, FALSE, &id);
        KilnRuntimeSpec spec = spec_for(bundle, id);
        g_autoptr(KilnContainer) c = kiln_container_new(&spec);
        g_autoptr(GError) error = NULL;
        DriveResult r = {0};

        kiln_container_start_async(c, NULL, drive_on_started, &r);
        g_assert_true(kiln_container_kill(c, SIGKILL, &error));
        drive_iterate_until(&r.done, RUN_TIMEOUT_SECONDS);
        g_assert_no_error(r.error);
        g_assert_true(r.ok);
        g_assert_cmpint(wait_for(c, NULL, &error), ==, 128 + SIGKILL);
        g_assert_no_error(error);
        assert_clean();
}

static void test_not_found(void)
{
        const char *const missing[] = {"/bin/no-such-command", NULL};
        const char *const not_exec[] = {"/etc/not-executable", NULL};
        const char *const *cases[] = {missing, not_exec};
        const int codes[] = {G_IO_ERROR_NOT_FOUND, G_IO_ERROR_PERMISSION_DENIED};

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree char *id = NULL, *bundle = make_bundle(cases[i], FALSE, &id);
                KilnRuntimeSpec spec = spec_for(bundle, id);
                g_autoptr(KilnContainer) c = kiln_container_new(&spec);
                g_autoptr(GError) error = NULL;

                /* runc checks the command before it starts it: run fails with runc's own words. */
                g_assert_false(start(c, NULL, &error));
                g_assert_error(error, G_IO_ERROR, codes[i]);
                g_assert_nonnull(strstr(error->message, cases[i][0]));
                g_assert_nonnull(strstr(error->message, "runc run"));
                g_test_message("%s", error->message);
        }
        assert_clean();
}

/* A file with the executable bit that the kernel cannot execute passes runc's checks; the exec fails in
 * the container after start and runc's init reports it on the container's stderr. */
static void test_exec_format_error(void)
{
        const char *const args[] = {"/etc/garbage", NULL};
        int err[2];
        g_autofree char *text = NULL;
        KilnRuntimeSpec spec;
        int status;

        g_assert_true(g_unix_open_pipe(err, FD_CLOEXEC, NULL));
        spec = stdio_spec(-1, -1, err[1]);
        status = run_with(args, &spec);
        close(err[1]);
        text = read_all(err[0]);
        close(err[0]);
        g_test_message("exit status %d, stderr: %s", status, text);
        g_assert_cmpint(status, !=, 0);
        g_assert_nonnull(strstr(text, "exec format error"));
        assert_clean();
}

static void test_refusal(void)
{
        const char *const args[] = {"/bin/true", NULL};
        g_autofree char *id = NULL, *bundle = make_bundle(args, FALSE, &id);
        g_autofree char *config = g_build_filename(bundle, "config.json", NULL);
        KilnRuntimeSpec spec = spec_for(bundle, id);
        g_autoptr(KilnContainer) c = kiln_container_new(&spec);
        g_autoptr(GError) error = NULL;

        g_assert_true(g_file_set_contents(config, "{\"ociVersion\": \"1.0.2\", \"process\": 3}", -1, NULL));
        g_assert_false(start(c, NULL, &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_FAILED);
        g_test_message("%s", error->message);
        g_assert_nonnull(strstr(error->message, "runc run of container"));
        g_assert_nonnull(strstr(error->message, "json")); /* runc's own words about the bad spec */
        g_assert_null(kiln_container_get_captured(c, 1)); /* not a capture */
        assert_clean();
}

static void test_passthrough_pipe(void)
{
        const char *const args[] = {"/bin/sh", "-c", "readlink /proc/self/fd/1; echo err >&2", NULL};
        int out[2], err[2];
        g_autofree char *o = NULL, *e = NULL;
        KilnRuntimeSpec spec;

        g_assert_true(g_unix_open_pipe(out, FD_CLOEXEC, NULL));
        g_assert_true(g_unix_open_pipe(err, FD_CLOEXEC, NULL));
        spec = stdio_spec(-1, out[1], err[1]);
        g_assert_cmpint(run_with(args, &spec), ==, 0);
        close(out[1]);
        close(err[1]);
        o = read_all(out[0]);
        e = read_all(err[0]);
        close(out[0]);
        close(err[0]);
        /* The container writes to the caller's pipe itself: no relay in between. */
        g_assert_true(g_str_has_prefix(o, "pipe:["));
        g_assert_cmpstr(e, ==, "err\n");
        assert_clean();
}

/* Nothing of ours but stdio reaches the container: every other descriptor is close-on-exec. */
static void test_no_fd_reaches_container(void)
{
        const char *const args[] = {"/bin/ls", "/proc/self/fd", NULL};
        int out[2], master, slave;
        g_autofree char *o = NULL;
        KilnRuntimeSpec spec;

        g_assert_true(g_unix_open_pipe(out, FD_CLOEXEC, NULL));
        make_pty(&master, &slave, TRUE);
        spec = stdio_spec(slave, out[1], slave); /* relays open too */
        g_assert_cmpint(run_with(args, &spec), ==, 0);
        close(out[1]);
        o = read_all(out[0]);
        close(out[0]);
        close(master);
        close(slave);
        g_assert_cmpstr(o, ==, "0\n1\n2\n3\n"); /* 3: ls reading the directory */
        assert_clean();
}

static void test_passthrough_file(void)
{
        const char *const args[] = {"/bin/sh", "-c", "echo to-file; echo more", NULL};
        g_autofree char *path = g_build_filename(tmp_dir, "output.txt", NULL);
        g_autofree char *contents = NULL;
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        KilnRuntimeSpec spec = stdio_spec(-1, fd, -1);

        g_assert_no_errno(fd);
        g_assert_cmpint(run_with(args, &spec), ==, 0);
        close(fd);
        g_assert_true(g_file_get_contents(path, &contents, NULL, NULL));
        g_assert_cmpstr(contents, ==, "to-file\nmore\n");
        unlink(path);
        assert_clean();
}

static void test_stdin_eof_pipe(void)
{
        const char *const args[] = {"/bin/cat", NULL};
        int in[2], out[2];
        g_autofree char *o = NULL;
        KilnRuntimeSpec spec;

        g_assert_true(g_unix_open_pipe(in, FD_CLOEXEC, NULL));
        g_assert_true(g_unix_open_pipe(out, FD_CLOEXEC, NULL));
        g_assert_cmpint(write(in[1], "hello\n", 6), ==, 6);
        close(in[1]);
        spec = stdio_spec(in[0], out[1], -1);
        g_assert_cmpint(run_with(args, &spec), ==, 0);
        close(in[0]);
        close(out[1]);
        o = read_all(out[0]);
        close(out[0]);
        g_assert_cmpstr(o, ==, "hello\n");
        assert_clean();
}

/* Feeds data into a non-blocking descriptor from the main loop, then an EOF character if asked. */
typedef struct {
        int fd;
        const char *data;
        gsize len, off;
        int eof_char;
        gboolean done;
} Feeder;

static gboolean on_feed(G_GNUC_UNUSED int fd, G_GNUC_UNUSED GIOCondition condition, gpointer data)
{
        Feeder *f = data;
        ssize_t n;

        while (f->off < f->len) {
                n = write(f->fd, f->data + f->off, MIN(f->len - f->off, 4096));
                if (n < 0 && errno == EAGAIN)
                        return G_SOURCE_CONTINUE;
                g_assert_cmpint(n, >, 0);
                f->off += (gsize)n;
        }
        if (f->eof_char >= 0) {
                char c = (char)f->eof_char;
                if (write(f->fd, &c, 1) < 0 && errno == EAGAIN)
                        return G_SOURCE_CONTINUE;
        }
        f->done = TRUE;
        return G_SOURCE_REMOVE;
}

/* A terminal as stdin and stdout: both relayed through pipes (never handed to the container), 100000
 * lines in and out complete, stdin's EOF (the terminal's VEOF) reaching `while read`. */
static void test_lines_through_relays(void)
{
        const char *const args[] = {"/bin/sh", "-c",
                                    "while read i; do echo \"$i\"; done; readlink /proc/self/fd/0", NULL};
        g_autoptr(GString) input = g_string_new(NULL);
        g_autofree char *output = NULL;
        int in_master, in_slave, out_master, out_slave;
        Collector col = {0};
        Feeder feed = {0};
        KilnRuntimeSpec spec;

        for (int i = 1; i <= 100000; i++)
                g_string_append_printf(input, "%d\n", i);
        make_pty(&in_master, &in_slave, FALSE);
        make_pty(&out_master, &out_slave, TRUE);
        feed = (Feeder){.fd = in_master, .data = input->str, .len = input->len, .eof_char = 4 /* ^D */};
        g_unix_fd_add(in_master, G_IO_OUT, on_feed, &feed);
        collector_start(&col, out_master, TRUE);

        spec = stdio_spec(in_slave, out_slave, -1);
        g_assert_cmpint(run_with(args, &spec), ==, 0);
        output = collector_finish(&col);
        g_assert_true(feed.done);
        g_assert_true(g_str_has_prefix(output, input->str));
        g_assert_true(g_str_has_prefix(output + input->len, "pipe:[")); /* not the terminal */
        close(in_master);
        close(in_slave);
        close(out_master);
        close(out_slave);
        assert_clean();
}

/* 200 MB (or KILN_TEST_OUTPUT_BYTES) through the relay from a pipe to a terminal: everything arrives, in
 * constant memory. */
static void test_large_output(void)
{
        const char *size =
                g_getenv("KILN_TEST_OUTPUT_BYTES") ? g_getenv("KILN_TEST_OUTPUT_BYTES") : "200000000";
        const char *const args[] = {"/bin/head", "-c", size, "/dev/zero", NULL};
        gint64 t0 = g_get_monotonic_time();
        int master, slave;
        Collector col = {0};
        gsize before, peak;
        KilnRuntimeSpec spec;

        make_pty(&master, &slave, TRUE);
        collector_start(&col, master, FALSE);
        kiln_relay_get_buffer_stats(&before, NULL);
        kiln_relay_reset_buffer_peak();
        spec = stdio_spec(-1, slave, -1);
        g_assert_cmpint(run_with(args, &spec), ==, 0);
        g_free(collector_finish(&col));
        kiln_relay_get_buffer_stats(NULL, &peak);
        g_assert_cmpuint(col.count, ==, g_ascii_strtoull(size, NULL, 10));
        g_test_message("%s bytes in %.2f s; relay buffers: %zu bytes at peak above %zu", size,
                       (double)(g_get_monotonic_time() - t0) / G_USEC_PER_SEC, peak - before, before);
        /* The stdout relay, and at most runc's messages of one command beside it. */
        g_assert_cmpuint(peak - before, <=, KILN_RELAY_CHUNK + KILN_RUNTIME_MESSAGE_LIMIT);
        close(master);
        close(slave);
        assert_clean();
}

/* The container exited but its output cannot reach a terminal stopped with ^S: SIGKILL drops it. */
static void test_kill_stalled_output(void)
{
        /* Less than a pipe holds, so the container can exit while the relay waits for the terminal. */
        const char *const args[] = {"/bin/head", "-c", "50000", "/dev/zero", NULL};
        g_autofree char *id = NULL, *bundle = make_bundle(args, FALSE, &id);
        KilnRuntimeSpec spec = spec_for(bundle, id);
        g_autoptr(KilnContainer) c = NULL;
        g_autoptr(GError) error = NULL;
        gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
        int master, slave;
        DriveResult r = {0};
        pid_t pid;

        make_pty(&master, &slave, TRUE);
        g_assert_no_errno(tcflow(slave, TCOOFF));
        spec.stdout_fd = slave;
        c = kiln_container_new(&spec);
        g_assert_true(start(c, NULL, &error));
        pid = kiln_container_get_pid(c);
        kiln_container_wait_async(c, NULL, drive_on_waited, &r);
        while (kill(pid, 0) == 0) { /* until it exited and was reaped */
                g_assert_cmpint(g_get_monotonic_time(), <, deadline);
                g_main_context_iteration(NULL, TRUE);
        }
        iterate_for(200);
        g_assert_false(r.done);
        g_assert_true(kiln_container_kill(c, SIGKILL, &error));
        g_assert_false(r.done); /* answered from the main loop, not inside kill */
        drive_iterate_until(&r.done, RUN_TIMEOUT_SECONDS);
        g_assert_no_error(r.error);
        g_assert_cmpint(r.status, ==, 0);
        g_assert_no_errno(tcflow(slave, TCOON));
        close(master);
        close(slave);
        assert_clean();
}

static void test_capture(void)
{
        const char *const args[] = {"/bin/sh", "-c", "echo out; echo err >&2; exit 3", NULL};
        g_autofree char *id = NULL, *bundle = make_bundle(args, FALSE, &id);
        KilnRuntimeSpec spec = spec_for(bundle, id);
        g_autoptr(KilnContainer) c = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GBytes) out = NULL, err = NULL;

        spec.capture_limit = 1000;
        c = kiln_container_new(&spec);
        g_assert_true(start(c, NULL, &error));
        g_assert_cmpint(wait_for(c, NULL, &error), ==, 3);
        out = kiln_container_get_captured(c, 1);
        err = kiln_container_get_captured(c, 2);
        g_assert_cmpmem(g_bytes_get_data(out, NULL), g_bytes_get_size(out), "out\n", 4);
        g_assert_cmpmem(g_bytes_get_data(err, NULL), g_bytes_get_size(err), "err\n", 4);
        assert_clean();
}

static void test_capture_overflow(void)
{
        const char *const args[] = {"/bin/yes", NULL};
        g_autofree char *id = NULL, *bundle = make_bundle(args, FALSE, &id);
        KilnRuntimeSpec spec = spec_for(bundle, id);
        g_autoptr(KilnContainer) c = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GBytes) out = NULL;
        pid_t pid;

        spec.capture_limit = 10000;
        c = kiln_container_new(&spec);
        g_assert_true(start(c, NULL, &error));
        pid = kiln_container_get_pid(c);
        g_assert_cmpint(wait_for(c, NULL, &error), ==, -1);
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
        g_test_message("%s", error->message);
        out = kiln_container_get_captured(c, 1);
        g_assert_cmpuint(g_bytes_get_size(out), ==, 10000);
        g_assert_true(kill(pid, 0) < 0 && errno == ESRCH); /* killed and reaped */
        assert_clean();
}

/* A terminal run with an openpty pair as the caller's descriptors, as the CLI passes its own. */
static void test_terminal(void)
{
        const char *const args[] = {"/bin/sh", "-c", "tty; stty size; read x; stty size", NULL};
        g_autofree char *id = NULL, *bundle = make_bundle(args, TRUE, &id);
        KilnRuntimeSpec spec = spec_for(bundle, id);
        g_autoptr(KilnContainer) c = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *output = NULL;
        Collector col = {0};
        int master, slave;
        gint64 deadline;

        make_pty(&master, &slave, TRUE);
        collector_start(&col, master, TRUE);
        spec.stdin_fd = spec.stdout_fd = spec.stderr_fd = slave;
        spec.terminal = TRUE;
        spec.rows = 24;
        spec.cols = 80;
        c = kiln_container_new(&spec);
        g_assert_true(start(c, NULL, &error));
        g_assert_no_error(error);

        deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
        while (!strstr(col.data->str, "24 80")) {
                g_assert_cmpint(g_get_monotonic_time(), <, deadline);
                g_main_context_iteration(NULL, TRUE);
        }
        g_assert_true(kiln_container_resize(c, 50, 132, &error));
        g_assert_cmpint(write(master, "\r", 1), ==, 1);
        g_assert_cmpint(wait_for(c, NULL, &error), ==, 0);
        g_assert_no_error(error);
        output = strip_cr(collector_finish(&col));
        g_test_message("%s", output);
        g_assert_true(g_str_has_prefix(output, "/dev/pts/0\n24 80\n"));
        g_assert_nonnull(strstr(output, "50 132\n"));
        g_assert_true(kiln_container_resize(c, 30, 100, &error)); /* exited: moot, not an error */
        close(master);
        close(slave);
        assert_clean();
}

/* With a terminal, the end of the caller's stdin becomes the terminal's EOF character. */
static void test_terminal_stdin_eof(void)
{
        const char *const args[] = {"/bin/cat", NULL};
        g_autofree char *id = NULL, *bundle = make_bundle(args, TRUE, &id);
        KilnRuntimeSpec spec = spec_for(bundle, id);
        g_autoptr(KilnContainer) c = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *output = NULL;
        Collector col = {0};
        int master, slave, in[2];

        make_pty(&master, &slave, TRUE);
        collector_start(&col, master, TRUE);
        g_assert_true(g_unix_open_pipe(in, FD_CLOEXEC, NULL));
        g_assert_cmpint(write(in[1], "hello\nworld", 11), ==, 11); /* a partial last line: VEOF twice */
        close(in[1]);
        spec.stdin_fd = in[0];
        spec.stdout_fd = slave;
        spec.terminal = TRUE;
        c = kiln_container_new(&spec);
        close(in[0]); /* the driver keeps its own */
        g_assert_true(start(c, NULL, &error));
        g_assert_cmpint(wait_for(c, NULL, &error), ==, 0);
        output = strip_cr(collector_finish(&col));
        g_test_message("%s", output);
        /* The terminal's echo of each line, and cat's copy: when they interleave depends on timing. */
        g_assert_cmpuint(count_substrings(output, "hello\n"), ==, 2);
        g_assert_cmpuint(count_substrings(output, "world"), ==, 2);
        close(master);
        close(slave);
        assert_clean();
}

static void test_cancel_wait(void)
{
        const char *const args[] = {"/bin/sleep", "100", NULL};
        g_autofree char *id = NULL, *bundle = make_bundle(args, FALSE, &id);
        KilnRuntimeSpec spec = spec_for(bundle, id);
        g_autoptr(KilnContainer) c = kiln_container_new(&spec);
        g_autoptr(GCancellable) cancellable = g_cancellable_new();
        g_autoptr(GError) error = NULL;
        DriveResult r = {0};

        g_assert_true(start(c, NULL, &error));
        kiln_container_wait_async(c, cancellable, drive_on_waited, &r);
        iterate_for(100);
        g_assert_false(r.done);
        g_cancellable_cancel(cancellable);
        drive_iterate_until(&r.done, RUN_TIMEOUT_SECONDS);
        g_assert_error(r.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
        drive_result_clear(&r);
        assert_clean();
}

static void test_cancel_start(void)
{
        const char *const args[] = {"/bin/sleep", "100", NULL};
        g_autofree char *id = NULL, *bundle = make_bundle(args, FALSE, &id);
        KilnRuntimeSpec spec = spec_for(bundle, id);
        g_autoptr(KilnContainer) c = kiln_container_new(&spec);
        g_autoptr(GCancellable) cancellable = g_cancellable_new();
        g_autoptr(GError) error = NULL;

        g_cancellable_cancel(cancellable);
        g_assert_false(start(c, cancellable, &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
        assert_clean();
}

static void test_free_while_running(void)
{
        const char *const args[] = {"/bin/sleep", "100", NULL};
        g_autofree char *id = NULL, *bundle = make_bundle(args, FALSE, &id);
        KilnRuntimeSpec spec = spec_for(bundle, id);
        KilnContainer *c = kiln_container_new(&spec);
        g_autoptr(GError) error = NULL;
        DriveResult r = {0};
        pid_t pid;

        g_assert_true(start(c, NULL, &error));
        pid = kiln_container_get_pid(c);
        kiln_container_wait_async(c, NULL, drive_on_waited, &r);
        kiln_container_free(c);
        g_assert_true(kill(pid, 0) < 0 && errno == ESRCH);
        iterate_for(100);
        g_assert_false(r.done); /* no callback after the free */
        assert_clean();
}

static void test_free_while_starting(void)
{
        const char *const args[] = {"/bin/sleep", "100", NULL};
        g_autofree char *id = NULL, *bundle = make_bundle(args, TRUE, &id);
        KilnRuntimeSpec spec = spec_for(bundle, id);
        KilnContainer *c;
        int master, slave;
        DriveResult r = {0};

        make_pty(&master, &slave, TRUE);
        spec.stdin_fd = spec.stdout_fd = slave;
        spec.terminal = TRUE;
        c = kiln_container_new(&spec);
        kiln_container_start_async(c, NULL, drive_on_started, &r);
        kiln_container_free(c); /* run --detach still running */
        iterate_for(200);
        g_assert_false(r.done);
        close(master);
        close(slave);
        assert_clean();
}

static void test_detect(void)
{
        char *both[] = {"no-such-runtime", "crun", "runc", NULL};
        char *crun_only[] = {"crun", NULL};
        g_autofree char *scratch = g_build_filename(tmp_dir, "scratch", NULL);
        g_autofree char *found = NULL, *crun = NULL;
        g_autoptr(GError) error = NULL;
        gboolean crun_works;

        g_assert_no_errno(mkdir(scratch, 0700));
        crun = kiln_runtime_detect(crun_only, state_dir, scratch, &error);
        crun_works = crun != NULL;
        if (!crun_works)
                g_test_message("crun: %s", error->message);
        g_clear_error(&error);

        found = kiln_runtime_detect(both, state_dir, scratch, &error);
        g_assert_no_error(error);
        g_test_message("detected %s", found);
        g_assert_true(g_str_has_suffix(found, crun_works ? "/crun" : "/runc"));
        g_assert_cmpuint(count_dir(scratch), ==, 0);
        g_assert_no_errno(rmdir(scratch));
        assert_clean();
}

static void test_messages(void)
{
        const char *runc =
                "{\"level\":\"warning\",\"msg\":\"ignored\"}\n"
                "{\"level\":\"error\",\"msg\":\"runc create failed: bad\\u001b\",\"time\":\"x\"}\n";
        const char *plain = "cgroups in hybrid mode not supported\n\n";
        g_autofree char *a = kiln_runtime_parse_messages(runc, strlen(runc));
        g_autofree char *b = kiln_runtime_parse_messages(plain, strlen(plain));
        g_autofree char *c = kiln_runtime_parse_messages("\n", 1);
        g_autofree char *long_line = g_strnfill(5000, 'x');
        g_autofree char *d = kiln_runtime_parse_messages(long_line, 5000);

        g_assert_cmpstr(a, ==, "runc create failed: bad\\x1b");
        g_assert_cmpstr(b, ==, "cgroups in hybrid mode not supported");
        g_assert_null(c);
        g_assert_cmpuint(g_utf8_strlen(d, -1), ==, 1025);
}

/* What a relay may use of the caller's descriptors, and that the caller's own flags stay untouched. */
static void test_endpoints(void)
{
        g_autoptr(GError) error = NULL;
        int p[2], master, slave, null, fd;

        g_assert_true(g_unix_open_pipe(p, FD_CLOEXEC, NULL));
        fd = kiln_relay_open_endpoint(p[0], TRUE, "stdin", &error);
        g_assert_no_error(error);
        g_assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
        g_assert_false(fcntl(p[0], F_GETFL) & O_NONBLOCK); /* a description of our own */
        g_assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        close(fd);
        g_assert_cmpint(kiln_relay_open_endpoint(p[0], FALSE, "stdout", &error), ==, -1);
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT); /* no upgrade to writing */
        g_clear_error(&error);

        make_pty(&master, &slave, TRUE);
        g_assert_cmpint(kiln_relay_open_endpoint(master, FALSE, "stdout", &error), ==, -1);
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
        g_clear_error(&error);
        fd = kiln_relay_open_endpoint(slave, FALSE, "stdout", &error);
        g_assert_no_error(error);
        g_assert_true(isatty(fd));
        close(fd);

        null = open("/dev/null", O_RDWR | O_CLOEXEC);
        fd = kiln_relay_open_endpoint(null, FALSE, "stdout", &error);
        g_assert_no_error(error);
        close(fd);
        close(null);
        null = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        g_assert_cmpint(kiln_relay_open_endpoint(null, TRUE, "stdin", &error), ==, -1);
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
        for (int i = 0; i < 2; i++)
                close(p[i]);
        close(master);
        close(slave);
        close(null);
}

/* Many runs of every kind leave the descriptor count where it was. */
static void test_no_fd_leak(void)
{
        const char *const t[] = {"/bin/true", NULL};
        const char *const missing[] = {"/bin/no-such-command", NULL};
        guint before;

        (void)run_with(t, NULL); /* GLib opens a few descriptors of its own once */
        before = count_fds();
        for (int i = 0; i < 10; i++) {
                int p[2], master, slave;
                KilnRuntimeSpec spec;
                g_autofree char *id = NULL, *bundle = NULL;
                g_autoptr(KilnContainer) c = NULL;
                g_autoptr(GError) error = NULL;

                g_assert_true(g_unix_open_pipe(p, FD_CLOEXEC, NULL));
                make_pty(&master, &slave, TRUE);
                spec = stdio_spec(p[0], p[1], slave);
                g_assert_cmpint(run_with(t, &spec), ==, 0);
                spec = stdio_spec(slave, slave, slave);
                g_assert_cmpint(run_with(t, &spec), ==, 0);
                spec = stdio_spec(slave, slave, -1);
                spec.terminal = TRUE;
                g_assert_cmpint(run_with(t, &spec), ==, 0);
                spec = stdio_spec(-1, -1, -1);
                spec.capture_limit = 100;
                g_assert_cmpint(run_with(t, &spec), ==, 0);

                bundle = make_bundle(missing, FALSE, &id);
                spec = spec_for(bundle, id);
                spec.stdin_fd = slave;
                c = kiln_container_new(&spec);
                g_assert_false(start(c, NULL, &error));
                close(p[0]);
                close(p[1]);
                close(master);
                close(slave);
        }
        g_assert_cmpuint(count_fds(), ==, before);
        assert_clean();
}

static int skip(const char *why)
{
        g_printerr("SKIP: %s\n", why);
        return 77;
}

int main(int argc, char **argv)
{
        int r, dirfd;

        g_test_init(&argc, &argv, NULL);
        if (geteuid() != 0)
                return skip("needs root");
        runc_path = g_find_program_in_path("runc");
        if (!runc_path && g_file_test("/usr/sbin/runc", G_FILE_TEST_IS_EXECUTABLE))
                runc_path = g_strdup("/usr/sbin/runc");
        if (!runc_path)
                return skip("needs runc");
        if (!test_is_static_elf("/bin/busybox"))
                return skip("needs a static /bin/busybox (busybox-static)");

        /* As kilnd: container processes re-parent to us once runc run --detach exits. */
        g_assert_no_errno(prctl(PR_SET_CHILD_SUBREAPER, 1));
        /* And as kilnd, orphans that are nobody's are reaped: crun's run --detach leaves its own
         * forked helper to us when it fails (on a host it refuses). */
        kiln_reaper_start();
        tmp_dir = g_dir_make_tmp("kiln-runtime-XXXXXX", NULL);
        g_assert_nonnull(tmp_dir);
        rootfs_dir = g_build_filename(tmp_dir, "rootfs", NULL);
        state_dir = g_build_filename(tmp_dir, "state", NULL);
        g_assert_no_errno(mkdir(state_dir, 0700));
        test_make_busybox_rootfs(rootfs_dir);
        g_timeout_add_seconds(1, drive_on_tick, NULL);

        g_test_add_func("/runtime/messages", test_messages);
        g_test_add_func("/runtime/endpoints", test_endpoints);
        g_test_add_func("/runtime/exit-codes", test_exit_codes);
        g_test_add_func("/runtime/kill", test_kill);
        g_test_add_func("/runtime/kill-while-starting", test_kill_while_starting);
        g_test_add_func("/runtime/not-found", test_not_found);
        g_test_add_func("/runtime/exec-format-error", test_exec_format_error);
        g_test_add_func("/runtime/refusal", test_refusal);
        g_test_add_func("/runtime/passthrough-pipe", test_passthrough_pipe);
        g_test_add_func("/runtime/passthrough-file", test_passthrough_file);
        g_test_add_func("/runtime/no-fd-reaches-container", test_no_fd_reaches_container);
        g_test_add_func("/runtime/stdin-eof-pipe", test_stdin_eof_pipe);
        g_test_add_func("/runtime/lines-through-relays", test_lines_through_relays);
        g_test_add_func("/runtime/large-output", test_large_output);
        g_test_add_func("/runtime/kill-stalled-output", test_kill_stalled_output);
        g_test_add_func("/runtime/capture", test_capture);
        g_test_add_func("/runtime/capture-overflow", test_capture_overflow);
        g_test_add_func("/runtime/terminal", test_terminal);
        g_test_add_func("/runtime/terminal-stdin-eof", test_terminal_stdin_eof);
        g_test_add_func("/runtime/cancel-wait", test_cancel_wait);
        g_test_add_func("/runtime/cancel-start", test_cancel_start);
        g_test_add_func("/runtime/free-while-running", test_free_while_running);
        g_test_add_func("/runtime/free-while-starting", test_free_while_starting);
        g_test_add_func("/runtime/detect", test_detect);
        g_test_add_func("/runtime/no-fd-leak", test_no_fd_leak);
        r = g_test_run();

        dirfd = open(g_get_tmp_dir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd >= 0) {
                g_autofree char *name = g_path_get_basename(tmp_dir);
                (void)kiln_rm_rf_at(dirfd, name, NULL);
                close(dirfd);
        }
        g_free(tmp_dir);
        g_free(rootfs_dir);
        g_free(state_dir);
        g_free(runc_path);
        return r;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-isolate against real bundles: a busybox-static root file system and config.json files from the
 * project's spec generator. Compares with runc on the same config.json where runc is installed.
 * Needs root and a static /bin/busybox; exits 77 (skipped) otherwise. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gio/gio.h>

#include "isolate-testlib.h"

#define TIMING_RUNS 20

static const char *const probe_argv[] = {"/bin/probe", NULL};

static guint64 status_mask(const char *status, const char *key)
{
        g_autofree char *v = test_status_field(status, key);
        guint64 mask = 0;

        g_assert_nonnull(v);
        g_assert_true(g_ascii_string_to_unsigned(v, 16, 0, G_MAXUINT64, &mask, NULL));
        return mask;
}

static char *run_ok(const TestRun *run)
{
        g_autofree char *err = NULL;
        char *out = NULL;
        int status = test_run_isolate(run, -1, &out, &err);

        if (status != 0)
                g_test_message("status %d, stderr: %s", status, err);
        g_assert_cmpint(status, ==, 0);
        return out;
}

static void test_exit_codes(void)
{
        static const struct {
                const char *const argv[4];
                int status;
        } cases[] = {
                {{"/bin/true"}, 0},
                {{"/bin/sh", "-c", "exit 42"}, 42},
                {{"/bin/no-such-command"}, 127},
                {{"no-such-command"}, 127},
                {{"/etc/not-executable"}, 126},
                /* The command is PID 1 of its namespace, which no signal from inside kills: a child. */
                {{"/bin/sh", "-c", "sh -c 'kill -9 $$'; exit $?"}, 137},
        };

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                TestRun run = {.argv = cases[i].argv, .seccomp = TRUE};
                g_autofree char *out = NULL, *err = NULL;
                int status = test_run_isolate(&run, -1, &out, &err);

                g_test_message("%s: status %d, stderr: %s", cases[i].argv[0], status, err);
                g_assert_cmpint(status, ==, cases[i].status);
                if (status == 127 || status == 126)
                        g_assert_nonnull(strstr(err, cases[i].argv[0]));
        }
}

static void test_exec_format_error(void)
{
        static const char *const argv[] = {"/etc/garbage", NULL};
        TestRun run = {.argv = argv};
        g_autofree char *out = NULL, *err = NULL;

        /* Found and executable, but not a program: the exec itself fails, as a shell's would. */
        g_assert_cmpint(test_run_isolate(&run, -1, &out, &err), ==, 126);
        g_assert_nonnull(strstr(err, "exec '/etc/garbage': Exec format error"));
}

static void test_identity_root(void)
{
        static const char *const argv[] = {"/bin/sh", "-c", "id; pwd; hostname", NULL};
        TestRun run = {.argv = argv, .cwd = "/tmp/work", .hostname = "isolated"};
        g_autofree char *out = run_ok(&run);

        g_assert_cmpstr(out, ==, "uid=0(root) gid=0(root) groups=0(root)\n/tmp/work\nisolated\n");
}

static void test_identity_nonroot(void)
{
        static const char *const argv[] = {"/bin/sh", "-c", "id; pwd; cat /proc/self/status", NULL};
        static const guint32 gids[] = {1000, 10, 100};
        TestRun run = {
                .argv = argv, .uid = 1000, .gid = 1000, .gids = gids, .n_gids = 3, .cwd = "/home/builder"};
        g_autofree char *out = run_ok(&run);

        g_assert_true(g_str_has_prefix(out,
                                       "uid=1000(builder) gid=1000(builder) groups=10(wheel),100(users),"
                                       "1000(builder)\n/home/builder\n"));
        /* A non-root user keeps no capability across exec; the bounding set is the default one. */
        g_assert_cmphex(status_mask(out, "CapEff:"), ==, 0);
        g_assert_cmphex(status_mask(out, "CapPrm:"), ==, 0);
        g_assert_cmphex(status_mask(out, "CapInh:"), ==, 0);
        g_assert_cmphex(status_mask(out, "CapAmb:"), ==, 0);
        g_assert_cmphex(status_mask(out, "CapBnd:"), ==, test_cap_mask(kiln_default_capabilities));
}

static void test_caps_root(void)
{
        static const char *const argv[] = {"/bin/cat", "/proc/self/status", NULL};
        static const char *const add[] = {"NET_RAW", NULL};
        static const char *const drop[] = {"CHOWN", NULL};
        TestRun run = {.argv = argv};
        g_autofree char *out = run_ok(&run), *out2 = NULL;
        guint64 def = test_cap_mask(kiln_default_capabilities), changed;

        g_assert_cmphex(status_mask(out, "CapEff:"), ==, def);
        g_assert_cmphex(status_mask(out, "CapPrm:"), ==, def);
        g_assert_cmphex(status_mask(out, "CapBnd:"), ==, def);
        g_assert_cmphex(status_mask(out, "CapInh:"), ==, 0);
        g_assert_cmphex(status_mask(out, "CapAmb:"), ==, 0);

        run.cap_add = add;
        run.cap_drop = drop;
        out2 = run_ok(&run);
        changed = (def | test_cap_mask((const char *const[]){"CAP_NET_RAW", NULL})) &
                  ~test_cap_mask((const char *const[]){"CAP_CHOWN", NULL});
        g_assert_cmphex(status_mask(out2, "CapEff:"), ==, changed);
        g_assert_cmphex(status_mask(out2, "CapBnd:"), ==, changed);
        g_assert_cmphex(status_mask(out2, "CapInh:"), ==, 0);
}

static gboolean skip_under_wrapper(void)
{
        if (test_env.wrapper)
                g_test_skip("not under a wrapper: it drops seccomp and rlimits from the bundles");
        return test_env.wrapper != NULL;
}

static void test_seccomp_and_nnp(void)
{
        static const char *const argv[] = {"/bin/cat", "/proc/self/status", NULL};
        TestRun run = {.argv = argv, .seccomp = TRUE, .no_new_privileges = TRUE};
        g_autofree char *out = NULL, *out2 = NULL, *out3 = NULL;
        g_autofree char *mode = NULL, *nnp = NULL;
        g_autofree char *mode2 = NULL, *nnp2 = NULL, *mode3 = NULL;

        if (skip_under_wrapper())
                return;
        out = run_ok(&run);
        mode = test_status_field(out, "Seccomp:");
        nnp = test_status_field(out, "NoNewPrivs:");
        g_assert_cmpstr(mode, ==, "2");
        g_assert_cmpstr(nnp, ==, "1");
        /* Without no_new_privs the filter is loaded while still privileged, and the flag stays off. */
        run.no_new_privileges = FALSE;
        out2 = run_ok(&run);
        mode2 = test_status_field(out2, "Seccomp:");
        nnp2 = test_status_field(out2, "NoNewPrivs:");
        g_assert_cmpstr(mode2, ==, "2");
        g_assert_cmpstr(nnp2, ==, "0");
        /* No profile, no filter. */
        run.seccomp = FALSE;
        out3 = run_ok(&run);
        mode3 = test_status_field(out3, "Seccomp:");
        g_assert_cmpstr(mode3, ==, "0");
}

static void compare_probe(TestRun *run, const char *what)
{
        g_autofree char *out = run_ok(run), *rout = NULL, *rerr = NULL;

        g_test_message("%s, kiln-isolate:\n%s", what, out);
        g_assert_nonnull(strstr(out, "mount "));
        if (!test_env.runc) {
                g_test_message("runc is not installed: no comparison");
                return;
        }
        g_assert_cmpint(test_run_runc(run, &rout, &rerr), ==, 0);
        g_test_message("%s, runc:\n%s", what, rout);
        g_assert_cmpstr(out, ==, rout);
}

static void test_syscall_probe(void)
{
        TestRun run = {.argv = probe_argv, .seccomp = TRUE};
        static const guint32 gids[] = {1000};
        static const char *const sys_admin[] = {"SYS_ADMIN", NULL};

        if (skip_under_wrapper())
                return;

        /* Without a filter the answers are the kernel's, from capabilities and namespaces alone. */
        run.seccomp = FALSE;
        compare_probe(&run, "root, unconfined");
        /* The profile opens calls to holders of a capability (includes.caps). */
        run.seccomp = TRUE;
        run.cap_add = sys_admin;
        compare_probe(&run, "root with CAP_SYS_ADMIN, default profile");
        run.cap_add = NULL;

        compare_probe(&run, "root, default profile");
        run.no_new_privileges = TRUE;
        compare_probe(&run, "root, default profile, no_new_privs");
        run.userns = TRUE;
        compare_probe(&run, "root in a user namespace, default profile");
        run.userns = FALSE;
        run.uid = run.gid = 1000;
        run.gids = gids;
        run.n_gids = 1;
        compare_probe(&run, "uid 1000, default profile");
}

static void test_masked_paths(void)
{
        static const char *const files[] = {"/proc/kcore", "/proc/keys", "/proc/timer_list",
                                            "/proc/interrupts"};
        static const char *const argv[] = {
                "/bin/sh", "-c",
                "for f in /proc/kcore /proc/keys /proc/timer_list /proc/interrupts; do "
                "[ -e $f ] && echo \"$f $(wc -c < $f)\"; done; echo \"acpi $(ls -A /proc/acpi | wc -l)\"",
                NULL};
        TestRun run = {.argv = argv};
        g_autofree char *out = run_ok(&run);
        g_autoptr(GString) expected = g_string_new(NULL);

        /* Those the host has read as empty: /dev/null is bound over each, a tmpfs over /proc/acpi. */
        for (size_t i = 0; i < G_N_ELEMENTS(files); i++)
                if (g_file_test(files[i], G_FILE_TEST_EXISTS))
                        g_string_append_printf(expected, "%s 0\n", files[i]);
        g_string_append(expected, "acpi 0\n");
        g_assert_cmpstr(out, ==, expected->str);
}

/* No /dev of kiln-isolate's making: the image's own /dev stays, with nothing populated in it. */
static void keep_image_dev(JsonObject *spec)
{
        JsonArray *mounts = json_object_get_array_member(spec, "mounts");
        JsonObject *lx = json_object_get_object_member(spec, "linux");

        for (guint i = json_array_get_length(mounts); i-- > 0;) {
                const char *dst = json_object_get_string_member(json_array_get_object_element(mounts, i),
                                                                "destination");
                if (g_str_equal(dst, "/dev") || g_str_has_prefix(dst, "/dev/"))
                        json_array_remove_element(mounts, i);
        }
        if (json_object_has_member(lx, "devices"))
                json_object_remove_member(lx, "devices");
}

/* Masking binds kiln-isolate's own null device, never what the container calls /dev/null: here a
 * symlink to a file of the image, which would otherwise be bound (writable) over every masked file. */
static void test_masked_paths_own_null(void)
{
        static const char *const argv[] = {
                "/bin/sh", "-c",
                "for f in /proc/keys /proc/timer_list /proc/interrupts; do "
                "[ -e $f ] && echo \"$f $(stat -c '%F %t:%T' $f) $(wc -c < $f)\"; done; "
                "echo changed > /proc/keys; cat /etc/mask-secret",
                NULL};
        TestRun run = {.argv = argv, .edit = keep_image_dev};
        g_autofree char *dev = g_build_filename(test_env.rootfs, "dev", NULL);
        g_autofree char *null = g_build_filename(dev, "null", NULL);
        g_autofree char *saved = g_build_filename(dev, "null.saved", NULL);
        g_autofree char *secret = g_build_filename(test_env.rootfs, "etc", "mask-secret", NULL);
        g_autoptr(GString) expected = g_string_new(NULL);
        g_autofree char *out = NULL;
        gboolean had_null;

        g_assert_no_errno(g_mkdir_with_parents(dev, 0755));
        had_null = rename(null, saved) == 0;
        g_assert_no_errno(symlink("/etc/mask-secret", null));
        g_assert_true(g_file_set_contents(secret, "secret\n", -1, NULL));
        out = run_ok(&run);
        g_assert_no_errno(unlink(null));
        if (had_null)
                g_assert_no_errno(rename(saved, null));
        g_assert_no_errno(unlink(secret));

        for (const char *const *f =
                     (const char *const[]){"/proc/keys", "/proc/timer_list", "/proc/interrupts", NULL};
             *f; f++)
                if (g_file_test(*f, G_FILE_TEST_EXISTS))
                        g_string_append_printf(expected, "%s character special file 1:3 0\n", *f);
        g_string_append(expected, "secret\n");
        g_assert_cmpstr(out, ==, expected->str);
}

static void set_root_readonly(JsonObject *spec)
{
        json_object_set_boolean_member(json_object_get_object_member(spec, "root"), "readonly", TRUE);
}

static void test_readonly_paths(void)
{
        static const char *const argv[] = {
                "/bin/sh", "-c",
                "exec 2>&1; echo x > /proc/sys/kernel/hostname; [ -e /proc/sysrq-trigger ] || echo "
                "no-sysrq; "
                "echo x > /proc/sysrq-trigger; touch /x; touch /data/ro/x; touch /data/rw/x && echo rw-ok",
                NULL};
        g_autofree char *ro = g_build_filename(test_env.tmp_dir, "vol-ro", NULL);
        g_autofree char *rw = g_build_filename(test_env.tmp_dir, "vol-rw", NULL);
        g_autofree char *written = g_build_filename(rw, "x", NULL);
        const char *const ro_opts[] = {"ro", NULL}, *const rw_opts[] = {"rw", NULL};
        const KilnMount mounts[] = {
                {.type = KILN_MOUNT_BIND, .source = ro, .destination = "/data/ro", .options = ro_opts},
                {.type = KILN_MOUNT_BIND, .source = rw, .destination = "/data/rw", .options = rw_opts},
        };
        TestRun run = {.argv = argv, .mounts = mounts, .n_mounts = 2, .edit = set_root_readonly};
        g_autofree char *out = NULL;

        g_assert_no_errno(g_mkdir_with_parents(ro, 0755));
        g_assert_no_errno(g_mkdir_with_parents(rw, 0755));
        out = run_ok(&run);
        g_test_message("%s", out);
        g_assert_nonnull(strstr(out, "/proc/sys/kernel/hostname: Read-only file system"));
        g_assert_true(strstr(out, "no-sysrq") || strstr(out, "/proc/sysrq-trigger: Read-only file system"));
        g_assert_nonnull(strstr(out, "touch: /x: Read-only file system"));
        g_assert_nonnull(strstr(out, "touch: /data/ro/x: Read-only file system"));
        g_assert_nonnull(strstr(out, "rw-ok"));
        g_assert_true(g_file_test(written, G_FILE_TEST_EXISTS));
}

static void test_mounts(void)
{
        static const char *const argv[] = {"/bin/cat", "/proc/self/mountinfo", NULL};
        static const char *const expected[] = {
                " / rw,",
                " /proc rw,nosuid,nodev,noexec",
                " /dev rw,nosuid - tmpfs",
                " /dev/pts ",
                " /dev/shm rw,nosuid,nodev,noexec",
                " /dev/mqueue ",
                " /sys ro,",
                " /etc/hosts rw,nosuid,nodev,noexec",
                " /etc/resolv.conf ",
                " /etc/hostname ",
                " /run/.containerenv ",
                " /dev/null ",
                " /proc/keys ",
                " /proc/sys ro,",
                " /tmp/scratch rw,nosuid,nodev,noexec",
                " /data/vol ",
        };
        g_autofree char *vol = g_build_filename(test_env.tmp_dir, "vol-mounts", NULL);
        const char *const tmpfs_opts[] = {"size=1m", NULL}, *const bind_opts[] = {"ro", "rprivate", NULL};
        const KilnMount mounts[] = {
                {.type = KILN_MOUNT_TMPFS, .destination = "/tmp/scratch", .options = tmpfs_opts},
                {.type = KILN_MOUNT_BIND, .source = vol, .destination = "/data/vol", .options = bind_opts},
        };
        TestRun run = {.argv = argv, .mounts = mounts, .n_mounts = 2};
        g_autofree char *out = NULL;
        g_auto(GStrv) lines = NULL;

        g_assert_no_errno(g_mkdir_with_parents(vol, 0755));
        out = run_ok(&run);
        g_test_message("%s", out);
        for (size_t i = 0; i < G_N_ELEMENTS(expected); i++)
                if (!strstr(out, expected[i]))
                        g_error("no mount matching '%s' in the container's mountinfo", expected[i]);
        /* Nothing of the host's tree besides what the spec binds: every mount point is the spec's. */
        lines = g_strsplit(out, "\n", -1);
        for (char **l = lines; *l && **l; l++) {
                g_auto(GStrv) f = g_strsplit(*l, " ", 6);
                const char *point = f[4];
                g_assert_true(g_str_equal(point, "/") || g_str_has_prefix(point, "/proc") ||
                              g_str_has_prefix(point, "/dev") || g_str_has_prefix(point, "/sys") ||
                              g_str_has_prefix(point, "/etc/") || g_str_equal(point, "/run/.containerenv") ||
                              g_str_equal(point, "/tmp/scratch") || g_str_equal(point, "/data/vol"));
        }
}

static void test_ulimits(void)
{
        static const char *const argv[] = {"/bin/sh", "-c", "ulimit -Sn; ulimit -Hn; ulimit -Hu", NULL};
        static const char *const ulimits[] = {"nofile=512:4096", "nproc=200:300", NULL};
        TestRun run = {.argv = argv, .ulimits = ulimits};
        g_autofree char *out = NULL;

        if (skip_under_wrapper())
                return;
        out = run_ok(&run);
        g_assert_cmpstr(out, ==, "512\n4096\n300\n");
        /* Above the parent's own hard limit: only the parent, outside any user namespace, may set it. */
        run.userns = TRUE;
        {
                g_autofree char *out2 = run_ok(&run);
                g_assert_cmpstr(out2, ==, "512\n4096\n300\n");
        }
}

static void test_descriptors(void)
{
        static const char *const argv[] = {"/bin/ls", "/proc/self/fd", NULL};
        TestRun run = {.argv = argv, .seccomp = TRUE};
        g_autofree char *out = NULL, *err = NULL;
        int fd = open("/etc/hostname", O_RDONLY | O_CLOEXEC);

        /* Descriptor 7 is open in kiln-isolate; only stdio and ls's own directory reach the container. */
        g_assert_no_errno(fd);
        g_assert_cmpint(test_run_isolate(&run, fd, &out, &err), ==, 0);
        close(fd);
        g_assert_cmpstr(out, ==, "0\n1\n2\n3\n");
}

static void test_environment(void)
{
        static const char *const argv[] = {"/bin/env", NULL};
        static const char *const env[] = {"FOO=bar", "LANG=C.UTF-8", NULL};
        TestRun run = {.argv = argv, .env = env};
        g_autofree char *out = run_ok(&run);

        /* Exactly the spec's environment: nothing of kiln-isolate's (KILN_TEST_SECRET) leaks. */
        g_assert_null(strstr(out, "KILN_TEST_SECRET"));
        g_assert_cmpstr(
                out, ==,
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nFOO=bar\nLANG=C.UTF-8\n"
                "HOSTNAME=0123456789ab\nHOME=/root\n");
}

static void test_userns(void)
{
        static const char *const argv[] = {
                "/bin/sh", "-c",
                "id; cat /proc/self/uid_map /proc/self/gid_map; touch /data/vol/f; "
                "ls -ld /dev/mqueue /dev/shm",
                NULL};
        g_autofree char *vol = g_build_filename(test_env.tmp_dir, "vol-userns", NULL);
        g_autofree char *f = g_build_filename(vol, "f", NULL);
        const char *const opts[] = {"rw", NULL};
        const KilnMount mounts[] = {
                {.type = KILN_MOUNT_BIND, .source = vol, .destination = "/data/vol", .options = opts}};
        TestRun run = {.argv = argv, .userns = TRUE, .mounts = mounts, .n_mounts = 1};
        g_autofree char *out = NULL;
        struct stat st;

        g_assert_no_errno(g_mkdir_with_parents(vol, 0777));
        g_assert_no_errno(chmod(vol, 0777));
        out = run_ok(&run);
        g_test_message("%s", out);
        g_assert_true(g_str_has_prefix(out, "uid=0(root) gid=0(root) groups=0(root)\n"));
        g_assert_nonnull(
                strstr(out, "         0     100000      65536\n         0     100000      65536\n"));
        g_assert_no_errno(stat(f, &st));
        g_assert_cmpuint(st.st_uid, ==, 100000);
        g_assert_cmpuint(st.st_gid, ==, 100000);
        /* What the namespaces created belongs to the container's root, not to an unmapped id. */
        g_assert_null(strstr(out, "nobody"));
}

static void break_mount(JsonObject *spec)
{
        JsonArray *mounts = json_object_get_array_member(spec, "mounts");
        JsonObject *m = json_object_new();
        JsonArray *opts = json_array_new();

        json_array_add_string_element(opts, "lowerdir=/nonexistent/lower");
        json_object_set_string_member(m, "destination", "/broken");
        json_object_set_string_member(m, "type", "overlay");
        json_object_set_string_member(m, "source", "overlay");
        json_object_set_array_member(m, "options", opts);
        json_array_add_object_element(mounts, m);
}

static void missing_root(JsonObject *spec)
{
        json_object_set_string_member(json_object_get_object_member(spec, "root"), "path",
                                      "/nonexistent/rootfs");
}

static void bad_capability(JsonObject *spec)
{
        JsonObject *caps = json_object_get_object_member(json_object_get_object_member(spec, "process"),
                                                         "capabilities");
        json_array_add_string_element(json_object_get_array_member(caps, "bounding"), "CAP_NO_SUCH");
}

static void test_setup_errors(void)
{
        static const struct {
                void (*edit)(JsonObject *spec);
                const char *message;
        } cases[] = {
                {break_mount, "mount overlay at '"},
                {missing_root, "bind root '/nonexistent/rootfs' on itself: No such file or directory"},
                {bad_capability, "process.capabilities.bounding: unknown capability 'CAP_NO_SUCH'"},
        };

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                TestRun run = {.edit = cases[i].edit};
                g_autofree char *out = NULL, *err = NULL;

                g_assert_cmpint(test_run_isolate(&run, -1, &out, &err), ==, 125);
                g_test_message("%s", err);
                g_assert_true(g_str_has_prefix(err, "kiln-isolate: "));
                g_assert_nonnull(strstr(err, cases[i].message));
        }
        {
                const char *const args[] = {"run", "--bundle", "/nonexistent/bundle", "--", "x", NULL};
                g_autofree char *err = NULL;
                g_assert_cmpint(test_isolate_cmd(args, NULL, &err), ==, 125);
                g_assert_nonnull(strstr(err, "/nonexistent/bundle/config.json"));
        }
}

/* A capability the run asks for that kiln-isolate's own bounding set lacks (kilnd under a unit with
 * CapabilityBoundingSet=, or a host without it): capset refuses, and the error must be reported, not
 * crash kiln-isolate while it describes the refused set. The bounding set is narrowed in a child of
 * the test, which runs kiln-isolate from there. */
static void test_cap_outside_bounding(void)
{
        if (g_test_subprocess()) {
                static const char *const add[] = {"SYS_RESOURCE", NULL};
                TestRun run = {.cap_add = add};
                g_autofree char *out = NULL, *err = NULL;
                int status;

                g_assert_cmpint(prctl(PR_CAPBSET_DROP, CAP_SYS_RESOURCE, 0, 0, 0), ==, 0);
                status = test_run_isolate(&run, -1, &out, &err);
                g_printerr("%s", err);
                g_assert_cmpint(status, ==, 125);
                g_assert_true(g_str_has_prefix(err, "kiln-isolate: "));
                g_assert_nonnull(strstr(err, "capset"));
                return;
        }
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
        g_test_trap_assert_passed();
        g_test_trap_assert_stderr("*capset*Operation not permitted*");
}

static char *read_available(int fd)
{
        char buf[4096];
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (poll(&p, 1, 5000) <= 0)
                return g_strdup("");
        n = read(fd, buf, sizeof(buf) - 1);
        g_assert_cmpint(n, >=, 0);
        buf[n] = '\0';
        return g_strdup(buf);
}

/* create / start / state / kill / delete, as kilnd's driver uses them; the test is the subreaper the
 * init re-parents to, as kilnd is. */
static void test_create_start(void)
{
        static const char *const argv[] = {"/bin/sh", "-c", "echo started; exec sleep 30", NULL};
        TestRun run = {.argv = argv, .seccomp = TRUE, .no_new_privileges = TRUE};
        g_autofree char *id = NULL, *bundle = test_make_bundle(&run, &id);
        g_autofree char *pid_file = g_build_filename(bundle, "pid", NULL);
        g_autofree char *state_dir = g_build_filename(test_env.state_root, id, NULL);
        g_autofree char *pid_text = NULL, *out = NULL, *early = NULL, *started = NULL;
        const char *const create[] = {"create", "--bundle", bundle, "--pid-file", pid_file, "--", id, NULL};
        const char *const start[] = {"start", "--", id, NULL};
        const char *const state[] = {"state", "--", id, NULL};
        const char *const kill_args[] = {"kill", "--", id, "KILL", NULL};
        const char *const delete[] = {"delete", "--", id, NULL};
        int pipe_fds[2], status;
        struct pollfd p;
        pid_t pid;

        g_assert_no_errno(pipe2(pipe_fds, O_CLOEXEC));
        g_assert_cmpint(test_isolate_cmd_fds(create, pipe_fds[1], pipe_fds[1]), ==, 0);
        close(pipe_fds[1]);
        g_assert_true(g_file_get_contents(pid_file, &pid_text, NULL, NULL));
        pid = atoi(pid_text);
        g_assert_cmpint(pid, >, 1);
        g_assert_cmpint(test_isolate_cmd(state, &out, NULL), ==, 0);
        g_assert_nonnull(strstr(out, "\"created\""));
        g_clear_pointer(&out, g_free);
        /* Created, not started: the command has not run. */
        p = (struct pollfd){.fd = pipe_fds[0], .events = POLLIN};
        g_assert_cmpint(poll(&p, 1, 100), ==, 0);

        g_assert_cmpint(test_isolate_cmd(start, NULL, NULL), ==, 0);
        started = read_available(pipe_fds[0]);
        g_assert_cmpstr(started, ==, "started\n");
        g_assert_cmpint(test_isolate_cmd(start, NULL, &early), ==, 125); /* once only */
        g_assert_nonnull(strstr(early, "was started already"));
        g_assert_cmpint(test_isolate_cmd(state, &out, NULL), ==, 0);
        g_assert_nonnull(strstr(out, "\"running\""));
        g_clear_pointer(&out, g_free);
        g_assert_cmpint(test_isolate_cmd(delete, NULL, NULL), ==, 125); /* running: needs --force */

        g_assert_cmpint(test_isolate_cmd(kill_args, NULL, NULL), ==, 0);
        g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
        g_assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        g_assert_cmpint(test_isolate_cmd(kill_args, NULL, NULL), ==, 125); /* gone */
        g_assert_cmpint(test_isolate_cmd(delete, NULL, NULL), ==, 0);
        g_assert_false(g_file_test(state_dir, G_FILE_TEST_EXISTS));
        close(pipe_fds[0]);
}

static void test_create_delete_force(void)
{
        static const guint32 gids[] = {1000};
        TestRun run = {.uid = 1000, .gid = 1000, .gids = gids, .n_gids = 1};
        g_autofree char *id = NULL, *bundle = test_make_bundle(&run, &id);
        g_autofree char *pid_file = g_build_filename(bundle, "pid", NULL);
        g_autofree char *pid_text = NULL;
        const char *const create[] = {"create", "--bundle", bundle, "--pid-file", pid_file, id, NULL};
        const char *const delete[] = {"delete", "--force", id, NULL};
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC), status;
        pid_t pid;

        g_assert_cmpint(test_isolate_cmd_fds(create, null, null), ==, 0);
        close(null);
        g_assert_true(g_file_get_contents(pid_file, &pid_text, NULL, NULL));
        pid = atoi(pid_text);
        {
                /* Waiting for start as uid 1000, the init is still not dumpable: its /proc files stay
                 * root's, out of reach of the user's other processes. */
                g_autofree char *environ_path = g_strdup_printf("/proc/%d/environ", (int)pid);
                struct stat st;
                g_assert_no_errno(stat(environ_path, &st));
                g_assert_cmpuint(st.st_uid, ==, 0);
        }
        g_assert_cmpint(test_isolate_cmd(delete, NULL, NULL), ==, 0);
        g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
        g_assert_true(WIFSIGNALED(status));
        g_assert_cmpint(test_isolate_cmd(delete, NULL, NULL), ==, 0); /* --force: gone is fine */
}

static void test_seccomp_cache(void)
{
        static const char *const argv[] = {"/bin/probe", NULL};
        TestRun run = {.argv = argv, .seccomp = TRUE};
        g_autofree char *first = NULL, *second = NULL, *third = NULL;
        g_autoptr(GDir) dir = NULL;
        g_autofree char *entry = NULL;
        const char *name;

        if (skip_under_wrapper())
                return;
        /* An empty cache first: then the one entry is this filter's. */
        dir = g_dir_open(test_env.cache_dir, 0, NULL);
        while (dir && (name = g_dir_read_name(dir))) {
                g_autofree char *path = g_build_filename(test_env.cache_dir, name, NULL);
                g_assert_no_errno(unlink(path));
        }
        g_clear_pointer(&dir, g_dir_close);
        first = run_ok(&run);
        dir = g_dir_open(test_env.cache_dir, 0, NULL);
        g_assert_nonnull(dir);
        while ((name = g_dir_read_name(dir))) {
                g_assert_null(entry);
                g_assert_true(g_str_has_suffix(name, ".bpf"));
                entry = g_build_filename(test_env.cache_dir, name, NULL);
        }
        g_assert_nonnull(entry);
        /* From the cache: the same answers. */
        second = run_ok(&run);
        g_assert_cmpstr(first, ==, second);
        /* An entry that cannot be a program is compiled again and replaced. */
        g_assert_true(g_file_set_contents(entry, "short", -1, NULL));
        third = run_ok(&run);
        g_assert_cmpstr(first, ==, third);
        {
                g_autofree char *data = NULL;
                gsize len;
                g_assert_true(g_file_get_contents(entry, &data, &len, NULL));
                g_assert_cmpuint(len % 8, ==, 0);
                g_assert_cmpuint(len, >, 8);
        }
        /* A cache directory others may write to is not used. */
        g_assert_no_errno(chmod(test_env.cache_dir, 0777));
        g_assert_no_errno(unlink(entry));
        g_free(run_ok(&run));
        g_assert_false(g_file_test(entry, G_FILE_TEST_EXISTS));
        g_assert_no_errno(chmod(test_env.cache_dir, 0700));
}

static void test_generated_files_and_sysctl(void)
{
        static const char *const argv[] = {
                "/bin/sh", "-c", "cat /etc/hostname /etc/hosts /proc/sys/net/ipv4/ping_group_range", NULL};
        TestRun run = {.argv = argv};
        g_autofree char *out = run_ok(&run);

        /* The bundle's files bound over the image's; kilnd's default sysctl applied in the container's
         * own network namespace. */
        g_assert_cmpstr(out, ==, "test\n127.0.0.1 localhost\n0\t0\n");
}

static void test_no_pivot(void)
{
        static const char *const argv[] = {"/bin/sh", "-c", "id; ls /; wc -c < /proc/keys", NULL};
        TestRun run = {.argv = argv};
        g_autofree char *id = NULL, *bundle = test_make_bundle(&run, &id);
        const char *const args[] = {"run", "--no-pivot", "--bundle", bundle, "--", id, NULL};
        g_autofree char *out = NULL, *err = NULL;

        g_assert_cmpint(test_isolate_cmd(args, &out, &err), ==, 0);
        g_assert_true(g_str_has_prefix(out, "uid=0(root) gid=0(root) groups=0(root)\nbin\n"));
        g_assert_true(g_str_has_suffix(out, "\n0\n"));
}

static void set_console_size(JsonObject *spec)
{
        JsonObject *size = json_object_new();

        json_object_set_int_member(size, "height", 24);
        json_object_set_int_member(size, "width", 100);
        json_object_set_object_member(json_object_get_object_member(spec, "process"), "consoleSize", size);
}

static int receive_fd(int conn)
{
        union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } control;
        char name[64];
        struct iovec iov = {.iov_base = name, .iov_len = sizeof(name)};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = control.buf,
                             .msg_controllen = sizeof(control.buf)};
        struct cmsghdr *c;
        int fd;

        g_assert_cmpint(recvmsg(conn, &msg, MSG_CMSG_CLOEXEC), >, 0);
        c = CMSG_FIRSTHDR(&msg);
        g_assert_nonnull(c);
        g_assert_cmpint(c->cmsg_type, ==, SCM_RIGHTS);
        memcpy(&fd, CMSG_DATA(c), sizeof(int));
        return fd;
}

/* process.terminal: the pty is made in the container and its master sent over the console socket, as
 * runc does; the command has it as its controlling terminal and stdio. */
static void test_terminal(void)
{
        static const char *const argv[] = {"/bin/sh", "-c", "tty; stty size; ls /proc/self/fd", NULL};
        TestRun run = {.argv = argv, .terminal = TRUE, .edit = set_console_size};
        g_autofree char *id = NULL, *bundle = test_make_bundle(&run, &id);
        g_autofree char *socket_path = g_build_filename(bundle, "console.sock", NULL);
        g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);
        g_autoptr(GSubprocess) p = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GString) out = g_string_new(NULL);
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        int listen_fd, conn, master;
        char buf[256];
        ssize_t n;

        listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        g_assert_no_errno(listen_fd);
        g_strlcpy(addr.sun_path, socket_path, sizeof(addr.sun_path));
        g_assert_no_errno(bind(listen_fd, (struct sockaddr *)&addr, sizeof(addr)));
        g_assert_no_errno(listen(listen_fd, 1));
        p = g_subprocess_launcher_spawn(launcher, &error, test_env.isolate, "--cache-dir",
                                        test_env.cache_dir, "run", "--console-socket", socket_path,
                                        "--bundle", bundle, "--", id, NULL);
        g_assert_no_error(error);
        conn = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        g_assert_no_errno(conn);
        master = receive_fd(conn);
        close(conn);
        close(listen_fd);
        while ((n = read(master, buf, sizeof(buf))) > 0)
                g_string_append_len(out, buf, n);
        close(master);
        g_assert_true(g_subprocess_wait_check(p, NULL, &error));
        g_assert_no_error(error);
        g_assert_cmpstr(out->str, ==, "/dev/pts/0\r\n24 100\r\n0  1  2  3\r\n");
}

/* run --detach: the parent leaves once the command runs; the init is then ours (the subreaper's), as it
 * would be kilnd's. Its state stays (a caller that crashed finds it by id) until `delete`, also when the
 * command ended before kiln-isolate wrote it. An exec that fails still fails the command line, with its
 * status and words, and leaves no state. */
static void test_run_detached(void)
{
        static const char *const argv[] = {"/bin/sh", "-c", "exit 7", NULL};
        static const char *const garbage[] = {"/etc/garbage", NULL};
        TestRun run = {.argv = argv, .seccomp = TRUE};
        g_autofree char *id = NULL, *bundle = test_make_bundle(&run, &id);
        g_autofree char *pid_file = g_build_filename(bundle, "pid", NULL);
        g_autofree char *pid_text = NULL, *err = NULL;
        const char *const args[] = {"run",    "--detach", "--bundle", bundle, "--pid-file",
                                    pid_file, "--",       id,         NULL};
        int status;
        pid_t pid;

        const char *const state_args[] = {"state", "--", id, NULL};
        const char *const delete_args[] = {"delete", "--", id, NULL};
        g_autofree char *state_dir = g_build_filename(test_env.state_root, id, NULL);
        g_autofree char *state = NULL;

        g_assert_cmpint(test_isolate_cmd(args, NULL, NULL), ==, 0);
        g_assert_true(g_file_get_contents(pid_file, &pid_text, NULL, NULL));
        pid = atoi(pid_text);
        g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
        g_assert_true(WIFEXITED(status));
        g_assert_cmpint(WEXITSTATUS(status), ==, 7);
        g_assert_cmpint(test_isolate_cmd(state_args, &state, NULL), ==, 0);
        g_assert_nonnull(strstr(state, "\"stopped\""));
        g_assert_cmpint(test_isolate_cmd(delete_args, NULL, NULL), ==, 0);
        g_assert_false(g_file_test(state_dir, G_FILE_TEST_EXISTS));
        {
                TestRun bad = {.argv = garbage};
                g_autofree char *id2 = NULL, *bundle2 = test_make_bundle(&bad, &id2);
                g_autofree char *state_dir2 = g_build_filename(test_env.state_root, id2, NULL);
                const char *const args2[] = {"run", "-d", "--bundle", bundle2, "--", id2, NULL};
                g_assert_cmpint(test_isolate_cmd(args2, NULL, &err), ==, 126);
                g_assert_nonnull(strstr(err, "exec '/etc/garbage': Exec format error"));
                g_assert_false(g_file_test(state_dir2, G_FILE_TEST_EXISTS));
        }
}

static int compare_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static void test_timing(void)
{
        TestRun run = {.seccomp = TRUE};
        g_autofree char *id = NULL, *bundle = test_make_bundle(&run, &id);
        double times[TIMING_RUNS];

        if (test_env.wrapper) {
                g_test_skip("timing under a wrapper means nothing");
                return;
        }
        for (int i = 0; i < TIMING_RUNS; i++) {
                const char *const args[] = {test_env.isolate,
                                            "--cache-dir",
                                            test_env.cache_dir,
                                            "run",
                                            "--bundle",
                                            bundle,
                                            "--",
                                            id,
                                            NULL};
                gint64 t0 = g_get_monotonic_time();
                g_assert_cmpint(test_spawn(args, -1, NULL, NULL), ==, 0);
                times[i] = (double)(g_get_monotonic_time() - t0) / 1000.0;
        }
        qsort(times, TIMING_RUNS, sizeof(double), compare_double);
        g_print("# kiln-isolate run /bin/true: median %.2f ms of %d runs (min %.2f, max %.2f)\n",
                (times[TIMING_RUNS / 2 - 1] + times[TIMING_RUNS / 2]) / 2, TIMING_RUNS, times[0],
                times[TIMING_RUNS - 1]);
}

int main(int argc, char **argv)
{
        int r;

        test_env_init(&argc, &argv);
        /* As kilnd: a created container's init re-parents to us when `create` exits. */
        g_assert_no_errno(prctl(PR_SET_CHILD_SUBREAPER, 1));

        g_test_add_func("/isolate/exit-codes", test_exit_codes);
        g_test_add_func("/isolate/exec-format-error", test_exec_format_error);
        g_test_add_func("/isolate/identity-root", test_identity_root);
        g_test_add_func("/isolate/identity-nonroot", test_identity_nonroot);
        g_test_add_func("/isolate/caps-root", test_caps_root);
        g_test_add_func("/isolate/seccomp-nnp", test_seccomp_and_nnp);
        g_test_add_func("/isolate/syscall-probe", test_syscall_probe);
        g_test_add_func("/isolate/masked-paths", test_masked_paths);
        g_test_add_func("/isolate/masked-paths-own-null", test_masked_paths_own_null);
        g_test_add_func("/isolate/readonly-paths", test_readonly_paths);
        g_test_add_func("/isolate/mounts", test_mounts);
        g_test_add_func("/isolate/ulimits", test_ulimits);
        g_test_add_func("/isolate/descriptors", test_descriptors);
        g_test_add_func("/isolate/environment", test_environment);
        g_test_add_func("/isolate/userns", test_userns);
        g_test_add_func("/isolate/setup-errors", test_setup_errors);
        g_test_add_func("/isolate/cap-outside-bounding", test_cap_outside_bounding);
        g_test_add_func("/isolate/create-start", test_create_start);
        g_test_add_func("/isolate/create-delete-force", test_create_delete_force);
        g_test_add_func("/isolate/seccomp-cache", test_seccomp_cache);
        g_test_add_func("/isolate/generated-files-sysctl", test_generated_files_and_sysctl);
        g_test_add_func("/isolate/no-pivot", test_no_pivot);
        g_test_add_func("/isolate/terminal", test_terminal);
        g_test_add_func("/isolate/run-detached", test_run_detached);
        g_test_add_func("/isolate/timing", test_timing);
        r = g_test_run();
        test_env_cleanup();
        return r;
}

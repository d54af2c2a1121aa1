/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <sys/capability.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gio.h>

#include "base/fs-util.h"
#include "busybox-rootfs.h"
#include "isolate-testlib.h"
#include "spec/seccomp-profile.h"

TestEnv test_env;

/* As tests/integration/kiln_harness.py make_busybox_rootfs, plus the probe and two files that cannot
 * be executed. */
static void make_rootfs(const char *probe)
{
        g_autofree char *probe_to = g_build_filename(test_env.rootfs, "bin", "probe", NULL);

        test_make_busybox_rootfs(test_env.rootfs);
        test_copy_file(probe, probe_to, 0755);
}

static int skip(const char *why)
{
        g_printerr("SKIP: %s\n", why);
        return 77;
}

void test_env_init(int *argc, char ***argv)
{
        const char *probe = g_getenv("KILN_SYSCALL_PROBE");
        const char *wrapper = g_getenv("KILN_ISOLATE_WRAPPER");

        g_test_init(argc, argv, NULL);
        if (geteuid() != 0)
                exit(skip("needs root"));
        if (!test_is_static_elf("/bin/busybox"))
                exit(skip("needs a static /bin/busybox (busybox-static)"));
        if (!g_getenv("KILN_ISOLATE") || !probe || !g_getenv("KILN_SECCOMP_PROFILE"))
                exit(skip("KILN_ISOLATE, KILN_SYSCALL_PROBE and KILN_SECCOMP_PROFILE are set by meson"));
        test_env.isolate = g_strdup(g_getenv("KILN_ISOLATE"));
        test_env.seccomp_profile = g_strdup(g_getenv("KILN_SECCOMP_PROFILE"));
        test_env.wrapper = wrapper && *wrapper ? g_strsplit(wrapper, " ", -1) : NULL;
        test_env.runc = g_find_program_in_path("runc");
        if (!test_env.runc && g_file_test("/usr/sbin/runc", G_FILE_TEST_IS_EXECUTABLE))
                test_env.runc = g_strdup("/usr/sbin/runc");
        test_env.tmp_dir = g_dir_make_tmp("kiln-isolate-XXXXXX", NULL);
        g_assert_nonnull(test_env.tmp_dir);
        g_assert_no_errno(chmod(test_env.tmp_dir, 0755));
        test_env.rootfs = g_build_filename(test_env.tmp_dir, "rootfs", NULL);
        test_env.state_root = g_build_filename(test_env.tmp_dir, "state", NULL);
        test_env.cache_dir = g_build_filename(test_env.tmp_dir, "cache", NULL);
        make_rootfs(probe);
}

void test_env_cleanup(void)
{
        int dirfd = open(g_get_tmp_dir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (dirfd >= 0) {
                g_autofree char *name = g_path_get_basename(test_env.tmp_dir);
                (void)kiln_rm_rf_at(dirfd, name, NULL);
                close(dirfd);
        }
        g_free(test_env.tmp_dir);
        g_free(test_env.rootfs);
        g_free(test_env.isolate);
        g_strfreev(test_env.wrapper);
        g_free(test_env.runc);
        g_free(test_env.seccomp_profile);
        g_free(test_env.state_root);
        g_free(test_env.cache_dir);
}

char *test_make_bundle(const TestRun *run, char **id)
{
        static const KilnIdMapping userns_map[] = {{0, 100000, 65536}};
        static const guint32 root_gids[] = {0};
        static const char *const default_argv[] = {"/bin/true", NULL};
        g_autofree char *bundle = g_strdup_printf("%s/bundle-%u", test_env.tmp_dir, ++test_env.counter);
        g_autofree char *hosts = g_build_filename(bundle, "hosts", NULL);
        g_autofree char *resolv = g_build_filename(bundle, "resolv.conf", NULL);
        g_autofree char *hostname = g_build_filename(bundle, "hostname", NULL);
        g_autofree char *containerenv = g_build_filename(bundle, "containerenv", NULL);
        g_autofree char *config = g_build_filename(bundle, "config.json", NULL);
        g_autoptr(JsonNode) seccomp = NULL;
        g_autoptr(JsonNode) spec = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *text = NULL;
        KilnSpecInput in = {
                .id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                .rootfs = test_env.rootfs,
                .argv = run->argv ? run->argv : default_argv,
                .env = run->env,
                .cwd = run->cwd ? run->cwd : "/",
                .uid = run->uid,
                .gid = run->gid,
                .additional_gids = run->gids ? run->gids : root_gids,
                .n_additional_gids = run->gids ? run->n_gids : 1,
                .home = run->uid ? "/home/builder" : "/root",
                .terminal = run->terminal,
                .no_new_privileges = run->no_new_privileges,
                .cap_add = run->cap_add,
                .cap_drop = run->cap_drop,
                .ulimits = run->ulimits,
                .hostname = run->hostname,
                .mounts = run->mounts,
                .n_mounts = run->n_mounts,
                .files = {.hosts = hosts,
                          .resolv_conf = resolv,
                          .hostname = hostname,
                          .containerenv = containerenv},
                .last_cap = (int)cap_max_bits() - 1,
        };

        if (run->userns) {
                in.uid_mappings = in.gid_mappings = userns_map;
                in.n_uid_mappings = in.n_gid_mappings = 1;
        }
        g_assert_no_errno(mkdir(bundle, 0755));
        test_write_file(bundle, "hosts", "127.0.0.1 localhost\n", 0644);
        test_write_file(bundle, "resolv.conf", "nameserver 127.0.0.1\n", 0644);
        test_write_file(bundle, "hostname", "test\n", 0644);
        test_write_file(bundle, "containerenv", "", 0644);
        /* Under a wrapper (valgrind) the init runs instrumented too: valgrind knows no seccomp(2), and a
         * lower RLIMIT_NOFILE set on it from outside takes away the descriptors valgrind keeps. */
        if (run->seccomp && !test_env.wrapper) {
                g_auto(GStrv) caps = kiln_spec_capabilities(&in, &error);
                g_assert_no_error(error);
                seccomp = kiln_seccomp_profile_load(NULL, test_env.seccomp_profile,
                                                    (const char *const *)caps, &error);
                g_assert_no_error(error);
                in.seccomp = seccomp;
        }
        spec = kiln_spec_generate(&in, &error);
        g_assert_no_error(error);
        if (test_env.wrapper)
                json_object_remove_member(
                        json_object_get_object_member(json_node_get_object(spec), "process"), "rlimits");
        if (run->edit)
                run->edit(json_node_get_object(spec));
        text = kiln_spec_to_data(spec, TRUE, NULL);
        g_assert_true(g_file_set_contents(config, text, -1, NULL));
        *id = g_strdup_printf("iso-test-%d-%u", (int)getpid(), test_env.counter);
        return g_steal_pointer(&bundle);
}

int test_spawn(const char *const *argv, int extra_fd, char **out, char **err)
{
        g_autoptr(GSubprocessLauncher) launcher =
                g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE);
        g_autoptr(GSubprocess) p = NULL;
        g_autoptr(GError) error = NULL;
        const char *const env[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                   "KILN_TEST_SECRET=leak", NULL};
        char *o = NULL, *e = NULL;

        g_subprocess_launcher_set_environ(launcher, (char **)env);
        if (extra_fd >= 0)
                g_subprocess_launcher_take_fd(launcher, fcntl(extra_fd, F_DUPFD_CLOEXEC, 3), 7);
        p = g_subprocess_launcher_spawnv(launcher, argv, &error);
        g_assert_no_error(error);
        g_assert_true(g_subprocess_communicate_utf8(p, NULL, NULL, &o, &e, &error));
        g_assert_no_error(error);
        if (out)
                *out = o;
        else
                g_free(o);
        if (err)
                *err = e;
        else
                g_free(e);
        if (g_subprocess_get_if_signaled(p))
                return 128 + g_subprocess_get_term_sig(p);
        return g_subprocess_get_exit_status(p);
}

static int run_with(const char *const *prefix, const char *const *args, int extra_fd, char **out, char **err)
{
        g_autoptr(GPtrArray) argv = g_ptr_array_new();

        for (const char *const *a = prefix; a && *a; a++)
                g_ptr_array_add(argv, (char *)*a);
        for (const char *const *a = args; *a; a++)
                g_ptr_array_add(argv, (char *)*a);
        g_ptr_array_add(argv, NULL);
        return test_spawn((const char *const *)argv->pdata, extra_fd, out, err);
}

int test_isolate_cmd(const char *const *args, char **out, char **err)
{
        g_autoptr(GPtrArray) argv = g_ptr_array_new();

        g_ptr_array_add(argv, test_env.isolate);
        g_ptr_array_add(argv, "--root");
        g_ptr_array_add(argv, test_env.state_root);
        g_ptr_array_add(argv, "--cache-dir");
        g_ptr_array_add(argv, test_env.cache_dir);
        for (const char *const *a = args; *a; a++)
                g_ptr_array_add(argv, (char *)*a);
        g_ptr_array_add(argv, NULL);
        return run_with((const char *const *)test_env.wrapper, (const char *const *)argv->pdata, -1, out,
                        err);
}

int test_isolate_cmd_fds(const char *const *args, int out_fd, int err_fd)
{
        g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);
        g_autoptr(GPtrArray) argv = g_ptr_array_new();
        g_autoptr(GSubprocess) p = NULL;
        g_autoptr(GError) error = NULL;

        for (char **w = test_env.wrapper; w && *w; w++)
                g_ptr_array_add(argv, *w);
        g_ptr_array_add(argv, test_env.isolate);
        g_ptr_array_add(argv, "--root");
        g_ptr_array_add(argv, test_env.state_root);
        g_ptr_array_add(argv, "--cache-dir");
        g_ptr_array_add(argv, test_env.cache_dir);
        for (const char *const *a = args; *a; a++)
                g_ptr_array_add(argv, (char *)*a);
        g_ptr_array_add(argv, NULL);
        g_subprocess_launcher_take_stdout_fd(launcher, fcntl(out_fd, F_DUPFD_CLOEXEC, 3));
        g_subprocess_launcher_take_stderr_fd(launcher, fcntl(err_fd, F_DUPFD_CLOEXEC, 3));
        p = g_subprocess_launcher_spawnv(launcher, (const char *const *)argv->pdata, &error);
        g_assert_no_error(error);
        g_assert_true(g_subprocess_wait(p, NULL, &error));
        g_assert_no_error(error);
        return g_subprocess_get_if_signaled(p) ? 128 + g_subprocess_get_term_sig(p)
                                               : g_subprocess_get_exit_status(p);
}

int test_run_isolate(const TestRun *run, int extra_fd, char **out, char **err)
{
        g_autofree char *id = NULL, *bundle = test_make_bundle(run, &id);
        const char *const args[] = {test_env.isolate,
                                    "--cache-dir",
                                    test_env.cache_dir,
                                    "run",
                                    "--bundle",
                                    bundle,
                                    "--",
                                    id,
                                    NULL};

        return run_with((const char *const *)test_env.wrapper, args, extra_fd, out, err);
}

int test_run_runc(const TestRun *run, char **out, char **err)
{
        g_autofree char *id = NULL, *bundle = test_make_bundle(run, &id);
        g_autofree char *root = g_build_filename(test_env.tmp_dir, "runc-state", NULL);
        const char *const args[] = {test_env.runc, "--root", root, "run", "--bundle",
                                    bundle,        "--",     id,   NULL};

        return run_with(NULL, args, -1, out, err);
}

char *test_status_field(const char *text, const char *key)
{
        g_auto(GStrv) lines = g_strsplit(text, "\n", -1);

        for (char **l = lines; *l; l++)
                if (g_str_has_prefix(*l, key))
                        return g_strstrip(g_strdup(*l + strlen(key)));
        return NULL;
}

guint64 test_cap_mask(const char *const *names)
{
        guint64 mask = 0;

        for (const char *const *n = names; n && *n; n++) {
                cap_value_t v;
                g_assert_no_errno(cap_from_name(*n, &v));
                mask |= (guint64)1 << v;
        }
        return mask;
}

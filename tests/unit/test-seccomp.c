/* SPDX-License-Identifier: Apache-2.0 */
/* The default seccomp profile (data/seccomp/default.json) and the profile loader: what is allowed,
 * what is refused, how includes/excludes follow capabilities, architecture and kernel, and that
 * libseccomp accepts the result (a filter is built, and loaded in a child that tries the calls). */
#include <glib/gstdio.h>
#include <errno.h>
#include <linux/sched.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spec/seccomp-profile.h"
#include "spec/spec.h"
#include "test-paths.h"

static const KilnSeccompHost x86_64_new = {SCMP_ARCH_X86_64, 6, 1};
static const KilnSeccompHost x86_64_old = {SCMP_ARCH_X86_64, 4, 4};
static const KilnSeccompHost aarch64 = {SCMP_ARCH_AARCH64, 5, 15};

static JsonNode *parse(const char *text)
{
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(GError) error = NULL;

        g_assert_true(json_parser_load_from_data(parser, text, -1, &error));
        g_assert_no_error(error);
        return json_node_copy(json_parser_get_root(parser));
}

static JsonNode *default_profile(void)
{
        g_autofree char *path = kiln_test_source_path("data/seccomp/default.json");
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(GError) error = NULL;

        g_assert_true(json_parser_load_from_file(parser, path, &error));
        g_assert_no_error(error);
        return json_node_copy(json_parser_get_root(parser));
}

static JsonNode *resolve_default(const char *const *caps, const KilnSeccompHost *host)
{
        g_autoptr(JsonNode) profile = default_profile();
        g_autoptr(GError) error = NULL;
        JsonNode *resolved = kiln_seccomp_profile_resolve("default.json", profile, caps, host, &error);

        g_assert_no_error(error);
        g_assert_nonnull(resolved);
        return resolved;
}

/* How the resolved profile treats @name: "allow" (a rule without conditions on arguments),
 * "args" (only rules with argument conditions), "errno N", or "default". */
static char *treatment(JsonNode *resolved, const char *name)
{
        JsonArray *rules = json_object_get_array_member(json_node_get_object(resolved), "syscalls");
        gboolean conditional = FALSE;

        for (guint i = 0; i < json_array_get_length(rules); i++) {
                JsonObject *rule = json_array_get_object_element(rules, i);
                JsonArray *names = json_object_get_array_member(rule, "names");
                const char *action = json_object_get_string_member(rule, "action");

                for (guint j = 0; j < json_array_get_length(names); j++) {
                        if (!g_str_equal(json_array_get_string_element(names, j), name))
                                continue;
                        if (json_object_has_member(rule, "args")) {
                                conditional = TRUE;
                                continue;
                        }
                        if (g_str_equal(action, "SCMP_ACT_ALLOW"))
                                return g_strdup("allow");
                        return g_strdup_printf("errno %" G_GINT64_FORMAT,
                                               json_object_has_member(rule, "errnoRet")
                                                       ? json_object_get_int_member(rule, "errnoRet")
                                                       : 1);
                }
        }
        return g_strdup(conditional ? "args" : "default");
}

static void assert_treatment(JsonNode *resolved, const char *name, const char *expected)
{
        g_autofree char *got = treatment(resolved, name);

        if (!g_str_equal(got, expected))
                g_error("%s: expected %s, got %s", name, expected, got);
}

static void test_default_profile(void)
{
        g_autoptr(JsonNode) resolved = resolve_default(kiln_default_capabilities, &x86_64_new);
        JsonObject *o = json_node_get_object(resolved);
        JsonArray *arches = json_object_get_array_member(o, "architectures");
        static const char *const refused[] = {
                "fsopen",
                "fsconfig",
                "fsmount",
                "fspick",
                "move_mount",
                "open_tree",
                "mount_setattr",
                "mount",
                "umount2",
                "pivot_root",
                "unshare",
                "setns",
                "keyctl",
                "add_key",
                "request_key",
                "bpf",
                "perf_event_open",
                "kexec_load",
                "kexec_file_load",
                "init_module",
                "finit_module",
                "delete_module",
                "reboot",
                "swapon",
                "swapoff",
                "userfaultfd",
                "open_by_handle_at",
                "acct",
                "iopl",
                "settimeofday",
                NULL,
        };

        g_assert_cmpstr(json_object_get_string_member(o, "defaultAction"), ==, "SCMP_ACT_ERRNO");
        g_assert_cmpint(json_object_get_int_member(o, "defaultErrnoRet"), ==, 38);
        g_assert_cmpuint(json_array_get_length(arches), ==, 3);
        g_assert_cmpstr(json_array_get_string_element(arches, 0), ==, "SCMP_ARCH_X86_64");
        g_assert_cmpstr(json_array_get_string_element(arches, 1), ==, "SCMP_ARCH_X86");
        g_assert_cmpstr(json_array_get_string_element(arches, 2), ==, "SCMP_ARCH_X32");

        assert_treatment(resolved, "read", "allow");
        assert_treatment(resolved, "execve", "allow");
        assert_treatment(resolved, "chroot", "allow"); /* CAP_SYS_CHROOT is a default capability */
        assert_treatment(resolved, "arch_prctl", "allow");
        assert_treatment(resolved, "ptrace", "allow"); /* kernel >= 4.8 */
        assert_treatment(resolved, "clone", "args");   /* without namespace flags only */
        assert_treatment(resolved, "personality", "args");
        assert_treatment(resolved, "socket", "args");
        assert_treatment(resolved, "clone3", "errno 38");
        assert_treatment(resolved, "io_uring_setup", "default");
        for (const char *const *n = refused; *n; n++)
                assert_treatment(resolved, *n, "errno 1");
        /* ARM-only calls are dropped on x86_64 */
        assert_treatment(resolved, "set_tls", "default");

        /* only OCI members remain */
        for (guint i = 0; i < json_array_get_length(json_object_get_array_member(o, "syscalls")); i++) {
                JsonObject *rule =
                        json_array_get_object_element(json_object_get_array_member(o, "syscalls"), i);
                g_assert_false(json_object_has_member(rule, "includes"));
                g_assert_false(json_object_has_member(rule, "excludes"));
                g_assert_false(json_object_has_member(rule, "comment"));
        }
}

static void test_includes_excludes(void)
{
        static const char *const admin[] = {"CAP_SYS_ADMIN", "CAP_CHOWN", NULL};
        static const char *const ptrace_caps[] = {"CAP_SYS_PTRACE", NULL};
        g_autoptr(JsonNode) with_admin = resolve_default(admin, &x86_64_new);
        g_autoptr(JsonNode) old_kernel = resolve_default(kiln_default_capabilities, &x86_64_old);
        g_autoptr(JsonNode) old_kernel_ptrace = resolve_default(ptrace_caps, &x86_64_old);
        g_autoptr(JsonNode) arm = resolve_default(kiln_default_capabilities, &aarch64);
        JsonArray *arches = json_object_get_array_member(json_node_get_object(arm), "architectures");

        assert_treatment(with_admin, "mount", "allow");
        assert_treatment(with_admin, "fsopen", "allow");
        assert_treatment(with_admin, "clone", "allow");
        assert_treatment(with_admin, "clone3", "allow");
        assert_treatment(with_admin, "bpf", "allow");
        assert_treatment(with_admin, "chroot", "errno 1"); /* no CAP_SYS_CHROOT in this set */
        assert_treatment(with_admin, "keyctl", "errno 1"); /* whatever the capabilities */

        assert_treatment(old_kernel, "ptrace", "errno 1");
        assert_treatment(old_kernel_ptrace, "ptrace", "allow");

        g_assert_cmpuint(json_array_get_length(arches), ==, 2);
        g_assert_cmpstr(json_array_get_string_element(arches, 0), ==, "SCMP_ARCH_AARCH64");
        g_assert_cmpstr(json_array_get_string_element(arches, 1), ==, "SCMP_ARCH_ARM");
        assert_treatment(arm, "set_tls", "allow");
        assert_treatment(arm, "arch_prctl", "default");
}

static void test_load(void)
{
        g_autofree char *path = kiln_test_source_path("data/seccomp/default.json");
        g_autoptr(GError) error = NULL;
        g_autoptr(JsonNode) loaded =
                kiln_seccomp_profile_load(NULL, path, kiln_default_capabilities, &error);
        g_autoptr(JsonNode) missing = NULL;

        g_assert_no_error(error);
        g_assert_nonnull(loaded);
        assert_treatment(loaded, "read", "allow");
        assert_treatment(loaded, "keyctl", "errno 1");

        missing = kiln_seccomp_profile_load(NULL, "/nonexistent/profile.json", NULL, &error);
        g_assert_null(missing);
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
        g_assert_nonnull(strstr(error->message, "/nonexistent/profile.json"));
}

static char *default_action_of(KilnSeccompCache *cache, const char *path, const char *const *caps)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(JsonNode) loaded = kiln_seccomp_profile_load(cache, path, caps, &error);

        g_assert_no_error(error);
        return g_strdup(json_object_get_string_member(json_node_get_object(loaded), "defaultAction"));
}

/* kilnd keeps resolved profiles: a second load gives the same result, a changed file a new one, and
 * what a caller does to its copy never reaches the next. */
static void test_load_cached(void)
{
        g_autofree char *dir = g_dir_make_tmp("kiln-seccomp-XXXXXX", NULL);
        g_autofree char *path = g_build_filename(dir, "p.json", NULL);
        g_autoptr(KilnSeccompCache) cache = kiln_seccomp_cache_new();
        g_autofree char *first = NULL, *again = NULL, *changed = NULL;
        g_autoptr(GError) error = NULL;
        JsonNode *copy;

        g_assert_true(g_file_set_contents(path, "{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": []}",
                                          -1, NULL));
        first = default_action_of(cache, path, kiln_default_capabilities);
        copy = kiln_seccomp_profile_load(cache, path, kiln_default_capabilities, &error);
        json_object_set_string_member(json_node_get_object(copy), "defaultAction", "SCMP_ACT_KILL");
        json_node_unref(copy);
        again = default_action_of(cache, path, kiln_default_capabilities);
        g_assert_cmpstr(first, ==, "SCMP_ACT_ERRNO");
        g_assert_cmpstr(again, ==, "SCMP_ACT_ERRNO");

        /* A new file (a new inode, as an editor's save makes). */
        g_assert_true(g_file_set_contents(path, "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": []}",
                                          -1, NULL));
        changed = default_action_of(cache, path, kiln_default_capabilities);
        g_assert_cmpstr(changed, ==, "SCMP_ACT_ALLOW");
        g_unlink(path);
        g_rmdir(dir);
}

static void test_bad_profiles(void)
{
        static const struct {
                const char *profile;
                const char *named; /* the message must contain it */
        } cases[] = {
                {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"names\": [\"read\", "
                 "\"no_such_call\"],"
                 " \"action\": \"SCMP_ACT_ALLOW\"}]}",
                 "'no_such_call'"},
                {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"name\": \"reed\", \"action\": "
                 "\"SCMP_ACT_ALLOW\","
                 " \"includes\": {\"caps\": [\"CAP_SYS_ADMIN\"]}}]}",
                 "'reed'"},
                {"{\"defaultAction\": \"SCMP_ACT_EXPLODE\", \"syscalls\": []}", "SCMP_ACT_EXPLODE"},
                {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [], \"listenerPath\": \"/x\"}",
                 "listenerPath"},
                {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"architectures\": [\"SCMP_ARCH_Z80\"], "
                 "\"syscalls\": []}",
                 "SCMP_ARCH_Z80"},
                {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"names\": [\"read\"], "
                 "\"action\": \"SCMP_ACT_ALLOW\","
                 " \"args\": [{\"index\": 6, \"value\": 0, \"op\": \"SCMP_CMP_EQ\"}]}]}",
                 "syscalls[0].args[0]"},
                {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"names\": [\"read\"], "
                 "\"action\": \"SCMP_ACT_ALLOW\","
                 " \"args\": [{\"index\": 0, \"value\": 0, \"op\": \"SCMP_CMP_ABOUT\"}]}]}",
                 "SCMP_CMP_ABOUT"},
                {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"names\": [\"read\"], "
                 "\"action\": \"SCMP_ACT_ALLOW\","
                 " \"includes\": {\"caps\": [\"CAP_FLY\"]}}]}",
                 "CAP_FLY"},
                {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"names\": [\"read\"], "
                 "\"action\": \"SCMP_ACT_ALLOW\","
                 " \"excludes\": {\"minKernel\": \"new\"}}]}",
                 "minKernel"},
                {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"action\": \"SCMP_ACT_ALLOW\"}]}",
                 "no names"},
                {"[1, 2]", "not a JSON object"},
                {"{\"defaultAction\": \"SCMP_ACT_ERRNO\"}", "syscalls"},
                {"{\"syscalls\": []}", "defaultAction"},
                {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"archMap\": [{\"subArchitectures\": null}],"
                 " \"syscalls\": []}",
                 "archMap[0]"},
                {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"names\": [\"read\"],"
                 " \"action\": \"SCMP_ACT_ERRNO\", \"errnoRet\": 5000}]}",
                 "errnoRet"},
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(JsonNode) profile = parse(cases[i].profile);
                g_autoptr(GError) error = NULL;
                g_autoptr(JsonNode) resolved =
                        kiln_seccomp_profile_resolve("test.json", profile, NULL, &x86_64_new, &error);

                g_assert_null(resolved);
                g_assert_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT);
                if (!strstr(error->message, cases[i].named) || !strstr(error->message, "test.json"))
                        g_error("case %" G_GSIZE_FORMAT ": '%s' does not name %s", i, error->message,
                                cases[i].named);
        }
}

static void test_plain_oci_profile(void)
{
        g_autoptr(JsonNode) profile = parse(
                "{\"defaultAction\": \"SCMP_ACT_KILL_PROCESS\","
                " \"architectures\": [\"SCMP_ARCH_X86_64\", \"SCMP_ARCH_AARCH64\"],"
                " \"flags\": [\"SECCOMP_FILTER_FLAG_LOG\"],"
                " \"syscalls\": [{\"names\": [\"read\", \"set_tls\"], \"action\": \"SCMP_ACT_ALLOW\"}]}");
        g_autoptr(GError) error = NULL;
        g_autoptr(JsonNode) resolved =
                kiln_seccomp_profile_resolve("plain.json", profile, NULL, &x86_64_new, &error);
        JsonObject *o;

        g_assert_no_error(error);
        o = json_node_get_object(resolved);
        g_assert_cmpuint(json_array_get_length(json_object_get_array_member(o, "architectures")), ==, 2);
        g_assert_cmpuint(json_array_get_length(json_object_get_array_member(o, "flags")), ==, 1);
        /* set_tls exists on none of these architectures (ARM only): dropped, not an error */
        assert_treatment(resolved, "read", "allow");
        assert_treatment(resolved, "set_tls", "default");
}

static gboolean under_valgrind(void)
{
        const char *preload = g_getenv("LD_PRELOAD");

        return preload && strstr(preload, "vgpreload");
}

/* In a child: load the filter, then try the calls. Returns the child's exit status: 0 when every
 * call answered as expected, else the number of the first surprise. */
static int run_filtered_child(scmp_filter_ctx ctx)
{
        static const struct {
                long nr;
                long arg0;
                int expected_errno; /* 0: must succeed */
        } calls[] = {
                {SYS_getpid, 0, 0},
                {SYS_fsopen, 0, EPERM},
                {SYS_bpf, 0, EPERM},
                {SYS_keyctl, 0, EPERM},
                {SYS_unshare, CLONE_NEWUSER, EPERM},
                {SYS_io_uring_setup, 0, ENOSYS},
                {SYS_clone3, 0, ENOSYS},
                {SYS_personality, 0x0040000 /* ADDR_NO_RANDOMIZE */, ENOSYS},
                {SYS_personality, 0xffffffff, 0},
        };
        pid_t pid = fork();
        int status = 0;

        g_assert_cmpint(pid, >=, 0);
        if (pid == 0) {
                if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || seccomp_load(ctx) < 0)
                        _exit(100);
                for (gsize i = 0; i < G_N_ELEMENTS(calls); i++) {
                        long r = syscall(calls[i].nr, calls[i].arg0, 0, 0, 0, 0);
                        if (calls[i].expected_errno == 0 ? r < 0
                                                         : (r != -1 || errno != calls[i].expected_errno))
                                _exit((int)i + 1);
                }
                _exit(0);
        }
        g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
        g_assert_true(WIFEXITED(status));
        return WEXITSTATUS(status);
}

static void test_filter(void)
{
        g_autoptr(JsonNode) resolved = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *path = kiln_test_source_path("data/seccomp/default.json");
        scmp_filter_ctx ctx;
        int child;

        /* the profile of this machine, as a run would get it */
        resolved = kiln_seccomp_profile_load(NULL, path, kiln_default_capabilities, &error);
        g_assert_no_error(error);
        ctx = kiln_seccomp_filter_new(resolved, &error);
        g_assert_no_error(error);
        g_assert_nonnull(ctx);
        if (under_valgrind()) {
                g_test_message("not loading a seccomp filter under valgrind");
        } else {
                child = run_filtered_child(ctx);
                if (child != 0)
                        g_error("the filtered child was surprised by call %d", child);
        }
        seccomp_release(ctx);
}

/* A linux.seccomp object from a spec on disk (kiln-isolate reads one) is not trusted: a rule
 * without "action" or "names", an argument without "op", a member of the wrong type is refused, never
 * read as if it were there (it crashed kiln-isolate; found by the isolate-spec fuzz target). */
static void test_filter_refuses_bad_shapes(void)
{
        static const char *const bad[] = {
                "{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"syscalls\":[{\"names\":[\"read\"]}]}",
                "{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"syscalls\":[{\"action\":\"SCMP_ACT_ALLOW\"}]}",
                "{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"syscalls\":[{\"names\":[\"read\"],"
                "\"action\":\"SCMP_ACT_ALLOW\",\"args\":[{\"index\":0,\"value\":1}]}]}",
                "{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"syscalls\":[{\"names\":[1],"
                "\"action\":\"SCMP_ACT_ALLOW\"}]}",
                "{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"syscalls\":[7]}",
                "{\"defaultAction\":7,\"syscalls\":[]}",
                "{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"architectures\":[{}],\"syscalls\":[]}",
        };

        for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autoptr(JsonNode) node = json_from_string(bad[i], NULL);
                g_autoptr(GError) error = NULL;
                scmp_filter_ctx ctx;

                g_assert_nonnull(node);
                ctx = kiln_seccomp_filter_new(node, &error);
                g_assert_null(ctx);
                g_assert_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT);
        }
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/seccomp/default-profile", test_default_profile);
        g_test_add_func("/seccomp/includes-excludes", test_includes_excludes);
        g_test_add_func("/seccomp/load", test_load);
        g_test_add_func("/seccomp/load-cached", test_load_cached);
        g_test_add_func("/seccomp/bad-profiles", test_bad_profiles);
        g_test_add_func("/seccomp/plain-oci", test_plain_oci_profile);
        g_test_add_func("/seccomp/filter", test_filter);
        g_test_add_func("/seccomp/filter-refuses-bad-shapes", test_filter_refuses_bad_shapes);
        return g_test_run();
}

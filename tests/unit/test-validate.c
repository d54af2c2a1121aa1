/* SPDX-License-Identifier: Apache-2.0 */
#include "authz/auth.h"
#include "objects/builder.h"
#include "base/kiln-common.h"
#include "base/size.h"
#include "base/validate.h"

/* A macro, so that the call happens before its error is looked at. */
#define assert_invalid(call, error, arg)                                                                    \
        do {                                                                                                \
                gboolean ok_ = (call);                                                                      \
                check_invalid(ok_, (error), (arg));                                                         \
        } while (0)

static void check_invalid(gboolean ok, GError *error, const char *arg)
{
        g_assert_false(ok);
        g_assert_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT);
        /* Every message names the argument it is about. */
        g_assert_nonnull(strstr(error->message, arg));
}

static void test_names(void)
{
        static const char *const good[] = {"a", "web-1", "my_builder.v2", "0abc", NULL};
        static const char *const bad[] = {"",   "/etc",       "a/b",    "..",  ".hidden",
                                          "-x", "with space", "tab\tx", "ünï", NULL};
        g_autofree char *long_name = g_strnfill(129, 'a');

        for (const char *const *n = good; *n; n++)
                g_assert_true(kiln_validate_name("name", *n, NULL));
        for (const char *const *n = bad; *n; n++) {
                g_autoptr(GError) error = NULL;
                assert_invalid(kiln_validate_name("name", *n, &error), error, "name");
        }
        g_autoptr(GError) error = NULL;
        assert_invalid(kiln_validate_name("name", long_name, &error), error, "name");
}

static void test_ids(void)
{
        g_autofree char *id = kiln_generate_id();
        g_autofree char *other = kiln_generate_id();
        g_autofree char *path = kiln_builder_object_path(id);

        g_assert_true(kiln_id_is_valid(id));
        g_assert_cmpstr(id, !=, other);
        g_assert_false(kiln_id_is_valid("abc"));
        g_assert_false(
                kiln_id_is_valid("../../../../../../../../../../../../../../../../../../../../etc/x"));
        id[5] = 'G';
        g_assert_false(kiln_id_is_valid(id));
        g_assert_true(g_str_has_prefix(path, KILN_BUILDER_PATH_PREFIX "/"));
        g_assert_cmpuint(strlen(path), ==, strlen(KILN_BUILDER_PATH_PREFIX) + 1 + KILN_ID_LENGTH);
}

static void test_env(void)
{
        g_autoptr(GError) e1 = NULL, e2 = NULL;

        g_assert_true(kiln_validate_env_entry("env[0]", "A=b", NULL));
        g_assert_true(kiln_validate_env_entry("env[0]", "A=", NULL));
        g_assert_true(kiln_validate_env_entry("env[0]", "A=b=c", NULL));
        assert_invalid(kiln_validate_env_entry("env[3]", "NOVALUE", &e1), e1, "env[3]");
        assert_invalid(kiln_validate_env_entry("env[1]", "=x", &e2), e2, "env[1]");
}

static void test_paths_and_specs(void)
{
        g_autoptr(GError) e1 = NULL, e2 = NULL, e3 = NULL, e4 = NULL;

        g_assert_true(kiln_validate_absolute_path("working_dir", "", TRUE, NULL));
        g_assert_true(kiln_validate_absolute_path("working_dir", "/srv/app", TRUE, NULL));
        assert_invalid(kiln_validate_absolute_path("working_dir", "srv", TRUE, &e1), e1, "working_dir");
        assert_invalid(kiln_validate_absolute_path("from", "", FALSE, &e2), e2, "from");

        g_assert_true(kiln_validate_user_spec("user", "root", NULL));
        g_assert_true(kiln_validate_user_spec("user", "1000:1000", NULL));
        g_assert_true(kiln_validate_user_spec("user", "", NULL));
        assert_invalid(kiln_validate_user_spec("user", "a:b:c", &e3), e3, "user");
        g_assert_false(kiln_validate_user_spec("user", ":grp", NULL));
        g_assert_false(kiln_validate_user_spec("user", "../x", NULL));

        g_assert_true(kiln_validate_hostname("hostname", "build-1.example", NULL));
        assert_invalid(kiln_validate_hostname("hostname", "bad_host", &e4), e4, "hostname");
        g_assert_false(kiln_validate_hostname("hostname", "-x", NULL));

        g_assert_true(kiln_validate_isolation("isolation", "chroot", NULL));
        g_assert_false(kiln_validate_isolation("isolation", "vm", NULL));
        g_assert_true(kiln_validate_userns("userns", "auto", NULL));
        g_assert_false(kiln_validate_userns("userns", "keep-id", NULL));
}

static void test_capabilities(void)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *a = NULL, *b = NULL, *c = NULL;

        g_assert_true(kiln_validate_capability("cap_add", "net_admin", &a, NULL));
        g_assert_cmpstr(a, ==, "CAP_NET_ADMIN");
        g_assert_true(kiln_validate_capability("cap_add", "CAP_SYS_ADMIN", &b, NULL));
        g_assert_cmpstr(b, ==, "CAP_SYS_ADMIN");
        g_assert_true(kiln_validate_capability("cap_drop", "all", &c, NULL));
        g_assert_cmpstr(c, ==, "ALL");
        g_assert_false(kiln_validate_capability("cap_add", "12", &c, NULL));
        assert_invalid(kiln_validate_capability("cap_add", "CAP_FLY", &c, &error), error, "cap_add");
}

static void test_ulimits_and_volumes(void)
{
        g_autoptr(GError) e1 = NULL, e2 = NULL;

        g_assert_true(kiln_validate_ulimit("ulimits[0]", "nofile=1024:2048", NULL));
        g_assert_true(kiln_validate_ulimit("ulimits[0]", "core=unlimited", NULL));
        g_assert_true(kiln_validate_ulimit("ulimits[0]", "nproc=-1:-1", NULL));
        g_assert_false(kiln_validate_ulimit("ulimits[0]", "nofile=2048:1024", NULL));
        g_assert_false(kiln_validate_ulimit("ulimits[0]", "nofile=abc", NULL));
        g_assert_false(kiln_validate_ulimit("ulimits[0]", "nofile", NULL));
        assert_invalid(kiln_validate_ulimit("ulimits[2]", "bogus=1", &e1), e1, "ulimits[2]");

        g_assert_true(kiln_validate_volume("volumes[0]", "/src:/dst", NULL));
        g_assert_true(kiln_validate_volume("volumes[0]", "/src:/dst:ro,Z,rshared,U", NULL));
        g_assert_false(kiln_validate_volume("volumes[0]", "src:/dst", NULL));
        g_assert_false(kiln_validate_volume("volumes[0]", "/src", NULL));
        g_assert_false(kiln_validate_volume("volumes[0]", "/a:/b:ro:x", NULL));
        assert_invalid(kiln_validate_volume("volumes[1]", "/a:/b:exec", &e2), e2, "volumes[1]");
}

static gboolean taken_in(const char *name, gpointer data)
{
        return g_strv_contains(data, name);
}

static void test_generated_names(void)
{
        const char *none[] = {NULL};
        const char *some[] = {"working-container", "working-container-2", "rootfs-working-container", NULL};
        g_autofree char *a = kiln_generate_builder_name("scratch", taken_in, none);
        g_autofree char *b = kiln_generate_builder_name("scratch", taken_in, some);
        g_autofree char *c = kiln_generate_builder_name("/srv/images/rootfs", taken_in, some);
        g_autofree char *d = kiln_generate_builder_name("/srv/my image!", taken_in, none);
        g_autofree char *e = kiln_generate_builder_name("/", taken_in, none);

        g_assert_cmpstr(a, ==, "working-container");
        g_assert_cmpstr(b, ==, "working-container-3");
        g_assert_cmpstr(c, ==, "rootfs-working-container-2");
        g_assert_cmpstr(d, ==, "my-image--working-container");
        g_assert_true(kiln_validate_name("name", d, NULL));
        g_assert_cmpstr(e, ==, "working-container");
}

static void test_action_table(void)
{
        g_assert_cmpstr(kiln_auth_action_for(KILN_MANAGER_INTERFACE, "CreateBuilder"), ==,
                        KILN_ACTION_CREATE);
        g_assert_cmpstr(kiln_auth_action_for(KILN_BUILDER_INTERFACE, "Mount"), ==, KILN_ACTION_MOUNT);
        g_assert_cmpstr(kiln_auth_action_for(KILN_BUILDER_INTERFACE, "Run"), ==, KILN_ACTION_RUN);
        g_assert_null(kiln_auth_action_for(KILN_BUILDER_INTERFACE, "Configure"));
        g_assert_null(kiln_auth_action_for(KILN_MANAGER_INTERFACE, "Mount"));
}

/* The one size grammar (base/size.h): kiln.conf, run options, tmpfs sizes and the CLI read it. */
static void test_sizes(void)
{
        static const struct {
                const char *value;
                guint64 bytes;
        } good[] = {
                {"0", 0},
                {"1", 1},
                {"512b", 512},
                {"4k", 4096},
                {"4K", 4096},
                {"64m", 64ull << 20},
                {"2G", 2ull << 30},
                {"007k", 7ull << 10},
                {"18446744073709551615", G_MAXUINT64},
                {"18446744073709551615b", G_MAXUINT64},
                {"17179869183g", 17179869183ull << 30},
        };
        static const char *const bad[] = {
                "",
                "k",
                "-1",
                "+1",
                " 1",
                "1 ",
                "1kb",
                "1t",
                "1%",
                "1.5m",
                "0x10",
                "m1",
                "18446744073709551616",
                "99999999999999999999999",
                "18014398509481984k",
                "17179869184g",
        };
        guint64 n;

        for (gsize i = 0; i < G_N_ELEMENTS(good); i++) {
                n = 1;
                g_assert_true(kiln_parse_size(good[i].value, &n));
                g_assert_cmpuint(n, ==, good[i].bytes);
        }
        for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
                n = 42;
                if (kiln_parse_size(bad[i], &n))
                        g_error("'%s' was read as %" G_GUINT64_FORMAT, bad[i], n);
                g_assert_cmpuint(n, ==, 42); /* untouched on failure */
        }
        g_assert_false(kiln_parse_size(NULL, &n));
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/validate/names", test_names);
        g_test_add_func("/validate/ids", test_ids);
        g_test_add_func("/validate/env", test_env);
        g_test_add_func("/validate/paths-and-specs", test_paths_and_specs);
        g_test_add_func("/validate/capabilities", test_capabilities);
        g_test_add_func("/validate/ulimits-and-volumes", test_ulimits_and_volumes);
        g_test_add_func("/validate/generated-names", test_generated_names);
        g_test_add_func("/validate/sizes", test_sizes);
        g_test_add_func("/auth/action-table", test_action_table);
        return g_test_run();
}

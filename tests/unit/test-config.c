/* SPDX-License-Identifier: Apache-2.0 */
#include <glib/gstdio.h>

#include "config.h"

static char *write_temp(const char *contents)
{
        char *path = NULL;
        int fd = g_file_open_tmp("kiln-conf-XXXXXX", &path, NULL);

        g_assert_cmpint(fd, >=, 0);
        g_assert_true(g_file_set_contents(path, contents, -1, NULL));
        close(fd);
        return path;
}

static void test_defaults(void)
{
        g_autoptr(KilnConfig) c = kiln_config_new_defaults();

        g_assert_cmpstr(c->state_dir, ==, "/var/lib/kiln");
        g_assert_cmpstr(c->runtime_dir, ==, "/run/kiln");
        g_assert_cmpstr(c->default_isolation, ==, "oci");
        g_assert_cmpuint(c->max_array_length, >, 0);
}

static void test_overrides(void)
{
        g_autofree char *path = write_temp("[Paths]\nStateDirectory=/tmp/s\nRuntimeDirectory=/tmp/r\n"
                                           "[Limits]\nBuildersPerUser=3\nMaxArrayLength=8\n"
                                           "[Run]\nDefaultIsolation=chroot\nRuntimes=crun;runc;\n");
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnConfig) c = kiln_config_load(path, &error);

        g_assert_no_error(error);
        g_assert_cmpstr(c->state_dir, ==, "/tmp/s");
        g_assert_cmpstr(c->runtime_dir, ==, "/tmp/r");
        g_assert_cmpuint(c->builders_per_user, ==, 3);
        g_assert_cmpuint(c->max_array_length, ==, 8);
        g_assert_cmpstr(c->default_isolation, ==, "chroot");
        g_assert_cmpstr(c->runtimes[0], ==, "crun");
        g_unlink(path);
}

static void test_rejects(void)
{
        static const char *const bad[] = {
                "[Paths]\nStateDirectory=relative/dir\n",
                "[Limits]\nMaxArrayLength=0\n",
                "[Limits]\nMaxStringLength=lots\n",
                "[Run]\nDefaultIsolation=vm\n",
                "not a key file",
                NULL,
        };

        for (const char *const *b = bad; *b; b++) {
                g_autofree char *path = write_temp(*b);
                g_autoptr(GError) error = NULL;
                g_autoptr(KilnConfig) c = kiln_config_load(path, &error);
                g_assert_null(c);
                g_assert_nonnull(error);
                g_unlink(path);
        }
}

static void test_missing_explicit_file(void)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnConfig) c = kiln_config_load("/nonexistent/kiln.conf", &error);

        g_assert_null(c);
        g_assert_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT);
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/config/defaults", test_defaults);
        g_test_add_func("/config/overrides", test_overrides);
        g_test_add_func("/config/rejects", test_rejects);
        g_test_add_func("/config/missing-explicit-file", test_missing_explicit_file);
        return g_test_run();
}

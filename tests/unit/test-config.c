/* SPDX-License-Identifier: Apache-2.0 */
#include <glib/gstdio.h>
#include <string.h>

#include "base/config.h"

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
        g_assert_false(c->no_new_privileges);
        g_assert_cmpuint(c->keep_mounted_seconds, ==, 10);
        g_assert_cmpstr(c->subuid_file, ==, "/etc/subuid");
        g_assert_cmpstr(c->subgid_file, ==, "/etc/subgid");
        g_assert_cmpuint(c->id_pool_start, ==, 3221225472u);
        g_assert_cmpuint(c->id_range_size, ==, 65536);
        /* whole slots only, and the last id of the pool is below 4294967295 */
        g_assert_cmpuint(c->id_pool_size % c->id_range_size, ==, 0);
        g_assert_cmpuint((guint64)c->id_pool_start + c->id_pool_size, <=, G_MAXUINT32);
        g_assert_cmpstr(c->default_userns_root, ==, "host");
}

static void test_overrides(void)
{
        g_autofree char *path = write_temp("[Paths]\nStateDirectory=/tmp/s\nRuntimeDirectory=/tmp/r\n"
                                           "[Limits]\nBuildersPerUser=3\nMaxArrayLength=8\n"
                                           "[Run]\nDefaultIsolation=chroot\nRuntimes=crun;runc;\n"
                                           "KeepMountedSeconds=0\n");
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnConfig) c = kiln_config_load(path, &error);

        g_assert_no_error(error);
        g_assert_cmpstr(c->state_dir, ==, "/tmp/s");
        g_assert_cmpstr(c->runtime_dir, ==, "/tmp/r");
        g_assert_cmpuint(c->builders_per_user, ==, 3);
        g_assert_cmpuint(c->max_array_length, ==, 8);
        g_assert_cmpstr(c->default_isolation, ==, "chroot");
        g_assert_cmpstr(c->runtimes[0], ==, "crun");
        g_assert_cmpuint(c->keep_mounted_seconds, ==, 0);
        g_unlink(path);
}

static void test_user_namespace(void)
{
        g_autofree char *path =
                write_temp("[Run]\nNoNewPrivileges=true\n"
                           "[UserNamespace]\nSubUidFile=/tmp/subuid\nSubGidFile=/tmp/subgid\n"
                           "PoolStart=0\nPoolSize=4294967295\nRangeSize=1\nDefaultForRoot=auto\n");
        g_autofree char *disabled = write_temp("[UserNamespace]\nPoolStart=4294967294\nPoolSize=0\n");
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnConfig) c = kiln_config_load(path, &error);
        g_autoptr(KilnConfig) d = NULL;

        g_assert_no_error(error);
        g_assert_true(c->no_new_privileges);
        g_assert_cmpstr(c->subuid_file, ==, "/tmp/subuid");
        g_assert_cmpstr(c->subgid_file, ==, "/tmp/subgid");
        g_assert_cmpuint(c->id_pool_start, ==, 0);
        g_assert_cmpuint(c->id_pool_size, ==, 4294967295u);
        g_assert_cmpuint(c->id_range_size, ==, 1);
        g_assert_cmpstr(c->default_userns_root, ==, "auto");

        d = kiln_config_load(disabled, &error);
        g_assert_no_error(error);
        g_assert_cmpuint(d->id_pool_size, ==, 0);
        g_unlink(path);
        g_unlink(disabled);
}

/* The message names the group and the key. */
static void test_user_namespace_rejects(void)
{
        static const struct {
                const char *conf;
                const char *says;
        } bad[] = {
                {"[UserNamespace]\nSubUidFile=etc/subuid\n",
                 "[UserNamespace] SubUidFile must be an absolute path"},
                {"[UserNamespace]\nSubGidFile=\n", "[UserNamespace] SubGidFile must be an absolute path"},
                {"[UserNamespace]\nPoolStart=4294967295\n", "[UserNamespace] PoolStart must be a number"},
                {"[UserNamespace]\nPoolStart=-1\n", "[UserNamespace] PoolStart must be a number"},
                {"[UserNamespace]\nPoolSize=4294967296\n", "[UserNamespace] PoolSize must be a number"},
                {"[UserNamespace]\nRangeSize=0\n", "[UserNamespace] RangeSize must be a number between 1"},
                /* 0xC0000000 + 2^30 would include 4294967295 */
                {"[UserNamespace]\nPoolStart=3221225472\nPoolSize=1073741824\n",
                 "[UserNamespace] PoolStart + PoolSize must not exceed 4294967295"},
                {"[UserNamespace]\nPoolSize=100\nRangeSize=65536\n", "[UserNamespace] PoolSize must be 0"},
                {"[UserNamespace]\nDefaultForRoot=maybe\n",
                 "[UserNamespace] DefaultForRoot must be 'host' or 'auto'"},
                {"[Run]\nNoNewPrivileges=perhaps\n", "[Run] NoNewPrivileges must be true or false"},
                {"[Run]\nKeepMountedSeconds=-1\n", "[Run] KeepMountedSeconds must be a number between 0"},
        };

        for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autofree char *path = write_temp(bad[i].conf);
                g_autoptr(GError) error = NULL;
                g_autoptr(KilnConfig) c = kiln_config_load(path, &error);

                g_assert_null(c);
                g_assert_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE);
                if (!g_str_has_prefix(error->message, bad[i].says))
                        g_error("'%s' does not start with '%s'", error->message, bad[i].says);
                g_unlink(path);
        }
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

/* [Resources]: podman's pids limit, no memory limit, systemd's CPU weight, tmpfs bounded by half of the
 * RAM; sizes take k, m, g; the cgroup parent is a plain cgroup path. */
static void test_resources(void)
{
        g_autoptr(KilnConfig) d = kiln_config_new_defaults();
        g_autofree char *path = write_temp("[Resources]\nPidsLimit=100\nMemory=512m\nCPUWeight=50\n"
                                           "TmpfsMaxSize=1g\nCgroupParent=kiln-test/env-1\n");
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnConfig) c = kiln_config_load(path, &error);
        static const char *const bad[] = {
                "[Resources]\nPidsLimit=-1\n",      "[Resources]\nMemory=12q\n",
                "[Resources]\nCPUWeight=0\n",       "[Resources]\nCPUWeight=10001\n",
                "[Resources]\nCgroupParent=../x\n", "[Resources]\nCgroupParent=a//b\n",
                "[Resources]\nCgroupParent=a b\n",  NULL,
        };

        g_assert_cmpuint(d->pids_limit, ==, 2048);
        g_assert_cmpuint(d->memory, ==, 0);
        g_assert_cmpuint(d->cpu_weight, ==, 100);
        g_assert_cmpuint(d->tmpfs_max_size, >, 0);
        g_assert_cmpstr(d->cgroup_parent, ==, "kiln");
        g_assert_no_error(error);
        g_assert_cmpuint(c->pids_limit, ==, 100);
        g_assert_cmpuint(c->memory, ==, G_GUINT64_CONSTANT(512) << 20);
        g_assert_cmpuint(c->cpu_weight, ==, 50);
        g_assert_cmpuint(c->tmpfs_max_size, ==, G_GUINT64_CONSTANT(1) << 30);
        g_assert_cmpstr(c->cgroup_parent, ==, "kiln-test/env-1");
        g_unlink(path);
        for (const char *const *b = bad; *b; b++) {
                g_autofree char *bad_path = write_temp(*b);
                g_autoptr(GError) bad_error = NULL;
                g_autoptr(KilnConfig) bad_config = kiln_config_load(bad_path, &bad_error);
                g_assert_null(bad_config);
                g_assert_error(bad_error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE);
                g_unlink(bad_path);
        }
}

static void test_missing_explicit_file(void)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnConfig) c = kiln_config_load("/nonexistent/kiln.conf", &error);

        g_assert_null(c);
        g_assert_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT);
}

/* The storage bounds: 64-bit byte counts, 0 turning a bound off, anything else refused. */
static void test_storage_bytes(void)
{
        g_autofree char *path = write_temp("[Limits]\nImportBytes=0\nStorageBytesPerUser=21474836480000\n");
        g_autofree char *bad = write_temp("[Limits]\nImportBytes=-1\n");
        g_autoptr(KilnConfig) defaults = kiln_config_new_defaults();
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnConfig) c = kiln_config_load(path, &error);
        g_autoptr(KilnConfig) d = NULL;

        g_assert_cmpuint(defaults->import_bytes, ==, G_GUINT64_CONSTANT(10) << 30);
        g_assert_cmpuint(defaults->storage_bytes_per_user, ==, G_GUINT64_CONSTANT(20) << 30);
        g_assert_no_error(error);
        g_assert_cmpuint(c->import_bytes, ==, G_MAXUINT64);
        g_assert_cmpuint(c->storage_bytes_per_user, ==, G_GUINT64_CONSTANT(21474836480000));
        d = kiln_config_load(bad, &error);
        g_assert_null(d);
        g_assert_nonnull(strstr(error->message, "ImportBytes"));
        g_unlink(path);
        g_unlink(bad);
}

/* [Hooks] Directories: containers-common's two by default, the administrator's last; a list of
 * absolute paths; empty turns hooks off; a relative path is refused, naming the key. */
static void test_hooks(void)
{
        g_autoptr(KilnConfig) d = kiln_config_new_defaults();
        g_autofree char *path = write_temp("[Hooks]\nDirectories=/a/hooks.d; /b/hooks.d ;\n");
        g_autofree char *off = write_temp("[Hooks]\nDirectories=\n");
        g_autofree char *bad = write_temp("[Hooks]\nDirectories=/a;hooks.d\n");
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnConfig) c = NULL;
        g_autoptr(KilnConfig) o = NULL;
        g_autoptr(KilnConfig) b = NULL;

        g_assert_cmpuint(g_strv_length(d->hooks_directories), ==, 2);
        g_assert_cmpstr(d->hooks_directories[0], ==, "/usr/share/containers/oci/hooks.d");
        g_assert_cmpstr(d->hooks_directories[1], ==, "/etc/containers/oci/hooks.d");
        c = kiln_config_load(path, &error);
        g_assert_no_error(error);
        g_assert_cmpuint(g_strv_length(c->hooks_directories), ==, 2);
        g_assert_cmpstr(c->hooks_directories[1], ==, "/b/hooks.d");
        o = kiln_config_load(off, &error);
        g_assert_no_error(error);
        g_assert_cmpuint(g_strv_length(o->hooks_directories), ==, 0);
        b = kiln_config_load(bad, &error);
        g_assert_null(b);
        g_assert_nonnull(strstr(error->message, "Directories"));
        g_unlink(path);
        g_unlink(off);
        g_unlink(bad);
}

/* Run parity: [CDI] SpecDirectories, spaces or ';' between absolute paths, later ones winning. */
static void test_cdi(void)
{
        g_autoptr(KilnConfig) d = kiln_config_new_defaults();
        g_autofree char *path = write_temp("[CDI]\nSpecDirectories=/a  /b;/c\n");
        g_autofree char *empty_path = write_temp("[CDI]\nSpecDirectories=\n");
        g_autofree char *bad_path = write_temp("[CDI]\nSpecDirectories=/a cdi\n");
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnConfig) c = kiln_config_load(path, &error);
        g_autoptr(KilnConfig) empty = NULL;
        g_autoptr(KilnConfig) bad = NULL;

        g_assert_no_error(error);
        g_assert_cmpstrv(d->cdi_spec_dirs, ((const char *const[]){"/etc/cdi", "/var/run/cdi", NULL}));
        g_assert_cmpstrv(c->cdi_spec_dirs, ((const char *const[]){"/a", "/b", "/c", NULL}));
        empty = kiln_config_load(empty_path, &error);
        g_assert_no_error(error);
        g_assert_cmpstrv(empty->cdi_spec_dirs, ((const char *const[]){NULL}));
        bad = kiln_config_load(bad_path, &error);
        g_assert_null(bad);
        g_assert_nonnull(strstr(error->message, "SpecDirectories"));
        g_unlink(path);
        g_unlink(empty_path);
        g_unlink(bad_path);
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/config/defaults", test_defaults);
        g_test_add_func("/config/overrides", test_overrides);
        g_test_add_func("/config/rejects", test_rejects);
        g_test_add_func("/config/user-namespace", test_user_namespace);
        g_test_add_func("/config/user-namespace-rejects", test_user_namespace_rejects);
        g_test_add_func("/config/missing-explicit-file", test_missing_explicit_file);
        g_test_add_func("/config/storage-bytes", test_storage_bytes);
        g_test_add_func("/config/resources", test_resources);
        g_test_add_func("/config/hooks", test_hooks);
        g_test_add_func("/config/cdi", test_cdi);
        return g_test_run();
}

/* SPDX-License-Identifier: Apache-2.0 */
#include "kiln-build-config.h"

#include "config.h"

#define DEFAULT_CONFIG_FILE KILN_SYSCONFDIR "/kiln/kiln.conf"

KilnConfig *kiln_config_new_defaults(void)
{
        KilnConfig *c = g_new0(KilnConfig, 1);
        static const char *const runtimes[] = {"runc", "crun", NULL};

        c->state_dir = g_strdup("/var/lib/kiln");
        c->runtime_dir = g_strdup("/run/kiln");
        c->data_dir = g_strdup(KILN_PKGDATADIR);
        c->helper_dir = g_strdup(KILN_LIBEXECDIR "/kiln");
        c->builders_per_user = 100;
        c->max_builders = 10000;
        c->max_array_length = 256;
        c->max_string_length = 4096;
        c->processes_per_user = 64;
        c->capture_bytes = 1024 * 1024;
        c->process_linger_seconds = 60;
        c->default_isolation = g_strdup("oci");
        c->runtimes = g_strdupv((char **)runtimes);
        return c;
}

void kiln_config_free(KilnConfig *c)
{
        if (!c)
                return;
        g_free(c->state_dir);
        g_free(c->runtime_dir);
        g_free(c->data_dir);
        g_free(c->helper_dir);
        g_free(c->default_isolation);
        g_strfreev(c->runtimes);
        g_free(c);
}

/* A directory setting must be absolute: the service never resolves paths against its cwd. */
static gboolean read_dir(GKeyFile *kf, const char *key, char **field, GError **error)
{
        g_autoptr(GError) local = NULL;
        g_autofree char *v = g_key_file_get_string(kf, "Paths", key, &local);

        if (!v)
                return TRUE;
        if (!g_path_is_absolute(v)) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "[Paths] %s must be an absolute path, got '%s'", key, v);
                return FALSE;
        }
        g_free(*field);
        *field = g_steal_pointer(&v);
        return TRUE;
}

static gboolean read_uint(GKeyFile *kf, const char *group, const char *key, unsigned min, unsigned *field,
                          GError **error)
{
        g_autoptr(GError) local = NULL;
        guint64 v;

        if (!g_key_file_has_key(kf, group, key, NULL))
                return TRUE;
        v = g_key_file_get_uint64(kf, group, key, &local);
        if (local || v < min || v > G_MAXINT) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "[%s] %s must be a number between %u and %d", group, key, min, G_MAXINT);
                return FALSE;
        }
        *field = (unsigned)v;
        return TRUE;
}

KilnConfig *kiln_config_load(const char *path, GError **error)
{
        g_autoptr(KilnConfig) c = kiln_config_new_defaults();
        g_autoptr(GKeyFile) kf = g_key_file_new();
        g_autoptr(GError) local = NULL;
        g_autofree char *isolation = NULL;
        char **runtimes;

        if (!g_key_file_load_from_file(kf, path ? path : DEFAULT_CONFIG_FILE, G_KEY_FILE_NONE, &local)) {
                if (!path && g_error_matches(local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
                        return g_steal_pointer(&c);
                g_propagate_prefixed_error(error, g_steal_pointer(&local), "%s: ",
                                           path ? path : DEFAULT_CONFIG_FILE);
                return NULL;
        }

        if (!read_dir(kf, "StateDirectory", &c->state_dir, error) ||
            !read_dir(kf, "RuntimeDirectory", &c->runtime_dir, error) ||
            !read_dir(kf, "DataDirectory", &c->data_dir, error) ||
            !read_dir(kf, "HelperDirectory", &c->helper_dir, error) ||
            !read_uint(kf, "Limits", "BuildersPerUser", 0, &c->builders_per_user, error) ||
            !read_uint(kf, "Limits", "MaxBuilders", 1, &c->max_builders, error) ||
            !read_uint(kf, "Limits", "MaxArrayLength", 1, &c->max_array_length, error) ||
            !read_uint(kf, "Limits", "MaxStringLength", 64, &c->max_string_length, error) ||
            !read_uint(kf, "Limits", "ProcessesPerUser", 0, &c->processes_per_user, error) ||
            !read_uint(kf, "Limits", "CaptureBytes", 1, &c->capture_bytes, error) ||
            !read_uint(kf, "Process", "LingerSeconds", 0, &c->process_linger_seconds, error))
                return NULL;

        isolation = g_key_file_get_string(kf, "Run", "DefaultIsolation", NULL);
        if (isolation) {
                if (!g_str_equal(isolation, "oci") && !g_str_equal(isolation, "chroot")) {
                        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                                    "[Run] DefaultIsolation must be 'oci' or 'chroot', got '%s'", isolation);
                        return NULL;
                }
                g_free(c->default_isolation);
                c->default_isolation = g_steal_pointer(&isolation);
        }
        runtimes = g_key_file_get_string_list(kf, "Run", "Runtimes", NULL, NULL);
        if (runtimes) {
                g_strfreev(c->runtimes);
                c->runtimes = runtimes;
        }
        return g_steal_pointer(&c);
}

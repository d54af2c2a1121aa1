/* SPDX-License-Identifier: Apache-2.0 */
#include "kiln-build-config.h"

#include <string.h>
#include <sys/sysinfo.h>

#include "base/config.h"
#include "base/size.h"

#define DEFAULT_CONFIG_FILE KILN_SYSCONFDIR "/kiln/kiln.conf"
#define KILN_DEFAULT_HOOKS_DIRECTORIES "/usr/share/containers/oci/hooks.d;/etc/containers/oci/hooks.d"

/* The kernel's own default size of a tmpfs, [Resources] TmpfsMaxSize's: nothing that fitted before is
 * refused. */
static guint64 half_of_ram(void)
{
        struct sysinfo si;

        return sysinfo(&si) == 0 && si.totalram ? (guint64)si.totalram * si.mem_unit / 2 : (guint64)1 << 30;
}

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
        /* polkit checks in progress hold pending replies on kilnd's bus connection, which the
         * system bus caps at 128: one user must not fill them, and all users together must not. */
        c->authorizations_per_user = 16;
        c->max_authorizations = 100;
        c->authorization_timeout_seconds = 25;
        c->interactive_authorization_timeout_seconds = 300;
        /* 256 KiB of arguments is many times what a build step's command line needs; 4 MiB per user still
         * lets ProcessesPerUser runs of 64 KiB coexist and keeps one user's share of a listing small next
         * to the bus's 32 MiB message limit (docs/decisions.md). */
        c->argument_bytes = 256 * 1024;
        c->process_bytes_per_user = 4 * 1024 * 1024;
        c->lingering_per_user = 64;
        c->descriptors_per_user = 1024;
        /* Storage bounds: large enough for a distribution's root file system, small enough that one
         * caller cannot fill a state file system of a few hundred GiB on his own. */
        c->import_bytes = G_GUINT64_CONSTANT(10) << 30;
        c->storage_bytes_per_user = G_GUINT64_CONSTANT(20) << 30;
        /* Images: a large distribution image is a few GiB in a few dozen layers. */
        c->image_bytes = G_GUINT64_CONSTANT(10) << 30;
        c->layers_per_image = 128;
        c->entries_per_layer = 1000000;
        /* Copies: as large as an import; each one in progress holds a thread and three descriptors. */
        c->copy_bytes = G_GUINT64_CONSTANT(10) << 30;
        c->copy_entries = 1000000;
        c->copies_per_user = 4;
        c->images_per_user = 100; /* images out: as many as builders */
        /* Images out: a config is held in memory for each image; 256 KiB is many times a real one
         * (docs/decisions.md has the arithmetic). */
        c->image_config_bytes = 256 * 1024;
        c->default_isolation = g_strdup("oci");
        c->runtimes = g_strdupv((char **)runtimes);
        c->no_new_privileges = FALSE;
        /* Long enough to bridge the steps of a build script, short enough that an idle builder
         * leaves the mount table soon. */
        c->keep_mounted_seconds = 10;
        c->idmapped_layers = TRUE;
        c->subuid_file = g_strdup("/etc/subuid");
        c->subgid_file = g_strdup("/etc/subgid");
        /* The top quarter of the id space, far above the ids distributions give to accounts and to
         * /etc/subuid ranges (from 100000), less its last slot: that one would hold (uid_t)-1. */
        c->id_pool_start = 0xC0000000u;
        c->id_pool_size = 0x40000000u - 65536;
        c->id_range_size = 65536;
        c->default_userns_root = g_strdup("host");
        /* [Resources]: podman's pids limit; no memory limit (builds differ too much for one default);
         * systemd's default CPU weight. */
        c->pids_limit = 2048;
        c->memory = 0;
        c->cpu_weight = 100;
        c->tmpfs_max_size = half_of_ram();
        c->cgroup_parent = g_strdup("kiln");
        /* [Network]: the helpers' own names, found in PATH as Debian installs them. */
        c->pasta_program = g_strdup("pasta");
        c->slirp4netns_program = g_strdup("slirp4netns");
        c->network_helper_timeout_seconds = 10;
        /* [Hooks]: containers-common's directories, the administrator's (/etc) last, as buildah. */
        c->hooks_directories = g_strsplit(KILN_DEFAULT_HOOKS_DIRECTORIES, ";", -1);
        /* [CDI]: the CDI library's own two directories, the run-time one winning. */
        c->cdi_spec_dirs = g_strsplit("/etc/cdi /var/run/cdi", " ", -1);
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
        g_free(c->subuid_file);
        g_free(c->subgid_file);
        g_free(c->default_userns_root);
        g_free(c->cgroup_parent);
        g_free(c->network_default);
        g_free(c->pasta_program);
        g_free(c->slirp4netns_program);
        g_strfreev(c->hooks_directories);
        g_strfreev(c->cdi_spec_dirs);
        g_free(c);
}

/* A path setting must be absolute: the service never resolves paths against its cwd. */
static gboolean read_path(GKeyFile *kf, const char *group, const char *key, char **field, GError **error)
{
        g_autofree char *v = g_key_file_get_string(kf, group, key, NULL);

        if (!v)
                return TRUE;
        if (!g_path_is_absolute(v)) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "[%s] %s must be an absolute path, got '%s'", group, key, v);
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

/* A byte count: any 64-bit number, 0 meaning no bound (stored as G_MAXUINT64). Parsed as a string:
 * g_key_file_get_uint64 would take "-1" for the largest number. */
static gboolean read_bytes(GKeyFile *kf, const char *group, const char *key, guint64 *field, GError **error)
{
        g_autofree char *text = g_key_file_get_value(kf, group, key, NULL);
        guint64 v;

        if (!text)
                return TRUE;
        g_strstrip(text);
        if (!g_ascii_string_to_unsigned(text, 10, 0, G_MAXUINT64, &v, NULL)) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "[%s] %s must be a number of bytes (0: no bound), got '%s'", group, key, text);
                return FALSE;
        }
        *field = v == 0 ? G_MAXUINT64 : v;
        return TRUE;
}

/* Ids: the whole 32-bit range is meaningful, so these are read apart from the G_MAXINT-bounded limits. */
static gboolean read_id(GKeyFile *kf, const char *group, const char *key, guint32 min, guint32 max,
                        guint32 *field, GError **error)
{
        g_autoptr(GError) local = NULL;
        guint64 v;

        if (!g_key_file_has_key(kf, group, key, NULL))
                return TRUE;
        v = g_key_file_get_uint64(kf, group, key, &local);
        if (local || v < min || v > max) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "[%s] %s must be a number between %u and %u", group, key, min, max);
                return FALSE;
        }
        *field = (guint32)v;
        return TRUE;
}

static gboolean read_bool(GKeyFile *kf, const char *group, const char *key, gboolean *field, GError **error)
{
        g_autoptr(GError) local = NULL;
        gboolean v;

        if (!g_key_file_has_key(kf, group, key, NULL))
                return TRUE;
        v = g_key_file_get_boolean(kf, group, key, &local);
        if (local) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "[%s] %s must be true or false", group, key);
                return FALSE;
        }
        *field = v;
        return TRUE;
}

/* A setting that names one of two choices. */
static gboolean read_choice(GKeyFile *kf, const char *group, const char *key, const char *a, const char *b,
                            char **field, GError **error)
{
        g_autofree char *v = g_key_file_get_string(kf, group, key, NULL);

        if (!v)
                return TRUE;
        if (!g_str_equal(v, a) && !g_str_equal(v, b)) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "[%s] %s must be '%s' or '%s', got '%s'", group, key, a, b, v);
                return FALSE;
        }
        g_free(*field);
        *field = g_steal_pointer(&v);
        return TRUE;
}

/* The pool's slots must be real ids: (uid_t)-1 means "no change" to the kernel and is refused in
 * maps, so no slot may reach it; and a pool smaller than one range would silently give nothing. */
static gboolean check_pool(const KilnConfig *c, GError **error)
{
        if ((guint64)c->id_pool_start + c->id_pool_size > G_MAXUINT32) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "[UserNamespace] PoolStart + PoolSize must not exceed %u (got %u + %u)",
                            G_MAXUINT32, c->id_pool_start, c->id_pool_size);
                return FALSE;
        }
        if (c->id_pool_size > 0 && c->id_pool_size < c->id_range_size) {
                g_set_error(
                        error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                        "[UserNamespace] PoolSize must be 0 (no pool) or at least RangeSize (%u), got %u",
                        c->id_range_size, c->id_pool_size);
                return FALSE;
        }
        return TRUE;
}

/* The bounds on what one caller can make kilnd keep. A single Process object must fit in one bus message
 * with room to spare, whatever else is configured: hence the upper bound of ArgumentBytes. */
static gboolean read_process_limits(GKeyFile *kf, KilnConfig *c, GError **error)
{
        if (!read_uint(kf, "Limits", "ArgumentBytes", 1, &c->argument_bytes, error) ||
            !read_uint(kf, "Limits", "ProcessBytesPerUser", 1, &c->process_bytes_per_user, error) ||
            !read_uint(kf, "Limits", "LingeringProcessesPerUser", 0, &c->lingering_per_user, error) ||
            !read_uint(kf, "Limits", "DescriptorsPerUser", 1, &c->descriptors_per_user, error))
                return FALSE;
        if (c->argument_bytes > 16 * 1024 * 1024) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "[Limits] ArgumentBytes must be at most %u (half a bus message), got %u",
                            16 * 1024 * 1024, c->argument_bytes);
                return FALSE;
        }
        return TRUE;
}

/* ---- [Resources] ---- */

/* A number of bytes (base/size.h: N, or N with a b, k, m or g suffix, powers of 1024). */
static gboolean read_size(GKeyFile *kf, const char *group, const char *key, guint64 *field, GError **error)
{
        g_autofree char *v = g_key_file_get_string(kf, group, key, NULL);

        if (!v)
                return TRUE;
        g_strstrip(v);
        if (!kiln_parse_size(v, field)) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "[%s] %s must be a number of bytes (with k, m or g), got '%s'", group, key, v);
                return FALSE;
        }
        return TRUE;
}

static gboolean read_resources(GKeyFile *kf, KilnConfig *c, GError **error)
{
        unsigned pids = (unsigned)c->pids_limit, weight = (unsigned)c->cpu_weight;
        g_autofree char *parent = g_key_file_get_string(kf, "Resources", "CgroupParent", NULL);

        if (!read_uint(kf, "Resources", "PidsLimit", 0, &pids, error) ||
            !read_size(kf, "Resources", "Memory", &c->memory, error) ||
            !read_uint(kf, "Resources", "CPUWeight", 1, &weight, error) ||
            !read_size(kf, "Resources", "TmpfsMaxSize", &c->tmpfs_max_size, error))
                return FALSE;
        if (weight > 10000) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "[Resources] CPUWeight must be between 1 and 10000, got %u", weight);
                return FALSE;
        }
        c->pids_limit = pids;
        c->cpu_weight = weight;
        if (parent) {
                gboolean valid = *g_strstrip(parent) && !g_str_has_suffix(parent, "/");
                g_auto(GStrv) names = g_strsplit(parent[0] == '/' ? parent + 1 : parent, "/", -1);

                /* A cgroup path (or, under systemd, a slice name): plain names, never ".." or empty. */
                for (char **n = names; valid && *n; n++)
                        valid = **n && **n != '.' &&
                                strspn(*n, "abcdefghijklmnopqrstuvwxyz"
                                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == strlen(*n);
                if (!valid) {
                        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                                    "[Resources] CgroupParent must be a cgroup path of [A-Za-z0-9_.-] "
                                    "names, none starting with '.', got '%s'",
                                    parent);
                        return FALSE;
                }
                g_free(c->cgroup_parent);
                c->cgroup_parent = g_steal_pointer(&parent);
        }
        if (c->tmpfs_max_size == 0)
                c->tmpfs_max_size = half_of_ram();
        return TRUE;
}

/* ---- [Network] ---- */

/* A program: a plain name (looked up in PATH when used) or an absolute path, never a relative one. */
static gboolean read_program(GKeyFile *kf, const char *key, char **field, GError **error)
{
        g_autofree char *v = g_key_file_get_string(kf, "Network", key, NULL);

        if (!v)
                return TRUE;
        g_strstrip(v);
        if (!*v || (!g_path_is_absolute(v) && strchr(v, '/'))) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "[Network] %s must be a program name or an absolute path, got '%s'", key, v);
                return FALSE;
        }
        g_free(*field);
        *field = g_steal_pointer(&v);
        return TRUE;
}

/* Default= names only networks that need no privilege: a default of host would make every run need
 * run-privileged. */
static gboolean read_network(GKeyFile *kf, KilnConfig *c, GError **error)
{
        static const char *const allowed[] = {"", "private", "none", "pasta", "slirp4netns", NULL};
        g_autofree char *v = g_key_file_get_string(kf, "Network", "Default", NULL);

        if (v && !g_strv_contains(allowed, g_strstrip(v))) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "[Network] Default must be private, none, pasta or slirp4netns (or empty), got "
                            "'%s'",
                            v);
                return FALSE;
        }
        if (v) {
                g_free(c->network_default);
                c->network_default = g_steal_pointer(&v);
        }
        return read_program(kf, "Pasta", &c->pasta_program, error) &&
               read_program(kf, "Slirp4netns", &c->slirp4netns_program, error) &&
               read_uint(kf, "Network", "HelperTimeoutSeconds", 1, &c->network_helper_timeout_seconds,
                         error);
}

/* [GROUP] KEY: absolute directories separated by spaces or ';' (GKeyFile's list separator), into
 * *@dirs; present but empty turns the feature off (an empty list); absent keeps the default. */
static gboolean read_directories(GKeyFile *kf, const char *group, const char *key, char ***dirs,
                                 GError **error)
{
        g_autofree char *v = g_key_file_get_string(kf, group, key, NULL);
        g_autoptr(GStrvBuilder) b = g_strv_builder_new();
        g_auto(GStrv) parts = NULL;

        if (!v)
                return TRUE;
        parts = g_strsplit_set(v, " \t;", -1);
        for (char **p = parts; *p; p++) {
                if (!**p)
                        continue;
                if (**p != '/') {
                        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                                    "[%s] %s must be absolute paths, got '%s'", group, key, *p);
                        return FALSE;
                }
                g_strv_builder_add(b, *p);
        }
        g_strfreev(*dirs);
        *dirs = g_strv_builder_end(b);
        return TRUE;
}

KilnConfig *kiln_config_load(const char *path, GError **error)
{
        g_autoptr(KilnConfig) c = kiln_config_new_defaults();
        g_autoptr(GKeyFile) kf = g_key_file_new();
        g_autoptr(GError) local = NULL;
        char **runtimes;

        if (!g_key_file_load_from_file(kf, path ? path : DEFAULT_CONFIG_FILE, G_KEY_FILE_NONE, &local)) {
                if (!path && g_error_matches(local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
                        return g_steal_pointer(&c);
                g_propagate_prefixed_error(error, g_steal_pointer(&local),
                                           "%s: ", path ? path : DEFAULT_CONFIG_FILE);
                return NULL;
        }

        if (!read_path(kf, "Paths", "StateDirectory", &c->state_dir, error) ||
            !read_path(kf, "Paths", "RuntimeDirectory", &c->runtime_dir, error) ||
            !read_path(kf, "Paths", "DataDirectory", &c->data_dir, error) ||
            !read_path(kf, "Paths", "HelperDirectory", &c->helper_dir, error) ||
            !read_uint(kf, "Limits", "BuildersPerUser", 0, &c->builders_per_user, error) ||
            !read_uint(kf, "Limits", "MaxBuilders", 1, &c->max_builders, error) ||
            !read_uint(kf, "Limits", "MaxArrayLength", 1, &c->max_array_length, error) ||
            !read_uint(kf, "Limits", "MaxStringLength", 64, &c->max_string_length, error) ||
            !read_uint(kf, "Limits", "ProcessesPerUser", 0, &c->processes_per_user, error) ||
            !read_uint(kf, "Limits", "CaptureBytes", 1, &c->capture_bytes, error) ||
            !read_bytes(kf, "Limits", "ImportBytes", &c->import_bytes, error) ||
            !read_bytes(kf, "Limits", "StorageBytesPerUser", &c->storage_bytes_per_user, error) ||
            !read_bytes(kf, "Limits", "ImageBytes", &c->image_bytes, error) ||
            !read_uint(kf, "Limits", "LayersPerImage", 1, &c->layers_per_image, error) ||
            !read_uint(kf, "Limits", "EntriesPerLayer", 1, &c->entries_per_layer, error) ||
            !read_uint(kf, "Limits", "ImagesPerUser", 0, &c->images_per_user, error) ||
            !read_uint(kf, "Limits", "ImageConfigBytes", 4096, &c->image_config_bytes, error) ||
            !read_uint(kf, "Process", "LingerSeconds", 0, &c->process_linger_seconds, error) ||
            !read_uint(kf, "Limits", "AuthorizationsPerUser", 1, &c->authorizations_per_user, error) ||
            !read_uint(kf, "Limits", "MaxAuthorizations", 1, &c->max_authorizations, error) ||
            !read_uint(kf, "Limits", "AuthorizationTimeoutSeconds", 1, &c->authorization_timeout_seconds,
                       error) ||
            !read_uint(kf, "Limits", "InteractiveAuthorizationTimeoutSeconds", 1,
                       &c->interactive_authorization_timeout_seconds, error) ||
            !read_choice(kf, "Run", "DefaultIsolation", "oci", "chroot", &c->default_isolation, error) ||
            !read_bool(kf, "Run", "NoNewPrivileges", &c->no_new_privileges, error) ||
            !read_uint(kf, "Run", "KeepMountedSeconds", 0, &c->keep_mounted_seconds, error) ||
            !read_path(kf, "UserNamespace", "SubUidFile", &c->subuid_file, error) ||
            !read_path(kf, "UserNamespace", "SubGidFile", &c->subgid_file, error) ||
            !read_id(kf, "UserNamespace", "PoolStart", 0, G_MAXUINT32 - 1, &c->id_pool_start, error) ||
            !read_id(kf, "UserNamespace", "PoolSize", 0, G_MAXUINT32, &c->id_pool_size, error) ||
            !read_id(kf, "UserNamespace", "RangeSize", 1, G_MAXUINT32 - 1, &c->id_range_size, error) ||
            !read_choice(kf, "UserNamespace", "DefaultForRoot", "host", "auto", &c->default_userns_root,
                         error) ||
            !read_bool(kf, "UserNamespace", "IdMappedLayers", &c->idmapped_layers, error) ||
            !check_pool(c, error) || !read_resources(kf, c, error))
                return NULL;
        if (!read_process_limits(kf, c, error) || !read_network(kf, c, error))
                return NULL;
        if (!read_directories(kf, "Hooks", "Directories", &c->hooks_directories, error) ||
            !read_directories(kf, "CDI", "SpecDirectories", &c->cdi_spec_dirs, error))
                return NULL;
        if (!read_bytes(kf, "Limits", "CopyBytes", &c->copy_bytes, error) ||
            !read_bytes(kf, "Limits", "CopyEntries", &c->copy_entries, error) ||
            !read_uint(kf, "Limits", "CopiesPerUser", 1, &c->copies_per_user, error))
                return NULL;

        runtimes = g_key_file_get_string_list(kf, "Run", "Runtimes", NULL, NULL);
        if (runtimes) {
                g_strfreev(c->runtimes);
                c->runtimes = runtimes;
        }
        return g_steal_pointer(&c);
}

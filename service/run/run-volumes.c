/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "authz/caller-open.h"
#include "base/passwd.h"
#include "run/run-volumes.h"
#include "base/validate.h"

static const char *const propagations[] = {"private", "rprivate", "slave", "rslave",
                                           "shared",  "rshared",  NULL};

void kiln_run_volume_free(KilnRunVolume *v)
{
        if (!v)
                return;
        kiln_close_fdp(&v->fd);
        kiln_close_fdp(&v->upper_fd);
        kiln_close_fdp(&v->work_fd);
        g_free(v->upperdir);
        g_free(v->workdir);
        g_free(v->cache_id);
        g_free(v->cache_source);
        g_free(v->secret_id);
        g_free(v->arg);
        g_free(v->source);
        g_free(v->destination);
        g_strfreev(v->options);
        g_free(v);
}

static KilnRunVolume *volume_new(const char *arg, KilnRunVolumeKind kind)
{
        KilnRunVolume *v = g_new0(KilnRunVolume, 1);

        v->arg = g_strdup(arg);
        v->kind = kind;
        v->fd = v->upper_fd = v->work_fd = -1;
        return v;
}

/* One option of a bind mount (volume OPTS or a --mount key already translated): the flags go into
 * @v, the mount(8) options into @options. FALSE: not a bind option. */
static gboolean take_bind_option(KilnRunVolume *v, GStrvBuilder *options, const char *opt)
{
        if (g_str_equal(opt, "U"))
                v->flags |= KILN_RUN_VOLUME_CHOWN;
        else if (g_str_equal(opt, "O"))
                v->kind = KILN_RUN_VOLUME_OVERLAY;
        else if (g_str_equal(opt, "z") || g_str_equal(opt, "Z"))
                v->flags |= KILN_RUN_VOLUME_RELABEL;
        else if (g_str_equal(opt, "ro") || g_str_equal(opt, "rw") || g_str_equal(opt, "nosuid") ||
                 g_str_equal(opt, "nodev") || g_str_equal(opt, "noexec") ||
                 g_strv_contains(propagations, opt))
                g_strv_builder_add(options, opt);
        else
                return FALSE;
        return TRUE;
}

/* Run parity: upperdir=DIR and workdir=DIR of an `O` volume. FALSE with @error set: a bad value;
 * FALSE without: not one of them. */
static gboolean take_upper_option(KilnRunVolume *v, const char *opt, GError **error)
{
        const char *value;
        char **into;

        if (g_str_has_prefix(opt, "upperdir="))
                into = &v->upperdir, value = opt + strlen("upperdir=");
        else if (g_str_has_prefix(opt, "workdir="))
                into = &v->workdir, value = opt + strlen("workdir=");
        else
                return FALSE;
        /* Never given to overlayfs as a string (kilnd opens it and names the descriptor), but a path
         * that overlayfs would have split is refused all the same. */
        if (!kiln_validate_absolute_path(v->arg, value, FALSE, error))
                return FALSE;
        if (strpbrk(value, ":,\\="))
                return kiln_invalid(error, v->arg, "'%s' contains ':', ',', '=' or '\\'", value);
        g_free(*into);
        *into = g_strdup(value);
        return TRUE;
}

static KilnRunVolume *parse_volume_options(KilnRunVolume *owned, const char *options, GError **error)
{
        g_autoptr(KilnRunVolume) v = owned;
        g_autoptr(GStrvBuilder) kept = g_strv_builder_new();
        g_auto(GStrv) opts = options && *options ? g_strsplit(options, ",", -1) : NULL;

        for (char **o = opts; o && *o; o++) {
                g_autoptr(GError) local = NULL;
                if (take_upper_option(v, *o, &local))
                        continue;
                if (local) {
                        g_propagate_error(error, g_steal_pointer(&local));
                        return NULL;
                }
                if (!take_bind_option(v, kept, *o)) {
                        kiln_invalid(error, v->arg, "'%s' is not a volume option", *o);
                        return NULL;
                }
        }
        if ((v->upperdir || v->workdir) && v->kind != KILN_RUN_VOLUME_OVERLAY) {
                kiln_invalid(error, v->arg, "upperdir and workdir need 'O'");
                return NULL;
        }
        if (!v->upperdir != !v->workdir) {
                kiln_invalid(error, v->arg, "upperdir and workdir go together");
                return NULL;
        }
        v->options = g_strv_builder_end(kept);
        return g_steal_pointer(&v);
}

KilnRunVolume *kiln_run_volume_parse(const char *arg, const char *spec, GError **error)
{
        g_auto(GStrv) parts = NULL;
        KilnRunVolume *v;

        if (!kiln_validate_volume(arg, spec, error))
                return NULL;
        parts = g_strsplit(spec, ":", 3);
        v = volume_new(arg, KILN_RUN_VOLUME_BIND);
        v->source = g_strdup(parts[0]);
        v->destination = g_strdup(parts[1]);
        return parse_volume_options(v, parts[2], error);
}

KilnRunVolume *kiln_run_volume_parse_fd(const char *arg, const char *destination, const char *options,
                                        GError **error)
{
        /* The same rules as a path volume, with a placeholder for the source. */
        g_autofree char *spec = options && *options ? g_strdup_printf("/fd:%s:%s", destination, options)
                                                    : g_strdup_printf("/fd:%s", destination);
        KilnRunVolume *v;

        if (!kiln_validate_volume(arg, spec, error))
                return NULL;
        v = volume_new(arg, KILN_RUN_VOLUME_BIND);
        v->destination = g_strdup(destination);
        return parse_volume_options(v, options, error);
}

/* The value of @part when it is KEY=VALUE for one of @keys; NULL otherwise. */
static const char *key_value(const char *part, const char *const *keys)
{
        for (const char *const *k = keys; *k; k++) {
                size_t n = strlen(*k);
                if (strncmp(part, *k, n) == 0 && part[n] == '=')
                        return part + n + 1;
        }
        return NULL;
}

static void add_key_value(GStrvBuilder *options, const char *key, const char *value)
{
        g_autofree char *option = g_strconcat(key, value, NULL);

        g_strv_builder_add(options, option);
}

/* buildah's spellings of ro and rw: readonly, and ro=, rw=, readonly= with true or false (false
 * meaning the other one). Anything else is returned as it is. */
static const char *read_write_option(const char *part)
{
        static const char *const keys[] = {"ro", "rw", "readonly", NULL};
        static const char *const yes[] = {"true", "TRUE", "True", "1", NULL};
        static const char *const no[] = {"false", "FALSE", "False", "0", NULL};
        const char *value;
        gboolean rw;

        if (g_str_equal(part, "readonly"))
                return "ro";
        value = key_value(part, keys);
        if (!value || (!g_strv_contains(yes, value) && !g_strv_contains(no, value)))
                return part;
        rw = g_str_has_prefix(part, "rw=");
        return g_strv_contains(yes, value) == rw ? "rw" : "ro";
}

/* What a bind --mount may write, as buildah and BuildKit have it: read-only unless `rw`, and with
 * `rw` the writes go to a throw-away upper dir (the `O` overlay), never to the host; `-v` is the way
 * to write through. `rw` and `O` together are the same overlay. */
static gboolean bind_mount_writes(KilnRunVolume *v, gboolean nonrecursive, GError **error)
{
        gboolean rw = g_strv_contains((const char *const *)v->options, "rw");
        gboolean ro = g_strv_contains((const char *const *)v->options, "ro");

        if (nonrecursive)
                /* kiln binds recursively and has no non-recursive bind yet: refused, not ignored, as
                 * a caller asking for it means to hide what is mounted below the source. */
                return kiln_invalid(error, v->arg, "'bind-nonrecursive' is not supported yet");
        if (ro && rw)
                return kiln_invalid(error, v->arg, "'ro' and 'rw' together");
        if (rw)
                v->kind = KILN_RUN_VOLUME_OVERLAY;
        if (v->kind == KILN_RUN_VOLUME_OVERLAY)
                v->flags |= KILN_RUN_VOLUME_SCRATCH;
        else if (!ro && v->kind == KILN_RUN_VOLUME_BIND) {
                g_autoptr(GStrvBuilder) options = g_strv_builder_new();
                g_strv_builder_addv(options, (const char **)v->options);
                g_strv_builder_add(options, "ro");
                g_strfreev(v->options);
                v->options = g_strv_builder_end(options);
        }
        return TRUE;
}

/* ---- run parity: type=cache ---- */

static gboolean parse_u32(const char *arg, const char *key, const char *value, guint base, guint32 max,
                          guint32 *ret, GError **error)
{
        guint64 n;

        if (!g_ascii_string_to_unsigned(value, base, 0, max, &n, NULL))
                return kiln_invalid(error, arg, "'%s=%.32s' is not a number from 0 to %u%s", key, value, max,
                                    base == 8 ? " (octal)" : "");
        *ret = (guint32)n;
        return TRUE;
}

static KilnRunVolume *parse_cache_mount(const char *arg, char **parts, GError **error)
{
        static const char *const type_keys[] = {"type", NULL};
        static const char *const id_keys[] = {"id", NULL};
        static const char *const source_keys[] = {"source", "src", NULL};
        static const char *const destination_keys[] = {"destination", "dst", "target", NULL};
        static const char *const sharing_keys[] = {"sharing", NULL};
        static const char *const uid_keys[] = {"uid", NULL}, *const gid_keys[] = {"gid", NULL};
        static const char *const mode_keys[] = {"mode", NULL};
        g_autoptr(KilnRunVolume) v = volume_new(arg, KILN_RUN_VOLUME_CACHE);
        g_autofree char *destination = NULL;
        const char *id = NULL, *source = NULL, *x;
        gboolean ro = FALSE;

        v->cache_mode = 0755;
        for (char **p = parts; *p; p++) {
                const char *opt = read_write_option(*p);
                if (key_value(opt, type_keys))
                        continue;
                if ((x = key_value(opt, id_keys)))
                        id = x;
                else if ((x = key_value(opt, source_keys)))
                        source = x;
                else if ((x = key_value(opt, destination_keys))) {
                        g_free(destination);
                        destination = g_strdup(x);
                } else if ((x = key_value(opt, sharing_keys))) {
                        if (g_str_equal(x, "shared"))
                                v->cache_sharing = KILN_RUN_CACHE_SHARED;
                        else if (g_str_equal(x, "private"))
                                v->cache_sharing = KILN_RUN_CACHE_PRIVATE;
                        else if (g_str_equal(x, "locked"))
                                v->cache_sharing = KILN_RUN_CACHE_LOCKED;
                        else
                                return kiln_invalid(error, arg,
                                                    "'sharing=%.32s' is not shared, private or locked", x),
                                       NULL;
                } else if ((x = key_value(opt, uid_keys))) {
                        if (!parse_u32(arg, "uid", x, 10, G_MAXUINT32 - 1, &v->cache_uid, error))
                                return NULL;
                } else if ((x = key_value(opt, gid_keys))) {
                        if (!parse_u32(arg, "gid", x, 10, G_MAXUINT32 - 1, &v->cache_gid, error))
                                return NULL;
                } else if ((x = key_value(opt, mode_keys))) {
                        if (!parse_u32(arg, "mode", x, 8, 07777, &v->cache_mode, error))
                                return NULL;
                } else if (g_str_equal(opt, "ro") || g_str_equal(opt, "rw")) {
                        ro = g_str_equal(opt, "ro");
                } else if (g_str_has_prefix(opt, "from=")) {
                        return kiln_invalid(error, arg,
                                            "'from' is not supported: kiln has no build stages (see "
                                            "kiln-run(1))"),
                               NULL;
                } else {
                        return kiln_invalid(error, arg, "'%.64s' is not an option of a type=cache mount",
                                            *p),
                               NULL;
                }
        }
        if (!destination || !g_path_is_absolute(destination) ||
            !kiln_validate_absolute_path(arg, destination, FALSE, error)) {
                if (!error || !*error)
                        kiln_invalid(error, arg, "a type=cache mount needs an absolute target");
                return NULL;
        }
        /* The id names a directory of kilnd's: a name, never a path. Without one, the target stands
         * for it (as buildah does), hashed into a name. */
        if (id && !kiln_validate_name(arg, id, error))
                return NULL;
        v->cache_id = id ? g_strdup(id) : g_compute_checksum_for_string(G_CHECKSUM_SHA256, destination, -1);
        /* A directory inside the cache: relative, no '..', looked up inside the cache only. */
        if (source && source[strspn(source, "/.")] != '\0') {
                g_auto(GStrv) names = g_strsplit(source, "/", -1);
                g_autofree char *inside = g_strconcat("/", source, NULL);
                for (char **n = names; *n; n++)
                        if (g_str_equal(*n, ".."))
                                return kiln_invalid(error, arg, "source '%.64s' contains '..'", source),
                                       NULL;
                if (!kiln_validate_absolute_path(arg, inside, FALSE, error))
                        return NULL;
                v->cache_source = g_strdup(source + strspn(source, "/"));
        }
        v->destination = g_steal_pointer(&destination);
        v->options = g_strdupv((char *[]){ro ? "ro" : "rw", NULL});
        return g_steal_pointer(&v);
}

/* ---- run parity: type=secret ---- */

static KilnRunVolume *parse_secret_mount(const char *arg, char **parts, GError **error)
{
        static const char *const type_keys[] = {"type", NULL};
        static const char *const id_keys[] = {"id", NULL};
        static const char *const destination_keys[] = {"destination", "dst", "target", NULL};
        static const char *const uid_keys[] = {"uid", NULL}, *const gid_keys[] = {"gid", NULL};
        static const char *const mode_keys[] = {"mode", NULL};
        static const char *const required_keys[] = {"required", NULL};
        g_autoptr(KilnRunVolume) v = volume_new(arg, KILN_RUN_VOLUME_SECRET);
        const char *id = NULL, *destination = NULL, *x;

        v->cache_mode = 0400;
        for (char **p = parts; *p; p++) {
                if (key_value(*p, type_keys))
                        continue;
                if ((x = key_value(*p, id_keys)))
                        id = x;
                else if ((x = key_value(*p, destination_keys)))
                        destination = x;
                else if ((x = key_value(*p, uid_keys))) {
                        if (!parse_u32(arg, "uid", x, 10, G_MAXUINT32 - 1, &v->cache_uid, error))
                                return NULL;
                } else if ((x = key_value(*p, gid_keys))) {
                        if (!parse_u32(arg, "gid", x, 10, G_MAXUINT32 - 1, &v->cache_gid, error))
                                return NULL;
                } else if ((x = key_value(*p, mode_keys))) {
                        if (!parse_u32(arg, "mode", x, 8, 0777, &v->cache_mode, error))
                                return NULL;
                } else if (g_str_equal(*p, "required") || g_str_equal(*p, "required=true"))
                        v->secret_required = TRUE;
                else if ((x = key_value(*p, required_keys)) && g_str_equal(x, "false"))
                        v->secret_required = FALSE;
                else
                        return kiln_invalid(error, arg, "'%.64s' is not an option of a type=secret mount",
                                            *p),
                               NULL;
        }
        if (!id)
                return kiln_invalid(error, arg, "a type=secret mount needs an id"), NULL;
        if (!kiln_validate_name(arg, id, error))
                return NULL;
        v->secret_id = g_strdup(id);
        v->destination = destination ? g_strdup(destination) : g_strconcat("/run/secrets/", id, NULL);
        if (!g_path_is_absolute(v->destination))
                return kiln_invalid(error, arg, "a type=secret mount needs an absolute target"), NULL;
        if (!kiln_validate_absolute_path(arg, v->destination, FALSE, error))
                return NULL;
        v->options = g_strdupv((char *[]){"ro", "nosuid", "nodev", "noexec", NULL});
        return g_steal_pointer(&v);
}

/* The secret a type=secret mount names: a duplicate of its descriptor (1). 0: none was given and the
 * mount is not required, so it is left out; -1: @error. */
static int take_secret(KilnRunVolume *v, const KilnRunOptions *o, GError **error)
{
        for (guint i = 0; o->secrets && i < o->secrets->len; i++) {
                const KilnSecretFd *s = &g_array_index(o->secrets, KilnSecretFd, i);
                if (!g_str_equal(s->id, v->secret_id))
                        continue;
                v->fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 3);
                if (v->fd < 0)
                        return kiln_fail(error, KILN_ERROR_CODE_FAILED, "Cannot take the secret of %s: %s",
                                         v->arg, g_strerror(errno)),
                               -1;
                return 1;
        }
        if (v->secret_required)
                return kiln_invalid(error, v->arg, "the required secret '%s' was not given (secrets)",
                                    v->secret_id),
                       -1;
        return 0;
}

KilnRunVolume *kiln_run_mount_parse(const char *arg, const char *value, GError **error)
{
        static const char *const type_keys[] = {"type", NULL};
        static const char *const source_keys[] = {"source", "src", NULL};
        static const char *const destination_keys[] = {"destination", "dst", "target", NULL};
        static const char *const propagation_keys[] = {"bind-propagation", NULL};
        static const char *const size_keys[] = {"tmpfs-size", "size", NULL};
        static const char *const mode_keys[] = {"tmpfs-mode", "mode", NULL};
        g_auto(GStrv) parts = g_strsplit(value, ",", -1);
        g_autoptr(GStrvBuilder) kept = g_strv_builder_new();
        g_autoptr(KilnRunVolume) v = NULL;
        const char *type = "bind", *source = NULL, *destination = NULL, *x;
        gboolean tmpfs, nonrecursive = FALSE;

        /* The type first: which keys are known depends on it. */
        for (char **p = parts; *p; p++)
                if ((x = key_value(*p, type_keys)))
                        type = x;
        if (g_str_equal(type, "cache"))
                return parse_cache_mount(arg, parts, error);
        if (g_str_equal(type, "secret"))
                return parse_secret_mount(arg, parts, error);
        if (!g_str_equal(type, "bind") && !g_str_equal(type, "tmpfs")) {
                kiln_invalid(error, arg, "'%s' needs type=bind, type=tmpfs or type=cache", value);
                return NULL;
        }
        tmpfs = g_str_equal(type, "tmpfs");
        v = volume_new(arg, tmpfs ? KILN_RUN_VOLUME_TMPFS : KILN_RUN_VOLUME_BIND);
        for (char **p = parts; *p; p++) {
                const char *opt = read_write_option(*p);
                if (key_value(opt, type_keys))
                        continue;
                if ((x = key_value(opt, source_keys)) && !tmpfs)
                        source = x;
                else if ((x = key_value(opt, destination_keys)))
                        destination = x;
                else if ((x = key_value(opt, propagation_keys)) && !tmpfs &&
                         g_strv_contains(propagations, x))
                        g_strv_builder_add(kept, x);
                else if ((x = key_value(opt, size_keys)) && tmpfs)
                        add_key_value(kept, "size=", x);
                else if ((x = key_value(opt, mode_keys)) && tmpfs)
                        add_key_value(kept, "mode=", x);
                else if (tmpfs && (g_str_equal(opt, "ro") || g_str_equal(opt, "rw") ||
                                   g_str_equal(opt, "exec") || g_str_equal(opt, "noexec") ||
                                   g_str_equal(opt, "nosuid") || g_str_equal(opt, "nodev")))
                        g_strv_builder_add(kept, opt);
                else if (!tmpfs && g_str_has_prefix(opt, "from=")) {
                        kiln_invalid(error, arg, "'from' is not supported yet");
                        return NULL;
                } else if (!tmpfs &&
                           (g_str_equal(opt, "relabel=shared") || g_str_equal(opt, "relabel=private")))
                        v->flags |= KILN_RUN_VOLUME_RELABEL;
                else if (!tmpfs && g_str_equal(opt, "bind-nonrecursive"))
                        nonrecursive = TRUE;
                else if (tmpfs || !take_bind_option(v, kept, opt)) {
                        /* Never passed on: lowerdir=, upperdir= and the like would reach the runtime. */
                        kiln_invalid(error, arg, "'%.64s' is not an option of a type=%s mount", *p, type);
                        return NULL;
                }
        }
        if (!destination || !g_path_is_absolute(destination)) {
                kiln_invalid(error, arg, "'%s' needs an absolute destination", value);
                return NULL;
        }
        if (!kiln_validate_absolute_path(arg, destination, FALSE, error))
                return NULL;
        if (!tmpfs && (!source || !g_path_is_absolute(source))) {
                kiln_invalid(error, arg, "'%s' needs an absolute source", value);
                return NULL;
        }
        if (source && !kiln_validate_absolute_path(arg, source, FALSE, error))
                return NULL;
        v->source = g_strdup(source);
        v->destination = g_strdup(destination);
        v->options = g_strv_builder_end(kept);
        if (!tmpfs && !bind_mount_writes(v, nonrecursive, error))
                return NULL;
        return g_steal_pointer(&v);
}

/* Only directories and regular files are bound for a caller other than uid 0: a symlink would be
 * bound (and at clean-up unmounted) as the link, and sockets, FIFOs and devices are not volumes.
 * uid 0 may bind a socket or a device node (the host's already), never a symlink. */
static gboolean check_source_type(const KilnRunVolume *v, int fd, const KilnCreds *caller, GError **error)
{
        struct stat st;

        if (fstat(fd, &st) < 0)
                return kiln_invalid(error, v->arg, "cannot inspect the source: %s", g_strerror(errno));
        if (S_ISLNK(st.st_mode) || (caller->uid != 0 && !S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)))
                return kiln_invalid(error, v->arg, "the source is not a directory or a regular file");
        return TRUE;
}

/* A path source of a caller other than uid 0, opened as the caller: what the caller reaches, not
 * what the path names by the time the run starts. */
static gboolean open_source(KilnRunVolume *v, const KilnCreds *caller, GError **error)
{
        v->fd = kiln_open_as_caller(caller, v->source);
        if (v->fd >= 0)
                return check_source_type(v, v->fd, caller, error);
        if (errno == EACCES || errno == EPERM) {
                v->unreadable = TRUE; /* opened, as root, only once run-privileged is granted */
                return TRUE;
        }
        return kiln_invalid(error, v->arg, "source '%s': %s", v->source, g_strerror(errno));
}

/* Run parity: a persistent upper or work dir, opened as the caller (uid 0: as itself) and held: it must be
 * a directory the caller owns. overlayfs writes there as its mounter, root, so a directory of someone
 * else's that the caller can merely reach would let the caller have root write into it. */
static int open_owned_dir(const KilnRunVolume *v, const KilnCreds *caller, const char *what,
                          const char *path, GError **error)
{
        _cleanup_close_ int fd = caller->uid == 0 ? open(path, O_PATH | O_DIRECTORY | O_CLOEXEC)
                                                  : kiln_open_as_caller(caller, path);
        struct stat st;

        if (fd < 0 || fstat(fd, &st) < 0) {
                kiln_invalid(error, v->arg, "%s '%s': %s", what, path, g_strerror(errno));
                return -1;
        }
        if (!S_ISDIR(st.st_mode)) {
                kiln_invalid(error, v->arg, "%s '%s' is not a directory", what, path);
                return -1;
        }
        if (caller->uid != 0 && st.st_uid != caller->uid) {
                kiln_invalid(error, v->arg, "%s '%s' is not yours (its owner is uid %u)", what, path,
                             (unsigned)st.st_uid);
                return -1;
        }
        return g_steal_fd(&fd);
}

static gboolean open_upper_dirs(KilnRunVolume *v, const KilnCreds *caller, GError **error)
{
        if (!v->upperdir)
                return TRUE;
        v->upper_fd = open_owned_dir(v, caller, "upperdir", v->upperdir, error);
        if (v->upper_fd < 0)
                return FALSE;
        v->work_fd = open_owned_dir(v, caller, "workdir", v->workdir, error);
        return v->work_fd >= 0;
}

static gboolean add_path_volume(GPtrArray *list, KilnRunVolume *owned, const KilnCreds *caller,
                                GError **error)
{
        g_autoptr(KilnRunVolume) v = owned;

        if (!v)
                return FALSE;
        if (caller->uid != 0 && v->source && !open_source(v, caller, error))
                return FALSE;
        if (!open_upper_dirs(v, caller, error))
                return FALSE;
        g_ptr_array_add(list, g_steal_pointer(&v));
        return TRUE;
}

gboolean kiln_run_volumes_resolve(KilnRunOptions *o, char **builder_volumes, const KilnCreds *caller,
                                  GError **error)
{
        g_autoptr(GPtrArray) list = g_ptr_array_new_with_free_func((GDestroyNotify)kiln_run_volume_free);

        for (char **v = builder_volumes; v && *v; v++) {
                g_autofree char *arg = g_strdup_printf("builder volumes[%d]", (int)(v - builder_volumes));
                if (!add_path_volume(list, kiln_run_volume_parse(arg, *v, error), caller, error))
                        return FALSE;
        }
        for (char **v = o->volumes; v && *v; v++) {
                g_autofree char *arg = g_strdup_printf("volumes[%d]", (int)(v - o->volumes));
                if (!add_path_volume(list, kiln_run_volume_parse(arg, *v, error), caller, error))
                        return FALSE;
        }
        for (guint i = 0; o->volume_fds && i < o->volume_fds->len; i++) {
                KilnVolumeFd *fdv = &g_array_index(o->volume_fds, KilnVolumeFd, i);
                g_autofree char *arg = g_strdup_printf("volume_fds[%u]", i);
                g_autoptr(KilnRunVolume) v =
                        kiln_run_volume_parse_fd(arg, fdv->destination, fdv->options, error);

                if (!v)
                        return FALSE;
                v->fd = g_steal_fd(&fdv->fd);
                /* What is checked is what is bound: the object behind the descriptor itself. An
                 * O_PATH descriptor proves only that the caller could walk to it. */
                if (!check_source_type(v, v->fd, caller, error))
                        return FALSE;
                v->unreadable = caller->uid != 0 && !kiln_caller_can_read(caller, v->fd);
                if (!open_upper_dirs(v, caller, error))
                        return FALSE;
                g_ptr_array_add(list, g_steal_pointer(&v));
        }
        for (char **m = o->mounts; m && *m; m++) {
                g_autofree char *arg = g_strdup_printf("mounts[%d]", (int)(m - o->mounts));
                KilnRunVolume *v = kiln_run_mount_parse(arg, *m, error);
                if (v && v->kind == KILN_RUN_VOLUME_CACHE)
                        v->cache_owner = caller->uid; /* the caller's caches, whoever owns the builder */
                if (v && v->kind == KILN_RUN_VOLUME_SECRET) {
                        int taken = take_secret(v, o, error);
                        if (taken <= 0) {
                                kiln_run_volume_free(v);
                                if (taken < 0)
                                        return FALSE;
                                continue; /* not given, not required: no mount, as BuildKit */
                        }
                }
                if (!add_path_volume(list, v, caller, error))
                        return FALSE;
        }
        g_clear_pointer(&o->resolved_volumes, g_ptr_array_unref);
        o->resolved_volumes = g_steal_pointer(&list);
        return TRUE;
}

/* ---- supplementary groups (run parity) ---- */

gboolean kiln_run_groups_resolve(KilnRunOptions *o, char **builder_group_add, const KilnCreds *caller,
                                 GError **error)
{
        g_autoptr(GStrvBuilder) values = g_strv_builder_new();
        g_autoptr(GStrvBuilder) args = g_strv_builder_new();
        g_autoptr(GArray) caller_groups = NULL;
        char **lists[] = {builder_group_add, o->group_add};
        const char *prefixes[] = {"builder group_add", "group_add"};

        for (gsize l = 0; l < G_N_ELEMENTS(lists); l++)
                for (char **g = lists[l]; g && *g; g++) {
                        g_autofree char *arg = g_strdup_printf("%s[%d]", prefixes[l], (int)(g - lists[l]));

                        /* The builder's was checked when it was set; checked again all the same. */
                        if (!kiln_validate_group_add(arg, *g, error))
                                return FALSE;
                        if (!g_str_equal(*g, KILN_GROUP_ADD_KEEP_GROUPS)) {
                                g_strv_builder_add(values, *g);
                                g_strv_builder_add(args, arg);
                                continue;
                        }
                        /* keep-groups hands the caller's host groups to the run. Only uid 0 may: for
                         * anyone else those gids are not in their user namespace, and naming a host
                         * group they are in would let the container act as that group on what it can
                         * reach (volumes). Refused as InvalidArgument: no grant could make it work. */
                        if (caller->uid != 0)
                                return kiln_invalid(error, arg, "'%s' is only for uid 0's runs",
                                                    KILN_GROUP_ADD_KEEP_GROUPS);
                        if (!caller_groups) {
                                caller_groups = g_array_new(FALSE, FALSE, sizeof(guint32));
                                for (size_t i = 0; i < caller->n_groups; i++) {
                                        guint32 gid = caller->groups[i];
                                        g_array_append_val(caller_groups, gid);
                                }
                        }
                }
        g_strfreev(o->resolved_group_add);
        g_strfreev(o->resolved_group_args);
        o->resolved_group_add = g_strv_builder_end(values);
        o->resolved_group_args = g_strv_builder_end(args);
        g_clear_pointer(&o->caller_groups, g_array_unref);
        o->caller_groups = g_steal_pointer(&caller_groups);
        return TRUE;
}

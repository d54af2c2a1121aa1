/* SPDX-License-Identifier: Apache-2.0 */
/* The devices of a run resolved once (run-devices.h): host nodes, directories of them, CDI devices. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "authz/caller-open.h"
#include "base/errors.h"
#include "base/kiln-common.h"
#include "base/validate.h"
#include "run/cdi.h"
#include "run/run-devices.h"

/* Entries looked at under one --device directory: the walk stays short whatever the tree holds. */
#define WALK_ENTRIES_MAX 65536

static void device_free(KilnRunDevice *d)
{
        g_free(d->arg);
        g_free(d->host_path);
        g_free(d->path);
        g_free(d->access);
        g_free(d);
}

static void mount_free(KilnRunDeviceMount *m)
{
        g_free(m->arg);
        g_free(m->source);
        g_free(m->destination);
        g_strfreev(m->options);
        g_free(m);
}

void kiln_run_devices_free(KilnRunDevices *d)
{
        if (!d)
                return;
        g_clear_pointer(&d->devices, g_ptr_array_unref);
        g_clear_pointer(&d->mounts, g_ptr_array_unref);
        g_clear_pointer(&d->hooks, g_ptr_array_unref);
        g_strfreev(d->env);
        g_strfreev(d->cdi_names);
        g_free(d);
}

gboolean kiln_run_device_validate(const char *arg, const char *value, GError **error)
{
        g_auto(GStrv) parts = NULL;
        g_autofree char *kind = NULL, *name = NULL;
        guint n;

        if (kiln_cdi_is_name(value))
                return kiln_cdi_parse_name(arg, value, &kind, &name, error);
        parts = g_strsplit(value, ":", 4);
        n = g_strv_length(parts);
        if (n < 1 || n > 3)
                return kiln_invalid(error, arg,
                                    "'%s' is not HOST[:CONTAINER[:PERMISSIONS]] or vendor.com/class=name",
                                    value);
        if (!kiln_validate_absolute_path(arg, parts[0], FALSE, error) ||
            (n >= 2 && !kiln_validate_absolute_path(arg, parts[1], FALSE, error)))
                return FALSE;
        if (n == 3 && (!*parts[2] || strspn(parts[2], "rwm") != strlen(parts[2])))
                return kiln_invalid(error, arg, "permissions '%s' are not a subset of 'rwm'", parts[2]);
        return TRUE;
}

/* ---- host nodes and directories ---- */

typedef struct {
        KilnRunDevices *out;
        const KilnCreds *caller;
        const char *arg;
        const char *access;
        guint entries;
} Walk;

static gboolean add_node(Walk *w, const char *host_path, const char *path, const struct stat *st,
                         GError **error)
{
        KilnRunDevice *d;

        if (w->out->devices->len >= KILN_RUN_DEVICES_MAX)
                return kiln_fail(error, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                                 "Invalid %s: more than %d device nodes in a run", w->arg,
                                 KILN_RUN_DEVICES_MAX);
        d = g_new0(KilnRunDevice, 1);
        d->arg = g_strdup(w->arg);
        d->host_path = g_strdup(host_path);
        d->path = g_strdup(path);
        d->type = S_ISCHR(st->st_mode) ? 'c' : 'b';
        d->major = major(st->st_rdev);
        d->minor = minor(st->st_rdev);
        d->file_mode = st->st_mode & 07777;
        d->access = g_strdup(w->access);
        g_ptr_array_add(w->out->devices, d);
        return TRUE;
}

static int by_name(gconstpointer a, gconstpointer b)
{
        return g_strcmp0(*(char *const *)a, *(char *const *)b);
}

/* Every device node under the directory @fd (host @host, container @path), depth-first in name order;
 * symlinks are never followed, and a caller other than uid 0 sees only directories it may read. */
static gboolean walk(Walk *w, int fd, const char *host, const char *path, guint depth, GError **error)
{
        _cleanup_close_ int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        DIR *dir;
        struct dirent *e;
        int copy;

        if (dfd < 0)
                return kiln_invalid(error, w->arg, "'%s': %s", host, g_strerror(errno));
        /* readdir() on a copy of our own: closedir() closes it, dfd stays for fstatat(). */
        copy = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
        dir = copy >= 0 ? fdopendir(copy) : NULL;
        if (!dir) {
                int saved = errno;
                if (copy >= 0)
                        close(copy);
                return kiln_invalid(error, w->arg, "'%s': %s", host, g_strerror(saved));
        }
        while ((e = readdir(dir))) {
                if (g_str_equal(e->d_name, ".") || g_str_equal(e->d_name, ".."))
                        continue;
                if (++w->entries > WALK_ENTRIES_MAX) {
                        closedir(dir);
                        return kiln_fail(error, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                                         "Invalid %s: more than %d entries under the directory", w->arg,
                                         WALK_ENTRIES_MAX);
                }
                g_ptr_array_add(names, g_strdup(e->d_name));
        }
        closedir(dir);
        g_ptr_array_sort(names, by_name);
        for (guint i = 0; i < names->len; i++) {
                const char *name = names->pdata[i];
                g_autofree char *h = g_build_filename(host, name, NULL);
                g_autofree char *p = g_build_filename(path, name, NULL);
                _cleanup_close_ int sub = -1;
                struct stat st;

                if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue; /* gone meanwhile */
                if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
                        if (!add_node(w, h, p, &st, error))
                                return FALSE;
                        continue;
                }
                if (!S_ISDIR(st.st_mode) || depth >= KILN_RUN_DEVICES_DEPTH)
                        continue;
                sub = openat(dfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0 || (w->caller->uid != 0 && !kiln_caller_can_read(w->caller, sub)))
                        continue;
                if (!walk(w, sub, h, p, depth + 1, error))
                        return FALSE;
        }
        return TRUE;
}

/* HOST[:CONTAINER[:PERMISSIONS]]: the node, or the nodes under the directory. */
static gboolean resolve_path(KilnRunDevices *out, const char *arg, const char *value,
                             const KilnCreds *caller, GError **error)
{
        g_auto(GStrv) parts = g_strsplit(value, ":", 3);
        const char *host = parts[0], *path = parts[1] ? parts[1] : parts[0];
        Walk w = {out, caller, arg, parts[1] ? parts[2] : NULL, 0};
        _cleanup_close_ int fd = -1;
        guint before = out->devices->len;
        struct stat st;

        /* A caller other than uid 0 names only paths it could look up itself (kilnd's error for one it
         * cannot tells nothing about what lies beyond), and lists only directories it may read; the node
         * itself may be one it cannot open (run-privileged decides). For uid 0 the path is opened as it
         * is. Either way O_PATH: a device is never opened here. */
        if (caller->uid != 0)
                fd = kiln_lookup_as_caller(caller, host);
        else
                fd = open(host, O_PATH | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return kiln_invalid(error, arg, "'%s': %s", host, g_strerror(errno));
        if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
                return add_node(&w, host, path, &st, error);
        if (!S_ISDIR(st.st_mode))
                return kiln_invalid(error, arg, "'%s' is not a device node nor a directory of them", host);
        if (caller->uid != 0 && !kiln_caller_can_read(caller, fd))
                return kiln_invalid(error, arg, "'%s': %s", host, g_strerror(EACCES));
        if (!walk(&w, fd, host, path, 0, error))
                return FALSE;
        if (out->devices->len == before)
                return kiln_invalid(error, arg, "'%s' holds no device nodes", host);
        return TRUE;
}

/* ---- CDI ---- */

/* A CDI device node: the host's node (hostPath, else path) stat()ed; the spec's type and numbers, when
 * given, must be the host's. Its file mode and owner are taken when the spec gives them. */
static gboolean add_cdi_node(KilnRunDevices *out, const char *arg, const KilnCdiSpec *spec,
                             const KilnCdiDeviceNode *n, GError **error)
{
        const char *host = n->host_path ? n->host_path : n->path;
        Walk w = {out, NULL, arg, n->permissions, 0};
        KilnRunDevice *d;
        struct stat st;

        /* Safe as root: the administrator's path, looked at (never opened). */
        if (stat(host, &st) < 0)
                return kiln_invalid(error, arg, "the CDI device node %s (%s): %s", host, spec->origin,
                                    g_strerror(errno));
        if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode))
                return kiln_invalid(error, arg, "%s (%s) is not a device node", host, spec->origin);
        if ((n->type && n->type != (S_ISCHR(st.st_mode) ? 'c' : 'b')) ||
            (n->major >= 0 && n->major != major(st.st_rdev)) ||
            (n->minor >= 0 && n->minor != minor(st.st_rdev)))
                return kiln_invalid(error, arg,
                                    "%s (%s): the spec's type or numbers are not the host node's", host,
                                    spec->origin);
        if (!add_node(&w, host, n->path, &st, error))
                return FALSE;
        d = out->devices->pdata[out->devices->len - 1];
        if (n->file_mode >= 0)
                d->file_mode = n->file_mode;
        d->uid = n->uid >= 0 ? n->uid : 0;
        d->gid = n->gid >= 0 ? n->gid : 0;
        return TRUE;
}

/* Bind options a CDI mount may have: those of a volume; "bind" and "rbind" say what every kiln bind
 * is (recursive). */
static gboolean add_cdi_mount(KilnRunDevices *out, const char *arg, const KilnCdiSpec *spec,
                              const KilnCdiMount *m, GError **error)
{
        static const char *const kept[] = {"ro",       "rw",     "nosuid",  "nodev", "noexec", "private",
                                           "rprivate", "shared", "rshared", "slave", "rslave", NULL};
        g_autoptr(GStrvBuilder) options = g_strv_builder_new();
        KilnRunDeviceMount *mount;

        for (char **o = m->options; o && *o; o++) {
                if (g_strv_contains(kept, *o))
                        g_strv_builder_add(options, *o);
                else if (!g_str_equal(*o, "bind") && !g_str_equal(*o, "rbind"))
                        return kiln_invalid(error, arg, "the CDI mount at %s (%s) has the option '%s'",
                                            m->container_path, spec->origin, *o);
        }
        mount = g_new0(KilnRunDeviceMount, 1);
        mount->arg = g_strdup(arg);
        mount->source = g_strdup(m->host_path);
        mount->destination = g_strdup(m->container_path);
        mount->options = g_strv_builder_end(options);
        g_ptr_array_add(out->mounts, mount);
        return TRUE;
}

static gboolean apply_edits(KilnRunDevices *out, GStrvBuilder *env, const char *arg, const KilnCdiSpec *spec,
                            const KilnCdiEdits *e, GError **error)
{
        for (guint i = 0; i < e->device_nodes->len; i++)
                if (!add_cdi_node(out, arg, spec, e->device_nodes->pdata[i], error))
                        return FALSE;
        for (guint i = 0; i < e->mounts->len; i++)
                if (!add_cdi_mount(out, arg, spec, e->mounts->pdata[i], error))
                        return FALSE;
        g_strv_builder_addv(env, (const char **)e->env);
        for (guint i = 0; i < e->hooks->len; i++)
                g_ptr_array_add(out->hooks, kiln_cdi_hook_copy(e->hooks->pdata[i]));
        return TRUE;
}

KilnRunDevices *kiln_run_devices_resolve(char *const *devices, const char *const *cdi_dirs,
                                         const KilnCreds *caller, GError **error)
{
        g_autoptr(KilnRunDevices) out = g_new0(KilnRunDevices, 1);
        g_autoptr(GStrvBuilder) env = g_strv_builder_new();
        g_autoptr(GStrvBuilder) names = g_strv_builder_new();
        g_autoptr(GPtrArray) specs = NULL;
        g_autoptr(GPtrArray) applied = g_ptr_array_new(); /* specs whose own edits are in */

        out->devices = g_ptr_array_new_with_free_func((GDestroyNotify)device_free);
        out->mounts = g_ptr_array_new_with_free_func((GDestroyNotify)mount_free);
        out->hooks = g_ptr_array_new_with_free_func((GDestroyNotify)kiln_cdi_hook_free);
        for (guint i = 0; devices && devices[i]; i++) {
                g_autofree char *arg = g_strdup_printf("devices[%u]", i);
                const KilnCdiSpec *spec = NULL;
                const KilnCdiDevice *d;

                if (!kiln_run_device_validate(arg, devices[i], error))
                        return NULL;
                if (!kiln_cdi_is_name(devices[i])) {
                        if (!resolve_path(out, arg, devices[i], caller, error))
                                return NULL;
                        continue;
                }
                /* The specs are read once, for the first CDI name of the run. */
                if (!specs)
                        specs = kiln_cdi_load(cdi_dirs);
                d = kiln_cdi_find(specs, arg, devices[i], &spec, error);
                if (!d || !apply_edits(out, env, arg, spec, &d->edits, error))
                        return NULL;
                /* The spec-wide edits once, however many of its devices the run names. */
                if (!g_ptr_array_find(applied, spec, NULL)) {
                        g_ptr_array_add(applied, (gpointer)spec);
                        if (!apply_edits(out, env, arg, spec, &spec->edits, error))
                                return NULL;
                }
                g_strv_builder_add(names, devices[i]);
        }
        out->env = g_strv_builder_end(env);
        out->cdi_names = g_strv_builder_end(names);
        return g_steal_pointer(&out);
}

void kiln_run_devices_describe(const KilnRunDevices *d, GPtrArray *reasons)
{
        for (char **n = d->cdi_names; n && *n; n++)
                g_ptr_array_add(reasons, g_strdup_printf("CDI device %s", *n));
        for (guint i = 0; i < d->devices->len; i++) {
                const KilnRunDevice *dev = d->devices->pdata[i];
                if (g_str_equal(dev->host_path, dev->path))
                        g_ptr_array_add(reasons, g_strdup_printf("device %s", dev->host_path));
                else
                        g_ptr_array_add(reasons,
                                        g_strdup_printf("device %s as %s", dev->host_path, dev->path));
        }
        for (guint i = 0; i < d->mounts->len; i++) {
                const KilnRunDeviceMount *m = d->mounts->pdata[i];
                g_ptr_array_add(reasons, g_strdup_printf("CDI mount %s at %s", m->source, m->destination));
        }
        for (guint i = 0; i < d->hooks->len; i++) {
                const KilnCdiHook *h = d->hooks->pdata[i];
                g_ptr_array_add(reasons, g_strdup_printf("CDI %s hook %s", h->stage, h->path));
        }
}

GArray *kiln_run_devices_hooks(const KilnRunDevices *d)
{
        GArray *hooks = g_array_new(FALSE, TRUE, sizeof(KilnHook));

        for (guint i = 0; i < d->hooks->len; i++) {
                const KilnCdiHook *h = d->hooks->pdata[i];
                KilnHook hook = {h->stage, h->path, (const char *const *)h->args,
                                 (const char *const *)h->env, h->timeout};
                g_array_append_val(hooks, hook);
        }
        return hooks;
}

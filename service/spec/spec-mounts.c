/* SPDX-License-Identifier: Apache-2.0 */
/* The mounts of the spec: the standard file systems for each combination of namespaces, the
 * generated files, and the caller's volumes, each option checked against an allow-list. */
#include <string.h>

#include "base/size.h"
#include "spec/spec-private.h"
#include "base/validate.h"

void kiln_spec_mount_free(KilnSpecMount *mount)
{
        if (!mount)
                return;
        g_free(mount->destination);
        g_free(mount->type);
        g_free(mount->source);
        g_ptr_array_unref(mount->options);
        g_free(mount);
}

static KilnSpecMount *mount_new(const char *destination, const char *type, const char *source,
                                const char *const *options)
{
        KilnSpecMount *m = g_new0(KilnSpecMount, 1);

        m->destination = g_strdup(destination);
        m->type = g_strdup(type);
        m->source = g_strdup(source);
        m->options = g_ptr_array_new_with_free_func(g_free);
        for (const char *const *o = options; o && *o; o++)
                g_ptr_array_add(m->options, g_strdup(*o));
        return m;
}

char *kiln_spec_normalize_path(const char *arg, const char *path, GError **error)
{
        g_auto(GStrv) parts = NULL;
        GString *s;

        if (!kiln_validate_absolute_path(arg, path, FALSE, error))
                return NULL;
        parts = g_strsplit(path, "/", -1);
        s = g_string_new(NULL);
        for (char **p = parts; *p; p++) {
                if (!**p || g_str_equal(*p, "."))
                        continue;
                if (g_str_equal(*p, "..")) {
                        g_string_free(s, TRUE);
                        kiln_invalid(error, arg, "'%s' contains '..'", path);
                        return NULL;
                }
                g_string_append_c(s, '/');
                g_string_append(s, *p);
        }
        if (s->len == 0)
                g_string_append_c(s, '/');
        return g_string_free(s, FALSE);
}

/* ---- the standard mounts ---- */

/* Mounting /proc, /dev/mqueue and sysfs needs a namespace of that kind owned by the container's
 * user namespace; when the container shares the host's, the host's file system is bound instead
 * (read-only for /sys), as buildah and podman do. Every one of them is nosuid,nodev (and noexec but
 * /dev): nothing in them is a program or a device to trust. */
static const char *const pseudo_options[] = {"nosuid", "noexec", "nodev", NULL};
static const char *const bind_options[] = {"rbind", "nosuid", "noexec", "nodev", NULL};
static const char *const dev_options[] = {"nosuid", "strictatime", "mode=755", "size=65536k", NULL};
static const char *const sys_options[] = {"nosuid", "noexec", "nodev", "ro", NULL};
static const char *const sys_bind_options[] = {"rbind", "nosuid", "noexec", "nodev", "ro", NULL};
/* gid=5: the tty group, unless the user namespace does not map it. */
static const char *const pts_options[] = {"nosuid",    "noexec", "newinstance", "ptmxmode=0666",
                                          "mode=0620", "gid=5",  NULL};
static const char *const pts_options_no_tty[] = {"nosuid",        "noexec",    "newinstance",
                                                 "ptmxmode=0666", "mode=0620", NULL};
static const char *const cgroup_options[] = {"nosuid", "noexec", "nodev", "relatime", "ro", NULL};

static gboolean add_standard_mounts(GPtrArray *mounts, const KilnSpecInput *input, gboolean userns,
                                    gboolean devpts_gid5, GError **error)
{
        gboolean host_ipc = input->ipc.mode == KILN_NAMESPACE_HOST;
        /* A fresh sysfs shows the network devices of the mounter's network namespace, and may be
         * mounted only by its owner: with a user namespace and a network namespace that is not a
         * new one, bind the host's. Without a user namespace a fresh sysfs is used even with the
         * host's network: one read-only mount, where a bind would carry the host's submounts
         * (/sys/fs/cgroup, ...) read-write. */
        gboolean bind_sys = userns && (input->network.mode == KILN_NAMESPACE_HOST ||
                                       input->network.mode == KILN_NAMESPACE_PATH);
        g_autofree char *shm_size = NULL;

        if (userns && input->pid.mode == KILN_NAMESPACE_HOST)
                g_ptr_array_add(mounts, mount_new("/proc", "bind", "/proc", bind_options));
        else
                g_ptr_array_add(mounts, mount_new("/proc", "proc", "proc", pseudo_options));

        g_ptr_array_add(mounts, mount_new("/dev", "tmpfs", "tmpfs", dev_options));

        g_ptr_array_add(mounts, mount_new("/dev/pts", "devpts", "devpts",
                                          devpts_gid5 ? pts_options : pts_options_no_tty));

        /* With the host's IPC namespace, POSIX shared memory is the host's /dev/shm (podman's
         * choice; a private tmpfs would split what the namespace shares). */
        if (host_ipc) {
                if (input->shm_size)
                        return kiln_invalid(error, "shm_size", "cannot be set with ipc 'host'");
                /* A host without it has no POSIX shared memory to share: none in the container. */
                if (!input->host_lacks_dev_shm)
                        g_ptr_array_add(mounts, mount_new("/dev/shm", "bind", "/dev/shm", bind_options));
        } else {
                shm_size = g_strdup_printf("size=%" G_GUINT64_FORMAT,
                                           input->shm_size ? input->shm_size : KILN_DEFAULT_SHM_SIZE);
                const char *shm[] = {"nosuid", "noexec", "nodev", "mode=1777", shm_size, NULL};
                g_ptr_array_add(mounts, mount_new("/dev/shm", "tmpfs", "shm", shm));
        }

        if (userns && host_ipc) {
                if (!input->host_lacks_dev_mqueue)
                        g_ptr_array_add(mounts,
                                        mount_new("/dev/mqueue", "bind", "/dev/mqueue", bind_options));
        } else {
                g_ptr_array_add(mounts, mount_new("/dev/mqueue", "mqueue", "mqueue", pseudo_options));
        }

        if (bind_sys) {
                /* The rbind already holds the host's /sys/fs/cgroup. */
                g_ptr_array_add(mounts, mount_new("/sys", "bind", "/sys", sys_bind_options));
        } else {
                g_ptr_array_add(mounts, mount_new("/sys", "sysfs", "sysfs", sys_options));
                g_ptr_array_add(mounts, mount_new("/sys/fs/cgroup", "cgroup", "cgroup", cgroup_options));
        }
        return TRUE;
}

/* ---- the caller's mounts ---- */

typedef enum {
        OPT_RO,
        OPT_RW,
        OPT_PROPAGATION,
        OPT_FLAG,   /* nosuid nodev noexec */
        OPT_CALLER, /* z Z U: the caller's work, nothing in the spec */
        OPT_EXEC,
        OPT_SIZE,
        OPT_MODE,
        OPT_LOWERDIR,
        OPT_UPPERDIR,
        OPT_WORKDIR,
} OptionKind;

#define T_BIND (1u << KILN_MOUNT_BIND)
#define T_TMPFS (1u << KILN_MOUNT_TMPFS)
#define T_OVERLAY (1u << KILN_MOUNT_OVERLAY)

static const struct {
        const char *name;
        gboolean has_value; /* name=VALUE */
        OptionKind kind;
        unsigned types;
} option_table[] = {
        {"ro", FALSE, OPT_RO, T_BIND | T_TMPFS | T_OVERLAY},
        {"rw", FALSE, OPT_RW, T_BIND | T_TMPFS | T_OVERLAY},
        {"private", FALSE, OPT_PROPAGATION, T_BIND | T_OVERLAY},
        {"rprivate", FALSE, OPT_PROPAGATION, T_BIND | T_OVERLAY},
        {"slave", FALSE, OPT_PROPAGATION, T_BIND | T_OVERLAY},
        {"rslave", FALSE, OPT_PROPAGATION, T_BIND | T_OVERLAY},
        {"shared", FALSE, OPT_PROPAGATION, T_BIND | T_OVERLAY},
        {"rshared", FALSE, OPT_PROPAGATION, T_BIND | T_OVERLAY},
        {"nosuid", FALSE, OPT_FLAG, T_BIND | T_TMPFS | T_OVERLAY},
        {"nodev", FALSE, OPT_FLAG, T_BIND | T_TMPFS | T_OVERLAY},
        {"noexec", FALSE, OPT_FLAG, T_BIND | T_TMPFS | T_OVERLAY},
        {"z", FALSE, OPT_CALLER, T_BIND | T_OVERLAY},
        {"Z", FALSE, OPT_CALLER, T_BIND | T_OVERLAY},
        {"U", FALSE, OPT_CALLER, T_BIND | T_OVERLAY},
        {"exec", FALSE, OPT_EXEC, T_TMPFS},
        {"size", TRUE, OPT_SIZE, T_TMPFS},
        {"mode", TRUE, OPT_MODE, T_TMPFS},
        {"lowerdir", TRUE, OPT_LOWERDIR, T_OVERLAY},
        {"upperdir", TRUE, OPT_UPPERDIR, T_OVERLAY},
        {"workdir", TRUE, OPT_WORKDIR, T_OVERLAY},
};

static const char *const type_names[] = {
        [KILN_MOUNT_BIND] = "bind",
        [KILN_MOUNT_TMPFS] = "tmpfs",
        [KILN_MOUNT_OVERLAY] = "overlay",
};

/* What the options of one mount say, once each is checked. */
typedef struct MountOptions {
        gboolean ro, rw, exec;
        const char *propagation;
        gboolean flags[3]; /* nosuid nodev noexec */
        const char *size, *mode, *lowerdir, *upperdir, *workdir;
} MountOptions;

static const char *const flag_names[] = {"nosuid", "nodev", "noexec"};

static gboolean check_size(const char *v)
{
        gsize n = strspn(v, "0123456789");
        guint64 bytes;

        if (n > 0 && v[n] == '%' && v[n + 1] == '\0')
                return TRUE;
        /* The kernel's spelling has no b; the bytes must fit in 64 bits (base/size.h). */
        return n > 0 && (v[n] == '\0' || strchr("kKmMgG", v[n])) && kiln_parse_size(v, &bytes);
}

static gboolean check_mode(const char *v)
{
        gsize n = strspn(v, "01234567");

        return n > 0 && n <= 4 && v[n] == '\0';
}

/* An overlay directory list: absolute paths without the characters that separate options. */
static gboolean check_dirs(const char *arg, const char *where, const char *value, gboolean list,
                           GError **error)
{
        g_auto(GStrv) dirs = list ? g_strsplit(value, ":", -1) : g_strdupv((char *[]){(char *)value, NULL});

        for (char **d = dirs; *d; d++) {
                g_autofree char *normal = kiln_spec_normalize_path(arg, *d, error);
                if (!normal)
                        return FALSE;
                if (strpbrk(*d, ",:\\="))
                        return kiln_invalid(error, arg,
                                            "overlay directory '%s' for %s contains ',', ':', '=' or '\\'",
                                            *d, where);
        }
        return TRUE;
}

static gboolean parse_options(const char *arg, const KilnMount *m, const char *where, MountOptions *o,
                              GError **error)
{
        for (const char *const *opt = m->options; opt && *opt; opt++) {
                const char *eq = strchr(*opt, '=');
                gsize name_len = eq ? (gsize)(eq - *opt) : strlen(*opt);
                const char *value = eq ? eq + 1 : NULL;
                gsize i;

                for (i = 0; i < G_N_ELEMENTS(option_table); i++)
                        if (strlen(option_table[i].name) == name_len &&
                            strncmp(option_table[i].name, *opt, name_len) == 0 &&
                            option_table[i].has_value == (value != NULL))
                                break;
                if (i == G_N_ELEMENTS(option_table) || !(option_table[i].types & (1u << m->type)))
                        return kiln_invalid(error, arg, "'%s' is not an option of a %s mount (at %s)", *opt,
                                            type_names[m->type], where);
                switch (option_table[i].kind) {
                case OPT_RO:
                        o->ro = TRUE;
                        break;
                case OPT_RW:
                        o->rw = TRUE;
                        break;
                case OPT_PROPAGATION:
                        if (o->propagation && !g_str_equal(o->propagation, *opt))
                                return kiln_invalid(error, arg, "both '%s' and '%s' at %s", o->propagation,
                                                    *opt, where);
                        o->propagation = *opt;
                        break;
                case OPT_FLAG:
                        for (gsize f = 0; f < G_N_ELEMENTS(flag_names); f++)
                                if (g_str_equal(flag_names[f], *opt))
                                        o->flags[f] = TRUE;
                        break;
                case OPT_CALLER:
                        break;
                case OPT_EXEC:
                        o->exec = TRUE;
                        break;
                case OPT_SIZE:
                        if (!check_size(value))
                                return kiln_invalid(error, arg, "'%s' is not a size (N[kmg]) at %s", *opt,
                                                    where);
                        o->size = value;
                        break;
                case OPT_MODE:
                        if (!check_mode(value))
                                return kiln_invalid(error, arg, "'%s' is not an octal mode at %s", *opt,
                                                    where);
                        o->mode = value;
                        break;
                case OPT_LOWERDIR:
                case OPT_UPPERDIR:
                case OPT_WORKDIR:
                        if (!check_dirs(arg, where, value, option_table[i].kind == OPT_LOWERDIR, error))
                                return FALSE;
                        *(option_table[i].kind == OPT_LOWERDIR   ? &o->lowerdir
                          : option_table[i].kind == OPT_UPPERDIR ? &o->upperdir
                                                                 : &o->workdir) = value;
                        break;
                }
        }
        if (o->ro && o->rw)
                return kiln_invalid(error, arg, "both 'ro' and 'rw' at %s", where);
        if (o->exec && o->flags[2])
                return kiln_invalid(error, arg, "both 'exec' and 'noexec' at %s", where);
        if (m->type == KILN_MOUNT_OVERLAY && !o->lowerdir)
                return kiln_invalid(error, arg, "the overlay at %s has no lowerdir", where);
        if (!o->upperdir != !o->workdir)
                return kiln_invalid(error, arg,
                                    "the overlay at %s needs both upperdir and workdir, or neither", where);
        return TRUE;
}

static void add_flags(GPtrArray *options, const MountOptions *o)
{
        for (gsize f = 0; f < G_N_ELEMENTS(flag_names); f++)
                if (o->flags[f])
                        g_ptr_array_add(options, g_strdup(flag_names[f]));
}

static KilnSpecMount *convert_mount(const KilnSpecInput *input, const KilnMount *m, GError **error)
{
        const char *arg = m->arg ? m->arg : "mounts";
        g_autofree char *destination = NULL;
        g_autofree char *source = NULL;
        g_autoptr(KilnSpecMount) out = NULL;
        MountOptions o = {0};

        if ((guint)m->type >= G_N_ELEMENTS(type_names)) {
                kiln_invalid(error, arg, "unknown mount type %d", (int)m->type);
                return NULL;
        }
        if (!m->destination) {
                kiln_invalid(error, arg, "a %s mount has no destination", type_names[m->type]);
                return NULL;
        }
        destination = kiln_spec_normalize_path(arg, m->destination, error);
        if (!destination)
                return NULL;
        /* Nothing over the whole root, and nothing over or under /proc: the masked and read-only
         * paths there are part of the isolation. */
        if (g_str_equal(destination, "/") || g_str_equal(destination, "/proc") ||
            g_str_has_prefix(destination, "/proc/")) {
                kiln_invalid(error, arg, "cannot mount over %s", destination);
                return NULL;
        }
        if (!parse_options(arg, m, destination, &o, error))
                return NULL;

        switch (m->type) {
        case KILN_MOUNT_BIND:
                if (!m->source) {
                        kiln_invalid(error, arg, "the bind mount at %s has no source", destination);
                        return NULL;
                }
                source = kiln_spec_normalize_path(arg, m->source, error);
                if (!source)
                        return NULL;
                /* Always recursive: a non-recursive bind would uncover what the host hides under
                 * mounts inside the source. Private unless asked, as buildah. */
                out = mount_new(destination, "bind", source, (const char *const[]){"rbind", NULL});
                g_ptr_array_add(out->options, g_strdup(o.ro ? "ro" : "rw"));
                g_ptr_array_add(out->options, g_strdup(o.propagation ? o.propagation : "private"));
                add_flags(out->options, &o);
                break;
        case KILN_MOUNT_TMPFS:
                /* Like every mount kiln makes: nosuid,nodev; noexec unless asked for exec. */
                out = mount_new(destination, "tmpfs", "tmpfs", NULL);
                g_ptr_array_add(out->options, g_strdup(o.ro ? "ro" : "rw"));
                g_ptr_array_add(out->options, g_strdup("nosuid"));
                g_ptr_array_add(out->options, g_strdup("nodev"));
                if (!o.exec)
                        g_ptr_array_add(out->options, g_strdup("noexec"));
                /* Without a size the kernel's default is half of the RAM; kiln.conf bounds it. */
                if (o.size)
                        g_ptr_array_add(out->options, g_strconcat("size=", o.size, NULL));
                else if (input->tmpfs_default_size)
                        g_ptr_array_add(out->options, g_strdup_printf("size=%" G_GUINT64_FORMAT,
                                                                      input->tmpfs_default_size));
                if (o.mode)
                        g_ptr_array_add(out->options, g_strconcat("mode=", o.mode, NULL));
                break;
        case KILN_MOUNT_OVERLAY:
                out = mount_new(destination, "overlay", "overlay", NULL);
                g_ptr_array_add(out->options, g_strconcat("lowerdir=", o.lowerdir, NULL));
                if (o.upperdir) {
                        g_ptr_array_add(out->options, g_strconcat("upperdir=", o.upperdir, NULL));
                        g_ptr_array_add(out->options, g_strconcat("workdir=", o.workdir, NULL));
                }
                if (o.ro)
                        g_ptr_array_add(out->options, g_strdup("ro"));
                g_ptr_array_add(out->options, g_strdup(o.propagation ? o.propagation : "private"));
                add_flags(out->options, &o);
                break;
        }
        return g_steal_pointer(&out);
}

/* Normalized paths: "/" is 0, "/a" 1, "/a/b" 2. */
static guint path_depth(const char *path)
{
        guint n = 0;

        for (const char *p = path; *p; p++)
                n += *p == '/';
        return g_str_equal(path, "/") ? 0 : n;
}

static gint by_depth(gconstpointer a, gconstpointer b)
{
        const KilnSpecMount *x = *(KilnSpecMount *const *)a, *y = *(KilnSpecMount *const *)b;
        guint dx = path_depth(x->destination), dy = path_depth(y->destination);

        return dx < dy ? -1 : dx > dy;
}

static KilnSpecMount *find_mount(GPtrArray *mounts, const char *destination, guint *index)
{
        for (guint i = 0; i < mounts->len; i++) {
                KilnSpecMount *m = mounts->pdata[i];
                if (g_str_equal(m->destination, destination)) {
                        if (index)
                                *index = i;
                        return m;
                }
        }
        return NULL;
}

GPtrArray *kiln_spec_build_mounts(const KilnSpecInput *input, gboolean userns, gboolean devpts_gid5,
                                  GError **error)
{
        g_autoptr(GPtrArray) mounts = g_ptr_array_new_with_free_func((GDestroyNotify)kiln_spec_mount_free);
        g_autoptr(GPtrArray) user = g_ptr_array_new_with_free_func((GDestroyNotify)kiln_spec_mount_free);
        const struct {
                const char *destination;
                const char *source;
                gboolean network_file;
        } files[] = {
                {"/etc/hosts", input->files.hosts, TRUE},
                {"/etc/resolv.conf", input->files.resolv_conf, TRUE},
                {"/etc/hostname", input->files.hostname, FALSE},
                {"/run/.containerenv", input->files.containerenv, FALSE},
        };

        if (!add_standard_mounts(mounts, input, userns, devpts_gid5, error))
                return NULL;

        for (gsize i = 0; i < input->n_mounts; i++) {
                KilnSpecMount *m = convert_mount(input, &input->mounts[i], error);
                if (!m)
                        return NULL;
                if (find_mount(user, m->destination, NULL)) {
                        kiln_invalid(error, input->mounts[i].arg ? input->mounts[i].arg : "mounts",
                                     "more than one mount at %s", m->destination);
                        kiln_spec_mount_free(m);
                        return NULL;
                }
                g_ptr_array_add(user, m);
        }
        /* Parents before children, whatever order they came in (the sort is stable). */
        g_ptr_array_sort(user, by_depth);

        /* A caller's mount at a standard destination takes its place. */
        for (guint i = 0; i < user->len;) {
                KilnSpecMount *m = user->pdata[i];
                guint at;

                if (find_mount(mounts, m->destination, &at)) {
                        kiln_spec_mount_free(mounts->pdata[at]);
                        mounts->pdata[at] = g_ptr_array_steal_index(user, i);
                } else {
                        i++;
                }
        }

        /* Generated files, unless skipped, or the caller mounts something there, or (hosts and
         * resolv.conf) there is no network to name. rw as in buildah; nosuid,nodev,noexec as every
         * generated mount. */
        for (gsize i = 0; i < G_N_ELEMENTS(files); i++) {
                static const char *const file_options[] = {"rbind", "nosuid", "nodev", "noexec", NULL};
                g_autofree char *source = NULL;

                if (!files[i].source || find_mount(user, files[i].destination, NULL))
                        continue;
                if (files[i].network_file && input->network.mode == KILN_NAMESPACE_NONE)
                        continue;
                source = kiln_spec_normalize_path("files", files[i].source, error);
                if (!source)
                        return NULL;
                g_ptr_array_add(mounts, mount_new(files[i].destination, "bind", source, file_options));
        }

        while (user->len > 0)
                g_ptr_array_add(mounts, g_ptr_array_steal_index(user, 0));

        /* In a user namespace no device node can be made: the host's node is bound instead, from where
         * the host has it (runc would bind the container path from the host, which a renamed device is
         * not), as podman does for rootless containers. Last, over the /dev tmpfs and any volume; not
         * nodev, the one mount kiln makes without it; the device cgroup still allows only this node. */
        for (gsize i = 0; userns && i < input->n_devices; i++) {
                static const char *const device_options[] = {"rbind", "nosuid", "noexec", NULL};
                const KilnDevice *d = &input->devices[i];

                if (d->type == 'c' || d->type == 'b' || d->type == 'u')
                        g_ptr_array_add(mounts,
                                        mount_new(d->path, "bind", d->host_path ? d->host_path : d->path,
                                                  device_options));
        }
        return g_steal_pointer(&mounts);
}

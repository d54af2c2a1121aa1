/* SPDX-License-Identifier: Apache-2.0 */
/* The spec's mounts, in order, inside the container's root file system, in the init's new mount
 * namespace (nothing here is visible on the host: see iso_mounts_prepare_root).
 *
 * Every destination is resolved inside the root file system by the kernel (kiln_rootfs_open:
 * openat2 with RESOLVE_IN_ROOT), so a symlink in an untrusted image cannot send a mount onto the
 * host; the mount then goes onto that very object through its /proc/self/fd link, never through a
 * second lookup of the path. Bind sources are host paths from kilnd, opened once and bound from the
 * descriptor too. */
#include <fcntl.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <limits.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "isolate.h"
#include "base/rootfs.h"

const char *iso_fd_path(char buf[ISO_FD_PATH_MAX], int fd)
{
        g_snprintf(buf, ISO_FD_PATH_MAX, "/proc/self/fd/%d", fd);
        return buf;
}

/* The target of @path if it is a symlink (read through its parent, itself resolved inside the root, so
 * only the last component is looked at), as a path inside the root; NULL otherwise. */
static char *link_target_in_root(int rootfd, const char *path)
{
        g_autofree char *dir = g_path_get_dirname(path);
        g_autofree char *base = g_path_get_basename(path);
        _cleanup_close_ int dirfd = kiln_rootfs_open(rootfd, dir, O_PATH | O_DIRECTORY, 0);
        char target[PATH_MAX];
        ssize_t n;

        if (dirfd < 0)
                return NULL;
        n = readlinkat(dirfd, base, target, sizeof(target) - 1);
        if (n <= 0)
                return NULL;
        target[n] = '\0';
        return target[0] == '/' ? g_strdup(target) : g_build_filename(dir, target, NULL);
}

/* Symlinks followed to make a missing file target, at most (as the kernel's own limit). */
#define MAX_LINK_HOPS 40

static int open_target(int rootfd, const char *root_path, const char *path, bool file, unsigned hops,
                       GError **error)
{
        g_autoptr(GError) local = NULL;
        g_autofree char *parent = NULL;
        int fd;

        fd = kiln_rootfs_open(rootfd, path, O_PATH, 0);
        if (fd >= 0 || fd != -ENOENT) {
                if (fd < 0)
                        iso_fail_errno(error, -fd, "open '%s%s'", root_path, path);
                return fd < 0 ? -1 : fd;
        }
        /* Missing: made inside the root (kiln_rootfs_mkdir_p resolves each step in it too). */
        parent = file ? g_path_get_dirname(path) : g_strdup(path);
        if (!kiln_rootfs_mkdir_p(rootfd, parent, 0755, (uid_t)-1, (gid_t)-1, &local)) {
                iso_fail(error, "mkdir '%s%s': %s", root_path, parent, local->message);
                return -1;
        }
        if (file) {
                fd = kiln_rootfs_open(rootfd, path, O_CREAT | O_RDONLY | O_NOCTTY | O_NONBLOCK, 0644);
                if (fd == -ENOENT && hops < MAX_LINK_HOPS) {
                        /* A dangling symlink whose target's directory is missing: make the target, as
                         * runc does, at the place the link names inside the root, never outside it. */
                        g_autofree char *target = link_target_in_root(rootfd, path);
                        if (target) {
                                fd = open_target(rootfd, root_path, target, file, hops + 1, error);
                                if (fd < 0)
                                        return -1;
                        }
                }
                if (fd < 0) {
                        iso_fail_errno(error, -fd, "create '%s%s'", root_path, path);
                        return -1;
                }
                kiln_close_fdp(&fd);
        }
        fd = kiln_rootfs_open(rootfd, path, O_PATH, 0);
        if (fd < 0)
                iso_fail_errno(error, -fd, "open '%s%s'", root_path, path);
        return fd < 0 ? -1 : fd;
}

int iso_root_open_target(int rootfd, const char *root_path, const char *path, bool file, GError **error)
{
        return open_target(rootfd, root_path, path, file, 0, error);
}

/* The flags a mount has that a remount must keep: in a user namespace the kernel locks nosuid, nodev,
 * noexec, ro and the atime flags of mounts that came from a more privileged namespace. */
static unsigned long locked_flags(int fd)
{
        static const struct {
                unsigned long st, ms;
        } table[] = {
                {ST_RDONLY, MS_RDONLY},     {ST_NOSUID, MS_NOSUID},   {ST_NODEV, MS_NODEV},
                {ST_NOEXEC, MS_NOEXEC},     {ST_NOATIME, MS_NOATIME}, {ST_NODIRATIME, MS_NODIRATIME},
                {ST_RELATIME, MS_RELATIME},
        };
        struct statvfs st;
        unsigned long flags = 0;

        if (fstatvfs(fd, &st) < 0)
                return 0;
        for (size_t i = 0; i < G_N_ELEMENTS(table); i++)
                if (st.f_flag & table[i].st)
                        flags |= table[i].ms;
        return flags;
}

gboolean iso_remount(int fd, const char *what, unsigned long flags, bool keep, GError **error)
{
        char p[ISO_FD_PATH_MAX];

        if (keep)
                flags |= locked_flags(fd);

        flags &= MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME |
                 MS_STRICTATIME | MS_SYNCHRONOUS | MS_DIRSYNC | MS_MANDLOCK;
        /* Safe: a bind remount changes only this mount's flags, inside our own mount namespace. */
        if (mount(NULL, iso_fd_path(p, fd), NULL, MS_REMOUNT | MS_BIND | flags, NULL) == 0)
                return TRUE;
        if (errno == EPERM) {
                /* A locked flag cannot be cleared; the mount gets what was asked on top of them. */
                unsigned long locked = locked_flags(fd);
                if (flags & MS_STRICTATIME)
                        locked &= ~(MS_NOATIME | MS_NODIRATIME | MS_RELATIME);
                if (mount(NULL, p, NULL, MS_REMOUNT | MS_BIND | flags | locked, NULL) == 0)
                        return TRUE;
        }
        return iso_fail_errno(error, errno, "remount '%s'", what);
}

/* For a recursive bind, ro, nosuid, nodev and noexec go to every submount too (a read-only volume or
 * cgroup tree must not have writable mounts inside it). Kernels before 5.12 lack mount_setattr: there
 * only the top mount gets them, as with runc's remount. */
static gboolean set_recursive(int fd, const char *what, unsigned long flags, bool *applied, GError **error)
{
        static const struct {
                unsigned long ms;
                guint64 attr;
        } table[] = {
                {MS_RDONLY, MOUNT_ATTR_RDONLY},
                {MS_NOSUID, MOUNT_ATTR_NOSUID},
                {MS_NODEV, MOUNT_ATTR_NODEV},
                {MS_NOEXEC, MOUNT_ATTR_NOEXEC},
        };
        struct mount_attr attr = {0};

        for (size_t i = 0; i < G_N_ELEMENTS(table); i++)
                if (flags & table[i].ms)
                        attr.attr_set |= table[i].attr;
        if (applied)
                *applied = attr.attr_set == 0;
        if (attr.attr_set == 0)
                return TRUE;
        /* Safe: these attributes only take rights away, on mounts of our own namespace. */
        if (mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0) {
                if (errno != ENOSYS)
                        return iso_fail_errno(error, errno, "mount_setattr on '%s' and its submounts", what);
                return TRUE;
        }
        if (applied)
                *applied = true;
        return TRUE;
}

static bool is_fs(const char *path, unsigned long magic)
{
        struct statfs st;
        return statfs(path, &st) == 0 && (unsigned long)st.f_type == magic;
}

/* Binds the host path @source onto @target_fd (of @where). */
static gboolean bind_host(const char *source, int source_fd, int target_fd, bool recursive,
                          const char *where, GError **error)
{
        char s[ISO_FD_PATH_MAX], t[ISO_FD_PATH_MAX];

        /* Safe: the source is kilnd's host path, opened by us; recursive binds (the default for kiln's
         * volumes) never uncover what a submount hides on the host, and a non-recursive bind of a tree
         * with locked submounts is refused by the kernel. */
        if (mount(iso_fd_path(s, source_fd), iso_fd_path(t, target_fd), NULL,
                  MS_BIND | (recursive ? MS_REC : 0), NULL) < 0)
                return iso_fail_errno(error, errno, "bind '%s' at '%s'", source, where);
        return TRUE;
}

/* A file system the kernel will not mount here (sysfs of a network namespace we do not own, mqueue of
 * an IPC namespace we do not own, cgroup v1 in a user namespace): the host's own, bound. */
static const char *fallback_source(const char *type)
{
        static const struct {
                const char *type, *source;
        } table[] = {
                {"sysfs", "/sys"},
                {"mqueue", "/dev/mqueue"},
                {"cgroup", "/sys/fs/cgroup"},
                {"cgroup2", "/sys/fs/cgroup"},
        };

        for (size_t i = 0; i < G_N_ELEMENTS(table); i++)
                if (g_str_equal(type, table[i].type))
                        return table[i].source;
        return NULL;
}

/* cgroup v1 with a cgroup of the run's own: a tmpfs holding, for each hierarchy, only the run's cgroup
 * directory, bound at the hierarchy's usual name (/sys/fs/cgroup/pids, ...), as runc does. The container
 * sees its own limits, and nothing of the host's tree above them. */
static gboolean mount_cgroup_v1(IsoRoot *root, const IsoMount *m, GError **error)
{
        const char *root_path = root->spec->root;
        g_autofree char *where = g_strconcat(root_path, m->destination, NULL);
        unsigned long flags =
                (m->flags & ~(MS_REMOUNT | MS_BIND | MS_REC)) | MS_NOSUID | MS_NODEV | MS_NOEXEC;
        _cleanup_close_ int target_fd = -1, top_fd = -1;
        char t[ISO_FD_PATH_MAX], s[ISO_FD_PATH_MAX];
        bool applied = false;

        target_fd = iso_root_open_target(root->rootfd, root_path, m->destination, false, error);
        if (target_fd < 0)
                return FALSE;
        /* Safe: a new tmpfs on a directory of the container, in our own mount namespace. */
        if (mount("tmpfs", iso_fd_path(t, target_fd), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "mode=755,size=64k") < 0)
                return iso_fail_errno(error, errno, "mount tmpfs for cgroups at '%s'", where);
        top_fd = kiln_rootfs_open(root->rootfd, m->destination, O_PATH | O_DIRECTORY, 0);
        if (top_fd < 0)
                return iso_fail_errno(error, -top_fd, "open '%s' after mounting", where);
        for (guint i = 0; i < root->cgroup_dirs->len; i++) {
                const KilnCgroupDir *d = &g_array_index(root->cgroup_dirs, KilnCgroupDir, i);
                g_autofree char *sub = g_build_filename(where, d->mount_name, NULL);
                _cleanup_close_ int source_fd = -1, sub_fd = -1;

                if (d->unified || !*d->mount_name || strchr(d->mount_name, '/') || d->mount_name[0] == '.')
                        continue;
                if (mkdirat(top_fd, d->mount_name, 0755) < 0 && errno != EEXIST)
                        return iso_fail_errno(error, errno, "mkdir '%s'", sub);
                source_fd = open(d->path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (source_fd < 0)
                        return iso_fail_errno(error, errno, "open cgroup '%s'", d->path);
                sub_fd = openat(top_fd, d->mount_name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub_fd < 0)
                        return iso_fail_errno(error, errno, "open '%s'", sub);
                /* Safe: the run's own cgroup directory (kilnd's linux.cgroupsPath, which the parent made),
                 * onto a directory of the tmpfs just made. Not recursive: a cgroup has no submounts. */
                if (mount(iso_fd_path(s, source_fd), iso_fd_path(t, sub_fd), NULL, MS_BIND, NULL) < 0)
                        return iso_fail_errno(error, errno, "bind cgroup '%s' at '%s'", d->path, sub);
        }
        /* Read-only (and what else the spec says) all at once, the binds included; one remount each
         * where the kernel has no mount_setattr. */
        if (!set_recursive(top_fd, where, flags, &applied, error))
                return FALSE;
        for (guint i = 0; !applied && i < root->cgroup_dirs->len; i++) {
                const char *name = g_array_index(root->cgroup_dirs, KilnCgroupDir, i).mount_name;
                _cleanup_close_ int fd = openat(top_fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd >= 0 && !iso_remount(fd, where, flags, false, error))
                        return FALSE;
        }
        return applied || iso_remount(top_fd, where, flags, false, error);
}

static gboolean mount_one(IsoRoot *root, const IsoMount *m, GError **error)
{
        const char *root_path = root->spec->root;
        g_autofree char *where = g_strconcat(root_path, m->destination, NULL);
        const char *type = m->type, *bind_source = m->bind ? m->source : NULL;
        _cleanup_close_ int source_fd = -1, target_fd = -1, top_fd = -1;
        unsigned long flags = m->flags & ~MS_REMOUNT;
        bool recursive = m->recursive;
        char t[ISO_FD_PATH_MAX];
        struct stat st;

        if (g_str_equal(m->destination, "/") || strspn(m->destination, "/") == strlen(m->destination))
                return iso_fail(error, "mount at '%s': the root cannot be a mount destination", where);

        /* "cgroup" means the host's kind: cgroup2 where the host is unified (a new instance shows the root
         * of the cgroup namespace: the run's own cgroup); on cgroup v1 hosts the run's own cgroups, or
         * without one (a spec with no cgroupsPath) the host's hierarchy bound read-only. */
        if (g_str_equal(type, "cgroup")) {
                if (is_fs("/sys/fs/cgroup", CGROUP2_SUPER_MAGIC))
                        type = "cgroup2";
                else if (root->cgroup_dirs)
                        return mount_cgroup_v1(root, m, error);
                else
                        bind_source = "/sys/fs/cgroup", recursive = true;
        }
        if (bind_source) {
                source_fd = open(bind_source, O_PATH | O_CLOEXEC);
                if (source_fd < 0 || fstat(source_fd, &st) < 0)
                        return iso_fail_errno(error, errno, "open bind source '%s' for '%s'", bind_source,
                                              where);
        }
        target_fd = iso_root_open_target(root->rootfd, root_path, m->destination,
                                         bind_source && !S_ISDIR(st.st_mode), error);
        if (target_fd < 0)
                return FALSE;

        if (bind_source) {
                if (!bind_host(bind_source, source_fd, target_fd, recursive, where, error))
                        return FALSE;
        } else if (mount(m->source && *m->source ? m->source : type, iso_fd_path(t, target_fd), type,
                         flags & ~(MS_REC | MS_BIND), m->data) < 0) {
                /* Safe: a new instance of a file system on a directory of the container, in our own mount
                 * namespace; the flags are the spec's. */
                int errsv = errno;
                const char *fallback = fallback_source(type);

                /* cgroup2 refused (a cgroup namespace this user namespace does not own): the run's own
                 * cgroup rather than the host's whole tree. */
                for (guint i = 0;
                     root->cgroup_dirs && g_str_equal(type, "cgroup2") && i < root->cgroup_dirs->len; i++)
                        if (g_array_index(root->cgroup_dirs, KilnCgroupDir, i).unified)
                                fallback = g_array_index(root->cgroup_dirs, KilnCgroupDir, i).path;

                if (!fallback || (errsv != EPERM && errsv != EBUSY))
                        return iso_fail_errno(error, errsv, "mount %s at '%s'", type, where);
                source_fd = open(fallback, O_PATH | O_CLOEXEC);
                if (source_fd < 0)
                        return iso_fail_errno(error, errsv, "mount %s at '%s'", type, where);
                if (!bind_host(fallback, source_fd, target_fd, true, where, error))
                        return FALSE;
                bind_source = fallback;
        }

        /* The descriptor held the covered directory; the new mount is found by looking again. */
        top_fd = kiln_rootfs_open(root->rootfd, m->destination, O_PATH, 0);
        if (top_fd < 0)
                return iso_fail_errno(error, -top_fd, "open '%s' after mounting", where);
        if (bind_source && (flags & ~(MS_BIND | MS_REC)) && !iso_remount(top_fd, where, flags, false, error))
                return FALSE;
        if (bind_source && recursive && !set_recursive(top_fd, where, flags, NULL, error))
                return FALSE;
        /* Safe: propagation of a mount inside our namespace; "/" was made a slave first, so even "shared"
         * only shares with the host what the host already shares with us. */
        if (m->propagation && mount(NULL, iso_fd_path(t, top_fd), NULL, m->propagation, NULL) < 0)
                return iso_fail_errno(error, errno, "set propagation of '%s'", where);
        if (g_str_equal(m->destination, "/dev") && g_str_equal(type, "tmpfs"))
                root->dev_is_tmpfs = true;
        return TRUE;
}

gboolean iso_mounts_prepare_root(IsoRoot *root, GError **error)
{
        const IsoSpec *spec = root->spec;
        unsigned long propagation = spec->rootfs_propagation ? spec->rootfs_propagation : MS_SLAVE | MS_REC;

        /* Safe: the init has a mount namespace of its own. Making every mount in it a slave (or what
         * rootfsPropagation says) means nothing mounted or unmounted below ever propagates to the host. */
        if (mount(NULL, "/", NULL, propagation, NULL) < 0)
                return iso_fail_errno(error, errno, "make '/' %s",
                                      propagation & MS_SHARED ? "shared" : "a slave");
        /* pivot_root needs the new root to be a mount point: the root file system bound on itself,
         * recursively so that whatever kilnd mounted under it stays. */
        if (mount(spec->root, spec->root, NULL, MS_BIND | MS_REC, NULL) < 0)
                return iso_fail_errno(error, errno, "bind root '%s' on itself", spec->root);
        root->rootfd = open(spec->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root->rootfd < 0)
                return iso_fail_errno(error, errno, "open root '%s'", spec->root);
        return TRUE;
}

gboolean iso_mounts_apply(IsoRoot *root, GError **error)
{
        g_autoptr(GError) local = NULL;

        for (gsize i = 0; i < root->spec->n_mounts; i++)
                if (!mount_one(root, &root->spec->mounts[i], error))
                        return FALSE;
        /* The working directory exists, as runc makes sure (kilnd made it already, with its owner). */
        if (!kiln_rootfs_mkdir_p(root->rootfd, root->spec->cwd, 0755, (uid_t)-1, (gid_t)-1, &local))
                return iso_fail(error, "mkdir working directory '%s%s': %s", root->spec->root,
                                root->spec->cwd, local->message);
        return TRUE;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* /dev: when the spec mounts a fresh tmpfs there, it gets the standard nodes (bound from the host's,
 * which works inside a user namespace where mknod does not), the usual symlinks, and the spec's
 * linux.devices. Everything is created under the container's /dev, resolved inside the root. */
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "isolate.h"
#include "base/rootfs.h"

static const char *const standard_nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};

static const struct {
        const char *name, *target;
} standard_links[] = {
        {"fd", "/proc/self/fd"},       {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
        {"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"},
};

static bool spec_has_device(const IsoSpec *spec, const char *path)
{
        for (gsize i = 0; i < spec->n_devices; i++)
                if (g_str_equal(spec->devices[i].path, path))
                        return true;
        return false;
}

/* The host's device node @path, opened O_PATH. */
static int open_host_node(const char *path, GError **error)
{
        _cleanup_close_ int fd = open(path, O_PATH | O_CLOEXEC);
        struct stat st;

        if (fd < 0 || fstat(fd, &st) < 0)
                return iso_fail_errno(error, errno, "open host device '%s'", path), -1;
        if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode))
                return iso_fail(error, "host device '%s' is not a device node", path), -1;
        return kiln_steal_fd(&fd);
}

/* Safe: the host's node itself (not a new one: the device cgroup of runc does not exist here, so only
 * nodes the spec names ever appear), on a file of the container's private /dev. */
static gboolean bind_node(int source, int target, const char *path, const char *root_path, GError **error)
{
        char s[ISO_FD_PATH_MAX], t[ISO_FD_PATH_MAX];

        if (mount(iso_fd_path(s, source), iso_fd_path(t, target), NULL, MS_BIND, NULL) < 0)
                return iso_fail_errno(error, errno, "bind device '%s' at '%s%s'", path, root_path, path);
        return TRUE;
}

/* An empty file at @path in the root with the host's node of the same path bound on it. */
static gboolean bind_host_node(IsoRoot *root, const char *path, GError **error)
{
        _cleanup_close_ int source = -1, target = -1;

        source = open_host_node(path, error);
        if (source < 0)
                return FALSE;
        target = iso_root_open_target(root->rootfd, root->spec->root, path, true, error);
        return target >= 0 && bind_node(source, target, path, root->spec->root, error);
}

/* The same for a standard node in the fresh /dev tmpfs (@dev): made with O_EXCL right in it, without
 * resolving the path again. Something already there (a volume the spec mounts on it) is found the
 * careful way instead. */
static gboolean bind_standard_node(IsoRoot *root, int dev, const char *name, GError **error)
{
        g_autofree char *path = g_strconcat("/dev/", name, NULL);
        _cleanup_close_ int source = -1, target = -1;

        source = open_host_node(path, error);
        if (source < 0)
                return FALSE;
        target = openat(dev, name, O_CREAT | O_EXCL | O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0644);
        if (target < 0 && errno == EEXIST)
                return bind_host_node(root, path, error);
        if (target < 0)
                return iso_fail_errno(error, errno, "create '%s%s'", root->spec->root, path);
        return bind_node(source, target, path, root->spec->root, error);
}

static gboolean make_node(IsoRoot *root, const IsoDevice *d, GError **error)
{
        const char *root_path = root->spec->root;
        g_autofree char *dir = g_path_get_dirname(d->path);
        g_autofree char *name = g_path_get_basename(d->path);
        _cleanup_close_ int dirfd = -1;

        if (root->in_userns && d->type != S_IFIFO)
                return bind_host_node(root, d->path, error);
        /* Made if missing, then opened for real: mknodat does not take an O_PATH directory. */
        dirfd = iso_root_open_target(root->rootfd, root_path, dir, false, error);
        if (dirfd < 0)
                return FALSE;
        kiln_close_fdp(&dirfd);
        dirfd = kiln_rootfs_open(root->rootfd, dir, O_RDONLY | O_DIRECTORY, 0);
        if (dirfd < 0)
                return iso_fail_errno(error, -dirfd, "open '%s%s'", root_path, dir);
        if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
                return iso_fail_errno(error, errno, "unlink '%s%s'", root_path, d->path);
        /* Safe: exactly the node the spec names (kilnd authorized devices); mknodat never follows a final
         * symlink, and the directory was resolved inside the root. */
        if (mknodat(dirfd, name, d->type | (d->file_mode & 0777), makedev(d->major, d->minor)) < 0)
                return iso_fail_errno(error, errno, "mknod '%s%s'", root_path, d->path);
        if (fchmodat(dirfd, name, d->file_mode & 07777, 0) < 0)
                return iso_fail_errno(error, errno, "chmod '%s%s'", root_path, d->path);
        if (fchownat(dirfd, name, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0)
                return iso_fail_errno(error, errno, "chown '%s%s'", root_path, d->path);
        return TRUE;
}

gboolean iso_dev_populate(IsoRoot *root, GError **error)
{
        const IsoSpec *spec = root->spec;

        if (root->dev_is_tmpfs) {
                _cleanup_close_ int dev = kiln_rootfs_open(root->rootfd, "/dev", O_RDONLY | O_DIRECTORY, 0);

                if (dev < 0)
                        return iso_fail_errno(error, -dev, "open '%s/dev'", spec->root);
                for (size_t i = 0; i < G_N_ELEMENTS(standard_nodes); i++) {
                        g_autofree char *path = g_strconcat("/dev/", standard_nodes[i], NULL);
                        if (!spec_has_device(spec, path) &&
                            !bind_standard_node(root, dev, standard_nodes[i], error))
                                return FALSE;
                }
                for (size_t i = 0; i < G_N_ELEMENTS(standard_links); i++)
                        if (symlinkat(standard_links[i].target, dev, standard_links[i].name) < 0 &&
                            errno != EEXIST)
                                return iso_fail_errno(error, errno, "symlink '%s/dev/%s'", spec->root,
                                                      standard_links[i].name);
        }
        for (gsize i = 0; i < spec->n_devices; i++)
                if (!make_node(root, &spec->devices[i], error))
                        return FALSE;
        return TRUE;
}

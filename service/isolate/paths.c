/* SPDX-License-Identifier: Apache-2.0 */
/* The end of the file system setup: sysctls, the switch into the root file system (pivot_root, or
 * MS_MOVE + chroot), then read-only paths, masked paths and a read-only root, as runc orders them. */
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "isolate.h"
#include "base/fs-util.h"
#include "base/rootfs.h"

/* Sysctls that belong to a namespace, and which one: anything else would change the host. */
static const struct {
        const char *prefix; /* a whole key, or a prefix ending in '.' */
        int ns;
} sysctl_table[] = {
        {"kernel.msgmax", ISO_NS_IPC},   {"kernel.msgmnb", ISO_NS_IPC},
        {"kernel.msgmni", ISO_NS_IPC},   {"kernel.sem", ISO_NS_IPC},
        {"kernel.shmall", ISO_NS_IPC},   {"kernel.shmmax", ISO_NS_IPC},
        {"kernel.shmmni", ISO_NS_IPC},   {"kernel.shm_rmid_forced", ISO_NS_IPC},
        {"fs.mqueue.", ISO_NS_IPC},      {"net.", ISO_NS_NET},
        {"kernel.hostname", ISO_NS_UTS}, {"kernel.domainname", ISO_NS_UTS},
};

static gboolean sysctl_check(const IsoSpec *spec, const char *key, GError **error)
{
        if (!*key ||
            strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") !=
                    strlen(key) ||
            strstr(key, "..") || key[0] == '.')
                return iso_fail(error, "config.json: linux.sysctl: invalid key '%s'", key);
        for (size_t i = 0; i < G_N_ELEMENTS(sysctl_table); i++) {
                const char *p = sysctl_table[i].prefix;
                bool match = g_str_has_suffix(p, ".") ? g_str_has_prefix(key, p) : g_str_equal(key, p);
                const IsoNamespace *ns = &spec->ns[sysctl_table[i].ns];

                if (!match)
                        continue;
                if (!ns->present || ns->path)
                        return iso_fail(error, "config.json: linux.sysctl: %s needs a new %s namespace", key,
                                        iso_ns_name(sysctl_table[i].ns));
                return TRUE;
        }
        return iso_fail(error, "config.json: linux.sysctl: %s is not namespaced; it would change the host",
                        key);
}

gboolean iso_sysctl_apply(const IsoSpec *spec, GError **error)
{
        _cleanup_close_ int dirfd = -1;

        if (!spec->sysctl || !spec->sysctl[0])
                return TRUE;
        /* The host's /proc is still there (before the pivot): a namespaced sysctl's file shows the
         * namespace of the process that opens it, which is ours. */
        dirfd = open("/proc/sys", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                return iso_fail_errno(error, errno, "open '/proc/sys'");
        for (char **kv = spec->sysctl; kv[0] && kv[1]; kv += 2) {
                g_autofree char *path = g_strdelimit(g_strdup(kv[0]), ".", '/');
                g_autoptr(GError) local = NULL;

                if (!sysctl_check(spec, kv[0], error))
                        return FALSE;
                if (!iso_write_file(dirfd, path, kv[1], &local))
                        return iso_fail(error, "sysctl %s=%s: %s", kv[0], kv[1], local->message);
        }
        return TRUE;
}

/* After the switch root->rootfd is "/": paths below are still resolved in it, never through the cwd. */
gboolean iso_pivot(IsoRoot *root, bool no_pivot, GError **error)
{
        const char *r = root->spec->root;
        _cleanup_close_ int old_root = -1;

        if (fchdir(root->rootfd) < 0)
                return iso_fail_errno(error, errno, "chdir '%s'", r);
        if (no_pivot) {
                /* The root file system's mount moved over "/", then chroot: the old root stays below,
                 * which is why --no-pivot is weaker (and needs CAP_SYS_CHROOT to be dropped to hold). */
                if (mount(r, "/", NULL, MS_MOVE, NULL) < 0)
                        return iso_fail_errno(error, errno, "move mount '%s' to '/'", r);
                if (chroot(".") < 0)
                        return iso_fail_errno(error, errno, "chroot '%s'", r);
                if (chdir("/") < 0)
                        return iso_fail_errno(error, errno, "chdir '/' in '%s'", r);
                return TRUE;
        }
        old_root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (old_root < 0)
                return iso_fail_errno(error, errno, "open '/'");
        /* pivot_root(".", "."): the new root becomes "/", the old one is stacked on it at the same place;
         * no directory for the old root is needed inside the container's tree. */
        if (syscall(SYS_pivot_root, ".", ".") < 0)
                return iso_fail_errno(error, errno, "pivot_root to '%s'", r);
        if (fchdir(old_root) < 0)
                return iso_fail_errno(error, errno, "chdir to the old root");
        /* Safe: the old root (the host's tree as this namespace saw it) is made a slave so its unmount
         * cannot propagate anywhere, then detached: nothing of the host stays reachable. */
        if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
                return iso_fail_errno(error, errno, "make the old root a slave");
        if (umount2(".", MNT_DETACH | UMOUNT_NOFOLLOW) < 0)
                return iso_fail_errno(error, errno, "detach the old root");
        if (chdir("/") < 0)
                return iso_fail_errno(error, errno, "chdir '/' in '%s'", r);
        return TRUE;
}

gboolean iso_readonly_paths(IsoRoot *root, GError **error)
{
        const IsoSpec *spec = root->spec;

        for (char **p = spec->readonly_paths; p && *p; p++) {
                _cleanup_close_ int fd = -1, top = -1;
                char s[ISO_FD_PATH_MAX];

                fd = kiln_rootfs_open(root->rootfd, *p, O_PATH | O_NOFOLLOW, 0);
                if (fd == -ENOENT)
                        continue;
                if (fd < 0)
                        return iso_fail_errno(error, -fd, "open read-only path '%s'", *p);
                /* Safe: a bind of the path on itself inside the container, then made read-only. */
                if (mount(iso_fd_path(s, fd), s, NULL, MS_BIND | MS_REC, NULL) < 0)
                        return iso_fail_errno(error, errno, "bind read-only path '%s'", *p);
                top = kiln_rootfs_open(root->rootfd, *p, O_PATH | O_NOFOLLOW, 0);
                if (top < 0)
                        return iso_fail_errno(error, -top, "open read-only path '%s'", *p);
                if (!iso_remount(top, *p, MS_RDONLY, true, error))
                        return FALSE;
        }
        return TRUE;
}

static bool is_dev_null(int fd)
{
        struct stat st;

        return fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3);
}

gboolean iso_null_prepare(IsoRoot *root, GError **error)
{
        _cleanup_close_ int fd = -1;

        if (!root->spec->masked_paths || !root->spec->masked_paths[0])
                return TRUE;
        /* The host's /dev/null, before anything of the container is mounted: not the container's, which
         * its /dev (a caller's volume, say) could make a symlink to any file it wants bound read-write
         * over a masked path (CVE-2025-31133's class). Checked to be the null device all the same. */
        fd = open("/dev/null", O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return iso_fail_errno(error, errno, "open the host's '/dev/null'");
        if (!is_dev_null(fd))
                return iso_fail(error, "the host's '/dev/null' is not the null device (1:3)");
        /* A mount of its own, detached: it survives the pivot that detaches the host's tree. */
        root->null_tree = open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
        if (root->null_tree < 0)
                return iso_fail_errno(error, errno, "clone the host's '/dev/null'");
        return TRUE;
}

/* A masked path inside the root, through no symlink at all: /proc and /sys are fresh mounts where none
 * belongs, and anything else there is the image's doing. */
static int open_masked(int rootfd, const char *path)
{
        return kiln_openat2(rootfd, path, O_PATH | O_NOFOLLOW, 0,
                            RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
}

gboolean iso_masked_paths(IsoRoot *root, GError **error)
{
        const IsoSpec *spec = root->spec;
        bool attached = false;

        for (char **p = spec->masked_paths; p && *p; p++) {
                _cleanup_close_ int fd = -1;
                char s[ISO_FD_PATH_MAX], t[ISO_FD_PATH_MAX];
                struct stat st;

                fd = open_masked(root->rootfd, *p);
                if (fd == -ENOENT)
                        continue;
                if (fd == -ELOOP)
                        return iso_fail(error, "masked path '%s' goes through a symlink", *p);
                if (fd < 0 || fstat(fd, &st) < 0)
                        return iso_fail_errno(error, fd < 0 ? -fd : errno, "open masked path '%s'", *p);
                if (S_ISDIR(st.st_mode)) {
                        /* Safe: an empty read-only tmpfs hides the directory. */
                        if (mount("tmpfs", iso_fd_path(t, fd), "tmpfs",
                                  MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0k") < 0)
                                return iso_fail_errno(error, errno, "mask '%s' with a tmpfs", *p);
                        continue;
                }
                if (root->null_tree < 0)
                        return iso_fail(error, "no '/dev/null' to mask '%s'", *p);
                /* Safe: the host's null device over the file (reads give nothing, writes go nowhere).
                 * Its clone is attached on the first file; from then on it is a mount in our namespace,
                 * and the later ones are bound from it through its descriptor. */
                if (!attached) {
                        if (move_mount(root->null_tree, "", fd, "",
                                       MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
                                return iso_fail_errno(error, errno, "mask '%s' with /dev/null", *p);
                        attached = true;
                } else if (mount(iso_fd_path(s, root->null_tree), iso_fd_path(t, fd), NULL, MS_BIND, NULL) <
                           0) {
                        return iso_fail_errno(error, errno, "mask '%s' with /dev/null", *p);
                }
        }
        return TRUE;
}

gboolean iso_root_readonly(const IsoSpec *spec, GError **error)
{
        _cleanup_close_ int fd = -1;

        if (!spec->root_readonly)
                return TRUE;
        fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return iso_fail_errno(error, errno, "open '/'");
        return iso_remount(fd, "/", MS_RDONLY, true, error);
}

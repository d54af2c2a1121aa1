/* SPDX-License-Identifier: Apache-2.0 */
/* Storage, its overlay mounts: a builder's root file system as an overlay of its base layer
 * (ID-mapped in a user namespace) and its upper and work dirs, made with the new mount API so that
 * every path overlayfs is given was checked first (see storage.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs-util.h"
#include "base/kiln-common.h"
#include "storage/mount-idmap.h"
#include "storage/storage-private.h"
#include "storage/storage-testing.h"

static gboolean dir_is_empty(int fd)
{
        DIR *d;
        struct dirent *de;
        int dup_fd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        gboolean empty = TRUE;

        if (dup_fd < 0)
                return FALSE;
        d = fdopendir(dup_fd);
        if (!d) {
                close(dup_fd);
                return FALSE;
        }
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
                        empty = FALSE;
                        break;
                }
        closedir(d);
        return empty;
}

/* Overlayfs shows the upper dir's own metadata for the merged root, so before the first mount (work/
 * is still empty then) upper/ takes the owner and mode of the layer's root, as containers/storage
 * does. Later mounts keep whatever the container made of it. */
static gboolean init_upper_root(int lower_fd, int bdir_fd, const char *bdir, GError **error)
{
        _cleanup_close_ int work = -1, upper = -1;
        struct stat st;

        work = openat(bdir_fd, "work", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (work < 0) {
                g_autofree char *p = g_build_filename(bdir, "work", NULL);
                return kiln_storage_errno_error(error, errno, "openat", p);
        }
        if (!dir_is_empty(work))
                return TRUE;
        upper = openat(bdir_fd, "upper", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (upper < 0) {
                g_autofree char *p = g_build_filename(bdir, "upper", NULL);
                return kiln_storage_errno_error(error, errno, "openat", p);
        }
        if (fstat(lower_fd, &st) < 0)
                return kiln_storage_errno_error(error, errno, "fstat", "layer");
        if (fchown(upper, st.st_uid, st.st_gid) < 0 || fchmod(upper, st.st_mode & 07777) < 0) {
                g_autofree char *p = g_build_filename(bdir, "upper", NULL);
                return kiln_storage_errno_error(error, errno, "fchown", p);
        }
        return TRUE;
}

/* A string option for the old interfaces: refuse what their option syntax would split. */
static gboolean check_option_path(const char *path, GError **error)
{
        if (strpbrk(path, ",:\\ \t\n")) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                            "Path '%s' cannot be given to this kernel's overlayfs", path);
                return FALSE;
        }
        return TRUE;
}

/* The kernel's own account of a failed fsconfig, if it left one in the context's log. */
static char *fs_context_log(int fsfd)
{
        char buf[512];
        ssize_t n = read(fsfd, buf, sizeof(buf) - 1);

        if (n <= 0)
                return NULL;
        buf[n] = '\0';
        g_strchomp(buf);
        return g_utf8_make_valid(buf, -1);
}

/* The new mount API: layers as descriptors (no path parsing at all) where the kernel takes them,
 * else as strings. Returns a detached mount, -1 with errno, or -2 with @error set. */
static int overlay_fsmount(const int *lowers, size_t n_lowers, int upper, int work, const char *lower_path,
                           const char *upper_path, const char *work_path, gboolean by_fd, GError **error)
{
        _cleanup_close_ int fsfd = -1;
        int mfd;

        fsfd = fsopen("overlay", FSOPEN_CLOEXEC);
        if (fsfd < 0)
                return -1;
        if (by_fd) {
                /* Top first, as overlayfs stacks lowerdir+ (@lowers is bottom first). */
                for (size_t i = n_lowers; i > 0; i--)
                        if (fsconfig(fsfd, FSCONFIG_SET_FD, "lowerdir+", NULL, lowers[i - 1]) < 0)
                                return -1;
                if (fsconfig(fsfd, FSCONFIG_SET_FD, "upperdir", NULL, upper) < 0 ||
                    fsconfig(fsfd, FSCONFIG_SET_FD, "workdir", NULL, work) < 0)
                        return -1;
        } else {
                /* lower_path is "top:…:bottom" of checked paths (see lower_paths). */
                if (!check_option_path(upper_path, error) || !check_option_path(work_path, error))
                        return -2;
                if (fsconfig(fsfd, FSCONFIG_SET_STRING, "lowerdir", lower_path, 0) < 0 ||
                    fsconfig(fsfd, FSCONFIG_SET_STRING, "upperdir", upper_path, 0) < 0 ||
                    fsconfig(fsfd, FSCONFIG_SET_STRING, "workdir", work_path, 0) < 0)
                        return -1;
        }
        /* No metadata-only copy-up: every copied-up file is complete in upper/. */
        if (fsconfig(fsfd, FSCONFIG_SET_STRING, "metacopy", "off", 0) < 0)
                return -1;
        if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
                int e = errno;
                g_autofree char *log = fs_context_log(fsfd);
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "mount overlay on '%s': %s%s%s",
                            upper_path, g_strerror(e), log ? " — " : "", log ? log : "");
                return -2;
        }
        /* nosuid, nodev: nothing in a layer or an upper dir gains privileges or reaches a device on
         * the host through this mount. */
        mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
        if (mfd < 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "fsmount overlay: %s",
                            g_strerror(errno));
                return -2;
        }
        return mfd;
}

/* Without layer descriptors, a detached ID-mapped tree has no path to give the overlay: it is attached
 * on the builder's (still empty) mount point while the overlay is made, then detached again (the
 * overlay holds its own reference to each layer). The mount point is in RUNTIME/mounts, root's alone,
 * so nobody else sees the layer there in the meantime. */
static int overlay_over_attached_layer(KilnStorage *s, const char *id, int layer_tree,
                                       const char *upper_path, const char *work_path, GError **error)
{
        g_autofree char *point = kiln_storage_mount_point_path(s, id);
        int mfd, e;

        if (!check_option_path(point, error))
                return -2;
        if (move_mount(layer_tree, "", s->mounts_fd, id, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
                kiln_storage_errno_error(error, errno, "move_mount (ID-mapped layer)", point);
                return -2;
        }
        mfd = overlay_fsmount(NULL, 0, -1, -1, point, upper_path, work_path, FALSE, error);
        e = errno;
        if (umount2(point, MNT_DETACH | UMOUNT_NOFOLLOW) < 0)
                g_warning("Cannot detach the ID-mapped layer from %s: %s", point, g_strerror(errno));
        if (mfd == -1)
                kiln_storage_errno_error(error, e, "fsconfig overlay (ID-mapped layer)", upper_path);
        return mfd == -1 ? -2 : mfd;
}

gboolean kiln_storage_can_idmap_layers(KilnStorage *s, int userns_fd, GError **error)
{
        _cleanup_close_ int tree = kiln_idmapped_tree(s->layers_fd, userns_fd, s->layers_dir, error);

        return tree >= 0;
}

void kiln_storage_prefer_layer_paths(KilnStorage *s)
{
        s->layers_by_path = TRUE;
}

/* "top:…:bottom" for the interfaces that take paths; every path checked for their separators. */
static char *lower_paths(KilnStorage *s, const char *const *layers, size_t n, GError **error)
{
        GString *str = g_string_new(NULL);

        for (size_t i = n; i > 0; i--) {
                g_autofree char *p = g_build_filename(s->layers_dir, layers[i - 1], NULL);
                if (!check_option_path(p, error)) {
                        g_string_free(str, TRUE);
                        return NULL;
                }
                g_string_append_printf(str, "%s%s", str->len ? ":" : "", p);
        }
        return g_string_free(str, FALSE);
}

static void close_lowers(int *lowers, size_t n)
{
        for (size_t i = 0; i < n; i++)
                kiln_close_fdp(&lowers[i]);
        g_free(lowers);
}

char *kiln_storage_mount(KilnStorage *s, const char *id, const char *const *layers, int userns_fd,
                         GError **error)
{
        g_autofree char *target = NULL, *bdir = NULL, *lower_path = NULL, *upper_path = NULL,
                        *work_path = NULL;
        _cleanup_close_ int bdir_fd = -1, upper = -1, work = -1, mfd = -1;
        int *lowers = NULL;
        size_t n = layers ? g_strv_length((char **)layers) : 0;
        char *result = NULL;
        struct stat st;

        if (!kiln_storage_check_id("builder id", id, error))
                return NULL;
        if (n == 0) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "Builder %s has no layer", id);
                return NULL;
        }
        for (size_t i = 0; i < n; i++)
                if (!kiln_storage_check_id("layer digest", layers[i], error))
                        return NULL;
        target = kiln_storage_mount_point_path(s, id);
        if (kiln_storage_path_is_mounted(target))
                return g_steal_pointer(&target);

        bdir = g_build_filename(s->builders_dir, id, NULL);
        upper_path = g_build_filename(bdir, "upper", NULL);
        work_path = g_build_filename(bdir, "work", NULL);

        lowers = g_new(int, n);
        for (size_t i = 0; i < n; i++)
                lowers[i] = -1;
        for (size_t i = 0; i < n; i++) {
                g_autofree char *p = g_build_filename(s->layers_dir, layers[i], NULL);

                lowers[i] = openat(s->layers_fd, layers[i], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (lowers[i] < 0) {
                        kiln_storage_errno_error(error, errno, "openat", p);
                        goto out;
                }
                if (userns_fd >= 0) {
                        /* Each shared layer seen through the builder's mapping; the upper dir's root then
                         * takes the mapped owner of the top layer's root (init_upper_root). */
                        int mapped = kiln_idmapped_tree(lowers[i], userns_fd, p, error);
                        if (mapped < 0)
                                goto out; /* the caller reports it, once */
                        close(lowers[i]);
                        lowers[i] = mapped;
                }
        }
        bdir_fd = openat(s->builders_fd, id, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (bdir_fd < 0) {
                kiln_storage_errno_error(error, errno, "openat", bdir);
                goto out;
        }
        upper = openat(bdir_fd, "upper", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (upper < 0) {
                kiln_storage_errno_error(error, errno, "openat", upper_path);
                goto out;
        }
        work = openat(bdir_fd, "work", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (work < 0) {
                kiln_storage_errno_error(error, errno, "openat", work_path);
                goto out;
        }
        if (!init_upper_root(lowers[n - 1], bdir_fd, bdir, error))
                goto out;

        /* The mount point: our own directory in RUNTIME/mounts (0700 root). */
        if (mkdirat(s->mounts_fd, id, 0700) < 0 && errno != EEXIST) {
                kiln_storage_errno_error(error, errno, "mkdirat", target);
                goto out;
        }
        if (fstatat(s->mounts_fd, id, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_DIRECTORY,
                            "Mount point '%s' is not a directory", target);
                goto out;
        }

        if (s->layers_by_path) {
                mfd = -1;
                errno = EINVAL;
        } else {
                mfd = overlay_fsmount(lowers, n, upper, work, NULL, upper_path, work_path, TRUE, error);
                if (mfd == -1 && errno == EINVAL)
                        s->layers_by_path = TRUE;
        }
        if (mfd == -1 && errno == EINVAL && userns_fd >= 0) {
                /* One ID-mapped layer can be attached on the empty mount point while the overlay is made;
                 * several would each need a path of their own. */
                if (n > 1) {
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                                    "An image of %zu layers in a user namespace needs overlayfs layers by "
                                    "descriptor (Linux 6.13 or later)",
                                    n);
                        goto fail;
                }
                mfd = overlay_over_attached_layer(s, id, lowers[0], upper_path, work_path, error);
        } else if (mfd == -1 && errno == EINVAL) {
                lower_path = lower_paths(s, layers, n, error);
                if (!lower_path)
                        goto fail;
                mfd = overlay_fsmount(lowers, n, upper, work, lower_path, upper_path, work_path, FALSE,
                                      error);
        }
        if (mfd == -1 && errno == ENOSYS) {
                /* No new mount API: mount(2) with the same options. */
                g_autofree char *options = NULL;

                g_free(lower_path);
                lower_path = lower_paths(s, layers, n, error);
                if (!lower_path || !check_option_path(upper_path, error) ||
                    !check_option_path(work_path, error))
                        goto fail;
                options = g_strdup_printf("lowerdir=%s,upperdir=%s,workdir=%s,metacopy=off", lower_path,
                                          upper_path, work_path);
                if (mount("overlay", target, "overlay", MS_NOSUID | MS_NODEV, options) < 0) {
                        kiln_storage_errno_error(error, errno, "mount overlay", target);
                        goto fail;
                }
                result = g_steal_pointer(&target);
                goto out;
        }
        if (mfd == -1) {
                kiln_storage_errno_error(error, errno, "fsconfig overlay", upper_path);
                goto fail;
        }
        if (mfd < 0)
                goto fail;

        if (move_mount(mfd, "", s->mounts_fd, id, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
                kiln_storage_errno_error(error, errno, "move_mount", target);
                goto fail;
        }
        result = g_steal_pointer(&target);
        goto out;

fail:
        unlinkat(s->mounts_fd, id, AT_REMOVEDIR);
out:
        close_lowers(lowers, n);
        return result;
}

gboolean kiln_storage_unmount(KilnStorage *s, const char *id, GError **error)
{
        g_autofree char *target = NULL;

        if (!kiln_storage_check_id("builder id", id, error))
                return FALSE;
        target = kiln_storage_mount_point_path(s, id);

        /* Several mounts may be stacked there (mounted twice by hand, or by a crash): unmount them all. */
        for (int i = 0; i < UNMOUNT_ATTEMPTS && kiln_storage_path_is_mounted(target); i++)
                if (!kiln_storage_unmount_path(target, error))
                        return FALSE;
        if (kiln_storage_path_is_mounted(target)) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_BUSY, "'%s' is still mounted", target);
                return FALSE;
        }
        if (unlinkat(s->mounts_fd, id, AT_REMOVEDIR) < 0 && errno != ENOENT)
                return kiln_storage_errno_error(error, errno, "rmdir", target);
        return TRUE;
}

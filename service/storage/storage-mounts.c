/* SPDX-License-Identifier: Apache-2.0 */
/* Storage's mounts (see storage.h): which builder roots are mounted (read from /proc/self/mountinfo),
 * unmounting them (UMOUNT_NOFOLLOW, a lazy detach only when busy), and the start-up clean-up of what a
 * crashed kilnd left: mounts below its directories, bundles, interrupted imports. Moved out of
 * storage.c as it is; the rules of its header comment hold here too. */
#include "storage/storage-private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs-util.h"
#include "base/kiln-common.h"
#include "import/layer-digest.h"

/* ---- mountinfo ---- */

/* Undoes mountinfo's octal escapes (\040 for a space, ...). */
static char *unescape_mountinfo(const char *s)
{
        GString *out = g_string_sized_new(strlen(s));

        for (const char *p = s; *p; p++) {
                if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
                    p[3] >= '0' && p[3] <= '7') {
                        g_string_append_c(out,
                                          (char)(((p[1] - '0') << 6) | ((p[2] - '0') << 3) | (p[3] - '0')));
                        p += 3;
                } else {
                        g_string_append_c(out, *p);
                }
        }
        return g_string_free(out, FALSE);
}

/* Mount points, in mountinfo order (parents before children). */
static GPtrArray *read_mount_points(GError **error)
{
        g_autofree char *contents = NULL;
        g_auto(GStrv) lines = NULL;
        GPtrArray *points;

        if (!g_file_get_contents("/proc/self/mountinfo", &contents, NULL, error))
                return NULL;
        points = g_ptr_array_new_with_free_func(g_free);
        lines = g_strsplit(contents, "\n", -1);
        for (char **l = lines; *l; l++) {
                g_auto(GStrv) fields = g_strsplit(*l, " ", 6);
                if (g_strv_length(fields) < 5)
                        continue;
                g_ptr_array_add(points, unescape_mountinfo(fields[4]));
        }
        return points;
}

char *kiln_storage_mount_point_path(KilnStorage *s, const char *id)
{
        return g_build_filename(s->mounts_dir, id, NULL);
}

gboolean kiln_storage_path_is_mounted(const char *path)
{
        g_autoptr(GPtrArray) points = read_mount_points(NULL);

        if (!points)
                return FALSE;
        for (guint i = 0; i < points->len; i++)
                if (strcmp(points->pdata[i], path) == 0)
                        return TRUE;
        return FALSE;
}

gboolean kiln_storage_is_mounted(KilnStorage *s, const char *id)
{
        g_autofree char *path = NULL;

        if (!kiln_hex64_is_valid(id))
                return FALSE;
        path = kiln_storage_mount_point_path(s, id);
        return kiln_storage_path_is_mounted(path);
}

char *kiln_storage_mount_point(KilnStorage *s, const char *id)
{
        return kiln_hex64_is_valid(id) ? kiln_storage_mount_point_path(s, id) : NULL;
}

dev_t kiln_storage_mount_device(KilnStorage *s, const char *id)
{
        struct stat st, mounts;

        if (!kiln_hex64_is_valid(id))
                return 0;
        /* The walk to a mount point ends on the root of what is mounted there; a bare directory is on
         * RUNTIME's own file system. */
        if (fstatat(s->mounts_fd, id, &st, AT_SYMLINK_NOFOLLOW) < 0 || fstat(s->mounts_fd, &mounts) < 0 ||
            !S_ISDIR(st.st_mode) || st.st_dev == mounts.st_dev)
                return 0;
        return st.st_dev;
}

/* Unmounts @path: a plain unmount first, a lazy detach only if it is busy. */
gboolean kiln_storage_unmount_path(const char *path, GError **error)
{
        /* UMOUNT_NOFOLLOW: the last component is our own directory under RUNTIME/mounts (0700 root),
         * and a symlink there would not be followed anyway. */
        if (umount2(path, UMOUNT_NOFOLLOW) == 0)
                return TRUE;
        if (errno == EINVAL)
                return TRUE; /* not (any longer) a mount point */
        if (errno != EBUSY)
                return kiln_storage_errno_error(error, errno, "umount2", path);
        /* Busy (a process still has a file open in it): detach it from the tree now; the kernel frees
         * it when the last user goes. */
        if (umount2(path, UMOUNT_NOFOLLOW | MNT_DETACH) < 0 && errno != EINVAL)
                return kiln_storage_errno_error(error, errno, "umount2", path);
        return TRUE;
}

static int path_depth(const char *path)
{
        int n = 0;

        for (const char *p = path; *p; p++)
                n += *p == '/';
        return n;
}

static int cmp_deeper_first(gconstpointer a, gconstpointer b)
{
        return path_depth(*(const char *const *)b) - path_depth(*(const char *const *)a);
}

GPtrArray *kiln_mounts_below(GPtrArray *points, const char *dir)
{
        g_autofree char *prefix = g_strconcat(dir, "/", NULL);
        GPtrArray *below = g_ptr_array_new_with_free_func(g_free);

        /* Later mounts first (a mount stacked on another, or made inside it, comes later in
         * mountinfo), then sorted by depth; g_ptr_array_sort is stable, so the first holds among
         * equals. */
        for (guint i = points->len; i > 0; i--)
                if (g_str_has_prefix(points->pdata[i - 1], prefix))
                        g_ptr_array_add(below, g_strdup(points->pdata[i - 1]));
        g_ptr_array_sort(below, cmp_deeper_first);
        return below;
}

/* Everything mounted below @dir goes, deepest first. A crash leaves these only in kiln's own
 * root-only directories (overlays in RUNTIME/mounts, staged volume binds in RUNTIME/bundles), and
 * unmount_path never follows a symlink in the last component. */
static void unmount_all_below(GPtrArray *points, const char *dir)
{
        g_autoptr(GPtrArray) below = kiln_mounts_below(points, dir);

        for (guint i = 0; i < below->len; i++) {
                g_autoptr(GError) error = NULL;
                if (!kiln_storage_unmount_path(below->pdata[i], &error))
                        g_warning("Stale mount: %s", error->message);
                else
                        g_message("Unmounted stale %s", (char *)below->pdata[i]);
        }
}

/* Whether @name in @dir_fd is a tmp tree nobody writes: kiln-import holds an flock on its tmp tree
 * for as long as it writes it (see kiln-import.c). Returns the locked directory (closing it drops the
 * lock), or -1 when it is in use or cannot be opened. */
static int lock_unused_tree(int dir_fd, const char *name)
{
        _cleanup_close_ int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

        if (fd < 0)
                return errno == ENOTDIR || errno == ELOOP ? -2 : -1;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return -1;
        return kiln_steal_fd(&fd);
}

/* Removes every entry of the directory @fd (whose name starts with @prefix, if given), without
 * following symlinks or crossing into another file system. With @only_unlocked, a directory
 * someone holds an flock on is left alone. */
static void remove_all_entries(int dir_fd, const char *dir, const char *prefix, gboolean only_unlocked)
{
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        struct dirent *de;

        if (!d) {
                kiln_close_fdp(&fd);
                return;
        }
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
                    (!prefix || g_str_has_prefix(de->d_name, prefix)))
                        g_ptr_array_add(names, g_strdup(de->d_name));
        closedir(d);
        for (guint i = 0; i < names->len; i++) {
                g_autofree char *failed = NULL;
                _cleanup_close_ int lock = -1;
                int r;

                if (only_unlocked) {
                        lock = lock_unused_tree(dir_fd, names->pdata[i]);
                        if (lock == -1) {
                                g_message("Leaving '%s/%s': in use", dir, (char *)names->pdata[i]);
                                continue;
                        }
                }
                /* The lock is held while the tree goes. */
                r = kiln_rm_rf_at(dir_fd, names->pdata[i], &failed);
                if (r < 0)
                        g_warning("Cannot remove '%s/%s': %s", dir,
                                  failed ? failed : (char *)names->pdata[i], g_strerror(-r));
        }
}

void kiln_storage_cleanup_stale(KilnStorage *s)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(GPtrArray) points = read_mount_points(&error);
        _cleanup_close_ int fd = -1;
        DIR *d;
        struct dirent *de;

        if (!points) {
                g_warning("Cannot read mountinfo: %s", error->message);
        } else {
                unmount_all_below(points, s->mounts_dir);
                /* Volumes a run staged in its bundle (and anything else mounted there). */
                unmount_all_below(points, s->bundles_dir);
        }

        /* Mount points left behind: only empty directories are removed (rmdir), so anything still
         * mounted or unexpected stays. */
        fd = openat(s->mounts_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        d = fd >= 0 ? fdopendir(fd) : NULL;
        if (d) {
                fd = -1;
                while ((de = readdir(d))) {
                        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                                continue;
                        if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                                g_warning("Cannot remove stale mount point '%s/%s': %s", s->mounts_dir,
                                          de->d_name, g_strerror(errno));
                }
                closedir(d);
        }

        /* Bundles of runs a crash interrupted (their containers were deleted by the caller first). A
         * mount that would not go stays, and so does the bundle holding it: kiln_rm_rf_at does not
         * cross into another file system. */
        remove_all_entries(s->bundles_fd, s->bundles_dir, NULL, FALSE);

        /* Imports a crash interrupted, unless an importer still writes one (it holds its lock). */
        remove_all_entries(s->layers_fd, s->layers_dir, ".tmp-", TRUE);
}

/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <gio/gio.h>

#include "base/errors.h"
#include "base/fs-util.h"
#include "base/kiln-common.h"
#include "base/rootfs.h"

/* The kernel's own bound on symlinks followed in one lookup. */
#define MAX_SYMLINKS 40
int kiln_rootfs_open(int rootfd, const char *path, int flags, mode_t mode)
{
        /* RESOLVE_IN_ROOT makes "/" and ".." stop at @rootfd, for the path and every symlink in it;
         * RESOLVE_NO_MAGICLINKS refuses /proc/self/fd-style links, which would jump anywhere. */
        return kiln_openat2(rootfd, path, flags, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
}

static gboolean set_errno_error(GError **error, int e, const char *what, const char *path)
{
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "%s %s in the root file system: %s", what,
                    path, g_strerror(e));
        return FALSE;
}

gboolean kiln_rootfs_read_file(int rootfd, const char *path, gsize max_size, char **buf, gsize *length,
                               GError **error)
{
        _cleanup_close_ int pathfd = -1, fd = -1;
        g_autofree char *data = NULL;
        char proc_path[64];
        struct stat st;
        gsize n = 0, capacity;

        /* Look first, open for reading second: opening a device or a FIFO for reading has effects
         * (a driver's open, a blocked service), so the file is pinned with O_PATH, checked, and only a
         * regular file is reopened (through its own descriptor: the same inode, no second lookup). */
        pathfd = kiln_rootfs_open(rootfd, path, O_PATH, 0);
        if (pathfd < 0)
                return set_errno_error(error, -pathfd, "Cannot open", path);
        if (fstat(pathfd, &st) < 0)
                return set_errno_error(error, errno, "Cannot stat", path);
        if (!S_ISREG(st.st_mode)) {
                g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT,
                            "%s in the root file system is not a regular file", path);
                return FALSE;
        }
        if ((guint64)st.st_size > max_size) {
                g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                            "%s in the root file system is larger than %" G_GSIZE_FORMAT " bytes", path,
                            max_size);
                return FALSE;
        }
        g_snprintf(proc_path, sizeof(proc_path), "/proc/self/fd/%d", pathfd);
        fd = open(proc_path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return set_errno_error(error, errno, "Cannot open", path);

        /* The size may change under us: the buffer starts at the size seen, grows as needed, and
         * reading stops one byte past the bound. */
        capacity = (gsize)st.st_size + 1;
        data = g_malloc(capacity + 1);
        for (;;) {
                ssize_t r;

                if (n == capacity) {
                        if (n > max_size) {
                                g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                                            "%s in the root file system is larger than %" G_GSIZE_FORMAT
                                            " bytes",
                                            path, max_size);
                                return FALSE;
                        }
                        capacity = MIN(capacity * 2, max_size + 1);
                        data = g_realloc(data, capacity + 1);
                }
                r = read(fd, data + n, capacity - n);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return set_errno_error(error, errno, "Cannot read", path);
                if (r == 0)
                        break;
                n += (gsize)r;
        }
        data[n] = '\0';
        *buf = g_steal_pointer(&data);
        *length = n;
        return TRUE;
}

/* Gives a directory made by kiln its owner and exact mode. The new entry is opened without
 * following anything (RESOLVE_NO_SYMLINKS, beneath its parent), so a swap for a symlink between
 * mkdirat and here cannot redirect the chown. */
static gboolean own_new_directory(int parentfd, const char *name, const char *path, mode_t mode, uid_t uid,
                                  gid_t gid, int *out_fd, GError **error)
{
        _cleanup_close_ int fd = kiln_openat2(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0,
                                              RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);

        if (fd < 0)
                return set_errno_error(error, -fd, "Cannot open new directory", path);
        if ((uid != (uid_t)-1 || gid != (gid_t)-1) && fchown(fd, uid, gid) < 0)
                return set_errno_error(error, errno, "Cannot change the owner of", path);
        /* After fchown, which clears set-id bits; and exact, whatever the service's umask is. */
        if (fchmod(fd, mode & 07777) < 0)
                return set_errno_error(error, errno, "Cannot change the mode of", path);
        *out_fd = kiln_steal_fd(&fd);
        return TRUE;
}

/* Joins the components parts[from..] to @head with '/'. */
static char *join_rest(const char *head, char **parts, guint from)
{
        GString *s = g_string_new(head);

        for (guint i = from; parts[i]; i++) {
                if (!*parts[i])
                        continue;
                if (s->len == 0 || s->str[s->len - 1] != '/')
                        g_string_append_c(s, '/');
                g_string_append(s, parts[i]);
        }
        return g_string_free(s, FALSE);
}

/* One walk down @todo, creating what is missing. When a component is a dangling symlink, sets *next
 * to the path that walk must continue with (the link's target, then the rest) and stops. */
static gboolean mkdir_walk(int rootfd, const char *todo, mode_t mode, uid_t uid, gid_t gid, char **next,
                           GError **error)
{
        g_auto(GStrv) parts = g_strsplit(todo, "/", -1);
        g_autoptr(GString) prefix = g_string_new("/");
        _cleanup_close_ int parent = kiln_rootfs_open(rootfd, "/", O_PATH | O_DIRECTORY, 0);

        if (parent < 0)
                return set_errno_error(error, -parent, "Cannot open", "/");
        for (guint i = 0; parts[i]; i++) {
                const char *part = parts[i];
                gsize parent_len = prefix->len;
                int fd;

                if (!*part || g_str_equal(part, "."))
                        continue;
                if (prefix->str[prefix->len - 1] != '/')
                        g_string_append_c(prefix, '/');
                g_string_append(prefix, part);

                /* Resolved from the root every time: the kernel, not this loop, decides where a
                 * symlink or ".." leads, and it cannot lead out. */
                fd = kiln_rootfs_open(rootfd, prefix->str, O_PATH | O_DIRECTORY, 0);
                if (fd == -ENOENT && !g_str_equal(part, "..")) {
                        char target[PATH_MAX];
                        ssize_t n;

                        /* @parent is the real directory the name lives in, so mkdirat creates it
                         * there and nowhere else (mkdirat never follows a final symlink). */
                        if (mkdirat(parent, part, mode & 07777) == 0) {
                                if (!own_new_directory(parent, part, prefix->str, mode, uid, gid, &fd,
                                                       error))
                                        return FALSE;
                        } else if (errno != EEXIST) {
                                return set_errno_error(error, errno, "Cannot create directory", prefix->str);
                        } else {
                                /* The name exists but does not resolve: a dangling symlink. Its
                                 * target is walked next, relative to the link's directory or from
                                 * the root. */
                                n = readlinkat(parent, part, target, sizeof(target) - 1);
                                if (n < 0)
                                        return set_errno_error(error, errno == EINVAL ? EEXIST : errno,
                                                               "Cannot create directory", prefix->str);
                                target[n] = '\0';
                                g_string_truncate(prefix, parent_len);
                                g_autofree char *base =
                                        target[0] == '/' ? g_strdup(target)
                                                         : g_build_filename(prefix->str, target, NULL);
                                *next = join_rest(base, parts, i + 1);
                                return TRUE;
                        }
                } else if (fd < 0) {
                        return set_errno_error(error, -fd, "Cannot create directory", prefix->str);
                }
                kiln_close_fdp(&parent);
                parent = fd;
        }
        return TRUE;
}

gboolean kiln_rootfs_mkdir_p(int rootfd, const char *path, mode_t mode, uid_t uid, gid_t gid, GError **error)
{
        g_autofree char *todo = g_strdup(path);

        for (unsigned symlinks = 0;; symlinks++) {
                g_autofree char *next = NULL;

                if (symlinks > MAX_SYMLINKS)
                        return set_errno_error(error, ELOOP, "Cannot create directory", path);
                if (!mkdir_walk(rootfd, todo, mode, uid, gid, &next, error)) {
                        if (symlinks > 0)
                                g_prefix_error(error, "%s (through a symlink): ", path);
                        return FALSE;
                }
                if (!next)
                        return TRUE;
                g_free(todo);
                todo = g_steal_pointer(&next);
        }
}

gboolean kiln_rootfs_lookup_command(int rootfd, const char *argv0, const char *path_value, const char *cwd,
                                    char **resolved, GError **error)
{
        g_auto(GStrv) entries = NULL;
        gboolean found_not_executable = FALSE;

        if (!*argv0) {
                g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT,
                            "Invalid argv: the command is empty");
                return FALSE;
        }
        if (strchr(argv0, '/')) {
                *resolved = g_strdup(argv0);
                return TRUE;
        }
        if (!cwd || !*cwd)
                cwd = "/";
        entries = g_strsplit(path_value ? path_value : KILN_DEFAULT_PATH, ":", -1);
        for (char **e = entries; *e; e++) {
                g_autofree char *dir =
                        g_path_is_absolute(*e) ? g_strdup(*e) : g_build_filename(cwd, *e, NULL);
                g_autofree char *candidate = g_build_filename(dir, argv0, NULL);
                _cleanup_close_ int fd = kiln_rootfs_open(rootfd, candidate, O_PATH, 0);
                struct stat st;

                if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                        continue;
                if (st.st_mode & 0111) {
                        *resolved = g_steal_pointer(&candidate);
                        return TRUE;
                }
                found_not_executable = TRUE;
        }
        if (found_not_executable)
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                            "Command '%s' found in PATH is not executable", argv0);
        else
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                            "Command '%s' not found in PATH (%s) in the root file system", argv0,
                            path_value ? path_value : KILN_DEFAULT_PATH);
        return FALSE;
}

/* SPDX-License-Identifier: Apache-2.0 */
#include "base/fs-util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include <glib.h>

#include "base/kiln-common.h"

typedef struct RmFrame {
        DIR *dir;
        int fd;     /* dirfd(dir), owned by dir */
        char *name; /* name in the parent frame; NULL for the top */
} RmFrame;

static char *rm_frames_path(RmFrame *frames, unsigned depth, const char *top, const char *leaf)
{
        GString *s = g_string_new(top);

        for (unsigned i = 1; i < depth; i++)
                g_string_append_printf(s, "/%s", frames[i].name);
        if (leaf)
                g_string_append_printf(s, "/%s", leaf);
        return g_string_free(s, FALSE);
}

/* Empties the directory @topfd (on device @dev). Iterative, with a fixed stack of open directories;
 * a directory found at the bottom of the stack is renamed into @topfd under a fresh name and taken
 * up on the next pass, so any depth is handled with bounded descriptors and no recursion. */
static int rm_children(int topfd, dev_t dev, const char *top, char **failed_path)
{
        RmFrame frames[KILN_RM_MAX_FDS];
        unsigned depth = 0, counter = 0;
        int r = 0;

        for (;;) {
                unsigned moved = 0;
                int fd;

                fd = openat(topfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0) {
                        r = -errno;
                        if (failed_path)
                                *failed_path = g_strdup(top);
                        return r;
                }
                frames[0].dir = fdopendir(fd);
                if (!frames[0].dir) {
                        r = -errno;
                        close(fd);
                        if (failed_path)
                                *failed_path = g_strdup(top);
                        return r;
                }
                frames[0].fd = fd;
                frames[0].name = NULL;
                depth = 1;

                while (depth > 0) {
                        RmFrame *f = &frames[depth - 1];
                        struct dirent *de;
                        struct stat st;
                        int sub;

                        errno = 0;
                        de = readdir(f->dir);
                        if (!de) {
                                if (errno != 0) {
                                        r = -errno;
                                        goto fail_here;
                                }
                                closedir(f->dir);
                                f->dir = NULL;
                                if (depth > 1 && unlinkat(frames[depth - 2].fd, f->name, AT_REMOVEDIR) < 0 &&
                                    errno != ENOENT) {
                                        r = -errno;
                                        depth--;
                                        if (failed_path)
                                                *failed_path = rm_frames_path(frames, depth, top, f->name);
                                        g_free(f->name);
                                        goto fail;
                                }
                                g_free(f->name);
                                depth--;
                                continue;
                        }
                        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                                continue;

                        /* unlinkat() without AT_REMOVEDIR removes whatever the name is, a symlink
                         * included, and never follows it; a directory answers EISDIR. */
                        if (unlinkat(f->fd, de->d_name, 0) == 0 || errno == ENOENT)
                                continue;
                        if (errno != EISDIR) {
                                r = -errno;
                                goto fail_entry;
                        }

                        /* O_NOFOLLOW|O_DIRECTORY: if the name was swapped for a symlink meanwhile, this
                         * fails instead of leading out of the tree. */
                        sub = openat(f->fd, de->d_name,
                                     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
                        if (sub < 0) {
                                if (errno == ENOENT)
                                        continue;
                                r = -errno;
                                goto fail_entry;
                        }
                        if (fstat(sub, &st) < 0) {
                                r = -errno;
                                close(sub);
                                goto fail_entry;
                        }
                        if (st.st_dev != dev) {
                                /* a mount point inside: refuse rather than empty someone else's fs */
                                close(sub);
                                r = -EXDEV;
                                goto fail_entry;
                        }

                        if (depth == KILN_RM_MAX_FDS) {
                                char tmp[64];

                                close(sub);
                                for (;;) {
                                        snprintf(tmp, sizeof(tmp), ".kiln-rm-%u", counter++);
                                        if (renameat2(f->fd, de->d_name, topfd, tmp, RENAME_NOREPLACE) == 0)
                                                break;
                                        if (errno != EEXIST) {
                                                r = -errno;
                                                goto fail_entry;
                                        }
                                }
                                moved++;
                                continue;
                        }

                        frames[depth].dir = fdopendir(sub);
                        if (!frames[depth].dir) {
                                r = -errno;
                                close(sub);
                                goto fail_entry;
                        }
                        frames[depth].fd = sub;
                        frames[depth].name = g_strdup(de->d_name);
                        depth++;
                        continue;

                fail_entry:
                        if (failed_path)
                                *failed_path = rm_frames_path(frames, depth, top, de->d_name);
                        goto fail;
                fail_here:
                        if (failed_path)
                                *failed_path = rm_frames_path(frames, depth, top, NULL);
                        goto fail;
                }

                if (moved == 0)
                        return 0;
        }

fail:
        while (depth > 0) {
                depth--;
                if (frames[depth].dir)
                        closedir(frames[depth].dir);
                g_free(frames[depth].name);
        }
        return r;
}

int kiln_rm_rf_at(int dirfd, const char *name, char **failed_path)
{
        _cleanup_close_ int fd = -1;
        struct stat st;
        int r;

        if (failed_path)
                *failed_path = NULL;

        if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
                return 0;
        if (errno != EISDIR) {
                r = -errno;
                goto fail;
        }

        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                if (errno == ENOENT)
                        return 0;
                r = -errno;
                goto fail;
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                goto fail;
        }

        r = rm_children(fd, st.st_dev, name, failed_path);
        if (r < 0)
                return r;

        if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
                r = -errno;
                goto fail;
        }
        return 0;

fail:
        if (failed_path)
                *failed_path = g_strdup(name);
        return r;
}

static const struct {
        long magic;
        const char *name;
} pseudo_fs[] = {
        {PROC_SUPER_MAGIC, "proc"},       {SYSFS_MAGIC, "sysfs"},
        {DEBUGFS_MAGIC, "debugfs"},       {TRACEFS_MAGIC, "tracefs"},
        {SECURITYFS_MAGIC, "securityfs"}, {SELINUX_MAGIC, "selinuxfs"},
        {SMACK_MAGIC, "smackfs"},         {CGROUP_SUPER_MAGIC, "cgroup"},
        {CGROUP2_SUPER_MAGIC, "cgroup2"}, {BPF_FS_MAGIC, "bpf"},
        {EFIVARFS_MAGIC, "efivarfs"},     {PSTOREFS_MAGIC, "pstore"},
        {BINFMTFS_MAGIC, "binfmt_misc"},  {NSFS_MAGIC, "nsfs"},
        {0x62656570, "configfs"},         {0x65735543, "fusectl"},
        {0x19800202, "mqueue"},
};

int kiln_fd_on_pseudo_fs(int fd, const char **name_out)
{
        struct statfs sfs;

        if (fstatfs(fd, &sfs) < 0)
                return -errno;
        for (size_t i = 0; i < G_N_ELEMENTS(pseudo_fs); i++)
                if ((long)sfs.f_type == pseudo_fs[i].magic) {
                        if (name_out)
                                *name_out = pseudo_fs[i].name;
                        return 1;
                }
        return 0;
}

bool kiln_name_is_valid(const char *name, size_t len)
{
        if (len == 0 || len > NAME_MAX)
                return false;
        if (memchr(name, '/', len) || memchr(name, '\0', len))
                return false;
        if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
                return false;
        return true;
}

static int cmp_int(const void *a, const void *b)
{
        int x = *(const int *)a, y = *(const int *)b;
        return (x > y) - (x < y);
}

static int close_range_fallback(unsigned first, unsigned last)
{
        long max = sysconf(_SC_OPEN_MAX);

        if (max < 0)
                max = 65536;
        for (unsigned fd = first; fd <= last && fd < (unsigned)max; fd++)
                close((int)fd);
        return 0;
}

static int close_between(unsigned first, unsigned last)
{
        if (first > last)
                return 0;
        if (close_range(first, last, 0) == 0)
                return 0;
        if (errno == ENOSYS || errno == EINVAL)
                return close_range_fallback(first, last);
        return -errno;
}

int kiln_close_all_fds_except(const int *keep, size_t n_keep)
{
        g_autofree int *sorted = g_new(int, n_keep + 1);
        unsigned next = 3;
        size_t n = 0;
        int r;

        for (size_t i = 0; i < n_keep; i++)
                if (keep[i] >= 3)
                        sorted[n++] = keep[i];
        qsort(sorted, n, sizeof(int), cmp_int);

        for (size_t i = 0; i < n; i++) {
                if ((unsigned)sorted[i] < next)
                        continue;
                r = close_between(next, (unsigned)sorted[i] - 1);
                if (r < 0)
                        return r;
                next = (unsigned)sorted[i] + 1;
        }
        return close_between(next, ~0U);
}

char *kiln_escape_for_message(const char *s, size_t len)
{
        GString *out = g_string_sized_new(len + 8);
        const char *p = s, *end = s + len;

        while (p < end) {
                gunichar c = g_utf8_get_char_validated(p, end - p);

                if (c == (gunichar)-1 || c == (gunichar)-2 || c == 0 || c == '\\' || g_unichar_iscntrl(c)) {
                        g_string_append_printf(out, "\\x%02x", (unsigned char)*p);
                        p++;
                        continue;
                }
                const char *next = g_utf8_next_char(p);
                g_string_append_len(out, p, next - p);
                p = next;
        }
        return g_string_free(out, FALSE);
}

/* openat2 answers EAGAIN with RESOLVE_IN_ROOT when a rename raced with the lookup. */
#define OPENAT2_ATTEMPTS 32

int kiln_openat2(int dirfd, const char *path, int flags, mode_t mode, guint64 resolve)
{
#ifdef SYS_openat2
        gboolean creates = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
        struct open_how how = {
                .flags = (guint64)(flags | O_CLOEXEC),
                .mode = creates ? mode : 0,
                .resolve = resolve,
        };

        for (int i = 0; i < OPENAT2_ATTEMPTS; i++) {
                long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
                if (fd >= 0)
                        return (int)fd;
                if (errno != EAGAIN && errno != EINTR)
                        return -errno;
        }
        return -EAGAIN;
#else
        /* Fail closed: there is no safe userspace emulation worth trusting here. */
        return -ENOSYS;
#endif
}

/* Directories waiting to be read, at the most: past it the tree is not measured (-E2BIG). */
#define TREE_MAX_PENDING (1U << 20)

int kiln_tree_bytes_at(int topfd, guint64 *ret_bytes)
{
        g_autoptr(GPtrArray) pending = g_ptr_array_new_with_free_func(g_free);
        struct stat top;
        guint64 bytes = 0;
        int r = 0;

        *ret_bytes = 0;
        if (fstat(topfd, &top) < 0)
                return -errno;
        g_ptr_array_add(pending, g_strdup("."));
        while (pending->len > 0 && r == 0) {
                g_autofree char *rel = g_ptr_array_steal_index(pending, pending->len - 1);
                /* By its path from the top, never through a symlink or onto another file system: a
                 * run may rename anything in the tree while it is read. */
                int fd = kiln_openat2(topfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0,
                                      RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
                                              RESOLVE_NO_XDEV);
                DIR *d;
                struct dirent *de;

                if (fd == -ENOENT || fd == -ELOOP || fd == -ENOTDIR || fd == -EXDEV)
                        continue; /* changed under us, or a mount point: nothing of the tree's */
                if (fd < 0) {
                        r = fd; /* ENAMETOOLONG: deeper than a path reaches */
                        break;
                }
                d = fdopendir(fd);
                if (!d) {
                        r = -errno;
                        close(fd);
                        break;
                }
                while ((de = readdir(d))) {
                        struct stat st;
                        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                                continue;
                        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                                continue;
                        if (S_ISREG(st.st_mode)) {
                                bytes += MIN((guint64)st.st_size, G_MAXUINT64 - bytes);
                        } else if (S_ISDIR(st.st_mode) && st.st_dev == top.st_dev) {
                                if (pending->len >= TREE_MAX_PENDING) {
                                        r = -E2BIG;
                                        break;
                                }
                                g_ptr_array_add(pending, g_strdup_printf("%s/%s", rel, de->d_name));
                        }
                }
                closedir(d);
        }
        *ret_bytes = bytes;
        return r;
}

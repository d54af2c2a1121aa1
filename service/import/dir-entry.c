/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-import's directory mode: one entry the reader sent, checked (fstat of the descriptor, never a
 * path), written into the tmp tree through descriptors we created, and hashed into the layer digest
 * (layer-digest.h); or, in the fingerprint pass, only counted and fingerprinted. See kiln-import.c for
 * the trust model. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <glib.h>

#include "base/fs-util.h"
#include "import-protocol.h"
#include "base/kiln-common.h"
#include "layer-digest.h"
#include "dir-import.h"

static int fail_xattr(Importer *im, int err, const char *syscall_name, const char *path, const char *name)
{
        g_autofree char *p = kiln_escape_for_message(path, strlen(path));
        g_autofree char *n = kiln_escape_for_message(name, strlen(name));
        return import_fail(im, KILN_IMPORT_EXIT_FAILED, "%s '%s' xattr '%s': %s", syscall_name,
                           p[0] ? p : ".", n, g_strerror(err));
}

guint import_inode_hash(gconstpointer p)
{
        const InodeKey *k = p;
        return g_int64_hash(&(gint64){(gint64)k->ino}) ^ g_int64_hash(&(gint64){(gint64)k->dev});
}

gboolean import_inode_equal(gconstpointer a, gconstpointer b)
{
        const InodeKey *x = a, *y = b;
        return x->dev == y->dev && x->ino == y->ino;
}

/* Adds @size bytes of file content to the pass's count, or fails if that passes --max-bytes. */
static int count_bytes(Importer *im, uint64_t size, const char *path)
{
        if (size > im->max_bytes - im->bytes)
                return import_fail(im, KILN_IMPORT_EXIT_LIMIT,
                                   "'%s': the tree holds more than %" PRIu64 " bytes of file content", path,
                                   im->max_bytes);
        im->bytes += size;
        return 0;
}

/* ---- xattrs ---- */

/* Only these are copied. trusted.* (root-only, and overlayfs keeps its own state there) and
 * security.selinux/ima/evm and the like are never taken from a caller's tree. */
static bool xattr_is_kept(const char *name)
{
        return g_str_has_prefix(name, "user.") || strcmp(name, "security.capability") == 0 ||
               strcmp(name, "system.posix_acl_access") == 0 || strcmp(name, "system.posix_acl_default") == 0;
}

static void xattrs_free(GArray *xattrs)
{
        if (!xattrs)
                return;
        for (guint i = 0; i < xattrs->len; i++) {
                KilnXattr *x = &g_array_index(xattrs, KilnXattr, i);
                g_free(x->name);
                g_free(x->value);
        }
        g_array_unref(xattrs);
}
typedef GArray *GArrayXattrs;
G_DEFINE_AUTO_CLEANUP_FREE_FUNC(GArrayXattrs, xattrs_free, NULL)

static int cmp_xattr(gconstpointer a, gconstpointer b)
{
        return strcmp(((const KilnXattr *)a)->name, ((const KilnXattr *)b)->name);
}

/* Reads the kept xattrs of @fd, a descriptor the reader opened for reading (so the caller could read
 * them), sorted by name. */
static int read_xattrs(Importer *im, int fd, const char *path, GArray **out)
{
        g_autofree char *list = NULL;
        GArray *xattrs = g_array_new(FALSE, TRUE, sizeof(KilnXattr));
        ssize_t n = -1;

        *out = NULL;
        for (int attempt = 0; attempt < 5; attempt++) {
                n = flistxattr(fd, NULL, 0);
                if (n < 0 && (errno == ENOTSUP || errno == ENODATA)) {
                        *out = xattrs;
                        return 0;
                }
                if (n <= 0)
                        break;
                g_free(list);
                list = g_malloc((size_t)n + 1);
                n = flistxattr(fd, list, (size_t)n);
                if (n >= 0 || errno != ERANGE)
                        break;
        }
        if (n < 0) {
                xattrs_free(xattrs);
                return import_fail_errno(im, errno, "flistxattr", import_display(path));
        }

        if (n > 0)
                list[n] = '\0';
        for (ssize_t off = 0; off < n;) {
                const char *name = list + off;
                KilnXattr x = {0};
                ssize_t size;

                off += (ssize_t)strlen(name) + 1;
                if (!xattr_is_kept(name))
                        continue;

                x.value = g_malloc(XATTR_MAX_SIZE);
                size = fgetxattr(fd, name, x.value, XATTR_MAX_SIZE);
                if (size < 0) {
                        int e = errno;
                        g_free(x.value);
                        if (e == ENODATA)
                                continue; /* removed meanwhile */
                        xattrs_free(xattrs);
                        return fail_xattr(im, e, "fgetxattr", path, name);
                }
                x.value = g_realloc(x.value, size > 0 ? (size_t)size : 1);
                x.size = (size_t)size;
                x.name = g_strdup(name);
                g_array_append_val(xattrs, x);
        }
        g_array_sort(xattrs, cmp_xattr);
        *out = xattrs;
        return 0;
}

static int write_xattrs(Importer *im, int fd, GArray *xattrs, const char *path)
{
        for (guint i = 0; xattrs && i < xattrs->len; i++) {
                KilnXattr *x = &g_array_index(xattrs, KilnXattr, i);
                if (fsetxattr(fd, x->name, x->value, x->size, XATTR_CREATE) < 0)
                        return fail_xattr(im, errno, "fsetxattr", path, x->name);
        }
        return 0;
}

/* ---- regular files ---- */

static int pwrite_all(int fd, const uint8_t *buf, size_t len, off_t off)
{
        while (len > 0) {
                ssize_t n = pwrite(fd, buf, len, off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                buf += n;
                len -= (size_t)n;
                off += n;
        }
        return 0;
}

/* Copies the data ranges of @src (holes are skipped, and stay holes) up to @size bytes, or to where
 * the file ends if it shrank meanwhile. copy_file_range() first (reflinks where the file system can),
 * pread/pwrite when it cannot. Returns the final size, or -1. */
static int64_t copy_content(Importer *im, int src, int dst, uint64_t size, const char *path)
{
        uint64_t off = 0, end = size;
        bool use_copy_file_range = true;

        while (off < end) {
                off_t data, hole;
                uint64_t pos;

                data = lseek(src, (off_t)off, SEEK_DATA);
                if (data < 0) {
                        if (errno == ENXIO)
                                break; /* a hole to the end */
                        data = (off_t)off;
                        hole = (off_t)end;
                } else {
                        hole = lseek(src, data, SEEK_HOLE);
                        if (hole < 0)
                                hole = (off_t)end;
                }
                if ((uint64_t)data >= end)
                        break;
                if ((uint64_t)hole > end)
                        hole = (off_t)end;

                for (pos = (uint64_t)data; pos < (uint64_t)hole;) {
                        size_t want = (size_t)MIN((uint64_t)hole - pos, (uint64_t)1 << 30);
                        ssize_t n;

                        if (import_check_terminating(im))
                                return -1;
                        if (use_copy_file_range) {
                                off_t in = (off_t)pos, out = (off_t)pos;
                                n = copy_file_range(src, &in, dst, &out, want, 0);
                                if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP ||
                                              errno == ENOSYS || errno == EPERM || errno == ETXTBSY)) {
                                        use_copy_file_range = false;
                                        continue;
                                }
                        } else {
                                n = pread(src, im->buffer, MIN(want, (size_t)COPY_BUFFER_SIZE), (off_t)pos);
                                if (n > 0) {
                                        int r = pwrite_all(dst, im->buffer, (size_t)n, (off_t)pos);
                                        if (r < 0)
                                                return import_fail_errno(im, -r, "write", path);
                                }
                        }
                        if (n < 0) {
                                if (errno == EINTR)
                                        continue;
                                return import_fail_errno(
                                        im, errno, use_copy_file_range ? "copy_file_range" : "read", path);
                        }
                        if (n == 0) {
                                end = pos; /* it shrank */
                                goto done;
                        }
                        pos += (uint64_t)n;
                }
                off = (uint64_t)hole;
        }
done:
        if (ftruncate(dst, (off_t)end) < 0)
                return import_fail_errno(im, errno, "ftruncate", path);
        return (int64_t)end;
}

static bool all_zero(const uint8_t *p, size_t len)
{
        return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

/* Hashes the content of @fd, our own copy, so the digest covers exactly what the layer keeps. Holes
 * are recognised with SEEK_DATA and never read. */
static int hash_content(Importer *im, int fd, uint64_t size, const char *path)
{
        uint64_t n_blocks = (size + KILN_LAYER_BLOCK - 1) / KILN_LAYER_BLOCK;
        uint64_t zero_run = 0, data_end = 0;

        kiln_layer_hash_content_size(im->checksum, size);
        for (uint64_t i = 0; i < n_blocks;) {
                uint64_t off = i * KILN_LAYER_BLOCK;
                size_t len = (size_t)MIN((uint64_t)KILN_LAYER_BLOCK, size - off);
                size_t got = 0;

                if (import_check_terminating(im))
                        return -1;
                if (off >= data_end) {
                        off_t d = lseek(fd, (off_t)off, SEEK_DATA), h;

                        if (d < 0 && errno == ENXIO) {
                                zero_run += n_blocks - i;
                                break;
                        }
                        if (d < 0) {
                                d = (off_t)off;
                                h = (off_t)size;
                        } else {
                                h = lseek(fd, d, SEEK_HOLE);
                                if (h < 0)
                                        h = (off_t)size;
                        }
                        data_end = (uint64_t)h;
                        if ((uint64_t)d / KILN_LAYER_BLOCK > i) {
                                zero_run += (uint64_t)d / KILN_LAYER_BLOCK - i;
                                i = (uint64_t)d / KILN_LAYER_BLOCK;
                                continue;
                        }
                }

                while (got < len) {
                        ssize_t n = pread(fd, im->buffer + got, len - got, (off_t)(off + got));
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0)
                                return import_fail_errno(im, errno, "read", path);
                        if (n == 0)
                                return import_fail(im, KILN_IMPORT_EXIT_FAILED,
                                                   "read '%s': unexpected end of file", path);
                        got += (size_t)n;
                }
                if (all_zero(im->buffer, len)) {
                        zero_run++;
                } else {
                        if (zero_run > 0)
                                kiln_layer_hash_zero_blocks(im->checksum, zero_run);
                        zero_run = 0;
                        kiln_layer_hash_data_block(im->checksum, im->buffer, len);
                }
                i++;
        }
        if (zero_run > 0)
                kiln_layer_hash_zero_blocks(im->checksum, zero_run);
        return 0;
}

/* ---- entries ---- */

void import_dir_clear(Dir *d)
{
        if (d->fd >= 0)
                close(d->fd);
        d->fd = -1;
        g_clear_pointer(&d->path, g_free);
        g_clear_pointer(&d->last_name, g_free);
}

/* A directory gets its mode and times only once all its entries exist: creating them would change
 * the times, and the mode may not let them be created. */
static int dir_finish(Importer *im, Dir *d)
{
        struct timespec ts[2] = {d->mtime, d->mtime};

        if (d->fd < 0)
                return 0; /* the fingerprint pass creates nothing */
        if (fchmod(d->fd, d->mode & 07777) < 0)
                return import_fail_errno(im, errno, "fchmod", import_display(d->path));
        if (futimens(d->fd, ts) < 0)
                return import_fail_errno(im, errno, "futimens", import_display(d->path));
        return 0;
}

static Dir *stack_top(Importer *im)
{
        return &g_array_index(im->stack, Dir, im->stack->len - 1);
}

int import_stack_pop(Importer *im)
{
        Dir *d = stack_top(im);
        int r = dir_finish(im, d);

        if (d->fd == im->tmp_fd)
                im->tmp_fd = -1;
        import_dir_clear(d);
        g_array_set_size(im->stack, im->stack->len - 1);
        return r;
}

/* Opens, inside our tmp tree, the directory holding the entry at @path (a path we built ourselves from
 * directories we created, each opened with O_NOFOLLOW). Returns the descriptor; *base points into @path. */
static int open_parent_in_tmp(Importer *im, const char *path, const char **base)
{
        g_auto(GStrv) parts = g_strsplit(path, "/", -1);
        guint n = g_strv_length(parts);
        int fd = fcntl(im->tmp_fd >= 0 ? im->tmp_fd : g_array_index(im->stack, Dir, 0).fd, F_DUPFD_CLOEXEC,
                       3);

        if (fd < 0)
                return import_fail_errno(im, errno, "dup", ".");
        for (guint i = 0; i + 1 < n; i++) {
                int sub = openat(fd, parts[i], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                int e = errno;
                close(fd);
                if (sub < 0)
                        return import_fail_errno(im, e, "openat", path);
                fd = sub;
        }
        *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        return fd;
}

static int make_hardlink(Importer *im, const char *first, int dirfd, const char *name, const char *path)
{
        const char *base = NULL; /* set when a descriptor is returned */
        _cleanup_close_ int fd = open_parent_in_tmp(im, first, &base);

        if (fd < 0)
                return -1;
        /* Both names are in our own tree; flags 0: a symlink is linked as itself. */
        if (linkat(fd, base, dirfd, name, 0) < 0)
                return import_fail_errno(im, errno, "linkat", path);
        return 0;
}

static int create_regular(Importer *im, int src, const struct stat *st, int dirfd, const char *name,
                          const char *path, GArray *xattrs)
{
        _cleanup_close_ int fd = -1;
        struct timespec ts[2] = {st->st_mtim, st->st_mtim};
        int64_t size;
        int fl;

        /* The reader opened this for reading, as the caller; make sure it is not an O_PATH descriptor
         * and not opened for writing (we only ever read it). */
        fl = fcntl(src, F_GETFL);
        if (fl < 0)
                return import_fail_errno(im, errno, "fcntl", path);
        if ((fl & O_PATH) || (fl & O_ACCMODE) != O_RDONLY)
                return import_fail(im, KILN_IMPORT_EXIT_FAILED, "'%s': not opened for reading by the reader",
                                   path);
        if ((fl & O_NONBLOCK) && fcntl(src, F_SETFL, fl & ~O_NONBLOCK) < 0)
                return import_fail_errno(im, errno, "fcntl", path);

        /* Checked before a byte is copied: the copy never goes past st_size, so the bound holds even
         * if the file grows meanwhile. */
        if ((uint64_t)st->st_size > im->max_bytes - im->bytes)
                return count_bytes(im, (uint64_t)st->st_size, path);

        /* O_EXCL|O_NOFOLLOW in a directory we created: we write only a file we just made. */
        fd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return import_fail_errno(im, errno, "openat", path);

        size = copy_content(im, src, fd, (uint64_t)st->st_size, path);
        if (size < 0)
                return -1;
        im->bytes += (uint64_t)size; /* what the layer holds: the file may have shrunk */
        if (hash_content(im, fd, (uint64_t)size, path) < 0)
                return -1;

        /* Owner first (chown drops setuid/setgid and security.capability), then xattrs, then the exact
         * mode, then times. */
        if (fchown(fd, st->st_uid, st->st_gid) < 0)
                return import_fail_errno(im, errno, "fchown", path);
        if (write_xattrs(im, fd, xattrs, path) < 0)
                return -1;
        if (fchmod(fd, st->st_mode & 07777) < 0)
                return import_fail_errno(im, errno, "fchmod", path);
        if (futimens(fd, ts) < 0)
                return import_fail_errno(im, errno, "futimens", path);
        return 0;
}

static int create_symlink(Importer *im, int src, const struct stat *st, int dirfd, const char *name,
                          const char *path)
{
        char target[PATH_MAX + 1];
        struct timespec ts[2] = {st->st_mtim, st->st_mtim};
        ssize_t n;

        /* readlinkat on the descriptor itself ("" names the O_PATH symlink): no path is resolved. */
        n = readlinkat(src, "", target, sizeof(target));
        if (n < 0)
                return import_fail_errno(im, errno, "readlinkat", path);
        if ((size_t)n >= sizeof(target) || n == 0)
                return import_fail(im, KILN_IMPORT_EXIT_INVALID, "readlinkat '%s': bad link target length",
                                   path);
        target[n] = '\0';
        if (memchr(target, '\0', (size_t)n))
                return import_fail(im, KILN_IMPORT_EXIT_INVALID, "readlinkat '%s': bad link target", path);

        kiln_layer_hash_symlink(im->checksum, target, (size_t)n);

        /* The target is stored as it is, never resolved. */
        if (symlinkat(target, dirfd, name) < 0)
                return import_fail_errno(im, errno, "symlinkat", path);
        if (fchownat(dirfd, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
                return import_fail_errno(im, errno, "fchownat", path);
        if (utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
                return import_fail_errno(im, errno, "utimensat", path);
        return 0;
}

static int create_node(Importer *im, const struct stat *st, int dirfd, const char *name, const char *path)
{
        struct timespec ts[2] = {st->st_mtim, st->st_mtim};

        if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
                kiln_layer_hash_device(im->checksum, st->st_rdev);

        /* Device nodes in a layer are inert: every mount of a layer is nodev. */
        if (mknodat(dirfd, name, (st->st_mode & S_IFMT) | 0600, st->st_rdev) < 0)
                return import_fail_errno(im, errno, "mknodat", path);
        if (fchownat(dirfd, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
                return import_fail_errno(im, errno, "fchownat", path);
        /* fchmodat follows symlinks, but @name is the node mknodat just made in a directory only we
         * can write to (STATE/layers is 0700 root), so it names that node. */
        if (fchmodat(dirfd, name, st->st_mode & 07777, 0) < 0)
                return import_fail_errno(im, errno, "fchmodat", path);
        if (utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
                return import_fail_errno(im, errno, "utimensat", path);
        return 0;
}

static uint32_t shift_id(const IdShift *s, uint32_t id)
{
        for (size_t i = 0; i < s->len; i++)
                if (id >= s->c[i] && id - s->c[i] < s->n[i])
                        return s->h[i] + (id - s->c[i]);
        return OVERFLOW_ID;
}

/* Checks a received descriptor and returns its stat. Directories and regular files are read by us (root),
 * so they must be real descriptors opened for reading, and not on a pseudo file system. */
static int check_received(Importer *im, int fd, struct stat *st, const char *path)
{
        const char *fs = NULL;
        int r;

        if (fstat(fd, st) < 0)
                return import_fail_errno(im, errno, "fstat", import_display(path));
        if (im->shift_uid) {
                st->st_uid = shift_id(im->shift_uid, st->st_uid);
                st->st_gid = shift_id(im->shift_gid, st->st_gid);
        }
        if (!S_ISDIR(st->st_mode) && !S_ISREG(st->st_mode))
                return 0;

        int fl = fcntl(fd, F_GETFL);
        if (fl < 0)
                return import_fail_errno(im, errno, "fcntl", import_display(path));
        if ((fl & O_PATH) || (fl & O_ACCMODE) != O_RDONLY)
                return import_fail(im, KILN_IMPORT_EXIT_FAILED, "'%s': not opened for reading by the reader",
                                   import_display(path));
        r = kiln_fd_on_pseudo_fs(fd, &fs);
        if (r < 0)
                return import_fail_errno(im, -r, "fstatfs", import_display(path));
        if (r > 0)
                return import_fail(im, KILN_IMPORT_EXIT_INVALID,
                                   "'%s' is on a %s file system, which is not imported",
                                   import_display(path), fs);
        return 0;
}

/* The identity of an entry's state, for the fingerprint (see the top of this file). */
static void hash_fingerprint(Importer *im, const char *path, const struct stat *st)
{
        uint64_t fields[] = {
                st->st_dev,          st->st_ino,         st->st_mode,
                st->st_uid,          st->st_gid,         (uint64_t)st->st_size,
                st->st_rdev,         st->st_nlink,       st->st_mtim.tv_sec,
                st->st_mtim.tv_nsec, st->st_ctim.tv_sec, st->st_ctim.tv_nsec,
        };

        g_checksum_update(im->fingerprint, (const guchar *)path, strlen(path) + 1);
        g_checksum_update(im->fingerprint, (const guchar *)fields, sizeof(fields));
}

int import_handle_entry(Importer *im, uint32_t parent, const char *raw_name, size_t name_len, int fd)
{
        char name[NAME_MAX + 1];
        g_auto(GArrayXattrs) xattrs = NULL;
        g_autofree char *path = NULL, *epath = NULL;
        uint32_t index = im->n_records;
        struct stat st;
        Dir *top;

        if (im->n_records >= KILN_IMPORT_MAX_ENTRIES)
                return import_fail(im, KILN_IMPORT_EXIT_INVALID, "more than %u entries in the tree",
                                   KILN_IMPORT_MAX_ENTRIES);
        im->n_records++;

        /* The root: the first record, a directory, becomes our tmp directory. */
        if (index == 0) {
                Dir root = {.index = 0, .fd = -1, .path = g_strdup(""), .depth = 0};

                if (parent != KILN_IMPORT_NO_PARENT || name_len != 0)
                        return import_fail(im, KILN_IMPORT_EXIT_FAILED,
                                           "reader protocol error: bad root record");
                if (check_received(im, fd, &st, "") < 0) {
                        g_free(root.path);
                        return -1;
                }
                if (!S_ISDIR(st.st_mode)) {
                        g_free(root.path);
                        return import_fail(im, KILN_IMPORT_EXIT_NOT_DIRECTORY,
                                           "the source is not a directory");
                }
                root.fd = im->tmp_fd;
                root.mode = st.st_mode;
                root.mtime = st.st_mtim;
                g_array_append_val(im->stack, root);
                hash_fingerprint(im, "", &st);
                if (im->shift_text)
                        g_checksum_update(im->fingerprint, (const guchar *)im->shift_text, -1);
                if (im->fingerprint_only)
                        return 0;

                if (read_xattrs(im, fd, "", &xattrs) < 0)
                        return -1;
                kiln_layer_hash_meta(im->checksum, "", st.st_mode, st.st_uid, st.st_gid, st.st_mtim.tv_sec,
                                     (uint32_t)st.st_mtim.tv_nsec, (KilnXattr *)xattrs->data, xattrs->len);
                if (fchown(im->tmp_fd, st.st_uid, st.st_gid) < 0)
                        return import_fail_errno(im, errno, "fchown", ".");
                return write_xattrs(im, im->tmp_fd, xattrs, ".");
        }

        /* Where the entry goes: its parent must be on our stack; everything above it is complete. */
        if (im->stack->len == 0)
                return import_fail(im, KILN_IMPORT_EXIT_FAILED,
                                   "reader protocol error: entry after the root ended");
        while (stack_top(im)->index != parent) {
                if (im->stack->len == 1)
                        return import_fail(im, KILN_IMPORT_EXIT_FAILED,
                                           "reader protocol error: unknown parent %u", parent);
                if (import_stack_pop(im) < 0)
                        return -1;
        }
        top = stack_top(im);

        if (!kiln_name_is_valid(raw_name, name_len)) {
                g_autofree char *e = kiln_escape_for_message(raw_name, MIN(name_len, (size_t)NAME_MAX + 1));
                g_autofree char *d = kiln_escape_for_message(top->path, strlen(top->path));
                return import_fail(im, KILN_IMPORT_EXIT_INVALID, "invalid name '%s' in '%s'", e,
                                   import_display(d));
        }
        memcpy(name, raw_name, name_len);
        name[name_len] = '\0';
        path = import_join_path(top->path, name);
        epath = kiln_escape_for_message(path, strlen(path));
        if (strlen(path) > KILN_IMPORT_MAX_PATH)
                return import_fail(im, KILN_IMPORT_EXIT_INVALID, "'%s': path longer than %d bytes", epath,
                                   KILN_IMPORT_MAX_PATH);
        /* Canonical order, and no name twice: strictly increasing within a directory. */
        if (top->last_name && strcmp(top->last_name, name) >= 0)
                return import_fail(im, KILN_IMPORT_EXIT_FAILED, "reader protocol error: '%s' out of order",
                                   epath);
        g_free(top->last_name);
        top->last_name = g_strdup(name);

        if (check_received(im, fd, &st, epath) < 0)
                return -1;
        hash_fingerprint(im, path, &st);
        if (im->fingerprint_only) {
                /* The size as the import would count it: each inode once. */
                if (S_ISREG(st.st_mode)) {
                        InodeKey key = {st.st_dev, st.st_ino};
                        if (st.st_nlink > 1 && g_hash_table_contains(im->links, &key))
                                return 0;
                        if (st.st_nlink > 1)
                                g_hash_table_insert(im->links, g_memdup2(&key, sizeof(key)), g_strdup(path));
                        /* Counted, not bounded, here: a tree imported before costs no new bytes. */
                        im->bytes += MIN((uint64_t)st.st_size, UINT64_MAX - im->bytes);
                        return 0;
                }
                if (S_ISDIR(st.st_mode)) {
                        Dir d = {.index = index, .fd = -1, .depth = top->depth + 1};
                        if (d.depth > KILN_IMPORT_MAX_DEPTH)
                                return import_fail(im, KILN_IMPORT_EXIT_INVALID,
                                                   "'%s': directories nested deeper than %d", epath,
                                                   KILN_IMPORT_MAX_DEPTH);
                        d.path = g_steal_pointer(&path);
                        g_array_append_val(im->stack, d);
                }
                return 0;
        }

        /* A hard link to an inode already copied: link to our copy. */
        if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
                InodeKey key = {st.st_dev, st.st_ino};
                const char *first = g_hash_table_lookup(im->links, &key);

                if (first) {
                        kiln_layer_hash_link(im->checksum, path, first);
                        return make_hardlink(im, first, top->fd, name, epath);
                }
                InodeKey *k = g_new(InodeKey, 1);
                *k = key;
                g_hash_table_insert(im->links, k, g_strdup(path));
        }

        if (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode)) {
                if (read_xattrs(im, fd, epath, &xattrs) < 0)
                        return -1;
        }
        kiln_layer_hash_meta(im->checksum, path, st.st_mode, st.st_uid, st.st_gid, st.st_mtim.tv_sec,
                             (uint32_t)st.st_mtim.tv_nsec, xattrs ? (KilnXattr *)xattrs->data : NULL,
                             xattrs ? xattrs->len : 0);

        switch (st.st_mode & S_IFMT) {
        case S_IFDIR: {
                Dir d = {.index = index,
                         .fd = -1,
                         .depth = top->depth + 1,
                         .mode = st.st_mode,
                         .mtime = st.st_mtim};
                int dfd;

                if (d.depth > KILN_IMPORT_MAX_DEPTH)
                        return import_fail(im, KILN_IMPORT_EXIT_INVALID,
                                           "'%s': directories nested deeper than %d", epath,
                                           KILN_IMPORT_MAX_DEPTH);
                /* mkdirat + O_NOFOLLOW open in a directory we created: this is our new directory. */
                if (mkdirat(top->fd, name, 0700) < 0)
                        return import_fail_errno(im, errno, "mkdirat", epath);
                dfd = openat(top->fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (dfd < 0)
                        return import_fail_errno(im, errno, "openat", epath);
                d.fd = dfd;
                d.path = g_steal_pointer(&path);
                g_array_append_val(im->stack, d);
                if (fchown(dfd, st.st_uid, st.st_gid) < 0)
                        return import_fail_errno(im, errno, "fchown", epath);
                return write_xattrs(im, dfd, xattrs, epath);
        }
        case S_IFREG:
                return create_regular(im, fd, &st, top->fd, name, epath, xattrs);
        case S_IFLNK:
                return create_symlink(im, fd, &st, top->fd, name, epath);
        case S_IFCHR:
        case S_IFBLK:
        case S_IFIFO:
        case S_IFSOCK:
                return create_node(im, &st, top->fd, name, epath);
        default:
                return import_fail(im, KILN_IMPORT_EXIT_INVALID, "'%s': unknown file type 0%o", epath,
                                   (unsigned)(st.st_mode & S_IFMT));
        }
}

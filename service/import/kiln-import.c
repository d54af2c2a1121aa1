/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-import: imports a directory tree, read with a caller's credentials, into a content-addressed
 * layer.
 *
 *   kiln-import --uid U --gid G [--groups G1,G2,...] --layers STATE/layers (--path ABS | --fd N)
 *               [--shift-uids C:H:N,... --shift-gids C:H:N,...] [--max-bytes N] [--parent-pid P]
 *
 * kilnd runs this as root. It prints the layer digest (64 hex characters) on stdout and exits 0, or
 * prints one line naming the path and the reason on stderr and exits with one of the
 * KILN_IMPORT_EXIT_* codes (layer-digest.h).
 *
 * Two processes, one trust boundary:
 *   - the reader (import-reader.c), a forked child that fully becomes the caller, opens the source
 *     and every entry below it and passes each opened descriptor up over a socket;
 *   - this parent, root, which never resolves a path in the caller's tree and never reads anything
 *     the reader did not open for reading. It takes all metadata from fstat() of the descriptors it
 *     receives and creates the layer itself under a fresh STATE/layers/.tmp-XXXXXX, using only
 *     directory descriptors it created, then renames it to the digest of what it wrote.
 * The reader is the caller's code as far as trust goes: whatever it sends, the worst outcome is a
 * layer holding files the caller could read anyway, or a failed import.
 *
 * An unchanged source is not read twice. A first pass only opens every entry (as the caller, so the
 * permission checks are the same) and hashes each entry's path and fstat() identity — device, inode,
 * mode, owner, size, mtime and ctime — into a fingerprint. STATE/layers/.fingerprints/<fingerprint>
 * names the layer a full import of that exact state produced; if that layer exists, it is the answer.
 * Any change to a file's content, metadata or xattrs moves its ctime, which no unprivileged caller
 * can set, so a changed tree never matches. Otherwise the full import runs and records its own
 * fingerprint (taken from the same fstat() as the layer's metadata).
 *
 * With --shift-uids/--shift-gids (user namespace maps, container:host:count) every owner is written
 * as the host id its id maps to (unmapped ids become 65534): a shifted copy of a layer, for kernels
 * or file systems that refuse ID-mapped mounts. The maps are part of the fingerprint.
 *
 * A new layer holds at most --max-bytes of file content (the sizes of its regular files, each inode
 * once): the first pass counts from fstat() alone and refuses a tree past the bound before anything is
 * written (exit KILN_IMPORT_EXIT_LIMIT), unless its fingerprint names a layer that exists (which costs
 * nothing new); the import pass checks each file before copying it, so a tree that grew meanwhile
 * stops at the bound too, and nothing of it stays. The count of what was written goes to
 * STATE/layers/.sizes/<digest>, for kilnd's per-user bound.
 *
 * Faults. The helper dies with kilnd (PR_SET_PDEATHSIG, and it exits if kilnd is already gone when
 * that is set: --parent-pid), so no import outlives the service that asked for it. Its .tmp- tree is
 * flock()ed while it is written: kilnd's start-up clean-up removes only tmp trees nobody holds. And
 * before the rename the tree on disk is walked once and must hold exactly the entries and bytes that
 * were written: a tree damaged behind our back is never published under the digest of what it was
 * meant to be. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <inttypes.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <glib.h>

#include "base/fd-passing.h"
#include "base/fs-util.h"
#include "image-read.h"
#include "import-protocol.h"
#include "base/kiln-common.h"
#include "layer-digest.h"

#define COPY_BUFFER_SIZE (1024 * 1024)
#define XATTR_MAX_SIZE 65536 /* XATTR_SIZE_MAX and XATTR_LIST_MAX */

static volatile sig_atomic_t terminating;

typedef struct Options {
        uid_t uid;
        gid_t gid;
        gid_t *groups;
        size_t n_groups;
        const char *layers;
        const char *path;
        int fd;
        bool have_uid, have_gid;
        const char *shift_uids, *shift_gids; /* as given, for the fingerprint */
        uint64_t max_bytes;                  /* UINT64_MAX: no bound */
        pid_t parent_pid;                    /* 0: whoever started us */
} Options;

#define SHIFT_MAX_RANGES 340
#define OVERFLOW_ID 65534

/* One user namespace map: container ids [c, c + n) are host ids [h, h + n). */
typedef struct IdShift {
        uint32_t c[SHIFT_MAX_RANGES], h[SHIFT_MAX_RANGES], n[SHIFT_MAX_RANGES];
        size_t len;
} IdShift;

/* A directory of the new layer that may still get entries: the stack of these mirrors the reader's. */
typedef struct Dir {
        uint32_t index; /* the reader's record index */
        int fd;         /* our directory in the tmp tree */
        char *path;     /* relative to the layer root, "" for the root */
        unsigned depth;
        mode_t mode;
        struct timespec mtime;
        char *last_name; /* the previous entry's name, to check the order */
} Dir;

typedef struct InodeKey {
        dev_t dev;
        ino_t ino;
} InodeKey;

typedef struct Importer {
        int layers_fd;
        char tmp_name[32];
        int tmp_fd;  /* owned by the root Dir once that exists */
        int lock_fd; /* the tmp tree's flock, held until it is published or removed */
        int sock;
        pid_t child;
        GChecksum *checksum;
        GArray *stack;     /* Dir */
        GHashTable *links; /* InodeKey → path of the first entry */
        GChecksum *fingerprint;
        bool fingerprint_only;          /* the first pass: open and fstat everything, create nothing */
        IdShift *shift_uid, *shift_gid; /* NULL: owners as they are */
        char *shift_text;
        uint32_t n_records;
        uint64_t max_bytes; /* of regular file content */
        uint64_t bytes;     /* counted so far in this pass; in the import, what was written */
        uint8_t *buffer;
        int exit_code;
        char *error;
} Importer;

static int fail(Importer *im, int exit_code, const char *format, ...) G_GNUC_PRINTF(3, 4);

static int fail(Importer *im, int exit_code, const char *format, ...)
{
        va_list ap;

        if (im->error)
                return -1; /* keep the first, it is the cause */
        va_start(ap, format);
        im->error = g_strdup_vprintf(format, ap);
        va_end(ap);
        im->exit_code = exit_code;
        return -1;
}

/* "<syscall> '<path>': <reason>" for our own failures. */
static int fail_errno(Importer *im, int err, const char *syscall_name, const char *path)
{
        g_autofree char *p = kiln_escape_for_message(path, strlen(path));
        return fail(im, KILN_IMPORT_EXIT_FAILED, "%s '%s': %s", syscall_name, p, g_strerror(err));
}

static int fail_xattr(Importer *im, int err, const char *syscall_name, const char *path, const char *name)
{
        g_autofree char *p = kiln_escape_for_message(path, strlen(path));
        g_autofree char *n = kiln_escape_for_message(name, strlen(name));
        return fail(im, KILN_IMPORT_EXIT_FAILED, "%s '%s' xattr '%s': %s", syscall_name, p[0] ? p : ".", n,
                    g_strerror(err));
}

static const char *display(const char *path)
{
        return path[0] ? path : ".";
}

static char *join_path(const char *dir, const char *name)
{
        return dir[0] ? g_strconcat(dir, "/", name, NULL) : g_strdup(name);
}

static guint inode_hash(gconstpointer p)
{
        const InodeKey *k = p;
        return g_int64_hash(&(gint64){(gint64)k->ino}) ^ g_int64_hash(&(gint64){(gint64)k->dev});
}

static gboolean inode_equal(gconstpointer a, gconstpointer b)
{
        const InodeKey *x = a, *y = b;
        return x->dev == y->dev && x->ino == y->ino;
}

static void on_signal(G_GNUC_UNUSED int sig)
{
        terminating = 1;
}

static bool check_terminating(Importer *im)
{
        if (terminating) {
                fail(im, KILN_IMPORT_EXIT_FAILED, "import cancelled");
                return true;
        }
        return false;
}

/* Adds @size bytes of file content to the pass's count, or fails if that passes --max-bytes. */
static int count_bytes(Importer *im, uint64_t size, const char *path)
{
        if (size > im->max_bytes - im->bytes)
                return fail(im, KILN_IMPORT_EXIT_LIMIT,
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
                return fail_errno(im, errno, "flistxattr", display(path));
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

                        if (check_terminating(im))
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
                                                return fail_errno(im, -r, "write", path);
                                }
                        }
                        if (n < 0) {
                                if (errno == EINTR)
                                        continue;
                                return fail_errno(im, errno,
                                                  use_copy_file_range ? "copy_file_range" : "read", path);
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
                return fail_errno(im, errno, "ftruncate", path);
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

                if (check_terminating(im))
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
                                return fail_errno(im, errno, "read", path);
                        if (n == 0)
                                return fail(im, KILN_IMPORT_EXIT_FAILED, "read '%s': unexpected end of file",
                                            path);
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

static void dir_clear(Dir *d)
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
                return fail_errno(im, errno, "fchmod", display(d->path));
        if (futimens(d->fd, ts) < 0)
                return fail_errno(im, errno, "futimens", display(d->path));
        return 0;
}

static Dir *stack_top(Importer *im)
{
        return &g_array_index(im->stack, Dir, im->stack->len - 1);
}

static int stack_pop(Importer *im)
{
        Dir *d = stack_top(im);
        int r = dir_finish(im, d);

        if (d->fd == im->tmp_fd)
                im->tmp_fd = -1;
        dir_clear(d);
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
                return fail_errno(im, errno, "dup", ".");
        for (guint i = 0; i + 1 < n; i++) {
                int sub = openat(fd, parts[i], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                int e = errno;
                close(fd);
                if (sub < 0)
                        return fail_errno(im, e, "openat", path);
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
                return fail_errno(im, errno, "linkat", path);
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
                return fail_errno(im, errno, "fcntl", path);
        if ((fl & O_PATH) || (fl & O_ACCMODE) != O_RDONLY)
                return fail(im, KILN_IMPORT_EXIT_FAILED, "'%s': not opened for reading by the reader", path);
        if ((fl & O_NONBLOCK) && fcntl(src, F_SETFL, fl & ~O_NONBLOCK) < 0)
                return fail_errno(im, errno, "fcntl", path);

        /* Checked before a byte is copied: the copy never goes past st_size, so the bound holds even
         * if the file grows meanwhile. */
        if ((uint64_t)st->st_size > im->max_bytes - im->bytes)
                return count_bytes(im, (uint64_t)st->st_size, path);

        /* O_EXCL|O_NOFOLLOW in a directory we created: we write only a file we just made. */
        fd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return fail_errno(im, errno, "openat", path);

        size = copy_content(im, src, fd, (uint64_t)st->st_size, path);
        if (size < 0)
                return -1;
        im->bytes += (uint64_t)size; /* what the layer holds: the file may have shrunk */
        if (hash_content(im, fd, (uint64_t)size, path) < 0)
                return -1;

        /* Owner first (chown drops setuid/setgid and security.capability), then xattrs, then the exact
         * mode, then times. */
        if (fchown(fd, st->st_uid, st->st_gid) < 0)
                return fail_errno(im, errno, "fchown", path);
        if (write_xattrs(im, fd, xattrs, path) < 0)
                return -1;
        if (fchmod(fd, st->st_mode & 07777) < 0)
                return fail_errno(im, errno, "fchmod", path);
        if (futimens(fd, ts) < 0)
                return fail_errno(im, errno, "futimens", path);
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
                return fail_errno(im, errno, "readlinkat", path);
        if ((size_t)n >= sizeof(target) || n == 0)
                return fail(im, KILN_IMPORT_EXIT_INVALID, "readlinkat '%s': bad link target length", path);
        target[n] = '\0';
        if (memchr(target, '\0', (size_t)n))
                return fail(im, KILN_IMPORT_EXIT_INVALID, "readlinkat '%s': bad link target", path);

        kiln_layer_hash_symlink(im->checksum, target, (size_t)n);

        /* The target is stored as it is, never resolved. */
        if (symlinkat(target, dirfd, name) < 0)
                return fail_errno(im, errno, "symlinkat", path);
        if (fchownat(dirfd, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
                return fail_errno(im, errno, "fchownat", path);
        if (utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
                return fail_errno(im, errno, "utimensat", path);
        return 0;
}

static int create_node(Importer *im, const struct stat *st, int dirfd, const char *name, const char *path)
{
        struct timespec ts[2] = {st->st_mtim, st->st_mtim};

        if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
                kiln_layer_hash_device(im->checksum, st->st_rdev);

        /* Device nodes in a layer are inert: every mount of a layer is nodev. */
        if (mknodat(dirfd, name, (st->st_mode & S_IFMT) | 0600, st->st_rdev) < 0)
                return fail_errno(im, errno, "mknodat", path);
        if (fchownat(dirfd, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
                return fail_errno(im, errno, "fchownat", path);
        /* fchmodat follows symlinks, but @name is the node mknodat just made in a directory only we
         * can write to (STATE/layers is 0700 root), so it names that node. */
        if (fchmodat(dirfd, name, st->st_mode & 07777, 0) < 0)
                return fail_errno(im, errno, "fchmodat", path);
        if (utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
                return fail_errno(im, errno, "utimensat", path);
        return 0;
}

/* Checks a received descriptor and returns its stat. Directories and regular files are read by us (root),
 * so they must be real descriptors opened for reading, and not on a pseudo file system. */
static uint32_t shift_id(const IdShift *s, uint32_t id)
{
        for (size_t i = 0; i < s->len; i++)
                if (id >= s->c[i] && id - s->c[i] < s->n[i])
                        return s->h[i] + (id - s->c[i]);
        return OVERFLOW_ID;
}

/* "C:H:N,C:H:N,...": kilnd's checked maps; anything else is refused. */
static IdShift *parse_shift(const char *text)
{
        g_autofree IdShift *s = g_new0(IdShift, 1);
        g_auto(GStrv) ranges = g_strsplit(text, ",", -1);

        for (char **r = ranges; *r; r++) {
                g_auto(GStrv) f = g_strsplit(*r, ":", -1);
                guint64 c, h, n;
                if (s->len == SHIFT_MAX_RANGES || g_strv_length(f) != 3 ||
                    !g_ascii_string_to_unsigned(f[0], 10, 0, UINT32_MAX - 1, &c, NULL) ||
                    !g_ascii_string_to_unsigned(f[1], 10, 0, UINT32_MAX - 1, &h, NULL) ||
                    !g_ascii_string_to_unsigned(f[2], 10, 1, UINT32_MAX - 1, &n, NULL) ||
                    c + n > UINT32_MAX || h + n > UINT32_MAX)
                        return NULL;
                s->c[s->len] = (uint32_t)c;
                s->h[s->len] = (uint32_t)h;
                s->n[s->len] = (uint32_t)n;
                s->len++;
        }
        return s->len > 0 ? g_steal_pointer(&s) : NULL;
}

static int check_received(Importer *im, int fd, struct stat *st, const char *path)
{
        const char *fs = NULL;
        int r;

        if (fstat(fd, st) < 0)
                return fail_errno(im, errno, "fstat", display(path));
        if (im->shift_uid) {
                st->st_uid = shift_id(im->shift_uid, st->st_uid);
                st->st_gid = shift_id(im->shift_gid, st->st_gid);
        }
        if (!S_ISDIR(st->st_mode) && !S_ISREG(st->st_mode))
                return 0;

        int fl = fcntl(fd, F_GETFL);
        if (fl < 0)
                return fail_errno(im, errno, "fcntl", display(path));
        if ((fl & O_PATH) || (fl & O_ACCMODE) != O_RDONLY)
                return fail(im, KILN_IMPORT_EXIT_FAILED, "'%s': not opened for reading by the reader",
                            display(path));
        r = kiln_fd_on_pseudo_fs(fd, &fs);
        if (r < 0)
                return fail_errno(im, -r, "fstatfs", display(path));
        if (r > 0)
                return fail(im, KILN_IMPORT_EXIT_INVALID,
                            "'%s' is on a %s file system, which is not imported", display(path), fs);
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

static int handle_entry(Importer *im, uint32_t parent, const char *raw_name, size_t name_len, int fd)
{
        char name[NAME_MAX + 1];
        g_auto(GArrayXattrs) xattrs = NULL;
        g_autofree char *path = NULL, *epath = NULL;
        uint32_t index = im->n_records;
        struct stat st;
        Dir *top;

        if (im->n_records >= KILN_IMPORT_MAX_ENTRIES)
                return fail(im, KILN_IMPORT_EXIT_INVALID, "more than %u entries in the tree",
                            KILN_IMPORT_MAX_ENTRIES);
        im->n_records++;

        /* The root: the first record, a directory, becomes our tmp directory. */
        if (index == 0) {
                Dir root = {.index = 0, .fd = -1, .path = g_strdup(""), .depth = 0};

                if (parent != KILN_IMPORT_NO_PARENT || name_len != 0)
                        return fail(im, KILN_IMPORT_EXIT_FAILED, "reader protocol error: bad root record");
                if (check_received(im, fd, &st, "") < 0) {
                        g_free(root.path);
                        return -1;
                }
                if (!S_ISDIR(st.st_mode)) {
                        g_free(root.path);
                        return fail(im, KILN_IMPORT_EXIT_NOT_DIRECTORY, "the source is not a directory");
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
                        return fail_errno(im, errno, "fchown", ".");
                return write_xattrs(im, im->tmp_fd, xattrs, ".");
        }

        /* Where the entry goes: its parent must be on our stack; everything above it is complete. */
        if (im->stack->len == 0)
                return fail(im, KILN_IMPORT_EXIT_FAILED,
                            "reader protocol error: entry after the root ended");
        while (stack_top(im)->index != parent) {
                if (im->stack->len == 1)
                        return fail(im, KILN_IMPORT_EXIT_FAILED, "reader protocol error: unknown parent %u",
                                    parent);
                if (stack_pop(im) < 0)
                        return -1;
        }
        top = stack_top(im);

        if (!kiln_name_is_valid(raw_name, name_len)) {
                g_autofree char *e = kiln_escape_for_message(raw_name, MIN(name_len, (size_t)NAME_MAX + 1));
                g_autofree char *d = kiln_escape_for_message(top->path, strlen(top->path));
                return fail(im, KILN_IMPORT_EXIT_INVALID, "invalid name '%s' in '%s'", e, display(d));
        }
        memcpy(name, raw_name, name_len);
        name[name_len] = '\0';
        path = join_path(top->path, name);
        epath = kiln_escape_for_message(path, strlen(path));
        if (strlen(path) > KILN_IMPORT_MAX_PATH)
                return fail(im, KILN_IMPORT_EXIT_INVALID, "'%s': path longer than %d bytes", epath,
                            KILN_IMPORT_MAX_PATH);
        /* Canonical order, and no name twice: strictly increasing within a directory. */
        if (top->last_name && strcmp(top->last_name, name) >= 0)
                return fail(im, KILN_IMPORT_EXIT_FAILED, "reader protocol error: '%s' out of order", epath);
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
                                return fail(im, KILN_IMPORT_EXIT_INVALID,
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
                        return fail(im, KILN_IMPORT_EXIT_INVALID, "'%s': directories nested deeper than %d",
                                    epath, KILN_IMPORT_MAX_DEPTH);
                /* mkdirat + O_NOFOLLOW open in a directory we created: this is our new directory. */
                if (mkdirat(top->fd, name, 0700) < 0)
                        return fail_errno(im, errno, "mkdirat", epath);
                dfd = openat(top->fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (dfd < 0)
                        return fail_errno(im, errno, "openat", epath);
                d.fd = dfd;
                d.path = g_steal_pointer(&path);
                g_array_append_val(im->stack, d);
                if (fchown(dfd, st.st_uid, st.st_gid) < 0)
                        return fail_errno(im, errno, "fchown", epath);
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
                return fail(im, KILN_IMPORT_EXIT_INVALID, "'%s': unknown file type 0%o", epath,
                            (unsigned)(st.st_mode & S_IFMT));
        }
}

static int exit_code_for_errno(int e)
{
        switch (e) {
        case ENOENT:
                return KILN_IMPORT_EXIT_NOT_FOUND;
        case EACCES:
        case EPERM:
                return KILN_IMPORT_EXIT_PERMISSION_DENIED;
        case ENOTDIR:
                return KILN_IMPORT_EXIT_NOT_DIRECTORY;
        default:
                return KILN_IMPORT_EXIT_FAILED;
        }
}

/* An ERROR record: the reader's account of why it stopped. Only the message depends on it. */
static int handle_error(Importer *im, const KilnImportRecord *rec)
{
        g_autofree char *p = kiln_escape_for_message(rec->name, rec->h.name_len);
        int e = rec->h.error;

        switch (rec->h.what) {
        case KILN_IMPORT_WHAT_OPEN:
                return fail(im, exit_code_for_errno(e), "cannot open '%s': %s", p, g_strerror(e));
        case KILN_IMPORT_WHAT_STAT:
                return fail(im, exit_code_for_errno(e), "cannot stat '%s': %s", p, g_strerror(e));
        case KILN_IMPORT_WHAT_READDIR:
                return fail(im, exit_code_for_errno(e), "cannot read directory '%s': %s", p, g_strerror(e));
        case KILN_IMPORT_WHAT_CHANGED:
                return fail(im, KILN_IMPORT_EXIT_FAILED, "'%s' changed while being imported", p);
        case KILN_IMPORT_WHAT_TOO_DEEP:
                return fail(im, KILN_IMPORT_EXIT_INVALID, "'%s': directories nested deeper than %d", p,
                            KILN_IMPORT_MAX_DEPTH);
        case KILN_IMPORT_WHAT_TOO_MANY:
                return fail(im, KILN_IMPORT_EXIT_INVALID, "'%s': more than %u entries in the tree", p,
                            KILN_IMPORT_MAX_ENTRIES);
        case KILN_IMPORT_WHAT_PATH_TOO_LONG:
                return fail(im, KILN_IMPORT_EXIT_INVALID, "'%s': a path below it is longer than %d bytes", p,
                            KILN_IMPORT_MAX_PATH);
        case KILN_IMPORT_WHAT_PSEUDO_FS:
                return fail(im, KILN_IMPORT_EXIT_INVALID,
                            "'%s' is on a kernel pseudo file system, which is not imported", p);
        case KILN_IMPORT_WHAT_DROP:
                return fail(im, KILN_IMPORT_EXIT_FAILED, "cannot switch to uid/gid of the caller (%s): %s",
                            p, g_strerror(e));
        default:
                return fail(im, KILN_IMPORT_EXIT_FAILED, "reader failed: '%s': %s", p, g_strerror(e));
        }
}

/* Receives one record. Returns 1 with a record (and *fd, or -1), 0 at end of stream, -1 on error. */
static int receive(Importer *im, KilnImportRecord *rec, int *fd)
{
        size_t n_fds;
        int msg_flags = 0;
        ssize_t n;

        /* Every descriptor that came is taken, the first kept, so none leaks whatever else is wrong. */
        *fd = -1;
        for (;;) {
                n = kiln_recv_fds(im->sock, rec, sizeof(*rec), fd, 1, &n_fds, 0, &msg_flags);
                if (n >= 0)
                        break;
                /* ECONNRESET: the reader exited with acknowledgements unread. The kernel reports
                 * that once, ahead of whatever the reader sent before; read on. */
                if (errno == ECONNRESET)
                        continue;
                if (errno != EINTR)
                        return fail_errno(im, errno, "recvmsg", "reader socket");
                if (check_terminating(im))
                        return -1;
        }

        if (n == 0)
                return 0;
        if ((msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || (size_t)n < sizeof(rec->h) ||
            rec->h.name_len != (size_t)n - sizeof(rec->h))
                return fail(im, KILN_IMPORT_EXIT_FAILED, "reader protocol error: bad record");
        return 1;
}

static int reap_child(Importer *im, bool kill_it)
{
        int status;

        if (im->child <= 0)
                return 0;
        if (kill_it)
                kill(im->child, SIGKILL);
        while (waitpid(im->child, &status, 0) < 0)
                if (errno != EINTR) {
                        im->child = -1;
                        return -1;
                }
        im->child = -1;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int run_import(Importer *im)
{
        KilnImportRecord rec;

        for (;;) {
                _cleanup_close_ int fd = -1;
                int r = receive(im, &rec, &fd);

                if (r < 0)
                        return -1;
                if (r == 0) {
                        reap_child(im, false);
                        return fail(im, KILN_IMPORT_EXIT_FAILED, "the reader process ended unexpectedly");
                }

                switch (rec.h.kind) {
                case KILN_IMPORT_RECORD_ENTRY:
                        if (fd < 0)
                                return fail(im, KILN_IMPORT_EXIT_FAILED,
                                            "reader protocol error: no descriptor");
                        if (handle_entry(im, rec.h.parent, rec.name, rec.h.name_len, fd) < 0)
                                return -1;
                        /* Acknowledge, so the reader may send more. If the reader is gone, the
                         * next receive says why (its ERROR record, or the end of the stream). */
                        (void)send(im->sock, "", 1, MSG_NOSIGNAL);
                        break;
                case KILN_IMPORT_RECORD_DONE:
                        if (im->n_records == 0)
                                return fail(im, KILN_IMPORT_EXIT_FAILED,
                                            "reader protocol error: nothing sent");
                        while (im->stack->len > 0)
                                if (stack_pop(im) < 0)
                                        return -1;
                        if (reap_child(im, false) < 0)
                                return fail(im, KILN_IMPORT_EXIT_FAILED, "the reader process failed");
                        return 0;
                case KILN_IMPORT_RECORD_ERROR:
                        return handle_error(im, &rec);
                default:
                        return fail(im, KILN_IMPORT_EXIT_FAILED, "reader protocol error: record kind %u",
                                    rec.h.kind);
                }
                if (check_terminating(im))
                        return -1;
        }
}

static int make_tmp_dir(Importer *im)
{
        for (int attempt = 0; attempt < 100; attempt++) {
                uint8_t rnd[6];

                if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
                        return fail_errno(im, errno, "getrandom", "");
                snprintf(im->tmp_name, sizeof(im->tmp_name), ".tmp-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
                         rnd[2], rnd[3], rnd[4], rnd[5]);
                /* A fresh name in STATE/layers (root-only): nobody else can have a handle on it. */
                if (mkdirat(im->layers_fd, im->tmp_name, 0700) == 0) {
                        struct stat a, b;

                        im->tmp_fd = openat(im->layers_fd, im->tmp_name,
                                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (im->tmp_fd < 0)
                                return fail_errno(im, errno, "openat", im->tmp_name);
                        /* Locked while it is written, on a descriptor of its own (the root Dir closes
                         * tmp_fd when the tree is complete): kilnd's start-up clean-up removes only
                         * tmp trees whose lock it can take. */
                        im->lock_fd = fcntl(im->tmp_fd, F_DUPFD_CLOEXEC, 3);
                        if (im->lock_fd < 0)
                                return fail_errno(im, errno, "dup", im->tmp_name);
                        if (flock(im->lock_fd, LOCK_EX | LOCK_NB) < 0)
                                return fail_errno(im, errno, "flock", im->tmp_name);
                        /* A clean-up that took the lock between mkdirat and flock has removed the
                         * directory: then the name no longer leads to it. */
                        if (fstat(im->tmp_fd, &a) < 0 ||
                            fstatat(im->layers_fd, im->tmp_name, &b, AT_SYMLINK_NOFOLLOW) < 0 ||
                            a.st_dev != b.st_dev || a.st_ino != b.st_ino)
                                return fail(im, KILN_IMPORT_EXIT_FAILED, "'%s' was removed while being made",
                                            im->tmp_name);
                        return 0;
                }
                if (errno != EEXIST)
                        return fail_errno(im, errno, "mkdirat", im->tmp_name);
        }
        im->tmp_name[0] = '\0';
        return fail(im, KILN_IMPORT_EXIT_FAILED, "cannot find a free temporary name");
}

/* What the tree on disk holds, counted as the import counts: every name, and the content of each
 * regular inode once. nftw takes no closure, hence these. */
static struct {
        uint64_t entries, bytes;
        GHashTable *inodes;
} tally;

static int tally_entry(G_GNUC_UNUSED const char *path, const struct stat *st, int type,
                       G_GNUC_UNUSED struct FTW *ftw)
{
        tally.entries++;
        if (S_ISREG(st->st_mode)) {
                InodeKey key = {st->st_dev, st->st_ino};
                if (st->st_nlink > 1 && g_hash_table_contains(tally.inodes, &key))
                        return 0;
                if (st->st_nlink > 1)
                        g_hash_table_add(tally.inodes, g_memdup2(&key, sizeof(key)));
                tally.bytes += (uint64_t)st->st_size;
        }
        return type == FTW_NS || type == FTW_DNR ? -1 : 0;
}

/* One pass over the finished tmp tree before it gets its name: it must hold exactly what was written.
 * Anything that changed it behind our back (a clean-up that did not respect the lock, an administrator)
 * shows as a missing or extra entry or a different size, and the import fails instead of publishing a
 * damaged layer under the digest of the intact one. The path is ours: STATE/layers is root's alone and
 * nftw is told not to follow symlinks nor to leave the file system. */
static int verify_tree(Importer *im, const char *layers)
{
        g_autofree char *path = g_build_filename(layers, im->tmp_name, NULL);
        int r;

        tally.entries = tally.bytes = 0;
        errno = 0;
        tally.inodes = g_hash_table_new_full(inode_hash, inode_equal, g_free, NULL);
        r = nftw(path, tally_entry, 16, FTW_PHYS | FTW_MOUNT);
        g_clear_pointer(&tally.inodes, g_hash_table_unref);
        if (r != 0)
                return fail_errno(im, errno ? errno : EIO, "verify", im->tmp_name);
        if (tally.entries != im->n_records || tally.bytes != im->bytes)
                return fail(im, KILN_IMPORT_EXIT_FAILED,
                            "the new layer changed while it was written: %" PRIu64 " entries and %" PRIu64
                            " bytes on disk, %u entries and %" PRIu64 " bytes written",
                            tally.entries, tally.bytes, im->n_records, im->bytes);
        return 0;
}

/* Makes the finished tree the layer <digest>, or finds that one exists (the same content) and drops ours. */
static int publish(Importer *im, const char *digest)
{
        /* Everything written must be on disk before the name says the layer is complete. */
        if (syncfs(im->layers_fd) < 0)
                return fail_errno(im, errno, "syncfs", im->tmp_name);

        if (renameat2(im->layers_fd, im->tmp_name, im->layers_fd, digest, RENAME_NOREPLACE) < 0) {
                if (errno == EINVAL || errno == ENOSYS) {
                        struct stat st;
                        if (fstatat(im->layers_fd, digest, &st, AT_SYMLINK_NOFOLLOW) == 0)
                                errno = EEXIST;
                        else if (renameat(im->layers_fd, im->tmp_name, im->layers_fd, digest) == 0)
                                goto renamed;
                }
                if (errno != EEXIST && errno != ENOTEMPTY)
                        return fail_errno(im, errno, "renameat2", digest);
                /* The same layer exists already: keep that one. */
                return 0;
        }
renamed:
        im->tmp_name[0] = '\0';
        if (fsync(im->layers_fd) < 0)
                return fail_errno(im, errno, "fsync", "layers");
        return 0;
}

static int parse_groups(const char *s, Options *o)
{
        g_auto(GStrv) parts = NULL;
        size_t n;

        if (!*s)
                return 0;
        parts = g_strsplit(s, ",", -1);
        n = g_strv_length(parts);
        if (n > KILN_IMPORT_MAX_GROUPS)
                return -1;
        o->groups = g_new(gid_t, n);
        for (size_t i = 0; i < n; i++) {
                guint64 v;
                if (!g_ascii_string_to_unsigned(parts[i], 10, 0, UINT32_MAX - 1, &v, NULL))
                        return -1;
                o->groups[i] = (gid_t)v;
        }
        o->n_groups = n;
        return 0;
}

static int parse_options(int argc, char **argv, Options *o)
{
        for (int i = 1; i < argc; i++) {
                const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
                guint64 v;

                if (!val)
                        return -1;
                if (strcmp(arg, "--uid") == 0) {
                        if (!g_ascii_string_to_unsigned(val, 10, 0, UINT32_MAX - 1, &v, NULL))
                                return -1;
                        o->uid = (uid_t)v;
                        o->have_uid = true;
                } else if (strcmp(arg, "--gid") == 0) {
                        if (!g_ascii_string_to_unsigned(val, 10, 0, UINT32_MAX - 1, &v, NULL))
                                return -1;
                        o->gid = (gid_t)v;
                        o->have_gid = true;
                } else if (strcmp(arg, "--groups") == 0) {
                        if (o->groups || parse_groups(val, o) < 0)
                                return -1;
                } else if (strcmp(arg, "--layers") == 0) {
                        o->layers = val;
                } else if (strcmp(arg, "--path") == 0) {
                        o->path = val;
                } else if (strcmp(arg, "--shift-uids") == 0) {
                        o->shift_uids = val;
                } else if (strcmp(arg, "--shift-gids") == 0) {
                        o->shift_gids = val;
                } else if (strcmp(arg, "--max-bytes") == 0) {
                        if (!g_ascii_string_to_unsigned(val, 10, 0, UINT64_MAX, &v, NULL))
                                return -1;
                        o->max_bytes = v;
                } else if (strcmp(arg, "--parent-pid") == 0) {
                        if (!g_ascii_string_to_unsigned(val, 10, 1, INT_MAX, &v, NULL))
                                return -1;
                        o->parent_pid = (pid_t)v;
                } else if (strcmp(arg, "--fd") == 0) {
                        if (!g_ascii_string_to_unsigned(val, 10, 3, INT_MAX, &v, NULL))
                                return -1;
                        o->fd = (int)v;
                } else {
                        return -1;
                }
                i++;
        }
        if (!o->have_uid || !o->have_gid || !o->layers || !g_path_is_absolute(o->layers))
                return -1;
        if (!!o->path == (o->fd >= 0))
                return -1;
        if (!o->shift_uids != !o->shift_gids)
                return -1;
        if (o->path && (!g_path_is_absolute(o->path) || strlen(o->path) >= PATH_MAX))
                return -1;
        return 0;
}

static void importer_cleanup(Importer *im)
{
        reap_child(im, true);
        if (im->stack) {
                for (guint i = 0; i < im->stack->len; i++) {
                        Dir *d = &g_array_index(im->stack, Dir, i);
                        if (d->fd == im->tmp_fd)
                                im->tmp_fd = -1;
                        dir_clear(d);
                }
                g_array_unref(im->stack);
        }
        if (im->tmp_fd >= 0)
                close(im->tmp_fd);
        if (im->tmp_name[0] && im->layers_fd >= 0) {
                g_autofree char *failed = NULL;
                int r = kiln_rm_rf_at(im->layers_fd, im->tmp_name, &failed);
                if (r < 0)
                        fprintf(stderr, "warning: cannot remove '%s': %s\n", failed ? failed : im->tmp_name,
                                g_strerror(-r));
        }
        /* Only now: the tree is gone or published. */
        if (im->lock_fd >= 0)
                close(im->lock_fd);
        if (im->layers_fd >= 0)
                close(im->layers_fd);
        if (im->sock >= 0)
                close(im->sock);
        if (im->links)
                g_hash_table_unref(im->links);
        if (im->checksum)
                g_checksum_free(im->checksum);
        if (im->fingerprint)
                g_checksum_free(im->fingerprint);
        g_free(im->buffer);
        g_free(im->error);
        g_free(im->shift_uid);
        g_free(im->shift_gid);
        g_free(im->shift_text);
}

/* Forks a reader for one pass over the source. */
static int start_reader(Importer *im, const Options *o, pid_t self)
{
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return fail_errno(im, errno, "socketpair", "reader socket");
        im->child = fork();
        if (im->child < 0) {
                close(sv[0]);
                close(sv[1]);
                return fail_errno(im, errno, "fork", "reader");
        }
        if (im->child == 0) {
                KilnImportReaderArgs a = {
                        .uid = o->uid,
                        .gid = o->gid,
                        .groups = o->groups,
                        .n_groups = o->n_groups,
                        .src_path = o->path,
                        .src_fd = o->fd,
                        .sock = sv[1],
                        .parent_pid = self,
                };
                close(sv[0]);
                kiln_import_reader_run(&a);
        }
        close(sv[1]);
        im->sock = sv[0];
        return 0;
}

/* Back to the state before a pass, for the next one. */
static void importer_reset(Importer *im)
{
        for (guint i = 0; i < im->stack->len; i++)
                dir_clear(&g_array_index(im->stack, Dir, i));
        g_array_set_size(im->stack, 0);
        g_hash_table_remove_all(im->links);
        g_checksum_reset(im->checksum);
        g_checksum_reset(im->fingerprint);
        im->fingerprint_only = false;
        im->n_records = 0;
        im->bytes = 0;
        if (im->sock >= 0)
                close(im->sock);
        im->sock = -1;
}

#define FINGERPRINTS_DIR ".fingerprints"

/* The layer recorded for @fingerprint, if there is one and it still exists. A damaged or missing record
 * only means a full import. */
static char *lookup_fingerprint(Importer *im, const char *fingerprint)
{
        g_autofree char *name = g_strconcat(FINGERPRINTS_DIR "/", fingerprint, NULL);
        char digest[KILN_LAYER_DIGEST_LENGTH + 2];
        _cleanup_close_ int fd = openat(im->layers_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        ssize_t n;

        if (fd < 0)
                return NULL;
        n = read(fd, digest, sizeof(digest) - 1);
        if (n < KILN_LAYER_DIGEST_LENGTH)
                return NULL;
        digest[KILN_LAYER_DIGEST_LENGTH] = '\0';
        if (!kiln_hex64_is_valid(digest) || fstatat(im->layers_fd, digest, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISDIR(st.st_mode))
                return NULL;
        return g_strdup(digest);
}

/* LAYERS/DIR/NAME holding @line, written whole or not at all (a .tmp- file renamed over it). Best
 * effort: a record that cannot be written is simply not there, which every reader tolerates. */
static void write_record(Importer *im, const char *dir, const char *name, const char *line)
{
        g_autofree char *tmp = g_strconcat(dir, "/.tmp-", name, NULL);
        g_autofree char *path = g_strconcat(dir, "/", name, NULL);
        _cleanup_close_ int fd = -1;

        if (mkdirat(im->layers_fd, dir, 0700) < 0 && errno != EEXIST)
                return;
        fd = openat(im->layers_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return;
        if (write(fd, line, strlen(line)) != (ssize_t)strlen(line) || fsync(fd) < 0 ||
            renameat(im->layers_fd, tmp, im->layers_fd, path) < 0)
                (void)unlinkat(im->layers_fd, tmp, 0);
}

/* A record that cannot be written costs the next import its shortcut, nothing else. */
static void record_fingerprint(Importer *im, const char *fingerprint, const char *digest)
{
        g_autofree char *line = g_strconcat(digest, "\n", NULL);

        write_record(im, FINGERPRINTS_DIR, fingerprint, line);
}

#define SIZES_DIR ".sizes"

/* STATE/layers/.sizes/<digest>: the layer's bytes of file content, for kilnd's per-user bound. Best
 * effort, as the fingerprint: kilnd counts a layer without a record as 0 bytes. */
static void record_size(Importer *im, const char *digest, uint64_t bytes)
{
        g_autofree char *name = g_strconcat(SIZES_DIR "/", digest, NULL);
        g_autofree char *line = g_strdup_printf("%" PRIu64 "\n", bytes);
        struct stat st;

        if (fstatat(im->layers_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                return;
        write_record(im, SIZES_DIR, digest, line);
}

int main(int argc, char **argv)
{
        Options o = {.fd = -1, .max_bytes = UINT64_MAX};
        Importer im = {.layers_fd = -1, .tmp_fd = -1, .lock_fd = -1, .sock = -1, .child = -1};
        pid_t parent = getppid();
        struct sigaction sa = {.sa_handler = on_signal};
        int keep[1], exit_code = KILN_IMPORT_EXIT_OK;
        g_autofree char *known = NULL;
        struct stat st;
        pid_t self = getpid();

        /* Images (oci:, oci-archive:, docker-archive:) are a mode of their own: image-read.c. */
        if (argc > 1 && strcmp(argv[1], "--image") == 0)
                return kiln_image_main(argc, argv);

        /* Root's memory stays out of core dumps and away from ptrace by anyone but root. */
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        /* Everything we create starts private; final modes are set explicitly. */
        umask(077);

        if (parse_options(argc, argv, &o) < 0 ||
            (o.shift_uids &&
             (!(im.shift_uid = parse_shift(o.shift_uids)) || !(im.shift_gid = parse_shift(o.shift_gids))))) {
                fprintf(stderr,
                        "usage: kiln-import --uid U --gid G [--groups G1,G2,...] --layers DIR "
                        "(--path ABSOLUTE-PATH | --fd N) [--shift-uids C:H:N,... --shift-gids C:H:N,...] "
                        "[--max-bytes N] [--parent-pid P]\n");
                g_free(o.groups);
                g_free(im.shift_uid);
                g_free(im.shift_gid);
                return KILN_IMPORT_EXIT_USAGE;
        }
        if (o.shift_uids)
                im.shift_text = g_strconcat(o.shift_uids, "/", o.shift_gids, NULL);
        im.max_bytes = o.max_bytes;

        /* Killed with the service that started us: an import nobody waits for must not go on writing
         * (and later publish) while a new kilnd cleans up. Checked after setting it, since kilnd may have
         * died before: then we have been reparented and stop at once. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
                fprintf(stderr, "prctl PR_SET_PDEATHSIG: %s\n", g_strerror(errno));
                g_free(o.groups);
                return KILN_IMPORT_EXIT_FAILED;
        }
        if (getppid() != (o.parent_pid ? o.parent_pid : parent)) {
                fprintf(stderr, "the service that started kiln-import is gone\n");
                g_free(o.groups);
                return KILN_IMPORT_EXIT_FAILED;
        }

        /* Nothing inherited but stdio and the source descriptor; no working directory in anyone's tree. */
        keep[0] = o.fd;
        kiln_close_all_fds_except(keep, 1);
        if (chdir("/") < 0) {
                fprintf(stderr, "chdir '/': %s\n", g_strerror(errno));
                g_free(o.groups);
                return KILN_IMPORT_EXIT_FAILED;
        }

        /* SIGTERM asks for a clean stop (kilnd cancelling): the tmp tree is removed. No SA_RESTART, so a
         * blocked receive returns. */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);

        im.checksum = g_checksum_new(G_CHECKSUM_SHA256);
        im.stack = g_array_new(FALSE, TRUE, sizeof(Dir));
        im.links = g_hash_table_new_full(inode_hash, inode_equal, g_free, g_free);
        im.buffer = g_malloc(COPY_BUFFER_SIZE);

        /* STATE/layers is given by kilnd; it must be ours and writable by nobody else, since everything
         * below relies on no one else being able to change names in it. */
        im.layers_fd = open(o.layers, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (im.layers_fd < 0) {
                fail_errno(&im, errno, "open", o.layers);
                goto out;
        }
        if (fstat(im.layers_fd, &st) < 0) {
                fail_errno(&im, errno, "fstat", o.layers);
                goto out;
        }
        if (st.st_uid != geteuid() || (st.st_mode & 022)) {
                fail(&im, KILN_IMPORT_EXIT_FAILED, "'%s' must be owned by uid %u and not writable by others",
                     o.layers, (unsigned)geteuid());
                goto out;
        }

        im.fingerprint = g_checksum_new(G_CHECKSUM_SHA256);

        /* Pass 1: has this exact state of the source been imported? */
        im.fingerprint_only = true;
        if (start_reader(&im, &o, self) < 0 || run_import(&im) < 0)
                goto out;
        known = lookup_fingerprint(&im, g_checksum_get_string(im.fingerprint));
        if (known) {
                record_size(&im, known, im.bytes); /* a layer from before sizes were recorded */
        } else if (im.bytes > im.max_bytes) {
                /* Refused before anything is written or any content read. */
                fail(&im, KILN_IMPORT_EXIT_LIMIT,
                     "the tree holds %" PRIu64 " bytes of file content, more than %" PRIu64, im.bytes,
                     im.max_bytes);
                goto out;
        } else {
                /* Pass 2: the import, which records the fingerprint of what it read. */
                importer_reset(&im);
                if (make_tmp_dir(&im) < 0 || start_reader(&im, &o, self) < 0)
                        goto out;
                kiln_layer_hash_begin(im.checksum);
                if (run_import(&im) < 0)
                        goto out;
                kiln_layer_hash_end(im.checksum, im.n_records);
                known = g_strdup(g_checksum_get_string(im.checksum));
                if (verify_tree(&im, o.layers) < 0 || publish(&im, known) < 0)
                        goto out;
                record_size(&im, known, im.bytes);
                record_fingerprint(&im, g_checksum_get_string(im.fingerprint), known);
        }
        if (printf("%s\n", known) < 0 || fflush(stdout) != 0) {
                fail_errno(&im, errno, "write", "stdout");
                goto out;
        }

out:
        if (im.error) {
                fprintf(stderr, "%s\n", im.error);
                exit_code = im.exit_code ? im.exit_code : KILN_IMPORT_EXIT_FAILED;
        }
        importer_cleanup(&im);
        /* The caller's descriptor was the readers' alone; root never resolved anything through it. */
        if (o.fd >= 0)
                close(o.fd);
        g_free(o.groups);
        return exit_code;
}

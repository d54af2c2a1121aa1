/* SPDX-License-Identifier: Apache-2.0 */
/* The layer unpacker (layer-tar.h). Two libarchive readers in a chain, so that the stream is
 * decompressed once: the outer one ("raw" format, gzip and zstd filters) turns the bytes read through
 * the caller's function into the uncompressed tar stream; the inner one (tar formats only, no filter)
 * reads that stream, through a callback that hashes it on the way (the diff_id), as the outer read
 * callback hashes the bytes it reads (the blob digest).
 *
 * Safety of the writes. The root directory is empty when we start and nobody but us writes in it (the
 * caller's promise: it is a fresh directory under kilnd's state), so everything below it is an entry
 * of this layer or a directory we created for one. Each entry's parent is opened with openat2
 * (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV): a name that would leave
 * the root or pass through any symlink fails in the kernel, whatever the archive put there before. The entry
 * itself is created in that parent by name with calls that never follow a final symlink (O_EXCL |
 * O_NOFOLLOW, mkdirat, symlinkat, mknodat, linkat without AT_SYMLINK_FOLLOW), and its metadata is set
 * on the opened file or with AT_SYMLINK_NOFOLLOW, so no write lands anywhere but in the new entry. */
#include "layer-tar.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <gio/gio.h>
#include <nettle/sha2.h>

#include "base/fs-util.h"

/* RESOLVE_NO_XDEV too: nothing is mounted in a layer being written, and should anything be, no entry
 * goes into it. */
#define RESOLVE_FLAGS (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)
#define WHITEOUT_PREFIX ".wh."
#define WHITEOUT_META_PREFIX ".wh..wh."
#define WHITEOUT_OPAQUE ".wh..wh..opq"
#define XATTR_VALUE_MAX 65536

typedef struct DirTimes {
        dev_t dev;
        ino_t ino;
        struct timespec ts[2];
} DirTimes;

typedef struct Unpacker {
        KilnLayerReadFunc read;
        void *data;
        int root_fd;
        uint64_t max_bytes, max_entries; /* UINT64_MAX: no bound */
        /* nettle's SHA-256 (libarchive's own dependency) uses the CPU's SHA instructions: 0.3 s for a
         * 384 MB stream where GChecksum takes 2 s, half of an unpack's CPU time. */
        struct sha256_ctx blob, diff;
        struct archive *outer, *inner;
        int read_errno;      /* the caller's read function failed with this */
        char *outer_error;   /* the decompression failed with this message */
        uint64_t headers;    /* tar headers read (entries, counted against max_entries with ours) */
        uint64_t entries;    /* inodes created (entries and the parents created for them) */
        uint64_t content;    /* content bytes of every entry, written or skipped */
        uint64_t bytes;      /* content bytes written */
        char *cached_parent; /* the last parent opened, and its O_PATH descriptor */
        int cached_fd;
        GHashTable *dir_times; /* path → DirTimes, set when everything is written */
} Unpacker;

static int openat2_beneath(int dirfd, const char *path, int flags)
{
        int fd = kiln_openat2(dirfd, path, flags, 0, RESOLVE_FLAGS);

        if (fd < 0) {
                errno = -fd;
                return -1;
        }
        return fd;
}

static gboolean fail_entry(GError **error, int code, const char *name, const char *fmt, ...)
        G_GNUC_PRINTF(4, 5);

/* "entry 'NAME': REASON" with the archive's bytes escaped. */
static gboolean fail_entry(GError **error, int code, const char *name, const char *fmt, ...)
{
        g_autofree char *escaped = kiln_escape_for_message(name, strlen(name));
        g_autofree char *reason = NULL;
        va_list ap;

        va_start(ap, fmt);
        reason = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error(error, G_IO_ERROR, code, "layer entry '%s': %s", escaped, reason);
        return FALSE;
}

static gboolean fail_errno(GError **error, const char *name, const char *call, int err)
{
        return fail_entry(error, G_IO_ERROR_FAILED, name, "%s: %s", call, g_strerror(err));
}

/* A lookup below the root failed: the archive's fault (INVALID_ARGUMENT) when it is the shape of the
 * tree, ours otherwise. */
static gboolean fail_lookup_of(GError **error, const char *name, const char *what, int err)
{
        switch (err) {
        case ELOOP:
                return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, name, "%sgoes through a symbolic link",
                                  what);
        case ENOTDIR:
                return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, name, "%sa parent is not a directory",
                                  what);
        case EXDEV:
                return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, name, "%sleaves the layer", what);
        case ENAMETOOLONG:
                return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, name, "%sname too long", what);
        default:
                return fail_entry(error, G_IO_ERROR_FAILED, name, "%sopenat2: %s", what, g_strerror(err));
        }
}

static gboolean fail_lookup(GError **error, const char *name, int err)
{
        return fail_lookup_of(error, name, "", err);
}

/* Client callbacks */

static la_ssize_t outer_read(struct archive *a, void *user, const void **buf)
{
        Unpacker *u = user;
        ssize_t n = u->read(u->data, buf);

        if (n < 0) {
                u->read_errno = errno ? errno : EIO;
                archive_set_error(a, u->read_errno, "reading the layer failed");
                return -1;
        }
        if (n > 0)
                sha256_update(&u->blob, (size_t)n, *buf);
        return n;
}

/* The next uncompressed bytes, from the outer reader. Returns 0 at its end, -1 (with u->outer_error
 * set) if it failed. */
static la_ssize_t pull_outer(Unpacker *u, const void **buf)
{
        for (;;) {
                size_t size = 0;
                la_int64_t offset;
                int r = archive_read_data_block(u->outer, buf, &size, &offset);

                if (r == ARCHIVE_EOF)
                        return 0;
                if (r < ARCHIVE_WARN) {
                        if (!u->outer_error)
                                u->outer_error =
                                        g_strdup(archive_error_string(u->outer) ?: "decompression failed");
                        return -1;
                }
                if (size == 0)
                        continue; /* 0 would mean the end to the inner reader */
                sha256_update(&u->diff, size, *buf);
                return (la_ssize_t)size;
        }
}

static la_ssize_t inner_read(struct archive *a, void *user, const void **buf)
{
        Unpacker *u = user;
        la_ssize_t n = pull_outer(u, buf);

        if (n < 0)
                archive_set_error(a, EIO, "%s", u->outer_error);
        return n;
}

/* Error of a failed libarchive call on the inner reader: the caller's read, the decompression or the
 * tar stream itself. */
static gboolean fail_archive(Unpacker *u, GError **error, const char *what)
{
        if (u->read_errno)
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "reading the layer: %s",
                            g_strerror(u->read_errno));
        else if (u->outer_error)
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "layer stream cannot be decompressed: %s", u->outer_error);
        else
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "layer %s: %s", what,
                            archive_error_string(u->inner) ?: "not a tar stream");
        return FALSE;
}

/* Names */

/* The archive's name made relative to the root: leading '/' and "." and empty components dropped,
 * ".." refused, bounded in length and depth. "" is the root itself. */
static gboolean normalize_path(const char *raw, const char *name, const char *what, char **out,
                               GError **error)
{
        g_autoptr(GString) path = g_string_new(NULL);
        unsigned depth = 0;
        const char *p = raw;

        if (strlen(raw) > KILN_LAYER_MAX_PATH)
                return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, name, "%s longer than %d bytes", what,
                                  KILN_LAYER_MAX_PATH);
        while (*p) {
                const char *end = strchrnul(p, '/');
                size_t len = (size_t)(end - p);

                if (len == 0 || (len == 1 && p[0] == '.')) {
                        /* nothing */
                } else if (len == 2 && p[0] == '.' && p[1] == '.') {
                        return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, name,
                                          "%s has a '..' component", what);
                } else if (len > NAME_MAX) {
                        return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, name,
                                          "%s has a component longer than %d bytes", what, NAME_MAX);
                } else {
                        if (++depth > KILN_LAYER_MAX_DEPTH)
                                return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, name,
                                                  "%s deeper than %d components", what,
                                                  KILN_LAYER_MAX_DEPTH);
                        if (path->len > 0)
                                g_string_append_c(path, '/');
                        g_string_append_len(path, p, (gssize)len);
                }
                p = *end ? end + 1 : end;
        }
        *out = g_string_free(g_steal_pointer(&path), FALSE);
        return TRUE;
}

/* "a/b/c" → "a/b" (a new string) and *leaf "c" (in @path); "c" → "" and "c". */
static char *split_leaf(const char *path, const char **leaf)
{
        const char *slash = strrchr(path, '/');

        *leaf = slash ? slash + 1 : path;
        return slash ? g_strndup(path, (gsize)(slash - path)) : g_strdup("");
}

/* Parents */

static void cache_clear(Unpacker *u)
{
        g_clear_pointer(&u->cached_parent, g_free);
        if (u->cached_fd >= 0)
                close(u->cached_fd);
        u->cached_fd = -1;
}

/* @path was removed: the cached parent, if at or below it, is gone too. */
static void cache_drop_beneath(Unpacker *u, const char *path)
{
        size_t len = strlen(path);

        if (u->cached_parent && strncmp(u->cached_parent, path, len) == 0 &&
            (u->cached_parent[len] == '\0' || u->cached_parent[len] == '/'))
                cache_clear(u);
}

static gboolean count_entry(Unpacker *u, const char *name, GError **error)
{
        if (u->entries + 1 > u->max_entries)
                return fail_entry(error, G_IO_ERROR_NO_SPACE, name,
                                  "the layer holds more than %" PRIu64 " entries", u->max_entries);
        u->entries++;
        return TRUE;
}

/* Creates the missing directories of @parent one by one (tar creates the parents an archive leaves
 * out), each 0755 and owned by root as image tools make them. */
static int walk_create(Unpacker *u, const char *parent, const char *name, GError **error)
{
        g_autofree char *copy = g_strdup(parent);
        char *save = NULL;
        int fd = -1;

        for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
                int from = fd >= 0 ? fd : u->root_fd;
                int next = openat2_beneath(from, c, O_PATH | O_DIRECTORY);

                if (next < 0 && errno == ENOENT) {
                        if (!count_entry(u, name, error))
                                goto fail;
                        if (mkdirat(from, c, 0700) < 0 && errno != EEXIST) {
                                fail_errno(error, name, "mkdirat", errno);
                                goto fail;
                        }
                        /* Before the mode: chown clears setuid/setgid, and this mode has none. */
                        if (fchownat(from, c, 0, 0, AT_SYMLINK_NOFOLLOW) < 0 ||
                            fchmodat(from, c, 0755, AT_SYMLINK_NOFOLLOW) < 0) {
                                fail_errno(error, name, "chown/chmod", errno);
                                goto fail;
                        }
                        next = openat2_beneath(from, c, O_PATH | O_DIRECTORY);
                }
                if (next < 0) {
                        fail_lookup(error, name, errno);
                        goto fail;
                }
                if (fd >= 0)
                        close(fd);
                fd = next;
        }
        return fd;
fail:
        if (fd >= 0)
                close(fd);
        return -1;
}

/* An O_PATH descriptor of the directory @parent ("" the root), created if missing; borrowed (the
 * root's or the cache's), not to be closed. */
static int open_parent(Unpacker *u, const char *parent, const char *name, GError **error)
{
        int fd;

        if (parent[0] == '\0')
                return u->root_fd;
        if (u->cached_parent && strcmp(u->cached_parent, parent) == 0)
                return u->cached_fd;
        fd = openat2_beneath(u->root_fd, parent, O_PATH | O_DIRECTORY);
        if (fd < 0 && errno == ENOENT)
                fd = walk_create(u, parent, name, error);
        else if (fd < 0)
                fail_lookup(error, name, errno);
        if (fd < 0)
                return -1;
        cache_clear(u);
        u->cached_parent = g_strdup(parent);
        u->cached_fd = fd;
        return fd;
}

/* Makes room for a new @leaf in @pfd: whatever is there goes (the last entry of a name wins), except a
 * directory that a directory replaces, which stays with its contents (*keep_dir). */
static gboolean clear_leaf(Unpacker *u, int pfd, const char *path, const char *leaf, gboolean new_is_dir,
                           gboolean *keep_dir, GError **error)
{
        g_autofree char *failed = NULL;
        struct stat st;
        int r;

        *keep_dir = FALSE;
        if (fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT)
                        return TRUE;
                return fail_errno(error, path, "fstatat", errno);
        }
        if (new_is_dir && S_ISDIR(st.st_mode)) {
                *keep_dir = TRUE;
                return TRUE;
        }
        /* kiln_rm_rf_at never follows a symlink and needs no recursion, whatever the depth. */
        r = kiln_rm_rf_at(pfd, leaf, &failed);
        if (r < 0)
                return fail_errno(error, path, "remove", -r);
        cache_drop_beneath(u, path);
        return TRUE;
}

/* Metadata */

/* @name as the archive has it; @shown escaped, for the message. */
static gboolean check_xattr_name(const char *path, const char *name, const char *shown, GError **error)
{
        static const char *const allowed[] = {"user.", "trusted.", "security."};

        /* overlayfs reads trusted.overlay.* (user.overlay.* when mounted with userxattr) as its own:
         * opaque directories, redirects, metacopy. A layer saying so itself could make overlayfs look
         * up other paths than the tree holds; only whiteout entries become overlay metadata. */
        if (g_str_has_prefix(name, "trusted.overlay.") || g_str_has_prefix(name, "user.overlay."))
                return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, path,
                                  "xattr '%s' is overlayfs metadata", shown);
        if (strcmp(name, "system.posix_acl_access") == 0 || strcmp(name, "system.posix_acl_default") == 0)
                return TRUE;
        for (size_t i = 0; i < G_N_ELEMENTS(allowed); i++)
                if (g_str_has_prefix(name, allowed[i]) && name[strlen(allowed[i])] != '\0')
                        return TRUE;
        return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, path, "xattr name '%s' is not allowed", shown);
}

/* Sets the entry's xattrs on @fd, or (@fd < 0) on @leaf in @pfd without following it. */
static gboolean apply_xattrs(struct archive_entry *e, int fd, int pfd, const char *leaf, const char *path,
                             GError **error)
{
        const char *name;
        const void *value;
        size_t size;

        if (archive_entry_xattr_reset(e) == 0)
                return TRUE;
        while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
                g_autofree char *escaped = NULL;
                int r;

                if (!name || strlen(name) > XATTR_NAME_MAX || size > XATTR_VALUE_MAX)
                        return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, path,
                                          "xattr name or value too long");
                escaped = kiln_escape_for_message(name, strlen(name));
                if (!check_xattr_name(path, name, escaped, error))
                        return FALSE;
                if (fd >= 0) {
                        r = fsetxattr(fd, name, value, size, 0);
                } else {
                        /* No fsetxattr on an O_PATH descriptor: through our own parent's descriptor,
                         * the final name not followed (lsetxattr). */
                        char proc[64 + NAME_MAX];
                        g_snprintf(proc, sizeof(proc), "/proc/self/fd/%d/%s", pfd, leaf);
                        r = lsetxattr(proc, name, value, size, 0);
                }
                if (r < 0)
                        return fail_entry(error, G_IO_ERROR_FAILED, path, "xattr '%s': %s", escaped,
                                          g_strerror(errno));
        }
        return TRUE;
}

static gboolean entry_ids(struct archive_entry *e, const char *path, uid_t *uid, gid_t *gid, GError **error)
{
        la_int64_t u = archive_entry_uid(e), g = archive_entry_gid(e);

        /* (uid_t)-1 means "leave unchanged" to chown. */
        if (u < 0 || u >= UINT32_MAX || g < 0 || g >= UINT32_MAX)
                return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, path,
                                  "owner %" PRId64 ":%" PRId64 " out of range", (int64_t)u, (int64_t)g);
        *uid = (uid_t)u;
        *gid = (gid_t)g;
        return TRUE;
}

/* atime is set equal to mtime, as in kiln's other layers: the archive's atime is noise. */
static void entry_times(struct archive_entry *e, struct timespec ts[2])
{
        ts[1].tv_sec = archive_entry_mtime_is_set(e) ? archive_entry_mtime(e) : 0;
        ts[1].tv_nsec = archive_entry_mtime_is_set(e) ? archive_entry_mtime_nsec(e) : 0;
        if (ts[1].tv_nsec < 0 || ts[1].tv_nsec >= 1000000000)
                ts[1].tv_nsec = 0;
        ts[0] = ts[1];
}

/* Owner, then mode (chown clears setuid/setgid, so the mode comes after), then xattrs (chown also
 * clears security.capability), on an open regular file or directory. */
static gboolean apply_meta_fd(struct archive_entry *e, int fd, const char *path, GError **error)
{
        uid_t uid;
        gid_t gid;

        if (!entry_ids(e, path, &uid, &gid, error))
                return FALSE;
        if (fchown(fd, uid, gid) < 0)
                return fail_errno(error, path, "fchown", errno);
        if (fchmod(fd, archive_entry_perm(e) & 07777) < 0)
                return fail_errno(error, path, "fchmod", errno);
        return apply_xattrs(e, fd, -1, NULL, path, error);
}

/* The same for a symlink, device or fifo, by name, never following it (and never opening a device). */
static gboolean apply_meta_at(struct archive_entry *e, int pfd, const char *leaf, const char *path,
                              gboolean is_symlink, GError **error)
{
        struct timespec ts[2];
        uid_t uid;
        gid_t gid;

        if (!entry_ids(e, path, &uid, &gid, error))
                return FALSE;
        if (fchownat(pfd, leaf, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
                return fail_errno(error, path, "fchownat", errno);
        /* glibc does AT_SYMLINK_NOFOLLOW through an O_PATH descriptor; symlinks have no mode. */
        if (!is_symlink && fchmodat(pfd, leaf, archive_entry_perm(e) & 07777, AT_SYMLINK_NOFOLLOW) < 0)
                return fail_errno(error, path, "fchmodat", errno);
        if (!apply_xattrs(e, -1, pfd, leaf, path, error))
                return FALSE;
        entry_times(e, ts);
        if (utimensat(pfd, leaf, ts, AT_SYMLINK_NOFOLLOW) < 0)
                return fail_errno(error, path, "utimensat", errno);
        return TRUE;
}

/* Entries */

static gboolean count_content(Unpacker *u, const char *path, la_int64_t size, GError **error)
{
        if (size < 0)
                return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, path, "negative size");
        if ((uint64_t)size > u->max_bytes - u->content)
                return fail_entry(error, G_IO_ERROR_NO_SPACE, path,
                                  "the layer holds more than %" PRIu64 " bytes of file content",
                                  u->max_bytes);
        u->content += (uint64_t)size;
        return TRUE;
}

static gboolean write_content(Unpacker *u, int fd, struct archive_entry *e, const char *path, GError **error)
{
        la_int64_t size = archive_entry_size(e);
        uint64_t end = 0;

        for (;;) {
                const void *buf;
                size_t len;
                la_int64_t offset;
                int r = archive_read_data_block(u->inner, &buf, &len, &offset);

                if (r == ARCHIVE_EOF)
                        break;
                if (r < ARCHIVE_WARN)
                        return fail_archive(u, error, "content");
                /* Sparse entries come as blocks at offsets; none may reach past the size counted. */
                if (offset < 0 || (uint64_t)offset > (uint64_t)size ||
                    len > (uint64_t)size - (uint64_t)offset)
                        return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, path, "content past its size");
                for (size_t done = 0; done < len;) {
                        ssize_t n = pwrite(fd, (const char *)buf + done, len - done, offset + (off_t)done);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0)
                                return fail_errno(error, path, "write", errno);
                        done += (size_t)n;
                }
                u->bytes += len;
                end = MAX(end, (uint64_t)offset + len);
        }
        /* A sparse file's trailing hole. */
        if (end < (uint64_t)size && ftruncate(fd, size) < 0)
                return fail_errno(error, path, "ftruncate", errno);
        return TRUE;
}

static gboolean make_file(Unpacker *u, struct archive_entry *e, int pfd, const char *leaf, const char *path,
                          GError **error)
{
        struct timespec ts[2];
        int fd;
        gboolean ok;

        fd = openat(pfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return fail_errno(error, path, "openat", errno);
        entry_times(e, ts);
        ok = write_content(u, fd, e, path, error) && apply_meta_fd(e, fd, path, error);
        if (ok && futimens(fd, ts) < 0)
                ok = fail_errno(error, path, "futimens", errno);
        close(fd);
        return ok;
}

/* Directories get their times at the end, once nothing is created in them any more. */
static gboolean make_dir(Unpacker *u, struct archive_entry *e, int pfd, const char *leaf, const char *key,
                         const char *path, gboolean exists, GError **error)
{
        DirTimes *t;
        struct stat st;
        int fd;
        gboolean ok;

        if (!exists && mkdirat(pfd, leaf, 0700) < 0)
                return fail_errno(error, path, "mkdirat", errno);
        fd = leaf[0] ? openat2_beneath(pfd, leaf, O_RDONLY | O_DIRECTORY)
                     : openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return fail_lookup(error, path, errno);
        ok = apply_meta_fd(e, fd, path, error);
        if (ok && fstat(fd, &st) < 0)
                ok = fail_errno(error, path, "fstat", errno);
        close(fd);
        if (!ok)
                return FALSE;
        t = g_new0(DirTimes, 1);
        t->dev = st.st_dev;
        t->ino = st.st_ino;
        entry_times(e, t->ts);
        g_hash_table_replace(u->dir_times, g_strdup(key), t);
        return TRUE;
}

/* A hard link: to an entry of this layer (everything below the root is), looked up as names are, not
 * a directory. It shares the earlier entry's inode, so its own header's metadata is not applied. */
static gboolean make_hardlink(Unpacker *u, const char *target_raw, int pfd, const char *leaf,
                              const char *path, GError **error)
{
        g_autofree char *target = NULL, *tparent = NULL;
        g_autofree char *shown = kiln_escape_for_message(target_raw, strlen(target_raw));
        g_autofree char *what = g_strdup_printf("hard link target '%s'", shown);
        struct stat st;
        const char *tleaf;
        int tfd, r;

        if (!normalize_path(target_raw, path, what, &target, error))
                return FALSE;
        if (target[0] == '\0')
                return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, path, "hard link to the layer root");
        tparent = split_leaf(target, &tleaf);
        if (tparent[0] == '\0') {
                tfd = dup(u->root_fd);
        } else {
                tfd = openat2_beneath(u->root_fd, tparent, O_PATH | O_DIRECTORY);
                if (tfd < 0) {
                        if (errno == ENOENT)
                                return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, path,
                                                  "%s is not in the layer", what);
                        g_autofree char *prefix = g_strconcat(what, " ", NULL);
                        return fail_lookup_of(error, path, prefix, errno);
                }
        }
        if (tfd < 0)
                return fail_errno(error, path, "dup", errno);
        if (fstatat(tfd, tleaf, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                close(tfd);
                return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, path, "%s is not in the layer", what);
        }
        if (S_ISDIR(st.st_mode)) {
                close(tfd);
                return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, path, "%s is a directory", what);
        }
        /* Flags 0: a symlink target is linked itself, never followed. */
        r = linkat(tfd, tleaf, pfd, leaf, 0);
        close(tfd);
        if (r < 0 && errno == ENOENT) /* it was this very name, removed to make room */
                return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, path, "%s is not in the layer", what);
        if (r < 0)
                return fail_errno(error, path, "linkat", errno);
        return TRUE;
}

/* ".wh.NAME" in @pfd: overlayfs's whiteout, a 0/0 character device NAME. */
static gboolean make_whiteout(Unpacker *u, struct archive_entry *e, int pfd, const char *dir,
                              const char *name, const char *path, GError **error)
{
        g_autofree char *target = dir[0] ? g_strconcat(dir, "/", name, NULL) : g_strdup(name);
        struct timespec ts[2];
        gboolean keep;

        if (!kiln_name_is_valid(name, strlen(name)) || g_str_has_prefix(name, WHITEOUT_PREFIX))
                return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, path,
                                  "not a whiteout of a valid name");
        if (!clear_leaf(u, pfd, target, name, FALSE, &keep, error))
                return FALSE;
        if (mknodat(pfd, name, S_IFCHR | 0, makedev(0, 0)) < 0)
                return fail_errno(error, path, "mknodat", errno);
        if (fchownat(pfd, name, 0, 0, AT_SYMLINK_NOFOLLOW) < 0)
                return fail_errno(error, path, "fchownat", errno);
        entry_times(e, ts);
        if (utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
                return fail_errno(error, path, "utimensat", errno);
        return TRUE;
}

/* ".wh..wh..opq" in @pfd: its directory hides what lower layers hold in it. */
static gboolean make_opaque(int pfd, const char *path, GError **error)
{
        int fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int r;

        if (fd < 0)
                return fail_errno(error, path, "open", errno);
        r = fsetxattr(fd, "trusted.overlay.opaque", "y", 1, 0);
        close(fd);
        if (r < 0)
                return fail_errno(error, path, "fsetxattr trusted.overlay.opaque", errno);
        return TRUE;
}

static gboolean unpack_entry(Unpacker *u, struct archive_entry *e, GError **error)
{
        const char *raw = archive_entry_pathname(e);
        g_autofree char *path = NULL, *parent = NULL;
        const char *leaf, *hardlink;
        mode_t type = archive_entry_filetype(e);
        gboolean keep = FALSE;
        int pfd;

        if (!raw)
                return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, "", "no name");
        if (!count_content(u, raw, archive_entry_size(e), error) ||
            !normalize_path(raw, raw, "name", &path, error))
                return FALSE;
        hardlink = archive_entry_hardlink(e);

        if (path[0] == '\0') {
                /* "./" or "/": the root's own metadata. */
                if (type != AE_IFDIR || hardlink)
                        return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, raw,
                                          "replaces the layer root");
                return make_dir(u, e, u->root_fd, "", "", raw, TRUE, error);
        }

        parent = split_leaf(path, &leaf);
        /* aufs's own metadata (".wh..wh.plnk", ".wh..wh.aufs", ...) means nothing to overlayfs. */
        if (g_str_has_prefix(leaf, WHITEOUT_META_PREFIX) && strcmp(leaf, WHITEOUT_OPAQUE) != 0)
                return TRUE;
        for (const char *c = parent; *c; c = strchrnul(c, '/'), c += (*c == '/')) {
                if (g_str_has_prefix(c, WHITEOUT_META_PREFIX))
                        return TRUE;
                if (g_str_has_prefix(c, WHITEOUT_PREFIX))
                        return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, raw,
                                          "goes through a whiteout");
        }
        if (type == AE_IFSOCK && !hardlink)
                return TRUE; /* a socket is nothing without its listener */

        pfd = open_parent(u, parent, raw, error);
        if (pfd < 0)
                return FALSE;
        if (strcmp(leaf, WHITEOUT_OPAQUE) == 0)
                return make_opaque(pfd, raw, error);
        if (!count_entry(u, raw, error))
                return FALSE;
        if (g_str_has_prefix(leaf, WHITEOUT_PREFIX))
                return make_whiteout(u, e, pfd, parent, leaf + strlen(WHITEOUT_PREFIX), raw, error);

        if (!clear_leaf(u, pfd, path, leaf, type == AE_IFDIR && !hardlink, &keep, error))
                return FALSE;
        if (hardlink)
                return make_hardlink(u, hardlink, pfd, leaf, raw, error);

        switch (type) {
        case AE_IFREG:
                return make_file(u, e, pfd, leaf, raw, error);
        case AE_IFDIR:
                return make_dir(u, e, pfd, leaf, path, raw, keep, error);
        case AE_IFLNK: {
                const char *target = archive_entry_symlink(e);
                if (!target || !target[0] || strlen(target) >= PATH_MAX)
                        return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, raw,
                                          "symbolic link target empty or too long");
                /* The target is only text here: nothing below resolves through it. */
                if (symlinkat(target, pfd, leaf) < 0)
                        return fail_errno(error, raw, "symlinkat", errno);
                return apply_meta_at(e, pfd, leaf, raw, TRUE, error);
        }
        case AE_IFCHR:
        case AE_IFBLK:
        case AE_IFIFO: {
                dev_t rdev = type == AE_IFIFO
                                     ? 0
                                     : makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e));
                if (mknodat(pfd, leaf, type | 0600, rdev) < 0)
                        return fail_errno(error, raw, "mknodat", errno);
                return apply_meta_at(e, pfd, leaf, raw, FALSE, error);
        }
        default:
                return fail_entry(error, G_IO_ERROR_INVALID_ARGUMENT, raw, "unknown file type 0%o",
                                  (unsigned)type);
        }
}

/* The directories' times, now that nothing more is created in them; a directory that was replaced
 * since (another inode at that name, or none) is left alone. */
static gboolean set_dir_times(Unpacker *u, GError **error)
{
        GHashTableIter iter;
        gpointer key, value;

        g_hash_table_iter_init(&iter, u->dir_times);
        while (g_hash_table_iter_next(&iter, &key, &value)) {
                const char *path = key;
                DirTimes *t = value;
                struct stat st;
                int fd = path[0] ? openat2_beneath(u->root_fd, path, O_RDONLY | O_DIRECTORY)
                                 : openat(u->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                if (fstat(fd, &st) == 0 && st.st_dev == t->dev && st.st_ino == t->ino &&
                    futimens(fd, t->ts) < 0) {
                        close(fd);
                        return fail_errno(error, path[0] ? path : ".", "futimens", errno);
                }
                close(fd);
        }
        return TRUE;
}

static gboolean check_empty_root(int root_fd, GError **error)
{
        int fd = openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d;
        struct dirent *de;
        gboolean empty = TRUE;

        if (fd < 0 || !(d = fdopendir(fd))) {
                int err = errno;
                if (fd >= 0)
                        close(fd);
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "opening the layer directory: %s",
                            g_strerror(err));
                return FALSE;
        }
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                        empty = FALSE;
        closedir(d);
        if (!empty)
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "the layer directory is not empty");
        return empty;
}

static void copy_digest(char out[65], struct sha256_ctx *c)
{
        static const char hex[] = "0123456789abcdef";
        uint8_t d[SHA256_DIGEST_SIZE];

        sha256_digest(c, sizeof(d), d);
        for (size_t i = 0; i < sizeof(d); i++) {
                out[2 * i] = hex[d[i] >> 4];
                out[2 * i + 1] = hex[d[i] & 15];
        }
        out[64] = '\0';
}

gboolean kiln_layer_unpack(KilnLayerReadFunc read, void *data, int root_fd, const KilnLayerLimits *limits,
                           KilnLayerResult *result, GError **error)
{
        Unpacker u = {
                .read = read,
                .data = data,
                .root_fd = root_fd,
                .max_bytes = limits && limits->max_bytes ? limits->max_bytes : UINT64_MAX,
                .max_entries = limits && limits->max_entries ? limits->max_entries : UINT64_MAX,
                .cached_fd = -1,
        };
        struct archive_entry *e;
        gboolean ok = FALSE;
        uint64_t trailing = 0;
        const void *buf;
        int r;

        memset(result, 0, sizeof(*result));
        if (!check_empty_root(root_fd, error))
                return FALSE;
        sha256_init(&u.blob);
        sha256_init(&u.diff);
        u.dir_times = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);

        /* Outer: compressed (or not) bytes → the tar stream. Only the compressions OCI and Docker
         * layers use; anything else reaches the tar reader as it is and fails there. */
        u.outer = archive_read_new();
        u.inner = archive_read_new();
        if (!u.outer || !u.inner) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "libarchive: out of memory");
                goto out;
        }
        archive_read_support_filter_gzip(u.outer);
        archive_read_support_filter_zstd(u.outer);
        archive_read_support_format_raw(u.outer);
        if (archive_read_open(u.outer, &u, NULL, outer_read, NULL) != ARCHIVE_OK ||
            archive_read_next_header(u.outer, &e) != ARCHIVE_OK) {
                if (u.read_errno)
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "reading the layer: %s",
                                    g_strerror(u.read_errno));
                else
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "layer stream: %s",
                                    archive_error_string(u.outer) ?: "empty");
                goto out;
        }

        /* Inner: the tar formats (ustar, pax, GNU), nothing else. */
        archive_read_support_format_tar(u.inner);
        if (archive_read_open(u.inner, &u, NULL, inner_read, NULL) != ARCHIVE_OK) {
                fail_archive(&u, error, "stream");
                goto out;
        }
        for (;;) {
                r = archive_read_next_header(u.inner, &e);
                if (r == ARCHIVE_EOF)
                        break;
                if (r < ARCHIVE_WARN) {
                        fail_archive(&u, error, "stream");
                        goto out;
                }
                if (++u.headers > u.max_entries) {
                        fail_entry(error, G_IO_ERROR_NO_SPACE, archive_entry_pathname(e) ?: "",
                                   "the layer holds more than %" PRIu64 " entries", u.max_entries);
                        goto out;
                }
                if (!unpack_entry(&u, e, error))
                        goto out;
        }

        /* The rest of the stream after the tar's end is part of the diff_id; tar writers pad to a
         * record (10 KiB by default), and a bound keeps a compressed run of zeros from costing hours. */
        while ((r = (int)pull_outer(&u, &buf)) > 0) {
                trailing += (uint64_t)r;
                if (trailing > KILN_LAYER_MAX_TRAILING) {
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                    "layer stream has more than %d bytes after the end of the tar archive",
                                    KILN_LAYER_MAX_TRAILING);
                        goto out;
                }
        }
        if (r < 0) {
                fail_archive(&u, error, "stream");
                goto out;
        }
        /* And the rest of the raw bytes (after a gzip or zstd end), for the blob digest. */
        for (;;) {
                ssize_t n = read(data, &buf);
                if (n == 0)
                        break;
                if (n < 0) {
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "reading the layer: %s",
                                    g_strerror(errno));
                        goto out;
                }
                sha256_update(&u.blob, (size_t)n, buf);
        }
        if (!set_dir_times(&u, error))
                goto out;

        copy_digest(result->blob_digest, &u.blob);
        copy_digest(result->diff_id, &u.diff);
        ok = TRUE;
out:
        result->bytes = u.bytes;
        result->entries = u.entries;
        cache_clear(&u);
        if (u.inner)
                archive_read_free(u.inner);
        if (u.outer)
                archive_read_free(u.outer);
        g_hash_table_unref(u.dir_times);
        g_free(u.outer_error);
        return ok;
}

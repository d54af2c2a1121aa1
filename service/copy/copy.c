/* SPDX-License-Identifier: Apache-2.0 */
/* Copy in and out: the work done on a copy's own thread (copy.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/archive-load.h"
#include "copy/copy.h"
#include "base/fs-util.h"
#include "base/kiln-common.h"
#include "base/passwd.h"
#include "base/rootfs.h"
#include "spec/spec.h"
#include "storage/userns.h"

#define ACCOUNT_FILE_MAX (4 * 1024 * 1024)
#define BUFFER_SIZE (64 * 1024)

static void free_archive(struct archive **a)
{
        if (*a)
                archive_read_free(*a);
}

static void free_write_archive(struct archive **a)
{
        if (*a)
                archive_write_free(*a);
}

static void free_entry(struct archive_entry **e)
{
        if (*e)
                archive_entry_free(*e);
}

static gboolean fail_errno(GError **error, int e, const char *what, const char *name)
{
        g_autofree char *shown = g_strescape(name, NULL);

        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "%s '%.256s': %s", what, shown,
                    g_strerror(e));
        return FALSE;
}

/* Waits until @fd is ready for @events or the copy is cancelled (the caller left the bus). */
static gboolean wait_ready(int fd, short events, GCancellable *cancellable, GError **error)
{
        GPollFD cancel = {.fd = -1};
        gboolean have_cancel = cancellable && g_cancellable_make_pollfd(cancellable, &cancel);
        struct pollfd p[2] = {{.fd = fd, .events = events},
                              {.fd = have_cancel ? cancel.fd : -1, .events = POLLIN}};
        int r;

        do
                r = poll(p, 2, -1);
        while (r < 0 && errno == EINTR);
        if (have_cancel)
                g_cancellable_release_fd(cancellable);
        if (g_cancellable_set_error_if_cancelled(cancellable, error))
                return FALSE;
        if (r < 0)
                return fail_errno(error, errno, "Cannot wait for", "the caller's descriptor");
        return TRUE;
}

int kiln_copy_take_fd(const char *arg, int fd, gboolean writing, GError **error)
{
        char proc_path[64];
        struct stat st;
        int flags, accmode, r;

        if (fstat(fd, &st) < 0 || (flags = fcntl(fd, F_GETFL)) < 0) {
                kiln_invalid(error, arg, "cannot inspect the descriptor: %s", g_strerror(errno));
                return -1;
        }
        accmode = flags & O_ACCMODE;
        if (writing ? accmode == O_RDONLY : accmode == O_WRONLY) {
                kiln_invalid(error, arg, "the descriptor is not open for %s",
                             writing ? "writing" : "reading");
                return -1;
        }
        if (S_ISREG(st.st_mode)) {
                /* A file never blocks; O_APPEND or not is the caller's choice. */
                r = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        } else if (S_ISFIFO(st.st_mode)) {
                /* Our own open file description of the same pipe, non-blocking: the caller's stays as it
                 * is, and the copy's thread never sleeps in read() or write() where cancellation cannot
                 * reach it. kilnd opens its own descriptor here, nothing the caller named. */
                g_snprintf(proc_path, sizeof(proc_path), "/proc/self/fd/%d", fd);
                r = open(proc_path, (writing ? O_WRONLY : O_RDONLY) | O_NONBLOCK | O_CLOEXEC);
        } else {
                kiln_invalid(error, arg, "expected a pipe or a regular file");
                return -1;
        }
        if (r < 0)
                kiln_invalid(error, arg, "cannot use the descriptor: %s", g_strerror(errno));
        return r;
}

/* --- copy in ------------------------------------------------------------------------------------- */

typedef struct {
        KilnCopyIn *job;
        GCancellable *cancellable;
        GError *error; /* why the read callback failed */
        char buffer[BUFFER_SIZE];
} Reader;

static la_ssize_t read_stream(struct archive *a, void *data, const void **buf)
{
        Reader *r = data;

        for (;;) {
                ssize_t n = read(r->job->stream_fd, r->buffer, sizeof(r->buffer));

                if (n >= 0) {
                        *buf = r->buffer;
                        return n;
                }
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN) {
                        if (!r->error)
                                kiln_invalid(&r->error, "source", "cannot read it: %s", g_strerror(errno));
                        archive_set_error(a, EIO, "read failed");
                        return -1;
                }
                /* libarchive may call again after a failure: the first reason is kept. */
                if (!wait_ready(r->job->stream_fd, POLLIN, r->cancellable, r->error ? NULL : &r->error)) {
                        archive_set_error(a, ECANCELED, "cancelled");
                        return -1;
                }
        }
}

void kiln_copy_in_clear(KilnCopyIn *job)
{
        kiln_close_fdp(&job->stream_fd);
        kiln_close_fdp(&job->root_fd);
        g_clear_pointer(&job->dest, g_free);
        g_clear_pointer(&job->chown, g_free);
        g_clear_pointer(&job->uid_map, g_array_unref);
        g_clear_pointer(&job->gid_map, g_array_unref);
}

static gboolean read_account_file(int rootfd, const char *path, char **buf, gsize *len, GError **error)
{
        g_autoptr(GError) local = NULL;

        if (kiln_rootfs_read_file(rootfd, path, ACCOUNT_FILE_MAX, buf, len, &local))
                return TRUE;
        if (g_error_matches(local, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
                return TRUE; /* an image without accounts: names cannot be resolved, numbers can */
        g_propagate_prefixed_error(error, g_steal_pointer(&local), "Invalid chown: cannot read %s: ", path);
        return FALSE;
}

/* The host ids the copied files get: --chown (or root) in the container, through the builder's maps. */
static gboolean resolve_owner(KilnCopyIn *job, uid_t *uid, gid_t *gid, GError **error)
{
        g_autofree char *passwd = NULL, *group = NULL, *home = NULL;
        g_autoptr(GArray) gids = NULL;
        gsize passwd_len = 0, group_len = 0;
        guint32 cuid = 0, cgid = 0, huid, hgid;

        if (job->chown) {
                if (!read_account_file(job->root_fd, "/etc/passwd", &passwd, &passwd_len, error) ||
                    !read_account_file(job->root_fd, "/etc/group", &group, &group_len, error))
                        return FALSE;
                if (!kiln_resolve_user(job->chown, passwd, passwd_len, group, group_len, &cuid, &cgid, &gids,
                                       &home, error)) {
                        g_prefix_error(error, "chown: ");
                        return FALSE;
                }
        }
        huid = cuid;
        hgid = cgid;
        if (job->uid_map &&
            !kiln_idmap_to_host((const KilnIdMapping *)job->uid_map->data, job->uid_map->len, cuid, &huid))
                return kiln_invalid(error, "chown", "uid %u is not mapped in the builder's user namespace",
                                    (unsigned)cuid);
        if (job->gid_map &&
            !kiln_idmap_to_host((const KilnIdMapping *)job->gid_map->data, job->gid_map->len, cgid, &hgid))
                return kiln_invalid(error, "chown", "gid %u is not mapped in the builder's user namespace",
                                    (unsigned)cgid);
        *uid = huid;
        *gid = hgid;
        return TRUE;
}

typedef struct {
        KilnCopyIn *job;
        int dest_fd;           /* the destination directory (with a file name: its parent) */
        const char *file_name; /* as_file: the one regular file's name in dest_fd */
        uid_t uid;
        gid_t gid;
        char data[BUFFER_SIZE];
} Unpack;

static int open_beneath(int dirfd, const char *path, int flags)
{
        return kiln_openat2(dirfd, path, flags | O_NOFOLLOW, 0,
                            RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV);
}

/* A directory kiln makes: the copy's owner, then the mode (after fchown, which clears set-id bits). The
 * new entry is opened beneath its parent without following anything, so a swap between mkdirat and
 * here cannot redirect the chown. */
static int make_directory(Unpack *u, int parent, const char *name, mode_t mode)
{
        _cleanup_close_ int fd = -1;

        if (mkdirat(parent, name, 0700) < 0 && errno != EEXIST)
                return -errno;
        fd = open_beneath(parent, name, O_RDONLY | O_DIRECTORY);
        if (fd < 0)
                return fd;
        if (fchown(fd, u->uid, u->gid) < 0 || fchmod(fd, mode) < 0)
                return -errno;
        return kiln_steal_fd(&fd);
}

/* The directory that holds @rel, beneath the destination; missing directories on the way are made
 * (0755, the copy's owner). *@base points into @rel at the last component. A component that is not a
 * directory (a symlink included: nothing is followed) refuses the entry. */
static int open_parent(Unpack *u, const char *rel, const char **base, GError **error)
{
        g_auto(GStrv) parts = g_strsplit(rel, "/", -1);
        guint n = g_strv_length(parts);
        _cleanup_close_ int fd = fcntl(u->dest_fd, F_DUPFD_CLOEXEC, 3);
        const char *slash = strrchr(rel, '/');

        if (fd < 0) {
                fail_errno(error, errno, "Cannot open", "the destination");
                return -1;
        }
        for (guint i = 0; i + 1 < n; i++) {
                int next = open_beneath(fd, parts[i], O_RDONLY | O_DIRECTORY);

                if (next == -ENOENT)
                        next = make_directory(u, fd, parts[i], 0755);
                if (next < 0) {
                        g_autofree char *shown = g_strescape(rel, NULL);
                        kiln_invalid(
                                error, "source",
                                "entry '%.256s' goes through '%.256s', which is not a directory here (%s)",
                                shown, parts[i], g_strerror(-next));
                        return -1;
                }
                close(fd);
                fd = next;
        }
        *base = slash ? slash + 1 : rel;
        return kiln_steal_fd(&fd);
}

/* Makes room for a new non-directory entry @name: an existing non-directory is replaced, a directory is
 * not. */
static gboolean clear_name(int parent, const char *name, const char *rel, GError **error)
{
        struct stat st;

        if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? TRUE : fail_errno(error, errno, "Cannot look at", rel);
        if (S_ISDIR(st.st_mode)) {
                g_autofree char *shown = g_strescape(rel, NULL);
                return kiln_invalid(error, "destination", "'%.256s' is a directory there", shown);
        }
        if (unlinkat(parent, name, 0) < 0)
                return fail_errno(error, errno, "Cannot replace", rel);
        return TRUE;
}

static mode_t entry_mode(Unpack *u, struct archive_entry *e)
{
        return u->job->has_mode ? (mode_t)u->job->mode : (archive_entry_perm(e) & 07777);
}

static gboolean charge_bytes(Unpack *u, guint64 n, GError **error)
{
        KilnCopyIn *job = u->job;

        if (n > job->limits.max_bytes - job->bytes)
                return kiln_fail(error, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                                 "The copy is larger than %" G_GUINT64_FORMAT " bytes ([Limits] CopyBytes)",
                                 job->limits.max_bytes);
        job->bytes += n;
        return TRUE;
}

static gboolean write_all(int fd, const char *buf, size_t len)
{
        while (len > 0) {
                ssize_t w = write(fd, buf, len);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return FALSE;
                buf += w;
                len -= (size_t)w;
        }
        return TRUE;
}

static gboolean unpack_file(Unpack *u, struct archive *a, struct archive_entry *e, int parent,
                            const char *name, const char *rel, GError **error)
{
        _cleanup_close_ int fd = -1;
        struct timespec times[2];

        if (archive_entry_size_is_set(e) && archive_entry_size(e) > 0 &&
            (guint64)archive_entry_size(e) > u->job->limits.max_bytes - u->job->bytes)
                return charge_bytes(u, (guint64)archive_entry_size(e), error);
        if (!clear_name(parent, name, rel, error))
                return FALSE;
        /* O_EXCL|O_NOFOLLOW: what clear_name removed cannot have come back as a symlink we write through. */
        fd = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return fail_errno(error, errno, "Cannot create", rel);
        if (fchown(fd, u->uid, u->gid) < 0)
                return fail_errno(error, errno, "Cannot change the owner of", rel);
        for (;;) {
                la_ssize_t n = archive_read_data(a, u->data, sizeof(u->data));

                if (n == 0)
                        break;
                if (n < 0)
                        return FALSE; /* the caller reports the archive's error */
                if (!charge_bytes(u, (guint64)n, error))
                        return FALSE;
                if (!write_all(fd, u->data, (size_t)n))
                        return fail_errno(error, errno, "Cannot write", rel);
        }
        /* After fchown (which clears set-id bits), exact whatever kilnd's umask is. */
        if (fchmod(fd, entry_mode(u, e)) < 0)
                return fail_errno(error, errno, "Cannot change the mode of", rel);
        times[0].tv_sec = times[1].tv_sec = archive_entry_mtime(e);
        times[0].tv_nsec = times[1].tv_nsec = archive_entry_mtime_nsec(e);
        (void)futimens(fd, times);
        return TRUE;
}

static gboolean unpack_directory(Unpack *u, struct archive_entry *e, int parent, const char *name,
                                 const char *rel, GError **error)
{
        _cleanup_close_ int fd = -1;
        struct stat st;

        /* An existing directory is kept as it is (its owner and mode are the image's). */
        if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                if (S_ISDIR(st.st_mode))
                        return TRUE;
                if (unlinkat(parent, name, 0) < 0)
                        return fail_errno(error, errno, "Cannot replace", rel);
        }
        fd = make_directory(u, parent, name, entry_mode(u, e));
        if (fd < 0)
                return fail_errno(error, -fd, "Cannot create directory", rel);
        return TRUE;
}

static gboolean unpack_symlink(Unpack *u, struct archive_entry *e, int parent, const char *name,
                               const char *rel, GError **error)
{
        const char *target = archive_entry_symlink(e);

        /* The target is only text: it is never resolved here, and inside the container it resolves
         * inside the container. */
        if (!target || !*target || strlen(target) >= PATH_MAX) {
                g_autofree char *shown = g_strescape(rel, NULL);
                return kiln_invalid(error, "source", "symlink '%.256s' has no usable target", shown);
        }
        if (!clear_name(parent, name, rel, error))
                return FALSE;
        if (symlinkat(target, parent, name) < 0)
                return fail_errno(error, errno, "Cannot create symlink", rel);
        if (fchownat(parent, name, u->uid, u->gid, AT_SYMLINK_NOFOLLOW) < 0)
                return fail_errno(error, errno, "Cannot change the owner of", rel);
        return TRUE;
}

static gboolean unpack_hardlink(Unpack *u, struct archive_entry *e, int parent, const char *name,
                                const char *rel, GError **error)
{
        g_autofree char *target = kiln_copy_entry_path(archive_entry_hardlink(e), error);
        _cleanup_close_ int fd = -1;
        struct stat st;

        if (!target)
                return FALSE;
        /* The target is looked up beneath the destination without following anything: a link never
         * reaches a file elsewhere in the root file system (or outside it). */
        fd = *target ? open_beneath(u->dest_fd, target, O_PATH) : -EISDIR;
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                g_autofree char *shown = g_strescape(rel, NULL);
                return kiln_invalid(
                        error, "source",
                        "hard link '%.256s' does not name a regular file beneath the destination", shown);
        }
        if (!clear_name(parent, name, rel, error))
                return FALSE;
        if (linkat(fd, "", parent, name, AT_EMPTY_PATH) < 0)
                return fail_errno(error, errno, "Cannot create hard link", rel);
        return TRUE;
}

static gboolean unpack_entry(Unpack *u, struct archive *a, struct archive_entry *e, GError **error)
{
        const char *raw = archive_entry_pathname(e);
        g_autofree char *rel = NULL;
        _cleanup_close_ int parent = -1;
        const char *name;
        mode_t type = archive_entry_filetype(e);
        gboolean hardlink = archive_entry_hardlink(e) != NULL;

        if (!raw)
                return kiln_invalid(error, "source", "an entry's name cannot be read");
        rel = kiln_copy_entry_path(raw, error);
        if (!rel)
                return FALSE;
        if (++u->job->entries > u->job->limits.max_entries)
                return kiln_fail(error, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                                 "The copy has more than %" G_GUINT64_FORMAT
                                 " entries ([Limits] CopyEntries)",
                                 u->job->limits.max_entries);
        if (u->file_name) {
                /* One regular file, written under the destination's own name. */
                if (u->job->entries > 1 || hardlink || type != AE_IFREG)
                        return kiln_invalid(error, "source",
                                            "with as-file the stream must hold one regular file only");
                return unpack_file(u, a, e, u->dest_fd, u->file_name, u->file_name, error);
        }
        if (!*rel) {
                if (type == AE_IFDIR && !hardlink)
                        return TRUE; /* the destination itself: it stays as it is */
                return kiln_invalid(error, "source",
                                    "an entry other than a directory names the destination");
        }
        parent = open_parent(u, rel, &name, error);
        if (parent < 0)
                return FALSE;
        if (hardlink)
                return unpack_hardlink(u, e, parent, name, rel, error);
        switch (type) {
        case AE_IFREG:
                return unpack_file(u, a, e, parent, name, rel, error);
        case AE_IFDIR:
                return unpack_directory(u, e, parent, name, rel, error);
        case AE_IFLNK:
                return unpack_symlink(u, e, parent, name, rel, error);
        default: {
                /* Devices, FIFOs and sockets: a copy brings files, not access to the host's devices. */
                g_autofree char *shown = g_strescape(rel, NULL);
                return kiln_invalid(error, "source",
                                    "entry '%.256s' is a device, FIFO or socket: only files, directories, "
                                    "symlinks and hard links are copied",
                                    shown);
        }
        }
}

/* Opens the destination: the directory @dest (made with its missing parents, owned by the copy's owner),
 * or with as_file, when @dest is not a directory, its parent and last component. */
static gboolean open_destination(KilnCopyIn *job, Unpack *u, char **file_name, GError **error)
{
        _cleanup_close_ int existing = kiln_rootfs_open(job->root_fd, job->dest, O_PATH, 0);
        g_autofree char *dir = NULL;
        struct stat st;
        int fd;

        if (job->as_file && !(existing >= 0 && fstat(existing, &st) == 0 && S_ISDIR(st.st_mode))) {
                g_autofree char *trimmed = g_strdup(job->dest);
                size_t n = strlen(trimmed);

                while (n > 1 && trimmed[n - 1] == '/')
                        trimmed[--n] = '\0';
                *file_name = g_path_get_basename(trimmed);
                dir = g_path_get_dirname(trimmed);
                if (!kiln_name_is_valid(*file_name, strlen(*file_name)))
                        return kiln_invalid(error, "destination", "'%.256s' names no file", job->dest);
        } else {
                dir = g_strdup(job->dest);
        }
        /* Resolved in the root: a symlink on the way (even one to "/etc" or "../../..") ends inside it. */
        if (!kiln_rootfs_mkdir_p(job->root_fd, dir, 0755, u->uid, u->gid, error)) {
                g_prefix_error(error, "Invalid destination: ");
                if ((*error)->domain == G_IO_ERROR && (*error)->code != G_IO_ERROR_NO_SPACE) {
                        (*error)->domain = KILN_ERROR;
                        (*error)->code = KILN_ERROR_CODE_INVALID_ARGUMENT;
                }
                return FALSE;
        }
        fd = kiln_rootfs_open(job->root_fd, dir, O_RDONLY | O_DIRECTORY, 0);
        if (fd < 0)
                return kiln_invalid(error, "destination", "cannot open %.256s: %s", dir, g_strerror(-fd));
        u->dest_fd = fd;
        return TRUE;
}

gboolean kiln_copy_in_run(KilnCopyIn *job, GCancellable *cancellable, GError **error)
{
        g_autofree Reader *reader = g_new0(Reader, 1);
        g_autofree Unpack *u = g_new0(Unpack, 1);
        g_autofree char *file_name = NULL;
        _cleanup_(free_archive) struct archive *a = NULL;
        g_autoptr(GError) local = NULL;
        gboolean ok = FALSE;

        u->job = job;
        u->dest_fd = -1;
        if (!resolve_owner(job, &u->uid, &u->gid, error) || !open_destination(job, u, &file_name, error))
                goto out;
        u->file_name = file_name;

        reader->job = job;
        reader->cancellable = cancellable;
        a = archive_read_new();
        /* tar only, uncompressed: the client decompresses as the caller, kilnd parses as little as it
         * can. */
        archive_read_support_format_tar(a);
        archive_read_support_format_gnutar(a);
        if (archive_read_open(a, reader, NULL, read_stream, NULL) != ARCHIVE_OK)
                goto archive_failed;
        for (;;) {
                struct archive_entry *e;
                int r = archive_read_next_header(a, &e);

                if (r == ARCHIVE_EOF)
                        break;
                if (r < ARCHIVE_WARN)
                        goto archive_failed;
                if (!unpack_entry(u, a, e, &local)) {
                        if (local)
                                g_propagate_error(error, g_steal_pointer(&local));
                        else
                                goto archive_failed;
                        goto out;
                }
        }
        ok = TRUE;
        goto out;

archive_failed:
        if (reader->error)
                g_propagate_error(error, g_steal_pointer(&reader->error));
        else
                kiln_invalid(error, "source", "not a tar stream, or a damaged one: %.256s",
                             archive_error_string(a) ? archive_error_string(a) : "unknown error");
out:
        g_clear_error(&reader->error);
        kiln_close_fdp(&u->dest_fd);
        return ok;
}

/* --- copy out ------------------------------------------------------------------------------------ */

typedef struct {
        KilnCopyOut *job;
        GCancellable *cancellable;
        struct archive *a;
        GError *error; /* why the write callback failed */
        char data[BUFFER_SIZE];
} Writer;

static la_ssize_t write_stream(struct archive *a, void *data, const void *buf, size_t len)
{
        Writer *w = data;

        for (;;) {
                ssize_t n = write(w->job->out_fd, buf, len);

                if (n >= 0)
                        return n;
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN) {
                        /* EPIPE: the reader went away before the end. The caller's doing, not kilnd's. */
                        if (!w->error)
                                kiln_invalid(&w->error, "fd", "cannot write to it: %s", g_strerror(errno));
                        archive_set_error(a, EIO, "write failed");
                        return -1;
                }
                if (!wait_ready(w->job->out_fd, POLLOUT, w->cancellable, w->error ? NULL : &w->error)) {
                        archive_set_error(a, ECANCELED, "cancelled");
                        return -1;
                }
        }
}

void kiln_copy_out_clear(KilnCopyOut *job)
{
        kiln_close_fdp(&job->root_fd);
        kiln_close_fdp(&job->out_fd);
        g_clear_pointer(&job->path, g_free);
}

static gboolean archive_failed(Writer *w, GError **error)
{
        if (w->error) {
                g_propagate_error(error, g_steal_pointer(&w->error));
                return FALSE;
        }
        return kiln_fail(error, KILN_ERROR_CODE_FAILED, "Cannot write the stream: %s",
                         archive_error_string(w->a) ? archive_error_string(w->a) : "unknown error");
}

static gboolean count_entry(KilnCopyOut *job, guint64 bytes, GError **error)
{
        if (++job->entries > job->limits.max_entries)
                return kiln_fail(error, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                                 "The copy has more than %" G_GUINT64_FORMAT
                                 " entries ([Limits] CopyEntries)",
                                 job->limits.max_entries);
        if (bytes > job->limits.max_bytes - job->bytes)
                return kiln_fail(error, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                                 "The copy is larger than %" G_GUINT64_FORMAT " bytes ([Limits] CopyBytes)",
                                 job->limits.max_bytes);
        job->bytes += bytes;
        return TRUE;
}

static gboolean write_header(Writer *w, const char *name, const struct stat *st, mode_t type, guint64 size,
                             const char *link, GError **error)
{
        _cleanup_(free_entry) struct archive_entry *e = archive_entry_new();

        archive_entry_copy_pathname(e, name);
        archive_entry_set_filetype(e, type);
        archive_entry_set_perm(e, st->st_mode & 07777);
        archive_entry_set_uid(e, 0);
        archive_entry_set_gid(e, 0);
        archive_entry_set_mtime(e, st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
        archive_entry_set_size(e, (la_int64_t)size);
        if (link)
                archive_entry_copy_symlink(e, link);
        if (archive_write_header(w->a, e) < ARCHIVE_WARN)
                return archive_failed(w, error);
        return TRUE;
}

/* The file content: exactly the size in the header (a file that shrank meanwhile is padded with zeros, one
 * that grew is cut), or the stream would be damaged. */
static gboolean write_content(Writer *w, int fd, guint64 size, const char *name, GError **error)
{
        guint64 done = 0;
        gboolean eof = FALSE;

        while (done < size) {
                size_t want = (size_t)MIN((guint64)sizeof(w->data), size - done);
                ssize_t n = 0;

                if (!eof) {
                        n = read(fd, w->data, want);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0)
                                return fail_errno(error, errno, "Cannot read", name);
                }
                if (n == 0) {
                        eof = TRUE;
                        memset(w->data, 0, want);
                        n = (ssize_t)want;
                }
                if (g_cancellable_set_error_if_cancelled(w->cancellable, error))
                        return FALSE;
                if (archive_write_data(w->a, w->data, (size_t)n) < 0)
                        return archive_failed(w, error);
                done += (guint64)n;
        }
        return TRUE;
}

static gboolean out_tree(Writer *w, int fd, const struct stat *st, const char *name, unsigned depth,
                         GError **error);

/* One entry of a directory: opened without following it, checked to be what fstatat saw. */
static gboolean out_child(Writer *w, int dirfd, const char *child, const char *name, unsigned depth,
                          GError **error)
{
        _cleanup_close_ int fd = -1;
        struct stat st, again;
        char target[PATH_MAX];
        ssize_t n;

        if (fstatat(dirfd, child, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? TRUE : fail_errno(error, errno, "Cannot look at", name);
        if (S_ISLNK(st.st_mode)) {
                n = readlinkat(dirfd, child, target, sizeof(target) - 1);
                if (n < 0)
                        return errno == ENOENT ? TRUE
                                               : fail_errno(error, errno, "Cannot read symlink", name);
                target[n] = '\0';
                return count_entry(w->job, 0, error) &&
                       write_header(w, name, &st, AE_IFLNK, 0, target, error);
        }
        if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
                return TRUE; /* devices, FIFOs, sockets: never opened, not copied */
        fd = openat(dirfd, child,
                    (S_ISDIR(st.st_mode) ? O_DIRECTORY : O_NOCTTY | O_NONBLOCK) | O_RDONLY | O_NOFOLLOW |
                            O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? TRUE : fail_errno(error, errno, "Cannot open", name);
        if (fstat(fd, &again) < 0 || (again.st_mode & S_IFMT) != (st.st_mode & S_IFMT))
                return TRUE; /* replaced meanwhile: skipped, as it was not there when looked at */
        return out_tree(w, fd, &again, name, depth, error);
}

static gboolean out_tree(Writer *w, int fd, const struct stat *st, const char *name, unsigned depth,
                         GError **error)
{
        DIR *d;
        struct dirent *de;
        gboolean ok = TRUE;
        int dup_fd;

        if (S_ISREG(st->st_mode))
                return count_entry(w->job, (guint64)st->st_size, error) &&
                       write_header(w, name, st, AE_IFREG, (guint64)st->st_size, NULL, error) &&
                       write_content(w, fd, (guint64)st->st_size, name, error);
        if (depth >= KILN_COPY_MAX_DEPTH)
                return kiln_fail(error, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                                 "Invalid path: directories deeper than %d levels are not copied",
                                 KILN_COPY_MAX_DEPTH);
        if (!count_entry(w->job, 0, error) || !write_header(w, name, st, AE_IFDIR, 0, NULL, error))
                return FALSE;
        dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (dup_fd < 0)
                return fail_errno(error, errno, "Cannot read directory", name);
        d = fdopendir(dup_fd);
        if (!d) {
                close(dup_fd);
                return fail_errno(error, errno, "Cannot read directory", name);
        }
        while (ok && (errno = 0, de = readdir(d))) {
                g_autofree char *child = NULL;

                if (g_str_equal(de->d_name, ".") || g_str_equal(de->d_name, ".."))
                        continue;
                if (g_cancellable_set_error_if_cancelled(w->cancellable, error)) {
                        ok = FALSE;
                        break;
                }
                child = g_strconcat(name, "/", de->d_name, NULL);
                ok = out_child(w, fd, de->d_name, child, depth + 1, error);
        }
        if (ok && errno != 0)
                ok = fail_errno(error, errno, "Cannot read directory", name);
        closedir(d);
        return ok;
}

gboolean kiln_copy_out_run(KilnCopyOut *job, GCancellable *cancellable, GError **error)
{
        g_autofree Writer *w = g_new0(Writer, 1);
        _cleanup_(free_write_archive) struct archive *a = NULL;
        _cleanup_close_ int pathfd = -1, fd = -1;
        g_autofree char *name = NULL;
        char proc_path[64];
        struct stat st;

        /* Symlinks on the way are followed inside the root, never out of it. */
        pathfd = kiln_rootfs_open(job->root_fd, job->path, O_PATH, 0);
        if (pathfd < 0)
                return pathfd == -ENOENT
                               ? kiln_fail(error, KILN_ERROR_CODE_NOT_FOUND,
                                           "Invalid path: %.256s does not exist in the builder", job->path)
                               : kiln_invalid(error, "path", "cannot open %.256s: %s", job->path,
                                              g_strerror(-pathfd));
        if (fstat(pathfd, &st) < 0)
                return fail_errno(error, errno, "Cannot look at", job->path);
        if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
                return kiln_invalid(error, "path", "%.256s is not a regular file or a directory", job->path);
        /* Reopened through its own descriptor (the same inode, no second lookup), only once it is known
         * to be a file or a directory: opening a device or FIFO has effects. */
        g_snprintf(proc_path, sizeof(proc_path), "/proc/self/fd/%d", pathfd);
        fd = open(proc_path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return fail_errno(error, errno, "Cannot open", job->path);
        {
                g_autofree char *trimmed = g_strdup(job->path);
                size_t n = strlen(trimmed);

                while (n > 1 && trimmed[n - 1] == '/')
                        trimmed[--n] = '\0';
                name = g_path_get_basename(trimmed);
                if (g_str_equal(name, "/") || g_str_equal(name, ".."))
                        g_free(g_steal_pointer(&name)), name = g_strdup(".");
        }

        w->job = job;
        w->cancellable = cancellable;
        a = archive_write_new();
        w->a = a;
        archive_write_set_format_pax_restricted(a);
        archive_write_set_bytes_in_last_block(a, 1);
        if (archive_write_open(a, w, NULL, write_stream, NULL) != ARCHIVE_OK)
                return archive_failed(w, error);
        if (!out_tree(w, fd, &st, name, 0, error)) {
                g_clear_error(&w->error);
                return FALSE;
        }
        if (archive_write_close(a) != ARCHIVE_OK)
                return archive_failed(w, error);
        return TRUE;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* The tar streams of kiln copy and kiln add (tar-module.h): libarchive, in kiln-cli-tar.so. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "base/kiln-common.h"
#include "tar-module.h"

#define BLOCK KILN_TAR_BLOCK

static void warn(KilnTarSender *s, const char *format, ...) G_GNUC_PRINTF(2, 3);

static void warn(KilnTarSender *s, const char *format, ...)
{
        g_autofree char *message = NULL;
        va_list ap;

        va_start(ap, format);
        message = g_strdup_vprintf(format, ap);
        va_end(ap);
        if (s->warn)
                s->warn(message);
}

static bool sender_fail(KilnTarSender *s, const char *path, int e)
{
        if (!s->error)
                s->error = g_strdup_printf("cannot read '%s': %s%s", path, g_strerror(e),
                                           s->out ? "" : " (nothing was copied)");
        return false;
}

static bool sender_archive_fail(KilnTarSender *s, struct archive *a, const char *what)
{
        if (!s->error)
                s->error = g_strdup_printf(
                        "%s: %s", what, archive_error_string(a) ? archive_error_string(a) : "unknown error");
        return false;
}

static void free_read(struct archive **a)
{
        if (*a)
                archive_read_free(*a);
}

static void free_entry(struct archive_entry **e)
{
        if (*e)
                archive_entry_free(*e);
}

/* A reader of @path as a tar archive (any compression libarchive knows), opened; NULL with *@err set (the
 * archive's errno, else @fallback) when it cannot be opened. */
static struct archive *tar_reader(const char *path, int *err, int fallback)
{
        struct archive *a = archive_read_new();

        archive_read_support_filter_all(a);
        archive_read_support_format_tar(a);
        archive_read_support_format_gnutar(a);
        if (archive_read_open_filename(a, path, BLOCK) != ARCHIVE_OK) {
                *err = archive_errno(a) > 0 ? archive_errno(a) : fallback;
                archive_read_free(a);
                return NULL;
        }
        return a;
}

/* Opens a tar archive for reading; NULL when @path is not one. */
static struct archive *open_tar_archive(const char *path, int *err)
{
        struct archive *a = tar_reader(path, err, 0);
        struct archive_entry *e;
        int r;

        if (!a)
                return NULL;
        r = archive_read_next_header(a, &e);
        archive_read_free(a);
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN && r != ARCHIVE_EOF) {
                *err = 0;
                return NULL;
        }
        /* Again from the start, for the caller to read through. */
        return tar_reader(path, err, EIO);
}

/* Writes one header (when @s->out) for @st under @name. */
static bool put_header(KilnTarSender *s, const char *name, const struct stat *st, const char *link)
{
        _cleanup_(free_entry) struct archive_entry *e = NULL;

        if (!s->out)
                return true;
        e = archive_entry_new();
        archive_entry_copy_pathname(e, name);
        archive_entry_set_filetype(e, st->st_mode & S_IFMT);
        archive_entry_set_perm(e, st->st_mode & 07777);
        archive_entry_set_mtime(e, st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
        archive_entry_set_size(e, S_ISREG(st->st_mode) ? st->st_size : 0);
        if (link)
                archive_entry_copy_symlink(e, link);
        if (archive_write_header(s->out, e) < ARCHIVE_WARN)
                return sender_archive_fail(s, s->out, "cannot send the stream");
        return true;
}

/* Exactly st_size bytes: a file that shrank meanwhile is padded, one that grew is cut. */
static bool put_content(KilnTarSender *s, int fd, off_t size, const char *path)
{
        off_t done = 0;
        bool eof = false;

        if (!s->out)
                return true;
        while (done < size) {
                size_t want = (size_t)MIN((off_t)sizeof(s->buf), size - done);
                ssize_t n = 0;

                if (!eof) {
                        n = read(fd, s->buf, want);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0)
                                return sender_fail(s, path, errno);
                }
                if (n == 0) {
                        eof = true;
                        memset(s->buf, 0, want);
                        n = (ssize_t)want;
                }
                if (archive_write_data(s->out, s->buf, (size_t)n) < 0)
                        return sender_archive_fail(s, s->out, "cannot send the stream");
                done += n;
        }
        return true;
}

/* @fd (open for reading, owned) is @path; its entries go under @name ("" for the top of a directory
 * source, whose contents are copied, as buildah copy does). Nothing below the top is followed. */
static bool put_tree(KilnTarSender *s, int fd, const struct stat *st, const char *path, const char *name)
{
        _cleanup_close_ int owned = fd;
        DIR *d;
        struct dirent *de;
        bool ok = true;

        if (S_ISREG(st->st_mode))
                return put_header(s, name, st, NULL) && put_content(s, fd, st->st_size, path);
        if (*name && !put_header(s, name, st, NULL))
                return false;
        d = fdopendir(kiln_steal_fd(&owned));
        if (!d)
                return sender_fail(s, path, errno);
        while (ok && (errno = 0, de = readdir(d))) {
                g_autofree char *child_path = NULL, *child_name = NULL;
                struct stat cst;
                int cfd;

                if (g_str_equal(de->d_name, ".") || g_str_equal(de->d_name, ".."))
                        continue;
                child_path = g_build_filename(path, de->d_name, NULL);
                child_name = *name ? g_strconcat(name, "/", de->d_name, NULL) : g_strdup(de->d_name);
                if (fstatat(dirfd(d), de->d_name, &cst, AT_SYMLINK_NOFOLLOW) < 0) {
                        ok = sender_fail(s, child_path, errno);
                        break;
                }
                if (S_ISLNK(cst.st_mode)) {
                        char target[PATH_MAX];
                        ssize_t n = readlinkat(dirfd(d), de->d_name, target, sizeof(target) - 1);

                        if (n < 0) {
                                ok = sender_fail(s, child_path, errno);
                                break;
                        }
                        target[n] = '\0';
                        ok = put_header(s, child_name, &cst, target);
                        continue;
                }
                if (!S_ISREG(cst.st_mode) && !S_ISDIR(cst.st_mode)) {
                        warn(s, "skipping '%s': not a regular file, directory or symlink", child_path);
                        continue;
                }
                /* Opened as the caller: a file he cannot read fails here, not in kilnd. */
                cfd = openat(dirfd(d), de->d_name,
                             O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
                                     (S_ISDIR(cst.st_mode) ? O_DIRECTORY : O_NONBLOCK));
                if (cfd < 0 || fstat(cfd, &cst) < 0) {
                        ok = sender_fail(s, child_path, errno);
                        if (cfd >= 0)
                                close(cfd);
                        break;
                }
                ok = put_tree(s, cfd, &cst, child_path, child_name);
        }
        if (ok && errno != 0)
                ok = sender_fail(s, path, errno);
        closedir(d);
        return ok;
}

/* Every entry of a local tar archive, as it is: kilnd checks each one. */
static bool put_archive(KilnTarSender *s, const char *path)
{
        _cleanup_(free_read) struct archive *in = NULL;
        struct archive_entry *e;
        int err = 0, r;

        in = open_tar_archive(path, &err);
        if (!in)
                return sender_fail(s, path, err ? err : EIO);
        while ((r = archive_read_next_header(in, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
                la_ssize_t n;

                if (!s->out)
                        continue;
                archive_entry_sparse_clear(e);
                if (archive_write_header(s->out, e) < ARCHIVE_WARN)
                        return sender_archive_fail(s, s->out, "cannot send the stream");
                while ((n = archive_read_data(in, s->buf, sizeof(s->buf))) > 0)
                        if (archive_write_data(s->out, s->buf, (size_t)n) < 0)
                                return sender_archive_fail(s, s->out, "cannot send the stream");
                if (n < 0)
                        return sender_archive_fail(s, in, path);
        }
        if (r != ARCHIVE_EOF)
                return sender_archive_fail(s, in, path);
        return true;
}

/* One pass over the sources: without @s->out it only opens everything (the check before the call). */
static bool put_sources(KilnTarSender *s)
{
        for (gsize i = 0; i < s->n_sources; i++) {
                const char *path = s->sources[i];
                g_autofree char *base = NULL;
                struct stat st;
                int fd;

                if (s->is_archive[i]) {
                        if (!put_archive(s, path))
                                return false;
                        continue;
                }
                /* A source named on the command line is followed if it is a symlink, as cp does. */
                if (stat(path, &st) < 0)
                        return sender_fail(s, path, errno);
                if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
                        if (!s->error)
                                s->error =
                                        g_strdup_printf("'%s' is not a regular file or a directory", path);
                        return false;
                }
                fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY |
                                        (S_ISDIR(st.st_mode) ? O_DIRECTORY : O_NONBLOCK));
                if (fd < 0 || fstat(fd, &st) < 0) {
                        if (fd >= 0)
                                close(fd);
                        return sender_fail(s, path, errno);
                }
                base = g_path_get_basename(path);
                if (!put_tree(s, fd, &st, path, S_ISDIR(st.st_mode) ? "" : base))
                        return false;
        }
        return true;
}

static gpointer send_thread(gpointer data)
{
        KilnTarSender *s = data;

        s->out = archive_write_new();
        archive_write_set_format_pax_restricted(s->out);
        archive_write_set_bytes_in_last_block(s->out, 1);
        if (archive_write_open_fd(s->out, s->fd) != ARCHIVE_OK)
                sender_archive_fail(s, s->out, "cannot send the stream");
        /* On a failure the stream ends without its trailer: kilnd takes it as damaged and stops. */
        else if (put_sources(s) && archive_write_close(s->out) != ARCHIVE_OK)
                sender_archive_fail(s, s->out, "cannot send the stream");
        archive_write_free(s->out);
        s->out = NULL;
        close(s->fd);
        s->fd = -1;
        return NULL;
}

/* Only opens everything, as the caller (no stream yet): the check before kilnd is called. */
static bool check_sources(KilnTarSender *s)
{
        return put_sources(s);
}

static bool is_archive(const char *path)
{
        struct archive *a;
        struct stat st;
        int err = 0;

        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || !(a = open_tar_archive(path, &err)))
                return false;
        archive_read_free(a);
        return true;
}

static bool receiver_fail(KilnTarReceiver *r, struct archive *a, const char *what)
{
        if (!r->error)
                r->error = g_strdup_printf("%s: %s", what,
                                           a && archive_error_string(a) ? archive_error_string(a)
                                                                        : g_strerror(errno));
        return false;
}

/* The stream's first entry is the copied path's top (a file, or a directory with everything below it):
 * into an existing directory DEST it goes as it is named; else a file becomes DEST, and a directory's
 * contents go into DEST, made for them. */
static gpointer receive_thread(gpointer data)
{
        KilnTarReceiver *rc = data;
        _cleanup_(free_read) struct archive *in = archive_read_new();
        struct archive *out = archive_write_disk_new();
        struct archive_entry *e;
        g_autofree char *top = NULL, *rename_to = NULL;
        bool strip = false;
        struct stat st;
        int r;

        archive_read_support_format_tar(in);
        archive_read_support_format_gnutar(in);
        /* As the caller: never an owner of the stream's, never a set-id bit, never through a symlink
         * or "..". */
        archive_write_disk_set_options(
                out, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                             ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS);
        if (archive_read_open_fd(in, rc->fd, BLOCK) != ARCHIVE_OK) {
                receiver_fail(rc, in, "cannot read the stream");
                goto out;
        }
        while ((r = archive_read_next_header(in, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
                const char *name = archive_entry_pathname(e);
                g_autofree char *new_name = NULL;

                if (!name)
                        continue;
                if (!top) {
                        bool is_dir = archive_entry_filetype(e) == AE_IFDIR;
                        const char *slash;

                        top = g_strdup(name);
                        slash = strchr(top, '/');
                        if (slash)
                                top[slash - top] = '\0';
                        if (stat(rc->dest, &st) == 0 && S_ISDIR(st.st_mode)) {
                                if (chdir(rc->dest) < 0) {
                                        receiver_fail(rc, NULL, rc->dest);
                                        goto out;
                                }
                        } else if (!is_dir) {
                                g_autofree char *dir = g_path_get_dirname(rc->dest);

                                rename_to = g_path_get_basename(rc->dest);
                                if (chdir(dir) < 0) {
                                        receiver_fail(rc, NULL, dir);
                                        goto out;
                                }
                        } else {
                                if (mkdir(rc->dest, 0755) < 0 || chdir(rc->dest) < 0) {
                                        receiver_fail(rc, NULL, rc->dest);
                                        goto out;
                                }
                                strip = true;
                        }
                }
                if (rename_to) {
                        new_name = g_strdup(rename_to);
                } else if (strip) {
                        size_t n = strlen(top);

                        if (strncmp(name, top, n) != 0 || (name[n] != '/' && name[n] != '\0'))
                                continue;
                        if (name[n] == '\0' || name[n + 1] == '\0')
                                continue; /* the top itself: DEST stands for it */
                        new_name = g_strdup(name + n + 1);
                }
                if (new_name)
                        archive_entry_copy_pathname(e, new_name);
                archive_entry_set_perm(e, archive_entry_perm(e) & 0777);
                if (archive_write_header(out, e) < ARCHIVE_WARN) {
                        receiver_fail(rc, out, name);
                        goto out;
                }
                for (;;) {
                        la_ssize_t n = archive_read_data(in, rc->buf, sizeof(rc->buf));
                        if (n == 0)
                                break;
                        if (n < 0) {
                                receiver_fail(rc, in, "cannot read the stream");
                                goto out;
                        }
                        if (archive_write_data(out, rc->buf, (size_t)n) < 0) {
                                receiver_fail(rc, out, name);
                                goto out;
                        }
                }
                if (archive_write_finish_entry(out) < ARCHIVE_WARN) {
                        receiver_fail(rc, out, name);
                        goto out;
                }
        }
        if (r != ARCHIVE_EOF)
                receiver_fail(rc, in, "cannot read the stream");
out:
        archive_write_close(out);
        archive_write_free(out);
        /* Whatever is left is read away, so that kilnd's writer is never stuck on a full pipe. */
        while (read(rc->fd, rc->buf, sizeof(rc->buf)) > 0)
                ;
        close(rc->fd);
        return NULL;
}

__attribute__((visibility("default"))) const KilnCliTar kiln_cli_tar_module = {
        .is_archive = is_archive,
        .check_sources = check_sources,
        .send = send_thread,
        .receive = receive_thread,
};

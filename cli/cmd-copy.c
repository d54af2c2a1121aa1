/* SPDX-License-Identifier: Apache-2.0 */
/* kiln copy / kiln add: Builder.Copy and Builder.CopyOut.
 *
 * In, the client reads the sources as the caller and sends kilnd a tar stream of them through a pipe
 * (kilnd never opens a caller's path, so root reads nothing on the caller's behalf). Every source is
 * opened once before anything is sent: one the caller cannot read stops the copy before kilnd is
 * called, and nothing is written. Out, kilnd writes a tar stream into a pipe and the client unpacks it
 * as the caller, so the files are his. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "bus-client.h"
#include "cli-util.h"
#include "verbs.h"

/* Copying can take long: a tree of gigabytes through a pipe. */
#define COPY_TIMEOUT_USEC (6ULL * 60 * 60 * 1000 * 1000)
#define BLOCK (64 * 1024)

typedef struct {
        char **sources; /* as given */
        gsize n_sources;
        bool add; /* kiln add: a tar archive source is unpacked */
        bool *is_archive;
        int fd; /* the pipe's write end (the writer) */
        struct archive *out;
        char *error; /* the first failure, to print */
        char buf[BLOCK];
} Sender;

static bool sender_fail(Sender *s, const char *path, int e)
{
        if (!s->error)
                s->error = g_strdup_printf("cannot read '%s': %s%s", path, g_strerror(e),
                                           s->out ? "" : " (nothing was copied)");
        return false;
}

static bool sender_archive_fail(Sender *s, struct archive *a, const char *what)
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

/* Opens a tar archive (any compression libarchive knows) for reading; NULL when @path is not one. */
static struct archive *open_tar_archive(const char *path, int *err)
{
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        int r;

        archive_read_support_filter_all(a);
        archive_read_support_format_tar(a);
        archive_read_support_format_gnutar(a);
        if (archive_read_open_filename(a, path, BLOCK) != ARCHIVE_OK) {
                *err = archive_errno(a) > 0 ? archive_errno(a) : 0;
                archive_read_free(a);
                return NULL;
        }
        r = archive_read_next_header(a, &e);
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN && r != ARCHIVE_EOF) {
                *err = 0;
                archive_read_free(a);
                return NULL;
        }
        archive_read_free(a);
        /* Again from the start, for the caller to read through. */
        a = archive_read_new();
        archive_read_support_filter_all(a);
        archive_read_support_format_tar(a);
        archive_read_support_format_gnutar(a);
        if (archive_read_open_filename(a, path, BLOCK) != ARCHIVE_OK) {
                *err = archive_errno(a) > 0 ? archive_errno(a) : EIO;
                archive_read_free(a);
                return NULL;
        }
        return a;
}

/* Writes one header (when @s->out) for @st under @name. */
static bool put_header(Sender *s, const char *name, const struct stat *st, const char *link)
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
static bool put_content(Sender *s, int fd, off_t size, const char *path)
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
static bool put_tree(Sender *s, int fd, const struct stat *st, const char *path, const char *name)
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
                        kiln_log("skipping '%s': not a regular file, directory or symlink", child_path);
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
static bool put_archive(Sender *s, const char *path)
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
static bool put_sources(Sender *s)
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

static gpointer sender_thread(gpointer data)
{
        Sender *s = data;

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

static int copy_in(const char *verb, bool add, const char *chown_spec, const char *chmod_spec, int argc,
                   char **argv)
{
        g_autoptr(sd_bus) bus = NULL;
        g_autoptr(sd_bus_message) m = NULL, reply = NULL;
        g_autofree char *path = NULL;
        g_autofree bool *is_archive = NULL;
        Sender s = {.fd = -1};
        const char *dest = argv[argc - 1];
        g_autoptr(GThread) thread = NULL;
        int pipefd[2];
        bool as_file;
        int r;

        s.sources = argv + 2;
        s.n_sources = (gsize)argc - 3;
        s.add = add;
        is_archive = g_new0(bool, s.n_sources);
        s.is_archive = is_archive;
        for (gsize i = 0; i < s.n_sources; i++) {
                const char *src = s.sources[i];
                int err = 0;

                if (strstr(src, "://")) {
                        kiln_log("%s: URLs are not supported; download '%s' first", verb, src);
                        return KILN_EXIT_FAILURE;
                }
                if (add) {
                        struct archive *a;
                        struct stat st;

                        if (stat(src, &st) == 0 && S_ISREG(st.st_mode) &&
                            (a = open_tar_archive(src, &err))) {
                                archive_read_free(a);
                                is_archive[i] = true;
                        }
                }
        }
        /* Everything is opened once, as the caller, before kilnd is asked: a source he cannot read
         * stops the copy before anything is written. */
        if (!put_sources(&s)) {
                kiln_log("%s", s.error);
                g_free(s.error);
                return KILN_EXIT_FAILURE;
        }
        /* One regular file to a destination that is not a directory (no trailing '/'): the file is
         * written as the destination, as cp does. kilnd still puts it inside if it is a directory. */
        as_file = false;
        if (s.n_sources == 1 && !is_archive[0] && !g_str_has_suffix(dest, "/")) {
                struct stat st;
                as_file = stat(s.sources[0], &st) == 0 && S_ISREG(st.st_mode);
        }

        r = kiln_bus_open_builder(argv[1], &bus, &path);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = kiln_bus_new_call(bus, path, KILN_BUILDER_INTERFACE, "Copy", &m);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        if (pipe2(pipefd, O_CLOEXEC) < 0) {
                kiln_log("cannot make a pipe: %s", g_strerror(errno));
                return KILN_EXIT_FAILURE;
        }
        r = sd_bus_message_append(m, "hs", pipefd[0], dest);
        close(pipefd[0]); /* the message holds its own copy */
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && chown_spec)
                r = kiln_bus_append_option_string(m, "chown", chown_spec);
        if (r >= 0 && chmod_spec)
                r = kiln_bus_append_option_string(m, "chmod", chmod_spec);
        if (r >= 0 && as_file)
                r = sd_bus_message_append(m, "{sv}", "as-file", "b", 1);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0) {
                close(pipefd[1]);
                return kiln_bus_log_error(NULL, r, "Copy"), KILN_EXIT_FAILURE;
        }
        s.fd = pipefd[1];
        thread = g_thread_new("kiln-copy-send", sender_thread, &s);
        r = kiln_bus_call(bus, m, COPY_TIMEOUT_USEC, &reply);
        /* Our copy of the read end goes with the message: if kilnd has stopped reading, the sender
         * gets EPIPE and ends. */
        g_clear_pointer(&m, sd_bus_message_unref);
        g_thread_join(g_steal_pointer(&thread));
        if (s.error) {
                kiln_log("%s", s.error);
                g_free(s.error);
                return KILN_EXIT_FAILURE;
        }
        return r < 0 ? KILN_EXIT_FAILURE : KILN_EXIT_SUCCESS;
}

/* --- out ------------------------------------------------------------------------------------------ */

typedef struct {
        int fd; /* the pipe's read end */
        char *dest;
        char *error;
        char buf[BLOCK];
} Receiver;

static bool receiver_fail(Receiver *r, struct archive *a, const char *what)
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
static gpointer receiver_thread(gpointer data)
{
        Receiver *rc = data;
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

static int copy_out(const char *verb, const char *source, const char *dest)
{
        g_autoptr(sd_bus) bus = NULL;
        g_autoptr(sd_bus_message) m = NULL, reply = NULL;
        g_autofree char *builder = NULL, *path = NULL, *abs_dest = NULL, *receive_error = NULL;
        g_autoptr(GThread) thread = NULL;
        const char *colon = strchr(source, ':');
        Receiver rc = {.fd = -1};
        int pipefd[2] = {-1, -1};
        bool to_stdout = g_str_equal(dest, "-");
        int r;

        if (!colon || colon == source || !colon[1])
                return kiln_usage_error(verb, "expected BUILDER SRC… DEST, or BUILDER:PATH DEST");
        builder = g_strndup(source, (gsize)(colon - source));
        abs_dest = g_canonicalize_filename(dest, NULL);

        r = kiln_bus_open_builder(builder, &bus, &path);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = kiln_bus_new_call(bus, path, KILN_BUILDER_INTERFACE, "CopyOut", &m);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        if (!to_stdout && pipe2(pipefd, O_CLOEXEC) < 0) {
                kiln_log("cannot make a pipe: %s", g_strerror(errno));
                return KILN_EXIT_FAILURE;
        }
        r = sd_bus_message_append(m, "sha{sv}", colon + 1, to_stdout ? STDOUT_FILENO : pipefd[1], 0);
        if (pipefd[1] >= 0)
                close(pipefd[1]); /* the message holds its own copy */
        if (r < 0) {
                if (pipefd[0] >= 0)
                        close(pipefd[0]);
                return kiln_bus_log_error(NULL, r, "CopyOut"), KILN_EXIT_FAILURE;
        }
        if (!to_stdout) {
                rc.fd = pipefd[0];
                rc.dest = abs_dest;
                thread = g_thread_new("kiln-copy-receive", receiver_thread, &rc);
        }
        r = kiln_bus_call(bus, m, COPY_TIMEOUT_USEC, &reply);
        /* The last write end the client holds goes with the message: the receiver sees the end. */
        g_clear_pointer(&m, sd_bus_message_unref);
        if (thread)
                g_thread_join(g_steal_pointer(&thread));
        receive_error = g_steal_pointer(&rc.error);
        /* kilnd's refusal was printed; the receiver's complaint about the stream it cut short is not
         * news then. */
        if (r < 0)
                return KILN_EXIT_FAILURE;
        if (receive_error) {
                kiln_log("%s", receive_error);
                return KILN_EXIT_FAILURE;
        }
        return KILN_EXIT_SUCCESS;
}

static int run_verb(const char *verb, bool add, int argc, char **argv)
{
        g_autofree char *chown_spec = NULL, *chmod_spec = NULL;
        const GOptionEntry entries[] = {
                {"chown", 0, 0, G_OPTION_ARG_STRING, &chown_spec,
                 "Owner of the copied files inside the builder (names from its /etc/passwd and /etc/group)",
                 "USER[:GROUP]"},
                {"chmod", 0, 0, G_OPTION_ARG_STRING, &chmod_spec, "Mode of the copied files (octal)",
                 "MODE"},
                {NULL},
        };
        g_autofree char *summary = g_strdup_printf(
                "%s into a builder; 'kiln %s BUILDER:PATH DEST' copies out of it (DEST '-': a tar stream on "
                "stdout).",
                add ? "Copy files, directories and local tar archives (unpacked)"
                    : "Copy files and directories",
                verb);

        if (!kiln_parse_options(verb, "BUILDER SRC… DEST", summary, entries, &argc, &argv))
                return KILN_EXIT_FAILURE;
        /* kilnd may close the pipe at any time (a refusal, a limit): an error to report, not a signal. */
        signal(SIGPIPE, SIG_IGN);
        if (argc == 3) {
                if (chown_spec || chmod_spec)
                        return kiln_usage_error(verb, "--chown and --chmod apply to copies into a builder");
                return copy_out(verb, argv[1], argv[2]);
        }
        if (argc < 4)
                return kiln_usage_error(verb, "expected BUILDER SRC… DEST, or BUILDER:PATH DEST");
        return copy_in(verb, add, chown_spec, chmod_spec, argc, argv);
}

int kiln_verb_copy(int argc, char **argv)
{
        return run_verb("copy", false, argc, argv);
}

int kiln_verb_add(int argc, char **argv)
{
        return run_verb("add", true, argc, argv);
}

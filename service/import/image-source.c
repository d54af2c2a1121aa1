/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-import's image mode: what the caller gives (image-private.h). The reader child becomes the
 * caller and opens the source and, for an OCI layout, each file this parent asks for by name; blobs are
 * read from those descriptors, an archive entry or memory, every byte hashed. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <linux/openat2.h>

#include "base/fd-passing.h"
#include "base/fs-util.h"
#include "image-private.h"
#include "import-protocol.h"
#include "base/kiln-common.h"
#include "layer-digest.h"

/* ---- the reader child ---- */

typedef struct ReaderArgs {
        const ImageOptions *o;
        int sock;
        pid_t parent;
} ReaderArgs;

static void reader_reply(int sock, int error, const char *name, int fd)
{
        KilnImportRecord rec;
        size_t len = MIN(strlen(name), sizeof(rec.name));

        memset(&rec.h, 0, sizeof(rec.h));
        rec.h.kind = fd >= 0 ? KILN_IMPORT_RECORD_ENTRY : KILN_IMPORT_RECORD_ERROR;
        rec.h.error = error;
        rec.h.what = KILN_IMPORT_WHAT_OPEN;
        rec.h.name_len = (uint32_t)len;
        memcpy(rec.name, name, len);
        if (kiln_send_fds(sock, &rec, sizeof(rec.h) + len, &fd, fd >= 0 ? 1 : 0) < 0)
                _exit(1);
}

/* Runs as the caller: opens the source, then what the parent asks for inside it, and passes each
 * descriptor up. It interprets nothing; the parent checks everything it receives. */
static _Noreturn void reader_run(const ReaderArgs *a)
{
        const ImageOptions *o = a->o;
        KilnImportReaderArgs ra = {
                .uid = o->uid, .gid = o->gid, .groups = o->groups, .n_groups = o->n_groups};
        _cleanup_close_ int root = -1;
        const char *display = o->path ? o->path : "source";
        int e;

        if (kiln_import_reader_isolate(a->sock, o->fd) != 0)
                _exit(1);
        e = kiln_import_become_caller(&ra);
        if (e != 0) {
                reader_reply(a->sock, e, "credentials", -1);
                _exit(1);
        }
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != a->parent)
                _exit(1);

        /* The source, opened as the caller. A directory descriptor is reopened (the caller's read and
         * search permission checked, O_PATH ones work). A file descriptor the caller opened for reading
         * is its own open already; one opened O_PATH or write-only is reopened through its magic link,
         * as the caller, so the kernel checks his read permission. */
        if (o->path) {
                root = open(o->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        } else {
                struct stat st;
                int fl = fcntl(o->fd, F_GETFL);

                if (fstat(o->fd, &st) < 0 || fl < 0)
                        root = -1;
                else if (S_ISDIR(st.st_mode))
                        root = openat(o->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                else if (!(fl & O_PATH) && (fl & O_ACCMODE) != O_WRONLY)
                        root = fcntl(o->fd, F_DUPFD_CLOEXEC, 3);
                else {
                        g_autofree char *link = g_strdup_printf("/proc/self/fd/%d", o->fd);
                        root = open(link, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
                }
                close(o->fd);
        }
        if (root < 0) {
                reader_reply(a->sock, errno, display, -1);
                _exit(1);
        }
        reader_reply(a->sock, 0, "", root);

        for (;;) {
                KilnImportRecord rec;
                int fds[1];
                size_t n_fds = 0;
                ssize_t n = kiln_recv_fds(a->sock, &rec, sizeof(rec) - 1, fds, 1, &n_fds, 0, NULL);
                char name[sizeof(rec.name) + 1];
                int fd;

                for (size_t i = 0; i < n_fds; i++)
                        close(fds[i]);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < (ssize_t)sizeof(rec.h))
                        _exit(0); /* the parent is done */
                memcpy(name, rec.name, MIN((size_t)n - sizeof(rec.h), sizeof(rec.name)));
                name[MIN((size_t)n - sizeof(rec.h), sizeof(rec.name))] = '\0';
                fd = kiln_openat2(root, name, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0,
                                  RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
                reader_reply(a->sock, fd < 0 ? -fd : 0, name, fd);
                if (fd >= 0)
                        close(fd);
        }
}

/* The reply to one request: a descriptor, or -1 with the image failed. */
int image_reader_receive(Image *im, const char *display)
{
        KilnImportRecord rec;
        int fds[1];
        size_t n_fds = 0;
        int flags = 0;
        ssize_t n;

        do
                n = kiln_recv_fds(im->sock, &rec, sizeof(rec), fds, 1, &n_fds, 0, &flags);
        while (n < 0 && errno == EINTR && !image_terminating);
        if (n < (ssize_t)sizeof(rec.h) || (flags & (MSG_TRUNC | MSG_CTRUNC))) {
                for (size_t i = 0; i < n_fds; i++)
                        close(fds[i]);
                image_fail(im, KILN_IMPORT_EXIT_FAILED, "the reader of '%s' stopped", display);
                return -1;
        }
        if (rec.h.kind == KILN_IMPORT_RECORD_ENTRY && n_fds == 1)
                return fds[0];
        for (size_t i = 0; i < n_fds; i++)
                close(fds[i]);
        return image_fail_errno(im, rec.h.error ? rec.h.error : EIO, "open", display);
}

int image_start_reader(Image *im)
{
        int sv[2];
        pid_t self = getpid();

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return image_fail_errno(im, errno, "socketpair", "reader");
        im->child = fork();
        if (im->child < 0) {
                close(sv[0]);
                close(sv[1]);
                return image_fail_errno(im, errno, "fork", "reader");
        }
        if (im->child == 0) {
                ReaderArgs a = {.o = im->o, .sock = sv[1], .parent = self};
                close(sv[0]);
                reader_run(&a);
        }
        close(sv[1]);
        im->sock = sv[0];
        return 0;
}

/* What the reader sent must be a regular file root may read on the caller's behalf: not on a pseudo
 * file system (some check credentials at read time), opened for reading. */
int image_check_file(Image *im, int fd, const char *display)
{
        struct stat st;
        int fl = fcntl(fd, F_GETFL);

        if (fstat(fd, &st) < 0 || fl < 0)
                return image_fail_errno(im, errno, "fstat", display);
        if (!S_ISREG(st.st_mode))
                return image_fail(im, KILN_IMPORT_EXIT_INVALID, "'%s' is not a regular file", display);
        if ((fl & O_PATH) || (fl & O_ACCMODE) == O_WRONLY)
                return image_fail(im, KILN_IMPORT_EXIT_PERMISSION_DENIED, "'%s' is not open for reading",
                                  display);
        if (kiln_fd_on_pseudo_fs(fd, NULL) > 0)
                return image_fail(im, KILN_IMPORT_EXIT_INVALID, "'%s' is on a pseudo file system", display);
        /* Reads block from here on. */
        if (fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
                return image_fail_errno(im, errno, "fcntl", display);
        return 0;
}

/* A file of the OCI layout, opened by the reader as the caller. */
int image_open_in_layout(Image *im, const char *name)
{
        KilnImportRecord rec = {.h = {.kind = KILN_IMPORT_RECORD_ENTRY, .name_len = (uint32_t)strlen(name)}};
        int fd;

        memcpy(rec.name, name, strlen(name));
        if (kiln_send_fds(im->sock, &rec, sizeof(rec.h) + strlen(name), NULL, 0) < 0)
                return image_fail_errno(im, errno, "send", "reader");
        fd = image_reader_receive(im, name);
        if (fd < 0)
                return -1;
        if (image_check_file(im, fd, name) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

/* ---- reading blobs ---- */

ssize_t image_blob_read(void *data, const void **buf)
{
        BlobReader *r = data;
        ssize_t n;

        if (image_terminating) {
                errno = EINTR;
                return -1;
        }
        if (r->is_mem) {
                n = (ssize_t)r->mem_len;
                *buf = r->mem;
                r->mem += r->mem_len;
                r->mem_len = 0;
        } else if (r->archive) {
                n = archive_read_data(r->archive, r->im->buffer, READ_BUFFER_SIZE);
                if (n < 0) {
                        r->error = EIO;
                        errno = EIO;
                        return -1;
                }
                *buf = r->im->buffer;
        } else {
                do
                        n = read(r->fd, r->im->buffer, READ_BUFFER_SIZE);
                while (n < 0 && errno == EINTR && !image_terminating);
                if (n < 0) {
                        r->error = errno;
                        return -1;
                }
                *buf = r->im->buffer;
        }
        if (n > 0) {
                if (r->counts) {
                        r->im->progress.bytes += (uint64_t)n;
                        image_progress(r->im, false);
                }
                g_checksum_update(r->sha, *buf, n);
                r->n += (uint64_t)n;
                if (r->n > r->max) {
                        r->error = EFBIG;
                        errno = EFBIG;
                        return -1;
                }
        }
        return n;
}

/* Reads what the consumer left of the blob, so that its digest covers every byte. */
int image_blob_drain(BlobReader *r)
{
        const void *buf;
        ssize_t n;

        while ((n = image_blob_read(r, &buf)) > 0)
                ;
        return n < 0 ? -1 : 0;
}

void image_blob_reader_init(BlobReader *r, Image *im)
{
        memset(r, 0, sizeof(*r));
        r->im = im;
        r->fd = -1;
        r->sha = g_checksum_new(G_CHECKSUM_SHA256);
        r->max = UINT64_MAX;
}

void image_blob_reader_clear(BlobReader *r)
{
        g_clear_pointer(&r->sha, g_checksum_free);
}

/* A whole small blob into memory, bounded. */
GBytes *image_read_small(Image *im, BlobReader *r, uint64_t max, const char *what, char hex[65])
{
        GByteArray *buf = g_byte_array_new();
        const void *p;
        ssize_t n;

        while ((n = image_blob_read(r, &p)) > 0) {
                if (buf->len + (uint64_t)n > max) {
                        g_byte_array_unref(buf);
                        image_fail(im, KILN_IMPORT_EXIT_INVALID, "%s: more than %" PRIu64 " bytes", what,
                                   max);
                        return NULL;
                }
                g_byte_array_append(buf, p, (guint)n);
        }
        if (n < 0) {
                g_byte_array_unref(buf);
                image_fail_errno(im, r->error ? r->error : errno, "read", what);
                return NULL;
        }
        image_hex_of(r->sha, hex);
        return g_byte_array_free_to_bytes(buf);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-import's image mode (image-read.h).
 *
 * Two processes, as in the directory mode: a reader child that fully becomes the caller opens the
 * source and, for an OCI layout, each file in it that this parent asks for by name, and passes the
 * opened descriptors up; this parent (root) reads only those descriptors, never a path of the caller.
 * A descriptor the CLI opened is the caller's own open, so an archive is read only through what the
 * caller could open.
 *
 * Trust. index.json, manifests, configs and the archive are the caller's: every document is bounded
 * (JSON_MAX) and parsed with json-glib, every digest is checked as 64 hex characters before it names
 * anything, and names asked of the reader are built from those digests only. Each layer is verified
 * twice: its bytes against the manifest's digest, its uncompressed tar stream against the config's
 * diff_id. A layer is stored as STATE/layers/<diff_id hex>; when that exists already the blob is still
 * read to its end and both digests checked, but nothing is unpacked: only a caller who holds the
 * bytes of a layer may use the stored one, and a mismatch refuses the whole image.
 *
 * Atomic. New layers are unpacked into flock()ed STATE/layers/.tmp-* trees (the start-up clean-up
 * removes only unlocked ones) and renamed to their diff_id only once the whole image is verified; a
 * failure anywhere removes every tmp tree, so nothing of a refused image stays. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/openat2.h>

#include <archive.h>
#include <archive_entry.h>
#include <json-glib/json-glib.h>

#include "base/fd-passing.h"
#include "base/fs-util.h"
#include "image-read.h"
#include "import-protocol.h"
#include "base/kiln-common.h"
#include "layer-digest.h"

#define JSON_MAX (4 * 1024 * 1024)         /* one index.json, manifest, config or manifest.json */
#define SMALL_BLOB_MAX (1024 * 1024)       /* archive entries up to this size are kept in memory */
#define SMALL_TOTAL_MAX (64 * 1024 * 1024) /* all of them together */
#define ARCHIVE_LARGE_MAX 4096             /* entries unpacked as layers while an archive streams */
#define READ_BUFFER_SIZE (1024 * 1024)
#define INDEX_DEPTH_MAX 2 /* an index naming an index naming a manifest */
#define SIZES_DIR ".sizes"
#define FINGERPRINTS_DIR ".fingerprints"
#define ARCHIVE_RECORD_MAX (64 * 1024) /* a result past it is not recorded */

static volatile sig_atomic_t terminating;

typedef struct ImageOptions {
        uid_t uid;
        gid_t gid;
        gid_t *groups;
        size_t n_groups;
        const char *kind; /* oci, oci-archive, docker-archive */
        const char *layers;
        const char *path;
        int fd;
        const char *ref;
        char *os, *arch, *variant; /* the platform wanted */
        uint64_t max_bytes;        /* all layers together; UINT64_MAX: none */
        uint64_t max_layers;
        uint64_t max_entries;
        pid_t parent_pid;
        bool have_uid, have_gid;
} ImageOptions;

/* A layer tree being written, not yet published. */
typedef struct Tmp {
        char name[32];
        int fd;
        int lock_fd;
        char diff_hex[65]; /* what its tar stream hashed to */
        uint64_t bytes;
} Tmp;

/* An archive entry kept in memory. */
typedef struct Small {
        GBytes *data;
        char hex[65];
} Small;

/* An archive entry unpacked as a layer while the archive streamed. */
typedef struct Large {
        Tmp *tmp;          /* NULL if unpacking failed */
        char blob_hex[65]; /* the entry's bytes */
        char *error;       /* why it could not be unpacked; reported only if the image needs it */
        int error_code;
} Large;

typedef struct Image {
        const ImageOptions *o;
        int layers_fd;
        int sock;
        pid_t child;
        int root_fd;       /* the source as the reader opened it */
        uint64_t bytes;    /* file content unpacked so far */
        GPtrArray *tmps;   /* Tmp *, removed at the end unless published */
        GHashTable *small; /* archive path → Small */
        GHashTable *large; /* archive path → Large */
        uint64_t small_total;
        uint8_t *buffer;
        int exit_code;
        char *error;
        /* The result. */
        char *digest;
        GPtrArray *layer_hex; /* diff_id hex, bottom first */
        GPtrArray *layer_tmp; /* Tmp * or NULL (stored already), parallel to layer_hex */
        GPtrArray *records;   /* "FINGERPRINT DIFF_ID\n" of layout blobs verified, written at the end */
        JsonNode *config;     /* the image config document */
} Image;

static int image_fail(Image *im, int code, const char *format, ...) G_GNUC_PRINTF(3, 4);

static int image_fail(Image *im, int code, const char *format, ...)
{
        va_list ap;

        if (im->error)
                return -1; /* the first is the cause */
        va_start(ap, format);
        im->error = g_strdup_vprintf(format, ap);
        va_end(ap);
        im->exit_code = code;
        return -1;
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

static int image_fail_errno(Image *im, int e, const char *what, const char *path)
{
        g_autofree char *p = kiln_escape_for_message(path, strlen(path));
        return image_fail(im, exit_code_for_errno(e), "%s '%s': %s", what, p, g_strerror(e));
}

static int image_fail_gerror(Image *im, const GError *error, const char *prefix)
{
        int code = KILN_IMPORT_EXIT_FAILED;

        if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT))
                code = KILN_IMPORT_EXIT_INVALID;
        else if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE))
                code = KILN_IMPORT_EXIT_LIMIT;
        return image_fail(im, code, "%s: %s", prefix, error->message);
}

static void on_signal(int sig)
{
        (void)sig;
        terminating = 1;
}

/* ---- hex digests ---- */

static void hex_of(GChecksum *c, char out[65])
{
        g_strlcpy(out, g_checksum_get_string(c), 65);
}

/* "sha256:<64 hex>" → the hex part; NULL for anything else (other algorithms are refused by name). */
static const char *digest_hex(Image *im, const char *digest, const char *what)
{
        if (!digest || !g_str_has_prefix(digest, "sha256:") || !kiln_hex64_is_valid(digest + 7)) {
                g_autofree char *d =
                        digest ? kiln_escape_for_message(digest, MIN(strlen(digest), 100)) : NULL;
                image_fail(im, KILN_IMPORT_EXIT_INVALID, "%s: digest '%s' is not sha256:<64 hex digits>",
                           what, d ? d : "(none)");
                return NULL;
        }
        return digest + 7;
}

/* ---- JSON ---- */

static JsonNode *parse_json(Image *im, GBytes *bytes, const char *what)
{
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        g_autoptr(GError) error = NULL;
        gsize len;
        const char *data = g_bytes_get_data(bytes, &len);

        if (len > JSON_MAX) {
                image_fail(im, KILN_IMPORT_EXIT_INVALID, "%s: more than %d bytes", what, JSON_MAX);
                return NULL;
        }
        if (!json_parser_load_from_data(parser, data, (gssize)len, &error)) {
                image_fail(im, KILN_IMPORT_EXIT_INVALID, "%s: not JSON: %s", what, error->message);
                return NULL;
        }
        if (!json_parser_get_root(parser) || (!JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser)) &&
                                              !JSON_NODE_HOLDS_ARRAY(json_parser_get_root(parser)))) {
                image_fail(im, KILN_IMPORT_EXIT_INVALID, "%s: not a JSON object", what);
                return NULL;
        }
        return json_node_copy(json_parser_get_root(parser));
}

static const char *obj_string(JsonObject *o, const char *name)
{
        JsonNode *n = o ? json_object_get_member(o, name) : NULL;

        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
                return NULL;
        return json_node_get_string(n);
}

static JsonObject *obj_object(JsonObject *o, const char *name)
{
        JsonNode *n = o ? json_object_get_member(o, name) : NULL;

        return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

static JsonArray *obj_array(JsonObject *o, const char *name)
{
        JsonNode *n = o ? json_object_get_member(o, name) : NULL;

        return n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
}

static gint64 obj_int(JsonObject *o, const char *name)
{
        JsonNode *n = o ? json_object_get_member(o, name) : NULL;

        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64)
                return -1;
        return json_node_get_int(n);
}

/* ---- platform ---- */

static void host_platform(char **os, char **arch, char **variant)
{
        struct utsname u;
        const char *m = "";
        static const struct {
                const char *machine, *arch, *variant;
        } table[] = {
                {"x86_64", "amd64", NULL},
                {"aarch64", "arm64", NULL},
                {"armv7l", "arm", "v7"},
                {"armv6l", "arm", "v6"},
                {"i686", "386", NULL},
                {"i386", "386", NULL},
                {"ppc64le", "ppc64le", NULL},
                {"s390x", "s390x", NULL},
                {"riscv64", "riscv64", NULL},
                {"mips64", "mips64le", NULL},
                {"loongarch64", "loong64", NULL},
        };

        if (uname(&u) == 0)
                m = u.machine;
        *os = g_strdup("linux");
        for (size_t i = 0; i < G_N_ELEMENTS(table); i++)
                if (g_str_equal(m, table[i].machine)) {
                        *arch = g_strdup(table[i].arch);
                        *variant = g_strdup(table[i].variant);
                        return;
                }
        *arch = g_strdup(m);
        *variant = NULL;
}

static bool platform_matches(const ImageOptions *o, JsonObject *platform)
{
        const char *os = obj_string(platform, "os"), *arch = obj_string(platform, "architecture");
        const char *variant = obj_string(platform, "variant");

        if (!os || !arch || !g_str_equal(os, o->os) || !g_str_equal(arch, o->arch))
                return false;
        return !o->variant || (variant && g_str_equal(variant, o->variant));
}

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
        int keep[2] = {a->sock, o->fd};
        struct sigaction sa = {.sa_handler = SIG_DFL};
        _cleanup_close_ int root = -1;
        const char *display = o->path ? o->path : "source";
        int null_fd, e;

        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(null_fd, 1) < 0 || dup2(null_fd, 2) < 0)
                _exit(1);
        if (kiln_close_all_fds_except(keep, G_N_ELEMENTS(keep)) < 0)
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
                struct open_how how = {
                        .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
                };
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
                fd = (int)syscall(SYS_openat2, root, name, &how, sizeof(how));
                reader_reply(a->sock, fd < 0 ? errno : 0, name, fd);
                if (fd >= 0)
                        close(fd);
        }
}

/* The reply to one request: a descriptor, or -1 with the image failed. */
static int reader_receive(Image *im, const char *display)
{
        KilnImportRecord rec;
        int fds[1];
        size_t n_fds = 0;
        int flags = 0;
        ssize_t n;

        do
                n = kiln_recv_fds(im->sock, &rec, sizeof(rec), fds, 1, &n_fds, 0, &flags);
        while (n < 0 && errno == EINTR && !terminating);
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

static int start_reader(Image *im)
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
static int check_file(Image *im, int fd, const char *display)
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
static int open_in_layout(Image *im, const char *name)
{
        KilnImportRecord rec = {.h = {.kind = KILN_IMPORT_RECORD_ENTRY, .name_len = (uint32_t)strlen(name)}};
        int fd;

        memcpy(rec.name, name, strlen(name));
        if (kiln_send_fds(im->sock, &rec, sizeof(rec.h) + strlen(name), NULL, 0) < 0)
                return image_fail_errno(im, errno, "send", "reader");
        fd = reader_receive(im, name);
        if (fd < 0)
                return -1;
        if (check_file(im, fd, name) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

/* ---- reading blobs ---- */

/* Reads one blob from a descriptor or an archive entry or memory, hashing every byte. */
typedef struct BlobReader {
        Image *im;
        int fd;
        struct archive *archive;
        bool is_mem;
        const uint8_t *mem;
        size_t mem_len;
        GChecksum *sha;
        uint64_t n;
        uint64_t max; /* fail past it (a descriptor's size from the manifest); UINT64_MAX: none */
        int error;
} BlobReader;

static ssize_t blob_read(void *data, const void **buf)
{
        BlobReader *r = data;
        ssize_t n;

        if (terminating) {
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
                while (n < 0 && errno == EINTR && !terminating);
                if (n < 0) {
                        r->error = errno;
                        return -1;
                }
                *buf = r->im->buffer;
        }
        if (n > 0) {
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
static int blob_drain(BlobReader *r)
{
        const void *buf;
        ssize_t n;

        while ((n = blob_read(r, &buf)) > 0)
                ;
        return n < 0 ? -1 : 0;
}

static void blob_reader_init(BlobReader *r, Image *im)
{
        memset(r, 0, sizeof(*r));
        r->im = im;
        r->fd = -1;
        r->sha = g_checksum_new(G_CHECKSUM_SHA256);
        r->max = UINT64_MAX;
}

static void blob_reader_clear(BlobReader *r)
{
        g_clear_pointer(&r->sha, g_checksum_free);
}

/* A whole small blob into memory, bounded. */
static GBytes *read_small(Image *im, BlobReader *r, uint64_t max, const char *what, char hex[65])
{
        GByteArray *buf = g_byte_array_new();
        const void *p;
        ssize_t n;

        while ((n = blob_read(r, &p)) > 0) {
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
        hex_of(r->sha, hex);
        return g_byte_array_free_to_bytes(buf);
}

/* ---- layer trees ---- */

static void tmp_free(Tmp *t)
{
        if (t->fd >= 0)
                close(t->fd);
        g_free(t);
}

static Tmp *make_tmp(Image *im)
{
        Tmp *t = g_new0(Tmp, 1);

        t->fd = t->lock_fd = -1;
        for (int attempt = 0; attempt < 100; attempt++) {
                uint8_t rnd[6];
                struct stat a, b;

                if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
                        break;
                snprintf(t->name, sizeof(t->name), ".tmp-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
                         rnd[3], rnd[4], rnd[5]);
                if (mkdirat(im->layers_fd, t->name, 0700) < 0) {
                        if (errno == EEXIST)
                                continue;
                        image_fail_errno(im, errno, "mkdirat", t->name);
                        g_free(t);
                        return NULL;
                }
                /* Registered at once, so that it is removed whatever happens next. */
                g_ptr_array_add(im->tmps, t);
                t->fd = openat(im->layers_fd, t->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (t->fd < 0) {
                        image_fail_errno(im, errno, "openat", t->name);
                        return NULL;
                }
                /* Locked while it exists unpublished: the start-up clean-up removes only tmp trees whose
                 * lock it can take. One that took it between mkdirat and flock removed the directory,
                 * so the name no longer leads to ours. */
                t->lock_fd = fcntl(t->fd, F_DUPFD_CLOEXEC, 3);
                if (t->lock_fd < 0 || flock(t->lock_fd, LOCK_EX | LOCK_NB) < 0) {
                        image_fail_errno(im, errno, "flock", t->name);
                        return NULL;
                }
                if (fstat(t->fd, &a) < 0 || fstatat(im->layers_fd, t->name, &b, AT_SYMLINK_NOFOLLOW) < 0 ||
                    a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
                        image_fail(im, KILN_IMPORT_EXIT_FAILED, "'%s' was removed while being made",
                                   t->name);
                        return NULL;
                }
                return t;
        }
        g_free(t);
        image_fail(im, KILN_IMPORT_EXIT_FAILED, "cannot find a free temporary name");
        return NULL;
}

/* Removes every tmp tree not published (t->name cleared once it is). */
static void remove_tmps(Image *im)
{
        for (guint i = 0; i < im->tmps->len; i++) {
                Tmp *t = im->tmps->pdata[i];
                g_autofree char *failed = NULL;

                if (t->fd >= 0) {
                        close(t->fd);
                        t->fd = -1;
                }
                if (t->name[0]) {
                        int r = kiln_rm_rf_at(im->layers_fd, t->name, &failed);
                        if (r < 0)
                                fprintf(stderr, "warning: cannot remove '%s': %s\n",
                                        failed ? failed : t->name, g_strerror(-r));
                }
                /* Only now: the tree is gone or published. */
                if (t->lock_fd >= 0) {
                        close(t->lock_fd);
                        t->lock_fd = -1;
                }
        }
}

static bool layer_exists(Image *im, const char *hex)
{
        struct stat st;

        return fstatat(im->layers_fd, hex, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* Unpacks the blob read through @r into a new tmp tree; the tree's diff_id is what its tar stream
 * hashed to. The digests are compared by the caller. */
static Tmp *unpack_layer(Image *im, BlobReader *r, const char *what)
{
        KilnLayerLimits limits = {
                .max_bytes = im->o->max_bytes == UINT64_MAX
                                     ? 0
                                     : im->o->max_bytes - MIN(im->bytes, im->o->max_bytes),
                .max_entries = im->o->max_entries,
        };
        KilnLayerResult res = {0};
        g_autoptr(GError) error = NULL;
        Tmp *t;

        if (im->o->max_bytes != UINT64_MAX && limits.max_bytes == 0)
                limits.max_bytes = 1; /* 0 would mean no bound: an empty layer still fits */
        t = make_tmp(im);
        if (!t)
                return NULL;
        /* A layer's root as tar makes it unless the stream has an entry for it: the tmp tree was made
         * 0700, and STATE/layers (0700, root's) keeps it private until it is published anyway. */
        if (fchmod(t->fd, 0755) < 0) {
                image_fail_errno(im, errno, "fchmod", t->name);
                return NULL;
        }
        if (!kiln_layer_unpack(blob_read, r, t->fd, &limits, &res, &error)) {
                /* Past the entries bound the message names it here; past the bytes bound kilnd adds
                 * the setting that decided (ImageBytes or what StorageBytesPerUser left). */
                if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE) &&
                    strstr(error->message, "entries"))
                        image_fail(im, KILN_IMPORT_EXIT_LIMIT,
                                   "%s: %s ([Limits] EntriesPerLayer=%" PRIu64 ")", what, error->message,
                                   im->o->max_entries);
                else if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE))
                        image_fail(im, KILN_IMPORT_EXIT_LIMIT, "%s: %s (all layers of the image together)",
                                   what, error->message);
                else if (r->error == EFBIG)
                        image_fail(im, KILN_IMPORT_EXIT_INVALID, "%s: more bytes than its descriptor's size",
                                   what);
                else
                        image_fail_gerror(im, error, what);
                return NULL;
        }
        if (blob_drain(r) < 0) {
                image_fail_errno(im, r->error ? r->error : errno, "read", what);
                return NULL;
        }
        im->bytes += res.bytes;
        t->bytes = res.bytes;
        g_strlcpy(t->diff_hex, res.diff_id, sizeof(t->diff_hex));
        close(t->fd);
        t->fd = -1;
        return t;
}

/* The diff_id of the blob read through @r, nothing written. */
static int hash_only(Image *im, BlobReader *r, char diff_hex[65], const char *what)
{
        g_autoptr(GError) error = NULL;

        if (!kiln_image_hash_layer(blob_read, r, diff_hex, &error)) {
                if (r->error == EFBIG)
                        return image_fail(im, KILN_IMPORT_EXIT_INVALID,
                                          "%s: more bytes than its descriptor's size", what);
                return image_fail_gerror(im, error, what);
        }
        return blob_drain(r) < 0 ? image_fail_errno(im, r->error ? r->error : errno, "read", what) : 0;
}

/* Both digests of layer @i checked: refused by name, with what the bytes hashed to. */
static int check_layer(Image *im, guint i, const char *blob_want, const char *blob_got,
                       const char *diff_want, const char *diff_got)
{
        if (blob_want && !g_str_equal(blob_want, blob_got))
                return image_fail(
                        im, KILN_IMPORT_EXIT_INVALID,
                        "layer %u: its blob does not match its digest sha256:%s (the bytes hash to "
                        "sha256:%s)",
                        i, blob_want, blob_got);
        if (!g_str_equal(diff_want, diff_got))
                return image_fail(im, KILN_IMPORT_EXIT_INVALID,
                                  "layer %u: its content does not match diff_id sha256:%s (the uncompressed "
                                  "stream hashes to sha256:%s)",
                                  i, diff_want, diff_got);
        return 0;
}

/* Layer @i of the image read through @r: verified, and unpacked unless stored already. */
static int take_layer(Image *im, guint i, BlobReader *r, const char *blob_want, const char *diff_want)
{
        g_autofree char *what =
                g_strdup_printf("layer %u (sha256:%.12s…)", i, blob_want ? blob_want : diff_want);
        char blob_got[65], diff_got[65];
        Tmp *t = NULL;

        if (layer_exists(im, diff_want)) {
                if (hash_only(im, r, diff_got, what) < 0)
                        return -1;
        } else {
                t = unpack_layer(im, r, what);
                if (!t)
                        return -1;
                g_strlcpy(diff_got, t->diff_hex, sizeof(diff_got));
        }
        hex_of(r->sha, blob_got);
        if (check_layer(im, i, blob_want, blob_got, diff_want, diff_got) < 0)
                return -1;
        g_ptr_array_add(im->layer_hex, g_strdup(diff_want));
        g_ptr_array_add(im->layer_tmp, t);
        return 0;
}

/* LAYERS/DIR/NAME holding @text, whole or not at all. Best effort, as in the directory mode: a record
 * that is not there costs a shortcut (or, for sizes, counts the layer as 0 bytes), nothing else. */
static void write_record(Image *im, const char *dir, const char *name, const char *text)
{
        g_autofree char *tmp = g_strconcat(dir, "/.tmp-", name, NULL);
        g_autofree char *path = g_strconcat(dir, "/", name, NULL);
        size_t len = strlen(text);
        _cleanup_close_ int fd = -1;

        if (mkdirat(im->layers_fd, dir, 0700) < 0 && errno != EEXIST)
                return;
        fd = openat(im->layers_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return;
        if (write(fd, text, len) != (ssize_t)len || fsync(fd) < 0 ||
            renameat(im->layers_fd, tmp, im->layers_fd, path) < 0)
                (void)unlinkat(im->layers_fd, tmp, 0);
}

static void write_size_record(Image *im, const char *hex, uint64_t bytes)
{
        g_autofree char *line = g_strdup_printf("%" PRIu64 "\n", bytes);

        write_record(im, SIZES_DIR, hex, line);
}

/* ---- fingerprints: a source file seen before is not read again ----
 *
 * As in the directory mode (kiln-import.c): a file whose fstat() identity (device, inode, size, mtime,
 * ctime) is unchanged holds the bytes it held, since any change to its content moves its ctime, which
 * no unprivileged caller can set. A record STATE/layers/.fingerprints/<fingerprint> says what a full,
 * verified read of that exact file found: for a layer blob of a layout, its diff_id (both digests
 * were checked before the record was written); for an archive, the whole result. Records begin with
 * a layer's diff_id, so kilnd drops them with that layer. The caller still opened the file himself:
 * the shortcut is only ever taken by someone who holds the bytes. */

static char *fd_fingerprint(int fd, const char *what, const char *extra)
{
        g_autoptr(GChecksum) c = g_checksum_new(G_CHECKSUM_SHA256);
        g_autofree char *id = NULL;
        struct stat st;

        if (fstat(fd, &st) < 0)
                return NULL;
        id = g_strdup_printf("kiln-image-%s-v1\n%ju:%ju:%jd:%jd.%ld:%jd.%ld\n", what, (uintmax_t)st.st_dev,
                             (uintmax_t)st.st_ino, (intmax_t)st.st_size, (intmax_t)st.st_mtim.tv_sec,
                             st.st_mtim.tv_nsec, (intmax_t)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
        g_checksum_update(c, (const guchar *)id, -1);
        g_checksum_update(c, (const guchar *)extra, -1);
        return g_strdup(g_checksum_get_string(c));
}

/* The record of @fingerprint, at most @max bytes, or NULL. */
static char *read_fingerprint(Image *im, const char *fingerprint, size_t max)
{
        g_autofree char *name = g_strconcat(FINGERPRINTS_DIR "/", fingerprint, NULL);
        _cleanup_close_ int fd = openat(im->layers_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        g_autofree char *buf = NULL;
        ssize_t n;

        if (fd < 0)
                return NULL;
        buf = g_malloc(max + 1);
        n = read(fd, buf, max + 1);
        if (n <= 0 || (size_t)n > max)
                return NULL;
        buf[n] = '\0';
        return g_steal_pointer(&buf);
}

/* Every new layer renamed to its diff_id, once the whole image is verified. A layer that appeared
 * meanwhile (another import of it) is kept, ours removed with the other tmp trees. */
static int publish(Image *im)
{
        if (im->tmps->len > 0 && syncfs(im->layers_fd) < 0)
                return image_fail_errno(im, errno, "syncfs", "layers");
        for (guint i = 0; i < im->layer_hex->len; i++) {
                Tmp *t = im->layer_tmp->pdata[i];
                const char *hex = im->layer_hex->pdata[i];

                if (!t || !t->name[0])
                        continue; /* stored already, or published as an earlier layer of this image */
                if (renameat2(im->layers_fd, t->name, im->layers_fd, hex, RENAME_NOREPLACE) < 0) {
                        if (errno != EEXIST && errno != ENOTEMPTY)
                                return image_fail_errno(im, errno, "renameat2", hex);
                        continue;
                }
                t->name[0] = '\0';
                write_size_record(im, hex, t->bytes);
        }
        if (fsync(im->layers_fd) < 0)
                return image_fail_errno(im, errno, "fsync", "layers");
        return 0;
}

/* ---- manifests and configs ---- */

static bool is_index(JsonObject *o, const char *media_type)
{
        return (media_type &&
                (g_str_equal(media_type, "application/vnd.oci.image.index.v1+json") ||
                 g_str_equal(media_type, "application/vnd.docker.distribution.manifest.list.v2+json"))) ||
               obj_array(o, "manifests") != NULL;
}

/* The descriptor of index @index to follow: the one named @ref (annotation
 * org.opencontainers.image.ref.name), else the only one, else the one of our platform. */
static JsonObject *pick_descriptor(Image *im, JsonObject *index, const char *ref, const char *what)
{
        JsonArray *manifests = obj_array(index, "manifests");
        g_autoptr(GPtrArray) candidates = g_ptr_array_new();
        JsonObject *match = NULL;
        guint n_platform = 0;

        if (!manifests) {
                image_fail(im, KILN_IMPORT_EXIT_INVALID, "%s: no manifests", what);
                return NULL;
        }
        for (guint i = 0; i < json_array_get_length(manifests); i++) {
                JsonNode *n = json_array_get_element(manifests, i);
                JsonObject *d = JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
                const char *name;

                if (!d)
                        continue;
                name = obj_string(obj_object(d, "annotations"), "org.opencontainers.image.ref.name");
                if (ref && (!name || !g_str_equal(name, ref)))
                        continue;
                g_ptr_array_add(candidates, d);
        }
        if (candidates->len == 0) {
                g_autofree char *r = ref ? kiln_escape_for_message(ref, strlen(ref)) : NULL;
                if (ref)
                        image_fail(im, KILN_IMPORT_EXIT_NOT_FOUND, "%s names no image '%s'", what, r);
                else
                        image_fail(im, KILN_IMPORT_EXIT_NOT_FOUND, "%s names no image", what);
                return NULL;
        }
        if (candidates->len == 1 && !obj_object(candidates->pdata[0], "platform"))
                return candidates->pdata[0];
        for (guint i = 0; i < candidates->len; i++) {
                JsonObject *p = obj_object(candidates->pdata[i], "platform");
                if (p)
                        n_platform++;
                if (p && platform_matches(im->o, p) && !match)
                        match = candidates->pdata[i];
        }
        if (match)
                return match;
        if (candidates->len == 1)
                return candidates->pdata[0]; /* an image with a platform: checked against its config */
        if (n_platform > 0)
                image_fail(im, KILN_IMPORT_EXIT_NOT_FOUND, "%s has no image for platform %s/%s%s%s", what,
                           im->o->os, im->o->arch, im->o->variant ? "/" : "",
                           im->o->variant ? im->o->variant : "");
        else
                image_fail(im, KILN_IMPORT_EXIT_INVALID, "%s names %u images: name one (SOURCE:REF)", what,
                           candidates->len);
        return NULL;
}

/* A JSON blob of the image, by digest: from the layout (as the caller) or from the archive's memory. */
static GBytes *get_json_blob(Image *im, const char *hex, gint64 size, const char *what)
{
        char got[65];
        GBytes *bytes = NULL;

        if (im->root_fd >= 0 && !im->small) {
                g_autofree char *name = g_strconcat("blobs/sha256/", hex, NULL);
                _cleanup_close_ int fd = open_in_layout(im, name);
                BlobReader r;

                if (fd < 0)
                        return NULL;
                blob_reader_init(&r, im);
                r.fd = fd;
                bytes = read_small(im, &r, JSON_MAX, what, got);
                blob_reader_clear(&r);
        } else {
                g_autofree char *name = g_strconcat("blobs/sha256/", hex, NULL);
                Small *s = g_hash_table_lookup(im->small, name);

                if (!s) {
                        image_fail(im,
                                   g_hash_table_contains(im->large, name) ? KILN_IMPORT_EXIT_INVALID
                                                                          : KILN_IMPORT_EXIT_NOT_FOUND,
                                   "%s sha256:%s: %s", what, hex,
                                   g_hash_table_contains(im->large, name) ? "larger than 1 MiB"
                                                                          : "not in the archive");
                        return NULL;
                }
                g_strlcpy(got, s->hex, sizeof(got));
                bytes = g_bytes_ref(s->data);
        }
        if (!bytes)
                return NULL;
        if (!g_str_equal(got, hex)) {
                g_bytes_unref(bytes);
                image_fail(im, KILN_IMPORT_EXIT_INVALID,
                           "%s: its bytes hash to sha256:%s, not to its digest sha256:%s", what, got, hex);
                return NULL;
        }
        if (size >= 0 && (gint64)g_bytes_get_size(bytes) != size) {
                g_bytes_unref(bytes);
                image_fail(im, KILN_IMPORT_EXIT_INVALID,
                           "%s: %zu bytes, its descriptor says %" G_GINT64_FORMAT, what,
                           g_bytes_get_size(bytes), size);
                return NULL;
        }
        return bytes;
}

/* The config's diff_ids (hex), checked against the layer count and the bound. */
static GPtrArray *config_diff_ids(Image *im, JsonObject *config, guint n_layers)
{
        JsonArray *ids = obj_array(obj_object(config, "rootfs"), "diff_ids");
        g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);
        guint n = ids ? json_array_get_length(ids) : 0;

        if (!ids) {
                image_fail(im, KILN_IMPORT_EXIT_INVALID, "image config: no rootfs.diff_ids");
                return NULL;
        }
        if (n > im->o->max_layers) {
                image_fail(im, KILN_IMPORT_EXIT_LIMIT,
                           "the image has %u layers, more than [Limits] LayersPerImage=%" PRIu64, n,
                           im->o->max_layers);
                return NULL;
        }
        if (n != n_layers) {
                image_fail(im, KILN_IMPORT_EXIT_INVALID,
                           "the manifest names %u layers, the config %u diff_ids", n_layers, n);
                return NULL;
        }
        for (guint i = 0; i < n; i++) {
                JsonNode *node = json_array_get_element(ids, i);
                const char *d =
                        JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == G_TYPE_STRING
                                ? json_node_get_string(node)
                                : NULL;
                const char *hex = digest_hex(im, d, "image config diff_ids");
                if (!hex)
                        return NULL;
                g_ptr_array_add(out, g_strdup(hex));
        }
        return g_steal_pointer(&out);
}

/* Checks the chosen image's platform when one was asked for and the config says one. */
static int check_platform(Image *im, JsonObject *config)
{
        const char *os = obj_string(config, "os"), *arch = obj_string(config, "architecture");

        if (os && arch && (!g_str_equal(os, im->o->os) || !g_str_equal(arch, im->o->arch)))
                return image_fail(im, KILN_IMPORT_EXIT_INVALID,
                                  "the image is for %s/%s, not %s/%s (platform)", os, arch, im->o->os,
                                  im->o->arch);
        return 0;
}

/* An OCI index → manifest → config, then every layer through @layer (layout or archive). */
typedef int (*LayerFunc)(Image *im, guint i, const char *blob_hex, gint64 size, const char *diff_hex);

static int read_oci(Image *im, GBytes *index_bytes, LayerFunc layer)
{
        g_autoptr(JsonNode) index = parse_json(im, index_bytes, "index.json");
        g_autoptr(JsonNode) manifest = NULL, config = NULL;
        g_autoptr(GBytes) manifest_bytes = NULL, config_bytes = NULL;
        g_autoptr(GPtrArray) diff_ids = NULL;
        JsonObject *desc, *m, *cdesc;
        JsonArray *layers;
        char hex[65]; /* a copy: the document it came from is freed when an index is followed */
        const char *h, *chex;
        const char *ref = im->o->ref;

        if (!index || !JSON_NODE_HOLDS_OBJECT(index))
                return image_fail(im, KILN_IMPORT_EXIT_INVALID, "index.json: not a JSON object");
        m = json_node_get_object(index);
        for (int depth = 0;; depth++) {
                g_autoptr(JsonNode) next = NULL;

                desc = pick_descriptor(im, m, depth == 0 ? ref : NULL,
                                       depth == 0 ? "index.json" : "image index");
                if (!desc)
                        return -1;
                h = digest_hex(im, obj_string(desc, "digest"), "manifest descriptor");
                if (!h)
                        return -1;
                g_strlcpy(hex, h, sizeof(hex));
                g_clear_pointer(&manifest_bytes, g_bytes_unref);
                manifest_bytes = get_json_blob(im, hex, obj_int(desc, "size"), "manifest");
                if (!manifest_bytes)
                        return -1;
                next = parse_json(im, manifest_bytes, "manifest");
                if (!next || !JSON_NODE_HOLDS_OBJECT(next))
                        return image_fail(im, KILN_IMPORT_EXIT_INVALID, "manifest sha256:%s: not an object",
                                          hex);
                g_clear_pointer(&manifest, json_node_unref);
                manifest = g_steal_pointer(&next);
                m = json_node_get_object(manifest);
                if (!is_index(m, obj_string(m, "mediaType")))
                        break;
                if (depth + 1 >= INDEX_DEPTH_MAX)
                        return image_fail(im, KILN_IMPORT_EXIT_INVALID, "image indexes nested too deep");
        }
        im->digest = g_strconcat("sha256:", hex, NULL);

        cdesc = obj_object(m, "config");
        chex = digest_hex(im, obj_string(cdesc, "digest"), "manifest config");
        if (!chex)
                return -1;
        config_bytes = get_json_blob(im, chex, obj_int(cdesc, "size"), "image config");
        if (!config_bytes)
                return -1;
        config = parse_json(im, config_bytes, "image config");
        if (!config || !JSON_NODE_HOLDS_OBJECT(config))
                return image_fail(im, KILN_IMPORT_EXIT_INVALID, "image config: not an object");
        if (check_platform(im, json_node_get_object(config)) < 0)
                return -1;
        layers = obj_array(m, "layers");
        if (!layers)
                return image_fail(im, KILN_IMPORT_EXIT_INVALID, "manifest: no layers");
        diff_ids = config_diff_ids(im, json_node_get_object(config), json_array_get_length(layers));
        if (!diff_ids)
                return -1;
        for (guint i = 0; i < diff_ids->len; i++) {
                JsonNode *n = json_array_get_element(layers, i);
                JsonObject *l = JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
                const char *bhex = digest_hex(im, obj_string(l, "digest"), "manifest layer");

                if (!bhex || layer(im, i, bhex, obj_int(l, "size"), diff_ids->pdata[i]) < 0)
                        return -1;
        }
        im->config = g_steal_pointer(&config);
        return 0;
}

/* ---- oci:DIR ---- */

static int layout_layer(Image *im, guint i, const char *blob_hex, gint64 size, const char *diff_hex)
{
        g_autofree char *name = g_strconcat("blobs/sha256/", blob_hex, NULL);
        _cleanup_close_ int fd = open_in_layout(im, name);
        g_autofree char *fingerprint = NULL;
        BlobReader r;
        int ret;

        if (fd < 0)
                return -1;
        fingerprint = fd_fingerprint(fd, "blob", blob_hex);
        if (fingerprint && layer_exists(im, diff_hex)) {
                g_autofree char *known = read_fingerprint(im, fingerprint, KILN_LAYER_DIGEST_LENGTH + 1);
                if (known && strlen(known) == KILN_LAYER_DIGEST_LENGTH + 1 &&
                    strncmp(known, diff_hex, KILN_LAYER_DIGEST_LENGTH) == 0) {
                        /* This very file was read and verified before: its blob digest and diff_id
                         * are the ones asked for, and the layer is stored. */
                        g_ptr_array_add(im->layer_hex, g_strdup(diff_hex));
                        g_ptr_array_add(im->layer_tmp, NULL);
                        return 0;
                }
        }
        blob_reader_init(&r, im);
        r.fd = fd;
        if (size >= 0)
                r.max = (uint64_t)size;
        ret = take_layer(im, i, &r, blob_hex, diff_hex);
        /* Recorded once the whole image is in: a refused image leaves nothing. */
        if (ret == 0 && fingerprint)
                g_ptr_array_add(im->records, g_strdup_printf("%s %s\n", fingerprint, diff_hex));
        if (ret == 0 && size >= 0 && r.n != (uint64_t)size)
                ret = image_fail(im, KILN_IMPORT_EXIT_INVALID,
                                 "layer %u: %" PRIu64 " bytes, its descriptor says %" G_GINT64_FORMAT, i,
                                 r.n, size);
        blob_reader_clear(&r);
        return ret;
}

static int read_layout(Image *im)
{
        g_autoptr(GBytes) index = NULL;
        _cleanup_close_ int fd = -1;
        BlobReader r;
        char hex[65];

        /* oci-layout says what this is; its version is not checked (1.0.0 is the only one). */
        fd = open_in_layout(im, "oci-layout");
        if (fd < 0)
                return -1;
        kiln_close_fdp(&fd);
        fd = open_in_layout(im, "index.json");
        if (fd < 0)
                return -1;
        blob_reader_init(&r, im);
        r.fd = fd;
        index = read_small(im, &r, JSON_MAX, "index.json", hex);
        blob_reader_clear(&r);
        if (!index)
                return -1;
        return read_oci(im, index, layout_layer);
}

/* ---- archives ---- */

static void small_free(gpointer p)
{
        Small *s = p;
        g_bytes_unref(s->data);
        g_free(s);
}

static void large_free(gpointer p)
{
        Large *l = p;
        g_free(l->error);
        g_free(l);
}

/* An entry's path as a key: no leading "./" or "/", no empty or "." components; NULL for ".." ones. */
static char *archive_key(const char *path)
{
        g_auto(GStrv) parts = g_strsplit(path, "/", -1);
        GString *s = g_string_new(NULL);

        for (size_t i = 0; parts[i]; i++) {
                if (!parts[i][0] || g_str_equal(parts[i], "."))
                        continue;
                if (g_str_equal(parts[i], "..")) {
                        g_string_free(s, TRUE);
                        return NULL;
                }
                if (s->len)
                        g_string_append_c(s, '/');
                g_string_append(s, parts[i]);
        }
        return g_string_free(s, FALSE);
}

/* One pass over the archive: small entries into memory, large ones unpacked as they stream. */
static int stream_archive(Image *im)
{
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        guint n_large = 0;
        int r, ret = 0;

        archive_read_support_format_tar(a);
        archive_read_support_format_gnutar(a);
        archive_read_support_filter_all(a);
        if (archive_read_open_fd(a, im->root_fd, READ_BUFFER_SIZE) != ARCHIVE_OK) {
                ret = image_fail(im, KILN_IMPORT_EXIT_INVALID, "the archive: %s", archive_error_string(a));
                goto out;
        }
        while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
                const char *path = archive_entry_pathname(e);
                g_autofree char *key = path ? archive_key(path) : NULL;
                BlobReader br;

                if (terminating) {
                        ret = image_fail(im, KILN_IMPORT_EXIT_FAILED, "stopped");
                        goto out;
                }
                if (!key || !key[0] || archive_entry_filetype(e) != AE_IFREG ||
                    g_hash_table_contains(im->small, key) || g_hash_table_contains(im->large, key))
                        continue; /* not a file the image can name; a repeated name keeps the first */
                blob_reader_init(&br, im);
                br.archive = a;
                if (archive_entry_size_is_set(e) && archive_entry_size(e) <= SMALL_BLOB_MAX) {
                        Small *s = g_new0(Small, 1);

                        im->small_total += (uint64_t)archive_entry_size(e);
                        if (im->small_total > SMALL_TOTAL_MAX) {
                                g_free(s);
                                blob_reader_clear(&br);
                                ret = image_fail(im, KILN_IMPORT_EXIT_LIMIT,
                                                 "the archive holds more than %d bytes of small files",
                                                 SMALL_TOTAL_MAX);
                                goto out;
                        }
                        s->data = read_small(im, &br, SMALL_BLOB_MAX, key, s->hex);
                        blob_reader_clear(&br);
                        if (!s->data) {
                                g_free(s);
                                ret = -1;
                                goto out;
                        }
                        g_hash_table_insert(im->small, g_steal_pointer(&key), s);
                } else {
                        Large *l = g_new0(Large, 1);
                        g_autofree char *what = NULL;

                        if (++n_large > ARCHIVE_LARGE_MAX) {
                                g_free(l);
                                blob_reader_clear(&br);
                                ret = image_fail(im, KILN_IMPORT_EXIT_LIMIT,
                                                 "the archive holds more than %d large files",
                                                 ARCHIVE_LARGE_MAX);
                                goto out;
                        }
                        what = kiln_escape_for_message(key, strlen(key));
                        l->tmp = unpack_layer(im, &br, what);
                        if (!l->tmp) {
                                /* A limit or our own failure stops everything; an entry that is not a
                                 * layer stops the import only if the image needs it. */
                                if (im->exit_code != KILN_IMPORT_EXIT_INVALID || br.error) {
                                        g_free(l);
                                        blob_reader_clear(&br);
                                        ret = -1;
                                        goto out;
                                }
                                l->error = g_steal_pointer(&im->error);
                                l->error_code = im->exit_code;
                                im->exit_code = 0;
                                if (blob_drain(&br) < 0) {
                                        large_free(l);
                                        blob_reader_clear(&br);
                                        ret = image_fail(im, KILN_IMPORT_EXIT_INVALID, "the archive: %s",
                                                         archive_error_string(a));
                                        goto out;
                                }
                        }
                        hex_of(br.sha, l->blob_hex);
                        blob_reader_clear(&br);
                        g_hash_table_insert(im->large, g_steal_pointer(&key), l);
                }
        }
        if (r != ARCHIVE_EOF)
                ret = image_fail(im, KILN_IMPORT_EXIT_INVALID, "the archive: %s", archive_error_string(a));
out:
        archive_read_free(a);
        return ret;
}

/* Layer @i named by archive path @key: unpacked while streaming, or small and unpacked now. */
static int archive_layer_by_key(Image *im, guint i, const char *key, const char *blob_hex,
                                const char *diff_hex)
{
        Large *l = g_hash_table_lookup(im->large, key);
        Small *s;
        BlobReader r;
        int ret;

        if (l) {
                if (!l->tmp)
                        return image_fail(im, l->error_code, "%s", l->error);
                if (check_layer(im, i, blob_hex, l->blob_hex, diff_hex, l->tmp->diff_hex) < 0)
                        return -1;
                /* Stored already: the copy just made is dropped with the other tmp trees. */
                g_ptr_array_add(im->layer_hex, g_strdup(diff_hex));
                g_ptr_array_add(im->layer_tmp, layer_exists(im, diff_hex) ? NULL : l->tmp);
                return 0;
        }
        s = g_hash_table_lookup(im->small, key);
        if (!s) {
                g_autofree char *k = kiln_escape_for_message(key, strlen(key));
                return image_fail(im, KILN_IMPORT_EXIT_NOT_FOUND, "layer %u: '%s' is not in the archive", i,
                                  k);
        }
        blob_reader_init(&r, im);
        r.is_mem = true;
        r.mem = g_bytes_get_data(s->data, &r.mem_len);
        ret = take_layer(im, i, &r, blob_hex, diff_hex);
        blob_reader_clear(&r);
        return ret;
}

static int archive_oci_layer(Image *im, guint i, const char *blob_hex, gint64 size, const char *diff_hex)
{
        g_autofree char *key = g_strconcat("blobs/sha256/", blob_hex, NULL);

        (void)size; /* the digest is checked, which covers the size */
        return archive_layer_by_key(im, i, key, blob_hex, diff_hex);
}

/* A reference without the registry docker and skopeo add: "docker.io/library/x:t" and
 * "docker.io/x/y:t" and "localhost/x:t" are "x:t" and "x/y:t". */
static const char *short_ref(const char *ref)
{
        static const char *const prefixes[] = {"docker.io/library/", "docker.io/", "localhost/"};

        for (size_t i = 0; i < G_N_ELEMENTS(prefixes); i++)
                if (g_str_has_prefix(ref, prefixes[i]))
                        return ref + strlen(prefixes[i]);
        return ref;
}

/* A docker-archive's manifest.json entry to use: NAME:TAG among RepoTags, @N by position, else the
 * only one. */
static JsonObject *pick_docker_entry(Image *im, JsonArray *entries)
{
        const char *ref = im->o->ref;
        guint n = json_array_get_length(entries);

        if (ref && ref[0] == '@') {
                guint64 idx;
                if (!g_ascii_string_to_unsigned(ref + 1, 10, 0, G_MAXUINT32, &idx, NULL) || idx >= n) {
                        image_fail(im, KILN_IMPORT_EXIT_NOT_FOUND,
                                   "manifest.json has no image %s (it has %u)", ref, n);
                        return NULL;
                }
                return json_node_get_object(json_array_get_element(entries, (guint)idx));
        }
        if (!ref) {
                if (n != 1) {
                        image_fail(im, KILN_IMPORT_EXIT_INVALID,
                                   "manifest.json names %u images: name one (docker-archive:FILE:NAME:TAG "
                                   "or @N)",
                                   n);
                        return NULL;
                }
                return json_node_get_object(json_array_get_element(entries, 0));
        }
        for (guint i = 0; i < n; i++) {
                JsonArray *tags =
                        obj_array(json_node_get_object(json_array_get_element(entries, i)), "RepoTags");
                for (guint j = 0; tags && j < json_array_get_length(tags); j++) {
                        JsonNode *t = json_array_get_element(tags, j);
                        const char *tag =
                                JSON_NODE_HOLDS_VALUE(t) && json_node_get_value_type(t) == G_TYPE_STRING
                                        ? json_node_get_string(t)
                                        : NULL;

                        if (tag && (g_str_equal(tag, ref) || g_str_equal(short_ref(tag), short_ref(ref))))
                                return json_node_get_object(json_array_get_element(entries, i));
                }
        }
        {
                g_autofree char *r = kiln_escape_for_message(ref, strlen(ref));
                image_fail(im, KILN_IMPORT_EXIT_NOT_FOUND, "manifest.json names no image '%s'", r);
        }
        return NULL;
}

/* The hex digest a docker-archive's file name carries ("<hex>.json", "<hex>.tar", "<hex>/layer.tar" is
 * not one, "blobs/sha256/<hex>"), or NULL. */
static char *name_digest(const char *key, const char *suffix)
{
        const char *base = strrchr(key, '/') ? strrchr(key, '/') + 1 : key;
        g_autofree char *hex = NULL;

        if (g_str_has_prefix(key, "blobs/sha256/"))
                hex = g_strdup(key + strlen("blobs/sha256/"));
        else if (g_str_has_suffix(base, suffix))
                hex = g_strndup(base, strlen(base) - strlen(suffix));
        return hex && kiln_hex64_is_valid(hex) ? g_steal_pointer(&hex) : NULL;
}

static int read_docker_archive(Image *im)
{
        Small *ms = g_hash_table_lookup(im->small, "manifest.json"), *cs;
        g_autoptr(JsonNode) manifest = NULL, config = NULL;
        g_autoptr(GPtrArray) diff_ids = NULL;
        g_autofree char *config_key = NULL, *config_hex = NULL;
        JsonObject *entry;
        JsonArray *layers;

        if (!ms)
                return image_fail(im, KILN_IMPORT_EXIT_INVALID,
                                  "the archive has no manifest.json (not a docker-archive)");
        manifest = parse_json(im, ms->data, "manifest.json");
        if (!manifest || !JSON_NODE_HOLDS_ARRAY(manifest))
                return image_fail(im, KILN_IMPORT_EXIT_INVALID, "manifest.json: not a JSON array");
        entry = pick_docker_entry(im, json_node_get_array(manifest));
        if (!entry)
                return -1;
        config_key = obj_string(entry, "Config") ? archive_key(obj_string(entry, "Config")) : NULL;
        if (!config_key || !(cs = g_hash_table_lookup(im->small, config_key)))
                return image_fail(im, KILN_IMPORT_EXIT_INVALID,
                                  "manifest.json: its Config is not in the archive");
        config_hex = name_digest(config_key, ".json");
        if (config_hex && !g_str_equal(config_hex, cs->hex))
                return image_fail(
                        im, KILN_IMPORT_EXIT_INVALID,
                        "image config '%s': its bytes hash to sha256:%s, not to the digest its name says",
                        config_key, cs->hex);
        config = parse_json(im, cs->data, "image config");
        if (!config || !JSON_NODE_HOLDS_OBJECT(config))
                return image_fail(im, KILN_IMPORT_EXIT_INVALID, "image config: not an object");
        if (check_platform(im, json_node_get_object(config)) < 0)
                return -1;
        layers = obj_array(entry, "Layers");
        if (!layers)
                return image_fail(im, KILN_IMPORT_EXIT_INVALID, "manifest.json: no Layers");
        diff_ids = config_diff_ids(im, json_node_get_object(config), json_array_get_length(layers));
        if (!diff_ids)
                return -1;
        for (guint i = 0; i < diff_ids->len; i++) {
                JsonNode *n = json_array_get_element(layers, i);
                const char *p = JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING
                                        ? json_node_get_string(n)
                                        : NULL;
                g_autofree char *key = p ? archive_key(p) : NULL;
                g_autofree char *blob_hex = NULL;

                if (!key)
                        return image_fail(im, KILN_IMPORT_EXIT_INVALID,
                                          "manifest.json: Layers[%u] is not a path", i);
                /* Only an OCI-style name is a blob digest; "<hex>.tar" names are diff_ids (checked anyway).
                 */
                if (g_str_has_prefix(key, "blobs/sha256/"))
                        blob_hex = name_digest(key, "");
                if (archive_layer_by_key(im, i, key, blob_hex, diff_ids->pdata[i]) < 0)
                        return -1;
        }
        im->digest = g_strconcat("sha256:", cs->hex, NULL);
        im->config = g_steal_pointer(&config);
        return 0;
}

static int read_archive(Image *im)
{
        if (stream_archive(im) < 0)
                return -1;
        if (g_str_equal(im->o->kind, "docker-archive"))
                return read_docker_archive(im);
        {
                Small *index = g_hash_table_lookup(im->small, "index.json");
                if (!index)
                        return image_fail(im, KILN_IMPORT_EXIT_INVALID,
                                          "the archive has no index.json (not an oci-archive)");
                return read_oci(im, index->data, archive_oci_layer);
        }
}

/* ---- the result ---- */

static int print_result(Image *im, char **text_out)
{
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = NULL;
        g_autofree char *text = NULL;
        JsonObject *c = json_node_get_object(im->config);
        JsonNode *n;

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "digest");
        json_builder_add_string_value(b, im->digest);
        json_builder_set_member_name(b, "layers");
        json_builder_begin_array(b);
        for (guint i = 0; i < im->layer_hex->len; i++)
                json_builder_add_string_value(b, im->layer_hex->pdata[i]);
        json_builder_end_array(b);
        /* Only the parts a builder takes; kilnd checks each value again. */
        if ((n = json_object_get_member(c, "config")) && JSON_NODE_HOLDS_OBJECT(n)) {
                json_builder_set_member_name(b, "config");
                json_builder_add_value(b, json_node_copy(n));
        }
        if ((n = json_object_get_member(c, "history")) && JSON_NODE_HOLDS_ARRAY(n)) {
                json_builder_set_member_name(b, "history");
                json_builder_add_value(b, json_node_copy(n));
        }
        if (obj_string(c, "os")) {
                json_builder_set_member_name(b, "os");
                json_builder_add_string_value(b, obj_string(c, "os"));
        }
        if (obj_string(c, "architecture")) {
                json_builder_set_member_name(b, "architecture");
                json_builder_add_string_value(b, obj_string(c, "architecture"));
        }
        json_builder_end_object(b);
        root = json_builder_get_root(b);
        json_generator_set_root(gen, root);
        text = json_generator_to_data(gen, NULL);
        if (printf("%s\n", text) < 0 || fflush(stdout) != 0)
                return image_fail_errno(im, errno, "write", "stdout");
        if (text_out)
                *text_out = g_steal_pointer(&text);
        return 0;
}

/* An archive read before, unchanged: its recorded result, if every layer it names is still stored. */
static char *known_archive(Image *im, const char *fingerprint)
{
        g_autofree char *record = read_fingerprint(im, fingerprint, ARCHIVE_RECORD_MAX + 128);
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        const char *json;
        JsonArray *layers;
        JsonNode *root;

        if (!record || strlen(record) < KILN_LAYER_DIGEST_LENGTH + 1 ||
            record[KILN_LAYER_DIGEST_LENGTH] != '\n')
                return NULL;
        json = record + KILN_LAYER_DIGEST_LENGTH + 1;
        if (!json_parser_load_from_data(parser, json, -1, NULL) || !(root = json_parser_get_root(parser)) ||
            !JSON_NODE_HOLDS_OBJECT(root) || !(layers = obj_array(json_node_get_object(root), "layers")))
                return NULL;
        for (guint i = 0; i < json_array_get_length(layers); i++) {
                const char *l = json_array_get_string_element(layers, i);
                if (!l || !kiln_hex64_is_valid(l) || !layer_exists(im, l))
                        return NULL;
        }
        return g_strdup(json);
}

/* ---- options and main ---- */

static int parse_platform(ImageOptions *o, const char *text)
{
        g_auto(GStrv) parts = g_strsplit(text, "/", 4);
        guint n = g_strv_length(parts);

        if (n < 2 || n > 3 || !parts[0][0] || !parts[1][0] || (n == 3 && !parts[2][0]))
                return -1;
        g_free(o->os);
        g_free(o->arch);
        g_free(o->variant);
        o->os = g_strdup(parts[0]);
        o->arch = g_strdup(parts[1]);
        o->variant = n == 3 ? g_strdup(parts[2]) : NULL;
        return 0;
}

static int parse_image_options(int argc, char **argv, ImageOptions *o)
{
        for (int i = 1; i + 1 < argc; i += 2) {
                const char *arg = argv[i], *val = argv[i + 1];
                guint64 v;

                if (g_str_equal(arg, "--image")) {
                        if (!g_str_equal(val, "oci") && !g_str_equal(val, "oci-archive") &&
                            !g_str_equal(val, "docker-archive"))
                                return -1;
                        o->kind = val;
                } else if (g_str_equal(arg, "--uid") || g_str_equal(arg, "--gid")) {
                        if (!g_ascii_string_to_unsigned(val, 10, 0, UINT32_MAX - 1, &v, NULL))
                                return -1;
                        if (arg[2] == 'u')
                                o->uid = (uid_t)v, o->have_uid = true;
                        else
                                o->gid = (gid_t)v, o->have_gid = true;
                } else if (g_str_equal(arg, "--groups")) {
                        g_auto(GStrv) parts = g_strsplit(val, ",", -1);
                        size_t n = g_strv_length(parts);
                        if (o->groups || n > KILN_IMPORT_MAX_GROUPS)
                                return -1;
                        o->groups = g_new0(gid_t, n + 1);
                        for (size_t j = 0; j < n; j++) {
                                if (!g_ascii_string_to_unsigned(parts[j], 10, 0, UINT32_MAX - 1, &v, NULL))
                                        return -1;
                                o->groups[j] = (gid_t)v;
                        }
                        o->n_groups = n;
                } else if (g_str_equal(arg, "--layers")) {
                        o->layers = val;
                } else if (g_str_equal(arg, "--path")) {
                        o->path = val;
                } else if (g_str_equal(arg, "--fd")) {
                        if (!g_ascii_string_to_unsigned(val, 10, 3, INT_MAX, &v, NULL))
                                return -1;
                        o->fd = (int)v;
                } else if (g_str_equal(arg, "--ref")) {
                        if (!val[0] || strlen(val) > 4096)
                                return -1;
                        o->ref = val;
                } else if (g_str_equal(arg, "--platform")) {
                        if (parse_platform(o, val) < 0)
                                return -1;
                } else if (g_str_equal(arg, "--max-bytes") || g_str_equal(arg, "--max-layers") ||
                           g_str_equal(arg, "--max-entries")) {
                        if (!g_ascii_string_to_unsigned(val, 10, 1, UINT64_MAX, &v, NULL))
                                return -1;
                        if (arg[6] == 'b')
                                o->max_bytes = v;
                        else if (arg[6] == 'l')
                                o->max_layers = v;
                        else
                                o->max_entries = v;
                } else if (g_str_equal(arg, "--parent-pid")) {
                        if (!g_ascii_string_to_unsigned(val, 10, 1, INT_MAX, &v, NULL))
                                return -1;
                        o->parent_pid = (pid_t)v;
                } else {
                        return -1;
                }
        }
        if (argc % 2 != 1 || !o->kind || !o->have_uid || !o->have_gid || !o->layers ||
            !g_path_is_absolute(o->layers) || !!o->path == (o->fd >= 0))
                return -1;
        if (o->path && (!g_path_is_absolute(o->path) || strlen(o->path) >= PATH_MAX))
                return -1;
        return 0;
}

int kiln_image_main(int argc, char **argv)
{
        ImageOptions o = {.fd = -1,
                          .max_bytes = UINT64_MAX,
                          .max_layers = 128,
                          .max_entries = KILN_IMPORT_MAX_ENTRIES};
        Image im = {.o = &o, .layers_fd = -1, .sock = -1, .child = -1, .root_fd = -1};
        pid_t parent = getppid();
        struct sigaction sa = {.sa_handler = on_signal};
        int keep[1], exit_code = KILN_IMPORT_EXIT_OK;
        g_autofree char *archive_fingerprint = NULL, *known = NULL, *result = NULL;
        struct stat st;

        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        umask(077);
        host_platform(&o.os, &o.arch, &o.variant);
        g_clear_pointer(&o.variant, g_free); /* any variant of the host's architecture, unless asked */
        if (parse_image_options(argc, argv, &o) < 0) {
                fprintf(stderr, "usage: kiln-import --image oci|oci-archive|docker-archive --uid U --gid G "
                                "[--groups G1,...] --layers DIR (--path ABSOLUTE-PATH | --fd N) [--ref REF] "
                                "[--platform OS/ARCH[/VARIANT]] [--max-bytes N] [--max-layers N] "
                                "[--max-entries N] [--parent-pid P]\n");
                exit_code = KILN_IMPORT_EXIT_USAGE;
                goto out_options;
        }
        /* Killed with kilnd; gone at once if it died before we could ask for that. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 ||
            getppid() != (o.parent_pid ? o.parent_pid : parent)) {
                fprintf(stderr, "the service that started kiln-import is gone\n");
                exit_code = KILN_IMPORT_EXIT_FAILED;
                goto out_options;
        }
        keep[0] = o.fd;
        kiln_close_all_fds_except(keep, 1);
        if (chdir("/") < 0) {
                exit_code = KILN_IMPORT_EXIT_FAILED;
                goto out_options;
        }
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);

        im.tmps = g_ptr_array_new_with_free_func((GDestroyNotify)tmp_free);
        im.layer_hex = g_ptr_array_new_with_free_func(g_free);
        im.layer_tmp = g_ptr_array_new();
        im.records = g_ptr_array_new_with_free_func(g_free);
        im.buffer = g_malloc(READ_BUFFER_SIZE);

        /* STATE/layers must be ours and writable by nobody else: names in it are trusted below. */
        im.layers_fd = open(o.layers, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (im.layers_fd < 0) {
                image_fail_errno(&im, errno, "open", o.layers);
                goto out;
        }
        if (fstat(im.layers_fd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 022)) {
                image_fail(&im, KILN_IMPORT_EXIT_FAILED,
                           "'%s' must be owned by uid %u and not writable by others", o.layers,
                           (unsigned)geteuid());
                goto out;
        }

        if (start_reader(&im) < 0)
                goto out;
        if (o.fd >= 0)
                kiln_close_fdp(&o.fd); /* the reader's now */
        im.root_fd = reader_receive(&im, o.path ? o.path : "source");
        if (im.root_fd < 0)
                goto out;
        if (fstat(im.root_fd, &st) < 0) {
                image_fail_errno(&im, errno, "fstat", "source");
                goto out;
        }
        if (g_str_equal(o.kind, "oci")) {
                if (!S_ISDIR(st.st_mode)) {
                        image_fail(&im, KILN_IMPORT_EXIT_NOT_DIRECTORY, "'%s' is not a directory (oci:DIR)",
                                   o.path ? o.path : "source");
                        goto out;
                }
                if (read_layout(&im) < 0)
                        goto out;
        } else {
                if (check_file(&im, im.root_fd, o.path ? o.path : "source") < 0)
                        goto out;
                /* The archive is one file: the reader has nothing more to open. */
                kiln_close_fdp(&im.sock);
                {
                        g_autofree char *extra = g_strjoin("\n", o.kind, o.ref ? o.ref : "", o.os, o.arch,
                                                           o.variant ? o.variant : "", NULL);
                        archive_fingerprint = fd_fingerprint(im.root_fd, "archive", extra);
                }
                if (archive_fingerprint && (known = known_archive(&im, archive_fingerprint))) {
                        if (printf("%s", known) < 0 || fflush(stdout) != 0)
                                image_fail_errno(&im, errno, "write", "stdout");
                        goto out;
                }
                im.small = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, small_free);
                im.large = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, large_free);
                if (read_archive(&im) < 0)
                        goto out;
        }
        if (terminating) {
                image_fail(&im, KILN_IMPORT_EXIT_FAILED, "stopped");
                goto out;
        }
        if (publish(&im) < 0 || print_result(&im, &result) < 0)
                goto out;
        for (guint i = 0; i < im.records->len; i++) {
                char *line = im.records->pdata[i], *space = strchr(line, ' ');
                *space = '\0';
                write_record(&im, FINGERPRINTS_DIR, line, space + 1);
        }
        if (archive_fingerprint && im.layer_hex->len > 0 && strlen(result) <= ARCHIVE_RECORD_MAX) {
                g_autofree char *record =
                        g_strdup_printf("%s\n%s\n", (char *)im.layer_hex->pdata[0], result);
                write_record(&im, FINGERPRINTS_DIR, archive_fingerprint, record);
        }

out:
        if (im.error) {
                fprintf(stderr, "%s\n", im.error);
                exit_code = im.exit_code ? im.exit_code : KILN_IMPORT_EXIT_FAILED;
        }
        kiln_close_fdp(&im.sock);
        if (im.child > 0) {
                int status;
                kill(im.child, SIGKILL);
                while (waitpid(im.child, &status, 0) < 0 && errno == EINTR)
                        ;
        }
        kiln_close_fdp(&im.root_fd);
        if (im.tmps)
                remove_tmps(&im);
        if (im.small)
                g_hash_table_unref(im.small);
        if (im.large)
                g_hash_table_unref(im.large);
        if (im.tmps)
                g_ptr_array_unref(im.tmps);
        if (im.layer_hex)
                g_ptr_array_unref(im.layer_hex);
        if (im.layer_tmp)
                g_ptr_array_unref(im.layer_tmp);
        if (im.records)
                g_ptr_array_unref(im.records);
        if (im.config)
                json_node_unref(im.config);
        g_free(im.digest);
        g_free(im.buffer);
        g_free(im.error);
        kiln_close_fdp(&im.layers_fd);
out_options:
        if (o.fd >= 0)
                close(o.fd);
        g_free(o.groups);
        g_free(o.os);
        g_free(o.arch);
        g_free(o.variant);
        return exit_code;
}

/* ---- a stored layer's digests, without unpacking ---- */

typedef struct RawSource {
        KilnLayerReadFunc read;
        void *data;
} RawSource;

static la_ssize_t raw_read(struct archive *a, void *data, const void **buf)
{
        RawSource *s = data;
        ssize_t n = s->read(s->data, buf);

        if (n < 0) {
                archive_set_error(a, errno, "read: %s", g_strerror(errno));
                return -1;
        }
        return n;
}

gboolean kiln_image_hash_layer(KilnLayerReadFunc read, void *data, char diff_hex[65], GError **error)
{
        struct archive *a = archive_read_new();
        g_autoptr(GChecksum) sha = g_checksum_new(G_CHECKSUM_SHA256);
        g_autofree uint8_t *buf = g_malloc(READ_BUFFER_SIZE);
        RawSource src = {read, data};
        struct archive_entry *e;
        gboolean ok = FALSE;
        la_ssize_t n;

        /* Any compression libarchive knows, found from the bytes; the "raw" format is the decompressed
         * stream as it is, which is what a diff_id is the digest of. */
        archive_read_support_filter_all(a);
        archive_read_support_format_raw(a);
        if (archive_read_open(a, &src, NULL, raw_read, NULL) != ARCHIVE_OK ||
            archive_read_next_header(a, &e) != ARCHIVE_OK) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "not a layer: %s",
                            archive_error_string(a) ? archive_error_string(a) : "empty");
                goto out;
        }
        while ((n = archive_read_data(a, buf, READ_BUFFER_SIZE)) > 0)
                g_checksum_update(sha, buf, n);
        if (n < 0) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "cannot decompress: %s",
                            archive_error_string(a));
                goto out;
        }
        g_strlcpy(diff_hex, g_checksum_get_string(sha), 65);
        ok = TRUE;
out:
        archive_read_free(a);
        return ok;
}

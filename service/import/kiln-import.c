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
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <glib.h>

#include "base/fd-passing.h"
#include "base/fs-util.h"
#include "image-read.h"
#include "import-protocol.h"
#include "base/kiln-common.h"
#include "layer-digest.h"
#include "records.h"
#include "dir-import.h"

volatile sig_atomic_t import_terminating;

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

int import_fail(Importer *im, int exit_code, const char *format, ...) G_GNUC_PRINTF(3, 4);

int import_fail(Importer *im, int exit_code, const char *format, ...)
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
int import_fail_errno(Importer *im, int err, const char *syscall_name, const char *path)
{
        g_autofree char *p = kiln_escape_for_message(path, strlen(path));
        return import_fail(im, KILN_IMPORT_EXIT_FAILED, "%s '%s': %s", syscall_name, p, g_strerror(err));
}

const char *import_display(const char *path)
{
        return path[0] ? path : ".";
}

char *import_join_path(const char *dir, const char *name)
{
        return dir[0] ? g_strconcat(dir, "/", name, NULL) : g_strdup(name);
}

static void on_signal(G_GNUC_UNUSED int sig)
{
        import_terminating = 1;
}

bool import_check_terminating(Importer *im)
{
        if (import_terminating) {
                import_fail(im, KILN_IMPORT_EXIT_FAILED, "import cancelled");
                return true;
        }
        return false;
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

/* An ERROR record: the reader's account of why it stopped. Only the message depends on it. */
static int handle_error(Importer *im, const KilnImportRecord *rec)
{
        g_autofree char *p = kiln_escape_for_message(rec->name, rec->h.name_len);
        int e = rec->h.error;

        switch (rec->h.what) {
        case KILN_IMPORT_WHAT_OPEN:
                return import_fail(im, kiln_import_exit_code_for_errno(e), "cannot open '%s': %s", p,
                                   g_strerror(e));
        case KILN_IMPORT_WHAT_STAT:
                return import_fail(im, kiln_import_exit_code_for_errno(e), "cannot stat '%s': %s", p,
                                   g_strerror(e));
        case KILN_IMPORT_WHAT_READDIR:
                return import_fail(im, kiln_import_exit_code_for_errno(e), "cannot read directory '%s': %s",
                                   p, g_strerror(e));
        case KILN_IMPORT_WHAT_CHANGED:
                return import_fail(im, KILN_IMPORT_EXIT_FAILED, "'%s' changed while being imported", p);
        case KILN_IMPORT_WHAT_TOO_DEEP:
                return import_fail(im, KILN_IMPORT_EXIT_INVALID, "'%s': directories nested deeper than %d",
                                   p, KILN_IMPORT_MAX_DEPTH);
        case KILN_IMPORT_WHAT_TOO_MANY:
                return import_fail(im, KILN_IMPORT_EXIT_INVALID, "'%s': more than %u entries in the tree", p,
                                   KILN_IMPORT_MAX_ENTRIES);
        case KILN_IMPORT_WHAT_PATH_TOO_LONG:
                return import_fail(im, KILN_IMPORT_EXIT_INVALID,
                                   "'%s': a path below it is longer than %d bytes", p, KILN_IMPORT_MAX_PATH);
        case KILN_IMPORT_WHAT_PSEUDO_FS:
                return import_fail(im, KILN_IMPORT_EXIT_INVALID,
                                   "'%s' is on a kernel pseudo file system, which is not imported", p);
        case KILN_IMPORT_WHAT_DROP:
                return import_fail(im, KILN_IMPORT_EXIT_FAILED,
                                   "cannot switch to uid/gid of the caller (%s): %s", p, g_strerror(e));
        default:
                return import_fail(im, KILN_IMPORT_EXIT_FAILED, "reader failed: '%s': %s", p, g_strerror(e));
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
                        return import_fail_errno(im, errno, "recvmsg", "reader socket");
                if (import_check_terminating(im))
                        return -1;
        }

        if (n == 0)
                return 0;
        if ((msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || (size_t)n < sizeof(rec->h) ||
            rec->h.name_len != (size_t)n - sizeof(rec->h))
                return import_fail(im, KILN_IMPORT_EXIT_FAILED, "reader protocol error: bad record");
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
                        return import_fail(im, KILN_IMPORT_EXIT_FAILED,
                                           "the reader process ended unexpectedly");
                }

                switch (rec.h.kind) {
                case KILN_IMPORT_RECORD_ENTRY:
                        if (fd < 0)
                                return import_fail(im, KILN_IMPORT_EXIT_FAILED,
                                                   "reader protocol error: no descriptor");
                        if (import_handle_entry(im, rec.h.parent, rec.name, rec.h.name_len, fd) < 0)
                                return -1;
                        /* Acknowledge, so the reader may send more. If the reader is gone, the
                         * next receive says why (its ERROR record, or the end of the stream). */
                        (void)send(im->sock, "", 1, MSG_NOSIGNAL);
                        break;
                case KILN_IMPORT_RECORD_DONE:
                        if (im->n_records == 0)
                                return import_fail(im, KILN_IMPORT_EXIT_FAILED,
                                                   "reader protocol error: nothing sent");
                        while (im->stack->len > 0)
                                if (import_stack_pop(im) < 0)
                                        return -1;
                        if (reap_child(im, false) < 0)
                                return import_fail(im, KILN_IMPORT_EXIT_FAILED, "the reader process failed");
                        return 0;
                case KILN_IMPORT_RECORD_ERROR:
                        return handle_error(im, &rec);
                default:
                        return import_fail(im, KILN_IMPORT_EXIT_FAILED,
                                           "reader protocol error: record kind %u", rec.h.kind);
                }
                if (import_check_terminating(im))
                        return -1;
        }
}

static int make_tmp_dir(Importer *im)
{
        for (int attempt = 0; attempt < 100; attempt++) {
                uint8_t rnd[6];

                if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
                        return import_fail_errno(im, errno, "getrandom", "");
                snprintf(im->tmp_name, sizeof(im->tmp_name), ".tmp-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
                         rnd[2], rnd[3], rnd[4], rnd[5]);
                /* A fresh name in STATE/layers (root-only): nobody else can have a handle on it. */
                if (mkdirat(im->layers_fd, im->tmp_name, 0700) == 0) {
                        struct stat a, b;

                        im->tmp_fd = openat(im->layers_fd, im->tmp_name,
                                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (im->tmp_fd < 0)
                                return import_fail_errno(im, errno, "openat", im->tmp_name);
                        /* Locked while it is written, on a descriptor of its own (the root Dir closes
                         * tmp_fd when the tree is complete): kilnd's start-up clean-up removes only
                         * tmp trees whose lock it can take. */
                        im->lock_fd = fcntl(im->tmp_fd, F_DUPFD_CLOEXEC, 3);
                        if (im->lock_fd < 0)
                                return import_fail_errno(im, errno, "dup", im->tmp_name);
                        if (flock(im->lock_fd, LOCK_EX | LOCK_NB) < 0)
                                return import_fail_errno(im, errno, "flock", im->tmp_name);
                        /* A clean-up that took the lock between mkdirat and flock has removed the
                         * directory: then the name no longer leads to it. */
                        if (fstat(im->tmp_fd, &a) < 0 ||
                            fstatat(im->layers_fd, im->tmp_name, &b, AT_SYMLINK_NOFOLLOW) < 0 ||
                            a.st_dev != b.st_dev || a.st_ino != b.st_ino)
                                return import_fail(im, KILN_IMPORT_EXIT_FAILED,
                                                   "'%s' was removed while being made", im->tmp_name);
                        return 0;
                }
                if (errno != EEXIST)
                        return import_fail_errno(im, errno, "mkdirat", im->tmp_name);
        }
        im->tmp_name[0] = '\0';
        return import_fail(im, KILN_IMPORT_EXIT_FAILED, "cannot find a free temporary name");
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
        tally.inodes = g_hash_table_new_full(import_inode_hash, import_inode_equal, g_free, NULL);
        r = nftw(path, tally_entry, 16, FTW_PHYS | FTW_MOUNT);
        g_clear_pointer(&tally.inodes, g_hash_table_unref);
        if (r != 0)
                return import_fail_errno(im, errno ? errno : EIO, "verify", im->tmp_name);
        if (tally.entries != im->n_records || tally.bytes != im->bytes)
                return import_fail(im, KILN_IMPORT_EXIT_FAILED,
                                   "the new layer changed while it was written: %" PRIu64
                                   " entries and %" PRIu64 " bytes on disk, %u entries and %" PRIu64
                                   " bytes written",
                                   tally.entries, tally.bytes, im->n_records, im->bytes);
        return 0;
}

/* Makes the finished tree the layer <digest>, or finds that one exists (the same content) and drops ours. */
static int publish(Importer *im, const char *digest)
{
        /* Everything written must be on disk before the name says the layer is complete. */
        if (syncfs(im->layers_fd) < 0)
                return import_fail_errno(im, errno, "syncfs", im->tmp_name);

        if (renameat2(im->layers_fd, im->tmp_name, im->layers_fd, digest, RENAME_NOREPLACE) < 0) {
                if (errno == EINVAL || errno == ENOSYS) {
                        struct stat st;
                        if (fstatat(im->layers_fd, digest, &st, AT_SYMLINK_NOFOLLOW) == 0)
                                errno = EEXIST;
                        else if (renameat(im->layers_fd, im->tmp_name, im->layers_fd, digest) == 0)
                                goto renamed;
                }
                if (errno != EEXIST && errno != ENOTEMPTY)
                        return import_fail_errno(im, errno, "renameat2", digest);
                /* The same layer exists already: keep that one. */
                return 0;
        }
renamed:
        im->tmp_name[0] = '\0';
        if (fsync(im->layers_fd) < 0)
                return import_fail_errno(im, errno, "fsync", "layers");
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
        /* "--name value" pairs */
        for (int i = 1; i < argc; i += 2) {
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
                        import_dir_clear(d);
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
                return import_fail_errno(im, errno, "socketpair", "reader socket");
        im->child = fork();
        if (im->child < 0) {
                close(sv[0]);
                close(sv[1]);
                return import_fail_errno(im, errno, "fork", "reader");
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
                import_dir_clear(&g_array_index(im->stack, Dir, i));
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

/* The layer recorded for @fingerprint, if there is one and it still exists. A damaged or missing record
 * only means a full import. */
static char *lookup_fingerprint(Importer *im, const char *fingerprint)
{
        g_autofree char *name = g_strconcat(KILN_IMPORT_FINGERPRINTS_DIR "/", fingerprint, NULL);
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

/* A record that cannot be written costs the next import its shortcut, nothing else. */
static void record_fingerprint(Importer *im, const char *fingerprint, const char *digest)
{
        g_autofree char *line = g_strconcat(digest, "\n", NULL);

        kiln_import_write_record(im->layers_fd, KILN_IMPORT_FINGERPRINTS_DIR, fingerprint, line);
}

/* STATE/layers/.sizes/<digest>: the layer's bytes of file content, for kilnd's per-user bound. Best
 * effort, as the fingerprint: kilnd counts a layer without a record as 0 bytes. */
static void record_size(Importer *im, const char *digest, uint64_t bytes)
{
        g_autofree char *name = g_strconcat(KILN_IMPORT_SIZES_DIR "/", digest, NULL);
        g_autofree char *line = g_strdup_printf("%" PRIu64 "\n", bytes);
        struct stat st;

        if (fstatat(im->layers_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                return;
        kiln_import_write_record(im->layers_fd, KILN_IMPORT_SIZES_DIR, digest, line);
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
        im.links = g_hash_table_new_full(import_inode_hash, import_inode_equal, g_free, g_free);
        im.buffer = g_malloc(COPY_BUFFER_SIZE);

        /* STATE/layers is given by kilnd; it must be ours and writable by nobody else, since everything
         * below relies on no one else being able to change names in it. */
        im.layers_fd = open(o.layers, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (im.layers_fd < 0) {
                import_fail_errno(&im, errno, "open", o.layers);
                goto out;
        }
        if (fstat(im.layers_fd, &st) < 0) {
                import_fail_errno(&im, errno, "fstat", o.layers);
                goto out;
        }
        if (st.st_uid != geteuid() || (st.st_mode & 022)) {
                import_fail(&im, KILN_IMPORT_EXIT_FAILED,
                            "'%s' must be owned by uid %u and not writable by others", o.layers,
                            (unsigned)geteuid());
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
                import_fail(&im, KILN_IMPORT_EXIT_LIMIT,
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
                import_fail_errno(&im, errno, "write", "stdout");
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

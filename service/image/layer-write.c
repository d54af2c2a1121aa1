/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/xattr.h>

#include <nettle/sha2.h>

#include "base/archive-load.h"
#include "base/errors.h"
#include "base/kiln-common.h"
#include "image/layer-write.h"

#define OVERFLOW_ID 65534
#define READ_CHUNK (128 * 1024)
#define XATTR_LIST_MAX_BYTES (64 * 1024)
/* A tree deeper than this is refused rather than walked (each level holds a descriptor). */
#define MAX_DEPTH 256

gboolean kiln_compression_from_string(const char *s, KilnCompression *ret)
{
        if (g_strcmp0(s, "gzip") == 0)
                *ret = KILN_COMPRESSION_GZIP;
        else if (g_strcmp0(s, "zstd") == 0)
                *ret = KILN_COMPRESSION_ZSTD;
        else if (g_strcmp0(s, "none") == 0)
                *ret = KILN_COMPRESSION_NONE;
        else
                return FALSE;
        return TRUE;
}

const char *kiln_compression_to_string(KilnCompression c)
{
        switch (c) {
        case KILN_COMPRESSION_GZIP:
                return "gzip";
        case KILN_COMPRESSION_ZSTD:
                return "zstd";
        case KILN_COMPRESSION_NONE:
                break;
        }
        return "none";
}

/* SHA-256 through nettle: with the CPU's SHA extensions it hashes several times faster than GChecksum,
 * and a commit hashes every byte of the layer. */
typedef struct sha256_ctx Sha;

static Sha *sha_new(void)
{
        Sha *c = g_new(Sha, 1);

        sha256_init(c);
        return c;
}

static void sha_update(Sha *c, const void *data, size_t len)
{
        sha256_update(c, len, data);
}

static void sha_hex(Sha *c, char out[65])
{
        uint8_t md[SHA256_DIGEST_SIZE];

        sha256_digest(c, sizeof(md), md);
        for (unsigned i = 0; i < SHA256_DIGEST_SIZE; i++)
                g_snprintf(out + 2 * i, 3, "%02x", md[i]);
}

guint32 kiln_idmap_to_container(const KilnIdMapping *map, gsize n, guint32 host_id)
{
        if (!map)
                return host_id;
        for (gsize i = 0; i < n; i++)
                if (host_id >= map[i].host_id && host_id - map[i].host_id < map[i].size)
                        return map[i].container_id + (host_id - map[i].host_id);
        return OVERFLOW_ID;
}

typedef struct {
        const KilnLayerWriteOptions *options;
        int out_fd;
        struct archive *tar;      /* the tar stream: its bytes go to on_tar_bytes */
        struct archive *compress; /* raw format + the compression filter, or NULL for none */
        Sha *diff;
        Sha *blob;
        guint64 tar_size;
        guint64 blob_size;
        guint64 entries;
        GHashTable *inodes; /* "dev:ino" → first path, for hard links */
        GCancellable *cancellable;
        GError *error; /* the first failure, kept by the callbacks */
        char *buf;
        guint64 written;       /* bytes written to out_fd (by the output thread when there is one) */
        guint64 writeback;     /* of which writeback was started */
        gboolean direct;       /* out_fd has O_DIRECT (the output thread's blocks are aligned for it) */
        struct Output *output; /* the threads writing (and hashing) the blob, or NULL: in place */
} Writer;

/* The kernel is asked to start writing back every WRITEBACK_CHUNK bytes as they are written, so the
 * fsync that makes the blob durable (image-store.c) waits for the last chunk rather than for all of it:
 * the disk works while the tree is read and hashed. */
#define WRITEBACK_CHUNK (8 * 1024 * 1024)
#define DIRECT_ALIGN 4096

static void start_writeback(Writer *w)
{
        /* Only a hint: a pipe or a file system without it answers ESPIPE or EINVAL, and the fsync later
         * does all the work then. Never SYNC_FILE_RANGE_WAIT_*: nothing here waits for the disk. */
        if (w->written - w->writeback >= WRITEBACK_CHUNK) {
                (void)sync_file_range(w->out_fd, (off_t)w->writeback, (off_t)(w->written - w->writeback),
                                      SYNC_FILE_RANGE_WRITE);
                w->writeback = w->written;
        }
}

/* The blob's descriptor leaves O_DIRECT (for this and every later write), with which every write must
 * start, end and lie in memory on DIRECT_ALIGN. */
static void direct_off(Writer *w)
{
        int flags = fcntl(w->out_fd, F_GETFL);

        if (flags >= 0)
                (void)fcntl(w->out_fd, F_SETFL, flags & ~O_DIRECT);
        w->direct = FALSE;
}

/* Writes @len bytes to the blob; the first failure is kept in @err. Runs on the writing thread when
 * there is one. */
static gboolean write_out(Writer *w, const char *p, size_t len, int *err)
{
        while (len > 0) {
                ssize_t n;

                /* The tar's last block (padded to 10240 bytes) or a short write: the rest goes through the
                 * page cache; the fsync before the blob is linked covers both. */
                if (w->direct && (len % DIRECT_ALIGN != 0 || w->written % DIRECT_ALIGN != 0 ||
                                  (uintptr_t)p % DIRECT_ALIGN != 0))
                        direct_off(w);
                n = write(w->out_fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EINVAL && w->direct) {
                        direct_off(w); /* a file system that takes O_DIRECT but not these writes */
                        continue;
                }
                if (n < 0) {
                        *err = errno;
                        return FALSE;
                }
                p += n;
                len -= n;
                w->written += n;
        }
        start_writeback(w);
        return TRUE;
}

/* The blob is written and hashed by threads of their own while the walk reads and tars the next blocks,
 * and written past the page cache (O_DIRECT). Measured (docs/decisions.md, "Commit speed"): a commit's
 * wall time is its CPU time, and on a loaded machine its wait for a CPU; the largest and most variable
 * part of that CPU was filling fresh page cache with the blob (2 to 5 times the SHA-256), then the
 * SHA-256, then reading and tarring the files. The bytes, their order and the fsync before the blob is
 * linked are unchanged; kilnd holds OUTPUT_BLOCKS x READ_CHUNK more (2 MiB) while a layer is written. */
#define OUTPUT_BLOCKS 16

enum { STAGE_WRITE, STAGE_HASH, N_STAGES };

typedef struct Output Output;

typedef struct {
        Output *output;
        guint index;
        GThread *thread;
} Stage;

struct Output {
        Writer *w;
        Sha *hash; /* hashed by the STAGE_HASH thread, or NULL: the walk hashes in place */
        Stage stages[N_STAGES];
        GMutex lock;
        GCond filled;       /* a block was queued, or closing: the stages wait on it */
        GCond consumed_one; /* a slot is free again: the walk waits on it */
        guint stages_waiting;
        gboolean walk_waiting;
        char *blocks[OUTPUT_BLOCKS];
        size_t lens[OUTPUT_BLOCKS];
        /* Counts of blocks since the start: block n is in slot n % OUTPUT_BLOCKS, free again once every
         * stage has consumed it. */
        guint64 produced;
        guint64 consumed[N_STAGES];
        gboolean closing; /* no more blocks: the threads end once they have consumed every one */
        int err;          /* the first write's errno; once set, nothing more is written */
};

/* The writing stage's share of the queue: the blocks from @first on (@n of them, none past the ring's
 * end), in one writev, so that a direct write is one large request rather than many small ones. A
 * block whose length is not aligned (the tar's last) is written alone. Returns how many were taken. */
static guint write_batch(Output *o, guint first, guint n, int *err)
{
        struct iovec iov[OUTPUT_BLOCKS];
        size_t total = 0;
        guint k = 0;

        while (k < n) {
                /* An unaligned block is written alone (write_out takes it through the cache). */
                if (k > 0 && o->lens[first + k] % DIRECT_ALIGN != 0)
                        break;
                iov[k].iov_base = o->blocks[first + k];
                iov[k].iov_len = o->lens[first + k];
                total += iov[k].iov_len;
                k++;
                if (iov[k - 1].iov_len % DIRECT_ALIGN != 0)
                        break;
        }
        if (k == 1) {
                (void)write_out(o->w, iov[0].iov_base, iov[0].iov_len, err);
                return 1;
        }
        for (;;) {
                ssize_t done;

                if (o->w->direct && o->w->written % DIRECT_ALIGN != 0)
                        direct_off(o->w);
                done = writev(o->w->out_fd, iov, (int)k);
                if (done < 0 && errno == EINTR)
                        continue;
                if (done < 0 && errno == EINVAL && o->w->direct) {
                        direct_off(o->w);
                        continue;
                }
                if (done < 0) {
                        *err = errno;
                        return k;
                }
                o->w->written += done;
                if ((size_t)done < total) {
                        /* A short write (a full disk): the rest block by block, which reports why. */
                        for (guint j = 0; j < k && !*err; j++) {
                                if ((size_t)done >= iov[j].iov_len) {
                                        done -= iov[j].iov_len;
                                        continue;
                                }
                                (void)write_out(o->w, (const char *)iov[j].iov_base + done,
                                                iov[j].iov_len - done, err);
                                done = 0;
                        }
                }
                start_writeback(o->w);
                return k;
        }
}

static gpointer stage_thread(gpointer data)
{
        Stage *stage = data;
        Output *o = stage->output;
        guint i = stage->index;

        g_mutex_lock(&o->lock);
        for (;;) {
                guint slot, n, took;
                int err = 0;

                while (o->consumed[i] == o->produced && !o->closing) {
                        o->stages_waiting++;
                        g_cond_wait(&o->filled, &o->lock);
                        o->stages_waiting--;
                }
                if (o->consumed[i] == o->produced)
                        break;
                slot = o->consumed[i] % OUTPUT_BLOCKS;
                n = MIN(o->produced - o->consumed[i], OUTPUT_BLOCKS - slot);
                /* These blocks are not reused before every stage has counted them as consumed. */
                g_mutex_unlock(&o->lock);
                if (i == STAGE_HASH) {
                        for (guint k = 0; k < n; k++)
                                sha_update(o->hash, o->blocks[slot + k], o->lens[slot + k]);
                        took = n;
                } else if (!o->err) {
                        took = write_batch(o, slot, n, &err);
                } else {
                        took = n;
                }
                g_mutex_lock(&o->lock);
                if (err && !o->err)
                        o->err = err;
                o->consumed[i] += took;
                if (o->walk_waiting || err)
                        g_cond_signal(&o->consumed_one);
        }
        g_mutex_unlock(&o->lock);
        return NULL;
}

static guint64 slowest_stage(Output *o)
{
        guint64 least = o->consumed[0];

        for (guint i = 1; i < N_STAGES; i++)
                if (o->stages[i].thread)
                        least = MIN(least, o->consumed[i]);
        return least;
}

static void output_free(Output *o)
{
        for (guint i = 0; i < OUTPUT_BLOCKS; i++)
                free(o->blocks[i]);
        g_mutex_clear(&o->lock);
        g_cond_clear(&o->filled);
        g_cond_clear(&o->consumed_one);
        g_free(o);
}

/* Starts the writing thread and, with @hash, the hashing one (which then hashes every block written
 * into @hash). Without threads (none could be made) the blob is written and hashed in place. */
static void output_start(Writer *w, Sha *hash, gboolean direct)
{
        Output *o = g_new0(Output, 1);

        o->w = w;
        g_mutex_init(&o->lock);
        g_cond_init(&o->filled);
        g_cond_init(&o->consumed_one);
        for (guint i = 0; i < OUTPUT_BLOCKS; i++)
                if (posix_memalign((void **)&o->blocks[i], DIRECT_ALIGN, READ_CHUNK) != 0)
                        g_error("out of memory");
        for (guint i = 0; i < N_STAGES; i++) {
                o->stages[i].output = o;
                o->stages[i].index = i;
        }
        if (direct) {
                /* Past the page cache: a commit's blob is written once and read again only by a push,
                 * and filling 100 MB of fresh page cache was most of a commit's CPU (docs/decisions.md).
                 * A file system without O_DIRECT refuses the flag: the blob goes through the cache. */
                int flags = fcntl(w->out_fd, F_GETFL);
                w->direct = flags >= 0 && fcntl(w->out_fd, F_SETFL, flags | O_DIRECT) == 0;
        }
        o->stages[STAGE_WRITE].thread =
                g_thread_try_new("kiln-layer-out", stage_thread, &o->stages[STAGE_WRITE], NULL);
        if (!o->stages[STAGE_WRITE].thread) {
                if (w->direct)
                        direct_off(w);
                output_free(o);
                return;
        }
        w->output = o;
        if (hash) {
                /* Set before the thread starts, which then reads it without the lock. */
                o->hash = hash;
                o->stages[STAGE_HASH].thread =
                        g_thread_try_new("kiln-layer-sha", stage_thread, &o->stages[STAGE_HASH], NULL);
                if (!o->stages[STAGE_HASH].thread)
                        o->hash = NULL; /* hashed in place; nothing was queued yet */
        }
}

/* Waits until every queued block is consumed and the threads have ended: called on every way out of a
 * write, so no thread outlives it (nor writes into a descriptor its caller closes, nor hashes into a
 * context it frees). Returns the first write's errno, or 0. */
static int output_finish(Writer *w)
{
        Output *o = w->output;
        int err;

        if (!o)
                return 0;
        g_mutex_lock(&o->lock);
        o->closing = TRUE;
        g_cond_broadcast(&o->filled);
        g_mutex_unlock(&o->lock);
        for (guint i = 0; i < N_STAGES; i++)
                if (o->stages[i].thread)
                        g_thread_join(o->stages[i].thread);
        err = o->err;
        output_free(o);
        w->output = NULL;
        if (w->direct) /* the descriptor goes back as it came (fsync, and any later write in place) */
                direct_off(w);
        return err;
}

static gboolean write_failed(Writer *w, int err)
{
        if (!w->error)
                g_set_error(&w->error, G_IO_ERROR, g_io_error_from_errno(err), "Cannot write the layer: %s",
                            g_strerror(err));
        return FALSE;
}

/* Queues @len bytes (in blocks of at most READ_CHUNK) for the threads: a copy, since libarchive reuses
 * its buffer once the callback returns. */
static gboolean output_queue(Writer *w, const char *p, size_t len)
{
        Output *o = w->output;

        while (len > 0) {
                size_t n = MIN(len, (size_t)READ_CHUNK);
                guint slot;

                g_mutex_lock(&o->lock);
                while (o->produced - slowest_stage(o) == OUTPUT_BLOCKS && !o->err) {
                        o->walk_waiting = TRUE;
                        g_cond_wait(&o->consumed_one, &o->lock);
                        o->walk_waiting = FALSE;
                }
                if (o->err) {
                        int err = o->err;
                        g_mutex_unlock(&o->lock);
                        return write_failed(w, err);
                }
                slot = o->produced % OUTPUT_BLOCKS;
                g_mutex_unlock(&o->lock);
                /* The slot is the walk's until it is counted as produced. */
                memcpy(o->blocks[slot], p, n);
                o->lens[slot] = n;
                g_mutex_lock(&o->lock);
                o->produced++;
                /* Waking costs a system call a block: only a stage that sleeps is woken. */
                if (o->stages_waiting)
                        g_cond_broadcast(&o->filled);
                g_mutex_unlock(&o->lock);
                p += n;
                len -= n;
        }
        return TRUE;
}

static gboolean write_all(Writer *w, const void *buf, size_t len)
{
        int err = 0;

        if (w->output)
                return output_queue(w, buf, len);
        if (!write_out(w, buf, len, &err))
                return write_failed(w, err);
        return TRUE;
}

/* The compressed bytes (or the tar itself with no compression): the blob. */
static la_ssize_t on_blob_bytes(struct archive *a, void *data, const void *buf, size_t len)
{
        Writer *w = data;

        sha_update(w->blob, buf, len);
        w->blob_size += len;
        if (!write_all(w, buf, len)) {
                archive_set_error(a, EIO, "write failed");
                return -1;
        }
        return len;
}

/* The uncompressed tar stream: hashed for the diff_id, then compressed. */
static la_ssize_t on_tar_bytes(struct archive *a, void *data, const void *buf, size_t len)
{
        Writer *w = data;

        /* Without compression the blob is the tar, hashed by the output's thread when it has one. */
        if (w->compress || !w->output || !w->output->hash)
                sha_update(w->diff, buf, len);
        w->tar_size += len;
        if (!w->compress) {
                /* The blob is the tar: one hash gives both digests. */
                w->blob_size += len;
                if (!write_all(w, buf, len)) {
                        archive_set_error(a, EIO, "write failed");
                        return -1;
                }
                return len;
        }
        if (archive_write_data(w->compress, buf, len) != (la_ssize_t)len) {
                if (!w->error)
                        g_set_error(&w->error, G_IO_ERROR, G_IO_ERROR_FAILED,
                                    "Cannot compress the layer: %s",
                                    archive_error_string(w->compress) ?: "?");
                archive_set_error(a, EIO, "compression failed");
                return -1;
        }
        return len;
}

static gboolean fail_archive(Writer *w, struct archive *a, const char *path, GError **error)
{
        if (w->error) {
                g_propagate_error(error, g_steal_pointer(&w->error));
                g_prefix_error(error, "'%s': ", path);
                return FALSE;
        }
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "Cannot write '%s' into the layer: %s", path,
                    archive_error_string(a) ?: "?");
        return FALSE;
}

static gboolean fail_errno(GError **error, int err, const char *what, const char *path)
{
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(err), "Cannot %s '%s' in the layer: %s", what,
                    path, g_strerror(err));
        return FALSE;
}

static int compare_names(gconstpointer a, gconstpointer b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in the directory @fd, sorted bytewise ("." and ".." left out). */
static GPtrArray *list_dir(int fd, const char *path, GError **error)
{
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        DIR *d;
        struct dirent *de;

        if (copy < 0 || !(d = fdopendir(copy))) {
                kiln_close_fdp(&copy);
                fail_errno(error, errno, "list", path);
                return NULL;
        }
        errno = 0;
        while ((de = readdir(d))) {
                if (!g_str_equal(de->d_name, ".") && !g_str_equal(de->d_name, ".."))
                        g_ptr_array_add(names, g_strdup(de->d_name));
                errno = 0;
        }
        if (errno) {
                int err = errno;
                closedir(d);
                fail_errno(error, err, "list", path);
                return NULL;
        }
        closedir(d);
        g_ptr_array_sort(names, compare_names);
        return g_steal_pointer(&names);
}

/* A file capability of the v3 kind names the host uid that is root in its user namespace; in an image
 * it becomes the v2 kind, which any user namespace's root may use. */
static gboolean cap_v3_to_v2(const char *name, char *value, ssize_t *size)
{
        guint32 magic;

        if (!g_str_equal(name, "security.capability") || *size != 24)
                return FALSE;
        memcpy(&magic, value, 4);
        magic = GUINT32_FROM_LE(magic);
        if ((magic & 0xff000000u) != 0x03000000u)
                return FALSE;
        magic = GUINT32_TO_LE((magic & 0x00ffffffu) | 0x02000000u);
        memcpy(value, &magic, 4);
        *size = 20;
        return TRUE;
}

/* Adds the entry's xattrs (sorted by name, trusted.overlay.* left out); *@opaque says whether overlayfs
 * marked it opaque. @fd is the file when open (-1: read through the directory's /proc path, which
 * follows the directory's descriptor and never the entry itself). */
static gboolean add_xattrs(struct archive_entry *e, int fd, int dir_fd, const char *name, const char *path,
                           gboolean *opaque, GError **error)
{
        g_autofree char *proc = fd < 0 ? g_strdup_printf("/proc/self/fd/%d/%s", dir_fd, name) : NULL;
        g_autofree char *list = g_malloc(XATTR_LIST_MAX_BYTES);
        g_autoptr(GPtrArray) names = g_ptr_array_new();
        ssize_t len = fd >= 0 ? flistxattr(fd, list, XATTR_LIST_MAX_BYTES)
                              : llistxattr(proc, list, XATTR_LIST_MAX_BYTES);

        *opaque = FALSE;
        if (len < 0) {
                if (errno == ENOTSUP || errno == EOPNOTSUPP)
                        return TRUE;
                return fail_errno(error, errno, "list the xattrs of", path);
        }
        for (ssize_t off = 0; off < len; off += strlen(list + off) + 1)
                g_ptr_array_add(names, list + off);
        g_ptr_array_sort(names, compare_names);
        for (guint i = 0; i < names->len; i++) {
                const char *xname = names->pdata[i];
                char value[XATTR_SIZE_MAX > 65536 ? 65536 : XATTR_SIZE_MAX];
                ssize_t size;

                size = fd >= 0 ? fgetxattr(fd, xname, value, sizeof(value))
                               : lgetxattr(proc, xname, value, sizeof(value));
                if (size < 0) {
                        if (errno == ENODATA)
                                continue; /* removed meanwhile */
                        return fail_errno(error, errno, "read an xattr of", path);
                }
                if (g_str_has_prefix(xname, "trusted.overlay.")) {
                        if (g_str_equal(xname, "trusted.overlay.opaque") && size == 1 && value[0] == 'y')
                                *opaque = TRUE;
                        continue;
                }
                cap_v3_to_v2(xname, value, &size);
                archive_entry_xattr_add_entry(e, xname, value, size);
        }
        return TRUE;
}

static gboolean write_header(Writer *w, struct archive_entry *e, const char *path, GError **error)
{
        if (archive_write_header(w->tar, e) != ARCHIVE_OK)
                return fail_archive(w, w->tar, path, error);
        w->entries++;
        return TRUE;
}

static void set_common(Writer *w, struct archive_entry *e, const char *path, const struct stat *st)
{
        const KilnLayerWriteOptions *o = w->options;
        gint64 mtime = st->st_mtim.tv_sec;
        long nsec = st->st_mtim.tv_nsec;

        if (o->clamp_mtime >= 0 && mtime >= o->clamp_mtime) {
                mtime = o->clamp_mtime;
                nsec = 0;
        }
        archive_entry_set_pathname(e, path);
        archive_entry_set_uid(e, kiln_idmap_to_container(o->uid_map, o->n_uid_map, st->st_uid));
        archive_entry_set_gid(e, kiln_idmap_to_container(o->gid_map, o->n_gid_map, st->st_gid));
        archive_entry_set_mode(e, st->st_mode);
        archive_entry_set_mtime(e, mtime, nsec);
}

/* An empty regular file that stands for something overlayfs keeps otherwise. */
static gboolean write_marker(Writer *w, const char *path, const struct stat *like, GError **error)
{
        struct archive_entry *e = archive_entry_new();
        struct stat st = *like;
        gboolean ok;

        st.st_mode = S_IFREG | 0600;
        set_common(w, e, path, &st);
        archive_entry_set_size(e, 0);
        ok = write_header(w, e, path, error);
        archive_entry_free(e);
        return ok;
}

static gboolean write_content(Writer *w, int fd, const char *path, guint64 size, GError **error)
{
        guint64 done = 0;

        while (done < size) {
                ssize_t n = read(fd, w->buf, MIN((guint64)READ_CHUNK, size - done));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return fail_errno(error, errno, "read", path);
                if (n == 0)
                        break; /* shrank meanwhile: libarchive pads the entry with zeros */
                if (archive_write_data(w->tar, w->buf, n) != n)
                        return fail_archive(w, w->tar, path, error);
                done += n;
        }
        return TRUE;
}

static gboolean walk(Writer *w, int dir_fd, const char *prefix, int depth, GError **error);

static gboolean write_entry(Writer *w, int dir_fd, const char *name, const char *prefix, int depth,
                            GError **error)
{
        g_autofree char *path = g_strconcat(prefix, name, NULL);
        struct archive_entry *e = NULL;
        _cleanup_close_ int fd = -1;
        struct stat st;
        gboolean opaque = FALSE, ok = FALSE;

        if (g_cancellable_set_error_if_cancelled(w->cancellable, error))
                return FALSE;
        if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return fail_errno(error, errno, "stat", path);
        if (S_ISSOCK(st.st_mode))
                return TRUE; /* a tar stream has no sockets; a container's socket is not content */
        if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
                g_autofree char *wh = g_strconcat(prefix, ".wh.", name, NULL);
                return write_marker(w, wh, &st, error);
        }
        if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
                struct stat again;
                /* O_NOFOLLOW: a name swapped for a symlink since the stat fails here instead of being
                 * followed; the inode is compared so that what is written is what was stat'ed. */
                fd = openat(dir_fd, name,
                            O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK |
                                    (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0));
                if (fd < 0)
                        return fail_errno(error, errno, "open", path);
                if (fstat(fd, &again) < 0)
                        return fail_errno(error, errno, "stat", path);
                if (again.st_ino != st.st_ino || again.st_dev != st.st_dev)
                        return fail_errno(error, EAGAIN, "read (it changed while read)", path);
                st = again;
        }

        e = archive_entry_new();
        if (S_ISDIR(st.st_mode)) {
                g_autofree char *dpath = g_strconcat(path, "/", NULL);
                set_common(w, e, dpath, &st);
        } else {
                set_common(w, e, path, &st);
        }
        if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
                g_autofree char *key =
                        g_strdup_printf("%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
                const char *first = g_hash_table_lookup(w->inodes, key);
                if (first) {
                        archive_entry_set_hardlink(e, first);
                        archive_entry_set_size(e, 0);
                        ok = write_header(w, e, path, error);
                        goto out;
                }
                g_hash_table_insert(w->inodes, g_steal_pointer(&key), g_strdup(path));
        }
        if (!add_xattrs(e, fd, dir_fd, name, path, &opaque, error))
                goto out;
        if (S_ISLNK(st.st_mode)) {
                char target[PATH_MAX + 1];
                ssize_t n = readlinkat(dir_fd, name, target, PATH_MAX);
                if (n < 0) {
                        fail_errno(error, errno, "read the symlink", path);
                        goto out;
                }
                target[n] = '\0';
                archive_entry_set_symlink(e, target);
        } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
                archive_entry_set_rdev(e, st.st_rdev);
        }
        if (S_ISREG(st.st_mode))
                archive_entry_set_size(e, st.st_size);
        if (!write_header(w, e, path, error))
                goto out;
        if (S_ISREG(st.st_mode) && !write_content(w, fd, path, st.st_size, error))
                goto out;
        if (S_ISDIR(st.st_mode)) {
                g_autofree char *sub = g_strconcat(path, "/", NULL);
                if (opaque) {
                        g_autofree char *opq = g_strconcat(sub, ".wh..wh..opq", NULL);
                        if (!write_marker(w, opq, &st, error))
                                goto out;
                }
                if (depth >= MAX_DEPTH) {
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                    "'%s' is deeper than %d directories", path, MAX_DEPTH);
                        goto out;
                }
                if (!walk(w, fd, sub, depth + 1, error))
                        goto out;
        }
        ok = TRUE;
out:
        archive_entry_free(e);
        return ok;
}

static gboolean walk(Writer *w, int dir_fd, const char *prefix, int depth, GError **error)
{
        g_autoptr(GPtrArray) names = list_dir(dir_fd, *prefix ? prefix : ".", error);

        if (!names)
                return FALSE;
        for (guint i = 0; i < names->len; i++)
                if (!write_entry(w, dir_fd, names->pdata[i], prefix, depth, error))
                        return FALSE;
        return TRUE;
}

static struct archive *new_compressor(Writer *w, GError **error)
{
        struct archive *a = archive_write_new();
        struct archive_entry *e;
        int r;

        r = archive_write_set_format_raw(a);
        if (r == ARCHIVE_OK && w->options->compression == KILN_COMPRESSION_GZIP) {
                r = archive_write_add_filter_gzip(a);
                /* No time in the gzip header: the same tar gives the same blob. */
                if (r == ARCHIVE_OK)
                        r = archive_write_set_filter_option(a, "gzip", "timestamp", NULL);
        } else if (r == ARCHIVE_OK) {
                r = archive_write_add_filter_zstd(a);
        }
        /* The compressed stream ends where the compressor ends it, unpadded. */
        if (r == ARCHIVE_OK)
                r = archive_write_set_bytes_per_block(a, READ_CHUNK);
        if (r == ARCHIVE_OK)
                r = archive_write_set_bytes_in_last_block(a, 1);
        if (r == ARCHIVE_OK)
                r = archive_write_open2(a, w, NULL, on_blob_bytes, NULL, NULL);
        if (r == ARCHIVE_OK) {
                e = archive_entry_new();
                archive_entry_set_pathname(e, "layer.tar");
                archive_entry_set_filetype(e, AE_IFREG);
                r = archive_write_header(a, e);
                archive_entry_free(e);
        }
        if (r != ARCHIVE_OK) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "Cannot set up %s compression: %s",
                            kiln_compression_to_string(w->options->compression),
                            archive_error_string(a) ?: "?");
                archive_write_free(a);
                return NULL;
        }
        return a;
}

gboolean kiln_layer_write(int root_fd, int out_fd, const KilnLayerWriteOptions *options,
                          KilnLayerWriteResult *result, GCancellable *cancellable, GError **error)
{
        Writer w = {
                .options = options,
                .out_fd = out_fd,
                .cancellable = cancellable,
        };
        gboolean ok = FALSE;
        int r;

        w.diff = sha_new();
        w.blob = sha_new();
        w.inodes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        w.buf = g_malloc(READ_CHUNK);
        if (options->compression != KILN_COMPRESSION_NONE && !(w.compress = new_compressor(&w, error)))
                goto out;

        output_start(&w, w.compress ? NULL : w.diff, !w.compress);
        w.tar = archive_write_new();
        /* pax where ustar cannot say it (long names, xattrs, large ids), ustar everywhere else. */
        r = archive_write_set_format_pax_restricted(w.tar);
        /* Written in blocks of READ_CHUNK (one write a block, where 10 KiB blocks made 10,000 writes for
         * 100 MB), the end padded to a multiple of 10240 bytes as tar's default block size pads it: the
         * same bytes, and so the same diff_id, as before. */
        if (r == ARCHIVE_OK)
                r = archive_write_set_bytes_per_block(w.tar, READ_CHUNK);
        if (r == ARCHIVE_OK)
                r = archive_write_set_bytes_in_last_block(w.tar, 10240);
        if (r == ARCHIVE_OK)
                r = archive_write_open2(w.tar, &w, NULL, on_tar_bytes, NULL, NULL);
        if (r != ARCHIVE_OK) {
                fail_archive(&w, w.tar, "/", error);
                goto out;
        }
        if (!walk(&w, root_fd, "", 0, error))
                goto out;
        if (archive_write_close(w.tar) != ARCHIVE_OK) {
                fail_archive(&w, w.tar, "/", error);
                goto out;
        }
        if (w.compress && archive_write_close(w.compress) != ARCHIVE_OK) {
                fail_archive(&w, w.compress, "/", error);
                goto out;
        }
        if ((r = output_finish(&w)) != 0) {
                write_failed(&w, r);
                fail_archive(&w, w.tar, "/", error);
                goto out;
        }
        sha_hex(w.diff, result->diff_id);
        if (w.compress)
                sha_hex(w.blob, result->blob_digest);
        else
                memcpy(result->blob_digest, result->diff_id, sizeof(result->diff_id));
        result->blob_size = w.blob_size;
        result->tar_size = w.tar_size;
        result->entries = w.entries;
        ok = TRUE;
out:
        /* Before the archives are freed: their last blocks may still be queued. */
        (void)output_finish(&w);
        if (w.tar)
                archive_write_free(w.tar);
        if (w.compress)
                archive_write_free(w.compress);
        g_free(w.diff);
        g_free(w.blob);
        g_hash_table_unref(w.inodes);
        g_free(w.buf);
        g_clear_error(&w.error);
        return ok;
}

gboolean kiln_layer_compress(int in_fd, int out_fd, KilnCompression compression,
                             KilnLayerWriteResult *result, GCancellable *cancellable, GError **error)
{
        KilnLayerWriteOptions options = {.compression = compression, .clamp_mtime = -1};
        Writer w = {.options = &options, .out_fd = out_fd, .cancellable = cancellable};
        Sha *diff = sha_new();
        gboolean ok = FALSE;
        int err;

        w.blob = sha_new();
        w.buf = g_malloc(READ_CHUNK);
        if (!(w.compress = new_compressor(&w, error)))
                goto out;
        output_start(&w, NULL, FALSE);
        for (;;) {
                ssize_t n = read(in_fd, w.buf, READ_CHUNK);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        fail_errno(error, errno, "read", "the layer blob");
                        goto out;
                }
                if (n == 0)
                        break;
                if (g_cancellable_set_error_if_cancelled(cancellable, error))
                        goto out;
                sha_update(diff, w.buf, n);
                w.tar_size += n;
                if (archive_write_data(w.compress, w.buf, n) != n) {
                        fail_archive(&w, w.compress, "the layer blob", error);
                        goto out;
                }
        }
        if (archive_write_close(w.compress) != ARCHIVE_OK) {
                fail_archive(&w, w.compress, "the layer blob", error);
                goto out;
        }
        if ((err = output_finish(&w)) != 0) {
                write_failed(&w, err);
                fail_archive(&w, w.compress, "the layer blob", error);
                goto out;
        }
        sha_hex(diff, result->diff_id);
        sha_hex(w.blob, result->blob_digest);
        result->blob_size = w.blob_size;
        result->tar_size = w.tar_size;
        ok = TRUE;
out:
        (void)output_finish(&w);
        if (w.compress)
                archive_write_free(w.compress);
        g_free(diff);
        g_free(w.blob);
        g_free(w.buf);
        g_clear_error(&w.error);
        return ok;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-import's image mode: layer trees under STATE/layers (image-private.h). Each layer is unpacked
 * into a locked tmp tree, its two digests checked, and published under its diff_id once the whole image
 * is verified; a stored layer is only hashed. Size and fingerprint records. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "base/fs-util.h"
#include "image-private.h"
#include "image-read.h"
#include "base/kiln-common.h"
#include "layer-digest.h"
#include "records.h"

/* ---- layer trees ---- */

void image_tmp_free(Tmp *t)
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
void image_remove_tmps(Image *im)
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

bool image_layer_exists(Image *im, const char *hex)
{
        struct stat st;

        return fstatat(im->layers_fd, hex, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* Unpacks the blob read through @r into a new tmp tree; the tree's diff_id is what its tar stream
 * hashed to. The digests are compared by the caller. */
Tmp *image_unpack_layer(Image *im, BlobReader *r, const char *what)
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
        if (!kiln_layer_unpack(image_blob_read, r, t->fd, &limits, &res, &error)) {
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
        if (image_blob_drain(r) < 0) {
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

        if (!kiln_image_hash_layer(image_blob_read, r, diff_hex, &error)) {
                if (r->error == EFBIG)
                        return image_fail(im, KILN_IMPORT_EXIT_INVALID,
                                          "%s: more bytes than its descriptor's size", what);
                return image_fail_gerror(im, error, what);
        }
        return image_blob_drain(r) < 0 ? image_fail_errno(im, r->error ? r->error : errno, "read", what) : 0;
}

/* Both digests of layer @i checked: refused by name, with what the bytes hashed to. */
int image_check_layer(Image *im, guint i, const char *blob_want, const char *blob_got, const char *diff_want,
                      const char *diff_got)
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
int image_take_layer(Image *im, guint i, BlobReader *r, const char *blob_want, const char *diff_want)
{
        g_autofree char *what =
                g_strdup_printf("layer %u (sha256:%.12s…)", i, blob_want ? blob_want : diff_want);
        char blob_got[65], diff_got[65];
        Tmp *t = NULL;

        if (image_layer_exists(im, diff_want)) {
                if (hash_only(im, r, diff_got, what) < 0)
                        return -1;
        } else {
                t = image_unpack_layer(im, r, what);
                if (!t)
                        return -1;
                g_strlcpy(diff_got, t->diff_hex, sizeof(diff_got));
        }
        image_hex_of(r->sha, blob_got);
        if (image_check_layer(im, i, blob_want, blob_got, diff_want, diff_got) < 0)
                return -1;
        g_ptr_array_add(im->layer_hex, g_strdup(diff_want));
        g_ptr_array_add(im->layer_tmp, t);
        return 0;
}

static void write_size_record(Image *im, const char *hex, uint64_t bytes)
{
        g_autofree char *line = g_strdup_printf("%" PRIu64 "\n", bytes);

        kiln_import_write_record(im->layers_fd, KILN_IMPORT_SIZES_DIR, hex, line);
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

/* Every new layer renamed to its diff_id, once the whole image is verified. A layer that appeared
 * meanwhile (another import of it) is kept, ours removed with the other tmp trees. */
int image_publish(Image *im)
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

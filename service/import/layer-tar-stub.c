/* SPDX-License-Identifier: Apache-2.0 */
/* TEMPORARY stand-in for layer-tar.c until it lands: libarchive's disk writer with its secure flags.
 * Deleted before the branch is merged. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <gio/gio.h>

#include "layer-tar.h"

#define BUF (1024 * 1024)

typedef struct Outer {
        KilnLayerReadFunc read;
        void *data;
        GChecksum *blob;
} Outer;

typedef struct Inner {
        struct archive *outer;
        GChecksum *diff;
        uint8_t *buf;
} Inner;

static la_ssize_t outer_read(struct archive *a, void *data, const void **buf)
{
        Outer *o = data;
        ssize_t n = o->read(o->data, buf);

        if (n < 0) {
                archive_set_error(a, errno, "read: %s", g_strerror(errno));
                return -1;
        }
        g_checksum_update(o->blob, *buf, n);
        return n;
}

static la_ssize_t inner_read(struct archive *a, void *data, const void **buf)
{
        Inner *in = data;
        la_ssize_t n = archive_read_data(in->outer, in->buf, BUF);

        if (n < 0) {
                archive_set_error(a, EIO, "%s", archive_error_string(in->outer));
                return -1;
        }
        g_checksum_update(in->diff, in->buf, n);
        *buf = in->buf;
        return n;
}

gboolean kiln_layer_unpack(KilnLayerReadFunc read, void *data, int root_fd, const KilnLayerLimits *limits,
                           KilnLayerResult *result, GError **error)
{
        Outer o = {read, data, g_checksum_new(G_CHECKSUM_SHA256)};
        Inner in = {archive_read_new(), g_checksum_new(G_CHECKSUM_SHA256), g_malloc(BUF)};
        struct archive *tar = archive_read_new(), *disk = archive_write_disk_new();
        struct archive_entry *e;
        gboolean ok = FALSE;
        int r;

        memset(result, 0, sizeof(*result));
        archive_read_support_filter_all(in.outer);
        archive_read_support_format_raw(in.outer);
        archive_read_support_format_tar(tar);
        archive_read_support_format_gnutar(tar);
        archive_write_disk_set_options(disk, ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                                                     ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                                     ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                                     ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS);
        if (archive_read_open(in.outer, &o, NULL, outer_read, NULL) != ARCHIVE_OK ||
            archive_read_next_header(in.outer, &e) != ARCHIVE_OK ||
            archive_read_open(tar, &in, NULL, inner_read, NULL) != ARCHIVE_OK) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "not a layer: %s",
                            archive_error_string(tar) ? archive_error_string(tar) : "?");
                goto out;
        }
        if (fchdir(root_fd) < 0) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "fchdir: %s", g_strerror(errno));
                goto out;
        }
        while ((r = archive_read_next_header(tar, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
                const char *path = archive_entry_pathname(e);
                g_autofree char *base = g_path_get_basename(path), *dir = g_path_get_dirname(path);

                if (limits->max_entries && ++result->entries > limits->max_entries) {
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE, "more than %llu entries",
                                    (unsigned long long)limits->max_entries);
                        goto out;
                }
                if (g_str_has_prefix(base, ".wh.")) {
                        if (strstr(path, "..")) {
                                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "entry '%s'", path);
                                goto out;
                        }
                        if (g_str_equal(base, ".wh..wh..opq")) {
                                if (lsetxattr(dir, "trusted.overlay.opaque", "y", 1, 0) < 0)
                                        goto fail_errno;
                        } else {
                                g_autofree char *name = g_build_filename(dir, base + 4, NULL);
                                if (mknod(name, S_IFCHR | 0600, makedev(0, 0)) < 0)
                                        goto fail_errno;
                        }
                        continue;
                }
                if (archive_entry_filetype(e) == AE_IFREG && archive_entry_size(e) > 0) {
                        result->bytes += (uint64_t)archive_entry_size(e);
                        if (limits->max_bytes && result->bytes > limits->max_bytes) {
                                g_set_error(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE, "more than %llu bytes",
                                            (unsigned long long)limits->max_bytes);
                                goto out;
                        }
                }
                r = archive_read_extract2(tar, e, disk);
                if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "entry '%s': %s", path,
                                    archive_error_string(tar));
                        goto out;
                }
        }
        if (r != ARCHIVE_EOF) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "%s", archive_error_string(tar));
                goto out;
        }
        /* The rest of the stream (tar padding) belongs to the diff_id too. */
        {
                la_ssize_t n;
                while ((n = archive_read_data(in.outer, in.buf, BUF)) > 0)
                        g_checksum_update(in.diff, in.buf, n);
        }
        archive_write_close(disk);
        g_strlcpy(result->blob_digest, g_checksum_get_string(o.blob), sizeof(result->blob_digest));
        g_strlcpy(result->diff_id, g_checksum_get_string(in.diff), sizeof(result->diff_id));
        ok = TRUE;
        goto out;
fail_errno:
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "whiteout: %s", g_strerror(errno));
out:
        (void)!chdir("/");
        archive_read_free(tar);
        archive_write_free(disk);
        archive_read_free(in.outer);
        g_checksum_free(o.blob);
        g_checksum_free(in.diff);
        g_free(in.buf);
        return ok;
}

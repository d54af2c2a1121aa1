/* SPDX-License-Identifier: Apache-2.0 */
/* The layer writer: a directory tree (a stored layer, or a builder's overlay upper dir) as an OCI layer
 * tar stream, compressed with libarchive, and both digests computed while it is written.
 *
 * What overlayfs keeps becomes what the OCI image spec says: a whiteout (a 0/0 character device NAME)
 * is the empty file ".wh.NAME", an opaque directory (xattr trusted.overlay.opaque=y) gets the entry
 * ".wh..wh..opq" first inside it; trusted.overlay.* xattrs are overlayfs's bookkeeping and are left
 * out, every other xattr is kept. Owners are written as the container sees them: host ids are mapped
 * back through the builder's maps (ids no map covers become 65534, as the kernel shows them). Hard
 * links are links to the first path of the inode; entries are sorted bytewise in each directory, so
 * the same tree gives the same bytes; with @clamp_mtime every time later than it is written as it.
 *
 * The tree is walked by descriptors (openat with O_NOFOLLOW, fstatat with AT_SYMLINK_NOFOLLOW): a
 * symlink in it is an entry, never a way out. Nothing but the walk reads the tree and only @out_fd is
 * written. */
#pragma once

#include <stdint.h>

#include <gio/gio.h>

#include "spec/spec.h"

typedef enum {
        KILN_COMPRESSION_GZIP,
        KILN_COMPRESSION_ZSTD,
        KILN_COMPRESSION_NONE,
} KilnCompression;

/* "gzip", "zstd", "none" → TRUE and *@ret; else FALSE. */
gboolean kiln_compression_from_string(const char *s, KilnCompression *ret);
const char *kiln_compression_to_string(KilnCompression c);

typedef struct KilnLayerWriteOptions {
        KilnCompression compression;
        /* host → container: each mapping's host range goes back to its container range; NULL: ids are
         * written as they are */
        const KilnIdMapping *uid_map;
        gsize n_uid_map;
        const KilnIdMapping *gid_map;
        gsize n_gid_map;
        gint64 clamp_mtime; /* seconds since the epoch; < 0: times as they are */
} KilnLayerWriteOptions;

typedef struct KilnLayerWriteResult {
        char blob_digest[65]; /* lowercase hex SHA-256 of the bytes written to @out_fd */
        char diff_id[65];     /* lowercase hex SHA-256 of the uncompressed tar stream */
        guint64 blob_size;    /* bytes written to @out_fd */
        guint64 tar_size;     /* bytes of the uncompressed tar stream */
        guint64 entries;
} KilnLayerWriteResult;

/* Writes the tree below @root_fd (the root itself is not an entry) to @out_fd. Errors: G_IO_ERROR with
 * the path inside the tree named. */
gboolean kiln_layer_write(int root_fd, int out_fd, const KilnLayerWriteOptions *options,
                          KilnLayerWriteResult *result, GCancellable *cancellable, GError **error);

/* Compresses the uncompressed layer tar read from @in_fd into @out_fd (the diff_id is that of the input). */
gboolean kiln_layer_compress(int in_fd, int out_fd, KilnCompression compression,
                             KilnLayerWriteResult *result, GCancellable *cancellable, GError **error);

/* Pure, for the tests: the container id a host id maps back to through @map, or 65534. */
guint32 kiln_idmap_to_container(const KilnIdMapping *map, gsize n, guint32 host_id);

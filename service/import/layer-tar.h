/* SPDX-License-Identifier: Apache-2.0 */
/* One image layer, unpacked: an OCI or Docker layer tar stream (uncompressed, gzip or zstd, found out
 * from the bytes) read with libarchive and written into an empty directory as a tree overlayfs can
 * use as a lower layer. The contract between the layer unpacker and the image reader of kiln-import.
 *
 * Hostile input. Every entry is created relative to @root_fd through descriptors (openat2 with
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS for every parent), never through a
 * path that can leave the layer: absolute names are taken relative to the root, ".." components and
 * names that go through a symlink are refused, a hard link names an entry already written in this
 * layer or is refused. Whiteouts become what overlayfs reads: ".wh.NAME" a 0/0 character device NAME,
 * ".wh..wh..opq" the xattr trusted.overlay.opaque=y on its directory. Owners, modes (setuid too),
 * times, xattrs, symlinks, hard links, device nodes and fifos are kept as the archive says.
 *
 * Digests. The bytes read through @read are hashed (the blob digest, which the manifest names) and
 * so is the uncompressed tar stream (the diff_id, which the image config names); the caller compares
 * both with what it expected, and must do so even when a layer of that diff_id is stored already:
 * only a caller who holds the bytes may use a stored layer. */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include <glib.h>

/* Like libarchive's read callback: points *@buf at the next bytes and returns how many, 0 at the end,
 * -1 on an error (errno set). */
typedef ssize_t (*KilnLayerReadFunc)(void *data, const void **buf);

typedef struct KilnLayerLimits {
        uint64_t max_bytes;   /* bytes of file content in the layer (0: none) */
        uint64_t max_entries; /* entries in the layer (0: none) */
} KilnLayerLimits;

typedef struct KilnLayerResult {
        char blob_digest[65]; /* lowercase hex SHA-256 of the bytes read through @read */
        char diff_id[65];     /* lowercase hex SHA-256 of the uncompressed tar stream */
        uint64_t bytes;       /* bytes of file content written */
        uint64_t entries;     /* entries written */
} KilnLayerResult;

/* Unpacks the layer read through @read into the empty directory @root_fd. Errors are GIOError codes:
 * G_IO_ERROR_INVALID_ARGUMENT (not a tar stream, a hostile entry; the message names the entry),
 * G_IO_ERROR_NO_SPACE (past @limits: LimitExceeded on the bus), G_IO_ERROR_FAILED (writing failed).
 * On an error the directory holds a partial tree, which the caller removes. */
gboolean kiln_layer_unpack(KilnLayerReadFunc read, void *data, int root_fd, const KilnLayerLimits *limits,
                           KilnLayerResult *result, GError **error);

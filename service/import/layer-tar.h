/* SPDX-License-Identifier: Apache-2.0 */
/* One image layer, unpacked: an OCI or Docker layer tar stream (uncompressed, gzip or zstd, found out
 * from the bytes) read with libarchive and written into an empty directory as a tree overlayfs can
 * use as a lower layer. The contract between the layer unpacker and the image reader of kiln-import.
 *
 * Hostile input. Every entry is created relative to @root_fd through descriptors (openat2 with
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV for every parent),
 * never through a path that can leave the layer: absolute names are taken relative to the root, ".."
 * components and names that go through a symlink are refused, a hard link names an entry already
 * written in this layer or is refused. Whiteouts become what overlayfs reads: ".wh.NAME" a 0/0 character
 * device NAME,
 * ".wh..wh..opq" the xattr trusted.overlay.opaque=y on its directory; other ".wh..wh." names (aufs's
 * hard link directories) are skipped with everything below them. Owners, modes (setuid too), times,
 * xattrs, symlinks, hard links, device nodes and fifos are kept as the archive says; sockets are
 * skipped. An xattr trusted.overlay.* or user.overlay.* in the archive is refused: a layer does not
 * forge overlayfs metadata. A later entry of a name replaces the earlier one (a directory over a
 * directory keeps its contents and takes the new metadata). docs/layers.md has the details.
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
 * -1 on an error (errno set). Called again after it returned 0 (the unpacker reads to the end of the
 * input, for the blob digest), it must return 0 again. */
typedef ssize_t (*KilnLayerReadFunc)(void *data, const void **buf);

/* Bounds of every layer, whatever the limits: a name (or hard link target) longer than this many bytes
 * or with more components is refused (G_IO_ERROR_INVALID_ARGUMENT), so the tree is never deeper than
 * KILN_LAYER_MAX_DEPTH; and at most KILN_LAYER_MAX_TRAILING bytes may follow the end of the tar
 * archive in the uncompressed stream (tar writers pad to a 10 KiB record). */
#define KILN_LAYER_MAX_PATH 4096
#define KILN_LAYER_MAX_DEPTH 256
#define KILN_LAYER_MAX_TRAILING (1024 * 1024)

typedef struct KilnLayerLimits {
        uint64_t max_bytes;   /* bytes of file content in the layer, the sizes in the headers of every entry
                               * (skipped ones too), sparse files at their full size (0: none) */
        uint64_t max_entries; /* entries in the layer: tar headers, and also the inodes created, parent
                               * directories an archive leaves out included (0: none) */
} KilnLayerLimits;

typedef struct KilnLayerResult {
        char blob_digest[65]; /* lowercase hex SHA-256 of the bytes read through @read */
        char diff_id[65];     /* lowercase hex SHA-256 of the uncompressed tar stream */
        uint64_t bytes;       /* bytes of file content written */
        uint64_t entries;     /* inodes created (entries, parents created for them, whiteouts) */
} KilnLayerResult;

/* Unpacks the layer read through @read into the empty directory @root_fd. Errors are GIOError codes:
 * G_IO_ERROR_INVALID_ARGUMENT (not a tar stream, a hostile entry; the message names the entry),
 * G_IO_ERROR_NO_SPACE (past @limits: LimitExceeded on the bus), G_IO_ERROR_FAILED (writing failed).
 * On an error the directory holds a partial tree, which the caller removes. */
gboolean kiln_layer_unpack(KilnLayerReadFunc read, void *data, int root_fd, const KilnLayerLimits *limits,
                           KilnLayerResult *result, GError **error);

/* SPDX-License-Identifier: Apache-2.0 */
/* The layer digest: a SHA-256 over a canonical serialization of everything a layer keeps, and the
 * contract between kiln-import and storage.c (exit codes, the empty layer).
 *
 * Serialization (integers little-endian, str = u32 length + bytes, no terminator):
 *
 *   "kiln-layer-v1\n"
 *   for every entry, in depth-first pre-order with each directory's entries sorted bytewise by name:
 *     'E' str(path)                      path relative to the layer root, "" for the root itself,
 *                                        components joined with '/'
 *     then either
 *     'L' str(first_path)                a hard link to an earlier entry (same inode; nothing else
 *                                        is recorded, the first entry's record covers it)
 *     or
 *     'M' u32 st_mode                    file type and all permission bits, setuid/setgid/sticky too
 *         u32 uid u32 gid
 *         i64 mtime_sec u32 mtime_nsec   (atime is set equal to mtime in the layer)
 *         u32 n_xattrs, n × (str name, str value), sorted bytewise by name
 *         and by type:
 *           regular file:  u64 size, then the content in blocks of KILN_LAYER_BLOCK bytes (the last
 *                          may be shorter): a maximal run of all-zero blocks is 'Z' u64 n_blocks,
 *                          any other block is 'D' u32 len + bytes   (so holes cost nothing to hash)
 *           symlink:       str(target)
 *           char/block:    u32 major u32 minor
 *           dir/fifo/sock: nothing
 *   'X' u64 n_entries
 *
 * The digest is the lowercase hex SHA-256 of that stream (64 characters). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <glib.h>

#define KILN_LAYER_DIGEST_LENGTH 64
#define KILN_LAYER_BLOCK 65536

/* kiln-import's exit codes; storage.c maps them to GIOError codes. */
enum {
        KILN_IMPORT_EXIT_OK = 0,
        KILN_IMPORT_EXIT_FAILED = 1,            /* anything else: G_IO_ERROR_FAILED */
        KILN_IMPORT_EXIT_USAGE = 2,             /* bad command line: G_IO_ERROR_FAILED (a kilnd bug) */
        KILN_IMPORT_EXIT_NOT_FOUND = 3,         /* G_IO_ERROR_NOT_FOUND */
        KILN_IMPORT_EXIT_PERMISSION_DENIED = 4, /* G_IO_ERROR_PERMISSION_DENIED */
        KILN_IMPORT_EXIT_NOT_DIRECTORY = 5,     /* G_IO_ERROR_NOT_DIRECTORY */
        KILN_IMPORT_EXIT_INVALID = 6,           /* the tree cannot be imported (limits, pseudo file
                                                 * systems): G_IO_ERROR_INVALID_ARGUMENT */
        KILN_IMPORT_EXIT_LIMIT = 7,             /* more file content than --max-bytes: G_IO_ERROR_NO_SPACE
                                                 * (LimitExceeded on the bus) */
};

/* What kiln-import writes to --progress-fd: one record a write (smaller than PIPE_BUF, so whole), at
 * most every KILN_IMPORT_PROGRESS_MS and at each layer's end, dropped rather than waited for when the
 * pipe is full. @layer layers are done of @layers (0: not known yet, as while an archive streams);
 * @bytes of the source are read of @total (0: not known). The last, after the image is verified and
 * stored, has @layer == @layers and @bytes == @total. */
#define KILN_IMPORT_PROGRESS_MS 100
typedef struct KilnImportProgress {
        uint32_t layer;
        uint32_t layers;
        uint64_t bytes;
        uint64_t total;
} KilnImportProgress;

typedef struct KilnXattr {
        char *name;
        void *value;
        size_t size;
} KilnXattr;

/* 64 lowercase hex characters, nothing else: a layer digest or a builder id. */
bool kiln_hex64_is_valid(const char *s);

void kiln_layer_hash_begin(GChecksum *c);
void kiln_layer_hash_link(GChecksum *c, const char *path, const char *first_path);
void kiln_layer_hash_meta(GChecksum *c, const char *path, uint32_t mode, uint32_t uid, uint32_t gid,
                          int64_t mtime_sec, uint32_t mtime_nsec, const KilnXattr *xattrs, size_t n_xattrs);
void kiln_layer_hash_symlink(GChecksum *c, const char *target, size_t len);
void kiln_layer_hash_device(GChecksum *c, dev_t rdev);
void kiln_layer_hash_content_size(GChecksum *c, uint64_t size);
void kiln_layer_hash_zero_blocks(GChecksum *c, uint64_t n_blocks);
void kiln_layer_hash_data_block(GChecksum *c, const void *data, size_t len);
void kiln_layer_hash_end(GChecksum *c, uint64_t n_entries);

/* The empty layer that `scratch` builders use: exactly what kiln-import produces for an empty
 * directory owned by 0:0, mode 0755, mtime 0 (the epoch), no xattrs. */
#define KILN_LAYER_EMPTY_MODE 0755
char *kiln_layer_empty_digest(void);

/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-import's directory mode, shared by its two files only: kiln-import.c (options, the passes, the
 * reader's records, publishing) and dir-entry.c (each received entry written into the tmp tree and
 * hashed into the layer digest). */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <glib.h>

#define COPY_BUFFER_SIZE (1024 * 1024)
#define XATTR_MAX_SIZE 65536 /* XATTR_SIZE_MAX and XATTR_LIST_MAX */

extern volatile sig_atomic_t import_terminating;

#define SHIFT_MAX_RANGES 340
#define OVERFLOW_ID 65534

/* One user namespace map: container ids [c, c + n) are host ids [h, h + n). */
typedef struct IdShift {
        uint32_t c[SHIFT_MAX_RANGES], h[SHIFT_MAX_RANGES], n[SHIFT_MAX_RANGES];
        size_t len;
} IdShift;

/* A directory of the new layer that may still get entries: the stack of these mirrors the reader's. */
typedef struct Dir {
        uint32_t index; /* the reader's record index */
        int fd;         /* our directory in the tmp tree */
        char *path;     /* relative to the layer root, "" for the root */
        unsigned depth;
        mode_t mode;
        struct timespec mtime;
        char *last_name; /* the previous entry's name, to check the order */
} Dir;

typedef struct InodeKey {
        dev_t dev;
        ino_t ino;
} InodeKey;

typedef struct Importer {
        int layers_fd;
        char tmp_name[32];
        int tmp_fd;  /* owned by the root Dir once that exists */
        int lock_fd; /* the tmp tree's flock, held until it is published or removed */
        int sock;
        pid_t child;
        GChecksum *checksum;
        GArray *stack;     /* Dir */
        GHashTable *links; /* InodeKey → path of the first entry */
        GChecksum *fingerprint;
        bool fingerprint_only;          /* the first pass: open and fstat everything, create nothing */
        IdShift *shift_uid, *shift_gid; /* NULL: owners as they are */
        char *shift_text;
        uint32_t n_records;
        uint64_t max_bytes; /* of regular file content */
        uint64_t bytes;     /* counted so far in this pass; in the import, what was written */
        uint8_t *buffer;
        int exit_code;
        char *error;
} Importer;

int import_fail(Importer *im, int exit_code, const char *format, ...) G_GNUC_PRINTF(3, 4);
guint import_inode_hash(gconstpointer p);
gboolean import_inode_equal(gconstpointer a, gconstpointer b);
void import_dir_clear(Dir *d);
int import_stack_pop(Importer *im);
int import_handle_entry(Importer *im, uint32_t parent, const char *raw_name, size_t name_len, int fd);
int import_fail_errno(Importer *im, int err, const char *syscall_name, const char *path);
const char *import_display(const char *path);
char *import_join_path(const char *dir, const char *name);
bool import_check_terminating(Importer *im);

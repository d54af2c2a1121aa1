/* SPDX-License-Identifier: Apache-2.0 */
/* What kiln-import's reader (the unprivileged child) sends its parent over a SOCK_SEQPACKET pair.
 *
 * The reader walks the tree depth-first, each directory's entries sorted bytewise by name, and sends
 * one ENTRY record per entry (the root first, with parent KILN_IMPORT_NO_PARENT and an empty name)
 * carrying the entry's name, the index of its parent directory's record (records are numbered from 0
 * in the order sent) and the opened entry as SCM_RIGHTS. Then DONE, or one ERROR instead.
 * The parent acknowledges each ENTRY with one byte; the reader keeps at most KILN_IMPORT_WINDOW
 * entries unacknowledged, so few descriptors are ever in flight.
 *
 * The parent believes none of it: metadata comes from fstat of the received descriptors, names are
 * validated, their order and the parent indexes are checked against its own directory stack. */
#pragma once

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Limits (enforced by the parent; the reader checks them too, to fail early with a clear message). */
#define KILN_IMPORT_MAX_DEPTH 256        /* directory levels below the root */
#define KILN_IMPORT_MAX_ENTRIES 1000000u /* entries in the whole tree, the root included */
#define KILN_IMPORT_MAX_PATH PATH_MAX    /* bytes in an entry's path relative to the root */
#define KILN_IMPORT_MAX_GROUPS 65536     /* supplementary groups (NGROUPS_MAX) */

#define KILN_IMPORT_WINDOW 32
#define KILN_IMPORT_NO_PARENT UINT32_MAX

enum {
        KILN_IMPORT_RECORD_ENTRY = 1,
        KILN_IMPORT_RECORD_DONE = 2,
        KILN_IMPORT_RECORD_ERROR = 3,
};

/* What failed, for ERROR records. */
enum {
        KILN_IMPORT_WHAT_OPEN = 1,      /* error: errno */
        KILN_IMPORT_WHAT_STAT,          /* error: errno */
        KILN_IMPORT_WHAT_READDIR,       /* error: errno */
        KILN_IMPORT_WHAT_CHANGED,       /* the entry changed type while being opened */
        KILN_IMPORT_WHAT_TOO_DEEP,      /* deeper than KILN_IMPORT_MAX_DEPTH */
        KILN_IMPORT_WHAT_TOO_MANY,      /* more than KILN_IMPORT_MAX_ENTRIES */
        KILN_IMPORT_WHAT_PATH_TOO_LONG, /* longer than KILN_IMPORT_MAX_PATH */
        KILN_IMPORT_WHAT_PSEUDO_FS,     /* on proc, sysfs, ... */
        KILN_IMPORT_WHAT_DROP,          /* could not become the caller; error: errno */
};

typedef struct KilnImportRecordHeader {
        uint32_t kind;
        uint32_t parent;   /* ENTRY: index of the parent directory's record */
        int32_t error;     /* ERROR: errno, or 0 */
        uint32_t what;     /* ERROR: KILN_IMPORT_WHAT_* */
        uint32_t name_len; /* bytes of name that follow */
} KilnImportRecordHeader;

typedef struct KilnImportRecord {
        KilnImportRecordHeader h;
        char name[KILN_IMPORT_MAX_PATH]; /* ENTRY: the entry's name; ERROR: the failing path */
} KilnImportRecord;

/* The reader, run in the forked child; never returns. @src_fd >= 0 (an inherited descriptor) or
 * @src_path (opened as the caller). */
typedef struct KilnImportReaderArgs {
        uid_t uid;
        gid_t gid;
        const gid_t *groups;
        size_t n_groups;
        const char *src_path;
        int src_fd;
        int sock;
        pid_t parent_pid;
} KilnImportReaderArgs;

_Noreturn void kiln_import_reader_run(const KilnImportReaderArgs *args);

/* The reader's first step, in the forked child: default signal dispositions, stdio on /dev/null,
 * every descriptor closed but @sock and @src_fd (-1: none). 0 or an errno. */
int kiln_import_reader_isolate(int sock, int src_fd);

/* Becomes the caller of @args for good (groups, gids, uids; no capability, no way back to root,
 * no_new_privs), as the reader does before it opens anything. Returns 0 or an errno. */
int kiln_import_become_caller(const KilnImportReaderArgs *args);

/* The KILN_IMPORT_EXIT_* code (layer-digest.h) for an errno of opening or reading the caller's
 * source: not found, permission denied, not a directory, else failed. */
int kiln_import_exit_code_for_errno(int e);

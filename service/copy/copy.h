/* SPDX-License-Identifier: Apache-2.0 */
/* Copying into and out of a builder's root file system (Builder.Copy, Builder.CopyOut).
 *
 * In: the client sends a tar stream it made itself, as the caller, of files it could read (kilnd never
 * opens a caller's source: a root service reading a path or a directory descriptor on someone's behalf
 * reads what they could not). kilnd unpacks the stream under a destination resolved inside the root
 * file system (openat2 RESOLVE_IN_ROOT). The stream is hostile: every entry is created through
 * descriptors beneath the destination, ".." is refused, no symlink is followed below the destination,
 * only directories, regular files, symlinks and hard links to entries beneath the destination are made,
 * and every entry gets the owner kilnd chose (container root, or --chown), never the archive's.
 *
 * Out: a tar stream of a path inside the root file system, written to a descriptor the caller opened,
 * which the client unpacks as the caller: the files are the caller's.
 *
 * Both run on a thread of their own (never on the main loop), read or write the caller's descriptor only
 * when poll() says it is ready, stop when the caller leaves the bus, and are bounded in bytes and entries
 * ([Limits] CopyBytes, CopyEntries). */
#pragma once

#include <sys/types.h>

#include <gio/gio.h>

#include "base/errors.h"

/* Directories deeper than this below the copied path are refused (each level holds a descriptor). */
#define KILN_COPY_MAX_DEPTH 128

/* "0644", "755", "4755": octal digits only, at most 07777. InvalidArgument naming @arg otherwise. */
gboolean kiln_copy_parse_mode(const char *arg, const char *s, guint32 *mode, GError **error);

/* A tar entry's name made relative to the destination: leading "/" and "./" dropped, "." components and
 * repeated slashes removed; "" is the destination itself. ".." anywhere, an empty name, a NUL-free name
 * longer than PATH_MAX or a component longer than NAME_MAX is an InvalidArgument naming the entry. */
char *kiln_copy_entry_path(const char *name, GError **error);

typedef struct KilnCopyLimits {
        guint64 max_bytes;   /* G_MAXUINT64: none */
        guint64 max_entries; /* G_MAXUINT64: none */
} KilnCopyLimits;

typedef struct KilnCopyIn {
        int stream_fd;    /* the caller's tar stream (kiln_copy_take_fd), owned */
        int root_fd;      /* the builder's mounted root file system, owned */
        char *dest;       /* the destination inside it */
        gboolean as_file; /* the stream holds one regular file, written as @dest unless @dest is a directory
                           */
        char *chown;      /* "USER[:GROUP]" resolved in the root's /etc/passwd and /etc/group; NULL: root */
        GArray *uid_map; /* the builder's user namespace (KilnIdMapping), or NULL: container ids are host ids
                          */
        GArray *gid_map;
        gboolean has_mode; /* mode replaces every entry's permission bits (not symlinks') */
        guint32 mode;
        KilnCopyLimits limits;
        guint64 bytes;   /* out: bytes of file content written */
        guint64 entries; /* out: entries written */
} KilnCopyIn;

void kiln_copy_in_clear(KilnCopyIn *job);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(KilnCopyIn, kiln_copy_in_clear)

/* Resolves the owner and the destination, then unpacks the stream. Blocking: call it on a thread. Errors:
 * InvalidArgument (not a tar stream, a hostile entry: the message names it), LimitExceeded (naming the
 * setting), G_IO_ERROR_CANCELLED. */
gboolean kiln_copy_in_run(KilnCopyIn *job, GCancellable *cancellable, GError **error);

typedef struct KilnCopyOut {
        int root_fd; /* the builder's mounted root file system, owned */
        char *path;  /* what is copied, inside it */
        int out_fd;  /* the caller's descriptor (kiln_copy_take_fd), owned */
        KilnCopyLimits limits;
        guint64 bytes;
        guint64 entries;
} KilnCopyOut;

void kiln_copy_out_clear(KilnCopyOut *job);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(KilnCopyOut, kiln_copy_out_clear)

/* Writes the tar stream of @path (its top entry named after its last component, "." for "/"). Blocking:
 * call it on a thread. Only directories, regular files and symlinks are written (owners 0:0: the files
 * become the caller's where he unpacks them); symlinks on the way to @path are followed inside the root,
 * nothing below it is followed. */
gboolean kiln_copy_out_run(KilnCopyOut *job, GCancellable *cancellable, GError **error);

/* The caller's descriptor, for a copy: a FIFO or a regular file open for @writing or reading; else an
 * InvalidArgument naming @arg. A FIFO is reopened (same pipe, new open file description) non-blocking, so
 * that a thread can wait on it with poll() and the cancellable. Returns the new descriptor or -1. */
int kiln_copy_take_fd(const char *arg, int fd, gboolean writing, GError **error);

/* SPDX-License-Identifier: Apache-2.0 */
/* What storage.c and storage-overlay.c share and nobody else sees: the storage object and the
 * helpers both halves use. */
#pragma once

#include <sys/types.h>

#include "storage/storage.h"

struct KilnStorage {
        char *state_dir;
        char *runtime_dir;
        char *helper_path;
        char *layers_dir;
        char *builders_dir;
        char *mounts_dir;
        char *bundles_dir;
        char *runtime_root;  /* the OCI runtime's --root */
        char *isolate_root;  /* kiln-isolate's --root */
        char *isolate_cache; /* kiln-isolate's --cache-dir */
        int layers_fd;
        int builders_fd;
        int mounts_fd;
        int bundles_fd;
        gboolean layers_by_path; /* overlayfs takes no layer descriptors (before Linux 6.13) */

        /* Layer collection and the size bounds (see storage.h). */
        guint64 import_bytes;   /* [Limits] ImportBytes */
        guint64 bytes_per_user; /* [Limits] StorageBytesPerUser */
        guint64 image_bytes;    /* [Limits] ImageBytes, LayersPerImage, EntriesPerLayer */
        guint layers_per_image;
        guint entries_per_layer;
        KilnLayerUsesFunc uses_func;
        gpointer uses_data;
        GHashTable *kept;         /* digests never collected: layers of builders kilnd could not load */
        gboolean keep_all;        /* a builder whose layer is unknown: nothing is collected */
        guint busy;               /* helpers running, or results not yet taken by their caller */
        gboolean collect_pending; /* asked for while busy: done once nothing is */
        guint collect_idle;
        GHashTable *sizes; /* digest → bytes of file content (from .sizes/), a cache */
};

/* "SYSCALL 'PATH': strerror" as the G_IO_ERROR of @err; returns FALSE. */
gboolean kiln_storage_errno_error(GError **error, int err, const char *syscall_name, const char *path);
/* @value is an id or digest: 64 lowercase hex characters; else G_IO_ERROR_INVALID_ARGUMENT naming @what. */
gboolean kiln_storage_check_id(const char *what, const char *value, GError **error);
/* How often a busy mount is tried again before it is detached instead. */
#define UNMOUNT_ATTEMPTS 8

/* RUNTIME/mounts/ID */
char *kiln_storage_mount_point_path(KilnStorage *s, const char *id);
gboolean kiln_storage_path_is_mounted(const char *path);
/* Unmounts @path (UMOUNT_NOFOLLOW): a plain unmount first, a lazy detach only if it is busy. */
gboolean kiln_storage_unmount_path(const char *path, GError **error);

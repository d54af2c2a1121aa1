/* SPDX-License-Identifier: Apache-2.0 */
/* A Builder: a working container — its identity, its base layer and its configuration — and its
 * metadata file builder.json. */
#pragma once

#include <sys/types.h>

#include "run/builder-config.h"

struct KilnManager;

typedef struct KilnBuilder {
        struct KilnManager *manager; /* the one that exports it; not owned */
        char *id;                    /* 64 hex */
        char *name;
        uid_t owner;
        char *from;           /* as the caller gave it: "scratch" or a path */
        char *layer;          /* digest of the top base layer (the only one of a directory or scratch) */
        char **layers;        /* every base layer, bottom first; the last is @layer */
        char *image;          /* an image's digest and history as JSON (kept for a later commit), or NULL */
        char **image_volumes; /* the image's Volumes (from @image): empty directories every run finds */
        gboolean layer_shifted; /* the base is a copy shifted to the owner's ID maps (no ID-mapping) */
        guint64 created_usec;
        KilnBuilderConfig config;
        char *object_path;
        char *mount_path;         /* while Mount()ed */
        guint rootfs_refs;        /* Mount() and each run hold one; at zero kept [Run] KeepMountedSeconds */
        gboolean rootfs_idmapped; /* mounted with the owner's ID maps (userns=auto) */
        guint rootfs_linger_source; /* held by nobody, still mounted until this timeout */
        dev_t rootfs_dev;           /* the mount's device, to know it again (storage.h) */
        GArray *rootfs_uid_map;     /* the maps its layers are ID-mapped through, if they are */
        GArray *rootfs_gid_map;
        sd_bus_message *pending_remove; /* Remove(force) waiting for the processes it killed */
} KilnBuilder;

KilnBuilder *kiln_builder_new(const char *id, const char *name, uid_t owner, const char *from,
                              const char *layer, guint64 created_usec);
/* Sets @image (JSON, or NULL) and the image volumes it names. */
void kiln_builder_set_image(KilnBuilder *builder, const char *image);
/* Sets the base layers (bottom first, at least one); @layer becomes the last. */
void kiln_builder_set_layers(KilnBuilder *builder, const char *const *layers);
void kiln_builder_free(KilnBuilder *builder);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnBuilder, kiln_builder_free)

/* builder.json as a string, and back; pure (no file system). */
char *kiln_builder_to_json(const KilnBuilder *builder);
KilnBuilder *kiln_builder_from_json(const char *json, GError **error);

/* Writes DIR/builder.json atomically (temporary file, fsync, rename). */
gboolean kiln_builder_save(const KilnBuilder *builder, const char *dir, GError **error);
KilnBuilder *kiln_builder_load(const char *dir, GError **error);

char *kiln_builder_object_path(const char *id);
char *kiln_generate_id(void);

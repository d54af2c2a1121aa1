/* SPDX-License-Identifier: Apache-2.0 */
/* The image store: images committed from builders, one owner each.
 *
 *   STATE/images/<id>/image.json    the image: owner, names, created, format, its manifest, config and
 *                                   layer blobs by digest (written atomically)
 *   STATE/images/blobs/sha256/<hex> manifests, configs and compressed layers, content-addressed and
 *                                   shared; a blob no image names is removed with the last image
 *   STATE/images/bases/<digest>-<c> the blob a stored base layer was written as with compression <c>, so
 *                                   that the next commit on the same base writes only its own layer
 *   STATE/images/.tmp-*             a blob being written (removed on start-up)
 *
 * An image id is the SHA-256 of "kiln-image-v1\n", the owner's uid and the config's digest: the same
 * commit by the same user is the same image (a second commit adds its name), two users' identical
 * images are two images, and one user cannot learn from an id what another has. */
#pragma once

#include <sys/types.h>

#include <gio/gio.h>

#include "image/layer-write.h"

#define KILN_MEDIA_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define KILN_MEDIA_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define KILN_MEDIA_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define KILN_MEDIA_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"

typedef struct KilnImageLayer {
        char *digest;     /* "sha256:<hex>" of the blob */
        char *diff_id;    /* "sha256:<hex>" of the uncompressed tar */
        guint64 size;     /* bytes of the blob */
        guint64 tar_size; /* bytes of the uncompressed tar */
        KilnCompression compression;
} KilnImageLayer;

typedef struct KilnImage {
        char *id; /* 64 hex */
        char **names;
        uid_t owner;
        guint64 created_usec;
        char *format;                /* "oci" or "docker": the manifest's media types */
        KilnCompression compression; /* of the layers when pushed (they are stored as tar) */
        char *manifest_digest;       /* "sha256:<hex>" */
        char *config_digest;
        GPtrArray *layers; /* KilnImageLayer, bottom first */
        char *object_path;
        gpointer manager; /* the one that exports it; not owned */
        /* while loaded, not saved */
        char *config_json; /* the config blob's bytes */
        guint64 size;      /* manifest + config + layer blobs */
        guint pushes;      /* pushes in progress: Remove waits for none */
} KilnImage;

void kiln_image_layer_free(gpointer layer);
void kiln_image_free(KilnImage *image);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnImage, kiln_image_free)

/* image.json as a string, and back (pure). */
char *kiln_image_to_json(const KilnImage *image);
KilnImage *kiln_image_from_json(const char *json, gsize length, GError **error);

/* The id of an image of @owner with @config_digest ("sha256:<hex>"). */
char *kiln_image_id_for(uid_t owner, const char *config_digest);
/* A name as the store keeps it: "NAME:TAG", ":latest" added when there is no tag. NULL and
 * InvalidArgument naming @arg when it is not [A-Za-z0-9][A-Za-z0-9._/-]* with an optional
 * :[A-Za-z0-9_][A-Za-z0-9._-]{0,127}, at most 255 characters. */
char *kiln_image_normalize_name(const char *arg, const char *name, GError **error);

/* What a commit makes into an image config (pure: the same input gives the same bytes). */
typedef struct KilnImageConfigInput {
        const char *const *env;
        const char *const *entrypoint; /* NULL: none */
        const char *const *cmd;
        const char *working_dir;
        const char *user;
        const char *const *labels; /* "key=value" */
        const char *const *volumes;
        const char *stop_signal;
        const char *const *exposed_ports;
        gint64 created;                        /* seconds since the epoch */
        const char *const *diff_ids;           /* "sha256:<hex>", bottom first */
        const char *base_history;              /* the base image's history entries (a JSON array), or NULL */
        const char *const *history_created_by; /* the entries that follow, each with one layer */
        const char *os, *architecture;         /* NULL: the host's */
} KilnImageConfigInput;
char *kiln_image_config_json(const KilnImageConfigInput *in);
/* The manifest of @format ("oci", "docker") for the config blob and @layers. */
char *kiln_image_manifest_json(const char *format, const char *config_digest, guint64 config_size,
                               const GPtrArray *layers);

typedef struct KilnImageStore KilnImageStore;

KilnImageStore *kiln_image_store_new(const char *state_dir, GError **error);
void kiln_image_store_free(KilnImageStore *store);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnImageStore, kiln_image_store_free)
/* Every image on disk, as new KilnImages (one that cannot be read is logged and kept on disk). */
GPtrArray *kiln_image_store_load(KilnImageStore *store);
/* STATE/images/blobs/sha256/<hex of @digest> */
char *kiln_image_store_blob_path(KilnImageStore *store, const char *digest);
gboolean kiln_image_store_save(KilnImageStore *store, const KilnImage *image, GError **error);
/* Removes STATE/images/<id>; then every blob and base entry that no image of @keep names. */
gboolean kiln_image_store_remove(KilnImageStore *store, const char *id, GError **error);
void kiln_image_store_collect(KilnImageStore *store, GPtrArray *keep);

/* Thread-safe parts (a commit writes in a thread). */
/* A new temporary file in STATE/images (O_TMPFILE where the file system has it). */
int kiln_image_store_tmpfile(KilnImageStore *store, GError **error);
/* Links the temporary file @fd as the blob @digest (an existing blob of that digest is kept). */
gboolean kiln_image_store_link_blob(KilnImageStore *store, int fd, const char *digest, GError **error);
gboolean kiln_image_store_put_blob(KilnImageStore *store, const char *bytes, gsize len, char **ret_digest,
                                   GError **error);
/* The base-layer blob written earlier for @layer_digest with @compression, if its blob is still there. */
KilnImageLayer *kiln_image_store_lookup_base(KilnImageStore *store, const char *layer_digest,
                                             KilnCompression compression);
void kiln_image_store_remember_base(KilnImageStore *store, const char *layer_digest,
                                    const KilnImageLayer *layer);
/* Bytes of the distinct blobs in @images owned by @owner. */
guint64 kiln_images_bytes(KilnImageStore *store, GPtrArray *images, uid_t owner);

/* Push: an oci-archive or docker-archive tar stream of @image written to @fd (a pipe, socket or file
 * the caller opened). @ref_name: the name:tag to record (NULL: the image's first name, if any). Every
 * write waits at most @write_timeout_sec for the reader. Reads only blobs; for threads. */
gboolean kiln_image_push(KilnImageStore *store, const KilnImage *image, const char *format,
                         const char *ref_name, int fd, guint write_timeout_sec, GCancellable *cancellable,
                         GError **error);
/* A copy of what kiln_image_push reads, for a thread. */
KilnImage *kiln_image_copy(const KilnImage *image);

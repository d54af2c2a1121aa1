/* SPDX-License-Identifier: Apache-2.0 */
/* Storage: content-addressed read-only layers and per-builder overlays.
 *
 *   STATE/layers/<digest>/        a read-only base tree, shared by every builder made from it
 *   STATE/layers/.tmp-*           an import in progress (locked by kiln-import while it writes; removed
 *                                 on start-up when nobody holds it), or an unused layer being removed
 *   STATE/layers/.sizes/<digest>  the layer's bytes of file content, as kiln-import counted them
 *   STATE/layers/.fingerprints/   source fingerprint → layer (see kiln-import.c)
 *   STATE/builders/<id>/          builder.json (written by builder.c), upper/, work/
 *   RUNTIME/mounts/<id>/          the builder's overlay while mounted
 *   RUNTIME/bundles/<container>/  one run's bundle (config.json, generated files)
 *   RUNTIME/runtime/              the OCI runtime's --root (its state of kiln's containers)
 *   RUNTIME/isolate/              kiln-isolate's --root (chroot isolation)
 *   RUNTIME/isolate-cache/        kiln-isolate's compiled seccomp filters
 *
 * Errors are GIOError codes: G_IO_ERROR_NOT_FOUND, G_IO_ERROR_PERMISSION_DENIED (the caller may not
 * read something in the source), G_IO_ERROR_NOT_DIRECTORY, G_IO_ERROR_INVALID_ARGUMENT,
 * G_IO_ERROR_FAILED, G_IO_ERROR_NO_SPACE (a [Limits] bound, which the message names: LimitExceeded on
 * the bus); messages name the path and the reason.
 *
 * Layers are collected, not counted: a layer is in use while a builder's metadata names it, so the
 * builders are the one record (nothing separate that could drift from them). The manager says which
 * builders there are (kiln_storage_set_layer_uses); kiln_storage_collect_layers() removes every layer
 * none of them uses. It runs at start-up and when a builder is removed, and waits while kiln-import
 * runs (a helper may be about to name a layer no builder uses yet). */
#pragma once

#include <sys/types.h>

#include <gio/gio.h>
#include <json-glib/json-glib.h>

/* Who the import reads as: the caller's uid, primary gid and supplementary groups. */
typedef struct KilnCreds {
        uid_t uid;
        gid_t gid;
        gid_t *groups;
        size_t n_groups;
} KilnCreds;

typedef struct KilnStorage KilnStorage;

/* Creates the directories it needs under @state_dir and @runtime_dir. @helper_dir holds kiln-import. */
KilnStorage *kiln_storage_new(const char *state_dir, const char *runtime_dir, const char *helper_dir,
                              GError **error);
void kiln_storage_free(KilnStorage *storage);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnStorage, kiln_storage_free)

/* Start-up cleanup of what a crash left: everything mounted under RUNTIME/mounts and RUNTIME/bundles
 * (deepest first), the mount points and bundle directories, and STATE/layers/.tmp-* trees that no
 * kiln-import holds locked. */
void kiln_storage_cleanup_stale(KilnStorage *storage);

/* [Limits] ImportBytes (bytes of file content in one imported layer, every caller) and
 * StorageBytesPerUser (bytes of file content in the distinct layers one uid's builders use, uid 0
 * excepted); G_MAXUINT64 for none. Both are enforced by kiln-import as it reads. */
void kiln_storage_set_limits(KilnStorage *storage, guint64 import_bytes, guint64 bytes_per_user);

/* One builder's use of a layer. */
typedef struct KilnLayerUse {
        uid_t owner;
        const char *layer; /* digest, borrowed from the builder */
} KilnLayerUse;
/* Every builder's KilnLayerUse, as a new GArray. */
typedef GArray *(*KilnLayerUsesFunc)(gpointer data);
/* Who uses which layer (NULL: nobody says; nothing is collected then). */
void kiln_storage_set_layer_uses(KilnStorage *storage, KilnLayerUsesFunc func, gpointer data);
/* Never collect @digest (a builder kilnd could not load may use it); NULL: never collect anything. */
void kiln_storage_keep_layer(KilnStorage *storage, const char *digest);
/* Removes the layers no builder uses (renamed away at once, deleted in a thread); deferred while an
 * import runs. */
void kiln_storage_collect_layers(KilnStorage *storage);
/* Bytes of file content in the distinct layers @owner's builders use. */
guint64 kiln_storage_user_bytes(KilnStorage *storage, uid_t owner);

/* Pure parts, for the tests. The entries of @names (a directory listing of STATE/layers) that are layers
 * no entry of @uses names and not in @kept (a set of digests, or NULL). */
GPtrArray *kiln_layers_unused(GPtrArray *names, const GArray *uses, GHashTable *kept);
/* The sum of size_of() over the distinct layers @owner uses in @uses. */
guint64 kiln_layer_uses_bytes(const GArray *uses, uid_t owner,
                              guint64 (*size_of)(const char *digest, gpointer data), gpointer data);
/* The mount points in @points (mountinfo order) strictly below @dir, in the order to unmount them:
 * deepest first, later mounts first among equals. */
GPtrArray *kiln_mounts_below(GPtrArray *points, const char *dir);

/* Imports the directory tree at @src_path (opened with @creds, never as root) or open at @src_fd
 * (exactly one; the fd is taken over) into a layer, reading every entry with @creds. An identical
 * tree imported earlier is reused. The result is the layer digest (64 hex chars). */
void kiln_storage_import_async(KilnStorage *storage, const char *src_path, int src_fd,
                               const KilnCreds *creds, GCancellable *cancellable,
                               GAsyncReadyCallback callback, gpointer user_data);
char *kiln_storage_import_finish(KilnStorage *storage, GAsyncResult *result, GError **error);
/* [Limits] ImageBytes (all layers of one image together), LayersPerImage, EntriesPerLayer; G_MAXUINT64
 * bytes for none. */
void kiln_storage_set_image_limits(KilnStorage *storage, guint64 image_bytes, guint layers_per_image,
                                   guint entries_per_layer);

/* What an image import made: its layers (diff_id hex, bottom first, each stored as a layer), the
 * manifest's digest ("sha256:…"), and what kiln-import printed of the image config (a JSON object with
 * "config", "history", "os", "architecture"; see service/import/image-read.h). */
typedef struct KilnImportedImage {
        char **layers;
        char *digest;
        JsonNode *result;
} KilnImportedImage;
void kiln_imported_image_free(KilnImportedImage *image);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnImportedImage, kiln_imported_image_free)

/* How far an image import is (KilnImportProgress, service/import/layer-digest.h): @layer of @layers
 * (0: not known yet), @bytes of @total of the source read (0: not known). Called on the thread that
 * started the import, never after its callback. */
typedef void (*KilnImportProgressFunc)(guint layer, guint layers, guint64 bytes, guint64 total,
                                       gpointer data);

/* Imports the image @kind ("oci", "oci-archive", "docker-archive") at @src_path (opened with @creds,
 * never as root) or open at @src_fd (exactly one; the fd is taken over), the one named @ref (NULL: the
 * only one) for @platform ("os/arch[/variant]", NULL: the host's). Every layer is verified against both
 * its digests, also one stored already. @progress (NULL: none) hears how far it is. */
void kiln_storage_import_image_async(KilnStorage *storage, const char *kind, const char *src_path,
                                     int src_fd, const char *ref, const char *platform,
                                     const KilnCreds *creds, KilnImportProgressFunc progress,
                                     gpointer progress_data, GCancellable *cancellable,
                                     GAsyncReadyCallback callback, gpointer user_data);
KilnImportedImage *kiln_storage_import_image_finish(KilnStorage *storage, GAsyncResult *result,
                                                    GError **error);

/* A copy of the layer @digest whose owners are shifted through user namespace maps ("C:H:N,...", as
 * checked by userns.c): for kernels or file systems that refuse ID-mapped mounts. The result is a
 * layer digest; finish with kiln_storage_import_finish(). */
void kiln_storage_shift_layer_async(KilnStorage *storage, const char *digest, const char *uid_shift,
                                    const char *gid_shift, GCancellable *cancellable,
                                    GAsyncReadyCallback callback, gpointer user_data);

/* The empty layer that `scratch` builders use (created on first use). */
char *kiln_storage_scratch_layer(KilnStorage *storage, GError **error);
gboolean kiln_storage_layer_exists(KilnStorage *storage, const char *digest);

/* STATE/builders/<id> */
char *kiln_storage_builder_dir(KilnStorage *storage, const char *id);
/* Creates STATE/builders/<id>/{upper,work}; fails with G_IO_ERROR_EXISTS if the directory exists. */
gboolean kiln_storage_create_builder(KilnStorage *storage, const char *id, GError **error);
/* Unmounts the builder's overlay if mounted and removes STATE/builders/<id> without following
 * any symlink in it. */
gboolean kiln_storage_remove_builder(KilnStorage *storage, const char *id, GError **error);

/* Mounts the overlay (lower: the @layers, bottom first, stacked with the last on top; upper/work: the
 * builder's) at RUNTIME/mounts/<id>, nosuid and nodev; mounting an already mounted builder returns the
 * same path. With @userns_fd (else -1) each layer is ID-mapped through that user namespace (see
 * mount-idmap.h); the upper dir is not: it holds what the container writes, owned on the host by the mapped
 * IDs. */
char *kiln_storage_mount(KilnStorage *storage, const char *id, const char *const *layers, int userns_fd,
                         GError **error);
gboolean kiln_storage_unmount(KilnStorage *storage, const char *id, GError **error);
/* Whether the layers' file system takes an ID-mapped mount through @userns_fd (the error says why not). */
gboolean kiln_storage_can_idmap_layers(KilnStorage *storage, int userns_fd, GError **error);
gboolean kiln_storage_is_mounted(KilnStorage *storage, const char *id);
/* RUNTIME/mounts/<id>, mounted or not (NULL for an invalid id). */
char *kiln_storage_mount_point(KilnStorage *storage, const char *id);
/* The device of the file system mounted at the builder's mount point, 0 when none is: an overlay has a
 * device of its own for as long as it exists, so the same device later means the same mount, still in
 * place. One fstatat, where kiln_storage_is_mounted() reads the whole mount table. */
dev_t kiln_storage_mount_device(KilnStorage *storage, const char *id);

/* A fresh RUNTIME/bundles/<container_id> (0700); the id is [A-Za-z0-9_-]. */
char *kiln_storage_new_bundle(KilnStorage *storage, const char *container_id, GError **error);
gboolean kiln_storage_remove_bundle(KilnStorage *storage, const char *container_id, GError **error);
const char *kiln_storage_runtime_root(KilnStorage *storage);
/* kiln-isolate's --root: RUNTIME/isolate */
const char *kiln_storage_isolate_root(KilnStorage *storage);
/* kiln-isolate's --cache-dir (compiled seccomp filters): RUNTIME/isolate-cache */
const char *kiln_storage_isolate_cache(KilnStorage *storage);

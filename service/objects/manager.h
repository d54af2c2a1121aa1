/* SPDX-License-Identifier: Apache-2.0 */
/* The Manager: every builder on the host, by id and by name, and their life cycle on disk. */
#pragma once

#include <systemd/sd-bus.h>

#include "authz/auth.h"
#include "objects/builder.h"
#include "base/config.h"
#include "run/run-caches.h"
#include "run/run.h"
#include "storage/storage.h"
#include "storage/userns.h"

struct KilnManager;

/* What the objects' D-Bus faces do when the registry changes, set when they are registered
 * (kiln_manager_register()): the Manager and the Process objects tell the bus through these instead
 * of including the faces that include them. Unset before registration, when nothing is exported. */
typedef struct KilnManagerHooks {
        void (*builder_added)(struct KilnManager *manager, KilnBuilder *builder);
        void (*builder_removed)(struct KilnManager *manager, KilnBuilder *builder);
        /* A process of @builder started or ended. */
        void (*builder_processes_changed)(struct KilnManager *manager, KilnBuilder *builder);
        /* The running processes of @owner, in @builder_id or in any builder when NULL. */
        guint (*count_running)(struct KilnManager *manager, const char *builder_id, uid_t owner);
} KilnManagerHooks;

typedef struct KilnManager {
        KilnConfig *config;
        KilnStorage *storage;
        KilnAuth *auth;
        KilnUserns *userns;       /* subordinate ids and the pool (owned) */
        gboolean idmapped_layers; /* layers can be ID-mapped here (else: shifted copies) */
        sd_bus *bus;
        GHashTable *builders;       /* id → KilnBuilder (owned) */
        GHashTable *names;          /* name → KilnBuilder */
        GHashTable *reserved_names; /* names of builders being created */
        char **runtimes;            /* configured runtimes found on this host */
        guint64 bounding_set;       /* kilnd's capability bounding set: the most a run can have */
        guint64 next_container;
        GHashTable *processes;                    /* object path → KilnProcess (owned) */
        GHashTable *process_reservations;         /* uid → Run/RunCaptured/Start calls not yet a process */
        struct KilnIsolateServer *isolate_server; /* runs kiln-isolate for chroot runs (owned) */
        KilnSeccompCache *seccomp_cache;          /* resolved seccomp profiles (owned) */
        KilnCacheRegistry *caches;                /* run parity: type=cache caches in use (owned) */
        guint64 next_process;
        gboolean stopping; /* kiln_manager_unmount_all() was called: no mount is kept any more */
        sd_bus_slot *slots[6];
        KilnManagerHooks hooks;
        struct KilnImages *images; /* images out: the image store and its objects (image-dbus.c) */
        /* images out: the id of a stored image named @name that the sender of @m may see, or NULL; and its
         * oci-archive written (by a thread) to a new unlinked regular file, whose descriptor
         * finish_export returns (-1 and @error on failure). */
        char *(*find_stored_image)(struct KilnManager *manager, sd_bus_message *m, const char *name);
        void (*export_stored_image)(struct KilnManager *manager, const char *id, GCancellable *cancellable,
                                    GAsyncReadyCallback callback, gpointer data);
        int (*finish_export)(GAsyncResult *result, GError **error);
        /* images out: the bytes of @owner's images, for StorageBytesPerUser (NULL: no images yet) */
        guint64 (*images_user_bytes)(struct KilnManager *manager, uid_t owner);
        /* images out: what importing the stored image @id would give, when every layer of it is stored
         * as a tree already (so nothing would be written), or NULL (then it is exported and imported). */
        KilnImportedImage *(*stored_image_imported)(struct KilnManager *manager, const char *id);
} KilnManager;

KilnManager *kiln_manager_new(KilnConfig *config, KilnStorage *storage, KilnAuth *auth, sd_bus *bus);
void kiln_manager_free(KilnManager *manager);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnManager, kiln_manager_free)

/* Re-exports every builder on disk; removes what a crash left half-created. */
void kiln_manager_load(KilnManager *manager);

/* By name, full id, or a unique id prefix of at least KILN_ID_MIN_PREFIX characters. */
KilnBuilder *kiln_manager_find(KilnManager *manager, const char *name_or_id, GError **error);
gboolean kiln_manager_name_taken(KilnManager *manager, const char *name);
guint kiln_manager_count_owned(KilnManager *manager, uid_t owner);

/* [Limits] ProcessesPerUser counts a uid's running processes and its calls on their way to becoming
 * one: a call takes its slot before polkit is asked (so concurrent calls cannot all pass the count
 * and overshoot it) and gives it back exactly once, when it is refused, dropped or fails, or just
 * before its Process object takes the slot over. */
gboolean kiln_manager_reserve_process(KilnManager *manager, uid_t uid, GError **error);
void kiln_manager_release_process(KilnManager *manager, uid_t uid);

/* Creates the builder's directories and metadata, then exports it. @layers: its base layers, bottom
 * first (one for scratch and directories); @image: an image's digest and history (JSON) or NULL. */
KilnBuilder *kiln_manager_create_builder(KilnManager *manager, const char *name, uid_t owner,
                                         const char *from, const char *const *layers, gboolean layer_shifted,
                                         const char *image, const KilnBuilderConfig *config,
                                         KilnFieldMask config_mask, GError **error);
/* The user namespace a new builder gets: what @config says, else DefaultForRoot for uid 0 and auto for
 * everyone else. */
const char *kiln_manager_default_userns(KilnManager *manager, uid_t owner, const KilnBuilderConfig *config);
/* Unmounts (a mount kept for a next run too), removes from disk and unexports. */
gboolean kiln_manager_remove_builder(KilnManager *manager, KilnBuilder *builder, GError **error);
/* What [Limits] StorageBytesPerUser counts for @uid: the layers his builders use, his images and his
 * caches (as last measured). */
guint64 kiln_manager_user_storage_bytes(KilnManager *manager, uid_t uid);
/* A builder's user namespace maps (KilnIdMaps, userns.h) depend on its owner only. */
gboolean kiln_manager_id_maps(KilnManager *manager, uid_t owner, KilnIdMaps *ret, GError **error);

/* Start-up: whether the layers' file system takes ID-mapped mounts (and kiln.conf allows them); where
 * not, builders with a user namespace are made from shifted copies of their bases (logged once). */
void kiln_manager_detect_idmapped_layers(KilnManager *manager);

/* The builder's root file system, mounted while anyone holds it (Mount() and every run) and for
 * [Run] KeepMountedSeconds after the last holder lets go, so that the next run reuses the mount. With
 * @maps (for userns=auto) the layers are ID-mapped through them; a builder mounted one way while held
 * is Busy for the other, and a kept mount of the other kind is replaced. */
char *kiln_manager_acquire_rootfs(KilnManager *manager, KilnBuilder *builder, const KilnIdMaps *maps,
                                  GError **error);
void kiln_manager_release_rootfs(KilnManager *manager, KilnBuilder *builder);
/* Unmounts now a root file system that nobody holds but that is kept for a next run (Unmount()). */
void kiln_manager_unmount_lingering(KilnManager *manager, KilnBuilder *builder);

/* A name for the OCI runtime, unique among this kilnd's containers: kiln-<id prefix>-<n>. */
char *kiln_manager_next_container_id(KilnManager *manager, KilnBuilder *builder);

/* What a run in @builder reads of it and of kilnd (run.h), borrowed from both; its root file system is
 * leased from @manager. container_id is left NULL, for kiln_run_prepare()'s caller to set. */
void kiln_manager_run_input(KilnManager *manager, KilnBuilder *builder, KilnRunInput *ret);

/* Start-up: runs a trivial container with each runtime found and makes the first that works the
 * default (crun refuses some cgroup v1 layouts where runc works). */
void kiln_manager_detect_runtime(KilnManager *manager);

/* Start-up: deletes the runtime containers a crash left in kiln's runtime root (before their bundles
 * and mounts are cleaned up). */
void kiln_manager_delete_stale_containers(KilnManager *manager);

/* At shutdown: unmounts every builder that Mount() mounted and every mount kept for a next run; from
 * then on a builder is unmounted as soon as its last run ends. */
void kiln_manager_unmount_all(KilnManager *manager);

/* Builds one signal addressed to @destination. */
typedef int (*KilnSignalFactory)(KilnManager *manager, const char *destination, gconstpointer data,
                                 sd_bus_message **ret);
/* Sends a signal about an object of @owner to each client that may see it (see auth.h): the
 * vtable-driven sd_bus_emit_* helpers broadcast, and a builder's name, configuration or command
 * lines are private to those who may see it. */
void kiln_manager_send_to_watchers(KilnManager *manager, uid_t owner, KilnSignalFactory factory,
                                   gconstpointer data);

/* Registers the Manager and Builder objects on the bus. */
int kiln_manager_register(KilnManager *manager);

/* SPDX-License-Identifier: Apache-2.0 */
/* The Manager: every builder on the host, by id and by name, and their life cycle on disk. */
#pragma once

#include <systemd/sd-bus.h>

#include "auth.h"
#include "builder.h"
#include "config.h"
#include "storage.h"

typedef struct KilnManager {
        KilnConfig *config;
        KilnStorage *storage;
        KilnAuth *auth;
        sd_bus *bus;
        GHashTable *builders;       /* id → KilnBuilder (owned) */
        GHashTable *names;          /* name → KilnBuilder */
        GHashTable *reserved_names; /* names of builders being created */
        char **runtimes;            /* configured runtimes found on this host */
        sd_bus_slot *slots[5];
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

/* Creates the builder's directories and metadata, then exports it. */
KilnBuilder *kiln_manager_create_builder(KilnManager *manager, const char *name, uid_t owner, const char *from,
                                         const char *layer, const KilnBuilderConfig *config,
                                         KilnFieldMask config_mask, GError **error);
/* Unmounts, removes from disk and unexports. */
gboolean kiln_manager_remove_builder(KilnManager *manager, KilnBuilder *builder, GError **error);
/* Unmounts every builder that Mount() mounted (at shutdown). */
void kiln_manager_unmount_all(KilnManager *manager);

/* Registers the Manager and Builder objects on the bus. */
int kiln_manager_register(KilnManager *manager);

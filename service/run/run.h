/* SPDX-License-Identifier: Apache-2.0 */
/* Preparing one run, everything before the runtime starts (DESIGN.md "Run, step by step"):
 * builder defaults merged with the run's options, the root file system mounted, user and command
 * resolved inside it, the working directory made, the bundle written (config.json from the pure
 * spec generator, plus the generated /etc/hosts, /etc/resolv.conf, /etc/hostname and
 * /run/.containerenv). The side effects are undone by kiln_run_plan_free(). */
#pragma once

#include "base/cgroup.h"
#include "base/config.h"
#include "run/builder-config.h"
#include "run/network.h"
#include "run/run-options.h"
#include "spec/seccomp-profile.h"
#include "storage/storage.h"
#include "storage/userns.h"

/* The builder's root file system is leased from its keeper (the Manager, objects/) through these
 * calls: run/ holds the lease for the plan's life without knowing who keeps it. */
typedef struct KilnRunLease {
        gpointer keeper;
        /* The ID maps of a user namespace for the builder's @owner. */
        gboolean (*id_maps)(gpointer keeper, uid_t owner, KilnIdMaps *ret, GError **error);
        /* Mounts builder @builder_id's root file system (ID-mapped through @maps when given) and
         * holds it: its path. */
        char *(*acquire)(gpointer keeper, const char *builder_id, const KilnIdMaps *maps, GError **error);
        /* Lets go of what acquire held; the builder may be gone by then. */
        void (*release)(gpointer keeper, const char *builder_id);
} KilnRunLease;

/* All a run reads of its builder and of kilnd, filled in by objects/ for each run, so that run/
 * knows neither the Manager nor the Builder. Borrowed for the call (the lease is copied). */
typedef struct KilnRunInput {
        const KilnConfig *config;
        KilnStorage *storage;
        char *const *runtimes; /* the runtimes found on this host, the default first */
        guint64 bounding_set;  /* kilnd's capability bounding set: the most a run can have */
        KilnSeccompCache *seccomp_cache;
        const char *builder_id;
        const char *builder_name;
        const char *builder_from;
        const char *builder_layer;
        uid_t builder_owner;
        const KilnBuilderConfig *builder_config;
        const char *const *image_volumes; /* the builder's image Volumes, made before each run (or NULL) */
        const char *container_id;         /* the OCI runtime's name for this run, unique in kilnd */
        KilnRunLease lease;
        struct KilnCacheRegistry *caches; /* run parity: the caches of type=cache mounts (run-caches.h) */
} KilnRunInput;

typedef struct KilnRunPlan {
        KilnStorage *storage;
        KilnRunLease lease; /* held while @rootfs is set */
        char *builder_id;
        char *container_id;
        char *bundle_dir;
        char *rootfs;        /* the builder's overlay; held mounted until the plan is freed */
        char *runtime;       /* absolute path: runc, crun, or kiln-isolate for isolation=chroot */
        char **runtime_args; /* its global arguments, before --root (for kiln-runtime-ns: the real runtime's)
                              */
        char *state_root;    /* its --root */
        gboolean isolate;    /* the executor is kiln-isolate (isolation=chroot): one `run --detach` */
        gboolean isolate_poststop; /* with @isolate: poststop hooks, which kiln-isolate's delete runs */
        char **argv;               /* as resolved in the root file system */
        GPtrArray *staged;         /* bind mounts of volume sources held as descriptors, in the bundle */
        /* When the command cannot run at all (not found: 127, not executable: 126) there is no
         * container: the status and a message for the caller's stderr are here instead. */
        int early_exit_status;
        char *early_message;
        KilnRunResources resources; /* the run's cgroup and limits; the cgroup is removed with the plan */
        /* network=pasta or slirp4netns: the run's namespaces (in the bundle) and its helper, started right
         * after the runtime (objects/process.c) and ended with the plan (run/network.h) */
        KilnNetwork *network;
        GPtrArray *cache_leases; /* run parity: KilnCacheLease of the type=cache mounts (run-caches.h) */
} KilnRunPlan;

/* Authorization happened before (run-privileges.h decides what needs run-privileged); volumes and
 * mounts are bound from @options->resolved_volumes, the list it judged (run-volumes.h). Errors name
 * the option at fault. */
KilnRunPlan *kiln_run_prepare(const KilnRunInput *input, char **argv, KilnRunOptions *options,
                              GError **error);
void kiln_run_plan_free(KilnRunPlan *plan);

/* kiln-isolate, the chroot isolation's executor, in kilnd's helper directory. */
char *kiln_run_isolate_path(const KilnConfig *config);

/* kiln-isolate and the global options every chroot run of kilnd's own gives it: what its server is
 * started with (isolate-server.h). */
char **kiln_run_isolate_globals(const KilnConfig *config, KilnStorage *storage);

/* The user namespace a run gets: the run's option, else the builder's. One rule for preparing the run
 * and for deciding what it weakens. */
gboolean kiln_run_wants_userns(const KilnBuilderConfig *builder, const KilnRunOptions *options);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnRunPlan, kiln_run_plan_free)

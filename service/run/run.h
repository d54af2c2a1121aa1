/* SPDX-License-Identifier: Apache-2.0 */
/* Preparing one run, everything before the runtime starts (DESIGN.md "Run, step by step"):
 * builder defaults merged with the run's options, the root file system mounted, user and command
 * resolved inside it, the working directory made, the bundle written (config.json from the pure
 * spec generator, plus the generated /etc/hosts, /etc/resolv.conf, /etc/hostname and
 * /run/.containerenv). The side effects are undone by kiln_run_plan_free(). */
#pragma once

#include "base/cgroup.h"
#include "objects/manager.h"
#include "run/run-options.h"

typedef struct KilnRunPlan {
        KilnManager *manager;
        char *builder_id;
        char *container_id;
        char *bundle_dir;
        char *rootfs;        /* the builder's overlay; held mounted until the plan is freed */
        char *runtime;       /* absolute path: runc, crun, or kiln-isolate for isolation=chroot */
        char **runtime_args; /* its global arguments, before --root (for kiln-runtime-ns: the real runtime's)
                              */
        char *state_root;    /* its --root */
        gboolean isolate;    /* the executor is kiln-isolate (isolation=chroot): one `run --detach` */
        char **argv;         /* as resolved in the root file system */
        GPtrArray *staged;   /* bind mounts of volume sources held as descriptors, in the bundle */
        /* When the command cannot run at all (not found: 127, not executable: 126) there is no
         * container: the status and a message for the caller's stderr are here instead. */
        int early_exit_status;
        char *early_message;
        KilnRunResources resources; /* the run's cgroup and limits; the cgroup is removed with the plan */
        GPtrArray *cache_leases;    /* run parity: KilnCacheLease of the type=cache mounts (run-caches.h) */
} KilnRunPlan;

/* Authorization happened before (run-privileges.h decides what needs run-privileged); volumes and
 * mounts are bound from @options->resolved_volumes, the list it judged (run-volumes.h). Errors name
 * the option at fault. */
KilnRunPlan *kiln_run_prepare(KilnManager *manager, KilnBuilder *builder, char **argv,
                              KilnRunOptions *options, GError **error);
void kiln_run_plan_free(KilnRunPlan *plan);

/* kiln-isolate, the chroot isolation's executor, in kilnd's helper directory. */
char *kiln_run_isolate_path(KilnManager *manager);

/* kiln-isolate and the global options every chroot run of kilnd's own gives it: what its server is
 * started with (isolate-server.h). */
char **kiln_run_isolate_globals(KilnManager *manager);

/* The user namespace a run gets: the run's option, else the builder's. One rule for preparing the run
 * and for deciding what it weakens. */
gboolean kiln_run_wants_userns(const KilnBuilder *builder, const KilnRunOptions *options);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnRunPlan, kiln_run_plan_free)

/* SPDX-License-Identifier: Apache-2.0 */
/* A Process: one run in a builder, from the runtime's start to its exit, and a while after (so late
 * Wait calls still answer). Run and RunCaptured are a Process whose caller waits; Start returns it.
 * The caller leaving the bus kills its processes unless they were started detached. */
#pragma once

#include "objects/manager.h"
#include "run/run-options.h"
#include "run/run.h"
#include "runtime/runtime.h"

typedef enum {
        KILN_PROCESS_MODE_RUN,      /* reply (i) at exit */
        KILN_PROCESS_MODE_CAPTURED, /* reply (iss) at exit */
        KILN_PROCESS_MODE_START,    /* reply (o) once running */
} KilnProcessMode;

typedef enum {
        KILN_PROCESS_STARTING,
        KILN_PROCESS_RUNNING,
        KILN_PROCESS_EXITED,
} KilnProcessState;

typedef struct KilnProcess {
        KilnManager *manager;
        char *object_path;
        char *builder_id;
        char *builder_path;
        uid_t owner;
        char **argv;
        KilnProcessMode mode;
        KilnProcessState state;
        guint32 pid;
        gint32 exit_status;
        guint64 started_at, exited_at;

        KilnRunOptions options; /* the caller's descriptors stay open for the run */
        KilnRunPlan *plan;
        KilnContainer *container;
        sd_bus_message *call; /* Run / RunCaptured / Start, until answered */
        GPtrArray *waiters;   /* Wait() calls */
        GCancellable *caller_left;
        gulong caller_left_handler;
        guint timeout_source;
        guint linger_source;
        gboolean lingering; /* exited and answered: may be dropped early to make room */
        gsize argv_bytes;   /* kept until the object goes */
        gsize env_bytes;    /* kept while it runs */
        guint descriptors;  /* counted against DescriptorsPerUser while it runs */
} KilnProcess;

/* Runs @argv in @builder for the call @m (already authorized); takes @options. Answers @m itself. */
void kiln_process_launch(KilnManager *manager, KilnBuilder *builder, sd_bus_message *m, uid_t caller_uid,
                         char **argv, KilnRunOptions *options, KilnProcessMode mode);

/* Whether a run of @argv with @options by @uid stays within what one user may make kilnd keep: argv and
 * env bytes (ArgumentBytes, ProcessBytesPerUser counting @uid's running processes; exited ones are
 * dropped to make room instead) and descriptors (DescriptorsPerUser). LimitExceeded naming the argument
 * otherwise. Checked before polkit is asked and again when the run is launched. */
gboolean kiln_process_check_limits(KilnManager *manager, uid_t uid, char *const *argv,
                                   const KilnRunOptions *options, GError **error);

/* Kills every running process of a builder (Remove with force). */
void kiln_process_kill_builder(KilnManager *manager, const char *builder_id);
guint kiln_process_count_running(KilnManager *manager, const char *builder_id, uid_t owner);

/* The state as the State property spells it. */
const char *kiln_process_state_name(KilnProcessState state);

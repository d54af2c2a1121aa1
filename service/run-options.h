/* SPDX-License-Identifier: Apache-2.0 */
/* The options of Run, RunCaptured and Start (a{sv}, named after `buildah run` flags): parsed and
 * checked in one place, from one table, before anything happens. */
#pragma once

#include <systemd/sd-bus.h>

#include "config.h"
#include "errors.h"

typedef struct KilnVolumeFd {
        int fd; /* owned */
        char *destination;
        char *options;
} KilnVolumeFd;

typedef struct KilnRunOptions {
        int stdin_fd, stdout_fd, stderr_fd; /* owned duplicates; -1: /dev/null */
        gboolean terminal;
        guint16 rows, cols;
        char **env;
        char *user;
        char *working_dir;
        char *hostname;
        char *isolation;
        char *userns;
        char *network, *pid, *ipc, *uts, *cgroupns;
        char **cap_add, **cap_drop;
        char **volumes;
        GArray *volume_fds; /* KilnVolumeFd */
        char **mounts;
        char **devices;
        char **ulimits;
        char *shm_size;
        char *runtime;
        char **runtime_args;
        gboolean no_hosts, no_hostname, no_pivot;
        int no_new_privileges; /* -1: unset */
        char *seccomp_profile;
        guint64 timeout_usec;
        gboolean detach;
        /* Resources (cgroup.h): unset is KILN_PIDS_LIMIT_UNSET, KILN_MEMORY_UNSET, 0 */
        gint64 pids_limit; /* <= 0: no limit */
        guint64 memory;    /* bytes; 0: no limit */
        guint64 cpu_weight;

        /* Not an option: host path → O_PATH descriptor of a volume source, opened as the caller
         * before authorization (run-privileges.h); NULL for uid 0 callers. */
        GHashTable *opened_sources;
} KilnRunOptions;

void kiln_run_options_init(KilnRunOptions *options);
/* One --mount value ("type=bind|tmpfs|cache,source=S,destination=D,..." in buildah's spelling:
 * src, dst and target too; bind when no type is given; the last of a repeated key counts), parsed
 * once for both the authorization and the preparation of a run, so they agree on what is bound. */
typedef struct KilnMountOption {
        char *type;        /* "bind", "tmpfs" or "cache" */
        char *source;      /* NULL when not given */
        char *destination; /* NULL when not given */
        char **options;    /* the rest, in mount(8) spelling: size=, mode=, ro, propagation, ... */
} KilnMountOption;
void kiln_mount_option_parse(const char *value, KilnMountOption *ret);
void kiln_mount_option_clear(KilnMountOption *option);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(KilnMountOption, kiln_mount_option_clear)
void kiln_run_options_clear(KilnRunOptions *options);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(KilnRunOptions, kiln_run_options_clear)

/* Reads the a{sv} at the current position of @m. Unknown keys, wrong types, bad values: InvalidArgument
 * naming the key; arrays and strings past the limits: LimitExceeded. */
gboolean kiln_run_options_read(KilnRunOptions *options, sd_bus_message *m, const KilnConfig *limits,
                               GError **error);

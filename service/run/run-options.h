/* SPDX-License-Identifier: Apache-2.0 */
/* The options of Run, RunCaptured and Start (a{sv}, named after `buildah run` flags): parsed and
 * checked in one place, from one table, before anything happens. */
#pragma once

#include <systemd/sd-bus.h>

#include "base/config.h"
#include "base/errors.h"
#include "run/run-devices.h"

typedef struct KilnVolumeFd {
        int fd; /* owned; moved into resolved_volumes when the run is resolved */
        char *destination;
        char *options;
} KilnVolumeFd;

/* Run parity: one entry of `secrets` (a{sh}), the caller's sealed memfd of a secret's bytes. */
typedef struct KilnSecretFd {
        char *id;
        int fd; /* owned: F_SEAL_WRITE, F_SEAL_GROW and F_SEAL_SHRINK set, at most KILN_SECRET_MAX bytes */
} KilnSecretFd;

/* The largest secret (BuildKit's bound is 500 KB). */
#define KILN_SECRET_MAX (512 * 1024)

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
        /* Network settings (network.h): unset (NULL) takes the builder's */
        char **network_options;
        char **dns, **dns_search, **dns_option;
        char **add_host;
        char **cap_add, **cap_drop;
        char **volumes;
        GArray *volume_fds; /* KilnVolumeFd */
        char **mounts;
        char **devices;
        char **ulimits;
        char *shm_size;
        char *runtime;
        char **runtime_args;
        int no_hosts; /* -1: unset, the builder's */
        gboolean no_hostname, no_pivot;
        int no_new_privileges; /* -1: unset */
        char *seccomp_profile;
        guint64 timeout_usec;
        gboolean detach;
        /* Resources (cgroup.h): unset is KILN_PIDS_LIMIT_UNSET, KILN_MEMORY_UNSET, 0 */
        gint64 pids_limit; /* <= 0: no limit */
        guint64 memory;    /* bytes; 0: no limit */
        guint64 cpu_weight;
        /* Run parity (issue 12): supplementary groups, names of the image's /etc/group, gids or
         * "keep-groups" (passwd.h). */
        char **group_add;
        GArray *secrets; /* KilnSecretFd: the bytes type=secret mounts name by id */

        /* Not an option: every volume and mount of the run (the builder's included), resolved once before
         * authorization (run-volumes.h); the authorization and the preparation read only this. */
        GPtrArray *resolved_volumes; /* KilnRunVolume */
        /* Not an option either: the builder's group_add and then the run's, with their argument names
         * ("builder group_add[0]", "group_add[1]"), and for "keep-groups" (uid 0 only) the caller's own
         * supplementary gids; resolved with the volumes (run-volumes.h). */
        char **resolved_group_add, **resolved_group_args;
        GArray *caller_groups; /* guint32; NULL: no keep-groups */
        /* Not an option: the devices (host nodes, directories, CDI names) resolved once before
         * authorization (run-devices.h); the authorization and the preparation read only this. */
        KilnRunDevices *resolved_devices;
} KilnRunOptions;

void kiln_run_options_init(KilnRunOptions *options);
void kiln_run_options_clear(KilnRunOptions *options);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(KilnRunOptions, kiln_run_options_clear)

/* Reads the a{sv} at the current position of @m. Unknown keys, wrong types, bad values: InvalidArgument
 * naming the key; arrays and strings past the limits: LimitExceeded. */
gboolean kiln_run_options_read(KilnRunOptions *options, sd_bus_message *m, const KilnConfig *limits,
                               GError **error);

/* SPDX-License-Identifier: Apache-2.0 */
/* The cgroup of a run (DESIGN.md "Limits per user"): each run in a cgroup of its own under a kiln
 * parent, per user, with pids, memory and CPU limits from kiln.conf's [Resources] that a run may only
 * lower unless it holds run-privileged (run-privileges.c).
 *
 * Where it lives (docs/decisions.md "Resources"):
 *   - systemd is PID 1 (/run/systemd/system exists), isolation oci: runc's systemd driver
 *     (--systemd-cgroup), cgroupsPath "PARENT-user-UID.slice:PARENT:ID": a scope in a per-user slice
 *     of PARENT.slice;
 *   - otherwise (and for kiln-isolate, which has no systemd client): cgroupfs, cgroupsPath
 *     "PARENT/user-UID/run-ID". A relative PARENT is resolved as runc resolves a relative cgroupsPath:
 *     under the own cgroup of the process that creates it in each cgroup v1 hierarchy, under that
 *     cgroup's parent on cgroup v2 (a cgroup with processes cannot pass controllers on); an absolute
 *     one from each hierarchy's root. kilnd, runc and kiln-isolate are all in kilnd's cgroup, so all
 *     three find the same directories.
 * The functions that touch /sys/fs/cgroup are shared by kilnd (clean-up after a run) and kiln-isolate
 * (creating and joining the cgroup of a chroot run). */
#pragma once

#include <sys/types.h>

#include "base/config.h"
#include "base/errors.h"

/* What a run gets, resolved from kiln.conf and the run's options (kiln_cgroup_resolve()). */
typedef struct KilnRunResources {
        char *cgroups_path; /* linux.cgroupsPath */
        gboolean systemd;   /* runc's systemd cgroup driver (--systemd-cgroup) */
        gint64 pids_limit;  /* > 0; 0: no limit */
        guint64 memory;     /* bytes; 0: no limit */
        guint64 cpu_weight; /* 1..10000 (cgroup v2's cpu.weight); 0: not set */
        gboolean cgroup_v2; /* the host's cgroup is unified (decides cpu.shares or cpu.weight) */
        GArray *dirs;       /* KilnCgroupDir: where the cgroup is, once kiln_cgroup_make_early() found it */
} KilnRunResources;

void kiln_run_resources_clear(KilnRunResources *resources);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(KilnRunResources, kiln_run_resources_clear)

/* The run options' values; "unset" is what kiln_run_options_init() leaves. */
#define KILN_PIDS_LIMIT_UNSET G_MININT64
#define KILN_MEMORY_UNSET G_MAXUINT64
#define KILN_CPU_WEIGHT_MAX 10000
#define KILN_PIDS_MAX_LIMIT 4194304 /* the kernel's PID_MAX_LIMIT */

/* Host facts, looked up once and remembered. */
gboolean kiln_cgroup_systemd_booted(void);
gboolean kiln_cgroup_unified(void);

/* The run's limits (an option given wins over kiln.conf's default; pids_limit <= 0 and memory 0 mean
 * no limit) and its cgroup: @owner's per-user parent, @container_id's own cgroup in it. */
void kiln_cgroup_resolve(const KilnConfig *config, gint64 pids_limit, guint64 memory, guint64 cpu_weight,
                         uid_t owner, const char *container_id, gboolean isolate, KilnRunResources *ret);

/* A cgroupfs cgroupsPath in each hierarchy this process is in: the directory, the name of the
 * hierarchy's mount point ("pids", "cpu,cpuacct", "systemd"; what a container sees under /sys/fs/cgroup),
 * and whether it is the unified (v2) hierarchy. On a hybrid host only the v1 hierarchies count (as runc's
 * v1 driver does). */
typedef struct KilnCgroupDir {
        char *path;
        char *mount_name;
        char *controllers; /* v1: "pids", "cpu,cpuacct", "name=systemd"; "" for the unified one */
        gboolean unified;
} KilnCgroupDir;
GArray *kiln_cgroup_dirs(const char *cgroups_path, GError **error);

/* kiln-isolate's parent for its init: makes @cgroups_path's directories @dirs (kiln_cgroup_dirs()) and
 * writes the limits (pids.max; memory.limit_in_bytes or memory.max; cpu.shares or cpu.weight; @cpu_shares
 * and @cpu_weight are each 0 when not set); then moves @pid into them, before the process runs anything
 * of the container's. Moving is the slow part on cgroup v1 (the first move waits for an RCU grace
 * period, milliseconds), so it is its own step, for the caller to overlap with other work. */
typedef struct KilnCgroupLimits {
        gint64 pids_limit; /* > 0; 0: "max" */
        guint64 memory;    /* 0: no limit */
        guint64 cpu_shares;
        guint64 cpu_weight;
} KilnCgroupLimits;
gboolean kiln_cgroup_create(GArray *dirs, const char *cgroups_path, const KilnCgroupLimits *limits,
                            GError **error);
gboolean kiln_cgroup_join(GArray *dirs, pid_t pid, GError **error);

/* cgroup v1: a process moves itself. The `tasks` file of each of @dirs (all v1), opened for writing by
 * the caller and handed to the process to move (kiln-isolate sends them to its init over a socket); it
 * writes "0" (itself: one thread, the only one it has) to each with kiln_cgroup_join_self(). That move takes
 * no machine-wide lock, where the move of another process (kiln_cgroup_join()) takes
 * cgroup_threadgroup_rwsem and waits for an RCU grace period: 0.1 ms against ~11 ms on the development
 * machine (docs/decisions.md, "The init moves itself into its cgroup"). The kernel checks the write against
 * the opener's credentials, so the process may have entered its user namespace since. Returns an array of
 * descriptors (O_CLOEXEC), closed when it is freed; NULL with @error when one cannot be opened. */
GArray *kiln_cgroup_open_tasks(GArray *dirs, GError **error);
gboolean kiln_cgroup_join_self(GArray *dirs, GArray *tasks_fds, GError **error);

/* kilnd once a run ended (its process reaped): removes the run's cgroupfs cgroup in every hierarchy
 * (on a hybrid host the unified one too, where runc makes it as well), killing what is still in it first
 * (a process a `pid=host` run left behind). This is the removal `delete` would do: runs of runc and crun
 * get no `delete` once their process is reaped (runtime.c). Nothing to do for systemd's scopes (systemd
 * removes them) or an already removed cgroup. Logs what it cannot remove. */
void kiln_cgroup_remove(const KilnRunResources *resources);
/* kilnd, for a run kiln-isolate starts, right after the request went to kiln-isolate's server (on the
 * other processor while the server forks and its child reads the spec): finds the run's cgroup
 * directories, kept in @resources for kiln_cgroup_remove() (the caller's answer then does not wait for
 * that lookup, and they are those of the cgroup kilnd was in when the run's was made), and makes them,
 * not their limits. kiln_cgroup_create() then finds them made (a mkdir in each hierarchy, most of its
 * time) and writes the limits before any process is in the cgroup; it makes whatever is still missing,
 * so a failure here is only lost time, left for it to meet. */
void kiln_cgroup_make_early(KilnRunResources *resources);

/* Whether @leaf, the last component of a cgroup path, is the cgroup of run @container_id in any of
 * the layouts kiln makes (cgroupfs "run-ID", systemd's "PREFIX-ID.scope") or a runtime's own ("ID"). */
gboolean kiln_cgroup_is_run(const char *leaf, const char *container_id);

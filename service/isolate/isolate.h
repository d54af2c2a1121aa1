/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-isolate: the built-in executor of the `chroot` isolation. It executes a bundle's config.json —
 * the very document the spec generator writes for runc — with a runc-like command line, so that kilnd's
 * runtime driver drives it exactly as it drives runc (docs/isolate.md).
 *
 * Two processes. The *parent* (this program as started) reads the spec, builds the seccomp filter,
 * joins the namespaces given by path, clones the *init* into a new user and PID namespace, writes the
 * init's user namespace maps and rlimits from outside, and reports. The *init* makes the other
 * namespaces, sets up the root file system, the terminal, the user and the capabilities, and execs the
 * command; it never execs kiln-isolate or anything else of the host. One file a responsibility:
 *   main.c        command line, the commands, exit codes
 *   container.c   the parent/init protocol and the init's sequence
 *   spec-read.c   config.json into IsoSpec
 *   mounts.c      the spec's mounts inside the root file system
 *   devices.c     /dev
 *   paths.c       sysctls, pivot_root, masked and read-only paths
 *   serve.c       kilnd's server: a forked child per command instead of an execve
 *   hooks.c       OCI hooks: the state on stdin, timeouts
 *   caps.c user.c rlimits.c seccomp.c terminal.c exec.c state.c log.c */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "base/cgroup.h"
#include "base/kiln-common.h"

/* Exit codes of kiln-isolate itself (a run's exit code is otherwise the command's). */
#define ISO_EXIT_SETUP 125     /* kiln-isolate failed: usage, config.json, or a setup step */
#define ISO_EXIT_NOT_EXEC 126  /* the command exists but cannot be executed */
#define ISO_EXIT_NOT_FOUND 127 /* the command does not exist */

/* Errors: GError in ISO_ERROR, the code being the exit code the failure ends with. Every message names
 * the step and the object: "mount proc at '/r/proc': Operation not permitted". */
#define ISO_ERROR (iso_error_quark())
GQuark iso_error_quark(void);

gboolean iso_fail(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* Appends ": strerror(@errsv)". */
gboolean iso_fail_errno(GError **error, int errsv, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
gboolean iso_fail_code(GError **error, int code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* ---- the spec ---- */

typedef struct IsoIdMap {
        guint32 container_id;
        guint32 host_id;
        guint32 size;
} IsoIdMap;

typedef struct IsoRlimit {
        const char *name; /* static */
        int resource;
        guint64 soft;
        guint64 hard;
} IsoRlimit;

typedef struct IsoMount {
        char *destination; /* absolute, in the container */
        char *type;        /* "bind" for binds */
        char *source;      /* bind: absolute host path (made absolute against the bundle) */
        char *data;        /* options that are not flags, comma-separated, or NULL */
        unsigned long flags;
        unsigned long propagation; /* MS_PRIVATE, MS_SHARED, ... | MS_REC, or 0 */
        bool bind;
        bool recursive;
} IsoMount;

typedef struct IsoDevice {
        char *path;
        mode_t type; /* S_IFCHR, S_IFBLK, S_IFIFO */
        guint32 major, minor;
        guint32 file_mode;
        guint32 uid, gid;
} IsoDevice;

enum {
        ISO_NS_USER,
        ISO_NS_MOUNT,
        ISO_NS_PID,
        ISO_NS_NET,
        ISO_NS_IPC,
        ISO_NS_UTS,
        ISO_NS_CGROUP,
        ISO_NS_COUNT
};

typedef struct IsoNamespace {
        bool present; /* listed in linux.namespaces; absent: the host's */
        char *path;   /* join this one; NULL: a new one */
} IsoNamespace;

/* OCI hooks (config.json "hooks"), run by hooks.c at their stages. */
enum {
        ISO_HOOK_PRESTART,
        ISO_HOOK_CREATE_RUNTIME,
        ISO_HOOK_CREATE_CONTAINER,
        ISO_HOOK_START_CONTAINER,
        ISO_HOOK_POSTSTART,
        ISO_HOOK_POSTSTOP,
        ISO_HOOK_COUNT
};

typedef struct IsoHook {
        char *path;  /* absolute */
        char **args; /* NULL: just the path */
        char **env;  /* NULL: empty */
        int timeout; /* seconds; 0: none */
} IsoHook;

typedef struct IsoSpec {
        char *bundle;
        char **annotations; /* key, value, key, value, ..., NULL: the hooks' state shows them */
        IsoHook *hooks[ISO_HOOK_COUNT];
        gsize n_hooks[ISO_HOOK_COUNT];

        /* process */
        char **args;
        char **env;
        char *cwd;
        bool terminal;
        guint16 rows, cols;
        uid_t uid;
        gid_t gid;
        gid_t *groups;
        gsize n_groups;
        bool has_umask;
        mode_t umask;
        guint64 cap_bounding, cap_effective, cap_permitted;
        IsoRlimit *rlimits;
        gsize n_rlimits;
        bool no_new_privileges;
        bool has_oom_score_adj;
        int oom_score_adj;

        /* root and mounts */
        char *root; /* absolute */
        bool root_readonly;
        unsigned long rootfs_propagation; /* 0: MS_SLAVE | MS_REC */
        IsoMount *mounts;
        gsize n_mounts;
        IsoDevice *devices;
        gsize n_devices;
        char **masked_paths;
        char **readonly_paths;

        char *hostname;
        char *domainname;
        char **sysctl; /* key, value, key, value, ..., NULL */

        IsoNamespace ns[ISO_NS_COUNT];
        IsoIdMap *uid_maps;
        gsize n_uid_maps;
        IsoIdMap *gid_maps;
        gsize n_gid_maps;

        JsonNode *seccomp; /* linux.seccomp, or NULL */

        /* linux.cgroupsPath (cgroupfs only; NULL: the init stays in kiln-isolate's cgroup) and the
         * limits of linux.resources the chroot isolation applies: pids, memory, cpu (service/base/cgroup.h)
         */
        char *cgroups_path;
        KilnCgroupLimits limits;
} IsoSpec;

/* spec-read.c: @bundle's config.json. Errors name the member ("process.user.uid: not an integer"). */
IsoSpec *iso_spec_read(const char *bundle, GError **error);
void iso_spec_free(IsoSpec *spec);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(IsoSpec, iso_spec_free)
/* CLONE_NEW* of the namespaces to create (listed without a path). */
int iso_spec_new_namespaces(const IsoSpec *spec);
int iso_ns_clone_flag(int ns);
const char *iso_ns_name(int ns);

/* ---- the init's steps (each returns FALSE with @error naming the step and the object) ---- */

/* mounts.c: the root file system bound on itself, then every spec mount in order, under @rootfd
 * (the bound root). */
typedef struct IsoRoot {
        const IsoSpec *spec;
        GArray *cgroup_dirs; /* KilnCgroupDir of the run's cgroup, or NULL: for a cgroup v1 mount */
        int rootfd;          /* O_PATH of the bound root file system */
        bool in_userns;      /* a new user namespace: no mknod, binds instead */
        bool dev_is_tmpfs;   /* the spec mounted a tmpfs on /dev: fill it */
        /* What masks files: a detached clone of the host's /dev/null, verified to be the null device,
         * made before anything of the container is mounted (iso_null_prepare); attached on the first
         * masked file, then bound from there. */
        int null_tree;
} IsoRoot;

gboolean iso_mounts_prepare_root(IsoRoot *root, GError **error);
gboolean iso_mounts_apply(IsoRoot *root, GError **error);
/* Opens @path inside the root (resolved in it), creating what is missing: directories, and the last
 * component as a file when @file. Returns an O_PATH fd or -1 with @error. */
int iso_root_open_target(int rootfd, const char *root_path, const char *path, bool file, GError **error);
/* MS_REMOUNT|MS_BIND with @flags on the mount at @fd (@what in messages), with the flags the kernel
 * locked added when it insists; @keep: with every flag the mount has now added. */
gboolean iso_remount(int fd, const char *what, unsigned long flags, bool keep, GError **error);
/* "/proc/self/fd/N" */
#define ISO_FD_PATH_MAX 32
const char *iso_fd_path(char buf[ISO_FD_PATH_MAX], int fd);

/* devices.c: a tmpfs /dev gets the standard nodes (bound from the host), its symlinks, and
 * linux.devices (made with mknod, or bound from the host in a user namespace). */
gboolean iso_dev_populate(IsoRoot *root, GError **error);

/* paths.c: sysctls (namespaced ones only), pivot_root, read-only and masked paths, a read-only root. */
gboolean iso_sysctl_apply(const IsoSpec *spec, GError **error);
gboolean iso_pivot(IsoRoot *root, bool no_pivot, GError **error);
gboolean iso_null_prepare(IsoRoot *root, GError **error);
gboolean iso_masked_paths(IsoRoot *root, GError **error);
gboolean iso_readonly_paths(IsoRoot *root, GError **error);
gboolean iso_root_readonly(const IsoSpec *spec, GError **error);

/* terminal.c: a pty in the container's devpts; the master goes to @console_fd (and is closed), the
 * slave becomes the controlling terminal and stdin, stdout and stderr. */
gboolean iso_terminal_setup(const IsoSpec *spec, int console_fd, GError **error);
/* The parent's end: connects to the console socket at @path. Returns the fd or -1. */
int iso_console_connect(const char *path, GError **error);

/* caps.c */
gboolean iso_caps_drop_bounding(guint64 keep, GError **error);
gboolean iso_caps_apply(const IsoSpec *spec, GError **error);
gboolean iso_cap_from_name(const char *name, int *cap);
int iso_cap_last(void);

/* user.c */
gboolean iso_user_become_ns_root(const IsoSpec *spec, GError **error);
gboolean iso_user_switch(const IsoSpec *spec, GError **error);
/* The parent: /proc/PID/uid_map and gid_map. */
gboolean iso_user_write_maps(pid_t pid, const IsoSpec *spec, GError **error);

/* rlimits.c */
gboolean iso_rlimit_from_name(const char *name, const char **static_name, int *resource);
/* The parent on the init: raising a hard limit needs CAP_SYS_RESOURCE in the initial user namespace,
 * which only the parent has. */
gboolean iso_rlimits_apply(pid_t pid, const IsoSpec *spec, GError **error);

/* seccomp.c: linux.seccomp as a BPF program, from @cache_dir when it was compiled before (NULL: no
 * cache). NULL without @error when the spec has no filter. */
typedef struct IsoSeccomp IsoSeccomp;
IsoSeccomp *iso_seccomp_prepare(const IsoSpec *spec, const char *cache_dir, GError **error);
gboolean iso_seccomp_load(const IsoSeccomp *filter, GError **error);
void iso_seccomp_free(IsoSeccomp *filter);
/* What libseccomp finds out once per process (the kernel's API level), found out now: for `serve`,
 * whose children would each ask again. */
void iso_seccomp_probe(void);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(IsoSeccomp, iso_seccomp_free)

/* exec.c: argv[0] looked up as execvp() would with the spec's PATH (as the user, from the cwd);
 * not found: ISO_EXIT_NOT_FOUND, not executable: ISO_EXIT_NOT_EXEC, with runc's words so that
 * callers that classify runc's messages classify ours. */
char *iso_exec_lookup(const IsoSpec *spec, GError **error);
/* Only returns on failure: the exit code (126, 127) and @error. */
int iso_exec(const char *path, const IsoSpec *spec, GError **error);

/* ---- the parent ---- */

typedef enum {
        ISO_MODE_RUN,          /* the init execs at once; the parent waits for it */
        ISO_MODE_RUN_DETACHED, /* the init execs at once; the parent leaves once it did */
        ISO_MODE_CREATE,       /* the init waits for `start` on @start_fd; the parent leaves */
} IsoMode;

typedef struct IsoLaunch {
        IsoMode mode;
        const char *id; /* the container's, for the hooks' state */
        const IsoSpec *spec;
        bool no_pivot;
        int console_fd;            /* connected console socket, or -1 */
        int start_fd;              /* ISO_MODE_CREATE: the listening start socket */
        const IsoSeccomp *seccomp; /* or NULL */
} IsoLaunch;

/* container.c: clones the init and sees it through setup. On success *pid is the init (ready: in
 * create mode waiting for start, in run mode exec'ing). */
gboolean iso_container_launch(const IsoLaunch *launch, pid_t *pid, GError **error);

/* hooks.c: the hooks of one stage, in order, each with the OCI state on its stdin ({ociVersion, id,
 * status, pid, bundle, annotations}) and its timeout enforced (SIGKILL). iso_hooks_run stops at the first
 * that fails (a non-zero exit, a signal, the timeout) with @error naming the stage, the hook and what it
 * wrote; iso_hooks_run_logged runs them all and logs each failure (poststart, poststop). */
const char *iso_hook_stage_name(int stage);
char *iso_hooks_state(const IsoSpec *spec, const char *id, const char *status, pid_t pid);
gboolean iso_hooks_run(const IsoSpec *spec, int stage, const char *id, const char *status, pid_t pid,
                       GError **error);
void iso_hooks_run_logged(const IsoSpec *spec, int stage, const char *id, const char *status, pid_t pid);

/* state.c: the state of created containers and detached runs under --root, one directory per id. */
typedef struct IsoState {
        pid_t pid;
        guint64 start_time; /* /proc/PID/stat field 22: tells a recycled pid apart */
        char *bundle;
        bool started;
} IsoState;

#define ISO_START_SOCKET "start.sock"
#define ISO_STATE_FILE "state.json"

/* Makes @root/@id (fails with "container ID exists") and opens it as *dirfd; with @start_fd also the
 * listening start socket in it. */
gboolean iso_state_create(const char *root, const char *id, int *dirfd, int *start_fd, GError **error);
/* Writes state.json for @pid, running or (a detached run's command that ended at once) our zombie. */
gboolean iso_state_write(int dirfd, pid_t pid, const char *bundle, GError **error);
gboolean iso_state_read(const char *root, const char *id, IsoState *state, GError **error);
void iso_state_clear(IsoState *state);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(IsoState, iso_state_clear)
gboolean iso_state_remove(const char *root, const char *id, GError **error);
/* Whether the init still runs (not exited, not recycled: the start time matches). */
bool iso_state_running(const IsoState *state);
/* Sends @sig to the init, through a pidfd; *gone when it no longer runs (not an error). */
gboolean iso_state_signal(const IsoState *state, int sig, bool *gone, GError **error);
/* Waits at most @timeout_ms for the init to end; FALSE if it still runs. */
gboolean iso_state_wait_gone(const IsoState *state, int timeout_ms);
/* start: connects to the waiting init and returns once it has exec'd (or failed). */
gboolean iso_state_start(const char *root, const char *id, GError **error);
/* The init's side: waits for `start` to connect on @listen_fd. */
gboolean iso_wait_for_start(int listen_fd, GError **error);

/* log.c: where errors go. Without a log file: stderr, "kiln-isolate: MESSAGE". With --log: that file,
 * as runc writes it (--log-format json: {"level":"error","msg":...,"time":...} lines). */
void iso_log_setup(const char *path, bool json);
void iso_log_error(const char *message);
/* With the global --debug, a "debug" line of what it does (runc's --debug): nothing otherwise. */
void iso_log_set_debug(bool debug);
void iso_log_debug(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
void iso_log_close(void);

/* Writes @contents in one write(2) to the existing file @path under @dirfd (kernel files: maps, sysctls). */
gboolean iso_write_file(int dirfd, const char *path, const char *contents, GError **error);

/* serve.c: `kiln-isolate [GLOBAL...] serve` (serve-protocol.h). @globals: argv[0] and the global options
 * (@n_globals of them); each request's command runs in a forked child as @command(globals + request). */
int iso_serve(char **globals, int n_globals, int (*command)(int argc, char **argv));

/* SPDX-License-Identifier: Apache-2.0 */
/* The OCI runtime spec (1.0.2) of one run, as a pure function: kiln_spec_generate() reads only its
 * input — no file system, no clock, no randomness, no process state — so the same input always
 * gives the same document, and golden tests pin every option (tests/unit/golden/).
 *
 * What the caller resolves first (everything with side effects, see docs/spec.md):
 *   - the root file system is mounted at @rootfs;
 *   - argv: Entrypoint + Cmd when the run's argv is empty, argv[0] looked up in the rootfs PATH
 *     (kiln_spec_environment() gives the final PATH, kiln_rootfs_lookup_command() searches it);
 *   - the user (kiln_resolve_user() on the rootfs's /etc/passwd and /etc/group), the working
 *     directory created (kiln_rootfs_mkdir_p());
 *   - builder settings merged with run options: each field below says how;
 *   - volumes: sources opened/checked, `U` chowned, `O` turned into an overlay mount, `z`/`Z` logged;
 *   - devices stat()ed; the seccomp profile loaded for the capabilities of kiln_spec_capabilities();
 *   - generated files written into the bundle.
 * The generator then checks every combination again and answers InvalidArgument naming the
 * argument when one is wrong. */
#pragma once

#include <json-glib/json-glib.h>

#include "base/errors.h"

#define KILN_OCI_VERSION "1.0.2"
#define KILN_DEFAULT_SHM_SIZE ((guint64)64 * 1024 * 1024)

typedef enum {
        KILN_NAMESPACE_PRIVATE, /* a new namespace: the default (a zeroed KilnNamespace) */
        KILN_NAMESPACE_HOST,    /* the host's: no entry in linux.namespaces */
        KILN_NAMESPACE_PATH,    /* join the namespace at @path ("ns:PATH") */
        KILN_NAMESPACE_NONE,    /* network only: a new namespace, loopback only, no DNS files */
} KilnNamespaceMode;

typedef struct KilnNamespace {
        KilnNamespaceMode mode;
        const char *path; /* KILN_NAMESPACE_PATH only: absolute */
} KilnNamespace;

/* Parses a namespace option: "private" (or ""), "host", "ns:PATH", and "none" if @allow_none (the
 * network). ns->path points into @value. */
gboolean kiln_namespace_parse(const char *arg, const char *value, gboolean allow_none, KilnNamespace *ns,
                              GError **error);

/* One line of /proc/PID/uid_map: container ids [container_id, container_id + size) are host ids
 * [host_id, host_id + size). */
typedef struct KilnIdMapping {
        guint32 container_id;
        guint32 host_id;
        guint32 size;
} KilnIdMapping;

typedef enum {
        KILN_MOUNT_BIND,    /* volumes, volume_fds, --mount type=bind */
        KILN_MOUNT_TMPFS,   /* --mount type=tmpfs */
        KILN_MOUNT_OVERLAY, /* a volume with `O`, after the caller made its upper and work dirs */
} KilnMountType;

/* A caller's mount. @options, NULL-terminated, each checked against the type's allow-list:
 *   bind:    ro rw nosuid nodev noexec, one of private rprivate slave rslave shared rshared
 *            (default private), z Z U (done by the caller; dropped here). Always recursive.
 *   tmpfs:   ro rw exec, size=N[kmg], mode=OCTAL; always nosuid,nodev, and noexec unless exec.
 *   overlay: lowerdir=PATH[:PATH...] (required), upperdir=PATH workdir=PATH (both or neither),
 *            ro rw nosuid nodev noexec and a propagation as for bind. */
typedef struct KilnMount {
        KilnMountType type;
        const char *source;      /* bind: absolute host path; unused for tmpfs and overlay */
        const char *destination; /* absolute path in the container; not "/" nor under /proc */
        const char *const *options;
        const char *arg; /* the option it came from, for messages ("volumes[2]"); NULL: "mounts" */
} KilnMount;

/* A host device node to create in the container; the caller stat()ed it. In a user namespace, where
 * no node can be made, the host's (host_path) is bound at path instead. */
typedef struct KilnDevice {
        const char *path; /* in the container, absolute */
        char type;        /* 'c', 'b', 'u' (unbuffered character) or 'p' (FIFO) */
        guint32 major;
        guint32 minor;
        guint32 file_mode; /* permission bits (st_mode & 07777) */
        guint32 uid;       /* owner in the container */
        guint32 gid;
        const char *access;    /* device cgroup access, a non-empty subset of "rwm"; NULL: "rwm" */
        const char *host_path; /* the host's node, absolute; NULL: path */
} KilnDevice;

/* An OCI hook (config.json "hooks"), from hooks.d or a CDI spec; runs as kilnd's runtime runs. */
typedef struct KilnHook {
        const char *stage;       /* "prestart", "createRuntime", ... "poststop" */
        const char *path;        /* absolute host path */
        const char *const *args; /* NULL or argv including argv[0] */
        const char *const *env;  /* NULL or "NAME=VALUE" */
        int timeout;             /* seconds; 0: none */
} KilnHook;
/* The six runtime-spec stages, in the order a run meets them (NULL-ended); whether @stage is one. */
extern const char *const kiln_hook_stages[];
gboolean kiln_hook_stage_known(const char *stage);

/* Files in the bundle bound over the image's. NULL: not bound (no_hosts, no_hostname, ...). A
 * caller mount at the same destination wins over the file; with network "none" the hosts and
 * resolv.conf files are never bound (as buildah). Bound read-write, nosuid,nodev,noexec. */
typedef struct KilnGeneratedFiles {
        const char *hosts;        /* /etc/hosts */
        const char *resolv_conf;  /* /etc/resolv.conf */
        const char *hostname;     /* /etc/hostname */
        const char *containerenv; /* /run/.containerenv */
} KilnGeneratedFiles;

typedef struct KilnSpecInput {
        const char *id;     /* the builder's id; the default hostname is its first 12 characters */
        const char *rootfs; /* root.path: where the root file system is mounted on the host */

        /* process */
        const char *const *argv;        /* non-empty; argv[0] as resolved in the rootfs */
        const char *const *builder_env; /* "NAME=VALUE": the builder's, then ... */
        const char *const *env;         /* ... the run's; a later NAME replaces an earlier one */
        const char *cwd;                /* absolute; NULL or "": "/" */
        guint32 uid;                    /* the resolved process user, in the container */
        guint32 gid;
        const guint32 *additional_gids;
        gsize n_additional_gids;
        const char *home; /* HOME when the environment has none; NULL: not set */
        gboolean terminal;
        guint16 terminal_rows; /* process.consoleSize when terminal and both non-zero */
        guint16 terminal_cols;
        gboolean no_new_privileges;

        /* capabilities: the default set, then the builder's add/drop, then the run's add/drop
         * (names with or without CAP_, any case, or ALL; see kiln_spec_capabilities()) */
        const char *const *builder_cap_add;
        const char *const *builder_cap_drop;
        const char *const *cap_add;
        const char *const *cap_drop;
        /* "name=soft[:hard]": the builder's, then the run's; a later name replaces an earlier one */
        const char *const *ulimits;

        /* namespaces (mount is always private) */
        KilnNamespace pid;
        KilnNamespace ipc;
        KilnNamespace uts;
        KilnNamespace cgroup;
        KilnNamespace network;
        const char *hostname; /* NULL or "": the default; only with a private UTS namespace */
        /* A user namespace is used iff mappings are given (both, or neither). */
        const KilnIdMapping *uid_mappings;
        gsize n_uid_mappings;
        const KilnIdMapping *gid_mappings;
        gsize n_gid_mappings;

        /* mounts */
        const KilnMount *mounts; /* volumes and --mount, in the order given */
        gsize n_mounts;
        guint64 shm_size; /* bytes of the /dev/shm tmpfs; 0: KILN_DEFAULT_SHM_SIZE */
        KilnGeneratedFiles files;

        const KilnDevice *devices;
        gsize n_devices;
        JsonNode *seccomp; /* the linux.seccomp object (kiln_seccomp_profile_load()); NULL: unconfined */
        const char *const *annotations; /* "key=value" */
        /* OCI hooks, in order (each stage's list keeps it): the administrator's hooks.d files
         * (spec/hooks.h) or CDI specs, never a caller's. */
        const KilnHook *hooks;
        gsize n_hooks;

        /* resources: the run's own cgroup (linux.cgroupsPath; NULL: the runtime's choice) and its limits
         * (linux.resources; see cgroup.h) */
        const char *cgroups_path;
        gint64 pids_limit;          /* > 0; 0: no limit */
        guint64 memory;             /* bytes; 0: no limit */
        guint64 cpu_weight;         /* 1..10000, cgroup v2's scale (100: the default); 0: not set */
        guint64 tmpfs_default_size; /* the size of a caller's tmpfs that names none; 0: the kernel's */

        /* host facts (what the caller saw on this host; zero is the common case) */
        int last_cap; /* the running kernel's highest capability (cap_last_cap); < 0: libcap's */
        /* The capabilities kilnd itself may pass on (its bounding set; a unit's CapabilityBoundingSet=
         * narrows it). 0: every capability up to last_cap. ALL means these; a named one outside is
         * refused; a default one outside is left out. */
        guint64 bounding_set;
        gboolean host_lacks_dev_shm;    /* no /dev/shm to bind with ipc "host": none is mounted */
        gboolean host_lacks_dev_mqueue; /* no /dev/mqueue to bind (user namespace, ipc "host") */
        gboolean cgroup_v2; /* unified cgroup: cpu.weight as such, not as cgroup v1's cpu.shares */
} KilnSpecInput;

/* The document, a JSON object. InvalidArgument naming the argument on a bad input. */
JsonNode *kiln_spec_generate(const KilnSpecInput *input, GError **error);

/* The process environment the spec will have (builder env, run env, PATH default, HOSTNAME,
 * HOME), for the PATH lookup of argv[0] before generating. */
char **kiln_spec_environment(const KilnSpecInput *input, GError **error);

/* The bounding set ("CAP_..." names, in capability order) the spec will have: the default set
 * (buildah's: CHOWN DAC_OVERRIDE FOWNER FSETID KILL NET_BIND_SERVICE SETFCAP SETGID SETPCAP
 * SETUID SYS_CHROOT), then each layer of add/drop as podman merges them: drop ALL keeps only that
 * layer's adds; add ALL takes every capability but that layer's drops; a name both added and
 * dropped in one layer, or ALL in both, is an error. For seccomp includes and the authorization
 * check ("capabilities beyond the default set"). */
char **kiln_spec_capabilities(const KilnSpecInput *input, GError **error);
/* The default set, for comparisons. */
extern const char *const kiln_default_capabilities[];

/* config.json text. json-glib keeps integers as gint64, so OCI's uint64 values above G_MAXINT64
 * (RLIM_INFINITY for an "unlimited" ulimit) sit in the node as their two's complement (-1); this
 * prints every negative integer as the unsigned value it stands for (no field kiln writes is
 * signed). json-glib reads 18446744073709551615 back as -1, so the round trip is exact. */
char *kiln_spec_to_data(JsonNode *spec, gboolean pretty, gsize *length);

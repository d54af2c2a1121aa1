/* SPDX-License-Identifier: Apache-2.0 */
/* kiln.conf: the service's settings, read once at start-up (GKeyFile syntax).
 *
 *   [Paths]
 *   StateDirectory=/var/lib/kiln       layers/, builders/
 *   RuntimeDirectory=/run/kiln         mounts, bundles, runtime --root
 *   DataDirectory=$datadir/kiln        seccomp profiles
 *   HelperDirectory=$libexecdir/kiln   kiln-import, kiln-isolate, kiln-runtime-ns
 *
 *   [Limits]
 *   BuildersPerUser=100                builders one uid may own (uid 0 is not limited)
 *   MaxArrayLength=256                 entries in any array argument (argv, env, volumes, ...)
 *   MaxStringLength=4096               bytes in any string argument
 *   MaxBuilders=10000                  builders on the host in all
 *   ProcessesPerUser=64                running processes one uid may have (uid 0 included)
 *   CaptureBytes=1048576               RunCaptured's bound per stream
 *   AuthorizationsPerUser=16           polkit checks one uid may have in progress
 *   MaxAuthorizations=100              polkit checks in progress in all (below the bus's 128
 *                                      pending replies per connection)
 *   AuthorizationTimeoutSeconds=25     how long a check waits for polkitd (no password asked)
 *   InteractiveAuthorizationTimeoutSeconds=300  the same while polkit may ask for a password
 *   ArgumentBytes=262144               argv + env bytes of one Run/RunCaptured/Start
 *   ProcessBytesPerUser=4194304        argv (+ env while running) bytes one uid's Process objects keep
 *   LingeringProcessesPerUser=64       exited Process objects kept per uid (oldest dropped first)
 *   DescriptorsPerUser=1024            descriptors one uid's running processes may make kilnd hold
 *   ImportBytes=10737418240            bytes of file content in one imported layer (0: no bound)
 *   StorageBytesPerUser=21474836480    bytes of file content in the layers one uid's builders use
 *                                      (uid 0 is not limited; 0: no bound)
 *   ImageBytes=10737418240             bytes of file content in one image's layers (0: no bound)
 *   LayersPerImage=128                 layers in one image
 *   EntriesPerLayer=1000000            entries in one image layer
 *   CopyBytes=10737418240              bytes of file content in one Copy or CopyOut (0: no bound)
 *   CopyEntries=1000000                entries in one Copy or CopyOut (0: no bound)
 *   CopiesPerUser=4                    Copy and CopyOut calls one uid may have in progress (uid 0 included)
 *   ImagesPerUser=100                  images one uid may own (uid 0 is not limited)
 *   ImageConfigBytes=262144            bytes of one committed image's config (kilnd keeps it in memory)
 *
 *   [Process]
 *   LingerSeconds=60                   how long an exited Process object still answers Wait
 *
 *   [Run]
 *   DefaultIsolation=oci
 *   Runtimes=runc;crun                 runtimes kiln may use, in order of preference
 *   NoNewPrivileges=false              the default of the no_new_privileges run option
 *   KeepMountedSeconds=10              how long a builder's root file system stays mounted after
 *                                      its last holder lets go; 0 unmounts at once
 *
 *   [UserNamespace]                    userns=auto (service/storage/userns.h)
 *   SubUidFile=/etc/subuid             owners' subordinate uids (absolute path)
 *   SubGidFile=/etc/subgid             owners' subordinate gids (absolute path)
 *   PoolStart=3221225472               first id of the pool for owners without subordinate ids
 *   PoolSize=1073676288                ids in the pool (2^30 less one range, to stay below 4294967295);
 *                                      0 disables it. PoolStart + PoolSize <= 4294967295
 *   RangeSize=65536                    ids one owner gets from the pool (>= 1, <= PoolSize)
 *   IdMappedLayers=true                ID-map layers where the kernel can; false: shifted copies
 *   DefaultForRoot=host                userns of builders created by uid 0: host or auto
 *                                      (other owners always get auto)
 *
 *   [Resources]                        each run's own cgroup (service/base/cgroup.h)
 *   PidsLimit=2048                     pids.max of a run; 0: no limit
 *   Memory=0                           memory limit of a run, bytes (k, m, g suffixes); 0: none
 *   CPUWeight=100                      cpu.weight of a run (1..10000; cpu.shares 1024 on cgroup v1)
 *   TmpfsMaxSize=0                     bytes a tmpfs mount may have; 0: half of the RAM
 *   CgroupParent=kiln                  the runs' parent cgroup (systemd: PARENT.slice)
 *
 *   [Network]                          user-mode networks (service/network.h)
 *   Default=                           network of runs that name none: private, none, pasta or
 *                                      slirp4netns; empty: pasta when found at start-up, else private
 *   Pasta=pasta                        the pasta program (Debian package passt): a name looked up
 *                                      in PATH, or an absolute path
 *   Slirp4netns=slirp4netns            the slirp4netns program, likewise
 *   HelperTimeoutSeconds=10            how long a run waits for its network helper to be ready
 *
 *   [Hooks]                            OCI hooks (spec/hooks.h, run/run-hooks.h)
 *   Directories=/usr/share/containers/oci/hooks.d;/etc/containers/oci/hooks.d
 *                                      hooks.d directories, absolute, a later one's file replacing
 *                                      an earlier one's of the same name; empty: no hooks
 *   [CDI]                              devices named vendor.com/class=name (service/run/cdi.h)
 *   SpecDirectories=/etc/cdi /var/run/cdi  absolute directories of CDI spec files (*.json), separated
 *                                      by spaces or ';'; a later one wins; empty: no CDI devices
 */
#pragma once

#include <glib.h>

typedef struct KilnConfig {
        char *state_dir;
        char *runtime_dir;
        char *data_dir;
        char *helper_dir;

        unsigned builders_per_user;
        unsigned max_builders;
        unsigned max_array_length;
        unsigned max_string_length;
        unsigned processes_per_user;
        unsigned capture_bytes;
        unsigned process_linger_seconds;
        unsigned authorizations_per_user;
        unsigned max_authorizations;
        unsigned authorization_timeout_seconds;
        unsigned interactive_authorization_timeout_seconds;
        /* What one caller can make kilnd keep (process.c): bounds the replies that list it too. */
        unsigned argument_bytes;
        unsigned process_bytes_per_user;
        unsigned lingering_per_user;
        unsigned descriptors_per_user;
        guint64 import_bytes;           /* G_MAXUINT64: no bound */
        guint64 storage_bytes_per_user; /* G_MAXUINT64: no bound */
        /* Images (storage.c, service/import/image-read.c) */
        guint64 image_bytes; /* G_MAXUINT64: no bound */
        unsigned layers_per_image;
        unsigned entries_per_layer;
        /* Copy, CopyOut (service/copy/copy.h) */
        guint64 copy_bytes;   /* G_MAXUINT64: no bound */
        guint64 copy_entries; /* G_MAXUINT64: no bound */
        unsigned copies_per_user;
        unsigned images_per_user;    /* images out: images one uid may own */
        unsigned image_config_bytes; /* images out: bytes of one committed config */

        char *default_isolation;
        char **runtimes; /* names or absolute paths, as configured */
        gboolean no_new_privileges;
        unsigned keep_mounted_seconds;

        char *subuid_file;
        char *subgid_file;
        guint32 id_pool_start;
        guint32 id_pool_size; /* 0: no pool */
        guint32 id_range_size;
        char *default_userns_root; /* "host" or "auto" */
        gboolean idmapped_layers;  /* FALSE: shifted copies of layers even where ID-mapping works */

        /* [Resources]: run options may lower these; raising them needs run-privileged */
        guint64 pids_limit;     /* 0: no limit */
        guint64 memory;         /* bytes; 0: no limit */
        guint64 cpu_weight;     /* 1..10000 */
        guint64 tmpfs_max_size; /* bytes, resolved (never 0) */
        char *cgroup_parent;

        /* [Network] (network.h) */
        char *network_default; /* NULL or empty until kiln_network_detect_default() decides at start-up */
        char *pasta_program;
        char *slirp4netns_program;
        unsigned network_helper_timeout_seconds;

        /* [Hooks] (run/run-hooks.h) */
        char **hooks_directories; /* absolute, in increasing precedence; empty: no hooks */
        /* [CDI] (run/cdi.h) */
        char **cdi_spec_dirs; /* absolute; never NULL */
} KilnConfig;

/* Loads @path (NULL: the built-in default location; a missing default file means defaults). */
KilnConfig *kiln_config_load(const char *path, GError **error);
KilnConfig *kiln_config_new_defaults(void);
void kiln_config_free(KilnConfig *config);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnConfig, kiln_config_free)

/* SPDX-License-Identifier: Apache-2.0 */
/* The volumes and mounts of one run, resolved once into one list before authorization: the builder's
 * `Volumes`, the run's `volumes`, `volume_fds` and `mounts`. The authorization (run-privileges.c)
 * and the preparation (run.c) both read only this list, so what is checked is what is bound: an
 * option that weakens isolation cannot reach the run through a spelling the check does not parse.
 * The parsers are pure; kiln_run_volumes_resolve() opens the sources as the caller. */
#pragma once

#include "run/run-options.h"
#include "storage/storage.h"

typedef enum {
        KILN_RUN_VOLUME_BIND,
        KILN_RUN_VOLUME_OVERLAY, /* `O`: a bind whose writes go to a throw-away upper dir */
        KILN_RUN_VOLUME_TMPFS,
        KILN_RUN_VOLUME_CACHE,  /* run parity: type=cache, a directory of the caller's kept by kilnd */
        KILN_RUN_VOLUME_SECRET, /* run parity: type=secret, a file on a memory file system of its own */
} KilnRunVolumeKind;

/* type=cache sharing=: what a second run does while one uses the cache. */
typedef enum {
        KILN_RUN_CACHE_SHARED,  /* uses it too (the default) */
        KILN_RUN_CACHE_PRIVATE, /* gets a fresh, empty one of its own, thrown away after the run */
        KILN_RUN_CACHE_LOCKED,  /* is refused (Busy) until the first is done; kilnd never waits */
} KilnRunCacheSharing;

typedef enum {
        KILN_RUN_VOLUME_CHOWN = 1 << 0, /* `U`: the source is given to the run's user (weakens isolation) */
        KILN_RUN_VOLUME_RELABEL = 1 << 1, /* `z`, `Z`, `relabel=`: no-ops without SELinux */
        KILN_RUN_VOLUME_SCRATCH = 1 << 2, /* a --mount with `rw` (or `O`): an overlay, not a volume */
} KilnRunVolumeFlags;

typedef struct KilnRunVolume {
        char *arg; /* "volumes[2]", "builder volumes[0]", "volume_fds[1]", "mounts[0]": for messages */
        KilnRunVolumeKind kind;
        char *source;        /* the host path named; NULL for volume_fds and tmpfs */
        int fd;              /* the source opened by (or as) the caller, owned; -1: none */
        gboolean unreadable; /* the caller cannot read the source: needs run-privileged */
        char *destination;   /* absolute, in the container */
        KilnRunVolumeFlags flags;
        char **options; /* mount(8) spelling for the spec generator: ro, rw, propagation, nosuid, size=... */
        /* Run parity: `O,upperdir=DIR,workdir=DIR`, a persistent upper dir of the caller's instead of a
         * throw-away one; both opened as the caller and owned by it (run-volumes.c), held as O_PATH
         * descriptors; -1: none. */
        char *upperdir, *workdir;
        int upper_fd, work_fd;
        /* Run parity: type=cache. The cache is STATE/caches/OWNER/ID (run-caches.h). */
        char *cache_id;     /* a name ([A-Za-z0-9_.-]), or the hex SHA-256 of the destination */
        char *cache_source; /* a directory inside the cache, relative; NULL: its root */
        KilnRunCacheSharing cache_sharing;
        guint32 cache_uid, cache_gid, cache_mode; /* of a new cache, container ids; 0, 0, 0755 */
        uid_t cache_owner;                        /* the caller: whose caches (set when resolved) */
        /* Run parity: type=secret. @fd is the secret's sealed memfd (run-options.h) once resolved;
         * uid, gid and mode (default 0, 0, 0400) are the file's, as the run sees them. */
        char *secret_id;
        gboolean secret_required;
} KilnRunVolume;

void kiln_run_volume_free(KilnRunVolume *volume);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnRunVolume, kiln_run_volume_free)

/* "SRC:DST[:OPTS]" (`-v`, `volumes`, a builder's `Volumes`), OPTS from ro rw z Z O U, the
 * propagation and nosuid/nodev/noexec flags, and with O upperdir=DIR,workdir=DIR (both absolute, both
 * or neither). InvalidArgument naming @arg. */
KilnRunVolume *kiln_run_volume_parse(const char *arg, const char *spec, GError **error);
/* A `volume_fds` entry without its descriptor: the destination and OPTS as above. */
KilnRunVolume *kiln_run_volume_parse_fd(const char *arg, const char *destination, const char *options,
                                        GError **error);
/* One --mount value in buildah's spelling: "type=bind|tmpfs,source=S,destination=D,..." (src, dst
 * and target too; bind when no type is given; the last of a repeated key counts). Only keys known
 * for the type are taken (bind: ro/readonly/rw, bind-propagation= or a propagation, nosuid, nodev,
 * noexec, z, Z, relabel=shared|private, U, O; tmpfs: tmpfs-size=/size=, tmpfs-mode=/mode=,
 * ro/readonly/rw, exec, noexec, nosuid, nodev); anything else, overlay keys such as lowerdir=
 * included, is InvalidArgument, and so are `from=` and `bind-nonrecursive` (not supported yet).
 * ro=, rw=, readonly= take true or false, as buildah.
 * A bind is read-only unless `rw`; with `rw` it is an overlay whose writes are thrown away
 * (KILN_RUN_VOLUME_SCRATCH), as in buildah: never written through to the host.
 * type=cache (run parity): id=, target=/dst=/destination=, sharing=shared|private|locked, ro/rw,
 * uid=, gid=, mode= (octal), source=/src= (a relative directory inside the cache); `from=` is
 * InvalidArgument (not supported yet).
 * type=secret (run parity): id= (a name, required), target=/dst=/destination= (default
 * /run/secrets/ID), uid=, gid=, mode= (default 0400), required[=true|false]. The cache_uid, cache_gid
 * and cache_mode fields hold the file's. */
KilnRunVolume *kiln_run_mount_parse(const char *arg, const char *value, GError **error);

/* Parses every volume and mount of the run (@builder_volumes first, then the run's volumes,
 * volume_fds and mounts) into @options->resolved_volumes. A type=secret mount takes a duplicate of
 * its secret's descriptor from @options->secrets; without one it is left out, or InvalidArgument
 * naming it when `required`. Descriptors of `volume_fds` move into the
 * list. For a caller other than uid 0 every source is held open: a path is opened as the caller
 * (caller-open.h); a source that is not a directory or a regular file is InvalidArgument; one the
 * caller cannot read is marked unreadable (run-privileged). For uid 0 a path stays a path. */
gboolean kiln_run_volumes_resolve(KilnRunOptions *options, char **builder_volumes, const KilnCreds *caller,
                                  GError **error);

/* Run parity: the builder's group_add, then the run's, into @options->resolved_group_add (names and
 * gids, each with its argument name); "keep-groups" takes the caller's supplementary groups into
 * @options->caller_groups, for uid 0 only (InvalidArgument naming the entry for anyone else). Before
 * authorization, like the volumes; the image's /etc/group is read when the run is prepared. */
gboolean kiln_run_groups_resolve(KilnRunOptions *options, char **builder_group_add, const KilnCreds *caller,
                                 GError **error);

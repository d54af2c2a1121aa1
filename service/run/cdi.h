/* SPDX-License-Identifier: Apache-2.0 */
/* CDI, the Container Device Interface (tags.cncf.io/container-device-interface): spec files an
 * administrator or a vendor's tool installs (kiln.conf [CDI] SpecDirectories=, by default /etc/cdi
 * and /var/run/cdi, the later directory winning), each naming a kind "vendor/class", its devices and
 * the edits each makes to a container: environment, device nodes, bind mounts, OCI hooks. A run names
 * a device "vendor/class=name".
 *
 * The parser is pure (bytes → struct) and checks everything it keeps: spec files are the
 * administrator's, but a malformed one must never crash kilnd or reach a runtime. JSON only (YAML specs
 * are not read; see docs/decisions.md). Members kiln cannot apply (additionalGids, intelRdt, unknown
 * ones) refuse the whole spec rather than give a device half of what its vendor meant. */
#pragma once

#include <glib.h>

#define KILN_CDI_SPEC_MAX_BYTES (1024 * 1024) /* one spec file */
#define KILN_CDI_SPECS_MAX 256                /* spec files read from one directory */
#define KILN_CDI_LIST_MAX 1024                /* entries in any one list of a spec */

typedef struct KilnCdiDeviceNode {
        char *path;        /* in the container, absolute */
        char *host_path;   /* absolute; NULL: path */
        char type;         /* 'c', 'b'; 0: not given (the host node's) */
        gint64 major;      /* -1: not given */
        gint64 minor;      /* -1: not given */
        gint64 file_mode;  /* permission bits; -1: not given (the host node's) */
        gint64 uid, gid;   /* owner in the container; -1: not given (0) */
        char *permissions; /* the device cgroup's access, a non-empty subset of "rwm"; NULL: "rwm" */
} KilnCdiDeviceNode;

typedef struct KilnCdiMount {
        char *host_path;      /* absolute */
        char *container_path; /* absolute */
        char **options;       /* as the spec says; checked when applied (run-devices.c) */
} KilnCdiMount;

typedef struct KilnCdiHook {
        char *stage; /* an OCI hook stage: prestart, createRuntime, ..., poststop */
        char *path;  /* absolute host path */
        char **args; /* NULL or argv including argv[0] */
        char **env;  /* NULL or "NAME=VALUE" */
        int timeout; /* seconds; 0: none */
} KilnCdiHook;

KilnCdiHook *kiln_cdi_hook_copy(const KilnCdiHook *hook);
void kiln_cdi_hook_free(KilnCdiHook *hook);

typedef struct KilnCdiEdits {
        char **env;              /* "NAME=VALUE"; never NULL */
        GPtrArray *device_nodes; /* KilnCdiDeviceNode */
        GPtrArray *mounts;       /* KilnCdiMount */
        GPtrArray *hooks;        /* KilnCdiHook */
} KilnCdiEdits;

typedef struct KilnCdiDevice {
        char *name;
        KilnCdiEdits edits;
} KilnCdiDevice;

typedef struct KilnCdiSpec {
        char *origin;       /* the file, for messages */
        char *kind;         /* "vendor/class" */
        guint priority;     /* its directory's place in SpecDirectories: a later one wins */
        GPtrArray *devices; /* KilnCdiDevice, at least one, names unique */
        KilnCdiEdits edits; /* the spec-wide edits, applied once for any of its devices */
} KilnCdiSpec;

/* Parses @length bytes of a spec's JSON; errors (InvalidArgument) name @origin and the member. */
KilnCdiSpec *kiln_cdi_spec_parse(const char *data, gsize length, const char *origin, GError **error);
void kiln_cdi_spec_free(KilnCdiSpec *spec);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnCdiSpec, kiln_cdi_spec_free)

/* Whether @value is written as a CDI name ("vendor/class=name", not a path); it may still be invalid. */
gboolean kiln_cdi_is_name(const char *value);
/* Splits a qualified name into its kind and name, checking both; InvalidArgument naming @arg. */
gboolean kiln_cdi_parse_name(const char *arg, const char *value, char **kind, char **name, GError **error);

/* Every spec of @dirs (a missing directory is none), read once for a run that names CDI devices. A file
 * that is not a readable, bounded JSON spec is left out with a warning in kilnd's log, as the CDI
 * library does; its devices are then unknown. Only regular files named *.json are read, never through
 * a symlink. */
GPtrArray *kiln_cdi_load(const char *const *dirs);
/* The spec and device @qualified names among @specs (from kiln_cdi_load()); a device of a later
 * directory hides one of an earlier; two in one directory conflict. InvalidArgument naming @arg. */
const KilnCdiDevice *kiln_cdi_find(GPtrArray *specs, const char *arg, const char *qualified,
                                   const KilnCdiSpec **spec, GError **error);

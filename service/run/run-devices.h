/* SPDX-License-Identifier: Apache-2.0 */
/* The devices of a run (`devices`, kiln run --device), resolved once before authorization into the
 * list the authorization judges and the preparation uses:
 *   HOST[:CONTAINER[:PERMISSIONS]]  a host device node, or a directory: every character and block
 *                                   device under it (recursively, symlinks never followed, at most
 *                                   KILN_RUN_DEVICES_MAX in a run), CONTAINER renaming the prefix;
 *   vendor.com/class=name           a CDI device (cdi.h): its edits and its spec's, once per spec.
 * Every host node is stat()ed by kilnd: its type and numbers are the host's, never a spec's (a spec that
 * says otherwise is refused). A caller other than uid 0 reaches only the paths it could itself (opened
 * as the caller; CDI specs are the administrator's and read as root). */
#pragma once

#include <glib.h>

#include "spec/spec.h"
#include "storage/storage.h"

#define KILN_RUN_DEVICES_MAX 1024 /* device nodes in one run */
#define KILN_RUN_DEVICES_DEPTH 8  /* directories below a --device directory */

typedef struct KilnRunDevice {
        char *arg;       /* the entry it came from, for messages: "devices[2]" */
        char *host_path; /* the host's node */
        char *path;      /* in the container */
        char type;       /* 'c' or 'b' */
        guint32 major, minor;
        guint32 file_mode; /* permission bits */
        guint32 uid, gid;  /* owner in the container */
        char *access;      /* a non-empty subset of "rwm"; NULL: "rwm" */
} KilnRunDevice;

/* A CDI bind mount: the run's mount list takes it (options as a volume's). */
typedef struct KilnRunDeviceMount {
        char *arg;
        char *source;
        char *destination;
        char **options; /* ro rw nosuid nodev noexec and a propagation */
} KilnRunDeviceMount;

typedef struct KilnRunDevices {
        GPtrArray *devices; /* KilnRunDevice, in the order given */
        GPtrArray *mounts;  /* KilnRunDeviceMount, from CDI edits */
        char **env;         /* "NAME=VALUE" from CDI edits, after the run's own; never NULL */
        GPtrArray *hooks;   /* KilnCdiHook (cdi.h) from CDI edits, to run as the OCI hooks of the run */
        char **cdi_names;   /* the CDI devices named; never NULL */
} KilnRunDevices;

void kiln_run_devices_free(KilnRunDevices *devices);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnRunDevices, kiln_run_devices_free)

/* Resolves @devices (each checked by kiln_run_device_validate()) for @caller; CDI names are looked up
 * in @cdi_dirs. A path that is no device node or directory of them, an unknown or malformed CDI device,
 * too many nodes: InvalidArgument naming "devices[N]". */
KilnRunDevices *kiln_run_devices_resolve(char *const *devices, const char *const *cdi_dirs,
                                         const KilnCreds *caller, GError **error);

/* The syntax of one entry (run-options.c), without looking at the host. */
gboolean kiln_run_device_validate(const char *arg, const char *value, GError **error);

/* What the authorization lists for them: every host node and where it goes, every CDI mount and hook. */
void kiln_run_devices_describe(const KilnRunDevices *devices, GPtrArray *reasons);

/* The CDI hooks as the spec input takes them (KilnHook, pointing into @devices), in the order given. */
GArray *kiln_run_devices_hooks(const KilnRunDevices *devices);

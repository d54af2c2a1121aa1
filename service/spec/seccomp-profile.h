/* SPDX-License-Identifier: Apache-2.0 */
/* Seccomp profiles: files in the OCI `linux.seccomp` format with the extensions docker and podman
 * use, resolved into the plain OCI object that goes into a spec.
 *
 * A profile is a JSON object with
 *   defaultAction     an SCMP_ACT_* name (required)
 *   defaultErrnoRet   errno for an SCMP_ACT_ERRNO default (e.g. 38, ENOSYS)
 *   architectures     SCMP_ARCH_* names (plain OCI), or
 *   archMap           [{architecture, subArchitectures}]: the entry of the native architecture
 *                     becomes the spec's architectures
 *   flags             SECCOMP_FILTER_FLAG_* names
 *   syscalls          rules: {names (or name), action, errnoRet, args: [{index, value, valueTwo, op}],
 *                     comment, includes, excludes}
 * includes / excludes are {caps: [CAP_...], arches: [libseccomp names: "x86_64", "aarch64", ...],
 * minKernel: "MAJOR.MINOR"}. A rule is kept when the process has every capability of includes.caps,
 * the native architecture is in includes.arches (if any), the kernel is at least includes.minKernel
 * (if any), and none of excludes matches (a capability of excludes.caps held, the native
 * architecture listed, the kernel at least excludes.minKernel).
 *
 * Every syscall name is checked with libseccomp: a name libseccomp knows on none of the profile's
 * architectures (and the native one) is an error naming it — a typo must not silently open or
 * close a hole. A name it knows, but not on any architecture of the resolved filter (an s390-only
 * call on x86_64), is dropped from the result, so runtimes never see it. */
#pragma once

#include <json-glib/json-glib.h>
#include <seccomp.h>

#include "base/errors.h"

#define KILN_SECCOMP_PROFILE_MAX_SIZE (4 * 1024 * 1024)

typedef struct KilnSeccompHost {
        guint32 arch; /* libseccomp's token of the native architecture (SCMP_ARCH_X86_64, ...) */
        guint kernel_major;
        guint kernel_minor;
} KilnSeccompHost;

/* This machine: seccomp_arch_native() and uname(). */
gboolean kiln_seccomp_host_detect(KilnSeccompHost *host, GError **error);

/* Resolved profiles kept for the next load: resolving checks every syscall name with libseccomp, most
 * of a run's preparation time. Owned by its user (kilnd's Manager); not for several threads at once. */
typedef struct KilnSeccompCache KilnSeccompCache;
KilnSeccompCache *kiln_seccomp_cache_new(void);
void kiln_seccomp_cache_free(KilnSeccompCache *cache);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnSeccompCache, kiln_seccomp_cache_free)

/* Reads the profile file @path (a regular file, at most KILN_SECCOMP_PROFILE_MAX_SIZE bytes) and
 * resolves it for a process whose bounding set is @caps on this machine, through @cache when given.
 * Returns the linux.seccomp object for KilnSpecInput.seccomp. Errors are InvalidArgument ("Invalid
 * seccomp_profile: PATH: ...") or G_IO_ERROR for a file that cannot be read. */
JsonNode *kiln_seccomp_profile_load(KilnSeccompCache *cache, const char *path, const char *const *caps,
                                    GError **error);

/* The pure part of kiln_seccomp_profile_load(): @profile parsed, @host given. @name names the
 * profile in errors. */
JsonNode *kiln_seccomp_profile_resolve(const char *name, JsonNode *profile, const char *const *caps,
                                       const KilnSeccompHost *host, GError **error);

/* Builds the libseccomp filter a runtime would from a resolved linux.seccomp object (@seccomp, as
 * kiln_seccomp_profile_resolve() returns or a spec holds): for the chroot executor and the tests.
 * Rules whose action is the default action are left out (libseccomp refuses them, runc skips them). */
scmp_filter_ctx kiln_seccomp_filter_new(JsonNode *seccomp, GError **error);

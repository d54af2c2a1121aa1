/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>
#include <sys/capability.h>
#include <sys/sysinfo.h>

#include "base/cgroup.h"
#include "base/size.h"
#include "run/network.h"
#include "run/run-privileges.h"
#include "run/run-volumes.h"
#include "run/run.h"
#include "spec/spec.h"

/* The network is judged as the run will have it: the run's, else the builder's (Configure could have set
 * host there), else kiln.conf's default (which can only name networks that need no privilege). pasta and
 * slirp4netns weaken nothing: their helper runs as the builder's owner, with what the owner could start
 * himself (run/network.h). */
static void check_namespaces(GPtrArray *reasons, const KilnRunInput *run, const KilnRunOptions *o)
{
        const char *network = kiln_network_effective(run->config, o->network, run->builder_config->network);
        const struct {
                const char *name;
                const char *value;
        } namespaces[] = {{"network", kiln_network_needs_helper(network) ? NULL : network},
                          {"pid", o->pid},
                          {"ipc", o->ipc},
                          {"uts", o->uts},
                          {"cgroupns", o->cgroupns}};

        for (size_t i = 0; i < G_N_ELEMENTS(namespaces); i++) {
                KilnNamespace ns;
                if (!namespaces[i].value ||
                    !kiln_namespace_parse(namespaces[i].name, namespaces[i].value, TRUE, &ns, NULL))
                        continue; /* unset, or refused with its own error when the run is prepared */
                if (ns.mode == KILN_NAMESPACE_HOST || ns.mode == KILN_NAMESPACE_PATH)
                        g_ptr_array_add(reasons,
                                        g_strdup_printf("%s=%s", namespaces[i].name, namespaces[i].value));
        }
}

/* Capabilities the resolved set has that the default set has not. */
static gboolean check_capabilities(GPtrArray *reasons, const KilnRunInput *run, const KilnRunOptions *o,
                                   GError **error)
{
        KilnSpecInput in = {
                .builder_cap_add = (const char *const *)run->builder_config->cap_add,
                .builder_cap_drop = (const char *const *)run->builder_config->cap_drop,
                .cap_add = (const char *const *)o->cap_add,
                .cap_drop = (const char *const *)o->cap_drop,
                .last_cap = (int)cap_max_bits() - 1,
                .bounding_set = run->bounding_set,
        };
        g_auto(GStrv) caps = kiln_spec_capabilities(&in, error);

        if (!caps)
                return FALSE;
        for (char **c = caps; *c; c++)
                if (!g_strv_contains(kiln_default_capabilities, *c))
                        g_ptr_array_add(reasons, g_strdup_printf("cap_add %s", *c));
        return TRUE;
}

static void check_runtime(GPtrArray *reasons, const KilnConfig *c, const KilnRunOptions *o)
{
        if (o->runtime && *o->runtime && !g_strv_contains((const char *const *)c->runtimes, o->runtime))
                g_ptr_array_add(reasons,
                                g_strdup_printf("runtime %s, which kiln.conf does not list", o->runtime));
        if (o->runtime_args && o->runtime_args[0])
                g_ptr_array_add(reasons, g_strdup("runtime_args"));
}

/* From the run's one resolved list of volumes and mounts (run-volumes.h), the very entries the run
 * binds: every spelling of an option arrives here parsed. */
static void check_volumes(GPtrArray *reasons, const KilnRunOptions *o)
{
        for (guint i = 0; o->resolved_volumes && i < o->resolved_volumes->len; i++) {
                const KilnRunVolume *v = o->resolved_volumes->pdata[i];
                /* A descriptor (volume_fds) has no path to name. */
                const char *source = v->source ? v->source : "the descriptor's source";

                if (v->flags & KILN_RUN_VOLUME_CHOWN)
                        g_ptr_array_add(reasons,
                                        g_strdup_printf("%s option U, which gives away the owner of %s",
                                                        v->arg, source));
                if (v->unreadable)
                        g_ptr_array_add(reasons,
                                        g_strdup_printf("%s (to %s): %s%s, which the caller cannot read",
                                                        v->arg, v->destination,
                                                        v->source ? "volume source " : "", source));
        }
}

/* Limits above kiln.conf's [Resources] defaults: lowering a limit needs nothing, raising or removing one
 * is run-privileged. */
static void check_resources(GPtrArray *reasons, const KilnConfig *c, const KilnRunOptions *o)
{
        if (o->pids_limit != KILN_PIDS_LIMIT_UNSET && c->pids_limit > 0 &&
            (o->pids_limit <= 0 || (guint64)o->pids_limit > c->pids_limit))
                g_ptr_array_add(reasons, g_strdup_printf("pids_limit %s kiln.conf's %" G_GUINT64_FORMAT,
                                                         o->pids_limit <= 0 ? "none, above" : "above",
                                                         c->pids_limit));
        if (o->memory != KILN_MEMORY_UNSET && c->memory > 0 && (o->memory == 0 || o->memory > c->memory))
                g_ptr_array_add(reasons,
                                g_strdup_printf("memory %s kiln.conf's %" G_GUINT64_FORMAT " bytes",
                                                o->memory == 0 ? "none, above" : "above", c->memory));
        if (o->cpu_weight > c->cpu_weight)
                g_ptr_array_add(reasons, g_strdup_printf("cpu_weight above kiln.conf's %" G_GUINT64_FORMAT,
                                                         c->cpu_weight));
}

/* A tmpfs size as mount(8) means it: N bytes, N with k, m, g (powers of 1024; b for bytes, as shm_size
 * takes), or N% of the RAM. FALSE for anything else, which the generator refuses later. */
static gboolean tmpfs_size_bytes(const char *value, guint64 *bytes)
{
        gsize digits = strspn(value, "0123456789");
        guint64 n = g_ascii_strtoull(value, NULL, 10);
        struct sysinfo si;

        if (digits == 0 || digits > 19 || (value[digits] && value[digits + 1]))
                return FALSE;
        if (value[digits] == '%') {
                if (sysinfo(&si) < 0)
                        return FALSE;
                /* In floating point: a huge percentage must not wrap around to a small size. */
                *bytes = (guint64)MIN((double)si.totalram * si.mem_unit * (double)n / 100, 1.8e19);
                return TRUE;
        }
        if (kiln_parse_size(value, bytes))
                return TRUE;
        if (value[digits] && !strchr("bkmgBKMG", value[digits]))
                return FALSE;
        *bytes = G_MAXUINT64; /* a size too large to count: above any TmpfsMaxSize */
        return TRUE;
}

/* tmpfs mounts (--mount type=tmpfs, from the resolved list, and shm_size) larger than TmpfsMaxSize: a
 * tmpfs's pages are memory nobody else gets. Every size a mount names counts, whichever of them the
 * generator would use. */
static void check_tmpfs(GPtrArray *reasons, const KilnConfig *c, const KilnRunOptions *o)
{
        guint64 asked;

        for (guint i = 0; o->resolved_volumes && i < o->resolved_volumes->len; i++) {
                const KilnRunVolume *v = o->resolved_volumes->pdata[i];

                if (v->kind != KILN_RUN_VOLUME_TMPFS)
                        continue;
                for (char **opt = v->options; opt && *opt; opt++)
                        if (g_str_has_prefix(*opt, "size=") && tmpfs_size_bytes(*opt + 5, &asked) &&
                            asked > c->tmpfs_max_size)
                                g_ptr_array_add(
                                        reasons,
                                        g_strdup_printf(
                                                "%s tmpfs of %" G_GUINT64_FORMAT
                                                " bytes, above kiln.conf's TmpfsMaxSize %" G_GUINT64_FORMAT,
                                                v->arg, asked, c->tmpfs_max_size));
        }
        if (o->shm_size && tmpfs_size_bytes(o->shm_size, &asked) && asked > c->tmpfs_max_size)
                g_ptr_array_add(reasons,
                                g_strdup_printf("shm_size of %" G_GUINT64_FORMAT
                                                " bytes, above kiln.conf's TmpfsMaxSize %" G_GUINT64_FORMAT,
                                                asked, c->tmpfs_max_size));
}

GPtrArray *kiln_run_weakenings(const KilnRunInput *run, KilnRunOptions *o, const KilnCreds *caller,
                               GError **error)
{
        g_autoptr(GPtrArray) reasons = g_ptr_array_new_with_free_func(g_free);

        /* Fail closed: without the resolved list nothing about the volumes is known. */
        if (!o->resolved_volumes || !o->resolved_devices) {
                kiln_fail(error, KILN_ERROR_CODE_FAILED, "The run's volumes or devices were not resolved");
                return NULL;
        }
        /* uid 0 is root on the host already: nothing it asks for weakens anything it holds. */
        if (caller->uid == 0)
                return g_steal_pointer(&reasons);
        if (!kiln_run_wants_userns(run->builder_config, o))
                g_ptr_array_add(reasons, g_strdup("userns=host, where container root is host root"));
        check_namespaces(reasons, run, o);
        if (!check_capabilities(reasons, run, o, error))
                return NULL;
        /* Every host node the run would get, and every CDI mount and hook: the resolved list. */
        kiln_run_devices_describe(o->resolved_devices, reasons);
        if (g_strcmp0(o->seccomp_profile, "unconfined") == 0)
                g_ptr_array_add(reasons, g_strdup("seccomp_profile=unconfined"));
        check_runtime(reasons, run->config, o);
        if (run->config->no_new_privileges && o->no_new_privileges == 0)
                g_ptr_array_add(reasons, g_strdup("no_new_privileges=false"));
        check_volumes(reasons, o);
        check_resources(reasons, run->config, o);
        check_tmpfs(reasons, run->config, o);
        return g_steal_pointer(&reasons);
}

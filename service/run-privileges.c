/* SPDX-License-Identifier: Apache-2.0 */
#include <sys/capability.h>

#include "run-privileges.h"
#include "run-volumes.h"
#include "run.h"
#include "spec.h"

static void check_namespaces(GPtrArray *reasons, const KilnRunOptions *o)
{
        const struct {
                const char *name;
                const char *value;
        } namespaces[] = {{"network", o->network},
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
static gboolean check_capabilities(GPtrArray *reasons, KilnManager *m, const KilnBuilder *b,
                                   const KilnRunOptions *o, GError **error)
{
        KilnSpecInput in = {
                .builder_cap_add = (const char *const *)b->config.cap_add,
                .builder_cap_drop = (const char *const *)b->config.cap_drop,
                .cap_add = (const char *const *)o->cap_add,
                .cap_drop = (const char *const *)o->cap_drop,
                .last_cap = (int)cap_max_bits() - 1,
                .bounding_set = m->bounding_set,
        };
        g_auto(GStrv) caps = kiln_spec_capabilities(&in, error);

        if (!caps)
                return FALSE;
        for (char **c = caps; *c; c++)
                if (!g_strv_contains(kiln_default_capabilities, *c))
                        g_ptr_array_add(reasons, g_strdup_printf("cap_add %s", *c));
        return TRUE;
}

static void check_runtime(GPtrArray *reasons, KilnManager *m, const KilnRunOptions *o)
{
        if (o->runtime && *o->runtime &&
            !g_strv_contains((const char *const *)m->config->runtimes, o->runtime))
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
                const char *source = v->source ? v->source : "its source";

                if (v->flags & KILN_RUN_VOLUME_CHOWN)
                        g_ptr_array_add(reasons,
                                        g_strdup_printf("%s option U, which gives away the owner of %s",
                                                        v->arg, source));
                if (v->unreadable)
                        g_ptr_array_add(reasons,
                                        g_strdup_printf("%s (to %s): volume source %s, which the caller "
                                                        "cannot read",
                                                        v->arg, v->destination, source));
        }
}

GPtrArray *kiln_run_weakenings(KilnManager *m, const KilnBuilder *b, KilnRunOptions *o,
                               const KilnCreds *caller, GError **error)
{
        g_autoptr(GPtrArray) reasons = g_ptr_array_new_with_free_func(g_free);

        /* Fail closed: without the resolved list nothing about the volumes is known. */
        if (!o->resolved_volumes) {
                kiln_fail(error, KILN_ERROR_CODE_FAILED, "The run's volumes were not resolved");
                return NULL;
        }
        /* uid 0 is root on the host already: nothing it asks for weakens anything it holds. */
        if (caller->uid == 0)
                return g_steal_pointer(&reasons);
        if (!kiln_run_wants_userns(b, o))
                g_ptr_array_add(reasons, g_strdup("userns=host, where container root is host root"));
        check_namespaces(reasons, o);
        if (!check_capabilities(reasons, m, b, o, error))
                return NULL;
        for (char **d = o->devices; d && *d; d++)
                g_ptr_array_add(reasons, g_strdup_printf("device %s", *d));
        if (g_strcmp0(o->seccomp_profile, "unconfined") == 0)
                g_ptr_array_add(reasons, g_strdup("seccomp_profile=unconfined"));
        check_runtime(reasons, m, o);
        if (m->config->no_new_privileges && o->no_new_privileges == 0)
                g_ptr_array_add(reasons, g_strdup("no_new_privileges=false"));
        check_volumes(reasons, o);
        return g_steal_pointer(&reasons);
}

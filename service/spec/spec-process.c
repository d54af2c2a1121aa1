/* SPDX-License-Identifier: Apache-2.0 */
/* The process part of the spec: environment, hostname, capabilities, rlimits. */
#include <string.h>
#include <sys/capability.h>

#include "base/rootfs.h"
#include "spec/spec-private.h"
#include "base/validate.h"

/* buildah's default set (containers.conf since 2020): what a build step needs to install packages
 * and change owners, without NET_RAW, MKNOD, AUDIT_WRITE or SYS_ADMIN. */
const char *const kiln_default_capabilities[] = {
        "CAP_CHOWN",   "CAP_DAC_OVERRIDE",     "CAP_FOWNER",     "CAP_FSETID",
        "CAP_KILL",    "CAP_NET_BIND_SERVICE", "CAP_SETFCAP",    "CAP_SETGID",
        "CAP_SETPCAP", "CAP_SETUID",           "CAP_SYS_CHROOT", NULL,
};

#define HOSTNAME_FROM_ID_LENGTH 12

gboolean kiln_spec_resolve_hostname(const KilnSpecInput *input, char **hostname, GError **error)
{
        const char *given = input->hostname && *input->hostname ? input->hostname : NULL;

        if (input->uts.mode != KILN_NAMESPACE_PRIVATE) {
                /* A hostname set in a namespace kiln does not own would change someone else's. */
                if (given)
                        return kiln_invalid(error, "hostname",
                                            "'%s' needs a private UTS namespace (uts is not 'private')",
                                            given);
                *hostname = NULL;
                return TRUE;
        }
        if (given) {
                if (!kiln_validate_hostname("hostname", given, error))
                        return FALSE;
                *hostname = g_strdup(given);
                return TRUE;
        }
        if (!input->id || strlen(input->id) < HOSTNAME_FROM_ID_LENGTH)
                return kiln_invalid(error, "id", "the builder id is needed for the default hostname");
        *hostname = g_strndup(input->id, HOSTNAME_FROM_ID_LENGTH);
        return TRUE;
}

/* ---- environment ---- */

static gssize env_find(GPtrArray *env, const char *entry, gsize name_len)
{
        for (guint i = 0; i < env->len; i++) {
                const char *e = env->pdata[i];
                if (strncmp(e, entry, name_len) == 0 && e[name_len] == '=')
                        return i;
        }
        return -1;
}

/* Sets NAME=VALUE, replacing an earlier NAME in place (the order of first appearance stays). */
static void env_set(GPtrArray *env, const char *entry)
{
        gsize name_len = (gsize)(strchr(entry, '=') - entry);
        gssize i = env_find(env, entry, name_len);

        if (i < 0) {
                g_ptr_array_add(env, g_strdup(entry));
        } else {
                g_free(env->pdata[i]);
                env->pdata[i] = g_strdup(entry);
        }
}

static void env_default(GPtrArray *env, const char *name, const char *value)
{
        g_autofree char *entry = g_strconcat(name, "=", value, NULL);

        if (env_find(env, entry, strlen(name)) < 0)
                g_ptr_array_add(env, g_steal_pointer(&entry));
}

static gboolean env_merge(GPtrArray *env, const char *arg, const char *const *entries, GError **error)
{
        for (guint i = 0; entries && entries[i]; i++) {
                g_autofree char *name = g_strdup_printf("%s[%u]", arg, i);

                if (!kiln_validate_env_entry(name, entries[i], error))
                        return FALSE;
                env_set(env, entries[i]);
        }
        return TRUE;
}

GPtrArray *kiln_spec_build_env(const KilnSpecInput *input, GError **error)
{
        g_autoptr(GPtrArray) env = g_ptr_array_new_with_free_func(g_free);
        g_autofree char *hostname = NULL;

        if (!kiln_spec_resolve_hostname(input, &hostname, error))
                return NULL;
        /* As buildah: PATH first (so a builder or run PATH replaces it in place), then the builder's
         * environment, then the run's. */
        g_ptr_array_add(env, g_strdup("PATH=" KILN_DEFAULT_PATH));
        if (!env_merge(env, "builder env", input->builder_env, error) ||
            !env_merge(env, "env", input->env, error))
                return NULL;
        /* HOSTNAME only when kiln sets the hostname: in a shared UTS namespace the name is not
         * kiln's to state (a shell sets HOSTNAME itself). */
        if (hostname)
                env_default(env, "HOSTNAME", hostname);
        /* HOME from /etc/passwd, as runc and podman do, so every isolation gets the same. */
        if (input->home && *input->home)
                env_default(env, "HOME", input->home);
        return g_steal_pointer(&env);
}

/* ---- capabilities ---- */

static int last_cap(const KilnSpecInput *input)
{
        int last = input->last_cap >= 0 ? input->last_cap : CAP_LAST_CAP;

        return MIN(last, 63);
}

char *kiln_spec_capability_name(int cap)
{
        char *lower = cap_to_name((cap_value_t)cap);
        char *name = NULL;

        /* libcap prints numbers it has no name for. */
        if (lower && !g_ascii_isdigit(lower[0]))
                name = g_ascii_strup(lower, -1);
        cap_free(lower);
        return name;
}

typedef struct CapLayer {
        const char *const *add;
        const char *const *drop;
        const char *what; /* for messages */
} CapLayer;

static gboolean parse_caps(const char *arg, const CapLayer *layer, const char *const *names, int last,
                           guint64 available, guint64 *mask, gboolean *all, GError **error)
{
        for (guint i = 0; names && names[i]; i++) {
                g_autofree char *normalized = NULL;
                cap_value_t value;

                if (!kiln_validate_capability(arg, names[i], &normalized, error))
                        return FALSE;
                if (g_str_equal(normalized, "ALL")) {
                        *all = TRUE;
                        continue;
                }
                if (cap_from_name(normalized, &value) < 0)
                        return kiln_invalid(error, arg, "'%s' is not a capability name", names[i]);
                if (value > last)
                        return kiln_invalid(error, arg, "%s (%s) is not supported by the running kernel",
                                            normalized, layer->what);
                /* Dropping what kilnd lacks anyway is harmless; adding it could only fail later, in the
                 * runtime ("unable to apply caps"), so it is refused here with its name. */
                if (g_str_equal(arg, "cap_add") && !(available & (G_GUINT64_CONSTANT(1) << value)))
                        return kiln_invalid(error, arg, "%s (%s) is not in kilnd's capability bounding set",
                                            normalized, layer->what);
                *mask |= G_GUINT64_CONSTANT(1) << value;
        }
        return TRUE;
}

/* One layer of add/drop over @set, with podman's rules (see spec.h). */
static gboolean apply_layer(guint64 *set, const CapLayer *layer, int last, guint64 all, GError **error)
{
        guint64 add = 0, drop = 0;
        gboolean add_all = FALSE, drop_all = FALSE;

        if (!parse_caps("cap_add", layer, layer->add, last, all, &add, &add_all, error) ||
            !parse_caps("cap_drop", layer, layer->drop, last, all, &drop, &drop_all, error))
                return FALSE;
        if (add_all && drop_all)
                return kiln_invalid(error, "cap_add", "ALL cannot be both added and dropped (%s)",
                                    layer->what);
        if (add & drop) {
                g_autofree char *name = kiln_spec_capability_name(__builtin_ctzll(add & drop));
                return kiln_invalid(error, "cap_add", "%s cannot be both added and dropped (%s)", name,
                                    layer->what);
        }
        if (drop_all)
                *set = add;
        else if (add_all)
                *set = all & ~drop;
        else
                *set = (*set & ~drop) | add;
        return TRUE;
}

gboolean kiln_spec_capability_set(const KilnSpecInput *input, guint64 *set, GError **error)
{
        const CapLayer layers[] = {
                {input->builder_cap_add, input->builder_cap_drop, "builder configuration"},
                {input->cap_add, input->cap_drop, "run options"},
        };
        int last = last_cap(input);
        /* What ALL means: every capability of the kernel that kilnd itself holds in its bounding set
         * (as podman's ALL is its own bounding set), never more than a runtime could apply. */
        guint64 all = last >= 63 ? G_MAXUINT64 : (G_GUINT64_CONSTANT(1) << (last + 1)) - 1;
        guint64 caps = 0;

        if (input->bounding_set)
                all &= input->bounding_set;
        for (const char *const *name = kiln_default_capabilities; *name; name++) {
                cap_value_t value;
                if (cap_from_name(*name, &value) == 0 && (all & (G_GUINT64_CONSTANT(1) << value)))
                        caps |= G_GUINT64_CONSTANT(1) << value;
        }
        for (gsize i = 0; i < G_N_ELEMENTS(layers); i++)
                if (!apply_layer(&caps, &layers[i], last, all, error))
                        return FALSE;
        *set = caps;
        return TRUE;
}

/* ---- rlimits ---- */

/* ulimit names (as in `buildah run --ulimit`) and their OCI types, in the kernel's order. */
static const struct {
        const char *name;
        const char *type;
} rlimit_table[] = {
        {"cpu", "RLIMIT_CPU"},           {"fsize", "RLIMIT_FSIZE"},
        {"data", "RLIMIT_DATA"},         {"stack", "RLIMIT_STACK"},
        {"core", "RLIMIT_CORE"},         {"rss", "RLIMIT_RSS"},
        {"nproc", "RLIMIT_NPROC"},       {"nofile", "RLIMIT_NOFILE"},
        {"memlock", "RLIMIT_MEMLOCK"},   {"as", "RLIMIT_AS"},
        {"locks", "RLIMIT_LOCKS"},       {"sigpending", "RLIMIT_SIGPENDING"},
        {"msgqueue", "RLIMIT_MSGQUEUE"}, {"nice", "RLIMIT_NICE"},
        {"rtprio", "RLIMIT_RTPRIO"},     {"rttime", "RLIMIT_RTTIME"},
};

/* The runtime-spec generator's default, which every buildah generation starts from. */
#define DEFAULT_NOFILE 1024

static gboolean parse_limit(const char *s, guint64 *value)
{
        if (g_str_equal(s, "unlimited") || g_str_equal(s, "-1")) {
                *value = G_MAXUINT64; /* RLIM_INFINITY */
                return TRUE;
        }
        return g_ascii_string_to_unsigned(s, 10, 0, G_MAXUINT64 - 1, value, NULL);
}

static gboolean parse_ulimit(const char *arg, const char *spec, gsize *index, guint64 *soft, guint64 *hard,
                             GError **error)
{
        g_auto(GStrv) name_value = NULL;
        g_auto(GStrv) limits = NULL;

        if (!kiln_validate_ulimit(arg, spec, error))
                return FALSE;
        name_value = g_strsplit(spec, "=", 2);
        limits = g_strsplit(name_value[1], ":", 2);
        for (*index = 0; *index < G_N_ELEMENTS(rlimit_table); (*index)++)
                if (g_str_equal(rlimit_table[*index].name, name_value[0]))
                        break;
        if (*index == G_N_ELEMENTS(rlimit_table) || !parse_limit(limits[0], soft) ||
            (limits[1] && !parse_limit(limits[1], hard)))
                return kiln_invalid(error, arg, "'%s' is not of the form name=soft[:hard]", spec);
        if (!limits[1])
                *hard = *soft; /* as docker's units: "nofile=N" is N:N */
        return TRUE;
}

G_STATIC_ASSERT(G_N_ELEMENTS(rlimit_table) == KILN_N_RLIMITS);

gboolean kiln_spec_parse_rlimits(const char *const *ulimits, KilnRlimits *r, GError **error)
{
        *r = (KilnRlimits){{FALSE}};
        for (gsize i = 0; i < G_N_ELEMENTS(rlimit_table); i++)
                if (g_str_equal(rlimit_table[i].name, "nofile")) {
                        r->set[i] = TRUE;
                        r->soft[i] = r->hard[i] = DEFAULT_NOFILE;
                }
        for (guint i = 0; ulimits && ulimits[i]; i++) {
                g_autofree char *arg = g_strdup_printf("ulimits[%u]", i);
                guint64 soft, hard;
                gsize index;

                if (!parse_ulimit(arg, ulimits[i], &index, &soft, &hard, error))
                        return FALSE;
                r->set[index] = TRUE;
                r->soft[index] = soft;
                r->hard[index] = hard;
        }
        return TRUE;
}

void kiln_spec_add_rlimits(JsonBuilder *b, const KilnRlimits *r)
{
        json_builder_set_member_name(b, "rlimits");
        json_builder_begin_array(b);
        for (gsize i = 0; i < G_N_ELEMENTS(rlimit_table); i++) {
                if (!r->set[i])
                        continue;
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "type");
                json_builder_add_string_value(b, rlimit_table[i].type);
                /* uint64 in the spec; see kiln_spec_to_data() for values above G_MAXINT64. */
                json_builder_set_member_name(b, "hard");
                json_builder_add_int_value(b, (gint64)r->hard[i]);
                json_builder_set_member_name(b, "soft");
                json_builder_add_int_value(b, (gint64)r->soft[i]);
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
}

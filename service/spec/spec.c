/* SPDX-License-Identifier: Apache-2.0 */
/* The spec document: checks of the input as a whole, then one pass of JsonBuilder calls in the
 * order of the runtime-spec's own schema. */
#include <string.h>

#include "spec/spec-private.h"
#include "base/validate.h"

/* The kernel's limit on lines in uid_map / gid_map. */
#define MAX_ID_MAPPINGS 340
/* The tty group of every distribution; /dev/pts gets it when it exists in the container. */
#define TTY_GID 5

static const char *const masked_paths[] = {
        "/proc/acpi",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/proc/interrupts",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
        "/sys/fs/selinux",
        NULL,
};

static const char *const readonly_paths[] = {
        "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", NULL,
};

/* ---- namespaces ---- */

static const struct {
        const char *mode;
        KilnNamespaceMode value;
} namespace_modes[] = {
        {"", KILN_NAMESPACE_PRIVATE},
        {"private", KILN_NAMESPACE_PRIVATE},
        {"host", KILN_NAMESPACE_HOST},
        {"none", KILN_NAMESPACE_NONE},
};

#define NS_PATH_PREFIX "ns:"

gboolean kiln_namespace_parse(const char *arg, const char *value, gboolean allow_none, KilnNamespace *ns,
                              GError **error)
{
        if (g_str_has_prefix(value, NS_PATH_PREFIX)) {
                const char *path = value + strlen(NS_PATH_PREFIX);
                if (!kiln_validate_absolute_path(arg, path, FALSE, error))
                        return FALSE;
                *ns = (KilnNamespace){KILN_NAMESPACE_PATH, path};
                return TRUE;
        }
        for (gsize i = 0; i < G_N_ELEMENTS(namespace_modes); i++) {
                if (!g_str_equal(namespace_modes[i].mode, value))
                        continue;
                if (namespace_modes[i].value == KILN_NAMESPACE_NONE && !allow_none)
                        break;
                *ns = (KilnNamespace){namespace_modes[i].value, NULL};
                return TRUE;
        }
        return kiln_invalid(error, arg, "'%s' is not one of 'private', 'host', %s'ns:PATH'", value,
                            allow_none ? "'none', " : "");
}

/* linux.namespaces in the order runc creates them; the mount namespace is always new. */
static const struct {
        const char *type;
        const char *arg;
        gsize offset; /* of the KilnNamespace in KilnSpecInput; 0: always private */
} namespace_table[] = {
        {"pid", "pid", offsetof(KilnSpecInput, pid)},
        {"network", "network", offsetof(KilnSpecInput, network)},
        {"ipc", "ipc", offsetof(KilnSpecInput, ipc)},
        {"uts", "uts", offsetof(KilnSpecInput, uts)},
        {"mount", "mount", 0},
        {"cgroup", "cgroupns", offsetof(KilnSpecInput, cgroup)},
};

static const KilnNamespace *namespace_at(const KilnSpecInput *input, gsize offset)
{
        static const KilnNamespace private_ns = {KILN_NAMESPACE_PRIVATE, NULL};

        return offset ? (const KilnNamespace *)((const char *)input + offset) : &private_ns;
}

static gboolean check_namespaces(const KilnSpecInput *input, GError **error)
{
        for (gsize i = 0; i < G_N_ELEMENTS(namespace_table); i++) {
                const KilnNamespace *ns = namespace_at(input, namespace_table[i].offset);
                const char *arg = namespace_table[i].arg;

                if ((guint)ns->mode > KILN_NAMESPACE_NONE)
                        return kiln_invalid(error, arg, "unknown namespace mode %d", (int)ns->mode);
                if (ns->mode == KILN_NAMESPACE_NONE && ns != &input->network)
                        return kiln_invalid(error, arg, "'none' is only a network mode");
                if (ns->mode != KILN_NAMESPACE_PATH)
                        continue;
                if (!ns->path)
                        return kiln_invalid(error, arg, "ns: needs a path");
                if (!kiln_validate_absolute_path(arg, ns->path, FALSE, error))
                        return FALSE;
        }
        return TRUE;
}

static void add_namespaces(JsonBuilder *b, const KilnSpecInput *input, gboolean userns)
{
        json_builder_set_member_name(b, "namespaces");
        json_builder_begin_array(b);
        for (gsize i = 0; i < G_N_ELEMENTS(namespace_table); i++) {
                const KilnNamespace *ns = namespace_at(input, namespace_table[i].offset);

                /* The host's namespace is the absence of an entry. */
                if (ns->mode == KILN_NAMESPACE_HOST)
                        continue;
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "type");
                json_builder_add_string_value(b, namespace_table[i].type);
                if (ns->mode == KILN_NAMESPACE_PATH) {
                        json_builder_set_member_name(b, "path");
                        json_builder_add_string_value(b, ns->path);
                }
                json_builder_end_object(b);
        }
        if (userns) {
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "type");
                json_builder_add_string_value(b, "user");
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
}

/* ---- ID mappings ---- */

static gboolean ranges_overlap(guint64 a, guint64 a_size, guint64 b, guint64 b_size)
{
        return a < b + b_size && b < a + a_size;
}

static gboolean check_mappings(const char *arg, const KilnIdMapping *m, gsize n, GError **error)
{
        if (n > MAX_ID_MAPPINGS)
                return kiln_invalid(error, arg, "more than %d ranges", MAX_ID_MAPPINGS);
        for (gsize i = 0; i < n; i++) {
                if (m[i].size == 0)
                        return kiln_invalid(error, arg, "range %" G_GSIZE_FORMAT " is empty", i);
                if ((guint64)m[i].container_id + m[i].size > G_MAXUINT32 ||
                    (guint64)m[i].host_id + m[i].size > G_MAXUINT32)
                        return kiln_invalid(error, arg, "range %" G_GSIZE_FORMAT " goes past 4294967294", i);
                /* The kernel refuses overlapping ranges on either side. */
                for (gsize j = 0; j < i; j++)
                        if (ranges_overlap(m[i].container_id, m[i].size, m[j].container_id, m[j].size) ||
                            ranges_overlap(m[i].host_id, m[i].size, m[j].host_id, m[j].size))
                                return kiln_invalid(
                                        error, arg,
                                        "ranges %" G_GSIZE_FORMAT " and %" G_GSIZE_FORMAT " overlap", j, i);
        }
        return TRUE;
}

static gboolean id_mapped(const KilnIdMapping *m, gsize n, guint32 id)
{
        for (gsize i = 0; i < n; i++)
                if (id >= m[i].container_id && (guint64)id < (guint64)m[i].container_id + m[i].size)
                        return TRUE;
        return FALSE;
}

static gboolean check_user_namespace(const KilnSpecInput *input, gboolean *userns, GError **error)
{
        *userns = input->n_uid_mappings > 0 || input->n_gid_mappings > 0;
        if (!*userns)
                return TRUE;
        if (input->n_uid_mappings == 0 || input->n_gid_mappings == 0)
                return kiln_invalid(error, "userns", "a user namespace needs both uid and gid mappings");
        if (!check_mappings("uid mappings", input->uid_mappings, input->n_uid_mappings, error) ||
            !check_mappings("gid mappings", input->gid_mappings, input->n_gid_mappings, error))
                return FALSE;
        /* runc would fail later, with a message about setuid; say which id instead. */
        if (!id_mapped(input->uid_mappings, input->n_uid_mappings, input->uid))
                return kiln_invalid(error, "user", "uid %u is not mapped in the user namespace", input->uid);
        if (!id_mapped(input->gid_mappings, input->n_gid_mappings, input->gid))
                return kiln_invalid(error, "user", "gid %u is not mapped in the user namespace", input->gid);
        for (gsize i = 0; i < input->n_additional_gids; i++)
                if (!id_mapped(input->gid_mappings, input->n_gid_mappings, input->additional_gids[i]))
                        return kiln_invalid(error, "user",
                                            "supplementary gid %u is not mapped in the user namespace",
                                            input->additional_gids[i]);
        return TRUE;
}

static void add_mappings(JsonBuilder *b, const char *member, const KilnIdMapping *m, gsize n)
{
        json_builder_set_member_name(b, member);
        json_builder_begin_array(b);
        for (gsize i = 0; i < n; i++) {
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "containerID");
                json_builder_add_int_value(b, m[i].container_id);
                json_builder_set_member_name(b, "hostID");
                json_builder_add_int_value(b, m[i].host_id);
                json_builder_set_member_name(b, "size");
                json_builder_add_int_value(b, m[i].size);
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
}

/* ---- devices ---- */

static gboolean check_devices(const KilnSpecInput *input, GError **error)
{
        for (gsize i = 0; i < input->n_devices; i++) {
                const KilnDevice *d = &input->devices[i];
                g_autofree char *arg = g_strdup_printf("devices[%" G_GSIZE_FORMAT "]", i);
                g_autofree char *path = NULL;

                if (!d->path)
                        return kiln_invalid(error, arg, "no path");
                path = kiln_spec_normalize_path(arg, d->path, error);
                if (!path)
                        return FALSE;
                if (!g_str_equal(path, d->path))
                        return kiln_invalid(error, arg, "'%s' is not a canonical path", d->path);
                if (d->host_path && !kiln_validate_absolute_path(arg, d->host_path, FALSE, error))
                        return FALSE;
                if (!d->type || !strchr("cbup", d->type))
                        return kiln_invalid(error, arg, "type '%c' is not one of c, b, u, p", d->type);
                if (d->access && (!*d->access || strspn(d->access, "rwm") != strlen(d->access)))
                        return kiln_invalid(error, arg, "access '%s' is not made of r, w, m", d->access);
                if (d->file_mode > 07777)
                        return kiln_invalid(error, arg, "file mode %o has more than permission bits",
                                            d->file_mode);
                for (gsize j = 0; j < i; j++)
                        if (g_str_equal(input->devices[j].path, d->path))
                                return kiln_invalid(error, arg, "a second device at %s", d->path);
        }
        return TRUE;
}

/* linux.devices: the nodes the runtime makes; in a user namespace only FIFOs, the host's device nodes
 * being bound (spec-mounts.c). */
static void add_devices(JsonBuilder *b, const KilnSpecInput *input, gboolean userns)
{
        gsize n = 0;

        for (gsize i = 0; i < input->n_devices; i++)
                n += !userns || input->devices[i].type == 'p';
        if (n == 0)
                return;
        json_builder_set_member_name(b, "devices");
        json_builder_begin_array(b);
        for (gsize i = 0; i < input->n_devices; i++) {
                const KilnDevice *d = &input->devices[i];
                char type[2] = {d->type, '\0'};

                if (userns && d->type != 'p')
                        continue;

                json_builder_begin_object(b);
                json_builder_set_member_name(b, "path");
                json_builder_add_string_value(b, d->path);
                json_builder_set_member_name(b, "type");
                json_builder_add_string_value(b, type);
                json_builder_set_member_name(b, "major");
                json_builder_add_int_value(b, d->major);
                json_builder_set_member_name(b, "minor");
                json_builder_add_int_value(b, d->minor);
                json_builder_set_member_name(b, "fileMode");
                json_builder_add_int_value(b, d->file_mode);
                json_builder_set_member_name(b, "uid");
                json_builder_add_int_value(b, d->uid);
                json_builder_set_member_name(b, "gid");
                json_builder_add_int_value(b, d->gid);
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
}

/* ---- resources ---- */

/* cgroup v1's cpu.shares for a cgroup v2 weight: systemd's scale, where the default weight 100 is the
 * default 1024 shares (runc's conversion of shares to a weight is not its inverse; on v2 the weight goes
 * through linux.resources.unified untouched). */
static guint64 weight_to_shares(guint64 weight)
{
        return CLAMP(weight * 1024 / 100, 2, 262144);
}

static gboolean check_resources(const KilnSpecInput *input, GError **error)
{
        if (input->pids_limit < 0)
                return kiln_invalid(error, "pids_limit", "%" G_GINT64_FORMAT " is negative",
                                    input->pids_limit);
        if (input->cpu_weight > 10000)
                return kiln_invalid(error, "cpu_weight", "%" G_GUINT64_FORMAT " is not between 1 and 10000",
                                    input->cpu_weight);
        if (input->cgroups_path && (!*input->cgroups_path || strstr(input->cgroups_path, "..") ||
                                    strchr(input->cgroups_path, '\n')))
                return kiln_invalid(error, "cgroups_path", "'%s' is not a cgroup path", input->cgroups_path);
        return TRUE;
}

static void add_limit(JsonBuilder *b, const char *member, const char *field, gint64 value)
{
        json_builder_set_member_name(b, member);
        json_builder_begin_object(b);
        json_builder_set_member_name(b, field);
        json_builder_add_int_value(b, value);
        json_builder_end_object(b);
}

/* linux.resources: the device rules (deny everything, then allow each device given; the runtime adds its
 * own rules for the standard nodes: null, zero, full, random, urandom, tty, ptmx, pts), then the limits
 * of the run's cgroup. */
static void add_resources(JsonBuilder *b, const KilnSpecInput *input)
{
        json_builder_set_member_name(b, "resources");
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "devices");
        json_builder_begin_array(b);
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "allow");
        json_builder_add_boolean_value(b, FALSE);
        json_builder_set_member_name(b, "access");
        json_builder_add_string_value(b, "rwm");
        json_builder_end_object(b);
        for (gsize i = 0; i < input->n_devices; i++) {
                const KilnDevice *d = &input->devices[i];
                /* The device cgroup knows only character and block devices; a FIFO needs no rule. */
                const char *type = d->type == 'b' ? "b" : d->type == 'p' ? NULL : "c";

                if (!type)
                        continue;
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "allow");
                json_builder_add_boolean_value(b, TRUE);
                json_builder_set_member_name(b, "type");
                json_builder_add_string_value(b, type);
                json_builder_set_member_name(b, "major");
                json_builder_add_int_value(b, d->major);
                json_builder_set_member_name(b, "minor");
                json_builder_add_int_value(b, d->minor);
                json_builder_set_member_name(b, "access");
                json_builder_add_string_value(b, d->access ? d->access : "rwm");
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
        if (input->pids_limit > 0)
                add_limit(b, "pids", "limit", input->pids_limit);
        if (input->memory > 0)
                add_limit(b, "memory", "limit", (gint64)MIN(input->memory, (guint64)G_MAXINT64));
        if (input->cpu_weight > 0 && !input->cgroup_v2)
                add_limit(b, "cpu", "shares", (gint64)weight_to_shares(input->cpu_weight));
        if (input->cpu_weight > 0 && input->cgroup_v2) {
                g_autofree char *weight = g_strdup_printf("%" G_GUINT64_FORMAT, input->cpu_weight);
                json_builder_set_member_name(b, "unified");
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "cpu.weight");
                json_builder_add_string_value(b, weight);
                json_builder_end_object(b);
        }
        json_builder_end_object(b);
}

/* ---- small pieces ---- */

static void add_strings(JsonBuilder *b, const char *member, const char *const *strv)
{
        json_builder_set_member_name(b, member);
        json_builder_begin_array(b);
        for (; strv && *strv; strv++)
                json_builder_add_string_value(b, *strv);
        json_builder_end_array(b);
}

static void add_capabilities(JsonBuilder *b, guint64 caps, gboolean root)
{
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        const char *const empty[] = {NULL};

        for (int cap = 0; cap < 64; cap++) {
                char *name = (caps >> cap) & 1 ? kiln_spec_capability_name(cap) : NULL;
                if (name)
                        g_ptr_array_add(names, name);
        }
        g_ptr_array_add(names, NULL);

        json_builder_set_member_name(b, "capabilities");
        json_builder_begin_object(b);
        add_strings(b, "bounding", (const char *const *)names->pdata);
        /* A process that is not root keeps only the bounding set: execve() of a file with file
         * capabilities can use it, nothing else can (buildah). */
        add_strings(b, "effective", root ? (const char *const *)names->pdata : empty);
        add_strings(b, "permitted", root ? (const char *const *)names->pdata : empty);
        /* Inheritable stays empty (CVE-2022-29162), and so ambient, which the kernel keeps a subset
         * of inheritable and permitted. */
        add_strings(b, "inheritable", empty);
        add_strings(b, "ambient", empty);
        json_builder_end_object(b);
}

static gboolean check_process(const KilnSpecInput *input, char **cwd, GError **error)
{
        if (!input->argv || !input->argv[0] || !*input->argv[0])
                return kiln_invalid(error, "argv", "no command to run");
        if (!input->rootfs)
                return kiln_invalid(error, "rootfs", "no root file system");
        if (!kiln_validate_absolute_path("rootfs", input->rootfs, FALSE, error))
                return FALSE;
        *cwd = kiln_spec_normalize_path("working_dir", input->cwd && *input->cwd ? input->cwd : "/", error);
        if (!*cwd)
                return FALSE;
        if (input->seccomp && !JSON_NODE_HOLDS_OBJECT(input->seccomp))
                return kiln_invalid(error, "seccomp_profile", "the profile is not a JSON object");
        for (guint i = 0; input->annotations && input->annotations[i]; i++) {
                const char *eq = strchr(input->annotations[i], '=');
                if (!eq || eq == input->annotations[i])
                        return kiln_invalid(error, "labels", "'%s' is not of the form key=value",
                                            input->annotations[i]);
        }
        return TRUE;
}

static void add_process(JsonBuilder *b, const KilnSpecInput *input, const char *cwd, GPtrArray *env,
                        guint64 caps, const KilnRlimits *rlimits)
{
        json_builder_set_member_name(b, "process");
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "terminal");
        json_builder_add_boolean_value(b, input->terminal);
        if (input->terminal && input->terminal_rows && input->terminal_cols) {
                json_builder_set_member_name(b, "consoleSize");
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "height");
                json_builder_add_int_value(b, input->terminal_rows);
                json_builder_set_member_name(b, "width");
                json_builder_add_int_value(b, input->terminal_cols);
                json_builder_end_object(b);
        }
        json_builder_set_member_name(b, "user");
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "uid");
        json_builder_add_int_value(b, input->uid);
        json_builder_set_member_name(b, "gid");
        json_builder_add_int_value(b, input->gid);
        if (input->n_additional_gids > 0) {
                json_builder_set_member_name(b, "additionalGids");
                json_builder_begin_array(b);
                for (gsize i = 0; i < input->n_additional_gids; i++)
                        json_builder_add_int_value(b, input->additional_gids[i]);
                json_builder_end_array(b);
        }
        json_builder_end_object(b);
        add_strings(b, "args", input->argv);
        add_strings(b, "env", (const char *const *)env->pdata);
        json_builder_set_member_name(b, "cwd");
        json_builder_add_string_value(b, cwd);
        add_capabilities(b, caps, input->uid == 0);
        kiln_spec_add_rlimits(b, rlimits);
        json_builder_set_member_name(b, "noNewPrivileges");
        json_builder_add_boolean_value(b, input->no_new_privileges);
        json_builder_end_object(b);
}

static void add_mounts(JsonBuilder *b, GPtrArray *mounts)
{
        json_builder_set_member_name(b, "mounts");
        json_builder_begin_array(b);
        for (guint i = 0; i < mounts->len; i++) {
                KilnSpecMount *m = mounts->pdata[i];

                json_builder_begin_object(b);
                json_builder_set_member_name(b, "destination");
                json_builder_add_string_value(b, m->destination);
                json_builder_set_member_name(b, "type");
                json_builder_add_string_value(b, m->type);
                json_builder_set_member_name(b, "source");
                json_builder_add_string_value(b, m->source);
                json_builder_set_member_name(b, "options");
                json_builder_begin_array(b);
                for (guint j = 0; j < m->options->len; j++)
                        json_builder_add_string_value(b, m->options->pdata[j]);
                json_builder_end_array(b);
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
}

static void add_annotations(JsonBuilder *b, const char *const *annotations)
{
        if (!annotations || !annotations[0])
                return;
        json_builder_set_member_name(b, "annotations");
        json_builder_begin_object(b);
        for (; *annotations; annotations++) {
                g_auto(GStrv) kv = g_strsplit(*annotations, "=", 2);
                json_builder_set_member_name(b, kv[0]);
                json_builder_add_string_value(b, kv[1]);
        }
        json_builder_end_object(b);
}

/* ---- the document ---- */

/* ---- hooks ---- */

const char *const kiln_hook_stages[] = {
        "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop", NULL,
};

gboolean kiln_hook_stage_known(const char *stage)
{
        return stage && g_strv_contains(kiln_hook_stages, stage);
}

static gboolean check_hooks(const KilnSpecInput *input, GError **error)
{
        for (gsize i = 0; i < input->n_hooks; i++) {
                const KilnHook *h = &input->hooks[i];
                g_autofree char *arg = g_strdup_printf("hooks[%zu]", i);
                if (!kiln_hook_stage_known(h->stage))
                        return kiln_invalid(error, arg, "unknown stage '%s'",
                                            h->stage ? h->stage : "(null)");
                if (!h->path || h->path[0] != '/')
                        return kiln_invalid(error, arg, "the path is not absolute");
                if (h->timeout < 0)
                        return kiln_invalid(error, arg, "a negative timeout");
        }
        return TRUE;
}

/* "hooks": {stage: [{path, args, env, timeout}]}, the stages in the order a run meets them, each
 * stage's hooks in the input's order. Nothing without hooks. */
static void add_hooks(JsonBuilder *b, const KilnSpecInput *input)
{
        if (input->n_hooks == 0)
                return;
        json_builder_set_member_name(b, "hooks");
        json_builder_begin_object(b);
        for (const char *const *stage = kiln_hook_stages; *stage; stage++) {
                gboolean any = FALSE;
                for (gsize i = 0; i < input->n_hooks; i++) {
                        const KilnHook *h = &input->hooks[i];
                        if (!g_str_equal(h->stage, *stage))
                                continue;
                        if (!any) {
                                json_builder_set_member_name(b, *stage);
                                json_builder_begin_array(b);
                                any = TRUE;
                        }
                        json_builder_begin_object(b);
                        json_builder_set_member_name(b, "path");
                        json_builder_add_string_value(b, h->path);
                        if (h->args && h->args[0])
                                add_strings(b, "args", h->args);
                        if (h->env && h->env[0])
                                add_strings(b, "env", h->env);
                        if (h->timeout > 0) {
                                json_builder_set_member_name(b, "timeout");
                                json_builder_add_int_value(b, h->timeout);
                        }
                        json_builder_end_object(b);
                }
                if (any)
                        json_builder_end_array(b);
        }
        json_builder_end_object(b);
}

char **kiln_spec_environment(const KilnSpecInput *input, GError **error)
{
        g_autoptr(GPtrArray) env = NULL;

        if (!check_namespaces(input, error))
                return NULL;
        env = kiln_spec_build_env(input, error);
        if (!env)
                return NULL;
        g_ptr_array_add(env, NULL);
        return (char **)g_ptr_array_free(g_steal_pointer(&env), FALSE);
}

char **kiln_spec_capabilities(const KilnSpecInput *input, GError **error)
{
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        guint64 caps;

        if (!kiln_spec_capability_set(input, &caps, error))
                return NULL;
        for (int cap = 0; cap < 64; cap++) {
                char *name = (caps >> cap) & 1 ? kiln_spec_capability_name(cap) : NULL;
                if (name)
                        g_ptr_array_add(names, name);
        }
        g_ptr_array_add(names, NULL);
        return (char **)g_ptr_array_free(g_steal_pointer(&names), FALSE);
}

JsonNode *kiln_spec_generate(const KilnSpecInput *input, GError **error)
{
        g_autoptr(JsonBuilder) b = NULL;
        g_autoptr(GPtrArray) env = NULL;
        g_autoptr(GPtrArray) mounts = NULL;
        g_autofree char *cwd = NULL;
        g_autofree char *hostname = NULL;
        gboolean userns, devpts_gid5;
        KilnRlimits rlimits;
        guint64 caps;

        /* Every check first: nothing is built from an input that is wrong anywhere. */
        if (!check_process(input, &cwd, error) || !check_namespaces(input, error) ||
            !kiln_spec_resolve_hostname(input, &hostname, error) ||
            !check_user_namespace(input, &userns, error) || !check_devices(input, error) ||
            !check_resources(input, error) || !check_hooks(input, error) ||
            !kiln_spec_capability_set(input, &caps, error))
                return NULL;
        env = kiln_spec_build_env(input, error);
        if (!env)
                return NULL;
        g_ptr_array_add(env, NULL);
        if (!kiln_spec_parse_rlimits(input->ulimits, &rlimits, error))
                return NULL;
        /* gid=5 on /dev/pts names the tty group; in a user namespace only if 5 is mapped. */
        devpts_gid5 = !userns || id_mapped(input->gid_mappings, input->n_gid_mappings, TTY_GID);
        mounts = kiln_spec_build_mounts(input, userns, devpts_gid5, error);
        if (!mounts)
                return NULL;

        b = json_builder_new();
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "ociVersion");
        json_builder_add_string_value(b, KILN_OCI_VERSION);
        add_process(b, input, cwd, env, caps, &rlimits);

        json_builder_set_member_name(b, "root");
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "path");
        json_builder_add_string_value(b, input->rootfs);
        json_builder_set_member_name(b, "readonly");
        json_builder_add_boolean_value(b, FALSE);
        json_builder_end_object(b);

        if (hostname) {
                json_builder_set_member_name(b, "hostname");
                json_builder_add_string_value(b, hostname);
        }
        add_mounts(b, mounts);
        add_hooks(b, input);
        add_annotations(b, input->annotations);

        json_builder_set_member_name(b, "linux");
        json_builder_begin_object(b);
        if (userns) {
                add_mappings(b, "uidMappings", input->uid_mappings, input->n_uid_mappings);
                add_mappings(b, "gidMappings", input->gid_mappings, input->n_gid_mappings);
        }
        if (input->network.mode == KILN_NAMESPACE_PRIVATE || input->network.mode == KILN_NAMESPACE_NONE) {
                /* ICMP echo sockets for the container's root without CAP_NET_RAW, as containers.conf's
                 * default; only in a network namespace of the container's own. */
                json_builder_set_member_name(b, "sysctl");
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "net.ipv4.ping_group_range");
                json_builder_add_string_value(b, "0 0");
                json_builder_end_object(b);
        }
        if (input->cgroups_path) {
                json_builder_set_member_name(b, "cgroupsPath");
                json_builder_add_string_value(b, input->cgroups_path);
        }
        add_resources(b, input);
        add_namespaces(b, input, userns);
        add_devices(b, input, userns);
        if (input->seccomp) {
                json_builder_set_member_name(b, "seccomp");
                json_builder_add_value(b, json_node_copy(input->seccomp));
        }
        add_strings(b, "maskedPaths", masked_paths);
        add_strings(b, "readonlyPaths", readonly_paths);
        json_builder_end_object(b);

        json_builder_end_object(b);
        return json_builder_get_root(b);
}

char *kiln_spec_to_data(JsonNode *spec, gboolean pretty, gsize *length)
{
        g_autoptr(JsonGenerator) generator = json_generator_new();
        g_autofree char *text = NULL;
        gboolean in_string = FALSE;
        GString *out;
        gsize n = 0;

        json_generator_set_root(generator, spec);
        json_generator_set_pretty(generator, pretty);
        json_generator_set_indent(generator, 4);
        text = json_generator_to_data(generator, &n);
        out = g_string_sized_new(n + 16);
        for (gsize i = 0; i < n; i++) {
                char c = text[i];
                gsize end = i + 1;

                if (in_string) {
                        g_string_append_c(out, c);
                        if (c == '\\' && i + 1 < n)
                                g_string_append_c(out, text[++i]);
                        else if (c == '"')
                                in_string = FALSE;
                        continue;
                }
                if (c == '"')
                        in_string = TRUE;
                if (c != '-') {
                        g_string_append_c(out, c);
                        continue;
                }
                /* Outside strings, '-' starts a number. An integer prints as its unsigned
                 * two's-complement value; anything else (a fraction, an exponent) is copied. */
                while (end < n && g_ascii_isdigit(text[end]))
                        end++;
                if (end < n && strchr(".eE", text[end])) {
                        g_string_append_len(out, text + i, (gssize)(end - i));
                } else {
                        g_autofree char *digits = g_strndup(text + i + 1, end - i - 1);
                        guint64 magnitude = g_ascii_strtoull(digits, NULL, 10);
                        g_string_append_printf(out, "%" G_GUINT64_FORMAT, (guint64)0 - magnitude);
                }
                i = end - 1;
        }
        if (length)
                *length = out->len;
        return g_string_free(out, FALSE);
}

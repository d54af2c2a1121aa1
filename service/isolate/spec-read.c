/* SPDX-License-Identifier: Apache-2.0 */
/* config.json into IsoSpec: read once, checked whole, before anything is set up. Members kiln-isolate
 * cannot honour (hooks, labels, ambient or inheritable capabilities, joining a user namespace together
 * with maps, a systemd cgroupsPath, ...) are errors rather than silently dropped; members without effect
 * here (annotations; of linux.resources all but pids, memory and cpu: no device cgroup) are ignored. */
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "isolate.h"

#define SPEC_MAX_SIZE (16 * 1024 * 1024)
#define MAX_HOOKS 256 /* a stage's hooks */

static const struct {
        const char *name;
        int flag;
} namespace_table[ISO_NS_COUNT] = {
        [ISO_NS_USER] = {"user", CLONE_NEWUSER},       [ISO_NS_MOUNT] = {"mount", CLONE_NEWNS},
        [ISO_NS_PID] = {"pid", CLONE_NEWPID},          [ISO_NS_NET] = {"network", CLONE_NEWNET},
        [ISO_NS_IPC] = {"ipc", CLONE_NEWIPC},          [ISO_NS_UTS] = {"uts", CLONE_NEWUTS},
        [ISO_NS_CGROUP] = {"cgroup", CLONE_NEWCGROUP},
};

/* Mount options that are flags; everything else goes to the file system as data. */
static const struct {
        const char *name;
        bool clear;
        unsigned long flag;
} mount_flag_table[] = {
        {"defaults", false, 0},
        {"ro", false, MS_RDONLY},
        {"rw", true, MS_RDONLY},
        {"nosuid", false, MS_NOSUID},
        {"suid", true, MS_NOSUID},
        {"nodev", false, MS_NODEV},
        {"dev", true, MS_NODEV},
        {"noexec", false, MS_NOEXEC},
        {"exec", true, MS_NOEXEC},
        {"sync", false, MS_SYNCHRONOUS},
        {"async", true, MS_SYNCHRONOUS},
        {"dirsync", false, MS_DIRSYNC},
        {"remount", false, MS_REMOUNT},
        {"mand", false, MS_MANDLOCK},
        {"nomand", true, MS_MANDLOCK},
        {"atime", true, MS_NOATIME},
        {"noatime", false, MS_NOATIME},
        {"diratime", true, MS_NODIRATIME},
        {"nodiratime", false, MS_NODIRATIME},
        {"relatime", false, MS_RELATIME},
        {"norelatime", true, MS_RELATIME},
        {"strictatime", false, MS_STRICTATIME},
        {"nostrictatime", true, MS_STRICTATIME},
        {"silent", false, MS_SILENT},
        {"loud", true, MS_SILENT},
};

static const struct {
        const char *name;
        unsigned long flags;
} propagation_table[] = {
        {"private", MS_PRIVATE},       {"rprivate", MS_PRIVATE | MS_REC},
        {"shared", MS_SHARED},         {"rshared", MS_SHARED | MS_REC},
        {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
        {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC},
};

int iso_ns_clone_flag(int ns)
{
        return namespace_table[ns].flag;
}

const char *iso_ns_name(int ns)
{
        return namespace_table[ns].name;
}

int iso_spec_new_namespaces(const IsoSpec *spec)
{
        int flags = 0;

        for (int i = 0; i < ISO_NS_COUNT; i++)
                if (spec->ns[i].present && !spec->ns[i].path)
                        flags |= namespace_table[i].flag;
        return flags;
}

void iso_spec_free(IsoSpec *spec)
{
        if (!spec)
                return;
        g_free(spec->bundle);
        g_strfreev(spec->annotations);
        for (int s = 0; s < ISO_HOOK_COUNT; s++) {
                for (gsize i = 0; i < spec->n_hooks[s]; i++) {
                        g_free(spec->hooks[s][i].path);
                        g_strfreev(spec->hooks[s][i].args);
                        g_strfreev(spec->hooks[s][i].env);
                }
                g_free(spec->hooks[s]);
        }
        g_strfreev(spec->args);
        g_strfreev(spec->env);
        g_free(spec->cwd);
        g_free(spec->groups);
        g_free(spec->rlimits);
        g_free(spec->root);
        for (gsize i = 0; i < spec->n_mounts; i++) {
                g_free(spec->mounts[i].destination);
                g_free(spec->mounts[i].type);
                g_free(spec->mounts[i].source);
                g_free(spec->mounts[i].data);
        }
        g_free(spec->mounts);
        for (gsize i = 0; i < spec->n_devices; i++)
                g_free(spec->devices[i].path);
        g_free(spec->devices);
        g_strfreev(spec->masked_paths);
        g_strfreev(spec->readonly_paths);
        g_free(spec->hostname);
        g_free(spec->domainname);
        g_strfreev(spec->sysctl);
        for (int i = 0; i < ISO_NS_COUNT; i++)
                g_free(spec->ns[i].path);
        g_free(spec->uid_maps);
        g_free(spec->gid_maps);
        if (spec->seccomp)
                json_node_unref(spec->seccomp);
        g_free(spec->cgroups_path);
        g_free(spec);
}

/* ---- typed members; @where names the member in errors ---- */

static JsonNode *member(JsonObject *o, const char *name)
{
        JsonNode *n = o ? json_object_get_member(o, name) : NULL;
        return n && !JSON_NODE_HOLDS_NULL(n) ? n : NULL;
}

static gboolean get_object(JsonObject *o, const char *name, const char *where, bool required,
                           JsonObject **out, GError **error)
{
        JsonNode *n = member(o, name);

        *out = NULL;
        if (!n)
                return required ? iso_fail(error, "config.json: %s%s is missing", where, name) : TRUE;
        if (!JSON_NODE_HOLDS_OBJECT(n))
                return iso_fail(error, "config.json: %s%s is not an object", where, name);
        *out = json_node_get_object(n);
        return TRUE;
}

static gboolean get_array(JsonObject *o, const char *name, const char *where, JsonArray **out,
                          GError **error)
{
        JsonNode *n = member(o, name);

        *out = NULL;
        if (!n)
                return TRUE;
        if (!JSON_NODE_HOLDS_ARRAY(n))
                return iso_fail(error, "config.json: %s%s is not an array", where, name);
        *out = json_node_get_array(n);
        return TRUE;
}

static gboolean get_string(JsonObject *o, const char *name, const char *where, char **out, GError **error)
{
        JsonNode *n = member(o, name);

        if (!n)
                return TRUE;
        if (json_node_get_value_type(n) != G_TYPE_STRING)
                return iso_fail(error, "config.json: %s%s is not a string", where, name);
        g_free(*out);
        *out = g_strdup(json_node_get_string(n));
        return TRUE;
}

static gboolean get_bool(JsonObject *o, const char *name, const char *where, bool *out, GError **error)
{
        JsonNode *n = member(o, name);

        if (!n)
                return TRUE;
        if (json_node_get_value_type(n) != G_TYPE_BOOLEAN)
                return iso_fail(error, "config.json: %s%s is not a boolean", where, name);
        *out = json_node_get_boolean(n);
        return TRUE;
}

/* Integers within [min, max]; json-glib reads values above G_MAXINT64 (RLIM_INFINITY) as their two's
 * complement, so for unsigned 64-bit members min is G_MININT64 and the caller casts. */
static gboolean get_int(JsonObject *o, const char *name, const char *where, gint64 min, gint64 max,
                        bool required, gint64 *out, GError **error)
{
        JsonNode *n = member(o, name);

        if (!n)
                return required ? iso_fail(error, "config.json: %s%s is missing", where, name) : TRUE;
        if (json_node_get_value_type(n) != G_TYPE_INT64 || json_node_get_int(n) < min ||
            json_node_get_int(n) > max)
                return iso_fail(error, "config.json: %s%s is not an integer in range", where, name);
        *out = json_node_get_int(n);
        return TRUE;
}

static gboolean get_strv(JsonObject *o, const char *name, const char *where, char ***out, GError **error)
{
        JsonArray *a;
        g_autoptr(GPtrArray) v = g_ptr_array_new_with_free_func(g_free);

        if (!get_array(o, name, where, &a, error))
                return FALSE;
        if (!a)
                return TRUE;
        for (guint i = 0; i < json_array_get_length(a); i++) {
                JsonNode *e = json_array_get_element(a, i);
                if (json_node_get_value_type(e) != G_TYPE_STRING)
                        return iso_fail(error, "config.json: %s%s[%u] is not a string", where, name, i);
                g_ptr_array_add(v, g_strdup(json_node_get_string(e)));
        }
        g_ptr_array_add(v, NULL);
        g_strfreev(*out);
        *out = (char **)g_ptr_array_free(g_steal_pointer(&v), FALSE);
        return TRUE;
}

static gboolean get_caps(JsonObject *o, const char *name, guint64 *mask, GError **error)
{
        g_auto(GStrv) names = NULL;
        int last = iso_cap_last();

        if (!get_strv(o, name, "process.capabilities.", &names, error))
                return FALSE;
        *mask = 0;
        for (char **n = names; n && *n; n++) {
                int cap;
                if (!iso_cap_from_name(*n, &cap))
                        return iso_fail(error,
                                        "config.json: process.capabilities.%s: unknown capability '%s'",
                                        name, *n);
                if (cap > last || cap > 63)
                        return iso_fail(
                                error,
                                "config.json: process.capabilities.%s: %s is not known to this kernel", name,
                                *n);
                *mask |= (guint64)1 << cap;
        }
        return TRUE;
}

/* ---- sections ---- */

static gboolean read_user(IsoSpec *spec, JsonObject *user, GError **error)
{
        gint64 v = 0;
        JsonArray *groups;

        if (!user)
                return TRUE;
        if (!get_int(user, "uid", "process.user.", 0, G_MAXUINT32 - 1, true, &v, error))
                return FALSE;
        spec->uid = (uid_t)v;
        if (!get_int(user, "gid", "process.user.", 0, G_MAXUINT32 - 1, true, &v, error))
                return FALSE;
        spec->gid = (gid_t)v;
        if (member(user, "umask")) {
                if (!get_int(user, "umask", "process.user.", 0, 0777, false, &v, error))
                        return FALSE;
                spec->has_umask = true;
                spec->umask = (mode_t)v;
        }
        if (member(user, "username"))
                return iso_fail(error, "config.json: process.user.username is for Windows");
        if (!get_array(user, "additionalGids", "process.user.", &groups, error))
                return FALSE;
        if (groups) {
                guint n = json_array_get_length(groups);
                if (n > 65536)
                        return iso_fail(error,
                                        "config.json: process.user.additionalGids has too many entries");
                spec->groups = g_new0(gid_t, MAX(n, 1));
                for (guint i = 0; i < n; i++) {
                        JsonNode *e = json_array_get_element(groups, i);
                        if (json_node_get_value_type(e) != G_TYPE_INT64 || json_node_get_int(e) < 0 ||
                            json_node_get_int(e) >= G_MAXUINT32)
                                return iso_fail(error,
                                                "config.json: process.user.additionalGids[%u] is not a gid",
                                                i);
                        spec->groups[i] = (gid_t)json_node_get_int(e);
                }
                spec->n_groups = n;
        }
        return TRUE;
}

static gboolean read_capabilities(IsoSpec *spec, JsonObject *caps, GError **error)
{
        guint64 inheritable = 0, ambient = 0;

        if (!caps)
                return TRUE;
        if (!get_caps(caps, "bounding", &spec->cap_bounding, error) ||
            !get_caps(caps, "effective", &spec->cap_effective, error) ||
            !get_caps(caps, "permitted", &spec->cap_permitted, error) ||
            !get_caps(caps, "inheritable", &inheritable, error) ||
            !get_caps(caps, "ambient", &ambient, error))
                return FALSE;
        /* The inheritable set stays empty (DESIGN.md), and the kernel keeps no ambient capability that is
         * not inheritable: a spec asking for either cannot be executed faithfully. */
        if (inheritable || ambient)
                return iso_fail(error, "config.json: process.capabilities: inheritable and ambient "
                                       "capabilities are not supported by the chroot isolation");
        if ((spec->cap_effective & ~spec->cap_permitted) || (spec->cap_permitted & ~spec->cap_bounding))
                return iso_fail(error,
                                "config.json: process.capabilities: effective must be within permitted, "
                                "and permitted within bounding");
        return TRUE;
}

static gboolean read_rlimits(IsoSpec *spec, JsonArray *rlimits, GError **error)
{
        guint n = rlimits ? json_array_get_length(rlimits) : 0;

        spec->rlimits = g_new0(IsoRlimit, MAX(n, 1));
        for (guint i = 0; i < n; i++) {
                JsonNode *e = json_array_get_element(rlimits, i);
                JsonObject *o = JSON_NODE_HOLDS_OBJECT(e) ? json_node_get_object(e) : NULL;
                g_autofree char *where = g_strdup_printf("process.rlimits[%u].", i);
                g_autofree char *type = NULL;
                IsoRlimit *r = &spec->rlimits[spec->n_rlimits];
                gint64 soft = 0, hard = 0;

                if (!o)
                        return iso_fail(error, "config.json: process.rlimits[%u] is not an object", i);
                if (!get_string(o, "type", where, &type, error) ||
                    !get_int(o, "soft", where, G_MININT64, G_MAXINT64, true, &soft, error) ||
                    !get_int(o, "hard", where, G_MININT64, G_MAXINT64, true, &hard, error))
                        return FALSE;
                if (!type || !iso_rlimit_from_name(type, &r->name, &r->resource))
                        return iso_fail(error, "config.json: %stype: unknown rlimit '%s'", where,
                                        type ? type : "");
                r->soft = (guint64)soft;
                r->hard = (guint64)hard;
                if (r->soft > r->hard)
                        return iso_fail(error, "config.json: %s: soft limit above the hard limit", type);
                spec->n_rlimits++;
        }
        return TRUE;
}

static gboolean read_process(IsoSpec *spec, JsonObject *root, GError **error)
{
        JsonObject *process, *user, *caps, *console;
        JsonArray *rlimits;
        gint64 v = 0;

        if (!get_object(root, "process", "", true, &process, error) ||
            !get_bool(process, "terminal", "process.", &spec->terminal, error) ||
            !get_strv(process, "args", "process.", &spec->args, error) ||
            !get_strv(process, "env", "process.", &spec->env, error) ||
            !get_string(process, "cwd", "process.", &spec->cwd, error) ||
            !get_bool(process, "noNewPrivileges", "process.", &spec->no_new_privileges, error) ||
            !get_object(process, "user", "process.", true, &user, error) || !read_user(spec, user, error) ||
            !get_object(process, "capabilities", "process.", false, &caps, error) ||
            !read_capabilities(spec, caps, error) ||
            !get_array(process, "rlimits", "process.", &rlimits, error) ||
            !read_rlimits(spec, rlimits, error) ||
            !get_object(process, "consoleSize", "process.", false, &console, error))
                return FALSE;
        if (!spec->args || !spec->args[0] || !*spec->args[0])
                return iso_fail(error, "config.json: process.args is empty");
        if (!spec->env)
                spec->env = g_new0(char *, 1);
        if (!spec->cwd || !g_path_is_absolute(spec->cwd))
                return iso_fail(error, "config.json: process.cwd must be an absolute path");
        if (console) {
                if (!get_int(console, "height", "process.consoleSize.", 0, G_MAXUINT16, true, &v, error))
                        return FALSE;
                spec->rows = (guint16)v;
                if (!get_int(console, "width", "process.consoleSize.", 0, G_MAXUINT16, true, &v, error))
                        return FALSE;
                spec->cols = (guint16)v;
        }
        if (member(process, "oomScoreAdj")) {
                if (!get_int(process, "oomScoreAdj", "process.", -1000, 1000, false, &v, error))
                        return FALSE;
                spec->has_oom_score_adj = true;
                spec->oom_score_adj = (int)v;
        }
        for (const char *const *m = (const char *const[]){"apparmorProfile", "selinuxLabel", NULL}; *m;
             m++) {
                g_autofree char *label = NULL;
                if (!get_string(process, *m, "process.", &label, error))
                        return FALSE;
                if (label && *label)
                        return iso_fail(error,
                                        "config.json: process.%s is not supported by the chroot isolation",
                                        *m);
        }
        return TRUE;
}

static gboolean parse_mount_options(IsoMount *m, char **options, const char *where, GError **error)
{
        g_autoptr(GString) data = g_string_new(NULL);

        for (char **o = options; o && *o; o++) {
                bool known = false;

                if (g_str_equal(*o, "bind") || g_str_equal(*o, "rbind")) {
                        m->bind = true;
                        m->recursive |= g_str_equal(*o, "rbind");
                        continue;
                }
                if (g_str_equal(*o, "idmap") || g_str_equal(*o, "ridmap") || g_str_equal(*o, "tmpcopyup"))
                        return iso_fail(error, "config.json: %s: option '%s' is not supported", where, *o);
                for (size_t i = 0; i < G_N_ELEMENTS(mount_flag_table) && !known; i++)
                        if (g_str_equal(*o, mount_flag_table[i].name)) {
                                known = true;
                                if (mount_flag_table[i].clear)
                                        m->flags &= ~mount_flag_table[i].flag;
                                else
                                        m->flags |= mount_flag_table[i].flag;
                        }
                for (size_t i = 0; i < G_N_ELEMENTS(propagation_table) && !known; i++)
                        if (g_str_equal(*o, propagation_table[i].name)) {
                                known = true;
                                m->propagation = propagation_table[i].flags;
                        }
                if (known)
                        continue;
                if (strchr(*o, ',') || !**o)
                        return iso_fail(error, "config.json: %s: invalid option '%s'", where, *o);
                g_string_append_printf(data, "%s%s", data->len ? "," : "", *o);
        }
        m->data = data->len ? g_strdup(data->str) : NULL;
        return TRUE;
}

static gboolean read_mounts(IsoSpec *spec, JsonObject *root, GError **error)
{
        JsonArray *mounts;
        guint n;

        if (!get_array(root, "mounts", "", &mounts, error))
                return FALSE;
        n = mounts ? json_array_get_length(mounts) : 0;
        spec->mounts = g_new0(IsoMount, MAX(n, 1));
        for (guint i = 0; i < n; i++) {
                JsonNode *e = json_array_get_element(mounts, i);
                JsonObject *o = JSON_NODE_HOLDS_OBJECT(e) ? json_node_get_object(e) : NULL;
                g_autofree char *where = g_strdup_printf("mounts[%u].", i);
                g_auto(GStrv) options = NULL;
                IsoMount *m = &spec->mounts[i];

                spec->n_mounts++;
                if (!o)
                        return iso_fail(error, "config.json: mounts[%u] is not an object", i);
                if (!get_string(o, "destination", where, &m->destination, error) ||
                    !get_string(o, "type", where, &m->type, error) ||
                    !get_string(o, "source", where, &m->source, error) ||
                    !get_strv(o, "options", where, &options, error) ||
                    !parse_mount_options(m, options, where, error))
                        return FALSE;
                if (!m->destination || !g_path_is_absolute(m->destination))
                        return iso_fail(error, "config.json: %sdestination must be an absolute path", where);
                if (!m->type || !*m->type) {
                        g_free(m->type);
                        m->type = g_strdup(m->bind ? "bind" : "none");
                }
                if (g_str_equal(m->type, "bind"))
                        m->bind = true;
                if (m->bind) {
                        if (!m->source || !*m->source)
                                return iso_fail(error, "config.json: %ssource is missing", where);
                        if (!g_path_is_absolute(m->source)) {
                                char *abs = g_build_filename(spec->bundle, m->source, NULL);
                                g_free(m->source);
                                m->source = abs;
                        }
                }
        }
        return TRUE;
}

static gboolean read_id_maps(JsonObject *lnx, const char *name, IsoIdMap **maps, gsize *n_maps,
                             GError **error)
{
        JsonArray *a;
        guint n;

        if (!get_array(lnx, name, "linux.", &a, error))
                return FALSE;
        n = a ? json_array_get_length(a) : 0;
        if (n > 340) /* the kernel's limit on lines in a map */
                return iso_fail(error, "config.json: linux.%s has too many entries", name);
        *maps = g_new0(IsoIdMap, MAX(n, 1));
        *n_maps = n;
        for (guint i = 0; i < n; i++) {
                JsonNode *e = json_array_get_element(a, i);
                JsonObject *o = JSON_NODE_HOLDS_OBJECT(e) ? json_node_get_object(e) : NULL;
                g_autofree char *where = g_strdup_printf("linux.%s[%u].", name, i);
                gint64 c = 0, h = 0, s = 0;

                if (!o)
                        return iso_fail(error, "config.json: linux.%s[%u] is not an object", name, i);
                if (!get_int(o, "containerID", where, 0, G_MAXUINT32 - 1, true, &c, error) ||
                    !get_int(o, "hostID", where, 0, G_MAXUINT32 - 1, true, &h, error) ||
                    !get_int(o, "size", where, 1, G_MAXUINT32, true, &s, error))
                        return FALSE;
                (*maps)[i] = (IsoIdMap){(guint32)c, (guint32)h, (guint32)s};
        }
        return TRUE;
}

static gboolean read_namespaces(IsoSpec *spec, JsonObject *lnx, GError **error)
{
        JsonArray *a;

        if (!get_array(lnx, "namespaces", "linux.", &a, error))
                return FALSE;
        for (guint i = 0; a && i < json_array_get_length(a); i++) {
                JsonNode *e = json_array_get_element(a, i);
                JsonObject *o = JSON_NODE_HOLDS_OBJECT(e) ? json_node_get_object(e) : NULL;
                g_autofree char *where = g_strdup_printf("linux.namespaces[%u].", i);
                g_autofree char *type = NULL, *path = NULL;
                int k;

                if (!o)
                        return iso_fail(error, "config.json: linux.namespaces[%u] is not an object", i);
                if (!get_string(o, "type", where, &type, error) ||
                    !get_string(o, "path", where, &path, error))
                        return FALSE;
                for (k = 0; k < ISO_NS_COUNT; k++)
                        if (type && g_str_equal(type, namespace_table[k].name))
                                break;
                if (k == ISO_NS_COUNT)
                        return iso_fail(error, "config.json: %stype: namespace '%s' is not supported", where,
                                        type ? type : "");
                if (spec->ns[k].present)
                        return iso_fail(error, "config.json: %stype: '%s' is listed twice", where, type);
                if (path && *path && !g_path_is_absolute(path))
                        return iso_fail(error, "config.json: %spath must be absolute", where);
                spec->ns[k].present = true;
                spec->ns[k].path = path && *path ? g_steal_pointer(&path) : NULL;
        }
        if (!spec->ns[ISO_NS_MOUNT].present || spec->ns[ISO_NS_MOUNT].path)
                return iso_fail(
                        error,
                        "config.json: linux.namespaces: the chroot isolation needs a new mount namespace");
        if ((spec->n_uid_maps || spec->n_gid_maps) &&
            (!spec->ns[ISO_NS_USER].present || spec->ns[ISO_NS_USER].path || !spec->n_uid_maps ||
             !spec->n_gid_maps))
                return iso_fail(error,
                                "config.json: linux.uidMappings and gidMappings go together, with a new "
                                "user namespace");
        if (spec->ns[ISO_NS_USER].present && !spec->ns[ISO_NS_USER].path && !spec->n_uid_maps)
                return iso_fail(error,
                                "config.json: a new user namespace needs linux.uidMappings and gidMappings");
        return TRUE;
}

static gboolean read_devices(IsoSpec *spec, JsonObject *lnx, GError **error)
{
        JsonArray *a;
        guint n;

        if (!get_array(lnx, "devices", "linux.", &a, error))
                return FALSE;
        n = a ? json_array_get_length(a) : 0;
        spec->devices = g_new0(IsoDevice, MAX(n, 1));
        for (guint i = 0; i < n; i++) {
                JsonNode *e = json_array_get_element(a, i);
                JsonObject *o = JSON_NODE_HOLDS_OBJECT(e) ? json_node_get_object(e) : NULL;
                g_autofree char *where = g_strdup_printf("linux.devices[%u].", i);
                g_autofree char *type = NULL;
                IsoDevice *d = &spec->devices[i];
                gint64 major = 0, minor = 0, mode = 0666, uid = 0, gid = 0;

                spec->n_devices++;
                if (!o)
                        return iso_fail(error, "config.json: linux.devices[%u] is not an object", i);
                if (!get_string(o, "path", where, &d->path, error) ||
                    !get_string(o, "type", where, &type, error) ||
                    !get_int(o, "major", where, 0, G_MAXUINT32, false, &major, error) ||
                    !get_int(o, "minor", where, 0, G_MAXUINT32, false, &minor, error) ||
                    !get_int(o, "fileMode", where, 0, 07777, false, &mode, error) ||
                    !get_int(o, "uid", where, 0, G_MAXUINT32 - 1, false, &uid, error) ||
                    !get_int(o, "gid", where, 0, G_MAXUINT32 - 1, false, &gid, error))
                        return FALSE;
                if (!d->path || !g_str_has_prefix(d->path, "/dev/"))
                        return iso_fail(error, "config.json: %spath must be under /dev", where);
                if (g_strcmp0(type, "c") == 0 || g_strcmp0(type, "u") == 0)
                        d->type = S_IFCHR;
                else if (g_strcmp0(type, "b") == 0)
                        d->type = S_IFBLK;
                else if (g_strcmp0(type, "p") == 0)
                        d->type = S_IFIFO;
                else
                        return iso_fail(error, "config.json: %stype: '%s' is not c, b, u or p", where,
                                        type ? type : "");
                d->major = (guint32)major;
                d->minor = (guint32)minor;
                d->file_mode = (guint32)mode;
                d->uid = (guint32)uid;
                d->gid = (guint32)gid;
        }
        return TRUE;
}

/* linux.cgroupsPath and the limits kiln writes into linux.resources (spec.c): pids.limit, memory.limit,
 * cpu.shares, unified["cpu.weight"]. */
static gboolean read_resources(IsoSpec *spec, JsonObject *lnx, GError **error)
{
        JsonObject *resources, *pids, *memory, *cpu, *unified;
        g_autofree char *weight = NULL;
        gint64 v = 0;

        if (!get_string(lnx, "cgroupsPath", "linux.", &spec->cgroups_path, error) ||
            !get_object(lnx, "resources", "linux.", false, &resources, error) ||
            !get_object(resources, "pids", "linux.resources.", false, &pids, error) ||
            !get_object(resources, "memory", "linux.resources.", false, &memory, error) ||
            !get_object(resources, "cpu", "linux.resources.", false, &cpu, error) ||
            !get_object(resources, "unified", "linux.resources.", false, &unified, error))
                return FALSE;
        if (spec->cgroups_path && !*spec->cgroups_path)
                g_clear_pointer(&spec->cgroups_path, g_free);
        /* "slice:prefix:name" asks for systemd's driver, which needs a systemd client. */
        if (spec->cgroups_path && strchr(spec->cgroups_path, ':'))
                return iso_fail(error,
                                "config.json: linux.cgroupsPath: '%s' is a systemd cgroup, which the "
                                "chroot isolation does not support",
                                spec->cgroups_path);
        if (pids &&
            !get_int(pids, "limit", "linux.resources.pids.", G_MININT64, G_MAXINT64, false, &v, error))
                return FALSE;
        spec->limits.pids_limit = MAX(v, 0);
        v = 0;
        if (memory &&
            !get_int(memory, "limit", "linux.resources.memory.", G_MININT64, G_MAXINT64, false, &v, error))
                return FALSE;
        spec->limits.memory = v > 0 ? (guint64)v : 0;
        v = 0;
        if (cpu && !get_int(cpu, "shares", "linux.resources.cpu.", 0, 262144, false, &v, error))
                return FALSE;
        spec->limits.cpu_shares = (guint64)v;
        if (unified && !get_string(unified, "cpu.weight", "linux.resources.unified.", &weight, error))
                return FALSE;
        if (weight) {
                char *end = NULL;
                guint64 w = g_ascii_strtoull(weight, &end, 10);
                if (!*weight || *end || w < 1 || w > KILN_CPU_WEIGHT_MAX)
                        return iso_fail(error,
                                        "config.json: linux.resources.unified.cpu.weight: '%s' is not "
                                        "between 1 and 10000",
                                        weight);
                spec->limits.cpu_weight = w;
        }
        if (!spec->cgroups_path && (spec->limits.pids_limit || spec->limits.memory ||
                                    spec->limits.cpu_shares || spec->limits.cpu_weight))
                return iso_fail(error, "config.json: linux.resources: limits need a linux.cgroupsPath");
        return TRUE;
}

static gboolean read_linux(IsoSpec *spec, JsonObject *root, GError **error)
{
        JsonObject *lnx, *sysctl;
        g_autofree char *propagation = NULL, *label = NULL;
        JsonNode *seccomp;

        if (!get_object(root, "linux", "", true, &lnx, error) ||
            !read_id_maps(lnx, "uidMappings", &spec->uid_maps, &spec->n_uid_maps, error) ||
            !read_id_maps(lnx, "gidMappings", &spec->gid_maps, &spec->n_gid_maps, error) ||
            !read_namespaces(spec, lnx, error) || !read_devices(spec, lnx, error) ||
            !read_resources(spec, lnx, error) ||
            !get_strv(lnx, "maskedPaths", "linux.", &spec->masked_paths, error) ||
            !get_strv(lnx, "readonlyPaths", "linux.", &spec->readonly_paths, error) ||
            !get_string(lnx, "rootfsPropagation", "linux.", &propagation, error) ||
            !get_string(lnx, "mountLabel", "linux.", &label, error) ||
            !get_object(lnx, "sysctl", "linux.", false, &sysctl, error))
                return FALSE;
        if (label && *label)
                return iso_fail(error,
                                "config.json: linux.mountLabel is not supported by the chroot isolation");
        if (propagation && *propagation) {
                size_t i;
                for (i = 0; i < G_N_ELEMENTS(propagation_table); i++)
                        if (g_str_equal(propagation, propagation_table[i].name))
                                break;
                if (i == G_N_ELEMENTS(propagation_table))
                        return iso_fail(error,
                                        "config.json: linux.rootfsPropagation: '%s' is not a propagation",
                                        propagation);
                spec->rootfs_propagation = propagation_table[i].flags;
        }
        if (sysctl) {
                g_autoptr(GList) keys = json_object_get_members(sysctl);
                g_autoptr(GPtrArray) kv = g_ptr_array_new_with_free_func(g_free);

                for (GList *k = keys; k; k = k->next) {
                        JsonNode *v = json_object_get_member(sysctl, k->data);
                        if (json_node_get_value_type(v) != G_TYPE_STRING)
                                return iso_fail(error, "config.json: linux.sysctl.%s is not a string",
                                                (const char *)k->data);
                        g_ptr_array_add(kv, g_strdup(k->data));
                        g_ptr_array_add(kv, g_strdup(json_node_get_string(v)));
                }
                g_ptr_array_add(kv, NULL);
                spec->sysctl = (char **)g_ptr_array_free(g_steal_pointer(&kv), FALSE);
        }
        seccomp = member(lnx, "seccomp");
        if (seccomp)
                spec->seccomp = json_node_copy(seccomp);
        return TRUE;
}

/* "hooks": {stage: [{path, args, env, timeout}]}; the stages runtime-spec 1.0.2 names, no other. */
static gboolean read_hooks(IsoSpec *spec, JsonObject *root, GError **error)
{
        JsonObject *hooks;
        g_autoptr(GList) names = NULL;

        if (!get_object(root, "hooks", "", false, &hooks, error))
                return FALSE;
        names = hooks ? json_object_get_members(hooks) : NULL;
        for (GList *n = names; n; n = n->next) {
                g_autofree char *where = g_strdup_printf("hooks.%s", (const char *)n->data);
                JsonArray *a;
                int stage = -1;
                guint len;

                for (int i = 0; i < ISO_HOOK_COUNT; i++)
                        if (g_str_equal(n->data, iso_hook_stage_name(i)))
                                stage = i;
                if (stage < 0)
                        return iso_fail(error, "config.json: %s: not a hook stage", where);
                if (!get_array(hooks, n->data, "hooks.", &a, error))
                        return FALSE;
                len = a ? json_array_get_length(a) : 0;
                if (len > MAX_HOOKS)
                        return iso_fail(error, "config.json: %s: more than %d hooks", where, MAX_HOOKS);
                spec->hooks[stage] = g_new0(IsoHook, MAX(len, 1));
                for (guint i = 0; i < len; i++) {
                        g_autofree char *at = g_strdup_printf("%s[%u].", where, i);
                        JsonNode *e = json_array_get_element(a, i);
                        JsonObject *h = JSON_NODE_HOLDS_OBJECT(e) ? json_node_get_object(e) : NULL;
                        IsoHook *hook = &spec->hooks[stage][spec->n_hooks[stage]++];
                        gint64 timeout = 0;

                        if (!h)
                                return iso_fail(error, "config.json: %s[%u] is not an object", where, i);
                        if (!get_string(h, "path", at, &hook->path, error) ||
                            !get_strv(h, "args", at, &hook->args, error) ||
                            !get_strv(h, "env", at, &hook->env, error) ||
                            !get_int(h, "timeout", at, 1, G_MAXINT32, false, &timeout, error))
                                return FALSE;
                        if (!hook->path || !g_path_is_absolute(hook->path))
                                return iso_fail(error, "config.json: %spath is not an absolute path", at);
                        hook->timeout = (int)timeout;
                }
        }
        return TRUE;
}

/* "annotations", for the hooks' state. */
static gboolean read_annotations(IsoSpec *spec, JsonObject *root, GError **error)
{
        JsonObject *a;
        g_autoptr(GList) names = NULL;
        g_autoptr(GPtrArray) kv = g_ptr_array_new();

        if (!get_object(root, "annotations", "", false, &a, error))
                return FALSE;
        names = a ? json_object_get_members(a) : NULL;
        for (GList *n = names; n; n = n->next) {
                JsonNode *v = json_object_get_member(a, n->data);
                if (json_node_get_value_type(v) != G_TYPE_STRING) {
                        g_ptr_array_set_free_func(kv, g_free);
                        return iso_fail(error, "config.json: annotations.%s is not a string",
                                        (const char *)n->data);
                }
                g_ptr_array_add(kv, g_strdup(n->data));
                g_ptr_array_add(kv, g_strdup(json_node_get_string(v)));
        }
        g_ptr_array_add(kv, NULL);
        spec->annotations = (char **)g_ptr_array_free(g_steal_pointer(&kv), FALSE);
        return TRUE;
}

IsoSpec *iso_spec_read(const char *bundle, GError **error)
{
        g_autoptr(IsoSpec) spec = g_new0(IsoSpec, 1);
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        g_autofree char *path = g_build_filename(bundle, "config.json", NULL);
        g_autofree char *text = NULL, *version = NULL;
        g_autoptr(GError) local = NULL;
        JsonObject *root_object, *root;
        gsize length;
        JsonNode *node;

        spec->bundle = g_canonicalize_filename(bundle, NULL);
        if (!g_file_get_contents(path, &text, &length, &local))
                return iso_fail(error, "read '%s': %s", path, local->message), NULL;
        if (length > SPEC_MAX_SIZE)
                return iso_fail(error, "read '%s': larger than %d bytes", path, SPEC_MAX_SIZE), NULL;
        if (!json_parser_load_from_data(parser, text, (gssize)length, &local))
                return iso_fail(error, "parse '%s': %s", path, local->message), NULL;
        node = json_parser_get_root(parser);
        if (!node || !JSON_NODE_HOLDS_OBJECT(node))
                return iso_fail(error, "parse '%s': not a JSON object", path), NULL;
        root_object = json_node_get_object(node);

        if (!get_string(root_object, "ociVersion", "", &version, error))
                return NULL;
        if (!version || !g_str_has_prefix(version, "1."))
                return iso_fail(error, "config.json: ociVersion '%s' is not 1.x", version ? version : ""),
                       NULL;
        if (!get_object(root_object, "root", "", true, &root, error) ||
            !get_string(root, "path", "root.", &spec->root, error) ||
            !get_bool(root, "readonly", "root.", &spec->root_readonly, error) ||
            !get_string(root_object, "hostname", "", &spec->hostname, error) ||
            !get_string(root_object, "domainname", "", &spec->domainname, error) ||
            !read_process(spec, root_object, error) || !read_mounts(spec, root_object, error) ||
            !read_linux(spec, root_object, error) || !read_hooks(spec, root_object, error) ||
            !read_annotations(spec, root_object, error))
                return NULL;
        if (!spec->root || !*spec->root)
                return iso_fail(error, "config.json: root.path is missing"), NULL;
        if (!g_path_is_absolute(spec->root)) {
                char *abs = g_build_filename(spec->bundle, spec->root, NULL);
                g_free(spec->root);
                spec->root = abs;
        }
        if (((spec->hostname && *spec->hostname) || (spec->domainname && *spec->domainname)) &&
            (!spec->ns[ISO_NS_UTS].present || spec->ns[ISO_NS_UTS].path))
                return iso_fail(error, "config.json: a hostname needs a new UTS namespace"), NULL;
        return g_steal_pointer(&spec);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* CDI spec files (cdi.h): a pure parser of their JSON, and the reading of the spec directories. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/errors.h"
#include "base/kiln-common.h"
#include "base/validate.h"
#include "run/cdi.h"

/* The OCI runtime spec's hook stages. */
static const char *const hook_stages[] = {
        "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop", NULL};

/* ---- names ---- */

static gboolean all_of(const char *s, gsize n, const char *extra)
{
        for (gsize i = 0; i < n; i++)
                if (!g_ascii_isalnum(s[i]) && !strchr(extra, s[i]))
                        return FALSE;
        return TRUE;
}

/* CDI's rules: a vendor is a domain-like name (letters, digits, '.', '-'), a class letters, digits,
 * '_', '-', both starting with a letter and ending with a letter or digit; a device name letters,
 * digits, '_', '.', ':', '-', starting and ending with a letter or digit. */
static gboolean valid_part(const char *s, gsize n, gboolean letter_first, const char *extra)
{
        return n > 0 && n <= 253 && (letter_first ? g_ascii_isalpha(s[0]) : g_ascii_isalnum(s[0])) &&
               g_ascii_isalnum(s[n - 1]) && all_of(s, n, extra);
}

static gboolean valid_kind(const char *kind)
{
        const char *slash = strchr(kind, '/');

        return slash && valid_part(kind, slash - kind, TRUE, ".-") &&
               valid_part(slash + 1, strlen(slash + 1), TRUE, "_-");
}

static gboolean valid_device_name(const char *name)
{
        return valid_part(name, strlen(name), FALSE, "_.:-");
}

gboolean kiln_cdi_is_name(const char *value)
{
        const char *eq = strchr(value, '=');
        const char *slash = strchr(value, '/');

        return value[0] != '/' && eq && slash && slash < eq;
}

gboolean kiln_cdi_parse_name(const char *arg, const char *value, char **kind, char **name, GError **error)
{
        const char *eq = strchr(value, '=');
        g_autofree char *k = eq ? g_strndup(value, eq - value) : NULL;

        if (!k || !valid_kind(k) || !valid_device_name(eq + 1))
                return kiln_invalid(error, arg, "'%s' is not a CDI device name vendor.com/class=name",
                                    value);
        *kind = g_steal_pointer(&k);
        *name = g_strdup(eq + 1);
        return TRUE;
}

/* ---- the parser ---- */

typedef struct {
        const char *origin;
        GError **error;
} Ctx;

static gboolean bad(Ctx *c, const char *where, const char *what)
{
        return kiln_fail(c->error, KILN_ERROR_CODE_INVALID_ARGUMENT, "Invalid CDI spec %s: %s %s", c->origin,
                         where, what);
}

/* Every member of @o is one of @known. */
static gboolean only_members(Ctx *c, const char *where, JsonObject *o, const char *const *known)
{
        g_autoptr(GList) members = json_object_get_members(o);

        for (GList *l = members; l; l = l->next)
                if (!g_strv_contains(known, l->data)) {
                        g_autofree char *what = g_strdup_printf("has '%s', which kiln does not apply",
                                                                (const char *)l->data);
                        return bad(c, where, what);
                }
        return TRUE;
}

static JsonNode *member(JsonObject *o, const char *name)
{
        JsonNode *n = json_object_get_member(o, name);

        return n && !JSON_NODE_HOLDS_NULL(n) ? n : NULL;
}

/* A string member: *out NULL when absent and not @required. */
static gboolean read_string(Ctx *c, const char *where, JsonObject *o, const char *name, gboolean required,
                            const char **out)
{
        JsonNode *n = member(o, name);
        g_autofree char *w = g_strdup_printf("%s.%s", where, name);

        *out = NULL;
        if (!n)
                return !required || bad(c, w, "is missing");
        if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
                return bad(c, w, "is not a string");
        *out = json_node_get_string(n);
        if (strlen(*out) > PATH_MAX)
                return bad(c, w, "is too long");
        return TRUE;
}

static gboolean read_path(Ctx *c, const char *where, JsonObject *o, const char *name, gboolean required,
                          char **out)
{
        const char *s;
        g_autofree char *w = g_strdup_printf("%s.%s", where, name);
        g_autoptr(GError) local = NULL;

        if (!read_string(c, where, o, name, required, &s))
                return FALSE;
        if (s && !kiln_validate_absolute_path(w, s, FALSE, &local))
                return bad(c, w, "is not an absolute path");
        *out = g_strdup(s);
        return TRUE;
}

/* An integer member in [min, max]; *out -1 when absent. */
static gboolean read_int(Ctx *c, const char *where, JsonObject *o, const char *name, gint64 max, gint64 *out)
{
        JsonNode *n = member(o, name);
        g_autofree char *w = g_strdup_printf("%s.%s", where, name);

        *out = -1;
        if (!n)
                return TRUE;
        if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64 ||
            json_node_get_int(n) < 0 || json_node_get_int(n) > max)
                return bad(c, w, "is not a number in range");
        *out = json_node_get_int(n);
        return TRUE;
}

typedef gboolean (*ReadElement)(Ctx *c, const char *w, JsonNode *e, gpointer data);

/* @read on each element of the array member @name, bounded; nothing when the member is absent. */
static gboolean each_element(Ctx *c, const char *where, JsonObject *o, const char *name, ReadElement read,
                             gpointer data)
{
        JsonNode *n = member(o, name);
        g_autofree char *w = g_strdup_printf("%s.%s", where, name);
        JsonArray *a;

        if (!n)
                return TRUE;
        if (!JSON_NODE_HOLDS_ARRAY(n))
                return bad(c, w, "is not an array");
        a = json_node_get_array(n);
        if (json_array_get_length(a) > KILN_CDI_LIST_MAX)
                return bad(c, w, "has too many entries");
        for (guint i = 0; i < json_array_get_length(a); i++) {
                g_autofree char *we = g_strdup_printf("%s[%u]", w, i);
                if (!read(c, we, json_array_get_element(a, i), data))
                        return FALSE;
        }
        return TRUE;
}

typedef struct {
        GStrvBuilder *strings;
        gboolean env;
} StringsRead;

static gboolean read_string_element(Ctx *c, const char *w, JsonNode *e, StringsRead *r)
{
        g_autoptr(GError) local = NULL;
        const char *s;

        if (!JSON_NODE_HOLDS_VALUE(e) || json_node_get_value_type(e) != G_TYPE_STRING)
                return bad(c, w, "is not a string");
        s = json_node_get_string(e);
        if (strlen(s) > 65536 || (r->env && !kiln_validate_env_entry(w, s, &local)))
                return bad(c, w, r->env ? "is not NAME=VALUE" : "is too long");
        g_strv_builder_add(r->strings, s);
        return TRUE;
}

/* An array of strings (NULL when absent, unless @empty_if_absent); @env: each "NAME=VALUE". */
static gboolean read_strv(Ctx *c, const char *where, JsonObject *o, const char *name, gboolean env,
                          gboolean empty_if_absent, char ***out)
{
        g_autoptr(GStrvBuilder) b = g_strv_builder_new();
        StringsRead r = {b, env};

        *out = NULL;
        if (!each_element(c, where, o, name, (ReadElement)read_string_element, &r))
                return FALSE;
        if (member(o, name) || empty_if_absent)
                *out = g_strv_builder_end(b);
        return TRUE;
}

static void device_node_free(KilnCdiDeviceNode *d)
{
        g_free(d->path);
        g_free(d->host_path);
        g_free(d->permissions);
        g_free(d);
}

static void mount_free(KilnCdiMount *m)
{
        g_free(m->host_path);
        g_free(m->container_path);
        g_strfreev(m->options);
        g_free(m);
}

void kiln_cdi_hook_free(KilnCdiHook *h)
{
        g_free(h->stage);
        g_free(h->path);
        g_strfreev(h->args);
        g_strfreev(h->env);
        g_free(h);
}

KilnCdiHook *kiln_cdi_hook_copy(const KilnCdiHook *h)
{
        KilnCdiHook *c = g_new0(KilnCdiHook, 1);

        c->stage = g_strdup(h->stage);
        c->path = g_strdup(h->path);
        c->args = g_strdupv(h->args);
        c->env = g_strdupv(h->env);
        c->timeout = h->timeout;
        return c;
}

static void edits_clear(KilnCdiEdits *e)
{
        g_clear_pointer(&e->env, g_strfreev);
        g_clear_pointer(&e->device_nodes, g_ptr_array_unref);
        g_clear_pointer(&e->mounts, g_ptr_array_unref);
        g_clear_pointer(&e->hooks, g_ptr_array_unref);
}

static gboolean read_device_node(Ctx *c, const char *w, JsonObject *o, KilnCdiDeviceNode *d)
{
        static const char *const known[] = {"path",     "hostPath",    "type", "major", "minor",
                                            "fileMode", "permissions", "uid",  "gid",   NULL};
        const char *type, *perms;
        gint64 mode;

        if (!only_members(c, w, o, known) || !read_path(c, w, o, "path", TRUE, &d->path) ||
            !read_path(c, w, o, "hostPath", FALSE, &d->host_path) ||
            !read_string(c, w, o, "type", FALSE, &type) ||
            !read_int(c, w, o, "major", G_MAXUINT32, &d->major) ||
            !read_int(c, w, o, "minor", G_MAXUINT32, &d->minor) ||
            !read_int(c, w, o, "fileMode", G_MAXUINT32, &mode) ||
            !read_string(c, w, o, "permissions", FALSE, &perms) ||
            !read_int(c, w, o, "uid", G_MAXUINT32 - 1, &d->uid) ||
            !read_int(c, w, o, "gid", G_MAXUINT32 - 1, &d->gid))
                return FALSE;
        /* Character and block devices only: FIFOs and unbuffered nodes are no host devices to pass. */
        if (type && *type) {
                if (!g_str_equal(type, "c") && !g_str_equal(type, "b"))
                        return bad(c, w, "type is not c or b");
                d->type = type[0];
        }
        /* fileMode is an os.FileMode in the CDI library: only its permission bits are meaningful here. */
        d->file_mode = mode >= 0 ? (mode & 07777) : -1;
        if (perms && *perms) {
                if (strspn(perms, "rwm") != strlen(perms))
                        return bad(c, w, "permissions are not made of r, w, m");
                d->permissions = g_strdup(perms);
        }
        return TRUE;
}

static gboolean read_mount(Ctx *c, const char *w, JsonObject *o, KilnCdiMount *m)
{
        static const char *const known[] = {"hostPath", "containerPath", "options", "type", NULL};
        const char *type;

        if (!only_members(c, w, o, known) || !read_path(c, w, o, "hostPath", TRUE, &m->host_path) ||
            !read_path(c, w, o, "containerPath", TRUE, &m->container_path) ||
            !read_strv(c, w, o, "options", FALSE, TRUE, &m->options) ||
            !read_string(c, w, o, "type", FALSE, &type))
                return FALSE;
        /* Bind mounts of host paths only: a spec's other file systems (tmpfs, overlay) are not applied. */
        if (type && *type && !g_str_equal(type, "bind"))
                return bad(c, w, "type is not bind");
        return TRUE;
}

static gboolean read_hook(Ctx *c, const char *w, JsonObject *o, KilnCdiHook *h)
{
        static const char *const known[] = {"hookName", "path", "args", "env", "timeout", NULL};
        const char *stage;
        gint64 timeout;

        if (!only_members(c, w, o, known) || !read_string(c, w, o, "hookName", TRUE, &stage) ||
            !read_path(c, w, o, "path", TRUE, &h->path) ||
            !read_strv(c, w, o, "args", FALSE, FALSE, &h->args) ||
            !read_strv(c, w, o, "env", TRUE, FALSE, &h->env) ||
            !read_int(c, w, o, "timeout", G_MAXINT, &timeout))
                return FALSE;
        if (!g_strv_contains(hook_stages, stage))
                return bad(c, w, "hookName is not an OCI hook stage");
        h->stage = g_strdup(stage);
        h->timeout = timeout > 0 ? (int)timeout : 0;
        return TRUE;
}

typedef gboolean (*ReadEntry)(Ctx *c, const char *w, JsonObject *o, gpointer entry);

typedef struct {
        gsize size;
        ReadEntry read;
        GPtrArray *list;
} ListRead;

static gboolean read_list_element(Ctx *c, const char *w, JsonNode *e, ListRead *r)
{
        gpointer entry;

        if (!JSON_NODE_HOLDS_OBJECT(e))
                return bad(c, w, "is not an object");
        entry = g_malloc0(r->size);
        g_ptr_array_add(r->list, entry); /* freed with the list, even half read */
        return r->read(c, w, json_node_get_object(e), entry);
}

/* An array member of objects, each read into a fresh entry of @size added to @list. */
static gboolean read_list(Ctx *c, const char *where, JsonObject *o, const char *name, gsize size,
                          ReadEntry read, GDestroyNotify free_entry, GPtrArray **list)
{
        ListRead r = {size, read, NULL};

        *list = r.list = g_ptr_array_new_with_free_func(free_entry);
        return each_element(c, where, o, name, (ReadElement)read_list_element, &r);
}

static gboolean read_edits(Ctx *c, const char *where, JsonObject *parent, KilnCdiEdits *e)
{
        static const char *const known[] = {"env", "deviceNodes", "mounts", "hooks", NULL};
        JsonNode *n = member(parent, "containerEdits");
        g_autofree char *w = g_strdup_printf("%s.containerEdits", where);
        g_autoptr(JsonObject) empty = json_object_new();
        JsonObject *o;

        if (n && !JSON_NODE_HOLDS_OBJECT(n))
                return bad(c, w, "is not an object");
        o = n ? json_node_get_object(n) : empty;
        return only_members(c, w, o, known) && read_strv(c, w, o, "env", TRUE, TRUE, &e->env) &&
               read_list(c, w, o, "deviceNodes", sizeof(KilnCdiDeviceNode), (ReadEntry)read_device_node,
                         (GDestroyNotify)device_node_free, &e->device_nodes) &&
               read_list(c, w, o, "mounts", sizeof(KilnCdiMount), (ReadEntry)read_mount,
                         (GDestroyNotify)mount_free, &e->mounts) &&
               read_list(c, w, o, "hooks", sizeof(KilnCdiHook), (ReadEntry)read_hook,
                         (GDestroyNotify)kiln_cdi_hook_free, &e->hooks);
}

static void device_free(KilnCdiDevice *d)
{
        g_free(d->name);
        edits_clear(&d->edits);
        g_free(d);
}

static gboolean read_device(Ctx *c, const char *w, JsonObject *o, KilnCdiDevice *d)
{
        static const char *const known[] = {"name", "annotations", "containerEdits", NULL};
        const char *name;

        if (!only_members(c, w, o, known) || !read_string(c, w, o, "name", TRUE, &name))
                return FALSE;
        if (!valid_device_name(name))
                return bad(c, w, "name is not a CDI device name");
        d->name = g_strdup(name);
        /* A device without edits would give nothing: the CDI specification requires them. */
        if (!member(o, "containerEdits"))
                return bad(c, w, "has no containerEdits");
        return read_edits(c, w, o, &d->edits);
}

void kiln_cdi_spec_free(KilnCdiSpec *spec)
{
        if (!spec)
                return;
        g_free(spec->origin);
        g_free(spec->kind);
        g_clear_pointer(&spec->devices, g_ptr_array_unref);
        edits_clear(&spec->edits);
        g_free(spec);
}

KilnCdiSpec *kiln_cdi_spec_parse(const char *data, gsize length, const char *origin, GError **error)
{
        static const char *const known[] = {"cdiVersion", "kind",           "annotations",
                                            "devices",    "containerEdits", NULL};
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        g_autoptr(KilnCdiSpec) spec = g_new0(KilnCdiSpec, 1);
        g_autoptr(GError) local = NULL;
        Ctx c = {origin, error};
        const char *version, *kind;
        JsonNode *root;
        JsonObject *o;

        if (length > KILN_CDI_SPEC_MAX_BYTES) {
                bad(&c, "the file", "is larger than 1 MiB");
                return NULL;
        }
        if (!json_parser_load_from_data(parser, data, (gssize)length, &local)) {
                bad(&c, "the file", local->message);
                return NULL;
        }
        root = json_parser_get_root(parser);
        if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
                bad(&c, "the file", "is not a JSON object");
                return NULL;
        }
        o = json_node_get_object(root);
        spec->origin = g_strdup(origin);
        if (!only_members(&c, "the spec", o, known) ||
            !read_string(&c, "the spec", o, "cdiVersion", TRUE, &version) ||
            !read_string(&c, "the spec", o, "kind", TRUE, &kind))
                return NULL;
        /* Versions 0.3.0 to 0.8.0 share the members read here; a later major version may not. */
        if (!g_str_has_prefix(version, "0.") || strspn(version, "0123456789.") != strlen(version)) {
                bad(&c, "cdiVersion", "is not a version 0.x.y");
                return NULL;
        }
        if (!valid_kind(kind)) {
                bad(&c, "kind", "is not vendor.com/class");
                return NULL;
        }
        spec->kind = g_strdup(kind);
        if (!read_list(&c, "the spec", o, "devices", sizeof(KilnCdiDevice), (ReadEntry)read_device,
                       (GDestroyNotify)device_free, &spec->devices) ||
            !read_edits(&c, "the spec", o, &spec->edits))
                return NULL;
        if (spec->devices->len == 0) {
                bad(&c, "the spec", "has no devices");
                return NULL;
        }
        for (guint i = 0; i < spec->devices->len; i++)
                for (guint j = 0; j < i; j++)
                        if (g_str_equal(((KilnCdiDevice *)spec->devices->pdata[i])->name,
                                        ((KilnCdiDevice *)spec->devices->pdata[j])->name)) {
                                bad(&c, "devices", "name a device twice");
                                return NULL;
                        }
        return g_steal_pointer(&spec);
}

/* ---- the spec directories ---- */

/* One spec file, read through @dirfd: a regular file (never a symlink), at most the bound. */
static KilnCdiSpec *load_file(int dirfd, const char *dir, const char *name, GError **error)
{
        g_autofree char *origin = g_build_filename(dir, name, NULL);
        g_autofree char *data = NULL;
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        struct stat st;
        gsize got = 0;

        if (fd < 0 || fstat(fd, &st) < 0)
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "%s: %s", origin, g_strerror(errno)), NULL;
        if (!S_ISREG(st.st_mode))
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "%s is not a regular file", origin), NULL;
        if (st.st_size > KILN_CDI_SPEC_MAX_BYTES)
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "%s is larger than 1 MiB", origin), NULL;
        data = g_malloc(st.st_size + 1);
        while (got < (gsize)st.st_size) {
                ssize_t n = read(fd, data + got, st.st_size - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return kiln_fail(error, KILN_ERROR_CODE_FAILED, "%s: %s", origin, g_strerror(errno)),
                               NULL;
                if (n == 0)
                        break;
                got += n;
        }
        return kiln_cdi_spec_parse(data, got, origin, error);
}

static int by_name(gconstpointer a, gconstpointer b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

GPtrArray *kiln_cdi_load(const char *const *dirs)
{
        g_autoptr(GPtrArray) specs = g_ptr_array_new_with_free_func((GDestroyNotify)kiln_cdi_spec_free);

        for (guint p = 0; dirs && dirs[p]; p++) {
                _cleanup_close_ int dirfd = open(dirs[p], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
                DIR *d;
                struct dirent *e;
                int copy;

                if (dirfd < 0) {
                        if (errno != ENOENT)
                                g_warning("CDI spec directory %s: %s", dirs[p], g_strerror(errno));
                        continue;
                }
                copy = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
                d = copy >= 0 ? fdopendir(copy) : NULL;
                if (!d) {
                        if (copy >= 0)
                                close(copy);
                        continue;
                }
                while ((e = readdir(d)) && names->len < KILN_CDI_SPECS_MAX)
                        if (g_str_has_suffix(e->d_name, ".json") && e->d_name[0] != '.')
                                g_ptr_array_add(names, g_strdup(e->d_name));
                closedir(d);
                /* In name order, so that messages and conflicts are the same from run to run. */
                g_ptr_array_sort(names, by_name);
                for (guint i = 0; i < names->len; i++) {
                        g_autoptr(GError) local = NULL;
                        KilnCdiSpec *spec = load_file(dirfd, dirs[p], names->pdata[i], &local);

                        if (!spec) {
                                g_warning("CDI spec left out: %s", local->message);
                                continue;
                        }
                        spec->priority = p;
                        g_ptr_array_add(specs, spec);
                }
        }
        return g_steal_pointer(&specs);
}

const KilnCdiDevice *kiln_cdi_find(GPtrArray *specs, const char *arg, const char *qualified,
                                   const KilnCdiSpec **spec_out, GError **error)
{
        g_autofree char *kind = NULL, *name = NULL;
        const KilnCdiDevice *found = NULL;
        const KilnCdiSpec *found_spec = NULL;

        if (!kiln_cdi_parse_name(arg, qualified, &kind, &name, error))
                return NULL;
        for (guint i = 0; i < specs->len; i++) {
                const KilnCdiSpec *spec = specs->pdata[i];

                if (!g_str_equal(spec->kind, kind))
                        continue;
                for (guint j = 0; j < spec->devices->len; j++) {
                        const KilnCdiDevice *d = spec->devices->pdata[j];

                        if (!g_str_equal(d->name, name))
                                continue;
                        if (found_spec && found_spec->priority == spec->priority)
                                return kiln_invalid(error, arg,
                                                    "CDI device '%s' is defined by both %s and %s",
                                                    qualified, found_spec->origin, spec->origin),
                                       NULL;
                        if (!found_spec || spec->priority > found_spec->priority)
                                found = d, found_spec = spec;
                }
        }
        if (!found)
                return kiln_invalid(error, arg, "no CDI spec defines the device '%s'", qualified), NULL;
        *spec_out = found_spec;
        return found;
}

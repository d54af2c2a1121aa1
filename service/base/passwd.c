/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "base/errors.h"
#include "base/passwd.h"

/* passwd: name:password:uid:gid:gecos:home:shell; group: name:password:gid:members */
#define MAX_FIELDS 7
#define PASSWD_MIN_FIELDS 4
#define GROUP_MIN_FIELDS 3

typedef struct Field {
        const char *p;
        gsize n;
} Field;

/* Called for each usable line with its fields; returns TRUE to stop. */
typedef gboolean (*LineFunc)(const Field *fields, guint n_fields, gpointer data);

static guint split_fields(const char *line, gsize n, Field *fields)
{
        guint count = 0;
        gsize start = 0;

        for (gsize i = 0; i <= n && count < MAX_FIELDS; i++) {
                if (i == n || line[i] == ':') {
                        fields[count++] = (Field){line + start, i - start};
                        start = i + 1;
                }
        }
        return count;
}

static void for_each_line(const char *buf, gsize len, guint min_fields, LineFunc func, gpointer data)
{
        gsize pos = 0;

        if (!buf)
                return;
        while (pos < len) {
                const char *line = buf + pos;
                const char *nl = memchr(line, '\n', len - pos);
                gsize n = nl ? (gsize)(nl - line) : len - pos;
                Field fields[MAX_FIELDS];
                guint n_fields;

                pos += n + 1;
                if (n > 0 && line[n - 1] == '\r')
                        n--;
                if (n == 0 || n > KILN_PASSWD_MAX_LINE || memchr(line, '\0', n))
                        continue;
                if (line[0] == '#' || line[0] == '+' || line[0] == '-')
                        continue;
                n_fields = split_fields(line, n, fields);
                if (n_fields < min_fields || fields[0].n == 0)
                        continue;
                if (func(fields, n_fields, data))
                        return;
        }
}

gboolean kiln_parse_uint32(const char *s, gsize n, guint32 *value)
{
        guint64 v = 0;

        if (n == 0 || n > 10)
                return FALSE;
        for (gsize i = 0; i < n; i++) {
                if (!g_ascii_isdigit(s[i]))
                        return FALSE;
                v = v * 10 + (guint64)(s[i] - '0');
        }
        if (v > G_MAXUINT32)
                return FALSE;
        *value = (guint32)v;
        return TRUE;
}

gboolean kiln_parse_id(const char *s, gsize n, guint32 *id)
{
        guint32 v;

        if (!kiln_parse_uint32(s, n, &v) || v == G_MAXUINT32)
                return FALSE;
        *id = v;
        return TRUE;
}

static gboolean field_equal(const Field *f, const char *s)
{
        return f->n == strlen(s) && memcmp(f->p, s, f->n) == 0;
}

void kiln_passwd_entry_clear(KilnPasswdEntry *entry)
{
        g_clear_pointer(&entry->name, g_free);
        g_clear_pointer(&entry->home, g_free);
}

typedef struct PasswdMatch {
        const char *name; /* or NULL: match uid */
        guint32 uid;
        KilnPasswdEntry *entry;
        gboolean found;
} PasswdMatch;

static gboolean passwd_line(const Field *f, guint n, gpointer data)
{
        PasswdMatch *m = data;
        guint32 uid, gid;

        if (!kiln_parse_id(f[2].p, f[2].n, &uid) || !kiln_parse_id(f[3].p, f[3].n, &gid))
                return FALSE;
        if (m->name ? !field_equal(&f[0], m->name) : uid != m->uid)
                return FALSE;
        m->entry->name = g_strndup(f[0].p, f[0].n);
        m->entry->uid = uid;
        m->entry->gid = gid;
        m->entry->home = n > 5 && f[5].n > 0 ? g_strndup(f[5].p, f[5].n) : g_strdup("/");
        m->found = TRUE;
        return TRUE;
}

gboolean kiln_passwd_find_by_name(const char *buf, gsize len, const char *name, KilnPasswdEntry *entry)
{
        PasswdMatch m = {.name = name, .entry = entry};

        for_each_line(buf, len, PASSWD_MIN_FIELDS, passwd_line, &m);
        return m.found;
}

gboolean kiln_passwd_find_by_uid(const char *buf, gsize len, guint32 uid, KilnPasswdEntry *entry)
{
        PasswdMatch m = {.uid = uid, .entry = entry};

        for_each_line(buf, len, PASSWD_MIN_FIELDS, passwd_line, &m);
        return m.found;
}

typedef struct GroupMatch {
        const char *name;
        guint32 gid;
        gboolean found;
} GroupMatch;

static gboolean group_line(const Field *f, G_GNUC_UNUSED guint n, gpointer data)
{
        GroupMatch *m = data;

        if (!field_equal(&f[0], m->name) || !kiln_parse_id(f[2].p, f[2].n, &m->gid))
                return FALSE;
        m->found = TRUE;
        return TRUE;
}

gboolean kiln_group_find_by_name(const char *buf, gsize len, const char *name, guint32 *gid)
{
        GroupMatch m = {.name = name};

        for_each_line(buf, len, GROUP_MIN_FIELDS, group_line, &m);
        if (m.found)
                *gid = m.gid;
        return m.found;
}

typedef struct Membership {
        const char *user;
        GArray *gids;
        GHashTable *seen; /* the gids in @gids: a long group file stays linear */
} Membership;

static void add_gid(Membership *m, guint32 gid)
{
        if (m->gids->len >= KILN_MAX_ADDITIONAL_GIDS ||
            g_hash_table_contains(m->seen, GUINT_TO_POINTER(gid)))
                return;
        g_hash_table_add(m->seen, GUINT_TO_POINTER(gid));
        g_array_append_val(m->gids, gid);
}

static gboolean membership_line(const Field *f, guint n, gpointer data)
{
        Membership *m = data;
        Field members;
        guint32 gid;

        if (n < 4 || !kiln_parse_id(f[2].p, f[2].n, &gid))
                return FALSE;
        members = f[3];
        while (members.n > 0) {
                const char *comma = memchr(members.p, ',', members.n);
                Field member = {members.p, comma ? (gsize)(comma - members.p) : members.n};

                if (field_equal(&member, m->user)) {
                        add_gid(m, gid);
                        break;
                }
                if (!comma)
                        break;
                members.n -= member.n + 1;
                members.p = comma + 1;
        }
        return m->gids->len >= KILN_MAX_ADDITIONAL_GIDS;
}

void kiln_group_add_memberships(const char *buf, gsize len, const char *user, GArray *gids)
{
        g_autoptr(GHashTable) seen = g_hash_table_new(g_direct_hash, g_direct_equal);
        Membership m = {.user = user, .gids = gids, .seen = seen};

        /* gid 0 becomes the NULL key, which g_hash_table_contains() tells from a missing one. */
        for (guint i = 0; i < gids->len; i++)
                g_hash_table_add(seen, GUINT_TO_POINTER(g_array_index(gids, guint32, i)));
        for_each_line(buf, len, GROUP_MIN_FIELDS, membership_line, &m);
}

static gboolean not_found(GError **error, const char *what, const char *name, const char *file)
{
        g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT,
                    "Invalid user: no %s '%s' in the root file system's %s", what, name, file);
        return FALSE;
}

gboolean kiln_resolve_user(const char *spec, const char *passwd, gsize passwd_len, const char *group,
                           gsize group_len, guint32 *uid, guint32 *gid, GArray **additional_gids,
                           char **home, GError **error)
{
        const char *colon = strchr(spec, ':');
        g_autofree char *user = colon ? g_strndup(spec, (gsize)(colon - spec)) : g_strdup(spec);
        const char *group_name = colon ? colon + 1 : NULL;
        g_auto(KilnPasswdEntry) entry = {0};
        g_autoptr(GArray) gids = g_array_new(FALSE, FALSE, sizeof(guint32));
        gboolean known;
        guint32 u, g = 0;

        if (!*user) {
                g_free(user);
                user = g_strdup("0");
        }
        if (kiln_parse_id(user, strlen(user), &u)) {
                known = kiln_passwd_find_by_uid(passwd, passwd_len, u, &entry);
        } else {
                known = kiln_passwd_find_by_name(passwd, passwd_len, user, &entry);
                if (!known)
                        return not_found(error, "user", user, "/etc/passwd");
                u = entry.uid;
        }
        if (known)
                g = entry.gid;

        if (group_name && !kiln_parse_id(group_name, strlen(group_name), &g) &&
            !kiln_group_find_by_name(group, group_len, group_name, &g))
                return not_found(error, "group", group_name, "/etc/group");

        g_array_append_val(gids, g);
        /* Supplementary groups come with the user's name, and only when the group was not chosen
         * explicitly (an explicit group means exactly that group). */
        if (!group_name && known)
                kiln_group_add_memberships(group, group_len, entry.name, gids);

        *uid = u;
        *gid = g;
        *additional_gids = g_steal_pointer(&gids);
        *home = known ? g_steal_pointer(&entry.home) : g_strdup("/");
        return TRUE;
}

/* ---- supplementary groups (group_add) ---- */

#define GROUP_NAME_MAX 256

gboolean kiln_validate_group_add(const char *arg, const char *value, GError **error)
{
        guint32 gid;
        gsize n = strlen(value);

        if (g_str_equal(value, KILN_GROUP_ADD_KEEP_GROUPS) || kiln_parse_id(value, n, &gid))
                return TRUE;
        if (n == 0 || n > GROUP_NAME_MAX)
                return kiln_invalid(error, arg, "a group is a name of 1 to %d characters, a gid or '%s'",
                                    GROUP_NAME_MAX, KILN_GROUP_ADD_KEEP_GROUPS);
        /* What /etc/group can hold and shadow-utils accepts (a trailing '$' for machine accounts): no
         * ':' or ',' that would split a line, nothing that could pass for an option. */
        if (!g_ascii_isalnum(value[0]) && value[0] != '_')
                return kiln_invalid(error, arg, "group '%.64s' must start with a letter, digit or '_'",
                                    value);
        for (gsize i = 0; i < n; i++)
                if (!g_ascii_isalnum(value[i]) && !strchr("_.-", value[i]) &&
                    !(value[i] == '$' && i == n - 1))
                        return kiln_invalid(
                                error, arg,
                                "group '%.64s' may only contain letters, digits, '_', '.' and '-'", value);
        return TRUE;
}

gboolean kiln_group_add_resolve(const char *group, gsize group_len, const char *arg, const char *value,
                                GArray *gids, GError **error)
{
        guint32 gid;

        if (!kiln_validate_group_add(arg, value, error))
                return FALSE;
        if (g_str_equal(value, KILN_GROUP_ADD_KEEP_GROUPS))
                return kiln_invalid(error, arg, "'%s' is not a group of the image", value);
        if (!kiln_parse_id(value, strlen(value), &gid) &&
            !kiln_group_find_by_name(group, group_len, value, &gid))
                return kiln_invalid(error, arg, "no group '%s' in the root file system's /etc/group", value);
        for (guint i = 0; i < gids->len; i++)
                if (g_array_index(gids, guint32, i) == gid)
                        return TRUE;
        if (gids->len >= KILN_MAX_ADDITIONAL_GIDS)
                return kiln_invalid(error, arg, "more than %d supplementary groups",
                                    KILN_MAX_ADDITIONAL_GIDS);
        g_array_append_val(gids, gid);
        return TRUE;
}
